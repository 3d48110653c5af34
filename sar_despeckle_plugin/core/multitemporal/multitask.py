"""METHOD ``multitask``: a two-date stack through the multi-task despeckling + change network
(``core.models.multitask``, after MTDN), on torch tensors.

Reads the intensity channels of exactly two dates, LINEAR INTENSITY float32 (B, 2, C, H, W)
(C = 1 single-pol; 2 for VV, VH or C11, C22), with each date's validity (B, 2, H, W), and
returns the target dates' despeckled intensities (B, T, C, H, W) in the order of ``targets``.

Each date is the network's joint estimate of both dates where its change branch sees no change
and the date's own estimate where it does (:meth:`MultiTaskNet.combine`). A network of one
channel (single-pol card) serves dual-pol stacks too: its change branch reads each channel's pair
and the pixel counts as changed by the most probable one (a change in VH alone keeps VV apart as
well). Where either date is invalid the change probability is 1: each date keeps its own estimate.

Every tile sees the same normalisation and change context, set once from the run's sample
(:meth:`MultiTaskPair.fit`): each date's and channel's reference level (median intensity of its
valid pixels) and, per change-branch pair, the global-attention context pooled over the sample
windows, so tiled output equals whole-image output.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import SarDespeckleError
from ..models.normalisation import reference_level
from ..models.weights import LoadedModel


class MultiTaskPair:
    """The multi-task network ``model`` on two-date stacks (see the module doc).

    Args:
        model: the checked, loaded network (card input kind ``date_pair``).
        looks: each date's looks (clamped to the card's looks range for the network).
    """

    def __init__(self, model: LoadedModel, looks: Sequence[float]) -> None:
        self.model = model
        self.net = model.module
        low, high = model.card.looks_range
        self.looks = [float(min(max(value, low), high)) for value in looks]
        self.references: torch.Tensor | None = None  # (2, C)
        self.contexts: list[torch.Tensor] = []

    def _pairs(self, intensity: torch.Tensor) -> list[tuple[int, ...]]:
        """The channel groups the network reads at once: all C of them, or one at a time."""
        channels = intensity.shape[2]
        if self.net.channels == channels:
            return [tuple(range(channels))]
        if self.net.channels == 1:
            return [(c,) for c in range(channels)]
        raise SarDespeckleError(
            f"Model '{self.model.card.name}' reads {self.net.channels} channels per date, but the dates hold "
            f"{channels}: set BAND_LAYOUT to what the model was trained on, or choose another MODEL."
        )

    def _filled(self, intensity: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, 2, C, H, W) with invalid pixels at their date's and channel's reference level."""
        references = self.references.to(intensity)[None, :, :, None, None]
        return torch.where(valid[:, :, None], intensity, references.expand_as(intensity))

    def fit(self, covs: Sequence[np.ndarray], valids: Sequence[np.ndarray]) -> None:
        """Reference levels and change contexts from the sample: ``covs`` per window (2, C, H, W)
        linear intensity, ``valids`` (2, H, W)."""
        values = [np.concatenate([cov[d, c][valid[d]] for cov, valid in zip(covs, valids)])
                  for d in range(2) for c in range(covs[0].shape[1])]
        levels = [reference_level(v, self.model.card.normalisation) if v.size else 1.0 for v in values]
        self.references = torch.tensor(levels, dtype=torch.float32).reshape(2, -1)
        device = next(self.net.parameters()).device
        windows = [(torch.from_numpy(cov).float()[None].to(device), torch.from_numpy(valid)[None].to(device))
                   for cov, valid in zip(covs, valids)]
        self.contexts = []
        with torch.no_grad():
            for group in self._pairs(windows[0][0]):
                parts = []
                for cov, valid in windows:
                    first, second = self._change_inputs(self._filled(cov, valid), group)
                    features = self.net.change.features(first, second)
                    parts.append(self.net.change.attention.partial(features, valid.all(1, keepdim=True)))
                self.contexts.append(self.net.change.attention.combine(parts))

    def _change_inputs(self, filled: torch.Tensor, group: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        references = self.references.to(filled)[:, list(group)]
        return (self.net.change.normalise(filled[:, 0, list(group)], references[0]),
                self.net.change.normalise(filled[:, 1, list(group)], references[1]))

    def change_probability(self, intensity: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The change branch's probability (B, 1, H, W) of (B, 2, C, H, W) linear intensity: the
        most probable of its channel groups; 1 where either date is invalid."""
        filled = self._filled(intensity, valid)
        with torch.no_grad():
            probability = torch.stack([
                torch.sigmoid(self.net.change(*self._change_inputs(filled, group), context))[:, 0]
                for group, context in zip(self._pairs(intensity), self.contexts)
            ], 1).amax(1, keepdim=True)
        return torch.where(valid.all(1, keepdim=True), probability, torch.ones_like(probability))

    def __call__(self, intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """(B, 2, C, H, W) -> (B, T, C, H, W)."""
        batch, channels = intensity.shape[0], intensity.shape[2]
        looks = torch.tensor(self.looks, dtype=intensity.dtype, device=intensity.device).expand(batch, 2)
        references = self.references.to(intensity)[None].expand(batch, 2, channels)
        probability = self.change_probability(intensity, valid)
        filled = self._filled(intensity, valid)
        with torch.no_grad():
            estimate = self.net.despeckle_pair(filled[:, 0], filled[:, 1], references, looks, probability=probability)[0]
        return estimate[:, list(targets)]
