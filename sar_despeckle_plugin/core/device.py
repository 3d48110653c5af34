"""Choosing the torch device an algorithm runs on."""

from __future__ import annotations

from typing import Callable

import torch

from .choices import DEVICES


def resolve_device(name: str, warn: Callable[[str], None] = print) -> torch.device:
    """Turn a DEVICE choice into a torch device.

    ``auto`` takes the GPU when torch sees one; ``cuda`` without a usable GPU falls back to the
    CPU and says so through ``warn`` rather than failing.
    """
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {DEVICES}")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        warn("DEVICE is cuda but torch sees no usable GPU: running on the CPU instead.")
    return torch.device("cpu")
