"""Slow, direct numpy references for the classical filters of ``core.despeckle.filters``.

Every filter loops over pixels and over the window's offsets and applies the published formula
as written, in float64, so that it is easy to check by eye. Same semantics as the torch
filters: ``image`` (H, W) linear intensity, ``valid`` (H, W) bool; pixels outside the image
and invalid pixels never enter a statistic; local variances are unbiased (divisor n - 1); a
pixel whose window holds fewer than 2 valid pixels keeps its value; invalid pixels give 0.
Only for tests on small images (a 24 x 20 image takes well under a second per filter).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

MIN_VALID = 2
POINT_TARGET_COUNT = 5


def window_values(image, valid, y, x, offsets):
    """Values of the valid in-image pixels at (y + i, x + j) for (i, j) in offsets."""
    h, w = image.shape
    values = [image[y + i, x + j] for i, j in offsets
              if 0 <= y + i < h and 0 <= x + j < w and valid[y + i, x + j]]
    return np.array(values, dtype=np.float64)


def square(radius):
    return [(i, j) for i in range(-radius, radius + 1) for j in range(-radius, radius + 1)]


def stats(values):
    """(n, mean, unbiased variance) of a 1-D array; zeros when empty."""
    n = values.size
    mean = values.mean() if n else 0.0
    var = ((values - mean) ** 2).sum() / (n - 1) if n > 1 else 0.0
    return n, mean, var


def mmse(z, mean, var, noise_var, exact):
    """Lee's MMSE estimate; W = 1 - Cu^2/Ci^2 or, exact, (1 - Cu^2/Ci^2)/(1 + Cu^2), in [0, 1]."""
    if var <= 0:
        weight = 0.0 if mean != 0 else 1.0
    else:
        weight = 1.0 - noise_var * mean * mean / var
        if exact:
            weight /= 1.0 + noise_var
    weight = min(max(weight, 0.0), 1.0)
    return mean + weight * (z - mean)


def per_pixel(image, valid, estimate):
    """Apply estimate(y, x) at every valid pixel; 0 elsewhere."""
    out = np.zeros(image.shape, dtype=np.float64)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            if valid[y, x]:
                out[y, x] = estimate(y, x)
    return out


def boxcar(image, valid, looks, window):
    offsets = square(window // 2)
    return per_pixel(image, valid, lambda y, x: window_values(image, valid, y, x, offsets).mean())


def _local(image, valid, window, rule):
    """Filters that only need the centre value and the window's (n, mean, var)."""
    offsets = square(window // 2)

    def estimate(y, x):
        n, mean, var = stats(window_values(image, valid, y, x, offsets))
        return rule(image[y, x], mean, var) if n >= MIN_VALID else image[y, x]

    return per_pixel(image, valid, estimate)


def lee(image, valid, looks, window):
    """Lee 1980 in Lopes et al. 1990's form: W = 1 - Cu^2 / Ci^2, clipped to [0, 1]."""
    return _local(image, valid, window, lambda z, m, v: mmse(z, m, v, 1.0 / looks, exact=False))


def kuan(image, valid, looks, window):
    """Kuan 1987: W = (1 - Cu^2 / Ci^2) / (1 + Cu^2), clipped to [0, 1]."""
    return _local(image, valid, window, lambda z, m, v: mmse(z, m, v, 1.0 / looks, exact=True))


def gamma_map(image, valid, looks, window):
    """Gamma-MAP, Lopes, Nezry, Touzi, Laur 1990, with Cmax = sqrt(2) Cu."""
    cu2 = 1.0 / looks

    def rule(z, mean, var):
        ci2 = var / (mean * mean) if mean > 0 else 0.0
        if ci2 <= cu2:
            return mean
        if ci2 >= 2.0 * cu2:
            return z
        alpha = (1.0 + cu2) / (ci2 - cu2)
        b = alpha - looks - 1.0
        d = mean * mean * b * b + 4.0 * alpha * looks * mean * z
        return (b * mean + math.sqrt(d)) / (2.0 * alpha)

    return _local(image, valid, window, rule)


def frost(image, valid, looks, window, damping=2.0):
    """Frost: weights exp(-D * Ci^2 * sqrt(i^2 + j^2)) over the valid pixels of the window."""
    radius = window // 2
    offsets = square(radius)
    h, w = image.shape

    def estimate(y, x):
        n, mean, var = stats(window_values(image, valid, y, x, offsets))
        if n < MIN_VALID:
            return image[y, x]
        alpha = damping * var / (mean * mean) if mean > 0 else 0.0
        num = den = 0.0
        for i, j in offsets:
            if 0 <= y + i < h and 0 <= x + j < w and valid[y + i, x + j]:
                weight = math.exp(-alpha * math.hypot(i, j))
                num += weight * image[y + i, x + j]
                den += weight
        return num / den

    return per_pixel(image, valid, estimate)


def refined_lee_geometry(window):
    """PolSARpro's (sub-window side, spacing) table for refined Lee."""
    table = {5: (3, 1), 7: (3, 2), 9: (5, 2), 11: (5, 3), 13: (5, 4), 15: (7, 4), 17: (7, 5),
             19: (7, 6), 21: (9, 6)}
    return table[window]


# Directional windows as predicates on the (row, column) offset (i, j), in the filter's order.
DIRECTIONAL_WINDOWS = (
    lambda i, j: j <= 0, lambda i, j: j >= 0,          # left, right of a vertical edge
    lambda i, j: i <= 0, lambda i, j: i >= 0,          # above, below a horizontal edge
    lambda i, j: j >= i, lambda i, j: j <= i,          # upper-right, lower-left of the diagonal
    lambda i, j: i + j <= 0, lambda i, j: i + j >= 0,  # upper-left, lower-right of anti-diagonal
)
# Gradient masks on the 3 x 3 grid of sub-window means, and the two cells across each edge.
GRADIENT_MASKS = (
    np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
    np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
    np.array([[0, 1, 1], [-1, 0, 1], [-1, -1, 0]]),
    np.array([[1, 1, 0], [1, 0, -1], [0, -1, -1]]),
)
SIDES = (((1, 0), (1, 2)), ((0, 1), (2, 1)), ((0, 2), (2, 0)), ((0, 0), (2, 2)))


def refined_lee(image, valid, looks, window):
    """Refined Lee 1981: edge direction from a 3 x 3 grid of sub-window means, MMSE (exact
    weight) on the directional window on the side closer to the centre sub-window (ties: to
    the centre pixel)."""
    radius = window // 2
    side, spacing = refined_lee_geometry(window)
    cu2 = 1.0 / looks

    def estimate(y, x):
        means = np.zeros((3, 3))
        empty = np.zeros((3, 3), dtype=bool)
        for gi in range(3):
            for gj in range(3):
                cy, cx = y + (gi - 1) * spacing, x + (gj - 1) * spacing
                values = window_values(image, valid, cy, cx, square(side // 2))
                empty[gi, gj] = values.size == 0
                means[gi, gj] = values.mean() if values.size else 0.0
        means[empty] = means[1, 1]
        gradients = [abs((mask * means).sum()) for mask in GRADIENT_MASKS]
        direction = int(np.argmax(gradients))  # the first maximum
        (a, b) = SIDES[direction]
        def gap(cell, target):
            return math.inf if empty[cell] else abs(means[cell] - target)

        if gap(a, means[1, 1]) != gap(b, means[1, 1]):
            side_b = gap(b, means[1, 1]) < gap(a, means[1, 1])
        else:
            side_b = gap(b, image[y, x]) < gap(a, image[y, x])
        inside = DIRECTIONAL_WINDOWS[2 * direction + side_b]
        offsets = [(i, j) for i, j in square(radius) if inside(i, j)]
        n, mean, var = stats(window_values(image, valid, y, x, offsets))
        return mmse(image[y, x], mean, var, cu2, exact=True) if n >= MIN_VALID else image[y, x]

    return per_pixel(image, valid, estimate)


def sigma_range(looks, sigma):
    """(eta1, eta2, truncated variance) for Gamma(L, 1/L) speckle, with scipy root finding."""
    def cdf(t):
        return special.gammainc(looks, looks * t)

    def mass(a, b, order=0):
        """E[S^order; a <= S <= b]."""
        scale = (looks + 1.0) / looks if order == 2 else 1.0
        shape = looks + order
        return scale * (special.gammainc(shape, looks * b) - special.gammainc(shape, looks * a))

    def upper(eta1):
        target = cdf(eta1) + sigma
        return optimize.brentq(lambda t: cdf(t) - target, eta1, 1e3, xtol=1e-14)

    eta1_max = optimize.brentq(lambda t: cdf(t) - (1 - sigma), 0, 1e3, xtol=1e-14)
    eta1 = optimize.brentq(lambda e: mass(e, upper(e), 1) / sigma - 1.0, 0.0,
                           eta1_max * (1 - 1e-9), xtol=1e-14)
    eta2 = upper(eta1)
    return eta1, eta2, mass(eta1, eta2, 2) / sigma - 1.0


def lee_sigma(image, valid, looks, window, sigma=0.9, threshold=None):
    """Improved Lee sigma filter, Lee, Wen, Ainsworth, Chen, Chen 2009."""
    if threshold is None:
        threshold = np.percentile(image[valid], 98)
    cu2 = 1.0 / looks
    eta1, eta2, truncated_var = sigma_range(looks, sigma)
    h, w = image.shape
    bright = valid & (image > threshold)
    count = np.zeros((h, w), dtype=int)
    for y in range(h):
        for x in range(w):
            count[y, x] = sum(bright[y + i, x + j] for i, j in square(1)
                              if 0 <= y + i < h and 0 <= x + j < w)
    detected = count >= POINT_TARGET_COUNT

    def point_target(y, x):
        return detected[y, x] or (bright[y, x] and any(
            detected[y + i, x + j] for i, j in square(1) if 0 <= y + i < h and 0 <= x + j < w))

    def estimate(y, x):
        z = image[y, x]
        if point_target(y, x):
            return z
        n3, mean3, var3 = stats(window_values(image, valid, y, x, square(1)))
        prior = mmse(z, mean3, var3, cu2, exact=True) if n3 >= MIN_VALID else z
        values = window_values(image, valid, y, x, square(window // 2))
        kept = values[(values >= eta1 * prior) & (values <= eta2 * prior)]
        n, mean, var = stats(kept)
        return mmse(z, mean, var, truncated_var, exact=True) if n >= MIN_VALID else prior

    return per_pixel(image, valid, estimate)


REFERENCES = {
    "boxcar": boxcar, "lee": lee, "refined_lee": refined_lee, "lee_sigma": lee_sigma,
    "frost": frost, "gamma_map": gamma_map, "kuan": kuan,
}
