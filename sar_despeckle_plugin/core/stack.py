"""Co-registered dates read as one stack: what change detection and multitemporal despeckling
share.

* :func:`open_dates` checks that the dates share grid, CRS, size and band layout (refusing
  complex input), and opens one reader per date; :class:`StackReader` reads the same window of
  every date, (k * bands, rows, cols).
* :func:`sample_stack` reads evenly spread windows of the stack once; :func:`check_dates`
  decides the units (the one units rule of :mod:`core.units`), refuses impossible values per
  date and reports the zero rule; :func:`floors` gives the value that exact zeros kept as data
  are read as; :func:`stack_looks` the looks of each date.
* :func:`linear_dates` turns a raw window (B, k * C, H, W) in the input's units into linear
  covariance bands (B, k, C, H, W) and per-date validity (B, k, H, W); :func:`box_sum` sums
  boxcar windows of such tensors.

Layouts (``core.choices.LAYOUT_BANDS``): ``single`` (one intensity, amplitude or dB band),
``dual`` (VV, VH intensities) and ``c2`` (C11, C22, Re C12, Im C12, linear power).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import osr

from . import speckle
from . import units as units_rule
from .choices import INTENSITY_BANDS, LAYOUT_BANDS
from .errors import SarDespeckleError
from .raster import RasterReader, band_of, raster_info


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    first, second = osr.SpatialReference(), osr.SpatialReference()
    first.ImportFromWkt(a)
    second.ImportFromWkt(b)
    return bool(first.IsSame(second))


def _same_grid(a: tuple, b: tuple) -> bool:
    """Geotransforms equal to a thousandth of a pixel (or both missing)."""
    if len(a) != len(b):
        return False
    if not a:
        return True
    pixel = max(abs(v) for v in (b[1], b[2], b[4], b[5])) or 1.0
    return bool(np.allclose(a, b, rtol=0, atol=1e-3 * pixel))


def open_dates(inputs: Sequence[str], layout: str, min_side: int, purpose: str) -> list[RasterReader]:
    """One reader per date, after checking that the dates share grid and band layout.

    ``purpose`` names the algorithm in refusals ("change detection", ...); ``min_side`` is the
    smallest image side it accepts.
    """
    bands = LAYOUT_BANDS[layout]
    infos = [raster_info(path) for path in inputs]
    first = infos[0]
    for date, info in enumerate(infos, 1):
        if info.is_complex:
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is complex: give detected intensities or the C2 "
                "covariance bands (C11, C22, Re C12, Im C12) instead of SLC data."
            )
        if info.width < min_side or info.height < min_side:
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is only {info.width} x {info.height} pixels; {purpose} "
                f"needs at least {min_side} x {min_side}."
            )
    counts = {info.band_count for info in infos}
    if len(counts) > 1:
        listing = ", ".join(f"date {d}: {info.band_count}" for d, info in enumerate(infos, 1))
        raise SarDespeckleError(
            f"The dates have different band layouts ({listing} bands): every date must have the "
            "same bands in the same order."
        )
    if first.band_count != bands:
        raise SarDespeckleError(
            f"The inputs have {first.band_count} band(s) but BAND_LAYOUT '{layout}' needs {bands} per "
            "date (single-pol: 1; dual-pol intensities: VV, VH; C2: C11, C22, Re C12, Im C12). "
            "Choose the matching BAND_LAYOUT or extract the bands first."
        )
    for date, info in enumerate(infos[1:], 2):
        if (info.width, info.height) != (first.width, first.height):
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is {info.width} x {info.height} pixels but date 1 is "
                f"{first.width} x {first.height}: the dates must be co-registered on one grid "
                "(resample them with GDAL Warp first)."
            )
        if not _same_crs(info.crs_wkt, first.crs_wkt):
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') has a different CRS from date 1: the dates must be "
                "co-registered on one grid (reproject them with GDAL Warp first)."
            )
        if not _same_grid(info.geotransform, first.geotransform):
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is on a different grid from date 1 (geotransform "
                f"{info.geotransform} against {first.geotransform}): the dates must be co-registered "
                "on one grid (resample them with GDAL Warp first)."
            )
        named = [(band_of(a), band_of(b)) for a, b in zip(first.descriptions, info.descriptions)
                 if band_of(a) and band_of(b)]  # a despeckled date's bands still name its date
        if any(a.lower() != b.lower() for a, b in named):
            raise SarDespeckleError(
                f"Date {date} has bands {list(info.descriptions)} but date 1 has "
                f"{list(first.descriptions)}: every date must have the same bands in the same order."
            )
    return [RasterReader(path) for path in inputs]


def zero_fill_readers(readers: Sequence[RasterReader], layout: str, zeros_as_nodata: bool):
    """The readers with the zero rule (``core.speckle.ZeroFillReader``) on their intensity bands."""
    return [
        speckle.ZeroFillReader(reader, [
            on and band in INTENSITY_BANDS[layout]
            for band, on in enumerate(speckle.zero_rule(zeros_as_nodata, reader.info.data_types))
        ])
        for reader in readers
    ]


class StackReader:
    """Reads the same window from every date: values and validity (k * bands, rows, cols)."""

    def __init__(self, readers: list[RasterReader]) -> None:
        self.readers = readers
        self.height, self.width = readers[0].height, readers[0].width

    def read_fill(self, row, col, height, width):
        """Values, validity and the zero rule's fill mask (:class:`core.speckle.ZeroFillReader`)."""
        parts = [reader.read_fill(row, col, height, width) for reader in self.readers]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def read(self, row, col, height, width):
        values, valid, _ = self.read_fill(row, col, height, width)
        return values, valid


def sample_stack(stack_reader: StackReader, halo: int, max_pixels: int):
    """Evenly spread windows of the stack, read with ``halo`` pixels of context: (values,
    validity) pairs, and the zero rule's fill masks."""
    windows = speckle.sample_windows(stack_reader.height, stack_reader.width, max_pixels)
    reads = [stack_reader.read_fill(r - halo, c - halo, h + 2 * halo, w + 2 * halo) for r, c, h, w in windows]
    return [(values, valid) for values, valid, _ in reads], [fill for _, _, fill in reads]


def inner(array: np.ndarray, halo: int) -> np.ndarray:
    """``array`` (..., rows, cols) without ``halo`` pixels on each side."""
    return array[..., halo: array.shape[-2] - halo, halo: array.shape[-1] - halo] if halo else array


def date_samples(layout: str, k: int, windows) -> list[list[speckle.BandSample]]:
    """Per date and band, the :class:`core.speckle.BandSample` of the sample ``windows``
    ((values, valid, fill) triples of (k * bands, rows, cols))."""
    bands = LAYOUT_BANDS[layout]
    return [
        [speckle.BandSample([v[d * bands + b] for v, _, _ in windows], [ok[d * bands + b] for _, ok, _ in windows],
                            [f[d * bands + b] for _, _, f in windows])
         for b in range(bands)]
        for d in range(k)
    ]


def check_dates(layout: str, declared_units: str | None, zeros_as_nodata: bool, readers, samples,
                max_pixels: int, feedback) -> str:
    """The units of the stack (C2 is linear; else :func:`core.units.decide_units` over every
    date and band), after refusing values no date can hold (naming the date) and logging what
    the zero rule did. Returns the units."""
    if layout == "c2":
        units = "intensity"
    else:
        units = units_rule.decide_units(declared_units, [
            (f"date {date} band {band}", sample.valid_values(), reader.info.descriptions[band - 1],
             reader.info.data_types[band - 1])
            for date, (reader, bands) in enumerate(zip(readers, samples), 1)
            for band, sample in enumerate(bands, 1)
        ], feedback, "dates'")
    sampled = not speckle.sample_covers_image(readers[0].height, readers[0].width, max_pixels)
    for date, bands_of_date in enumerate(samples, 1):
        for band in INTENSITY_BANDS[layout]:
            sample = bands_of_date[band]

            def warn(message, date=date):
                feedback.warn(f"Date {date}: {message}")

            try:
                speckle.check_values(sample.valid_values(), units, band + 1, warn)
            except SarDespeckleError as error:
                raise SarDespeckleError(f"Date {date} ('{readers[date - 1].info.path}'): {error}") from None
            speckle.report_zeros(feedback, f"Date {date} band {band + 1}", sample.values, sample.valid,
                                 sample.fill, readers[date - 1].info.data_types[band], zeros_as_nodata, sampled)
    return units


def floors(samples, layout: str, units: str) -> tuple[tuple[float, ...], ...]:
    """Per date and intensity band: half its smallest positive sampled intensity, the value its
    exact zeros kept as data are read as (the quantisation or noise floor)."""
    result = []
    for bands in samples:
        row = []
        for band in INTENSITY_BANDS[layout]:
            values = bands[band].valid_values().astype(np.float64)
            values = speckle.to_intensity(values, units) if layout != "c2" else values
            positive = values[values > 0]
            row.append(0.5 * float(positive.min()) if positive.size else 1.0)
        result.append(tuple(row))
    return tuple(result)


def linear_dates(values: torch.Tensor, valid: torch.Tensor, layout: str, units: str,
                 floors_: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (B, k*C, H, W) in ``units`` -> linear covariance (B, k, C, H, W) float32 and the
    validity of each date (B, k, H, W): all its bands valid. Zeros kept as data are read as
    the date's floor (see :func:`floors`), so that ratios and determinants stay defined;
    values at invalid pixels are left as they come (the caller masks them)."""
    batch, _, height, width = values.shape
    k = len(floors_)
    values = values.reshape(batch, k, -1, height, width).float()
    valid = valid.reshape(values.shape)
    if layout != "c2":
        values = speckle.to_intensity(values, units)
    diagonal = list(INTENSITY_BANDS[layout])
    floor = torch.full(values.shape[1:3], -math.inf, dtype=values.dtype, device=values.device)
    floor[:, diagonal] = torch.tensor(floors_, dtype=values.dtype, device=values.device)
    return torch.maximum(values, floor[None, :, :, None, None]), valid.all(2)


def _date_looks(intensities: Sequence[list[np.ndarray]], valid: Sequence[np.ndarray]) -> float:
    """ENL of one date: the mean of its intensity channels' estimates (core.speckle)."""
    return float(np.mean([speckle.estimate_looks(windows, valid) for windows in intensities]))


def _coherence_looks(covariances: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> float:
    """ENL of C2 data from the co/cross-pol sample coherence: 1 / mean |gamma|^2.

    Where the true VV/VH coherence is zero (reflection symmetry, natural surfaces) the squared
    sample coherence of n-look complex Wishart data is Beta(1, n - 1), of mean 1/n; any true
    coherence only raises it, so the estimate errs low (towards fewer false alarms). Texture,
    which makes the intensity-based estimate err low too, does not affect it.
    """
    values = []
    for cov, ok in zip(covariances, valid):
        c11, c22, re, im = (band[ok].astype(np.float64) for band in cov)
        keep = (c11 > 0) & (c22 > 0)
        values.append((re[keep] ** 2 + im[keep] ** 2) / (c11[keep] * c22[keep]))
    squared = np.concatenate(values) if values else np.empty(0)
    if squared.size < 100 or not squared.mean() > 0:
        return 1.0
    return float(max(1.0, 1.0 / squared.mean()))


def stack_looks(layout: str, declared: Sequence[float] | None, covs, valid, feedback) -> tuple[float, ...]:
    """Looks of each date: ``declared`` (one for all dates or one per date), else estimated on
    the sample (``covs``: per window (k, C, rows, cols) linear covariance; ``valid``: per
    window (k, rows, cols)) from the intensities (:func:`core.speckle.estimate_looks`) and, for
    C2, also from the VV/VH coherence, keeping the larger (both can only err low)."""
    k = covs[0].shape[0]
    if declared is not None:
        return tuple(declared) * (k if len(declared) == 1 else 1)
    diagonal = INTENSITY_BANDS[layout]
    looks = tuple(_date_looks([[c[d, b] for c in covs] for b in diagonal], [v[d] for v in valid]) for d in range(k))
    if layout == "c2":
        from_coherence = tuple(_coherence_looks([c[d] for c in covs], [v[d] for v in valid]) for d in range(k))
        feedback.info("Looks from intensities: " + ", ".join(f"{v:.2f}" for v in looks)
                      + "; from the VV/VH coherence: " + ", ".join(f"{v:.2f}" for v in from_coherence) + ".")
        looks = tuple(max(a, b) for a, b in zip(looks, from_coherence))
    feedback.info("Estimated looks per date: " + ", ".join(f"{v:.2f}" for v in looks) + ".")
    return looks


def box_sum(values: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a window x window box centred on each pixel of (..., H, W) (zero outside):
    running sums along each axis, in float64 so that a bright target cannot swamp its dark
    neighbours' sums."""
    pad = window // 2
    x = F.pad(values.double(), (pad, pad, pad + 1, pad))  # one leading zero row for the differences
    rows = x.cumsum(-2)
    rows = rows[..., window:, :] - rows[..., :-window, :]
    cols = F.pad(rows, (1, 0)).cumsum(-1)
    return (cols[..., window:] - cols[..., :-window]).to(values.dtype)
