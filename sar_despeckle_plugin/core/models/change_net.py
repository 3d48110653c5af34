"""Learned change detection between two dates, after MTDN's change branch (Li et al.).

The network reads two co-registered dates of ``channels`` intensity channels -- dual-pol (VV, VH;
or C11, C22 of C2), or one single-pol channel --, layout (B, channels, H, W) each, LINEAR
INTENSITY, and returns a change logit (B, 1, H, W).

* **Normalisation** (:meth:`ChangeNet.normalise`): each date and channel is divided by its own
  reference level (the image's median intensity of that date and channel, the card's
  ``median_log`` kind: :func:`core.models.normalisation.reference_level`) before the log, so
  calibration offsets between dates -- common in real pairs -- do not look like change;
  ``z = ln(I / reference) / log_scale``.
* **Siamese encoder**: the same dilated convolutions (dilations 1, 2, 4, 8 by default, no
  pooling: any image size, no alignment constraint) turn each date into features f1, f2.
* **Fusion**: [f1, f2, f2 - f1, z2 - z1] -> 1x1 convolution -> dilated 3x3 convolutions.
* **Global attention** (:class:`GlobalContext`, after GCNet, Cao et al. 2019): one softmax
  attention map over every pixel pools the fused features into a context vector, which a small
  bottleneck transforms and adds back to every pixel -- how a change looks in *this* scene.
  The context can be computed once for a whole image (:meth:`ChangeNet.context`) and passed to
  :meth:`ChangeNet.forward` for each tile, so tiled inference equals whole-image inference.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .normalisation import MEDIAN_LOG

#: ln units per normalised unit of the input.
CHANGE_LOG_SCALE = 2.0


def _dilated(in_channels: int, out_channels: int, dilation: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]


class GlobalContext(nn.Module):
    """Global attention pooling (B, C, H, W) -> context (B, C, 1, 1), and its transform.

    ``pool`` weights every pixel by a softmax over the image of a learned 1x1 key; pixels where
    ``valid`` is False get no weight. ``transform`` is a 1x1 bottleneck with layer
    normalisation whose output is added to every pixel's features.
    """

    def __init__(self, width: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(width // reduction, 4)
        self.key = nn.Conv2d(width, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(width, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, width, 1),
        )

    def pool(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.combine([self.partial(features, valid)])

    def partial(self, features: torch.Tensor, valid: torch.Tensor | None = None) -> tuple:
        """The pooling's sufficient statistics over one part of an image, so that parts can be
        pooled one at a time (:meth:`combine`): the largest key logit m (B,), the sum of
        exp(logit - m) (B,) and the features weighted by it (B, C)."""
        logits = self.key(features).flatten(2).float()[:, 0]  # (B, N)
        if valid is not None:
            logits = logits.masked_fill(~valid.flatten(1), float("-inf"))
        peak = logits.amax(dim=-1).clamp_min(torch.finfo(torch.float32).min)
        weights = torch.exp(logits - peak[:, None])
        return peak, weights.sum(-1), torch.einsum("bcn,bn->bc", features.flatten(2).float(), weights)

    @staticmethod
    def combine(parts: list) -> torch.Tensor:
        """Context (B, C, 1, 1) from the :meth:`partial` statistics of an image's parts: the
        softmax attention pooling over all their pixels together."""
        peak = torch.stack([p[0] for p in parts]).amax(dim=0)
        scales = [torch.exp(p[0] - peak) for p in parts]
        total = sum(scale * p[1] for scale, p in zip(scales, parts))
        weighted = sum(scale[:, None] * p[2] for scale, p in zip(scales, parts))
        return (weighted / total.clamp_min(torch.finfo(torch.float32).tiny)[:, None])[..., None, None]


class ChangeNet(nn.Module):
    """Siamese dilated CNN + global attention: two dates -> change logit (see the module doc).

    Args:
        channels: intensity channels per date (2: VV and VH; 1: single-pol).
        width: feature channels.
        dilations: dilations of the encoder's 3x3 convolutions.
        fusion_dilations: dilations of the fusion's 3x3 convolutions.
        log_scale: ln units per normalised input unit.
    """

    architecture: ClassVar[str] = "change_attention"
    #: any number of looks (it was trained on a range); recorded in the model card
    looks = 1.0
    alignment = 1

    def __init__(self, channels: int = 2, width: int = 24, dilations=(1, 2, 4, 8),
                 fusion_dilations=(1, 2), log_scale: float = CHANGE_LOG_SCALE) -> None:
        super().__init__()
        self.channels, self.width = int(channels), int(width)
        self.dilations, self.fusion_dilations = tuple(dilations), tuple(fusion_dilations)
        self.log_scale = float(log_scale)
        layers, previous = [], self.channels
        for dilation in self.dilations:
            layers += _dilated(previous, self.width, dilation)
            previous = self.width
        self.encoder = nn.Sequential(*layers)
        fusion = [nn.Conv2d(3 * self.width + self.channels, self.width, 1), nn.ReLU(inplace=True)]
        for dilation in self.fusion_dilations:
            fusion += _dilated(self.width, self.width, dilation)
        self.fusion = nn.Sequential(*fusion)
        self.attention = GlobalContext(self.width)
        self.head = nn.Sequential(nn.Conv2d(self.width, self.width, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(self.width, 1, 1))

    @property
    def hyperparameters(self) -> dict:
        return {"channels": self.channels, "width": self.width, "dilations": list(self.dilations),
                "fusion_dilations": list(self.fusion_dilations), "log_scale": self.log_scale}

    @property
    def input_kind(self) -> str:
        """What the network reads, as recorded in its model card: ``single_pol_pair`` (one
        intensity channel per date) or ``dual_pol_pair`` (two: VV, VH)."""
        return "single_pol_pair" if self.channels == 1 else "dual_pol_pair"

    @property
    def receptive_radius(self) -> int:
        """Reach (pixels) of the convolutions; the global context is computed separately."""
        return sum(self.dilations) + sum(self.fusion_dilations)

    @property
    def normalisation(self) -> dict:
        return {"kind": MEDIAN_LOG, "input": "ln(I / median of the date and channel) / log_scale",
                "log_scale": self.log_scale}

    def normalise(self, intensity: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Linear intensity (B, C, H, W) and reference levels (B, C) or (C,) -> ``z``."""
        reference = torch.as_tensor(reference, dtype=intensity.dtype, device=intensity.device)
        reference = reference.reshape(-1, self.channels, 1, 1)
        tiny = torch.finfo(intensity.dtype).tiny
        return torch.log(intensity.clamp_min(tiny) / reference) / self.log_scale

    def features(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Fused features (B, width, H, W) of normalised dates ``z1``, ``z2`` (B, C, H, W)."""
        f1, f2 = self.encoder(torch.cat([z1, z2])).chunk(2)
        return self.fusion(torch.cat([f1, f2, f2 - f1, z2 - z1], dim=1))

    def context(self, fused: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Context (B, width, 1, 1) pooled over ``fused`` (B, width, H, W) where ``valid``
        (B, 1, H, W). For an image in parts, combine ``attention.partial`` of each part with
        ``attention.combine``."""
        return self.attention.pool(fused, valid)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Change logits (B, 1, H, W); the context is pooled over the input when not given."""
        fused = self.features(z1, z2)
        if context is None:
            context = self.context(fused)
        return self.head(F.relu(fused + self.attention.transform(context)))

    def cost_probe(self, side: int) -> None:
        """One forward pass on a ``side`` x ``side`` pair (what MACs per pixel are counted on)."""
        parameter = next(self.parameters())
        image = torch.zeros(1, self.channels, side, side, dtype=parameter.dtype, device=parameter.device)
        self(image, image)
