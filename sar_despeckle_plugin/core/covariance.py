"""Dual-pol C2 covariance matrices: their four real bands, the four intensities they are
recovered from, and the validity every output keeps. One place for single-date and
multitemporal despeckling.

Bands, linear power, at each pixel (``core.choices.BAND_LAYOUT_LABELS`` ``c2``)::

    C11 = <|Svv|^2>,   C22 = <|Svh|^2>,   C12 = <Svv conj(Svh)> = Re C12 + j Im C12,

``<.>`` the average over the looks, C21 = conj(C12): the convention of SNAP's C2 products and of
the synthetic data of this code base's tests and benchmarks.

The four intensities of :func:`intensities_from_c2`, each an L-look speckled intensity like
C11 and C22 themselves::

    |Svv|^2          = C11
    |Svh|^2          = C22
    |Svv + Svh|^2    = C11 + C22 + <Svv conj(Svh)> + <Svh conj(Svv)> = C11 + C22 + 2 Re C12
    |Svv + j Svh|^2  = C11 + C22 + <Svv conj(j Svh)> + <j Svh conj(Svv)>
                     = C11 + C22 - j C12 + j conj(C12)
                     = C11 + C22 - j (Re C12 + j Im C12) + j (Re C12 - j Im C12)
                     = C11 + C22 + 2 Im C12

(conj(j Svh) = -j conj(Svh)). The map is linear and invertible (:func:`c2_from_intensities`), so
C2 is recovered exactly from the four intensities, and a despeckler of intensities gives a
despeckler of C2. Every function takes and returns the four bands as a sequence of arrays of
one shape, numpy or torch alike, except :func:`valid_covariance` (torch) and
:func:`bands_from_matrix` (numpy).

A covariance matrix is valid (positive semi-definite) when C11 >= 0, C22 >= 0 and
|C12|^2 <= C11 C22: the VV/VH coherence |C12| / sqrt(C11 C22) is at most 1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

#: :func:`valid_covariance` shrinks C12 to this share of sqrt(C11 C22) at most, so that the
#: bound still holds after rounding to float32 (relative error 6e-8 per value).
COHERENCE_CEILING = 1.0 - 1e-6
#: :func:`invalid_covariances` lets |C12|^2 pass C11 C22 by this share (float32 rounding of
#: inputs that were valid).
INVALID_TOLERANCE = 1e-5


def bands_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """Covariance matrices (rows, cols, 2, 2) complex, [[C11, C12], [conj(C12), C22]] -> the
    C2 bands (C11, C22, Re C12, Im C12) (4, rows, cols) float32."""
    c12 = matrix[..., 0, 1]
    return np.stack([matrix[..., 0, 0].real, matrix[..., 1, 1].real, c12.real, c12.imag]).astype(np.float32)


def intensities_from_c2(c2: Sequence):
    """(C11, C22, Re C12, Im C12) -> the intensities (|Svv|^2, |Svh|^2, |Svv + Svh|^2,
    |Svv + j Svh|^2) (see the module doc)."""
    c11, c22, re, im = c2
    return c11, c22, c11 + c22 + 2 * re, c11 + c22 + 2 * im


def c2_from_intensities(intensities: Sequence):
    """The inverse of :func:`intensities_from_c2`: (|Svv|^2, |Svh|^2, |Svv + Svh|^2,
    |Svv + j Svh|^2) -> (C11, C22, Re C12, Im C12), exact."""
    vv, vh, in_phase, quadrature = intensities
    return vv, vh, (in_phase - vv - vh) / 2, (quadrature - vv - vh) / 2


def valid_covariance(c2: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The nearest valid covariance that never inflates the diagonal: C11 and C22 clamped at 0,
    then C12 shrunk (its phase kept) where |C12| passes :data:`COHERENCE_CEILING` x
    sqrt(C11 C22), to that bound (0 where C11 or C22 is 0)."""
    c11, c22, re, im = c2
    c11, c22 = c11.clamp_min(0), c22.clamp_min(0)
    bound = COHERENCE_CEILING * (c11.double() * c22.double()).sqrt()
    magnitude = torch.hypot(re.double(), im.double())
    scale = torch.where(magnitude > bound, bound / magnitude.clamp_min(1e-300), torch.ones_like(bound))
    return c11, c22, (re * scale).to(re.dtype), (im * scale).to(im.dtype)


def invalid_covariances(c2: Sequence[np.ndarray], valid: np.ndarray | None = None) -> int:
    """How many pixels (where ``valid``) of C2 bands are not a valid covariance: C11 or C22
    negative, or |C12|^2 above C11 C22 by more than :data:`INVALID_TOLERANCE`."""
    c11, c22, re, im = (np.asarray(band, np.float64) for band in c2)
    bad = (c11 < 0) | (c22 < 0) | (re ** 2 + im ** 2 > c11 * c22 * (1 + INVALID_TOLERANCE))
    return int((bad & valid).sum() if valid is not None else bad.sum())
