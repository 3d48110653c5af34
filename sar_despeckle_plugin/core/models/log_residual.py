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

**Correlation conditioning** (``condition_channels = 3``): besides the looks' map, two constant
maps of the speckle's lag-1 intensity autocorrelation between rows and between columns, as
:func:`core.quality.measure_speckle` reads it on the image (0 for white speckle, about 0.7 for a
Sentinel-1 GRDH; clipped to [0, :data:`MAX_CORRELATION`]). One network then serves speckle as
products make it -- any looks, correlated by oversampling, multilooking and resampling -- told
how much of the pixel-to-pixel correlation is speckle (trained on per-patch product models with
their measured correlation, ``training.speckle_model.random_products``).

**Auxiliary image** (``auxiliary_channels = 1``, multitemporal despeckling after MTPI-Net, Xu et
al.): the network also reads a second image of the same area, the other dates of a stack
averaged after bringing those that changed to the target's level
(``core.multitemporal.methods.compensated_mean``), normalised like ``z`` (same reference, debiased
with its own looks) and with its own noise-level map: two more input channels. The output is
still the target date's log reflectivity, a residual on ``z``; the card's input kind is
``stack``. Whatever the number of dates, the network sees one auxiliary image and its looks.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import DespecklingNet, conv_relu, pad_to_multiple
from .logdomain import LOG_SCALE, log_to_intensity, looks_statistics, normalise_log

#: Input channels of the conditioning maps: none, the looks' noise level, or that and the
#: speckle's lag-1 autocorrelation along rows and columns.
CONDITION_CHANNELS = (0, 1, 3)
#: Correlation conditioning reads lag-1 autocorrelations clipped to [0, MAX_CORRELATION].
MAX_CORRELATION = 0.95


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
        condition_channels: 0 (unconditioned), 1 (reads the looks' noise-level map; ``looks``
            is then the nominal looks, used when none are given) or 3 (also the speckle's lag-1
            autocorrelation along rows and columns, see the module doc).
        auxiliary_channels: 0 (one date) or 1 (also reads an auxiliary image and its noise-level
            map, see the module doc).
    """

    architecture = "log_residual"

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 96),
        convs_per_level: int = 2,
        looks: float = 1.0,
        log_scale: float = LOG_SCALE,
        condition_channels: int = 0,
        auxiliary_channels: int = 0,
    ) -> None:
        super().__init__(looks, log_scale)
        if len(widths) < 1 or min(widths) < 1 or convs_per_level < 1:
            raise ValueError("widths must be positive and convs_per_level >= 1")
        if condition_channels not in CONDITION_CHANNELS:
            raise ValueError(f"condition_channels must be 0, 1 (the looks' noise level) or 3 (and the speckle's "
                             f"lag-1 autocorrelation); got {condition_channels}")
        self.widths = [int(w) for w in widths]
        self.convs_per_level = int(convs_per_level)
        if auxiliary_channels not in (0, 1):
            raise ValueError(f"auxiliary_channels must be 0 or 1 (one auxiliary image); got {auxiliary_channels}")
        self.condition_channels = int(condition_channels)
        self.auxiliary_channels = int(auxiliary_channels)
        w = self.widths
        self.encoder = UNetEncoder(w, self.convs_per_level, 1 + self.condition_channels + 2 * self.auxiliary_channels)
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
        if self.auxiliary_channels:
            record["auxiliary_channels"] = self.auxiliary_channels
        return record

    @property
    def input_kind(self) -> str:
        """``stack`` for a network reading an auxiliary image, else ``intensity``."""
        return "stack" if self.auxiliary_channels else "intensity"

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

    def condition_map(self, z: torch.Tensor, looks=None, correlation=None) -> torch.Tensor:
        """The conditioning maps (B, condition_channels, H, W) of ``z``, constant per image: the
        noise level ``sqrt(psi1(L)) / log_scale`` with L = ``looks`` (float or one per batch
        item; the network's own looks when None), then for correlation conditioning the lag-1
        autocorrelation along rows and columns, ``correlation`` ((rows, cols), or (B, 2); None:
        white speckle, 0)."""
        shape = (z.shape[0], 1, *z.shape[-2:])
        std = looks_statistics(self.looks if looks is None else looks, z)[1] / self.log_scale
        maps = [std.expand(shape)]
        if self.condition_channels == 3:
            lag1 = torch.as_tensor((0.0, 0.0) if correlation is None else correlation, dtype=z.dtype, device=z.device)
            lag1 = lag1.clamp(0.0, MAX_CORRELATION).reshape(-1, 2, 1, 1).expand(z.shape[0], 2, 1, 1)
            maps += [lag1[:, :1].expand(shape), lag1[:, 1:].expand(shape)]
        return torch.cat(maps, 1) if len(maps) > 1 else maps[0]

    def forward(self, z: torch.Tensor, looks=None, auxiliary: torch.Tensor | None = None,
                auxiliary_looks=None, correlation=None) -> torch.Tensor:
        """Normalised log intensity (B, 1, H, W) -> normalised log reflectivity (B, 1, H, W).
        Conditioned networks also read ``looks`` (float or (B,); their own when None), and
        correlation-conditioned ones ``correlation``, as :meth:`condition_map`; the others
        ignore them. Networks with an auxiliary channel also read ``auxiliary`` (normalised
        log, (B, 1, H, W)) and its ``auxiliary_looks``."""
        height, width = z.shape[-2:]
        padded = pad_to_multiple(z, self.alignment)
        inputs = [padded]
        if self.condition_channels:
            inputs.append(self.condition_map(padded, looks, correlation))
        if self.auxiliary_channels:
            if auxiliary is None or auxiliary_looks is None:
                raise ValueError("this network reads an auxiliary image: give auxiliary and auxiliary_looks")
            other = pad_to_multiple(auxiliary, self.alignment)
            inputs += [other, self.condition_map(other, auxiliary_looks)]
        features = self.encoder(torch.cat(inputs, 1) if len(inputs) > 1 else padded)
        x = features[-1]
        for level in range(len(self.widths) - 2, -1, -1):
            x = self.decode[level](self.up[level](x) + features[level])
        return (padded - self.head(x))[..., :height, :width]

    def cost_probe(self, side: int) -> None:
        """Despeckle a ``side`` x ``side`` image (with an auxiliary image when the network reads one)."""
        if not self.auxiliary_channels:
            return super().cost_probe(side)
        parameter = next(self.parameters())
        ones = torch.ones(1, 1, side, side, dtype=parameter.dtype, device=parameter.device)
        self.despeckle(ones, 1.0, auxiliary=ones, auxiliary_looks=self.looks)
        return None

    def despeckle(self, intensity: torch.Tensor, reference, looks=None, auxiliary: torch.Tensor | None = None,
                  auxiliary_looks=None, correlation=None) -> torch.Tensor:
        """Linear intensity (B, 1, H, W) -> linear intensity: ``exp`` of the log estimate.
        ``looks`` (float or (B,)) reaches conditioned networks only, ``correlation`` ((rows,
        cols) lag-1 autocorrelation, or (B, 2)) correlation-conditioned ones only; ``auxiliary``
        (linear intensity (B, 1, H, W)) and ``auxiliary_looks`` networks with an auxiliary
        channel only."""
        looks = self.input_looks(looks)
        other = None if auxiliary is None else normalise_log(auxiliary, reference, auxiliary_looks, self.log_scale)
        estimate = self(self.normalise(intensity, reference, looks), looks, other, auxiliary_looks, correlation)
        return log_to_intensity(estimate, reference, self.log_scale)
