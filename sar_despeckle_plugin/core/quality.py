"""No-reference quality measures: the looks and spatial correlation of an image's speckle, and
the statistics of a despeckling result's ratio image I / I_hat (torch-free, numpy only).

Used by the quality report of every despeckling run, by the choice of a method that fits the
input, by ``python -m training prepare`` to describe a user's product, and by the benchmarks.

Arrays are 2-D linear intensity (rows, cols), with a boolean ``valid`` mask of the same shape.
Rows are the first axis (azimuth for most products), columns the second (range).

* :func:`measure_speckle` gives the speckle's equivalent number of looks (the project's one
  estimator, :func:`core.speckle.estimate_looks`) and its normalised autocorrelation at lags
  1..``lags`` along rows and columns, measured on the most homogeneous windows of the image
  (lowest coefficient of variation: where the scene is flat and only speckle varies). White
  speckle has autocorrelation 0 at every lag; Sentinel-1 GRDH about 0.65-0.75 at lag 1.
* :func:`ratio_statistics` describes a ratio image over the whole image: mean (1 for an
  unbiased despeckler), ENL (the input's looks when only speckle was removed) and autocorrelation
  (the input speckle's own when no structure is left in the ratio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import SarDespeckleError
from .speckle import estimate_looks

#: Side of the square windows searched for homogeneous areas (pixels).
WINDOW = 16
#: Share of the valid windows, the most homogeneous, whose autocorrelation is averaged (picking
#: fewer biases it low: the least varying windows also vary least from pixel to pixel).
HOMOGENEOUS_SHARE = 0.25
#: Fewest windows a measurement is made from.
MIN_WINDOWS = 8


@dataclass(frozen=True)
class SpeckleStatistics:
    """Looks and spatial correlation of speckle (or of a ratio image).

    Attributes:
        looks: equivalent number of looks (mean² / variance of intensity).
        rows: autocorrelation at lags 1, 2, ... along rows (between vertical neighbours).
        cols: autocorrelation at lags 1, 2, ... along columns (between horizontal neighbours).
        mean: mean of the values (1 for a ratio image of an unbiased despeckler).
        windows: number of windows (or 0 for a whole-image measurement) it comes from.
    """

    looks: float
    rows: tuple[float, ...]
    cols: tuple[float, ...]
    mean: float = 1.0
    windows: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _autocorrelation(centred: np.ndarray, weight: np.ndarray, lag: int, axis: int) -> float:
    """Normalised autocorrelation of ``centred`` (zero where ``weight`` is 0) at ``lag`` along
    ``axis``, over the pairs where both pixels count."""
    count = centred.shape[axis]
    if lag >= count:
        return float("nan")
    a = np.take(centred, range(count - lag), axis=axis)
    b = np.take(centred, range(lag, count), axis=axis)
    pairs = np.take(weight, range(count - lag), axis=axis) * np.take(weight, range(lag, count), axis=axis)
    variance = (centred ** 2 * weight).sum() / max(weight.sum(), 1)
    if pairs.sum() == 0 or variance <= 0:
        return float("nan")
    return float((a * b * pairs).sum() / pairs.sum() / variance)


def _windows(intensity: np.ndarray, valid: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Fully valid, positive-mean non-overlapping windows: (n, side, side) values and their CV."""
    rows, cols = (intensity.shape[0] // side) * side, (intensity.shape[1] // side) * side
    shape = (rows // side, side, cols // side, side)
    blocks = intensity[:rows, :cols].reshape(shape).swapaxes(1, 2).reshape(-1, side, side)
    full = valid[:rows, :cols].reshape(shape).swapaxes(1, 2).reshape(-1, side * side).all(axis=1)
    blocks = blocks[full].astype(np.float64)
    mean = blocks.mean(axis=(1, 2))
    blocks, mean = blocks[mean > 0], mean[mean > 0]
    return blocks, blocks.std(axis=(1, 2)) / mean


def measure_speckle(intensity: np.ndarray, valid: np.ndarray | None = None, lags: int = 2,
                    side: int = WINDOW, share: float = HOMOGENEOUS_SHARE) -> SpeckleStatistics | None:
    """Looks and autocorrelation of the speckle of ``intensity`` (linear, (rows, cols)), measured
    on its ``share`` most homogeneous ``side`` x ``side`` windows; None when the image has fewer
    than :data:`MIN_WINDOWS` valid windows.

    Each window is normalised by its own mean, so the slow variations of the scene between
    windows do not count; the autocorrelation is averaged over windows, pair-weighted.
    """
    valid = np.ones(intensity.shape, bool) if valid is None else valid
    blocks, cv = _windows(intensity, valid, side)
    if len(blocks) < MIN_WINDOWS:
        return None
    count = max(MIN_WINDOWS, int(round(share * len(blocks))))
    chosen = blocks[np.argsort(cv)[:count]]
    centred = chosen / chosen.mean(axis=(1, 2), keepdims=True) - 1.0
    try:
        looks = estimate_looks([intensity], [valid & (intensity > 0)])
    except SarDespeckleError:
        return None
    weight = np.ones(centred.shape[1:])
    correlation = {
        axis: tuple(float(np.mean([_autocorrelation(w, weight, lag, axis - 1) for w in centred]))
                    for lag in range(1, lags + 1))
        for axis in (1, 2)
    }
    return SpeckleStatistics(looks=looks, rows=correlation[1], cols=correlation[2], mean=1.0, windows=count)


def ratio_statistics(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray | None = None,
                     lags: int = 2) -> SpeckleStatistics:
    """Statistics of the ratio image ``intensity / estimate`` over the pixels where both are
    positive (and ``valid``): mean, ENL (mean² / variance) and autocorrelation at lags 1..``lags``
    along rows and columns, over the whole image."""
    ok = (intensity > 0) & (estimate > 0)
    if valid is not None:
        ok &= valid
    if not ok.any():
        nan = (float("nan"),) * lags
        return SpeckleStatistics(float("nan"), nan, nan, float("nan"), 0)
    ratio = np.where(ok, intensity / np.where(ok, estimate, 1.0), 0.0).astype(np.float64)
    mean = float(ratio[ok].mean())
    variance = float(ratio[ok].var())
    centred = np.where(ok, ratio - mean, 0.0)
    weight = ok.astype(np.float64)
    return SpeckleStatistics(
        looks=mean ** 2 / variance if variance > 0 else float("inf"),
        rows=tuple(_autocorrelation(centred, weight, lag, 0) for lag in range(1, lags + 1)),
        cols=tuple(_autocorrelation(centred, weight, lag, 1) for lag in range(1, lags + 1)),
        mean=mean,
        windows=0,
    )
