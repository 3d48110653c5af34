"""Change detection between co-registered SAR dates: statistics, thresholds, the file pipeline.

This is what ``sar_despeckle:change_detection`` runs; scripts, tests and the benchmark call it
directly. Layouts are (bands, rows, cols) for numpy and (batch, dates, bands, rows, cols) for the
torch stacks the detectors see.

**Data model.** Every date is a (multilooked) sample covariance matrix: single-pol intensity
(p = 1), dual-pol intensities VV, VH (the diagonal of C2: two independent p = 1 blocks) or the
full dual-pol covariance C2 (p = 2, bands C11, C22, Re C12, Im C12). ``n_i`` times the matrix of
date i is complex Wishart with ``n_i`` (the equivalent number of looks) degrees of freedom.
Dates may have different looks. An optional boxcar (``window``) averages the covariance before
the tests; the looks the tests use are then the increased ENL ``n_i * window^2 / kappa``, where
``kappa`` >= 1 accounts for spatially correlated speckle (estimated from the data, 1 for white
speckle), and are reduced pixel by pixel where the window holds nodata.

**Omnibus test** (Conradsen, Nielsen, Skriver 2016, "Determining the points of change in time
series of polarimetric SAR data", IEEE TGRS 54(5)): H0: all k dates share one covariance. With
the looks-weighted mean C = sum n_i C_i / n, n = sum n_i,

    ln Q = sum_i n_i ln|C_i| - n ln|C|,            f = m p^2 (k - 1)
    rho = 1 - (2p^2 - 1) / (6 p (k - 1)) (sum 1/n_i - 1/n)
    omega2 = m [p^2 (p^2 - 1) / (24 rho^2) (sum 1/n_i^2 - 1/n^2) - p^2 (k - 1) / 4 (1 - 1/rho)^2]
    P(-2 rho ln Q <= z) ~ P(chi2_f <= z) + omega2 [P(chi2_{f+4} <= z) - P(chi2_f <= z)]

(with equal looks these are the paper's formulas; unequal looks give Box's general form). ``m``
is the number of independent Wishart blocks: 1 for single-pol and C2, 2 for the dual-pol
diagonal, which is the *diagonal-only Wishart* form: ln Q is the sum of the two p = 1 statistics,
-2 rho ln Q is then approximately chi2 with 2 (k - 1) degrees of freedom and the omega2 terms of
the two independent blocks add (their characteristic functions multiply). It assumes VV and VH
uncorrelated (reflection symmetry); use the C2 layout when the cross term matters.

**Sequential form** (same paper; the Earth Engine implementation of Canty et al. 2020 follows
it): ln Q = sum_{j=2..k} ln R_j, R_j testing date j against the pooled dates 1..j-1 (a two-sample
test with looks N_{j-1} = n_1 + ... + n_{j-1} and n_j). A pixel changed when the omnibus test
rejects at ``significance``; its first change date is the first j whose R_j rejects (the j with
the smallest R_j p-value when none does on its own).

**Log-ratio.** For dates a, b and each intensity channel c, D_c = ln(I_b / I_a) minus its no-change
mean psi(n_b) - ln n_b - psi(n_a) + ln n_a (unequal looks bias the plain ratio), divided by its
no-change standard deviation sqrt(psi1(n_a) + psi1(n_b)). The change index is
x = sqrt(sum_c D_c^2): |D| for single-pol, the root of the summed squared standardised log-ratios
for dual-pol (the dual-pol combination; C11 and C22 for C2). x^2 is about chi2 with one degree of
freedom per channel under no change: that gives the p-value map. The mask uses an automatic
threshold on x from the whole image: Kittler-Illingworth minimum error with generalized Gaussian
classes (on x, as Bazi et al. 2005 on the log-ratio) or Gamma classes (on x^2, exact for Gaussian
log-ratios), or Otsu. With more than two dates each consecutive pair gets its own threshold and the
first pair over it gives the change date.

**Learned detector** (:class:`LearnedDetector`): the network of ``core.models.change_net``
(siamese dilated CNN with global attention, after MTDN's change branch), trained by
``python -m training`` in ``change`` mode, on each pair of consecutive dual-pol dates; the map is
the change probability.

**Adding a method**: subclass :class:`ChangeDetector` (``halo`` for its receptive field, ``fit``
to look at a sample of the image before the tiled pass, ``detect`` from a :class:`Stack` to
(map, changed, date)), register a factory in :data:`DETECTORS` and append its id to
``change_catalog.CHANGE_METHOD_LABELS``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from osgeo import gdal

from . import speckle
from .catalog import SHIPPED_WEIGHTS
from .change_catalog import DEFAULT_CHANGE_METHOD, DEFAULT_CHANGE_MODEL, LAYOUT_BANDS
from .device import resolve_device
from .errors import SarDespeckleError
from .feedback import Feedback
from .raster import RasterReader, RasterWriter, bounded_gdal_cache, raster_info
from .tiling import TilingOptions, run_tiled, tile_for_width
from .version import plugin_version

#: Wishart block shape (p, number of independent blocks m) of each layout.
BLOCKS = {"single": (1, 1), "dual": (1, 2), "c2": (2, 1)}
#: Indices of the intensity (diagonal) bands of each layout.
INTENSITY_BANDS = {"single": (0,), "dual": (0, 1), "c2": (0, 1)}
#: |C2| is floored at this fraction of C11 C22 (a coherence of 1 - 5e-7), so rounding in
#: perfectly coherent pixels cannot make the log-determinant infinite.
DET_FLOOR = 1e-6
#: Nodata of the outputs: p-value map (float32), mask and date (uint8).
MAP_NODATA = -1.0
MASK_NODATA = 255
#: Smallest image side we accept (pixels).
MIN_SIDE = 3
#: The Wishart test of p x p matrices needs more than p - 1 looks; we refuse less than p - 1 + this.
MIN_LOOKS_MARGIN = 0.25
#: Pixels sampled for units, looks, speckle correlation, normalisation and thresholds.
SAMPLE_PIXELS = 1_000_000
#: Histogram bins for the automatic thresholds.
THRESHOLD_BINS = 1024


# ------------------------------------------------------------------------------------------
# Wishart statistics (torch)


def log_determinant(cov: torch.Tensor, layout: str) -> torch.Tensor:
    """Sum over the layout's Wishart blocks of ln det: (..., C, H, W) -> (..., H, W)."""
    if layout == "c2":
        c11, c22, re, im = cov.unbind(-3)
        det = c11 * c22 - re * re - im * im
        return torch.maximum(det, DET_FLOOR * c11 * c22).log()
    return cov.log().sum(-3)


#: Degrees of freedom up to which chi-square tails use the closed form below.
CLOSED_FORM_DOF = 100


def chi2_tails(z: torch.Tensor, f: int, extra: int = 0) -> list[torch.Tensor]:
    """P(chi2_f > z), P(chi2_{f+2} > z), ..., P(chi2_{f+2*extra} > z) for an integer f.

    With x = z / 2 and a = f / 2, Q(a, x) = e^-x sum_{i<a} x^i / i! for even f and
    erfc(sqrt x) + e^-x sum_i x^(i+1/2) / Gamma(i + 3/2) for odd f, and Q(a + 1, x) = Q(a, x) +
    x^a e^-x / Gamma(a + 1): a few multiplications instead of the general incomplete gamma
    (half the time of the whole test otherwise). Falls back to it for f > CLOSED_FORM_DOF.
    """
    x = z.clamp_min(0) / 2
    if f > CLOSED_FORM_DOF:
        return [torch.special.gammaincc(torch.full_like(x, f / 2 + i), x) for i in range(extra + 1)]
    if f % 2 == 0:
        tail, term, order = torch.zeros_like(x), torch.exp(-x), 0.0  # term = x^i e^-x / i!
    else:
        root = x.sqrt()
        tail, term, order = torch.special.erfc(root), torch.exp(-x) * root / math.gamma(1.5), 0.5
    tails = []
    steps = f // 2 + extra
    for step in range(steps + 1):
        if step >= f // 2 and (step - f // 2) <= extra:
            tails.append(tail.clamp(0.0, 1.0))
        if step == steps:
            break
        tail = tail + term
        order += 1
        term = term * x / order
    return tails


def corrected_chi2_sf(z: torch.Tensor, f: float, omega2: torch.Tensor) -> torch.Tensor:
    """P(-2 rho ln Q > z) from Box's expansion: the chi2_f tail plus the omega2 correction."""
    if float(f).is_integer():
        tail_f, _, tail_f4 = chi2_tails(z, int(f), extra=2)
    else:
        half = z.clamp_min(0) / 2
        tail_f = torch.special.gammaincc(torch.full_like(half, f / 2), half)
        tail_f4 = torch.special.gammaincc(torch.full_like(half, f / 2 + 2), half)
    return (tail_f + omega2 * (tail_f4 - tail_f)).clamp(0.0, 1.0)


def box_correction(layout: str, looks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(rho, omega2, f) of the omnibus test for looks (B, k, ...) of the k dates."""
    p, m = BLOCKS[layout]
    k = looks.shape[1]
    total = looks.sum(1)
    inverse = (1.0 / looks).sum(1) - 1.0 / total
    inverse_sq = (1.0 / looks ** 2).sum(1) - 1.0 / total ** 2
    rho = 1.0 - (2 * p * p - 1) / (6.0 * p * (k - 1)) * inverse
    omega2 = m * (
        p * p * (p * p - 1) / (24.0 * rho ** 2) * inverse_sq - p * p * (k - 1) / 4.0 * (1 - 1 / rho) ** 2
    )
    return rho, omega2, float(m * p * p * (k - 1))


def omnibus_log_q(cov: torch.Tensor, looks: torch.Tensor, layout: str) -> torch.Tensor:
    """ln Q of the omnibus test: cov (B, k, C, H, W), looks (B, k, H, W) -> (B, H, W), <= 0."""
    total = looks.sum(1)
    mean = (looks.unsqueeze(2) * cov).sum(1) / total.unsqueeze(1)
    return (looks * log_determinant(cov, layout)).sum(1) - total * log_determinant(mean, layout)


def omnibus_cumulants(layout: str, looks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact mean, variance and third cumulant of W = -2 ln Q under H0, for looks (B, k, ...).

    From the moments of the Wishart likelihood ratio, E[Q^h] = prod_j Gamma(n - j + 1) /
    Gamma(n (1 + h) - j + 1) prod_i prod_j Gamma(n_i (1 + h) - j + 1) / Gamma(n_i - j + 1) times
    the constant n^{pnh} / prod n_i^{p n_i h} (j = 1..p): the cumulants of ln Q are the
    derivatives of its logarithm at h = 0, sums of polygamma functions; blocks add.
    """
    p, m = BLOCKS[layout]
    total = looks.sum(1)  # looks: (B, k, ...) or (pixels, k)
    k1 = p * (total * total.log() - (looks * looks.log()).sum(1))
    k2 = torch.zeros_like(total)
    k3 = torch.zeros_like(total)
    for j in range(p):
        k1 = k1 - total * torch.special.digamma(total - j) + (looks * torch.special.digamma(looks - j)).sum(1)
        k2 = k2 - total ** 2 * torch.special.polygamma(1, total - j) \
            + (looks ** 2 * torch.special.polygamma(1, looks - j)).sum(1)
        k3 = k3 - total ** 3 * torch.special.polygamma(2, total - j) \
            + (looks ** 3 * torch.special.polygamma(2, looks - j)).sum(1)
    return -2 * m * k1, 4 * m * k2, -8 * m * k3


def shifted_chi2_sf(w: torch.Tensor, mean, variance, third) -> torch.Tensor:
    """P(W > w) for W approximated by a * chi2_b + c with its first three cumulants."""
    scale = third / (4 * variance)
    dof = 8 * variance ** 3 / third ** 2
    shift = mean - scale * dof
    half = ((w - shift) / scale).clamp_min(0) / 2
    return torch.special.gammaincc(dof.expand_as(half) / 2, half).clamp(0.0, 1.0)


#: Looks from which Box's rho/omega2 expansion is used in ``auto`` mode: from 4 looks on it is
#: within 5 % of the nominal false-alarm rate at 1 %; at 1 look it gives 30 % too many false
#: alarms at 1 % and three times too many at 0.1 %, where the three-cumulant fit stays within 5
#: and 10 % (measured by simulation, p = 1 and 2, k = 2 to 10).
BOX_MIN_LOOKS = 4.0
PVALUE_APPROXIMATIONS = ("auto", "box", "cumulants")


def omnibus_pvalue(
    cov: torch.Tensor, looks: torch.Tensor, layout: str, approximation: str = "auto"
) -> torch.Tensor:
    """P-value of "no change across the k dates" per pixel: (B, k, C, H, W) -> (B, H, W).

    ``approximation``: ``box`` (the chi-square approximation with Box's rho and omega2, as in
    Conradsen et al.), ``cumulants`` (a shifted, scaled chi-square with the exact first three
    cumulants of -2 ln Q) or ``auto`` (Box where every date has at least BOX_MIN_LOOKS looks,
    cumulants elsewhere). ``looks`` is (B, k, H, W) or broadcastable, e.g. (1, k, 1, 1).
    Computed in float64: the n ln|C| terms cancel to a few units out of thousands.
    """
    if approximation not in PVALUE_APPROXIMATIONS:
        raise ValueError(f"unknown approximation {approximation!r}")
    cov, looks = cov.double(), looks.double()
    w = -2.0 * omnibus_log_q(cov, looks, layout)
    if approximation == "cumulants" or (approximation == "auto" and looks.amax() < BOX_MIN_LOOKS):
        return shifted_chi2_sf(w, *omnibus_cumulants(layout, looks))
    rho, omega2, f = box_correction(layout, looks)
    pvalue = corrected_chi2_sf(rho * w, f, omega2)
    if approximation == "box":
        return pvalue
    few = (looks.amin(1) < BOX_MIN_LOOKS).expand_as(w)
    if bool(few.any()):  # only where looks vary (averaging windows near nodata): pixel by pixel
        per_pixel = looks.expand(w.shape[0], looks.shape[1], *w.shape[1:]).movedim(1, -1)[few]
        pvalue = pvalue.clone()
        pvalue[few] = shifted_chi2_sf(w[few], *omnibus_cumulants(layout, per_pixel))
    return pvalue


def sequential_pvalues(
    cov: torch.Tensor, looks: torch.Tensor, layout: str, approximation: str = "auto"
) -> torch.Tensor:
    """P-values of R_j, j = 2..k (date j against the pooled dates before it): (B, k-1, H, W)."""
    cov, looks = cov.double(), looks.double()
    looks = looks.expand(cov.shape[0], *looks.shape[1:])
    pooled, pooled_looks = cov[:, 0], looks[:, 0]
    pvalues = []
    for j in range(1, cov.shape[1]):
        pair = torch.stack([pooled, cov[:, j]], 1)
        pair_looks = torch.stack([pooled_looks, looks[:, j]], 1)
        pvalues.append(omnibus_pvalue(pair, pair_looks, layout, approximation))
        total = pooled_looks + looks[:, j]
        pooled = (pooled_looks.unsqueeze(1) * pooled + looks[:, j].unsqueeze(1) * cov[:, j]) / total.unsqueeze(1)
        pooled_looks = total
    return torch.stack(pvalues, 1)


def change_dates(sequential: torch.Tensor, significance: float) -> torch.Tensor:
    """Candidate first change date of every pixel from the R_j p-values (B, k-1, H, W).

    The 1-based index (2..k) of the first date whose R_j rejects at ``significance``, or of the
    one with the smallest p-value when none does; meaningful where the omnibus test rejects.
    """
    rejected = sequential < significance
    first = torch.argmax(rejected.to(torch.uint8), 1)
    return torch.where(rejected.any(1), first, torch.argmin(sequential, 1)) + 2


def first_change(
    omnibus: torch.Tensor, sequential: torch.Tensor, significance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(changed, date) from the omnibus p-values (B, H, W) and the R_j p-values (B, k-1, H, W).

    ``date`` is the 1-based index of the first date after the first change (2..k), 0 where the
    omnibus test does not reject.
    """
    changed = omnibus < significance
    dates = change_dates(sequential, significance)
    return changed, torch.where(changed, dates, torch.zeros_like(dates))


# ------------------------------------------------------------------------------------------
# Log-ratio (torch)


def log_ratio_index(
    before: torch.Tensor, after: torch.Tensor, looks_before: torch.Tensor, looks_after: torch.Tensor,
    layout: str,
) -> torch.Tensor:
    """Standardised log-ratio change index x >= 0 between two dates: (B, C, H, W) -> (B, H, W)."""
    n_a, n_b = looks_before.double(), looks_after.double()
    bias = (torch.special.digamma(n_b) - n_b.log()) - (torch.special.digamma(n_a) - n_a.log())
    variance = torch.special.polygamma(1, n_a) + torch.special.polygamma(1, n_b)
    total = torch.zeros_like(bias)
    for c in INTENSITY_BANDS[layout]:
        d = after[:, c].double().log() - before[:, c].double().log() - bias
        total = total + d * d
    return (total / variance).sqrt()


def log_ratio_pvalue(index: torch.Tensor, layout: str) -> torch.Tensor:
    """Approximate p-value of no change: index^2 ~ chi2 with one degree of freedom per channel."""
    return chi2_tails(index.double() ** 2, len(INTENSITY_BANDS[layout]))[0]


# ------------------------------------------------------------------------------------------
# Automatic thresholds (numpy, on a sample of the change index)


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


def automatic_threshold(method: str, index: np.ndarray, channels: int) -> float:
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
    the classes overlap heavily.
    """
    index = np.asarray(index, np.float64)
    floor = _chi_median(channels)
    if method == "otsu":
        return max(otsu_threshold(index, floor=floor), floor)
    if method == "ki_gamma":
        return kittler_illingworth_threshold(index, "gamma", floor=floor)
    if method == "ki_gg":
        u = (index ** 2 / channels) ** (1 / 3)
        u_floor = (floor ** 2 / channels) ** (1 / 3)
        return float(math.sqrt(channels * kittler_illingworth_threshold(u, "gg", floor=u_floor) ** 3))
    raise ValueError(f"unknown threshold method {method!r}")


def _chi_median(channels: int) -> float:
    """Median of sqrt(chi2_channels), by bisection on the regularised incomplete gamma."""
    low, high = 0.0, 10.0 * channels
    a = torch.tensor(channels / 2, dtype=torch.float64)
    for _ in range(60):
        middle = 0.5 * (low + high)
        if float(torch.special.gammainc(a, torch.tensor(middle / 2, dtype=torch.float64))) < 0.5:
            low = middle
        else:
            high = middle
    return math.sqrt(0.5 * (low + high))


THRESHOLD_METHODS = ("ki_gg", "ki_gamma", "otsu")


# ------------------------------------------------------------------------------------------
# Detectors: one per METHOD


@dataclass
class Stack:
    """Pre-averaged covariances of k dates, as the detectors see them.

    Attributes:
        cov: (B, k, C, H, W) linear covariance bands of the layout.
        looks: (B, k, H, W) equivalent number of looks of each date after the averaging, or
            (1, k, 1, 1) when they are the same everywhere.
        valid: (B, H, W) pixels valid on every date and band.
        layout: ``single``, ``dual`` or ``c2``.
    """

    cov: torch.Tensor
    looks: torch.Tensor
    valid: torch.Tensor
    layout: str

    def crop(self, halo: int) -> "Stack":
        if halo == 0:
            return self
        inner = (..., slice(halo, -halo), slice(halo, -halo))
        looks = self.looks if self.looks.shape[-1] == 1 else self.looks[inner]
        return Stack(self.cov[inner], looks, self.valid[inner], self.layout)


class ChangeDetector:
    """A METHOD. Subclasses set ``name`` and implement :meth:`detect` (and :meth:`fit`)."""

    name = ""
    #: Context the detector needs around a pixel beyond the pre-averaging window (pixels).
    halo = 0
    #: What the CHANGE_MAP band holds (recorded as its description and in the metadata).
    map_kind = "p-value of no change"

    def fit(self, samples: list[Stack], feedback: Feedback) -> None:
        """Look at valid samples of the whole image before the tiled pass (thresholds)."""

    def detect(self, stack: Stack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(map, changed, date), each (B, H, W): the map value, whether the pixel changed, and
        its candidate first change date (2..k, the 1-based index of the first date after the
        change) for *every* pixel: the pipeline keeps it where the final mask says changed
        (which MIN_AREA may alter)."""
        raise NotImplementedError

    def record(self) -> dict:
        """What to record in the outputs' metadata beside the method name."""
        return {}


class OmnibusDetector(ChangeDetector):
    """The omnibus Wishart test, with the sequential R_j tests for the first change date."""

    name = "omnibus"

    def __init__(self, significance: float, approximation: str = "auto") -> None:
        self.significance = significance
        self.approximation = approximation

    def detect(self, stack):
        omnibus = omnibus_pvalue(stack.cov, stack.looks, stack.layout, self.approximation)
        if stack.cov.shape[1] == 2:
            return omnibus, omnibus < self.significance, torch.full_like(omnibus, 2, dtype=torch.long)
        sequential = sequential_pvalues(stack.cov, stack.looks, stack.layout, self.approximation)
        return omnibus, omnibus < self.significance, change_dates(sequential, self.significance)

    def record(self):
        return {"significance": self.significance, "pvalue_approximation": self.approximation}


class LogRatioDetector(ChangeDetector):
    """Standardised log-ratio of consecutive dates with an automatic threshold per pair."""

    map_kind = "p-value of no change (log-ratio, chi-square approximation)"

    def __init__(self, threshold: str) -> None:
        self.name = f"log_ratio_{threshold}"
        self.threshold_method = threshold
        self.thresholds: list[float] = []

    @staticmethod
    def indices(stack: Stack) -> list[torch.Tensor]:
        return [
            log_ratio_index(stack.cov[:, j - 1], stack.cov[:, j], stack.looks[:, j - 1], stack.looks[:, j],
                            stack.layout)
            for j in range(1, stack.cov.shape[1])
        ]

    def fit(self, samples, feedback):
        per_pair = [[] for _ in range(samples[0].cov.shape[1] - 1)]
        for stack in samples:
            for pair, index in enumerate(self.indices(stack)):
                per_pair[pair].append(index[stack.valid].cpu().numpy())
        channels = len(INTENSITY_BANDS[samples[0].layout])
        self.thresholds = [
            automatic_threshold(self.threshold_method, np.concatenate(v), channels) for v in per_pair
        ]
        feedback.info("Log-ratio thresholds (standardised index): "
                      + ", ".join(f"{t:.3f}" for t in self.thresholds))

    def detect(self, stack):
        pvalue = changed = date = strongest = None
        for pair, index in enumerate(self.indices(stack)):
            over = index > self.thresholds[pair]
            p = log_ratio_pvalue(index, stack.layout)
            if pvalue is None:
                pvalue, changed, strongest = p, over, index / self.thresholds[pair]
                date = torch.full_like(index, 2, dtype=torch.long)
                continue
            relative = index / self.thresholds[pair]
            # first pair over its threshold; among pixels over none, the relatively strongest pair
            date = torch.where(changed, date, torch.where(over | (relative > strongest), pair + 2, date))
            strongest = torch.maximum(strongest, relative)
            pvalue, changed = torch.minimum(pvalue, p), changed | over
        return pvalue, changed, date

    def record(self):
        return {"thresholds": self.thresholds}


class LearnedDetector(ChangeDetector):
    """The learned detector (:class:`~.models.ChangeNet`, after MTDN's change branch) on each
    pair of consecutive dates of dual-pol intensity (VV, VH; C11, C22 of C2).

    ``fit`` sets, from the sampled windows of the whole image, each date's and channel's
    reference level (median intensity) and each pair's global-attention context, so every tile
    sees the same normalisation and context: tiled output equals whole-image output. The map is
    the highest change probability over the pairs; a pixel changed where it passes 0.5; its date
    is the first pair that does (the most probable pair where none does).
    """

    name = "learned"
    map_kind = "change probability (learned detector)"

    def __init__(self, card_path: str, layout: str) -> None:
        from .model_cards import read_card

        if layout == "single":
            raise SarDespeckleError(
                "The learned detector reads dual-pol data: set BAND_LAYOUT to dual-pol intensities "
                "(VV, VH) or C2, or choose another METHOD for single-pol images."
            )
        self.card_path = card_path
        self.card = read_card(card_path)
        if self.card.input_kind != "dual_pol_pair":
            raise SarDespeckleError(
                f"Model '{self.card.name}' is not a change detector (it reads {self.card.input_kind}): "
                "choose the card of a model trained in change mode."
            )
        self.halo = self.card.receptive_radius
        self.model = None
        self.references: torch.Tensor | None = None
        self.contexts: list[torch.Tensor] = []

    @staticmethod
    def intensities(stack: Stack) -> torch.Tensor:
        """(B, k, 2, H, W) linear intensities of the two polarisations."""
        return stack.cov[:, :, list(INTENSITY_BANDS[stack.layout])]

    def _pair(self, stack: Stack, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised dates j - 1 and j (B, 2, H, W); invalid pixels at the reference level."""
        intensity = self.intensities(stack)
        valid = stack.valid[:, None]
        dates = []
        for date in (j - 1, j):
            reference = self.references[date].to(intensity.dtype)
            level = torch.where(valid, intensity[:, date], reference[None, :, None, None])
            dates.append(self.model.normalise(level, reference))
        return dates[0], dates[1]

    def fit(self, samples, feedback):
        from .models import load_model

        device = samples[0].cov.device
        self.model = load_model(self.card_path, device, input_kind="dual_pol_pair").module.float()
        valid_values = torch.cat(
            [self.intensities(s).permute(1, 2, 0, 3, 4)[:, :, s.valid] for s in samples], dim=-1
        )  # (k, 2, valid pixels)
        self.references = valid_values.float().median(dim=-1).values.clamp_min(torch.finfo(torch.float32).tiny)
        self.contexts = []
        with torch.no_grad():
            for j in range(1, samples[0].cov.shape[1]):
                parts = []  # one sample window at a time: softmax pooling over all of them
                for s in samples:
                    z1, z2 = self._pair(s, j)
                    features = self.model.features(z1.float(), z2.float())
                    for b in range(len(features)):
                        parts.append(self.model.attention.partial(features[b: b + 1], s.valid[b: b + 1, None]))
                self.contexts.append(self.model.attention.combine(parts))
        feedback.info("Learned detector: model " + self.card.name + "; reference levels (median "
                      "intensity per date and channel): "
                      + "; ".join(", ".join(f"{v:.4g}" for v in row) for row in self.references.tolist()))

    def detect(self, stack):
        probability = changed = date = None
        with torch.no_grad():
            for j in range(1, stack.cov.shape[1]):
                z1, z2 = self._pair(stack, j)
                p = torch.sigmoid(self.model(z1.float(), z2.float(), self.contexts[j - 1]))[:, 0]
                over = p > 0.5
                if probability is None:
                    probability, changed = p, over
                    date = torch.full_like(p, 2, dtype=torch.long)
                    continue
                date = torch.where(changed, date, torch.where(over | (p > probability), j + 1, date))
                probability, changed = torch.maximum(probability, p), changed | over
        return probability, changed, date

    def record(self):
        return {"model": self.card.name, "model_sha256": self.card.sha256,
                "reference_levels": self.references.tolist() if self.references is not None else None}


def shipped_change_model() -> str:
    """The card of the shipped change detector."""
    return os.path.join(SHIPPED_WEIGHTS, DEFAULT_CHANGE_MODEL + ".json")


#: METHOD id -> factory taking the run's settings.
DETECTORS: dict[str, Callable[["ChangeSettings"], ChangeDetector]] = {
    "omnibus": lambda settings: OmnibusDetector(settings.significance, settings.approximation),
    "log_ratio_ki_gg": lambda settings: LogRatioDetector("ki_gg"),
    "log_ratio_ki_gamma": lambda settings: LogRatioDetector("ki_gamma"),
    "log_ratio_otsu": lambda settings: LogRatioDetector("otsu"),
    "learned": lambda settings: LearnedDetector(settings.model or shipped_change_model(), settings.layout),
}


# ------------------------------------------------------------------------------------------
# Looks, speckle correlation, radiometric normalisation (numpy, on the sample)


def date_looks(intensities: Sequence[list[np.ndarray]], valid: Sequence[np.ndarray]) -> float:
    """ENL of one date: the mean of its intensity channels' estimates (core.speckle)."""
    return float(np.mean([speckle.estimate_looks(windows, valid) for windows in intensities]))


def coherence_looks(covariances: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> float:
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


#: Side of the blocks the speckle correlation is measured in.
CORRELATION_BLOCK = 32


def averaging_factor(
    intensity: Sequence[np.ndarray], valid: Sequence[np.ndarray], looks: float, window: int
) -> float:
    """kappa: how much less than window^2 a window x window boxcar multiplies the looks by.

    The variance of a w x w mean of speckle with correlation rho(dy, dx) is that of one pixel
    times kappa / w^2, kappa = sum_{|dy|,|dx| < w} (1 - |dy|/w)(1 - |dx|/w) rho(dy, dx) (1 for
    white speckle). rho is measured on the ratio residuals I / block mean - 1 of homogeneous
    CORRELATION_BLOCK-pixel blocks (coefficient of variation^2 below 1.25 / looks), corrected for
    the block-mean bias (-1 / pixels per block). Returns 1 when too few homogeneous blocks exist.
    """
    if window <= 1:
        return 1.0
    b = CORRELATION_BLOCK
    residuals = []
    for values, ok in zip(intensity, valid):
        rows, cols = (values.shape[0] // b) * b, (values.shape[1] // b) * b
        if rows == 0 or cols == 0:
            continue
        blocks = values[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2).reshape(-1, b, b)
        full = ok[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2).reshape(-1, b * b).all(1)
        blocks = blocks[full].astype(np.float64)
        mean = blocks.mean(axis=(1, 2))
        keep = mean > 0
        blocks, mean = blocks[keep], mean[keep]
        cv2 = blocks.var(axis=(1, 2), ddof=1) / mean ** 2
        homogeneous = cv2 < 1.25 / looks
        residuals.append(blocks[homogeneous] / mean[homogeneous, None, None] - 1.0)
    r = np.concatenate(residuals) if residuals else np.empty((0, b, b))
    if len(r) < 8:
        return 1.0
    variance = (r * r).mean()
    kappa = 0.0
    for dy in range(-window + 1, window):
        for dx in range(-window + 1, window):
            weight = (1 - abs(dy) / window) * (1 - abs(dx) / window)
            if dy == 0 and dx == 0:
                kappa += weight
                continue
            a = r[:, max(dy, 0): b + min(dy, 0), max(dx, 0): b + min(dx, 0)]
            c = r[:, max(-dy, 0): b + min(-dy, 0), max(-dx, 0): b + min(-dx, 0)]
            kappa += weight * ((a * c).mean() / variance + 1.0 / (b * b))
    return float(np.clip(kappa, 1.0, window * window))


def radiometric_gains(
    intensities: np.ndarray, valid: np.ndarray, looks: Sequence[float]
) -> np.ndarray:
    """Per date and intensity channel, the gain that matches date 1's level: (k, channels).

    The gain is exp(-median(ln I_t - ln I_1)) corrected for the log-ratio bias of unequal looks;
    the median ignores changes on less than half of the pixels.
    """
    k = intensities.shape[0]
    gains = np.ones(intensities.shape[:2])
    for t in range(1, k):
        bias = float(
            (torch.special.digamma(torch.tensor(looks[t], dtype=torch.float64)) - math.log(looks[t]))
            - (torch.special.digamma(torch.tensor(looks[0], dtype=torch.float64)) - math.log(looks[0]))
        )
        for c in range(intensities.shape[1]):
            ratio = np.log(intensities[t, c][valid]) - np.log(intensities[0, c][valid])
            gains[t, c] = math.exp(-(float(np.median(ratio)) - bias))
    return gains


# ------------------------------------------------------------------------------------------
# The file pipeline


@dataclass(frozen=True)
class ChangeSettings:
    """What the user chose; ``None`` means "work it out from the data".

    Attributes:
        method: a key of :data:`DETECTORS`.
        layout: ``single`` (1 band per date), ``dual`` (VV, VH intensities) or ``c2`` (C11, C22,
            Re C12, Im C12, linear).
        units: ``intensity``, ``amplitude`` or ``dB`` of the single/dual-pol bands (detected when
            None); C2 must be linear (``intensity``).
        looks: ENL of each date (one value for all dates, or one per date); estimated per date
            when None.
        significance: level of the omnibus test (the log-ratio methods threshold automatically).
        window: odd side of the boxcar averaging the covariance before the test (1: none).
        min_area: changed or unchanged regions smaller than this many pixels are merged into
            their surroundings in the mask (GDAL sieve, 8-connected; 0 or 1: off).
        normalise: scale each date so its median log-ratio to date 1 is zero (uncalibrated data).
        zeros_as_nodata: exact zero intensities are nodata.
        device: ``auto``, ``cpu`` or ``cuda``.
        approximation: null distribution of the omnibus statistic (see :func:`omnibus_pvalue`).
        tile: tile core side for the tiling engine (chosen from the image width when None).
        model: model card of the ``learned`` method (the shipped detector when None).
    """

    method: str = DEFAULT_CHANGE_METHOD
    layout: str = "single"
    units: str | None = None
    looks: tuple[float, ...] | None = None
    significance: float = 0.01
    window: int = 1
    min_area: int = 0
    normalise: bool = False
    zeros_as_nodata: bool = True
    device: str = "auto"
    approximation: str = "auto"
    tile: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class ChangeOutputs:
    """Destinations; None skips an output. Rasters are GeoTIFF, polygons GPKG/SHP/GeoJSON."""

    change_map: str | None = None
    change_mask: str | None = None
    change_date: str | None = None
    change_polygons: str | None = None


@dataclass(frozen=True)
class ChangeReport:
    """What a run did."""

    outputs: dict
    units: str
    looks: tuple[float, ...]
    effective_looks: tuple[float, ...]
    averaging_factor: float
    gains: tuple[tuple[float, ...], ...]
    detector: dict
    changed_fraction: float
    polygons: int | None
    device: str


def _check_settings(settings: ChangeSettings, dates: int) -> None:
    if settings.method not in DETECTORS:
        raise SarDespeckleError(
            f"Unknown change-detection method '{settings.method}'; choose one of {', '.join(DETECTORS)}."
        )
    if settings.layout not in LAYOUT_BANDS:
        raise SarDespeckleError(
            f"Unknown band layout '{settings.layout}'; choose one of {', '.join(LAYOUT_BANDS)}."
        )
    if dates < 2:
        raise SarDespeckleError(
            f"Change detection needs at least two dates; got {dates}. Give the co-registered "
            "acquisitions in INPUTS, in date order."
        )
    if dates >= MASK_NODATA:
        raise SarDespeckleError(f"At most {MASK_NODATA - 1} dates are supported; got {dates}.")
    if not 0 < settings.significance < 1:
        raise SarDespeckleError(f"SIGNIFICANCE must be between 0 and 1; got {settings.significance}.")
    if settings.window < 1 or settings.window % 2 == 0:
        raise SarDespeckleError(f"WINDOW must be an odd number >= 1; got {settings.window}.")
    if settings.approximation not in PVALUE_APPROXIMATIONS:
        raise SarDespeckleError(f"Unknown p-value approximation '{settings.approximation}'; choose one of "
                                f"{', '.join(PVALUE_APPROXIMATIONS)}.")
    if settings.min_area < 0:
        raise SarDespeckleError(f"MIN_AREA must be >= 0; got {settings.min_area}.")
    if settings.units is not None and settings.units not in speckle.UNITS:
        raise SarDespeckleError(f"INPUT_UNITS must be one of {speckle.UNITS}; got {settings.units}.")
    if settings.layout == "c2" and settings.units not in (None, "intensity"):
        raise SarDespeckleError(
            "C2 covariance bands must be linear (power): set INPUT_UNITS to intensity or leave it empty."
        )
    if settings.looks is not None:
        if len(settings.looks) not in (1, dates):
            raise SarDespeckleError(
                f"Give one number of looks for all dates or one per date ({dates}); got {len(settings.looks)}."
            )
        if not all(value > 0 for value in settings.looks):
            raise SarDespeckleError(f"LOOKS must be positive; got {list(settings.looks)}.")


def _check_outputs(outputs: ChangeOutputs) -> None:
    rasters = [p for p in (outputs.change_map, outputs.change_mask, outputs.change_date) if p]
    if not rasters and not outputs.change_polygons:
        raise SarDespeckleError("No output was requested: give CHANGE_MAP, CHANGE_MASK, CHANGE_DATE or "
                                "CHANGE_POLYGONS.")
    for path in rasters:
        if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
            raise SarDespeckleError(f"Output '{path}' must be a GeoTIFF (.tif or .tiff).")
    paths = [os.path.abspath(p) for p in rasters + [outputs.change_polygons] if p]
    if len(set(paths)) != len(paths):
        raise SarDespeckleError("Two outputs have the same path: give each output its own file.")
    if outputs.change_polygons:
        from .regions import vector_driver

        vector_driver(outputs.change_polygons)


def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    from osgeo import osr

    first, second = osr.SpatialReference(), osr.SpatialReference()
    first.ImportFromWkt(a)
    second.ImportFromWkt(b)
    return bool(first.IsSame(second))


def _open_dates(inputs: Sequence[str], layout: str) -> list[RasterReader]:
    """One reader per date, after checking that the dates share grid and band layout."""
    bands = LAYOUT_BANDS[layout]
    infos = [raster_info(path) for path in inputs]
    first = infos[0]
    for date, info in enumerate(infos, 1):
        if info.is_complex:
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is complex: give detected intensities or the C2 "
                "covariance bands (C11, C22, Re C12, Im C12) instead of SLC data."
            )
        if info.width < MIN_SIDE or info.height < MIN_SIDE:
            raise SarDespeckleError(
                f"Date {date} ('{info.path}') is only {info.width} x {info.height} pixels; change "
                f"detection needs at least {MIN_SIDE} x {MIN_SIDE}."
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
        named = [(a, b) for a, b in zip(first.descriptions, info.descriptions) if a and b]
        if any(a.lower() != b.lower() for a, b in named):
            raise SarDespeckleError(
                f"Date {date} has bands {list(info.descriptions)} but date 1 has "
                f"{list(first.descriptions)}: every date must have the same bands in the same order."
            )
    return [RasterReader(path) for path in inputs]


def _same_grid(a: tuple, b: tuple) -> bool:
    """Geotransforms equal to a thousandth of a pixel (or both missing)."""
    if len(a) != len(b):
        return False
    if not a:
        return True
    pixel = max(abs(v) for v in (b[1], b[2], b[4], b[5])) or 1.0
    return bool(np.allclose(a, b, rtol=0, atol=1e-3 * pixel))


class StackReader:
    """Reads the same window from every date: values and validity (k * bands, rows, cols)."""

    def __init__(self, readers: list[RasterReader]) -> None:
        self.readers = readers
        self.height, self.width = readers[0].height, readers[0].width

    def read(self, row, col, height, width):
        parts = [reader.read(row, col, height, width) for reader in self.readers]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(frozen=True)
class _Plan:
    """Everything the per-tile preparation needs, decided once from the sample."""

    layout: str
    units: str
    looks: tuple[float, ...]
    kappa: float
    gains: tuple[tuple[float, ...], ...]
    window: int
    zeros_as_nodata: bool


def _linear(values: torch.Tensor, valid: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (B, k*C, H, W) -> linear covariance (B, k, C, H, W) and joint validity (B, H, W)."""
    batch, _, height, width = values.shape
    k = len(plan.looks)
    values = values.reshape(batch, k, -1, height, width).float()
    valid = valid.reshape(values.shape)
    if plan.layout != "c2":
        values = speckle.to_intensity(values, plan.units)
    gains = torch.tensor(plan.gains, dtype=values.dtype, device=values.device)  # (k, 2 or 1)
    diagonal = list(INTENSITY_BANDS[plan.layout])
    scale = torch.ones(values.shape[1:3], dtype=values.dtype, device=values.device)
    scale[:, diagonal] = gains
    if plan.layout == "c2":
        scale[:, 2] = scale[:, 3] = (gains[:, 0] * gains[:, 1]).sqrt()
    values = values * scale[None, :, :, None, None]
    intensities = values[:, :, diagonal]
    positive = intensities > 0 if plan.zeros_as_nodata else intensities >= 0
    joint = valid.all(2).all(1) & positive.all(2).all(1)
    return torch.where(joint[:, None, None], values, torch.zeros_like(values)), joint


def _box_sum(values: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a window x window box centred on each pixel (zero outside): running sums along
    each axis, in float64 so that a bright target cannot swamp its dark neighbours' sums."""
    pad = window // 2
    x = F.pad(values.double(), (pad, pad, pad + 1, pad))  # one leading zero row for the differences
    rows = x.cumsum(-2)
    rows = rows[..., window:, :] - rows[..., :-window, :]
    cols = F.pad(rows, (1, 0)).cumsum(-1)
    return (cols[..., window:] - cols[..., :-window]).to(values.dtype)


def _prepare(values: torch.Tensor, valid: torch.Tensor, plan: _Plan) -> Stack:
    """Raw window -> Stack: units, gains, validity, boxcar averaging and per-pixel looks."""
    cov, joint = _linear(values, valid, plan)
    batch, k, channels, height, width = cov.shape
    looks = torch.tensor(plan.looks, dtype=torch.float32, device=cov.device)[None, :, None, None]
    if plan.window > 1:
        w = plan.window
        count = _box_sum(joint[:, None].float(), w)
        sums = _box_sum(cov.reshape(batch, k * channels, height, width), w)
        cov = (sums / count.clamp_min(1)).reshape(cov.shape)
        looks = looks * count.clamp_min(1) / plan.kappa
    diagonal = cov[:, :, list(INTENSITY_BANDS[plan.layout])]
    joint = joint & (diagonal > 0).all(2).all(1)
    return Stack(cov, looks, joint, plan.layout)


def _decide_units(settings, readers, samples, feedback) -> str:
    if settings.layout == "c2":
        return "intensity"
    if settings.units is not None:
        return settings.units
    guesses = {}
    for date, (reader, bands) in enumerate(zip(readers, samples), 1):
        for band, sample in enumerate(bands, 1):
            guess = speckle.detect_units(sample.valid_values(), reader.info.descriptions[band - 1])
            if guess:
                guesses.setdefault(guess, []).append(f"date {date} band {band}")
    if len(guesses) > 1:
        detail = "; ".join(f"{units}: {', '.join(where)}" for units, where in sorted(guesses.items()))
        raise SarDespeckleError(
            f"The dates look like different units ({detail}): convert them to the same units, or set "
            "INPUT_UNITS."
        )
    if guesses:
        units = next(iter(guesses))
        feedback.info(f"Input units detected: {units}.")
        return units
    feedback.warn("Could not tell whether the inputs are intensity or amplitude; assuming intensity. "
                  "Set INPUT_UNITS if they are amplitude.")
    return "intensity"


def _sample(stack_reader: StackReader, halo: int):
    """Evenly spread windows of the stack, read with ``halo`` pixels of context."""
    windows = speckle.sample_windows(stack_reader.height, stack_reader.width, SAMPLE_PIXELS)
    return [stack_reader.read(r - halo, c - halo, h + 2 * halo, w + 2 * halo) for r, c, h, w in windows]


def _inner(array: np.ndarray, halo: int) -> np.ndarray:
    return array[..., halo: array.shape[-2] - halo, halo: array.shape[-1] - halo] if halo else array


def _plan(settings, readers, raw, halo, feedback) -> _Plan:
    """Units, value checks, looks, averaging factor and gains, from the sampled windows."""
    k, bands = len(readers), LAYOUT_BANDS[settings.layout]
    inner = [(_inner(v, halo), _inner(ok, halo)) for v, ok in raw]
    samples = [
        [speckle.BandSample([v[d * bands + b] for v, _ in inner], [ok[d * bands + b] for _, ok in inner])
         for b in range(bands)]
        for d in range(k)
    ]
    units = _decide_units(settings, readers, samples, feedback)
    diagonal = INTENSITY_BANDS[settings.layout]
    for date, bands_of_date in enumerate(samples, 1):
        for band in diagonal:
            try:
                speckle.check_values(bands_of_date[band].valid_values(), units, band + 1)
            except SarDespeckleError as error:
                raise SarDespeckleError(f"Date {date} ('{readers[date - 1].info.path}'): {error}") from None
    plan = _Plan(settings.layout, units, (1.0,) * k, 1.0, ((1.0,) * len(diagonal),) * k, 1,
                 settings.zeros_as_nodata)
    linear = [_linear(torch.from_numpy(v)[None], torch.from_numpy(ok)[None], plan) for v, ok in inner]
    covs = [c[0].numpy() for c, _ in linear]  # (k, C, H, W)
    joints = [j[0].numpy() for _, j in linear]
    if not any(j.any() for j in joints):
        hint = " (exact zeros count as nodata; turn ZEROS_AS_NODATA off if they are data)"
        raise SarDespeckleError(
            "No pixel is valid on every date: all are nodata, NaN or zero somewhere"
            f"{hint if settings.zeros_as_nodata else ''}. Check that the dates overlap."
        )
    if settings.looks is None:
        looks = tuple(
            date_looks([[c[d, b] for c in covs] for b in diagonal], joints) for d in range(k)
        )
        if settings.layout == "c2":  # two estimates that can only err low: take the larger
            from_coherence = tuple(coherence_looks([c[d] for c in covs], joints) for d in range(k))
            feedback.info("Looks from intensities: " + ", ".join(f"{v:.2f}" for v in looks)
                          + "; from the VV/VH coherence: " + ", ".join(f"{v:.2f}" for v in from_coherence) + ".")
            looks = tuple(max(a, b) for a, b in zip(looks, from_coherence))
        feedback.info("Estimated looks per date: " + ", ".join(f"{v:.2f}" for v in looks) + ".")
    else:
        looks = tuple(settings.looks) * (k if len(settings.looks) == 1 else 1)
    kappa = 1.0
    if settings.window > 1:
        kappa = float(np.mean([
            averaging_factor([c[d, b] for c in covs], joints, looks[d], settings.window)
            for d in range(k) for b in diagonal
        ]))
        feedback.info(f"A {settings.window} x {settings.window} boxcar multiplies the looks by "
                      f"{settings.window ** 2 / kappa:.1f} (speckle correlation factor {kappa:.2f}).")
    gains = ((1.0,) * len(diagonal),) * k
    if settings.normalise:
        intensities = np.concatenate([c[:, list(diagonal)].reshape(k, len(diagonal), -1) for c in covs], -1)
        valid = np.concatenate([j.reshape(-1) for j in joints])
        gains = tuple(tuple(float(g) for g in row) for row in radiometric_gains(intensities, valid, looks))
        feedback.info("Radiometric gains per date: " + "; ".join(
            ", ".join(f"{g:.3f}" for g in row) for row in gains) + ".")
    return _Plan(settings.layout, units, looks, kappa, gains, settings.window, settings.zeros_as_nodata)


class _SplitSink:
    """Receives (3, rows, cols) strips of (map, changed, date), NaN = nodata, and writes each."""

    def __init__(self, map_writer, mask_writer, date_writer, candidate_dates: bool) -> None:
        self.writers = (map_writer, mask_writer, date_writer)
        self.candidate_dates = candidate_dates
        self.changed = 0
        self.valid = 0

    def write(self, values, row, col):
        nodata = np.isnan(values[0])
        self.valid += int((~nodata).sum())
        self.changed += int((values[1] == 1).sum())
        map_writer, mask_writer, date_writer = self.writers
        if map_writer is not None:
            map_writer.write(np.where(nodata, np.float32(MAP_NODATA), values[0])[None], row, col)
        if mask_writer is not None:
            mask_writer.write(np.where(nodata, MASK_NODATA, values[1]).astype(np.uint8)[None], row, col)
        if date_writer is not None:
            dates = values[2] if self.candidate_dates else np.where(values[1] == 1, values[2], 0)
            date_writer.write(np.where(nodata, MASK_NODATA, dates).astype(np.uint8)[None], row, col)


def detect_changes(
    inputs: Sequence[str],
    outputs: ChangeOutputs,
    settings: ChangeSettings = ChangeSettings(),
    feedback: Feedback | None = None,
) -> ChangeReport:
    """Detect changes across the co-registered rasters ``inputs`` (in date order).

    Writes the requested outputs: CHANGE_MAP (float32 p-value of no change, nodata -1),
    CHANGE_MASK (uint8, 1 = changed, 0 = unchanged, 255 = nodata), CHANGE_DATE (uint8, index of
    the first date after the first change, 0 = none, 255 = nodata) and CHANGE_POLYGONS (changed
    regions with their area and first change date). Rasters keep date 1's size, CRS and
    geotransform. Pixels that are nodata, NaN or (with ``zeros_as_nodata``) zero on any date are
    nodata. Bad input raises :class:`SarDespeckleError` before anything is written; on any error
    or cancel no output is left.
    """
    feedback = feedback or Feedback()
    inputs = list(inputs)
    _check_settings(settings, len(inputs))
    _check_outputs(outputs)
    readers = _open_dates(inputs, settings.layout)
    stack_reader = StackReader(readers)
    detector = DETECTORS[settings.method](settings)
    halo = settings.window // 2 + detector.halo
    raw = _sample(stack_reader, halo)
    plan = _plan(settings, readers, raw, halo, feedback)
    effective = tuple(n * settings.window ** 2 / plan.kappa for n in plan.looks)
    p, _ = BLOCKS[settings.layout]
    if settings.method == "omnibus" and min(effective) < p - 1 + MIN_LOOKS_MARGIN:
        raise SarDespeckleError(
            f"The C2 test needs more than {p - 1} look per date (the determinant of single-look C2 is "
            f"zero); the dates have {min(effective):.2f}. Set WINDOW to 3 or more, or use BAND_LAYOUT dual."
        )
    device = resolve_device(settings.device, feedback.warn)
    samples = []
    for values, valid in raw:
        stack = _prepare(torch.from_numpy(values)[None].to(device), torch.from_numpy(valid)[None].to(device), plan)
        samples.append(stack.crop(halo))
    if not any(bool(s.valid.any()) for s in samples):
        raise SarDespeckleError("No pixel is valid on every date after averaging: check the inputs' nodata.")
    detector.fit(samples, feedback)
    del samples, raw
    feedback.info(f"Running {detector.name} on {device.type}.")

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        stack = _prepare(values, valid, plan)
        change_map, changed, date = detector.detect(stack)
        result = torch.stack([change_map.float(), changed.float(), date.float()], 1)
        return torch.where(stack.valid[:, None], result, torch.full_like(result, math.nan))

    info = readers[0].info
    record = {
        "algorithm": "change_detection",
        "method": detector.name,
        "parameters": {key: value for key, value in asdict(settings).items() if key != "tile"},
        "dates": [os.path.basename(path) for path in inputs],
        "units": plan.units,
        "looks": list(plan.looks),
        "effective_looks": list(effective),
        "averaging_factor": plan.kappa,
        "gains": [list(row) for row in plan.gains],
        "map": detector.map_kind,
        "plugin_version": plugin_version(),
        **detector.record(),
    }
    written: list[str] = []
    scratch = tempfile.mkdtemp(prefix=".change-", dir=_scratch_folder(outputs))
    try:
        counts, polygons = _run(stack_reader, info, process, plan, settings, detector, outputs, record,
                                device, scratch, written, feedback)
    except BaseException:
        from .regions import remove_vector

        for path in written:
            if path == outputs.change_polygons:
                remove_vector(path)
            elif os.path.exists(path):
                os.remove(path)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ChangeReport(
        outputs={key: path for key, path in asdict(outputs).items() if path},
        units=plan.units,
        looks=plan.looks,
        effective_looks=effective,
        averaging_factor=plan.kappa,
        gains=plan.gains,
        detector={"name": detector.name, **detector.record()},
        changed_fraction=counts[0] / max(counts[1], 1),
        polygons=polygons,
        device=device.type,
    )


def _scratch_folder(outputs: ChangeOutputs) -> str | None:
    """A writable folder beside the outputs for intermediate rasters (system temp otherwise)."""
    for path in (outputs.change_polygons, outputs.change_mask, outputs.change_date, outputs.change_map):
        folder = os.path.dirname(os.path.abspath(path)) if path else ""
        if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):
            return folder
    return None


def _run(stack_reader, info, process, plan, settings, detector, outputs, record, device, scratch, written,
         feedback) -> tuple[tuple[int, int], int | None]:
    """The tiled pass, then the sieve (in place), the dates it cleared and the polygons.

    Returns ((changed pixels, valid pixels), polygon count or None).
    """
    from . import regions

    k = len(plan.looks)
    sieve = settings.min_area > 1
    mask_path = outputs.change_mask or (
        os.path.join(scratch, "mask.tif")
        if outputs.change_polygons or (sieve and outputs.change_date) else None
    )
    date_path = outputs.change_date or (
        os.path.join(scratch, "date.tif") if outputs.change_polygons and k > 2 else None
    )
    descriptions = {
        "map": detector.map_kind,
        "mask": "change mask: 1 changed, 0 unchanged",
        "date": f"first change: index (2..{k}) of the first date after it, 0 none",
    }
    with bounded_gdal_cache():
        writers = [
            RasterWriter(path, info, 1, nodata, [descriptions[kind]], {**record, "output": kind}, data_type)
            if path else None
            for kind, path, nodata, data_type in (
                ("map", outputs.change_map, MAP_NODATA, gdal.GDT_Float32),
                ("mask", mask_path, MASK_NODATA, gdal.GDT_Byte),
                ("date", date_path, MASK_NODATA, gdal.GDT_Byte),
            )
        ]
        tile = settings.tile or tile_for_width(info.width, info.band_count * k + 3)
        tile = min(tile, -(-max(info.width, info.height) // 64) * 64)  # small images: one tile
        options = TilingOptions(tile, settings.window // 2 + detector.halo, 0, device=device)
        with contextlib.ExitStack() as stack:
            sink = _SplitSink(*(stack.enter_context(w) if w else None for w in writers), sieve and bool(date_path))
            run_tiled(stack_reader, sink, process, options, 3, feedback=feedback)
        written.extend(w.path for w in writers if w)
        counts = (sink.changed, sink.valid)
        if sieve and mask_path:
            feedback.info(f"Merging regions smaller than {settings.min_area} pixels into their surroundings.")
            counts = regions.sieve_in_place(mask_path, settings.min_area, MASK_NODATA)
            if date_path:
                regions.finalise_dates(date_path, mask_path, MASK_NODATA)
        polygons = None
        if outputs.change_polygons:
            written.append(outputs.change_polygons)
            polygons = regions.polygonize_changes(
                mask_path, outputs.change_polygons, date_path if k > 2 else None,
                MASK_NODATA, feedback.is_cancelled,
            )
            feedback.info(f"Wrote {polygons} change polygon(s) to {outputs.change_polygons}.")
    return counts, polygons
