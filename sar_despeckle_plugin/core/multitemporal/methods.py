"""The multitemporal methods, on torch tensors.

Every method reads the intensity channels of a stack of k dates, LINEAR INTENSITY float32
(B, k, C, H, W) (C = 1 single-pol; 2 for VV, VH or C11, C22) with each date's validity
(B, k, H, W), and returns the despeckled intensities of the target dates (B, T, C, H, W), in
the order of ``targets`` (0-based date indices). Invalid pixels never enter a statistic.

* :func:`quegan`: Quegan and Yu's multitemporal filter (IEEE TGRS 39(11), 2001; SNAP's
  "Multi-temporal Speckle Filter"): J_t = <I_t> * (1/N) sum_i I_i / <I_i>, with <.> the local
  mean over a WINDOW x WINDOW box and the sum over the N dates valid at the pixel. Each ratio
  I_i / <I_i> is speckle times the texture within the window, so a change confined to one date
  stays in that date; only the window around the change's outline is mixed.
* :class:`Rabasar`: the ratio method after Zhao, Deledalle, Denis, Maitre, Nicolas and Tupin
  (RABASAR, IEEE TGRS 57(10), 2019). The super-image S = (1/N) sum_i I_i (the temporal
  arithmetic mean, about N x L looks where nothing changed) is despeckled by the project's
  looks-conditioned network (``core.models``, the shipped ``sarcnn_looks``) into S_hat; each
  target date's ratio I_t / S_hat, which is speckle of the date's looks wherever the date agrees
  with the mean and holds the date's own changes elsewhere, is despeckled by the same network at
  the date's looks, and multiplied back: J_t = S_hat * ratio_hat_t.
* :func:`complete_c2`: the C2 output of either method. The intensities C11, C22 are filtered as
  above; the cross term keeps the date's own VV/VH coherence, estimated over the same window:
  C12_t = gamma_t * sqrt(C11_hat C22_hat), gamma_t = <C12_t> / sqrt(<C11_t> <C22_t>). A box sum
  of positive semi-definite matrices is positive semi-definite, so |gamma_t| <= 1 and the
  output is a valid covariance (C11, C22 >= 0, |C12|^2 <= C11 C22) at every pixel.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..models.weights import LoadedModel
from ..stack import box_sum


def local_means(intensity: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of each date's valid pixels in a ``window`` box, (B, k, C, H, W); 0 where the box
    holds none."""
    weight = valid[:, :, None].to(intensity.dtype)
    count = box_sum(weight, window)
    return box_sum(intensity * weight, window) / count.clamp_min(1)


def quegan(intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int], window: int) -> torch.Tensor:
    """Quegan's filter (see the module doc): (B, k, C, H, W) -> (B, T, C, H, W)."""
    mean = local_means(intensity, valid, window)
    use = valid[:, :, None] & (mean > 0)
    ratio = torch.where(use, intensity / mean.clamp_min(torch.finfo(mean.dtype).tiny), torch.zeros_like(mean))
    average = ratio.sum(1) / use.sum(1).clamp_min(1)
    return mean[:, list(targets)] * average[:, None]


def ratio_level(looks: float) -> float:
    """Median of Gamma(L, 1/L) speckle (Wilson-Hilferty): the reference level of a ratio image,
    which is speckle of mean 1 where nothing changed."""
    return (1.0 - 1.0 / (9.0 * looks)) ** 3


class Rabasar:
    """The ratio method (see the module doc) with the network ``model``.

    Args:
        model: a checked, loaded despeckling network conditioned on the looks.
        super_looks: the looks the super-image is despeckled with (about the sum of the dates'
            looks, within the network's range).
        super_levels: per intensity channel, the reference level (median) of the super-image.
        looks: per date, the looks its ratio is despeckled with (within the network's range).
        self_ensemble: also despeckle the mirrored images (geometric mean of both estimates).
    """

    def __init__(self, model: LoadedModel, super_looks: float, super_levels: Sequence[float],
                 looks: Sequence[float], self_ensemble: bool) -> None:
        self.model = model
        self.super_looks = super_looks
        self.super_levels = list(super_levels)
        self.looks = list(looks)
        self.self_ensemble = self_ensemble

    def super_image(self, intensity: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The despeckled temporal mean (B, C, H, W) and where any date is valid (B, 1, H, W)."""
        weight = valid[:, :, None].to(intensity.dtype)
        count = weight.sum(1)
        mean = (intensity * weight).sum(1) / count.clamp_min(1)
        some = count > 0
        return torch.cat([
            self.model.despeckle(mean[:, c: c + 1], some, level, self.self_ensemble, self.super_looks)
            for c, level in enumerate(self.super_levels)
        ], 1), some

    def __call__(self, intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """(B, k, C, H, W) -> (B, T, C, H, W)."""
        batch, _, channels, height, width = intensity.shape
        estimate, _ = self.super_image(intensity, valid)
        outputs = []
        for t in targets:
            ratio = intensity[:, t] / estimate  # (B, C, H, W); the network output is > 0
            date_valid = valid[:, t, None].expand(-1, channels, -1, -1)
            looks = self.looks[t]
            despeckled = self.model.despeckle(
                ratio.reshape(-1, 1, height, width), date_valid.reshape(-1, 1, height, width),
                ratio_level(looks), self.self_ensemble, looks,
            ).reshape(batch, channels, height, width)
            outputs.append(estimate * despeckled)
        return torch.stack(outputs, 1)


def complete_c2(cov: torch.Tensor, valid: torch.Tensor, targets: Sequence[int], intensity: torch.Tensor,
                window: int) -> torch.Tensor:
    """The C2 bands of the target dates (B, T, 4, H, W) from their despeckled C11, C22
    ``intensity`` (B, T, 2, H, W) and each date's own coherence over a ``window`` box of the
    input ``cov`` (B, k, 4, H, W) (see the module doc)."""
    chosen = cov[:, list(targets)]
    weight = valid[:, list(targets), None].to(cov.dtype)
    c11, c22, re, im = box_sum(chosen * weight, window).unbind(2)
    magnitude = (re * re + im * im).sqrt()
    norm = (c11.clamp_min(0) * c22.clamp_min(0)).sqrt()
    # gamma = (re, im) / norm, its magnitude kept <= 1 against rounding: divide by the larger
    denominator = torch.maximum(norm, magnitude)
    scale = torch.where(denominator > 0, 1.0 / denominator.clamp_min(1e-30), torch.zeros_like(norm))
    amplitude = (intensity[:, :, 0] * intensity[:, :, 1]).clamp_min(0).sqrt()
    return torch.stack([intensity[:, :, 0], intensity[:, :, 1], re * scale * amplitude, im * scale * amplitude], 2)
