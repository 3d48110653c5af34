"""Quality metrics: despeckling (full-reference, on amplitude), dual-pol covariance and change detection.

Despeckling, as the SAR-CNN / SAR2SAR / MERLIN papers report it: both metrics take linear intensities (H, W) or (1, 1, H, W), compare their square roots, and use
as peak (dynamic range) the 99th percentile of the reference amplitude. Estimates are not
clipped. Computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

#: SSIM constants and Gaussian window (Wang et al. 2004).
SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW = 0.01, 0.03, 1.5, 11


def _amplitudes(estimate: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    est = estimate.detach().double().clamp_min(0).sqrt().reshape(1, 1, *estimate.shape[-2:])
    ref = reference.detach().double().clamp_min(0).sqrt().reshape(1, 1, *reference.shape[-2:])
    peak = float(torch.quantile(ref.flatten().cpu(), 0.99))
    return est, ref, peak


def psnr_amplitude(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR (dB) of ``sqrt(estimate)`` against ``sqrt(reference)``, peak = 99th percentile."""
    est, ref, peak = _amplitudes(estimate, reference)
    mse = float(((est - ref) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(peak ** 2 / mse)


def ssim_amplitude(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM of ``sqrt(estimate)`` against ``sqrt(reference)``: 11 x 11 Gaussian window
    (sigma 1.5), K1 = 0.01, K2 = 0.03, dynamic range = the 99th-percentile peak; over the
    positions where the window fits inside the image."""
    est, ref, peak = _amplitudes(estimate, reference)
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=est.device) - SSIM_WINDOW // 2
    g = torch.exp(-(offsets ** 2) / (2 * SSIM_SIGMA ** 2))
    window = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window)

    mu_e, mu_r = blur(est), blur(ref)
    var_e = blur(est * est) - mu_e ** 2
    var_r = blur(ref * ref) - mu_r ** 2
    cov = blur(est * ref) - mu_e * mu_r
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    ssim = ((2 * mu_e * mu_r + c1) * (2 * cov + c2)) / ((mu_e ** 2 + mu_r ** 2 + c1) * (var_e + var_r + c2))
    return float(ssim.mean())


# ------------------------------------------------------------------------------------------
# Change detection: confusion counts of a binary change mask against the truth


def confusion(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """True/false positives/negatives (``tp``, ``tn``, ``fp``, ``fn``) of bool masks; 1 = changed."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    tp = int((predicted & truth).sum())
    tn = int((~predicted & ~truth).sum())
    fp = int((predicted & ~truth).sum())
    fn = int((~predicted & truth).sum())
    return {"tp": tp, "tn": tn, "fp": fp, "fn": fn}


def scores(c: dict) -> dict:
    """Overall accuracy, Cohen's kappa, F1, false and missed alarms (counts and rates) of confusion counts."""
    n = c["tp"] + c["tn"] + c["fp"] + c["fn"]
    oa = (c["tp"] + c["tn"]) / n
    expected = ((c["tp"] + c["fp"]) * (c["tp"] + c["fn"]) + (c["fn"] + c["tn"]) * (c["fp"] + c["tn"])) / n ** 2
    kappa = (oa - expected) / (1 - expected) if expected < 1 else 0.0
    f1 = 2 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1)
    return {"oa": oa, "kappa": kappa, "f1": f1, "false_alarms": c["fp"], "missed_alarms": c["fn"],
            "false_alarm_rate": c["fp"] / max(c["fp"] + c["tn"], 1), "missed_rate": c["fn"] / max(c["fn"] + c["tp"], 1)}


def change_scores(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """:func:`scores` of bool masks ``predicted`` and ``truth`` (any matching shapes)."""
    return scores(confusion(predicted, truth))


def dualpol_errors(c2: np.ndarray, c11: np.ndarray, c22: np.ndarray, coherence: np.ndarray,
                   where: np.ndarray | None = None) -> dict:
    """How well C2 bands ``c2`` (C11, C22, Re C12, Im C12; (4, rows, cols), linear) keep the
    polarimetric information of the true covariance (``c11``, ``c22``, complex ``coherence``
    <Svv conj(Svh)> / sqrt(C11 C22)): the mean absolute error of the VV/VH ratio C11 / C22 in
    dB (``ratio_db``) and of the coherence magnitude |C12| / sqrt(C11 C22) (``coherence``), over
    the pixels ``where`` (all when None) at which both diagonal terms are positive."""
    c11_hat, c22_hat, re, im = np.asarray(c2, np.float64)
    ok = (c11_hat > 0) & (c22_hat > 0)
    ok &= True if where is None else where
    ratio = 10 * np.log10(c11_hat[ok] / c22_hat[ok])
    magnitude = np.hypot(re[ok], im[ok]) / np.sqrt(c11_hat[ok] * c22_hat[ok])
    truth = np.broadcast_to(np.asarray(c11, np.float64) / np.asarray(c22, np.float64), ok.shape)[ok]
    return {
        "ratio_db": float(np.abs(ratio - 10 * np.log10(truth)).mean()),
        "coherence": float(np.abs(magnitude - np.broadcast_to(np.abs(coherence), ok.shape)[ok]).mean()),
    }
