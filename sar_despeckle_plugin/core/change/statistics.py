"""The tests' statistics, in torch: the omnibus Wishart likelihood-ratio test and its p-value
approximations, the sequential R_j tests and the change dates they give, and the standardised
log-ratio index with its p-value (formulas in the package docstring).

Layouts: covariance stacks are (B, k, C, H, W) (batch, dates, layout bands, rows, cols), linear;
looks are (B, k, H, W) or broadcastable, e.g. (1, k, 1, 1); per-pixel results are (B, H, W).
"""

from __future__ import annotations

import math

import torch

from ..choices import INTENSITY_BANDS
from .settings import BLOCKS, PVALUE_APPROXIMATIONS

#: |C2| is floored at this fraction of C11 C22 (a coherence of 1 - 5e-7), so rounding in
#: perfectly coherent pixels cannot make the log-determinant infinite.
DET_FLOOR = 1e-6


# ------------------------------------------------------------------------------------------
# Wishart statistics


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


# ------------------------------------------------------------------------------------------
# Log-ratio


def log_ratios(
    before: torch.Tensor, after: torch.Tensor, looks_before: torch.Tensor, looks_after: torch.Tensor,
    layout: str,
) -> torch.Tensor:
    """Standardised signed log-ratios D_c of the intensity channels between two dates:
    (B, C, H, W) -> (B, channels, H, W), float64; mean 0 and variance 1 without change."""
    n_a, n_b = looks_before.double(), looks_after.double()
    bias = (torch.special.digamma(n_b) - n_b.log()) - (torch.special.digamma(n_a) - n_a.log())
    scale = (torch.special.polygamma(1, n_a) + torch.special.polygamma(1, n_b)).sqrt()
    return torch.stack([
        (after[:, c].double().log() - before[:, c].double().log() - bias) / scale
        for c in INTENSITY_BANDS[layout]
    ], 1)


def log_ratio_index(
    before: torch.Tensor, after: torch.Tensor, looks_before: torch.Tensor, looks_after: torch.Tensor,
    layout: str,
) -> torch.Tensor:
    """Standardised log-ratio change index x >= 0 between two dates: (B, C, H, W) -> (B, H, W)."""
    return log_ratios(before, after, looks_before, looks_after, layout).square().sum(1).sqrt()


def log_ratio_pvalue(index: torch.Tensor, layout: str) -> torch.Tensor:
    """Approximate p-value of no change: index^2 ~ chi2 with one degree of freedom per channel."""
    return chi2_tails(index.double() ** 2, len(INTENSITY_BANDS[layout]))[0]
