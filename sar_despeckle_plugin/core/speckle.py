"""Speckle statistics shared by every algorithm: units, validity, equivalent number of looks.

Conventions: *intensity* is power (|z|^2, sigma0 linear), *amplitude* its square root, *dB*
``10 log10(intensity)``. All filters and networks work on linear intensity; inputs are
converted on the way in and outputs back to the input's units on the way out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import units as units_rule
from .errors import SarDespeckleError

UNITS = ("intensity", "amplitude", "dB")

#: Side of the square blocks whose local statistics the looks estimator uses (pixels).
LOOKS_BLOCK = 7


def to_intensity(values, units: str):
    """Convert ``values`` (numpy array or torch tensor) given in ``units`` to linear intensity."""
    if units in ("intensity", "amplitude"):  # noise-floor negatives (see core.units) read as 0
        values = values.clamp_min(0) if hasattr(values, "clamp_min") else np.maximum(values, 0)
        return values if units == "intensity" else values * values
    if units == "dB":
        return 10.0 ** (values / 10.0)
    raise ValueError(f"unknown units {units!r}; expected one of {UNITS}")


def from_intensity(intensity, units: str):
    """Convert linear ``intensity`` (numpy array or torch tensor) to ``units``."""
    if units == "intensity":
        return intensity
    if units == "amplitude":
        return intensity ** 0.5
    if units == "dB":
        return 10.0 * (intensity.log10() if hasattr(intensity, "log10") else np.log10(intensity))
    raise ValueError(f"unknown units {units!r}; expected one of {UNITS}")


#: Exact zeros in a row or column run at least this long are fill (nodata). Swath borders and
#: no-data fill are long runs; zeros that thermal-noise removal leaves in dark water or a
#: quantised dark pixel are short. Tile-safe: a window read with FILL_RUN - 1 pixels of context
#: sees every run that decides its pixels.
FILL_RUN = 32
#: 8-bit bands keep their zeros as data: zero is the darkest of 256 grey levels there (dark
#: water in processed amplitude products), not fill.
ZEROS_ARE_DATA_TYPES = ("Byte", "Int8")


def no_valid_hint(zeros_as_nodata: bool, complex_data: bool = False) -> str:
    """What every "no valid pixels" error adds about the zero rule, when it was on.

    Complex SLC samples follow a stricter rule than detected data: an exact 0 + 0j sample is a
    missing sample (burst gaps, resampling fill), never a measured echo, so all count as nodata.
    """
    if not zeros_as_nodata:
        return ""
    which = "exact zeros" if complex_data else "exact zeros that form the border fill"
    return f" ({which} count as nodata; turn ZEROS_AS_NODATA off if they are data)"


def fill_mask(values: np.ndarray, valid: np.ndarray, run: int = FILL_RUN) -> np.ndarray:
    """The exact zeros of ``values`` (rows, cols) that form border or no-data fill.

    A valid exact zero is fill when its row run or its column run of zeros is at least ``run``
    pixels long, or ends on an invalid pixel or the edge of the window (outside the image reads
    invalid, so zeros reaching the image edge or declared nodata are fill). Isolated zeros and
    small zero patches inside the scene are data. Windows must carry ``run - 1`` pixels of
    context around the pixels whose mask is used (see :class:`ZeroFillReader`).
    """
    zero = valid & (values == 0)
    if not zero.any():
        return zero
    return _fill_runs(zero, valid, run) | _fill_runs(zero.T, valid.T, run).T


def _fill_runs(zero: np.ndarray, valid: np.ndarray, run: int) -> np.ndarray:
    rows, cols = zero.shape
    padded = np.zeros((rows, cols + 2), bool)
    padded[:, 1:-1] = zero
    barrier = np.ones((rows, cols + 2), bool)
    barrier[:, 1:-1] = ~valid
    flat, wall = padded.ravel(), barrier.ravel()
    step = np.diff(flat.view(np.int8))
    starts = np.flatnonzero(step == 1) + 1
    ends = np.flatnonzero(step == -1) + 1
    keep = (ends - starts >= run) | wall[starts - 1] | wall[ends]
    marks = np.zeros(flat.size + 1, np.int32)
    marks[starts[keep]] += 1  # starts and ends are distinct positions
    marks[ends[keep]] -= 1
    return (np.cumsum(marks[:-1]) > 0).reshape(rows, cols + 2)[:, 1:-1]


class ZeroFillReader:
    """A reader (core.raster.RasterReader interface) whose validity leaves out the exact zeros
    that form fill (:func:`fill_mask`) in the bands where ``enabled``; other zeros stay valid.

    Each window is read with ``FILL_RUN - 1`` pixels of context, so the mask of a tile is the
    whole image's mask whatever the tiling. :meth:`read_fill` also returns the fill mask.
    """

    def __init__(self, reader, enabled: Sequence[bool]) -> None:
        self.reader = reader
        self.enabled = list(enabled)
        self.height, self.width = reader.height, reader.width

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def read_fill(self, row: int, col: int, height: int, width: int):
        if not any(self.enabled):
            values, valid = self.reader.read(row, col, height, width)
            return values, valid, np.zeros(valid.shape, bool)
        c = FILL_RUN - 1
        values, valid = self.reader.read(row - c, col - c, height + 2 * c, width + 2 * c)
        fill = np.zeros(valid.shape, bool)
        for band, on in enumerate(self.enabled):
            if on:
                fill[band] = fill_mask(values[band], valid[band])
        inner = (slice(None), slice(c, c + height), slice(c, c + width))
        values, valid, fill = values[inner], valid[inner], fill[inner]
        return values, valid & ~fill, fill

    def read(self, row: int, col: int, height: int, width: int):
        values, valid, _ = self.read_fill(row, col, height, width)
        return values, valid


def zero_rule(zeros_as_nodata: bool, data_types: Sequence[str]) -> list[bool]:
    """Per band: whether its fill zeros are nodata (ZEROS_AS_NODATA on, band not 8-bit)."""
    return [zeros_as_nodata and t not in ZEROS_ARE_DATA_TYPES for t in data_types]


def output_nodata(declared: Sequence[float | None], zeros_are_nodata: bool, units: str) -> float:
    """The nodata value of an output in the inputs' units: the first value the inputs declare
    (``declared``, None where a band or date declares none); else 0 for linear data whose fill
    zeros are nodata (the Sentinel-1 convention; ``zeros_are_nodata``: the zero rule is on for
    some band); else NaN."""
    given = [value for value in declared if value is not None]
    if given:
        return given[0]
    return 0.0 if zeros_are_nodata and units != "dB" else math.nan


def nan_to_nodata(values: np.ndarray, nodata: float) -> np.ndarray:
    """An output strip (float32, NaN = nodata) as written: NaN becomes ``nodata``, and a data
    pixel equal to ``nodata`` (a dark zero kept as data) the next float32 above it, so that it
    does not read as nodata."""
    if not math.isnan(nodata):
        values = np.where(values == np.float32(nodata), np.nextafter(np.float32(nodata), np.float32(np.inf)), values)
    return np.where(np.isnan(values), np.float32(nodata), values)


def report_zeros(feedback, label: str, values, valid, fill, data_type: str, zeros_as_nodata: bool,
                 sampled: bool) -> None:
    """Log what the zero rule did to one band: how many exact zeros it made nodata and why, and
    how many it kept as data. ``values``, ``valid`` (fill excluded) and ``fill`` are lists of
    matching sample windows; ``sampled`` says they cover only part of the image."""
    zeros = sum(int(((v == 0) & (ok | f)).sum()) for v, ok, f in zip(values, valid, fill))
    if zeros == 0:
        return
    filled = sum(int(f.sum()) for f in fill)
    total = sum(int((ok | f).sum()) for ok, f in zip(valid, fill))
    where = f" of {total:,} sampled" if sampled else ""

    def share(count: int) -> str:
        return f"{count / total:.1%}" if count >= total / 1000 else "<0.1%"

    parts = []
    if filled:
        parts.append(f"{filled:,} exact-zero pixels ({share(filled)}{where}) form the border fill (zero "
                     f"runs of {FILL_RUN}+ pixels or reaching the image edge or nodata) and count as nodata")
    kept = zeros - filled
    if kept:
        why = ("ZEROS_AS_NODATA is off" if not zeros_as_nodata else
               f"zero is the darkest grey level of {data_type} data; declare a nodata value if they are fill"
               if data_type in ZEROS_ARE_DATA_TYPES else "isolated zeros inside the scene")
        parts.append(f"{kept:,} exact-zero pixels ({share(kept)}{where}) are kept as data ({why})")
    feedback.info(f"{label}: " + "; ".join(parts) + ".")


@dataclass(frozen=True)
class BandSample:
    """Raw values of one band drawn from evenly spread windows, with their validity.

    ``values`` and ``valid`` are lists of 2-D arrays (rows, cols), one per window; ``fill``
    the matching masks of zeros that the zero rule made nodata (empty when not read).
    """

    values: list[np.ndarray]
    valid: list[np.ndarray]
    fill: list[np.ndarray] = ()

    def valid_values(self) -> np.ndarray:
        return np.concatenate([v[ok] for v, ok in zip(self.values, self.valid)])


def sample_windows(height: int, width: int, max_pixels: int = 4_000_000, side: int = 256):
    """Windows ``(row, col, rows, cols)`` covering the image, or evenly spread when it is big."""
    if height * width <= max_pixels:
        return [(0, 0, height, width)]
    per_axis = max(1, int(math.sqrt(max_pixels / side ** 2)))
    rows = np.linspace(0, max(height - side, 0), per_axis).astype(int)
    cols = np.linspace(0, max(width - side, 0), per_axis).astype(int)
    return [(int(r), int(c), min(side, height), min(side, width)) for r in rows for c in cols]


def read_sample(reader, max_pixels: int = 4_000_000) -> list[BandSample]:
    """One :class:`BandSample` per band of ``reader`` (a core.raster.RasterReader, or a
    :class:`ZeroFillReader`, whose fill masks the samples then keep)."""
    read = getattr(reader, "read_fill", None)
    windows = [read(*w) if read else (*reader.read(*w), None)
               for w in sample_windows(reader.height, reader.width, max_pixels)]
    return [
        BandSample([values[b] for values, _, _ in windows], [valid[b] for _, valid, _ in windows],
                   [fill[b] for _, _, fill in windows] if read else ())
        for b in range(len(reader.bands))
    ]


def sample_covers_image(height: int, width: int, max_pixels: int = 4_000_000) -> bool:
    """Whether :func:`sample_windows` reads the whole image (else counts from it are a sample)."""
    return height * width <= max_pixels


def detect_units(raw: np.ndarray, description: str = "", data_type: str = "") -> str | None:
    """The units :func:`core.units.band_evidence` reads in one band (None: linear, intensity or
    amplitude undecided)."""
    return units_rule.band_evidence(raw, description, data_type).units


#: The units rule's refusals and noise-floor warning (see :mod:`core.units`).
check_values = units_rule.check_values


def estimate_looks(intensity: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> float:
    """Equivalent number of looks of linear intensity, robust to heterogeneous scenes.

    Speckle alone gives every homogeneous block the same coefficient of variation, 1/sqrt(L);
    texture and edges only add to it. So we take the *mode* of the distribution of block
    coefficients of variation (non-overlapping LOOKS_BLOCK x LOOKS_BLOCK blocks, fully valid
    ones only), which heterogeneous blocks spread to the right without moving, and correct the
    small-sample bias of the block estimates.

    Args:
        intensity: 2-D linear-intensity windows (rows, cols).
        valid: matching validity masks.
    Returns:
        The estimated ENL, at least 1: fully developed speckle has a coefficient of variation of
        at most 1 in intensity; anything above that is texture, not fewer looks.
    """
    b = LOOKS_BLOCK
    cvs = []
    for values, ok in zip(intensity, valid):
        rows, cols = (values.shape[0] // b) * b, (values.shape[1] // b) * b
        if rows == 0 or cols == 0:
            continue
        blocks = values[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2)
        full = ok[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2).all(axis=(2, 3))
        blocks = blocks[full].reshape(-1, b * b).astype(np.float64)
        mean = blocks.mean(axis=1)
        keep = mean > 0
        cvs.append(blocks[keep].std(axis=1, ddof=1) / mean[keep])
    cv = np.concatenate(cvs) if cvs else np.empty(0)
    if cv.size < 20:
        raise SarDespeckleError(
            "Too few valid pixels to estimate the number of looks: give LOOKS explicitly."
        )
    log_cv = np.log(cv[cv > 0])
    histogram, edges = np.histogram(log_cv, bins=np.linspace(-4.0, 2.0, 241))
    smooth = np.convolve(histogram, np.hanning(15), mode="same")
    peak = np.argmax(smooth)
    window = slice(max(peak - 3, 0), peak + 4)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mode_cv = math.exp(np.average(centres[window], weights=smooth[window] + 1e-12))
    return max(1.0, 1.0 / mode_cv ** 2)



#: Step between the pixels :func:`pixel_looks` keeps along each axis.
PIXEL_LOOKS_STEP = 2


def pixel_looks(intensity: Sequence[np.ndarray], valid: Sequence[np.ndarray],
                step: int = PIXEL_LOOKS_STEP) -> float | None:
    """The looks of single pixels (1 / the variance of their speckle: the ENL a product states)
    when neighbouring pixels' speckle is correlated: :func:`estimate_looks` on every ``step``-th
    pixel along both axes (linear intensity windows, (rows, cols), and their validity masks);
    None when too few pixels are left for it.

    The block estimator reads each block's spread around the block's own mean; correlated
    neighbours spread less than independent pixels, so correlated speckle reads as more looks
    than its pixels have (Sentinel-1 GRDH-like speckle of 4.5 looks over a smooth scene: 5.6-7.2).
    Pixels two apart are nearly independent (lag-2 autocorrelation 0.3-0.5 instead of 0.7-0.8 at
    lag 1): on the same draws they read 4.5-5.4. Their blocks are twice as wide, though, so scene
    texture counts more: over textured scenes this estimate reads fewer looks than there are
    (3.6 for the same speckle over the Risoul reference).
    """
    try:
        return estimate_looks([values[::step, ::step] for values in intensity], [ok[::step, ::step] for ok in valid])
    except SarDespeckleError:
        return None


#: The fastest-to-slowest decay of the speckle's autocorrelation beyond lag 2 that
#: :func:`mean_variance_factor` extrapolates: band-limited speckle loses more than half of it
#: from lag 1 to lag 2 (Sentinel-1 GRDH 0.72 -> 0.30 rows, the MTDN pairs 0.68 -> 0.27); near-equal
#: small lag-1 and lag-2 values are scene texture and measurement noise, not a long tail.
MAX_CORRELATION_DECAY = 0.5


def _axis_variance_factor(lag1: float, lag2: float, window: int) -> float:
    """1 + 2 sum_{k=1}^{w-1} (1 - k/w) rho(k): the variance of a mean of ``window`` neighbours
    along one axis over that of as many independent ones, for the intensity autocorrelation rho
    measured at lags 1 and 2 (negative values count as 0) and, beyond lag 2, decaying
    geometrically at the rate rho(2) / rho(1), at most :data:`MAX_CORRELATION_DECAY`."""
    rho1, rho2 = max(lag1, 0.0), max(lag2, 0.0)
    decay = min(rho2 / rho1, MAX_CORRELATION_DECAY) if rho1 > 0 else 0.0
    total, rho = 0.0, 0.0
    for lag in range(1, window):
        rho = rho1 if lag == 1 else rho2 if lag == 2 else rho * decay
        total += (1.0 - lag / window) * rho
    return 1.0 + 2.0 * total


def mean_variance_factor(correlation, window: int) -> float:
    """How many times the relative variance of a ``window`` x ``window`` mean of speckle exceeds
    that of a mean of as many independent pixels: 1 for white speckle, about 7 for Sentinel-1
    products whose lag-1 intensity correlation is 0.6-0.7 (7 x 7 means). A w x w mean of
    L-look speckle thus has w^2 L / factor looks, not w^2 L.

    ``correlation``: ((lag-1 rows, cols), (lag-2 rows, cols)) of the intensity speckle, as
    :func:`core.despeckle.choice.measure_correlation` gives it, or None (white). The intensity
    autocorrelation of band-limited speckle is the squared magnitude of the complex one, which a
    separable spectral window makes separable: the factor is the product of the two axes'."""
    if correlation is None:
        return 1.0
    (rows1, cols1), (rows2, cols2) = correlation
    return _axis_variance_factor(rows1, rows2, window) * _axis_variance_factor(cols1, cols2, window)


def looks_per_pixel(block_looks: float, sparse_looks: float | None) -> float:
    """The looks per pixel of correlated speckle from the two estimates that bracket them:
    :func:`estimate_looks` on blocks of neighbours (reads more) and :func:`pixel_looks` on every
    second pixel (reads fewer over texture): their geometric mean (on the Sen1Floods11 GRDH crop
    4.83 and 3.23: 3.95); ``block_looks`` alone when there is no sparse estimate. Fed to a
    conditioned network trained on correlated speckle, it scores within 0.03 dB of the sparse
    estimate on synthetic GRDH speckle and leaves a ratio mean 2 % closer to 1 on that crop
    (0.954 against 0.931), the sparse estimate reading its texture as fewer looks."""
    return block_looks if sparse_looks is None else math.sqrt(block_looks * sparse_looks)
