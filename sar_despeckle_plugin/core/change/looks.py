"""What the tests need to know about the dates, from the sample (numpy), beyond their looks
(``core.stack.stack_looks``): the speckle correlation factor of the boxcar, and the radiometric
gains that match every date's level to date 1's.

Arrays are per sample window: intensities (rows, cols) with their validity masks; C2
covariances (4, rows, cols) (C11, C22, Re C12, Im C12, linear).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


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
