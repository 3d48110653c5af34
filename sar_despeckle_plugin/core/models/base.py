"""What every despeckling network of ours provides to model cards, LoadedModel and training/."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .logdomain import normalisation_record, normalise_log


class DespecklingNet(nn.Module):
    """Base class: a network reading normalised log intensity (see :mod:`.logdomain`).

    Subclasses set ``architecture`` (their name in ``ARCHITECTURES``) and implement
    ``forward(z)`` (normalised log input (B, 1, H, W), any H and W -> raw network output
    (B, C, H, W)), ``despeckle``, ``receptive_radius`` and ``hyperparameters``.

    Args:
        looks: equivalent number of looks of the intensity the network is made for.
        log_scale: ln units per normalised unit of the input.
    """

    architecture: ClassVar[str] = ""
    #: what the network reads, as recorded in its model card
    input_kind: ClassVar[str] = "intensity"

    def __init__(self, looks: float, log_scale: float) -> None:
        super().__init__()
        if not looks >= 1:
            raise ValueError(f"looks must be >= 1; got {looks}")
        self.looks = float(looks)
        self.log_scale = float(log_scale)

    @property
    def hyperparameters(self) -> dict:
        """Keyword arguments that rebuild this network with ``build_model`` (JSON-ready)."""
        raise NotImplementedError

    @property
    def receptive_radius(self) -> int:
        """Upper bound on the Chebyshev distance (pixels) from an output pixel to any input
        pixel it depends on: a tile needs at least this much halo."""
        raise NotImplementedError

    @property
    def alignment(self) -> int:
        """Downsampling factor of the coarsest level: tiles whose origin is a multiple of it
        see the pooling grid the whole image sees."""
        raise NotImplementedError

    @property
    def normalisation(self) -> dict:
        """The input normalisation, as recorded in the model card."""
        return normalisation_record(self.looks, self.log_scale)

    #: Channels of the noise-level map a conditioned network reads beside ``z`` (0: none).
    condition_channels: int = 0

    @property
    def conditioned(self) -> bool:
        """Whether the network reads the image's looks (FFDNet-style conditioning)."""
        return self.condition_channels > 0

    @property
    def reads_correlation(self) -> bool:
        """Whether the network also reads the speckle's lag-1 autocorrelation (rows, cols)."""
        return self.condition_channels > 1

    def input_looks(self, looks=None):
        """The looks the input is debiased with (and, conditioned, the noise level read):
        ``looks`` (float or one per batch item) for conditioned networks when given; else the
        looks the network was trained for, whatever ``looks`` says."""
        return looks if self.conditioned and looks is not None else self.looks

    def normalise(self, intensity: torch.Tensor, reference, looks=None) -> torch.Tensor:
        """Linear intensity (B, 1, H, W) -> the network input ``z`` (see :mod:`.logdomain`);
        ``looks`` counts for conditioned networks only (:meth:`input_looks`)."""
        return normalise_log(intensity, reference, self.input_looks(looks), self.log_scale)

    def despeckle(self, intensity: torch.Tensor, reference, looks=None) -> torch.Tensor:
        """Linear intensity (B, 1, H, W), all pixels valid -> estimated reflectivity, linear
        intensity (B, 1, H, W). ``reference``: the image's median intensity (float or (B,));
        ``looks``: the image's equivalent number of looks (float or (B,)), read by conditioned
        networks only (the others ignore it)."""
        raise NotImplementedError

    def cost_probe(self, side: int) -> None:
        """Despeckle a ``side`` x ``side`` image (what MACs per pixel are counted on)."""
        parameter = next(self.parameters())
        self.despeckle(torch.ones(1, 1, side, side, dtype=parameter.dtype, device=parameter.device), 1.0)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) with zeros at the bottom and right up to multiples of ``multiple``.

    Zero is the reference level in the normalised log domain. Zeros, unlike replicated border
    pixels, also keep a blind-spot network blind: no copy of a pixel lands in its own field.
    """
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple))


def conv_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """A "same"-size (for stride 1) convolution followed by an in-place ReLU."""
    padding = (kernel - 1) // 2 if stride == 1 else 0
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, padding), nn.ReLU(inplace=True)]
