"""Networks and their model cards: the single definition that the plugin and the training
package both import. No ``qgis`` import here.

Despeckling architectures (read linear intensity, layout (B, 1, H, W)):

* ``log_residual`` (:class:`LogResidualUNet`): supervised, log-domain residual U-Net after SAR-CNN.
* ``blind_spot`` (:class:`BlindSpotNet`): self-supervised blind-spot network with an
  inverse-Gamma prior after Speckle2Void.

Change detection (reads two dates of dual-pol intensity, (B, 2, H, W) each):

* ``change_attention`` (:class:`ChangeNet`): siamese dilated CNN with global attention after
  MTDN's change branch.
"""

from __future__ import annotations

from .base import DespecklingNet
from .blind_spot import BlindSpotNet
from ..model_cards import ModelCard, list_model_cards, read_card
from .card import LoadedModel, load_model, save_model
from .change_net import ChangeNet
from .complexity import macs_per_pixel, measured_reach, parameter_count
from .log_residual import LogResidualUNet
from .registry import ARCHITECTURES, build_model

__all__ = [
    "ARCHITECTURES", "BlindSpotNet", "ChangeNet", "DespecklingNet", "LoadedModel", "LogResidualUNet",
    "ModelCard", "build_model", "list_model_cards", "load_model", "macs_per_pixel",
    "measured_reach", "parameter_count", "read_card", "save_model",
]
