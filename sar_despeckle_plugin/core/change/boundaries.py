"""REFINE_BOUNDARIES: the outline of each changed region placed by the half-contrast rule, on
evidence that does not straddle it.

Why: near an outline every detector decides from evidence that mixes the two sides. The
prefilter's despeckler (or WINDOW's boxcar) averages across the edge, and a detector that reads a
neighbourhood (the unsupervised network, radius 4, never shown edge pixels as examples) sees a
window that is partly changed; both pull the changed level down along the edge, so regions come
out a pixel too small where the change is weak against its speckle (Yellow River: 531 of the
default's 583 missed pixels in the outermost ring of the true fields).

The rule: a step edge blurred by any symmetric footprint crosses half its contrast at the edge
itself. So each pixel just outside a detected region (4-connected ring) is re-decided on its own
standardised log-ratio vector e (every consecutive pair and intensity channel of the stack the
detector read, :func:`evidence`) against two levels measured away from the edge, over a
:data:`LEVEL_WINDOW` square: the region's level c (mean e over the region's pixels whose four
neighbours are changed too) and the surroundings' level u (mean e over unchanged pixels at least
:data:`SURROUNDINGS_GAP` pixels from every region). Its place along the contrast,
f = <e - u, c - u> / |c - u|^2 (0 at the surroundings, 1 in the region; the projection on the
line joining the two levels, so both signs of change and any number of channels and pairs are
handled alike), decides: the pixel joins the region where f > 1/2. One ring, one pass: the blur
is a pixel wide, and growing further would follow the blur of the despeckled edge instead of the
edge. Pixels with no region or no surroundings level in their window stay as they are. A pixel
that joins a region takes its first change date (:func:`neighbour_dates`), so a region keeps one
date across its new ring.

It runs after the MIN_AREA sieve, so only regions that are evidence of change grow (before it,
speckle regions just under the unit grew over it: on a prototype, kappa 0.911 against 0.924 on
Yellow River). Measured with defaults otherwise (unsupervised on despeckled dates,
scripts/bench_change.py): it recovers part of Yellow River's missed ring (kappa 0.923 -> 0.933)
but costs San Francisco and Sulzberger (0.913 -> 0.899, 0.957 -> 0.951), whose reference maps put
their outlines further in than Yellow River's (median f of the reference's outer ring 0.42 and
0.45 against 0.24; the default detector's 0.41-0.50 on all three, measured before the
unsupervised detector dropped the pair's mean level from its features). Hence off by default.

Layouts: masks (B, H, W) bool, evidence (B, E, H, W) float, E = (dates - 1) x intensity channels.
"""

from __future__ import annotations

import numpy as np
import torch
from osgeo import gdal
from torch.nn import functional as F

from ..raster import RasterReader, RasterWriter, gdal_errors_as_exceptions
from ..stack import box_sum
from ..tiling import TilingOptions, run_tiled
from .detectors import Stack, pair_ratios

#: Side of the square over which the region's and the surroundings' levels are measured (pixels).
LEVEL_WINDOW = 7
#: The surroundings' level is measured at least this far (pixels, 4-connected) from every region,
#: beyond the ring being decided and its own blurred neighbour.
SURROUNDINGS_GAP = 2
#: Context one pass needs around a pixel (pixels): the window's half side and the gap.
HALO = LEVEL_WINDOW // 2 + SURROUNDINGS_GAP
#: Rows and columns of the tiles of the pass over the files (pixels).
TILE = 512

_CROSS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def evidence(stack: Stack) -> torch.Tensor:
    """(B, E, H, W) float32: the standardised signed log-ratios of every consecutive pair of
    dates and intensity channel of ``stack`` (``detectors.pair_ratios``); 0 where invalid."""
    ratios = torch.cat(pair_ratios(stack), 1)
    return torch.where(stack.valid[:, None], ratios, torch.zeros_like(ratios)).float()


def _neighbours(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) count of ``mask`` over each pixel and its four neighbours (0 outside the image)."""
    kernel = _CROSS.to(mask.device)[None, None]
    return F.conv2d(mask.float()[:, None], kernel, padding=1)[:, 0]


def _level(values: torch.Tensor, where: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` (B, E, H, W) over the pixels ``where`` (B, H, W) of each pixel's
    LEVEL_WINDOW square, and whether the square holds any such pixel (B, H, W)."""
    weight = where.double()[:, None]
    count = box_sum(weight, LEVEL_WINDOW)
    total = box_sum(values.double() * weight, LEVEL_WINDOW)
    return total / count.clamp_min(1.0), count[:, 0] > 0.5


def refine_boundaries(changed: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``changed`` (B, H, W) with the ring of pixels just outside its regions re-decided by the
    half-contrast rule on the evidence ``values`` (B, E, H, W) (module doc); ``valid`` (B, H, W)
    marks the pixels with data. Returns the refined mask (B, H, W) bool; it only adds pixels."""
    changed = changed & valid
    ring = (_neighbours(changed) > 0) & ~changed & valid
    core = _neighbours(changed) > 4.5  # the pixel and its four neighbours changed
    near = changed
    for _ in range(SURROUNDINGS_GAP):
        near = _neighbours(near) > 0
    region, has_region = _level(values, core)
    surroundings, has_surroundings = _level(values, ~near & valid)
    contrast = region - surroundings
    strength = contrast.square().sum(1)
    place = ((values.double() - surroundings) * contrast).sum(1) / strength.clamp_min(1e-12)
    joins = ring & has_region & has_surroundings & (strength > 0) & (place > 0.5)
    return changed | joins


def neighbour_dates(changed: torch.Tensor, dates: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
    """``dates`` (B, H, W) long, first change dates (2..k) with the pixels ``added`` (B, H, W) to
    the regions of ``changed`` (B, H, W) given the date most of their changed 4-neighbours have
    (the earliest of a tie): the date of the region they joined."""
    best = torch.zeros_like(dates)
    most = torch.zeros(dates.shape, dtype=torch.float32, device=dates.device)
    for date in torch.unique(dates[changed]).tolist():  # ascending: a tie keeps the earlier date
        count = _neighbours(changed & (dates == date))
        best = torch.where(count > most, date, best)
        most = torch.maximum(count, most)
    return torch.where(added, best, dates)


class _MaskAndEvidence:
    """Windows of the mask (band 1; valid where it is not nodata), the candidate first change
    dates (band 2; 2 everywhere without a date raster) and the evidence (bands 3..), as the
    tiling engine reads them."""

    def __init__(self, mask_path: str, evidence_path: str, date_path: str | None) -> None:
        self.mask = RasterReader(mask_path)
        self.dates = RasterReader(date_path) if date_path else None
        self.evidence = RasterReader(evidence_path)
        self.height, self.width = self.mask.height, self.mask.width

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        mask, ok = self.mask.read(row, col, height, width)
        dates = self.dates.read(row, col, height, width)[0] if self.dates else np.full_like(mask, 2)
        values, _ = self.evidence.read(row, col, height, width)
        valid = np.broadcast_to(ok, (2 + len(values), height, width))
        return np.concatenate([mask, dates, values]), np.ascontiguousarray(valid)


class _ByteSink:
    """Writes (bands, rows, cols) strips of small integers, NaN = nodata, to a uint8 writer."""

    def __init__(self, writer: RasterWriter, nodata: int) -> None:
        self.writer, self.nodata = writer, nodata

    def write(self, values, row, col):
        self.writer.write(np.where(np.isnan(values), self.nodata, values).astype(np.uint8), row, col)


def refine_mask_file(mask_path: str, evidence_path: str, nodata: int, scratch_path: str, device: torch.device,
                     feedback, date_path: str | None = None) -> tuple[int, int]:
    """Refine the uint8 mask at ``mask_path`` (1 changed, 0 unchanged, ``nodata``) in place with
    the evidence raster at ``evidence_path`` (E float32 bands, same grid; :func:`evidence`), tile
    by tile through ``scratch_path``; the pixels it adds get the date of the region they join in
    the candidate first change dates at ``date_path`` (uint8, every valid pixel), when given.
    Returns (changed pixels, valid pixels) after it."""
    source = _MaskAndEvidence(mask_path, evidence_path, date_path)

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        ok = valid[:, 0]
        changed = (values[:, 0] > 0.5) & ok
        refined = refine_boundaries(changed, values[:, 2:], ok)
        dates = neighbour_dates(changed, values[:, 1].round().long(), refined & ~changed)
        result = torch.stack([refined.float(), dates.float()], 1)
        return torch.where(ok[:, None], result, torch.full_like(result, float("nan")))

    writer = RasterWriter(scratch_path, source.mask.info, 2, nodata, ["refined change mask", "first change dates"],
                          {}, gdal.GDT_Byte)
    with writer:
        run_tiled(source, _ByteSink(writer, nodata), process, TilingOptions(TILE, HALO, 0, device=device), 2,
                  feedback=feedback)
    return _copy_back(scratch_path, mask_path, date_path, nodata)


def _copy_back(source_path: str, mask_path: str, date_path: str | None, nodata: int) -> tuple[int, int]:
    """Copy the refined mask (band 1 of ``source_path``) into ``mask_path`` and the dates (band
    2) into ``date_path``, when given, keeping their metadata, strip by strip; returns (changed
    pixels, valid pixels)."""
    changed = valid = 0
    with gdal_errors_as_exceptions():
        source, mask = gdal.Open(source_path), gdal.Open(mask_path, gdal.GA_Update)
        dates = gdal.Open(date_path, gdal.GA_Update) if date_path else None
        for row in range(0, mask.RasterYSize, TILE):
            rows = min(TILE, mask.RasterYSize - row)
            refined = source.GetRasterBand(1).ReadAsArray(0, row, mask.RasterXSize, rows)
            mask.GetRasterBand(1).WriteArray(refined, 0, row)
            changed += int((refined == 1).sum())
            valid += int((refined != nodata).sum())
            if dates is not None:
                dates.GetRasterBand(1).WriteArray(source.GetRasterBand(2).ReadAsArray(0, row, mask.RasterXSize, rows),
                                                  0, row)
        source = mask = dates = None
    return changed, valid
