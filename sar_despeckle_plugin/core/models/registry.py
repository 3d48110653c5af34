"""The architectures by name, and building one from its card's hyper-parameters."""

from __future__ import annotations

import inspect

from torch import nn

from .blind_spot import BlindSpotNet
from .change_net import ChangeNet
from .log_residual import LogResidualUNet
from .multitask import MultiTaskNet

#: Architecture name (as in model cards and training configs) -> class.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.architecture: cls for cls in (LogResidualUNet, BlindSpotNet, ChangeNet, MultiTaskNet)
}


def build_model(architecture: str, **hyperparameters) -> nn.Module:
    """A freshly initialised network; raises ValueError naming what is unknown or wrong."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}")
    cls = ARCHITECTURES[architecture]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for {architecture}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    return cls(**hyperparameters)
