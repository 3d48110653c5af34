"""Automatic thresholds on the log-ratio change index x >= 0 (numpy, on a sample of the whole
image): Otsu, and Kittler-Illingworth minimum error with generalized Gaussian or Gamma classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import SarDespeckleError

#: Histogram bins for the automatic thresholds.
THRESHOLD_BINS = 1024
#: The threshold methods of :func:`automatic_threshold`; METHOD ``log_ratio_<name>`` uses each.
THRESHOLD_METHODS = ("ki_gg", "ki_gamma", "otsu")


def _histogram(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin centres over [0, 99.99th percentile]; the tail goes into the last bin.

    The top 0.01 % are clipped so that a few extreme pixels cannot squeeze the rest of the
    histogram into a handful of bins.
    """
    values = values[np.isfinite(values)]
    if values.size < 100:
        raise SarDespeckleError(
            "Too few valid pixels to choose a change threshold automatically (need at least 100)."
        )
    upper = float(np.quantile(values, 0.9999))
    if not upper > 0:
        upper = float(values.max()) or 1.0
    counts, edges = np.histogram(np.clip(values, 0, upper), bins=bins, range=(0.0, upper))
    return counts.astype(np.float64), 0.5 * (edges[:-1] + edges[1:])


def _admissible(below: np.ndarray, total: float) -> np.ndarray:
    """Splits whose classes both hold at least 0.05 % of the samples (and 20 of them)."""
    least = max(20.0, 5e-4 * total)
    return (below >= least) & (total - below >= least)


def otsu_threshold(values: np.ndarray, bins: int = THRESHOLD_BINS, floor: float = 0.0) -> float:
    """Otsu's threshold: the split of the histogram with the largest between-class variance
    (among splits above ``floor``)."""
    counts, centres = _histogram(values, bins)
    total = counts.sum()
    below = np.cumsum(counts)[:-1]
    sum_below = np.cumsum(counts * centres)[:-1]
    mean_all = (counts * centres).sum() / total
    with np.errstate(divide="ignore", invalid="ignore"):
        w0 = below / total
        mean_below = sum_below / below
        mean_above = (mean_all * total - sum_below) / (total - below)
        between = w0 * (1 - w0) * (mean_below - mean_above) ** 2
    between[~_admissible(below, total) | (0.5 * (centres[:-1] + centres[1:]) < floor)] = -np.inf
    if not np.isfinite(between).any():
        return floor
    split = int(np.argmax(between))
    return float(0.5 * (centres[split] + centres[split + 1]))


def _gg_ratio_table() -> tuple[np.ndarray, np.ndarray]:
    """Generalized Gaussian shape beta against E[(x-mu)^2] / E|x-mu|^2 (decreasing in beta)."""
    from math import lgamma

    beta = np.exp(np.linspace(np.log(0.2), np.log(20.0), 400))
    ratio = np.exp([lgamma(1 / b) + lgamma(3 / b) - 2 * lgamma(2 / b) for b in beta])
    return beta, ratio


_GG_TABLE = _gg_ratio_table()


def _lgamma(values: np.ndarray) -> np.ndarray:
    return torch.special.gammaln(torch.from_numpy(np.asarray(values, np.float64))).numpy()


def _class_loglik_gamma(counts, y, mask, step):
    """Per split (rows of mask): the Gamma log-likelihood of the histogram part in ``mask``.

    ``step`` is the bin width in y around each centre; its Sheppard term (step^2 / 12) keeps a
    class squeezed into one bin from claiming an unbounded density.
    """
    n = (counts * mask).sum(1)
    s1 = (counts * y * mask).sum(1)
    s2 = (counts * y * y * mask).sum(1)
    sl = (counts * np.log(y) * mask).sum(1)
    mean = s1 / n
    var = np.maximum(s2 / n - mean ** 2, 0) + (counts * step ** 2 * mask).sum(1) / (12 * n)
    shape, scale = mean ** 2 / var, var / mean
    return (shape - 1) * sl - s1 / scale - n * (shape * np.log(scale) + _lgamma(shape)), n


def _class_loglik_gg(counts, x, mask, step):
    """Per split: the generalized Gaussian log-likelihood (moment fit) of the part in ``mask``
    (``step``: bin width, as for the Gamma classes)."""
    n = (counts * mask).sum(1)
    mean = (counts * x * mask).sum(1) / n
    deviation = np.abs(x[None, :] - mean[:, None])
    var = (counts * deviation ** 2 * mask).sum(1) / n + step ** 2 / 12
    mad = np.maximum((counts * deviation * mask).sum(1) / n, step / 4)
    beta_grid, ratio_grid = _GG_TABLE
    ratio = np.clip(var / mad ** 2, ratio_grid[-1], ratio_grid[0])
    beta = np.interp(ratio, ratio_grid[::-1], beta_grid[::-1])
    alpha = np.sqrt(var * np.exp(_lgamma(1 / beta) - _lgamma(3 / beta)))
    energy = (counts * (deviation / alpha[:, None]) ** beta[:, None] * mask).sum(1)
    return n * (np.log(beta) - np.log(2 * alpha) - _lgamma(1 / beta)) - energy, n


def kittler_illingworth_threshold(
    values: np.ndarray, model: str, bins: int = THRESHOLD_BINS, floor: float = 0.0
) -> float:
    """Minimum-error threshold (Kittler and Illingworth 1986, generalised to other class models).

    For every split T of the histogram of ``values`` (the change index x >= 0) both classes are
    fitted by moments, and T minimises J(T) = -sum_bins h(x) ln(P_class f_class(x)), the
    sample's negative log-likelihood under the fitted two-class mixture (for Gaussian classes
    this is the classic 1 + 2 sum P ln sigma - 2 sum P ln P).

    Args:
        values: samples of the change index.
        model: ``gg`` (generalized Gaussian classes on x) or ``gamma`` (Gamma classes on x^2).
        floor: only thresholds above this are considered (returned when none is admissible).
    Returns:
        The threshold on x.
    """
    if model not in ("gg", "gamma"):
        raise ValueError(f"unknown Kittler-Illingworth model {model!r}")
    counts, x = _histogram(values, bins)
    step = x[1] - x[0]
    keep = counts > 0
    counts, x = counts[keep], x[keep]
    total = counts.sum()
    splits = np.arange(1, len(x))  # class 1 = bins [0, s), class 2 = bins [s, end)
    below = (np.arange(len(x))[None, :] < splits[:, None]).astype(np.float64)
    if model == "gamma":
        y, y_step = x * x, 2 * x * step
        l1, n1 = _class_loglik_gamma(counts, y, below, y_step)
        l2, n2 = _class_loglik_gamma(counts, y, 1 - below, y_step)
    else:
        l1, n1 = _class_loglik_gg(counts, x, below, step)
        l2, n2 = _class_loglik_gg(counts, x, 1 - below, step)
    with np.errstate(divide="ignore", invalid="ignore"):
        criterion = -(l1 + l2 + n1 * np.log(n1 / total) + n2 * np.log(n2 / total))
    candidates = 0.5 * (x[:-1] + x[1:])
    criterion[~_admissible(n1, total) | ~np.isfinite(criterion) | (candidates < floor)] = np.inf
    if not np.isfinite(criterion).any():
        if floor > 0:
            return float(floor)
        raise SarDespeckleError("The change index has too few distinct values to choose a threshold.")
    return float(candidates[int(np.argmin(criterion))])


def noise_floor(ratios: np.ndarray, significance: float) -> float:
    """The least threshold on the change index x = sqrt(sum_c D_c^2) that flags unchanged pixels
    less often than ``significance``, with the no-change spread measured on the image.

    ``ratios`` (channels, pixels) are the signed standardised log-ratios D_c of a sample. Their
    no-change spread is 1 when the looks describe the dates' speckle, but not after despeckling
    (what a despeckler leaves, and the difference between two despecklers' biases, follow no
    looks) nor for correlated or textured speckle; the changed pixels are a minority. So the
    spread s_c of each channel is measured robustly (1.4826 x its median absolute deviation) and
    with s the root mean square of the s_c, x^2 / s^2 is about chi-square with ``channels``
    degrees of freedom without change: the floor is s times the root of its 1 - significance
    quantile. Without it a histogram threshold splits even a change-free pair in two.
    """
    ratios = np.asarray(ratios, np.float64)
    deviation = np.abs(ratios - np.median(ratios, axis=1, keepdims=True))
    spread = float(np.sqrt(np.mean((1.4826 * np.median(deviation, axis=1)) ** 2)))
    return spread * math.sqrt(_chi2_quantile(ratios.shape[0], 1.0 - significance))


def automatic_threshold(method: str, index: np.ndarray, channels: int, least: float = 0.0) -> float:
    """Threshold on the log-ratio change index x (channels: intensity channels combined).

    ``ki_gg`` fits generalized Gaussian classes to the Wilson-Hilferty transform
    u = (x^2 / channels)^(1/3), which makes both classes (chi-square-like without change,
    non-central with it) nearly Gaussian whatever the number of channels; x itself is folded at
    zero, where a generalized Gaussian fits the no-change class badly (measured: twice the
    error of the transformed version on speckled mixtures). ``ki_gamma`` fits Gamma classes to
    x^2; ``otsu`` splits x.

    The search is limited to thresholds above the no-change median of x (x^2 ~ chi2 with one
    degree of freedom per channel): below it, more than half of the unchanged pixels would be
    called changed, which is never the answer, and which is where the criteria fall when
    the classes overlap heavily. The threshold found is then raised to ``least``
    (:func:`noise_floor`) where it is below: the search itself is not limited there, where the
    criteria would settle on some split in the far tail.
    """
    index = np.asarray(index, np.float64)
    floor = math.sqrt(_chi2_quantile(channels, 0.5))
    if method == "otsu":
        threshold = max(otsu_threshold(index, floor=floor), floor)
    elif method == "ki_gamma":
        threshold = kittler_illingworth_threshold(index, "gamma", floor=floor)
    elif method == "ki_gg":
        u = (index ** 2 / channels) ** (1 / 3)
        u_floor = (floor ** 2 / channels) ** (1 / 3)
        threshold = float(math.sqrt(channels * kittler_illingworth_threshold(u, "gg", floor=u_floor) ** 3))
    else:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
    return max(threshold, least)


def _chi2_quantile(channels: int, probability: float) -> float:
    """The ``probability`` quantile of chi2 with ``channels`` degrees of freedom, by bisection on
    the regularised incomplete gamma."""
    low, high = 0.0, 10.0 * channels + 100.0
    a = torch.tensor(channels / 2, dtype=torch.float64)
    for _ in range(80):
        middle = 0.5 * (low + high)
        if float(torch.special.gammainc(a, torch.tensor(middle / 2, dtype=torch.float64))) < probability:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
