"""Log-domain residual U-Net: SAR-CNN's idea (Dalsasso et al. 2020) at a fraction of its cost.

SAR-CNN removes speckle in the log domain, where it is additive, by predicting the noise with a
17-layer full-resolution CNN (about 600 kMAC per pixel). This network keeps the idea -- input
the debiased normalised log intensity ``z``, predict the log-speckle ``n``, output
``z - n`` -- but computes it with a small U-Net: a few convolutions per level, strided 2 x 2
convolutions down, transposed 2 x 2 convolutions up, and *additive* skip connections (no
concatenation, so the decoder costs what the encoder costs). Most of the work happens at low
resolution, where context is cheap, and the receptive field stays bounded and known
(:attr:`receptive_radius`).

Layouts: (B, 1, H, W) for inputs and outputs; any H and W (padded internally to a multiple of
:attr:`alignment`).

**Conditioning** (``condition_channels = 1``, FFDNet's noise-level map, Zhang et al. 2018): the
network also reads a constant map, per image, of the log-domain speckle standard deviation
``sqrt(psi1(L)) / log_scale`` (normalised units: 0.64 for one look, 0.18 for 8), concatenated to
``z`` as a second input channel, and the input is debiased with that image's L. One network then
serves a range of looks (trained with L drawn per patch; the card's ``looks_range``), given or
estimated at inference. ``condition_channels = 0`` (the default) is the unconditioned network,
with the same parameters and ``state_dict`` keys as before conditioning existed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import DespecklingNet, conv_relu, pad_to_multiple
from .logdomain import LOG_SCALE, log_to_intensity, looks_statistics


def _same_width(width: int, count: int) -> list[nn.Module]:
    return [layer for _ in range(count) for layer in conv_relu(width, width)]


class UNetEncoder(nn.Module):
    """The encoder half: a stem at full resolution, then per coarser level a strided 2 x 2
    convolution and ``convs_per_level`` 3 x 3 convolutions. Also the part contrastive
    pre-training trains (same parameter names, so its weights load into the U-Net)."""

    def __init__(self, widths: Sequence[int], convs_per_level: int, in_channels: int = 1) -> None:
        super().__init__()
        w, n = list(widths), convs_per_level
        self.stem = nn.Sequential(*conv_relu(in_channels, w[0]), *_same_width(w[0], n - 1))
        self.down = nn.ModuleList(
            nn.Sequential(*conv_relu(w[i - 1], w[i], kernel=2, stride=2), *_same_width(w[i], n))
            for i in range(1, len(w))
        )

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        """``z`` (B, in_channels, H, W), H and W multiples of 2 ** (levels - 1) -> features of every
        level, finest first: (B, widths[l], H / 2 ** l, W / 2 ** l)."""
        features = [self.stem(z)]
        for down in self.down:
            features.append(down(features[-1]))
        return features


class LogResidualUNet(DespecklingNet):
    """Args:
        widths: channels per level, finest first; ``len(widths)`` levels, each coarser level
            halves the resolution.
        convs_per_level: 3 x 3 convolutions at each level, in the encoder and in the decoder.
        looks: equivalent number of looks the network is trained for (sets the log bias).
        log_scale: see :mod:`.logdomain`.
        condition_channels: 0 (unconditioned) or 1 (reads the looks' noise-level map; ``looks``
            is then the nominal looks, used when none are given).
    """

    architecture = "log_residual"

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 96),
        convs_per_level: int = 2,
        looks: float = 1.0,
        log_scale: float = LOG_SCALE,
        condition_channels: int = 0,
    ) -> None:
        super().__init__(looks, log_scale)
        if len(widths) < 1 or min(widths) < 1 or convs_per_level < 1:
            raise ValueError("widths must be positive and convs_per_level >= 1")
        if condition_channels not in (0, 1):
            raise ValueError(f"condition_channels must be 0 or 1 (the looks' noise level); got {condition_channels}")
        self.widths = [int(w) for w in widths]
        self.convs_per_level = int(convs_per_level)
        self.condition_channels = int(condition_channels)
        w = self.widths
        self.encoder = UNetEncoder(w, self.convs_per_level, 1 + self.condition_channels)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[i + 1], w[i], 2, 2) for i in range(len(w) - 1))
        self.decode = nn.ModuleList(
            nn.Sequential(*_same_width(w[i], self.convs_per_level)) for i in range(len(w) - 1)
        )
        self.head = nn.Conv2d(w[0], 1, 1)

    @property
    def hyperparameters(self) -> dict:
        record = {
            "widths": list(self.widths),
            "convs_per_level": self.convs_per_level,
            "looks": self.looks,
            "log_scale": self.log_scale,
        }
        if self.condition_channels:  # unconditioned cards keep the hyper-parameters they always had
            record["condition_channels"] = self.condition_channels
        return record

    @property
    def alignment(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def receptive_radius(self) -> int:
        """Bound on the reach, accumulated layer by layer.

        A 3 x 3 convolution on a level of pixel spacing J adds J; a 2 x 2 stride-2 convolution
        from spacing J adds J; a transposed 2 x 2 stride-2 convolution adds nothing (each fine
        pixel reads one coarse pixel that covers it); an additive skip takes the larger reach.
        """
        n = self.convs_per_level
        reach = [n]  # after the stem, per level
        for level in range(1, len(self.widths)):
            spacing = 2 ** level
            reach.append(reach[-1] + spacing // 2 + n * spacing)
        total = reach[-1]
        for level in range(len(self.widths) - 2, -1, -1):
            total = max(total, reach[level]) + n * 2 ** level
        return total

    def condition_map(self, z: torch.Tensor, looks=None) -> torch.Tensor:
        """The noise-level map (B, 1, H, W) of ``z``: ``sqrt(psi1(L)) / log_scale``, constant per
        image; L = ``looks`` (float or one per batch item), the network's own looks when None."""
        std = looks_statistics(self.looks if looks is None else looks, z)[1] / self.log_scale
        return std.expand(z.shape[0], 1, *z.shape[-2:])

    def forward(self, z: torch.Tensor, looks=None) -> torch.Tensor:
        """Normalised log intensity (B, 1, H, W) -> normalised log reflectivity (B, 1, H, W).
        Conditioned networks also read ``looks`` (float or (B,); their own when None) as
        :meth:`condition_map`; the others ignore it."""
        height, width = z.shape[-2:]
        padded = pad_to_multiple(z, self.alignment)
        if self.condition_channels:
            features = self.encoder(torch.cat([padded, self.condition_map(padded, looks)], 1))
        else:
            features = self.encoder(padded)
        x = features[-1]
        for level in range(len(self.widths) - 2, -1, -1):
            x = self.decode[level](self.up[level](x) + features[level])
        return (padded - self.head(x))[..., :height, :width]

    def despeckle(self, intensity: torch.Tensor, reference, looks=None) -> torch.Tensor:
        """Linear intensity (B, 1, H, W) -> linear intensity: ``exp`` of the log estimate.
        ``looks`` (float or (B,)) reaches conditioned networks only."""
        looks = self.input_looks(looks)
        return log_to_intensity(self(self.normalise(intensity, reference, looks), looks), reference, self.log_scale)
