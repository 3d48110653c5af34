"""Blind-spot network with a Bayesian read-out, after Speckle2Void (Bordone Molini et al. 2020).

Self-supervised despeckling of single-look data whose speckle is spatially white: a network
whose receptive field excludes the centre pixel cannot learn the speckle of that pixel, so it
can be trained on noisy images alone by maximising the likelihood of each noisy pixel given its
neighbourhood. Speckle correlated over a few pixels (multilooked, resampled products such as
Sentinel-1 GRD) would leak through the nearest neighbours: ``blind_radius`` r widens the hole to
the (2 r + 1) x (2 r + 1) square around the pixel, so the prior reads only pixels more than r
away, where the speckle's autocorrelation has died out (the training package's ``prepare`` and
``speckle --fit`` print the radius a product needs).

Network: four copies (shared weights) of a small U-Net made of *causal* convolutions, each
seeing only the half-plane above a pixel (Laine et al. 2019): a 2 x 3 convolution reads rows
i-1 and i; 2 x 2 pooling pairs rows (2j - 1, 2j), so that
nearest-neighbour upsampling never brings a lower row back; at the end the features move down
one row (1 + r rows with a blind radius r), so that row i itself (rows i - r .. i) drops out.
Run on the image rotated by 0, 90, 180 and 270 degrees, the four half-planes cover every pixel
but the centre (the central square); 1 x 1 convolutions merge them.

Read-out: the network predicts, per pixel, an inverse-Gamma prior on the reflectivity X,
``X ~ InvGamma(alpha, beta)`` with mean ``mu = beta / (alpha - 1)``. With Gamma(L, 1/L)
speckle, the noisy intensity ``Y = X S`` has the marginal density

    p(y) = L^L y^(L-1) beta^alpha Gamma(L+alpha) / (Gamma(L) Gamma(alpha) (L y + beta)^(L+alpha))

whose negative log is the training loss (:func:`marginal_nll`); the posterior is
InvGamma(alpha + L, beta + L y), and the estimate its mean (:func:`posterior_mean`)
``(beta + L y) / (alpha + L - 1)``: a per-pixel blend of the prior mean and the noisy pixel.

Layouts: (B, 1, H, W) intensities; the raw network output is (B, 2, H, W) = (log prior mean
in normalised log units, pre-activation of alpha).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import DespecklingNet, pad_to_multiple
from .logdomain import LOG_SCALE, log_to_intensity

#: alpha - 1 is kept above this (alpha -> 1 is a prior so flat that its mean diverges).
MIN_ALPHA_EXCESS = 1e-3
#: alpha - 1 of an untrained network: a prior about as strong as 3 looks, so that training
#: starts from a smoothing estimate rather than from the noisy image.
INITIAL_ALPHA_EXCESS = 3.0


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Move (B, C, H, W) features down ``rows`` rows (zeros enter at the top)."""
    return F.pad(x, (0, 0, rows, 0))[..., : x.shape[-2], :]


def shifted_pool(x: torch.Tensor) -> torch.Tensor:
    """2 x 2 average pooling of (B, C, H, W), H and W even, over rows (2j - 1, 2j): the same as
    :func:`shift_down` then pooling, without the copy. Coarse row j reads fine rows <= 2j."""
    return F.avg_pool2d(x, 2, padding=(1, 0))[..., : x.shape[-2] // 2, :]


class CausalConv(nn.Conv2d):
    """2 x 3 convolution + ReLU whose output at row i reads rows i-1 and i (columns j-1..j+1).

    Padded by one row at the top and the bottom (one padded convolution, no copy of the
    input); the extra last output row is dropped.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, (2, 3), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(x)[..., :-1, :], inplace=True)


class UpperHalfUNet(nn.Module):
    """U-Net of causal convolutions: output row i depends on input rows < i only.

    Level 0 has one causal convolution, every coarser level two; going down, features are
    pooled over rows (2j - 1, 2j) so that upsampling never brings a lower row back; the
    decoder reduces the coarse features with a 1 x 1 convolution, upsamples them (nearest),
    adds the skip and applies one causal convolution; a final shift down by ``1 + blind_radius``
    rows removes row i itself (and the ``blind_radius`` rows above it). Input (B, 1, H, W) with
    H, W multiples of 2 ** (len(widths) - 1); output (B, widths[0], H, W).
    """

    def __init__(self, widths: Sequence[int], blind_radius: int = 0) -> None:
        super().__init__()
        self.blind_radius = int(blind_radius)
        w = list(widths)
        self.stem = CausalConv(1, w[0])
        self.down = nn.ModuleList(
            nn.Sequential(CausalConv(w[i - 1], w[i]), CausalConv(w[i], w[i])) for i in range(1, len(w))
        )
        self.reduce = nn.ModuleList(nn.Conv2d(w[i + 1], w[i], 1) for i in range(len(w) - 1))
        self.decode = nn.ModuleList(CausalConv(w[i], w[i]) for i in range(len(w) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for down in self.down:
            features.append(down(shifted_pool(features[-1])))
        x = features[-1]
        for level in range(len(features) - 2, -1, -1):
            x = self.decode[level](F.interpolate(self.reduce[level](x), scale_factor=2.0) + features[level])
        return shift_down(x, 1 + self.blind_radius)


class BlindSpotNet(DespecklingNet):
    """Args:
        widths: channels per level of the half-plane U-Net, finest first.
        head_width: channels of the hidden 1 x 1 layer merging the four half-planes.
        looks: equivalent number of looks of the speckle (1 for single-look data; for
            correlated speckle the looks of single pixels).
        log_scale: see :mod:`.logdomain`.
        blind_radius: half-side r (pixels) of the square hidden from each pixel's prior, 0:
            the pixel alone (white speckle); see the module doc.
    """

    architecture = "blind_spot"

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 48, 64),
        head_width: int = 32,
        looks: float = 1.0,
        log_scale: float = LOG_SCALE,
        blind_radius: int = 0,
    ) -> None:
        super().__init__(looks, log_scale)
        if len(widths) < 1 or min(widths) < 1 or head_width < 1:
            raise ValueError("widths and head_width must be positive")
        if int(blind_radius) != blind_radius or blind_radius < 0:
            raise ValueError(f"blind_radius must be a whole number of pixels >= 0; got {blind_radius!r}")
        self.widths = [int(w) for w in widths]
        self.head_width = int(head_width)
        self.blind_radius = int(blind_radius)
        self.branch = UpperHalfUNet(self.widths, self.blind_radius)
        self.head = nn.Sequential(
            nn.Conv2d(4 * self.widths[0], head_width, 1), nn.ReLU(inplace=True), nn.Conv2d(head_width, 2, 1)
        )
        with torch.no_grad():  # softplus(bias) = INITIAL_ALPHA_EXCESS
            self.head[-1].bias[1] = math.log(math.expm1(INITIAL_ALPHA_EXCESS))

    @property
    def hyperparameters(self) -> dict:
        return {
            "widths": list(self.widths),
            "head_width": self.head_width,
            "looks": self.looks,
            "log_scale": self.log_scale,
            "blind_radius": self.blind_radius,
        }

    @property
    def alignment(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def receptive_radius(self) -> int:
        """Bound on the reach (the field itself excludes the centre pixel).

        On a level of pixel spacing J, a causal convolution adds J; the shifted pooling to the
        next level adds 2 J; 1 x 1 convolutions and upsampling add nothing; the final shift
        adds 1 + ``blind_radius``. Rotations do not change the bound.
        """
        reach = [1]
        for level in range(1, len(self.widths)):
            spacing = 2 ** level
            reach.append(reach[-1] + spacing + 2 * spacing)
        total = reach[-1]
        for level in range(len(self.widths) - 2, -1, -1):
            total = max(total, reach[level]) + 2 ** level
        return total + 1 + self.blind_radius

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised log intensity (B, 1, H, W) -> (B, 2, H, W): log prior mean (normalised
        log units, relative to the reference) and the pre-activation of alpha. Neither
        depends on the input at the same pixel."""
        height, width = z.shape[-2:]
        z = pad_to_multiple(z, self.alignment)
        batch = z.shape[0]
        if z.shape[-1] == z.shape[-2]:
            rotated = torch.cat([torch.rot90(z, k, (2, 3)) for k in range(4)])
            outputs = self.branch(rotated).split(batch)
        else:
            outputs = [self.branch(torch.rot90(z, k, (2, 3))) for k in range(4)]
        merged = torch.cat([torch.rot90(o, -k, (2, 3)) for k, o in enumerate(outputs)], dim=1)
        return self.head(merged)[..., :height, :width]

    def prior(self, intensity: torch.Tensor, reference) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear intensity (B, 1, H, W) -> inverse-Gamma prior (mean in linear intensity,
        alpha > 1), each (B, 1, H, W), predicted from the neighbours of each pixel."""
        output = self(self.normalise(intensity, reference))
        mean = log_to_intensity(output[:, :1], reference, self.log_scale)
        return mean, alpha_from_output(output[:, 1:])

    def despeckle(self, intensity: torch.Tensor, reference, looks=None) -> torch.Tensor:
        """Linear intensity (B, 1, H, W) -> posterior mean reflectivity, linear intensity."""
        mean, alpha = self.prior(intensity, reference)
        return posterior_mean(intensity, mean, alpha, self.looks)


def alpha_from_output(raw: torch.Tensor) -> torch.Tensor:
    """The network's second channel -> inverse-Gamma shape alpha > 1."""
    return 1.0 + MIN_ALPHA_EXCESS + F.softplus(raw)


def marginal_nll(
    intensity: torch.Tensor, prior_mean: torch.Tensor, alpha: torch.Tensor, looks: float
) -> torch.Tensor:
    """Per-pixel negative log-likelihood of ``intensity`` under Gamma(L, 1/L) speckle on an
    inverse-Gamma(alpha, beta = prior_mean (alpha - 1)) reflectivity (see the module doc).

    ``intensity`` and ``prior_mean`` are linear intensities in the same units (any, e.g.
    relative to a reference); all arguments broadcast together. Natural-log units.
    """
    tiny = torch.finfo(intensity.dtype).tiny
    L = float(looks)
    log_y = intensity.clamp_min(tiny).log()
    log_beta = prior_mean.clamp_min(tiny).log() + (alpha - 1.0).log()
    log_sum = torch.logaddexp(log_y + math.log(L), log_beta)
    log_likelihood = (
        L * math.log(L)
        + (L - 1.0) * log_y
        + alpha * log_beta
        + torch.lgamma(alpha + L)
        - math.lgamma(L)
        - torch.lgamma(alpha)
        - (alpha + L) * log_sum
    )
    return -log_likelihood


def posterior_mean(
    intensity: torch.Tensor, prior_mean: torch.Tensor, alpha: torch.Tensor, looks: float
) -> torch.Tensor:
    """Posterior mean of the reflectivity: ``(beta + L y) / (alpha - 1 + L)``, where
    ``beta = prior_mean (alpha - 1)``; same units as ``intensity`` and ``prior_mean``."""
    excess = alpha - 1.0
    return (prior_mean * excess + looks * intensity) / (excess + looks)
