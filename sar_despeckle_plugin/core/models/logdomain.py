"""The normalised log-intensity domain every network of ours reads.

Speckle model: intensity I = R * S with S ~ Gamma(L, 1/L) (mean 1, variance 1/L). In the log
domain the speckle is additive, ``log I = log R + log S``, with ``E[log S] = psi(L) - ln L``
(the *bias*, -0.5772 for one look) and ``Var[log S] = psi1(L)`` (1.645 for one look).

Network input ``z`` (dimensionless, layout (B, 1, H, W)) is the debiased log intensity centred
on a *reference* level and divided by ``scale``::

    z = clip((log I - bias(L) - log reference) / scale, -clip, clip)

The reference is one linear intensity per image (the median of its valid pixels: the card's
normalisation ``kind`` ``median_log``, :func:`core.models.normalisation.reference_level`, computed by
the caller over the whole image so that every tile of a scene sees the same value). Centring on
it makes a network's output scale-equivariant: multiplying the image by ``a`` (another
calibration, DN instead of sigma0) multiplies the estimate by ``a``. ``scale`` brings the log
values (speckle std 1.28 for one look, scenes spanning a few ln units) to about unit spread, and
the clip keeps exact zeros and absurd values from reaching the network.
"""

from __future__ import annotations

import torch

from .normalisation import MEDIAN_LOG

#: ln-intensity units per normalised unit.
LOG_SCALE = 2.0
#: Normalised inputs are clipped to [-LOG_CLIP, LOG_CLIP] (8 x 2 ln units = 70 dB either way).
LOG_CLIP = 8.0


def log_bias(looks: float) -> float:
    """``E[log S] = psi(L) - ln L`` for Gamma(L, 1/L) speckle S (ln units; negative)."""
    value = torch.tensor(float(looks), dtype=torch.float64)
    return float(torch.special.digamma(value) - value.log())


def log_std(looks: float) -> float:
    """``sqrt(Var[log S]) = sqrt(psi1(L))`` for Gamma(L, 1/L) speckle S (ln units)."""
    value = torch.tensor(float(looks), dtype=torch.float64)
    return float(torch.special.polygamma(1, value).sqrt())


def looks_statistics(looks, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log bias ``psi(L) - ln L`` and log std ``sqrt(psi1(L))`` of ``looks`` (a float, or a
    tensor with one value per batch item) as (B, 1, 1, 1) tensors of ``like``'s dtype and device."""
    value = torch.as_tensor(looks, dtype=torch.float64, device=like.device)
    if value.dim() == 0:
        value = value.expand(like.shape[0])
    value = value.reshape(-1, 1, 1, 1)
    bias = torch.special.digamma(value) - value.log()
    std = torch.special.polygamma(1, value).sqrt()
    return bias.to(like.dtype), std.to(like.dtype)


def as_reference(reference, like: torch.Tensor) -> torch.Tensor:
    """A reference intensity (float, or tensor with one value per batch item) as (B, 1, 1, 1)."""
    value = torch.as_tensor(reference, dtype=like.dtype, device=like.device)
    if value.dim() == 0:
        value = value.expand(like.shape[0])
    return value.reshape(-1, 1, 1, 1)


def normalise_log(intensity: torch.Tensor, reference, looks, scale: float = LOG_SCALE) -> torch.Tensor:
    """Linear intensity (B, 1, H, W) -> normalised debiased log ``z`` (see the module doc).

    ``reference``: linear intensity, a float or one value per batch item; ``looks``: a float,
    or a tensor with one value per batch item (conditioned networks, trained on many looks).
    """
    reference = as_reference(reference, intensity)
    tiny = torch.finfo(intensity.dtype).tiny
    bias = log_bias(looks) if not torch.is_tensor(looks) else looks_statistics(looks, intensity)[0]
    z = (intensity.clamp_min(tiny).log() - bias - reference.clamp_min(tiny).log()) / scale
    return z.clamp(-LOG_CLIP, LOG_CLIP)


def intensity_to_log(intensity: torch.Tensor, reference, scale: float = LOG_SCALE) -> torch.Tensor:
    """Speckle-free linear intensity (B, 1, H, W) -> normalised log, no debiasing, no clip: the
    exact inverse of :func:`log_to_intensity` (the target of log-domain training)."""
    reference = as_reference(reference, intensity)
    tiny = torch.finfo(intensity.dtype).tiny
    return (intensity.clamp_min(tiny).log() - reference.clamp_min(tiny).log()) / scale


def log_to_intensity(z: torch.Tensor, reference, scale: float = LOG_SCALE) -> torch.Tensor:
    """Normalised log estimate ``z`` of log reflectivity (B, 1, H, W) -> linear intensity."""
    reference = as_reference(reference, z)
    return torch.exp(z * scale) * reference


def normalisation_record(looks: float, scale: float) -> dict:
    """What a model card says about the input normalisation (JSON-ready)."""
    return {
        "kind": MEDIAN_LOG,
        "domain": "log intensity, debiased, centred on log(reference), divided by scale",
        "reference": "median of the valid linear intensity of the whole image (fill_value)",
        "bias": log_bias(looks),
        "scale": scale,
        "clip": LOG_CLIP,
    }
