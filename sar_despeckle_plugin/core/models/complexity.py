"""What a network costs and how far it sees: MACs per pixel, parameters, measured reach."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import DespecklingNet


def parameter_count(module: nn.Module) -> int:
    """Number of trainable values."""
    return sum(p.numel() for p in module.parameters())


def macs_per_pixel(module: nn.Module, side: int = 256) -> int:
    """Multiply-accumulates per input pixel of ``module.cost_probe`` (a despeckling pass, or a
    change-detection pass over a pair) on a ``side`` x ``side`` image, counted by torch's FLOP
    counter on convolutions and matrix products (element-wise operations and pooling are not
    counted)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.cost_probe(side)
    return round(counter.get_total_flops() / 2 / side ** 2)


def measured_reach(module: DespecklingNet, side: int | None = None) -> int:
    """The reach of ``module`` measured by gradients: the largest Chebyshev distance (pixels)
    between an output pixel and an input pixel whose gradient is non-zero.

    Measured on a float64 copy whose weights are all positive (1 / fan-in) and whose biases
    are zero, on an all-ones input: every ReLU is then active and no contributions cancel, so
    the gradient is non-zero on exactly the structural receptive field. Every output channel
    and ``alignment`` output positions (all phases of the pooling grid) are probed.

    Args:
        side: probe image side; by default large enough that a reach up to twice the
            declared ``receptive_radius`` shows.
    """
    probe = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        for name, parameter in probe.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.fill_(1.0 / parameter[0].numel())
    step = module.alignment
    side = side or 4 * module.receptive_radius + 4 * step + 1
    centre = side // 2 - step // 2
    reach = 0
    for phase in range(step):
        image = torch.ones(1, 1, side, side, dtype=torch.float64, requires_grad=True)
        output = probe(image)
        row = col = centre + phase
        output[0, :, row, col].sum().backward()
        rows, cols = torch.nonzero(image.grad[0, 0], as_tuple=True)
        reach = max(reach, int(torch.maximum((rows - row).abs(), (cols - col).abs()).max()))
    if reach >= centre - step:
        raise ValueError(f"the reach exceeds the probe: measure again with side > {side}")
    return reach
