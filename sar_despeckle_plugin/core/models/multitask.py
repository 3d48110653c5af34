"""Multi-task despeckling + change detection of two dates, after MTDN (Li et al., ISPRS 2025).

MTDN trains dual-date despeckling jointly with change detection and masks the despeckling loss
where its change branch sees change. This network composes the project's two existing
definitions rather than a third: a looks-conditioned :class:`LogResidualUNet` (the despeckling
branch) and a :class:`ChangeNet` (the change branch).

* **Despeckling branch**: each date and intensity channel on its own (the U-Net reads one
  channel, (B * C, 1, H, W)), input ``z`` the debiased normalised log intensity of
  :mod:`.logdomain` centred on that date's and channel's reference level (its median), output
  its normalised log reflectivity. It never reads the other date: trained Noise2Noise with the
  other date as the target (``training`` mode ``multitask``), a network that saw the target's
  own speckle would learn to copy it.
* **Change branch**: :class:`ChangeNet` on both dates (its own normalisation, ``channels``
  intensity channels per date), change logits (B, 1, H, W).
* **Fusion** (:meth:`MultiTaskNet.combine`, inference only): where nothing changed the two
  dates are two looks at one reflectivity, so the despeckling branch also despeckles their mean
  (each date relative to its own reference level, so calibration offsets between dates cancel;
  ENL 4 L1 L2 / (L1 + L2), twice a date's for equal looks): the *joint* estimate. Each date's
  output is the joint estimate moved towards the date's own estimate by the change branch's
  probability p, ``out_t = joint + min(2 p, 1) * (own_t - joint)`` in the normalised log domain:
  wherever the branch leans to change (p >= 0.5) each date keeps its own estimate, no smearing,
  no ghost (with ``p`` instead of ``min(2 p, 1)`` the mean leaked into changes: 16.61 against
  17.00 dB inside a 6x change of one-look pairs, for 27.43 against 27.22 elsewhere). The
  joint estimate is not trained as such (with two dates no independent target is left for it):
  the branch learns a range of looks, and the mean is despeckled at its own.

Layouts: dates (B, C, H, W) of LINEAR INTENSITY; C = ``channels`` (1 single-pol; 2 VV, VH).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import DespecklingNet
from .change_net import CHANGE_LOG_SCALE, ChangeNet
from .log_residual import LogResidualUNet
from .logdomain import LOG_SCALE, log_to_intensity, normalise_log


class MultiTaskNet(DespecklingNet):
    """Two dates -> both dates despeckled and a change logit (see the module doc).

    Args:
        channels: intensity channels per date (1 single-pol; 2 VV, VH).
        widths, convs_per_level, looks, log_scale: the despeckling branch's
            (:class:`LogResidualUNet`, conditioned on the looks; ``looks`` its nominal looks).
        change_width, change_dilations, change_fusion_dilations: the change branch's
            (:class:`ChangeNet` ``width``, ``dilations``, ``fusion_dilations``).
    """

    architecture = "mtdn_multitask"
    input_kind = "date_pair"
    condition_channels = 1

    def __init__(self, channels: int = 1, widths: Sequence[int] = (24, 48, 96, 128), convs_per_level: int = 2,
                 looks: float = 4.0, log_scale: float = LOG_SCALE, change_width: int = 24,
                 change_dilations: Sequence[int] = (1, 2, 4, 8),
                 change_fusion_dilations: Sequence[int] = (1, 2)) -> None:
        super().__init__(looks, log_scale)
        self.despeckler = LogResidualUNet(widths, convs_per_level, looks, log_scale, condition_channels=1)
        self.change = ChangeNet(channels, change_width, change_dilations, change_fusion_dilations, CHANGE_LOG_SCALE)

    @property
    def channels(self) -> int:
        return self.change.channels

    @property
    def hyperparameters(self) -> dict:
        unet, change = self.despeckler.hyperparameters, self.change.hyperparameters
        return {"channels": self.channels, "widths": unet["widths"], "convs_per_level": unet["convs_per_level"],
                "looks": self.looks, "log_scale": self.log_scale, "change_width": change["width"],
                "change_dilations": change["dilations"], "change_fusion_dilations": change["fusion_dilations"]}

    @property
    def alignment(self) -> int:
        return self.despeckler.alignment

    @property
    def receptive_radius(self) -> int:
        """Reach of the fused output: the larger of the branches' (the change branch's global
        context is computed separately, see :meth:`ChangeNet.context`)."""
        return max(self.despeckler.receptive_radius, self.change.receptive_radius)

    def despeckle_logs(self, z: torch.Tensor, looks) -> torch.Tensor:
        """Normalised debiased log intensity (B, C, H, W) -> normalised log reflectivity
        (B, C, H, W), every channel alike; ``looks`` a float or one per batch item."""
        batch, channels = z.shape[:2]
        looks = torch.as_tensor(looks, dtype=z.dtype, device=z.device)
        looks = looks.expand(batch) if looks.dim() == 0 else looks
        estimate = self.despeckler(z.reshape(batch * channels, 1, *z.shape[-2:]), looks.repeat_interleave(channels))
        return estimate.reshape(z.shape)

    def normalise_logs(self, first: torch.Tensor, second: torch.Tensor, references: torch.Tensor,
                       looks: torch.Tensor) -> torch.Tensor:
        """The despeckling branch's input ``z`` (B, 2, C, H, W) of linear intensities ``first``,
        ``second`` (B, C, H, W), any C: each date and channel debiased with its date's ``looks``
        (B, 2) and centred on its reference level (``references`` (B, 2, C))."""
        channels = first.shape[1]
        return torch.stack([
            normalise_log(date.reshape(-1, 1, *date.shape[-2:]), references[:, d].reshape(-1),
                          looks[:, d].repeat_interleave(channels), self.log_scale).reshape(date.shape)
            for d, date in enumerate((first, second))
        ], 1)

    def change_inputs(self, first: torch.Tensor, second: torch.Tensor,
                      references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The change branch's normalised pair of ``first``, ``second`` (B, ``channels``, H, W)."""
        return self.change.normalise(first, references[:, 0]), self.change.normalise(second, references[:, 1])

    def forward(self, z: torch.Tensor, change_first: torch.Tensor, change_second: torch.Tensor, looks: torch.Tensor,
                context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised inputs (:meth:`normalise_logs`, :meth:`change_inputs`) -> (each date's normalised log estimate
        (B, 2, C, H, W), change logits (B, 1, H, W)); ``looks`` (B, 2)."""
        return self.own_logs(z, looks), self.change(change_first, change_second, context)

    def own_logs(self, z: torch.Tensor, looks: torch.Tensor) -> torch.Tensor:
        """Each date despeckled alone: ``z`` (B, 2, C, H, W), ``looks`` (B, 2) -> (B, 2, C, H, W)."""
        return torch.stack([self.despeckle_logs(z[:, d], looks[:, d]) for d in range(2)], 1)

    def joint_logs(self, first: torch.Tensor, second: torch.Tensor, references: torch.Tensor,
                   looks: torch.Tensor) -> torch.Tensor:
        """The joint estimate (B, C, H, W): the despeckling branch on the mean of ``first`` and
        ``second`` (B, C, H, W linear intensity), each divided by its reference level
        (``references`` (B, 2, C)), at the mean's looks 4 L1 L2 / (L1 + L2) (``looks`` (B, 2));
        normalised log, relative to each date's own level."""
        relative = 0.5 * (first / references[:, 0, :, None, None] + second / references[:, 1, :, None, None])
        joint_looks = 4 * looks[:, 0] * looks[:, 1] / (looks[:, 0] + looks[:, 1])
        channels = first.shape[1]
        z = normalise_log(relative.reshape(-1, 1, *relative.shape[-2:]), 1.0, joint_looks.repeat_interleave(channels),
                          self.log_scale).reshape(relative.shape)
        return self.despeckle_logs(z, joint_looks)

    @staticmethod
    def combine(own: torch.Tensor, joint: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
        """Each date's output (B, 2, C, H, W): the ``joint`` estimate (B, C, H, W) moved towards
        the date's ``own`` (B, 2, C, H, W) by min(2 p, 1), p the change ``probability``
        (B, 1, H, W), all normalised logs (see the module doc)."""
        joint = joint[:, None]
        return joint + (2 * probability[:, None]).clamp(max=1) * (own - joint)

    def despeckle_pair(self, first: torch.Tensor, second: torch.Tensor, references: torch.Tensor,
                       looks: torch.Tensor, context: torch.Tensor | None = None,
                       probability: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear intensities ``first``, ``second`` (B, C, H, W), ``references`` (B, 2, C),
        ``looks`` (B, 2) -> (both dates despeckled, linear intensity (B, 2, C, H, W); change
        probability (B, 1, H, W)). The change branch gives the probability unless one is given;
        ``context``: its context, pooled over the whole image (:meth:`ChangeNet.context`); over
        this input when None."""
        own = self.own_logs(self.normalise_logs(first, second, references, looks), looks)
        if probability is None:
            probability = torch.sigmoid(self.change(*self.change_inputs(first, second, references), context))
        joint = self.joint_logs(first, second, references, looks)
        return self.to_intensity(self.combine(own, joint, probability), references), probability

    def to_intensity(self, estimates: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Normalised log estimates (B, 2, C, H, W), each relative to its date's and channel's
        reference level (``references`` (B, 2, C)) -> linear intensity (B, 2, C, H, W)."""
        flat = estimates.reshape(-1, 1, *estimates.shape[-2:])
        return log_to_intensity(flat, references.reshape(-1), self.log_scale).reshape(estimates.shape)

    def despeckle(self, intensity: torch.Tensor, reference, looks=None) -> torch.Tensor:
        """One date alone (B, 1, H, W) through the despeckling branch (no other date to fuse)."""
        return self.despeckler.despeckle(intensity, reference, looks)

    def cost_probe(self, side: int) -> None:
        """Despeckle a ``side`` x ``side`` pair of ``channels`` channels (both branches, fusion)."""
        parameter = next(self.parameters())
        ones = torch.ones(1, self.channels, side, side, dtype=parameter.dtype, device=parameter.device)
        self.despeckle_pair(ones, ones, torch.ones(1, 2, self.channels, dtype=ones.dtype, device=ones.device),
                            torch.full((1, 2), self.looks, dtype=ones.dtype, device=ones.device))
