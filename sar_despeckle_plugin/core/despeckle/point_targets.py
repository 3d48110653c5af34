"""Point targets kept through a network: strong deterministic scatterers (corner reflectors,
ships, pylons) are not speckle, and calibration users measure them.

A despeckling network spreads an isolated bright pixel over its neighbours (the default network
keeps about 64 % of a corner reflector's peak). Here, as in the improved Lee sigma filter (Lee
et al. 2009), such pixels are found first and kept as measured:

1. **Background**: the mean linear intensity of the ring between the 3 x 3 and the
   ``BACKGROUND_WINDOW`` x ``BACKGROUND_WINDOW`` window around each pixel (valid pixels only), a
   local reflectivity estimate that the target itself hardly touches.
2. **Targets**: pixels more than ``MIN_CLUTTER_RATIO`` (20 dB) brighter than that background
   -- a dominant scatterer, the signal-to-clutter ratio calibration targets are built for
   (one-look speckle alone gets there with probability e^-100; texture rarely does) -- and,
   around them (3 x 3), the pixels of their impulse response brighter than the background times
   the Gamma(L, 1/L) speckle quantile exceeded with probability ``RESPONSE_FALSE_ALARM``.
3. The network reads the image with those pixels set to their background (so it does not smear
   them over their neighbours), and the output takes the input's values back at those pixels:
   the peak and its 3 x 3 energy are kept.

Layouts: linear intensity (B, 1, H, W), validity bool (B, 1, H, W).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

#: Side of the window whose ring (outside the central 3 x 3) gives the background (pixels).
BACKGROUND_WINDOW = 9
#: Smallest ratio of a target's peak to its background (20 dB). A lower bar leaves textured
#: scenes' bright pixels undespeckled: at the speckle quantile alone 1.5 % of a Sentinel-1 GRDH
#: crop's pixels passed, at 20 dB none did while a trihedral corner reflector stands at 24.6 dB.
MIN_CLUTTER_RATIO = 100.0
#: Probability that speckle alone makes a neighbour of a target part of its response.
RESPONSE_FALSE_ALARM = 1e-2
#: How far (pixels) the detection reads beyond a pixel: the background ring plus the 3 x 3 response.
REACH = BACKGROUND_WINDOW // 2 + 1


@functools.lru_cache(maxsize=64)
def speckle_quantile(looks: float, exceedance: float) -> float:
    """The intensity ratio q with P(S > q) = ``exceedance`` for Gamma(L, 1/L) speckle S (mean 1),
    by bisection on the regularised upper incomplete gamma function."""
    shape = torch.tensor(float(looks), dtype=torch.float64)
    low, high = 0.0, 1.0
    while float(torch.special.gammaincc(shape, shape * high)) > exceedance:
        high *= 2.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if float(torch.special.gammaincc(shape, shape * middle)) > exceedance:
            low = middle
        else:
            high = middle
    return high


def _box_sums(values: torch.Tensor, side: int) -> torch.Tensor:
    """Sum over the side x side window centred on each pixel (zeros beyond the edges)."""
    return F.avg_pool2d(values, side, 1, side // 2, count_include_pad=True) * (side * side)


def find_point_targets(intensity: torch.Tensor, valid: torch.Tensor, looks) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-target pixels and the local background.

    Args:
        intensity: linear intensity (B, 1, H, W), any value where invalid.
        valid: bool (B, 1, H, W).
        looks: the band's equivalent number of looks (float).
    Returns:
        ``(targets, background)``: bool (B, 1, H, W), True at a target's pixels (its peak and
        its bright 3 x 3 response), and the ring-mean background, linear intensity (B, 1, H, W)
        (0 where the ring holds no valid pixel).
    """
    weight = valid.to(intensity.dtype)
    values = torch.where(valid, intensity, torch.zeros_like(intensity))
    ring_sum = _box_sums(values, BACKGROUND_WINDOW) - _box_sums(values, 3)
    ring_count = _box_sums(weight, BACKGROUND_WINDOW) - _box_sums(weight, 3)
    background = ring_sum / ring_count.clamp_min(1.0)
    known = valid & (ring_count >= 0.5 * (BACKGROUND_WINDOW ** 2 - 9)) & (background > 0)
    peaks = known & (values > MIN_CLUTTER_RATIO * background)
    near_peak = F.max_pool2d(peaks.to(intensity.dtype), 3, 1, 1) > 0
    response = known & near_peak & (values > speckle_quantile(float(looks), RESPONSE_FALSE_ALARM) * background)
    return peaks | response, background


def keep_point_targets(despeckle, intensity: torch.Tensor, valid: torch.Tensor, looks) -> torch.Tensor:
    """Run ``despeckle(intensity)`` (linear intensity (B, 1, H, W) -> the same) with the point
    targets of :func:`find_point_targets` set to their background, then put their measured
    values back. Tiles need :data:`REACH` more halo than ``despeckle`` alone."""
    targets, background = find_point_targets(intensity, valid, looks)
    if not bool(targets.any()):
        return despeckle(intensity)
    estimate = despeckle(torch.where(targets, background, intensity))
    return torch.where(targets, intensity, estimate)
