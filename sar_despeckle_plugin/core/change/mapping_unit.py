"""The minimum mapping unit of a change map, measured on the image (MIN_AREA left empty).

A region of the mask is only evidence of change when it spans several *independent* samples of
the log-ratio's error: speckle (after the prefilter, what the despeckler left of it) is
correlated over an area A that grows with the resolution cell (oversampled products, the
range/azimuth looks of GRD products) and with the prefilter's footprint. A is measured on the
stack the detector decides on: the log-ratio of consecutive dates (linear intensities, summed
over the intensity channels), less its local mean over :data:`DETRENDING_WINDOW` pixels (which
removes the scene's and the changes' structure), gives the error field e; A = sum over lags up
to :data:`MAX_LAG` of max(rho_e, 0), the number of pixels per independent sample (1 for white
speckle with no prefilter). The unit is :data:`INDEPENDENT_SAMPLES` x A pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .. import stack as stack_tools
from ..choices import INTENSITY_BANDS

#: Independent samples of the log-ratio error a region must span to count as a change.
INDEPENDENT_SAMPLES = 4
#: Largest lag (pixels, each axis) of the autocorrelation summed into the correlation area.
MAX_LAG = 6
#: Side of the local mean removed from the log-ratio before its autocorrelation is measured.
DETRENDING_WINDOW = 15


def _error_field(cov: torch.Tensor, valid: torch.Tensor, layout: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per consecutive pair, (e, ok) of one window: the detrended log-ratio (H, W) and where it is
    defined. ``cov`` is (k, C, H, W) linear covariance, ``valid`` (H, W)."""
    fields = []
    channels = list(INTENSITY_BANDS[layout])
    logs = cov[:, channels].double().clamp_min(1e-30).log().sum(1)  # (k, H, W)
    ok = valid.double()
    count = stack_tools.box_sum(ok, DETRENDING_WINDOW)
    full = count >= 0.5 * DETRENDING_WINDOW ** 2
    for j in range(1, cov.shape[0]):
        ratio = torch.where(valid, logs[j] - logs[j - 1], torch.zeros_like(logs[j]))
        local = stack_tools.box_sum(ratio, DETRENDING_WINDOW) / count.clamp_min(1)
        fields.append((ratio - local, valid & full))
    return fields


def correlation_area(windows: Sequence[tuple[torch.Tensor, torch.Tensor]], layout: str) -> float:
    """A (pixels per independent sample, >= 1) of the log-ratio error, pooled over the sample
    ``windows``: (cov (k, C, H, W), valid (H, W)) each. 1 when too few pixels are valid."""
    sums: dict[tuple[int, int], list[float]] = {}
    for cov, valid in windows:
        for error, ok in _error_field(cov, valid, layout):
            height, width = error.shape
            if height <= 2 * MAX_LAG or width <= 2 * MAX_LAG:
                continue
            error = torch.where(ok, error, torch.zeros_like(error))
            for dy in range(-MAX_LAG, MAX_LAG + 1):
                for dx in range(0, MAX_LAG + 1):
                    if dx == 0 and dy < 0:
                        continue  # rho(-dy, -dx) = rho(dy, dx): half the lags suffice
                    a = (slice(max(dy, 0), height + min(dy, 0)), slice(dx, width))
                    b = (slice(max(-dy, 0), height + min(-dy, 0)), slice(0, width - dx))
                    both = ok[a] & ok[b]
                    total = sums.setdefault((dy, dx), [0.0, 0.0])
                    total[0] += float((error[a] * error[b])[both].sum())
                    total[1] += float(both.sum())
    zero = sums.get((0, 0))
    if zero is None or zero[1] < 1000 or not zero[0] > 0:
        return 1.0
    variance = zero[0] / zero[1]
    area = 1.0
    for (dy, dx), (product, count) in sums.items():
        if (dy, dx) != (0, 0) and count > 0:
            area += 2 * max(product / count / variance, 0.0)  # the lag and its mirror
    return area


def minimum_mapping_unit(area: float) -> int:
    """MIN_AREA in pixels for a log-ratio error correlated over ``area`` pixels."""
    return int(math.ceil(INDEPENDENT_SAMPLES * area))
