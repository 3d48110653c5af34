"""The change detectors, one per METHOD, and their registry :data:`DETECTORS`.

A detector sees :class:`Stack` windows (pre-averaged covariances of the k dates, torch,
(B, k, C, H, W)); ``fit`` looks at samples of the whole image before the tiled pass (thresholds,
normalisation, context) and ``detect`` gives per pixel (map, changed, date), each (B, H, W).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..choices import DEFAULT_CHANGE_MODEL, SHIPPED_WEIGHTS, SINGLE_POL_CHANGE_MODEL
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..models.card import read_card
from ..models.normalisation import reference_level
from ..models.weights import load_model
from ..choices import INTENSITY_BANDS
from .settings import ChangeSettings
from .statistics import change_dates, log_ratio_pvalue, log_ratios, omnibus_pvalue, sequential_pvalues
from .thresholds import THRESHOLD_METHODS, automatic_threshold, noise_floor


@dataclass
class Stack:
    """Pre-averaged covariances of k dates, as the detectors see them.

    Attributes:
        cov: (B, k, C, H, W) linear covariance bands of the layout.
        looks: (B, k, H, W) equivalent number of looks of each date after the averaging, or
            (1, k, 1, 1) when they are the same everywhere.
        valid: (B, H, W) pixels valid on every date and band.
        layout: ``single``, ``dual`` or ``c2``.
    """

    cov: torch.Tensor
    looks: torch.Tensor
    valid: torch.Tensor
    layout: str

    def crop(self, halo: int) -> "Stack":
        if halo == 0:
            return self
        inner = (..., slice(halo, -halo), slice(halo, -halo))
        looks = self.looks if self.looks.shape[-1] == 1 else self.looks[inner]
        return Stack(self.cov[inner], looks, self.valid[inner], self.layout)


class ChangeDetector:
    """A METHOD. Subclasses set ``name`` and implement :meth:`detect` (and :meth:`fit`)."""

    name = ""
    #: Context the detector needs around a pixel beyond the pre-averaging window (pixels).
    halo = 0
    #: What the CHANGE_MAP band holds (recorded as its description and in the metadata).
    map_kind = "p-value of no change"

    def fit(self, samples: list[Stack], feedback: Feedback) -> None:
        """Look at valid samples of the whole image before the tiled pass (thresholds)."""

    def detect(self, stack: Stack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(map, changed, date), each (B, H, W): the map value, whether the pixel changed, and
        its candidate first change date (2..k, the 1-based index of the first date after the
        change) for *every* pixel: the pipeline keeps it where the final mask says changed
        (which MIN_AREA may alter)."""
        raise NotImplementedError

    def record(self) -> dict:
        """What to record in the outputs' metadata beside the method name."""
        return {}


def first_pair_over(probabilities: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(map, changed, date) from the change probability of each consecutive pair ((B, H, W),
    date order): the highest probability; changed where any passes 0.5; the date of the first
    pair that does (the most probable pair where none does)."""
    probability = changed = date = None
    for pair, p in enumerate(probabilities):
        over = p > 0.5
        if probability is None:
            probability, changed, date = p, over, torch.full_like(p, 2, dtype=torch.long)
            continue
        date = torch.where(changed, date, torch.where(over | (p > probability), pair + 2, date))
        probability, changed = torch.maximum(probability, p), changed | over
    return probability, changed, date


class OmnibusDetector(ChangeDetector):
    """The omnibus Wishart test, with the sequential R_j tests for the first change date."""

    name = "omnibus"

    def __init__(self, significance: float, approximation: str = "auto") -> None:
        self.significance = significance
        self.approximation = approximation

    def detect(self, stack):
        omnibus = omnibus_pvalue(stack.cov, stack.looks, stack.layout, self.approximation)
        if stack.cov.shape[1] == 2:
            return omnibus, omnibus < self.significance, torch.full_like(omnibus, 2, dtype=torch.long)
        sequential = sequential_pvalues(stack.cov, stack.looks, stack.layout, self.approximation)
        return omnibus, omnibus < self.significance, change_dates(sequential, self.significance)

    def record(self):
        return {"significance": self.significance, "pvalue_approximation": self.approximation}


def pair_ratios(stack: Stack) -> list[torch.Tensor]:
    """Signed standardised log-ratios of each pair of consecutive dates: (B, channels, H, W) each."""
    return [log_ratios(stack.cov[:, j - 1], stack.cov[:, j], stack.looks[:, j - 1], stack.looks[:, j], stack.layout)
            for j in range(1, stack.cov.shape[1])]


def pair_thresholds(samples: list[Stack], method: str, significance: float) -> list[tuple[float, float]]:
    """Per pair of consecutive dates, (threshold, noise floor) on the change index from the
    samples: ``method``'s automatic threshold, never below the index unchanged pixels pass more
    often than ``significance`` (``thresholds.noise_floor``)."""
    per_pair = [[] for _ in range(samples[0].cov.shape[1] - 1)]
    for stack in samples:
        for pair, ratios in enumerate(pair_ratios(stack)):
            per_pair[pair].append(ratios.movedim(1, -1)[stack.valid].cpu().numpy())  # (pixels, channels)
    result = []
    for values in per_pair:
        values = np.concatenate(values)
        least = noise_floor(values.T, significance)
        result.append((automatic_threshold(method, np.sqrt((values ** 2).sum(1)), values.shape[1], least), least))
    return result


class LogRatioDetector(ChangeDetector):
    """Standardised log-ratio of consecutive dates with an automatic threshold per pair, never
    below the noise floor that ``significance`` sets."""

    map_kind = "p-value of no change (log-ratio, chi-square approximation)"

    def __init__(self, threshold: str, significance: float) -> None:
        self.name = f"log_ratio_{threshold}"
        self.threshold_method = threshold
        self.significance = significance
        self.thresholds: list[float] = []

    @staticmethod
    def indices(stack: Stack) -> list[torch.Tensor]:
        return [ratios.square().sum(1).sqrt() for ratios in pair_ratios(stack)]

    def fit(self, samples, feedback):
        found = pair_thresholds(samples, self.threshold_method, self.significance)
        self.thresholds = [threshold for threshold, _ in found]
        feedback.info("Log-ratio thresholds (standardised index): " + ", ".join(
            f"{t:.3f}" + (f" (the noise floor at SIGNIFICANCE {self.significance:g})" if t == least else "")
            for t, least in found))

    def detect(self, stack):
        pvalue = changed = date = strongest = None
        for pair, index in enumerate(self.indices(stack)):
            over = index > self.thresholds[pair]
            p = log_ratio_pvalue(index, stack.layout)
            if pvalue is None:
                pvalue, changed, strongest = p, over, index / self.thresholds[pair]
                date = torch.full_like(index, 2, dtype=torch.long)
                continue
            relative = index / self.thresholds[pair]
            # first pair over its threshold; among pixels over none, the relatively strongest pair
            date = torch.where(changed, date, torch.where(over | (relative > strongest), pair + 2, date))
            strongest = torch.maximum(strongest, relative)
            pvalue, changed = torch.minimum(pvalue, p), changed | over
        return pvalue, changed, date

    def record(self):
        return {"thresholds": self.thresholds, "significance": self.significance}


#: The model card ``input_kind`` that serves each band layout.
CHANGE_INPUT_KINDS = {"single": "single_pol_pair", "dual": "dual_pol_pair", "c2": "dual_pol_pair"}


class LearnedDetector(ChangeDetector):
    """The learned detector (``core.models.change_net.ChangeNet``, after MTDN's change branch) on each
    pair of consecutive dates of intensity: dual-pol (VV, VH; C11, C22 of C2) or single-pol, by the
    card's ``input_kind`` (:data:`CHANGE_INPUT_KINDS`).

    ``fit`` sets, from the sampled windows of the whole image, each date's and channel's
    reference level (median intensity) and each pair's global-attention context, so every tile
    sees the same normalisation and context: tiled output equals whole-image output. The map is
    the highest change probability over the pairs; a pixel changed where it passes 0.5; its date
    is the first pair that does (the most probable pair where none does).
    """

    name = "learned"
    map_kind = "change probability (learned detector)"

    def __init__(self, card_path: str, layout: str) -> None:
        self.card_path = card_path
        self.card = read_card(card_path)
        self.input_kind = CHANGE_INPUT_KINDS[layout]
        if self.card.input_kind not in CHANGE_INPUT_KINDS.values():
            raise SarDespeckleError(
                f"Model '{self.card.name}' is not a change detector (it reads {self.card.input_kind}): "
                "choose the card of a model trained in change mode."
            )
        if self.card.input_kind != self.input_kind:
            reads = "single-pol" if self.card.input_kind == "single_pol_pair" else "dual-pol"
            raise SarDespeckleError(
                f"Change model '{self.card.name}' reads {reads} dates, but BAND_LAYOUT is {layout}: leave "
                f"MODEL empty for the shipped detector of that layout "
                f"({os.path.splitext(os.path.basename(shipped_change_model(layout)))[0]}), "
                "or set BAND_LAYOUT to what the dates hold."
            )
        self.halo = self.card.receptive_radius
        self.model = None
        self.references: torch.Tensor | None = None
        self.contexts: list[torch.Tensor] = []

    @staticmethod
    def intensities(stack: Stack) -> torch.Tensor:
        """(B, k, C, H, W) linear intensities: the two polarisations, or the single-pol band."""
        return stack.cov[:, :, list(INTENSITY_BANDS[stack.layout])]

    def _pair(self, stack: Stack, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised dates j - 1 and j (B, C, H, W); invalid pixels at the reference level."""
        intensity = self.intensities(stack)
        valid = stack.valid[:, None]
        dates = []
        for date in (j - 1, j):
            reference = self.references[date].to(intensity.dtype)
            level = torch.where(valid, intensity[:, date], reference[None, :, None, None])
            dates.append(self.model.normalise(level, reference))
        return dates[0], dates[1]

    def fit(self, samples, feedback):
        device = samples[0].cov.device
        self.model = load_model(self.card_path, device, input_kind=self.input_kind).module.float()
        valid_values = torch.cat(
            [self.intensities(s).permute(1, 2, 0, 3, 4)[:, :, s.valid] for s in samples], dim=-1
        )  # (k, C, valid pixels)
        levels = reference_level(valid_values.float().cpu().numpy(), self.card.normalisation, axis=-1)
        self.references = torch.as_tensor(levels, dtype=torch.float32, device=device)
        self.contexts = []
        with torch.no_grad():
            for j in range(1, samples[0].cov.shape[1]):
                parts = []  # one sample window at a time: softmax pooling over all of them
                for s in samples:
                    z1, z2 = self._pair(s, j)
                    features = self.model.features(z1.float(), z2.float())
                    for b in range(len(features)):
                        parts.append(self.model.attention.partial(features[b: b + 1], s.valid[b: b + 1, None]))
                self.contexts.append(self.model.attention.combine(parts))
        feedback.info("Learned detector: model " + self.card.name + "; reference levels (median "
                      "intensity per date and channel): "
                      + "; ".join(", ".join(f"{v:.4g}" for v in row) for row in self.references.tolist()))

    def detect(self, stack):
        probabilities = []
        with torch.no_grad():
            for j in range(1, stack.cov.shape[1]):
                z1, z2 = self._pair(stack, j)
                probabilities.append(torch.sigmoid(self.model(z1.float(), z2.float(), self.contexts[j - 1]))[:, 0])
        return first_pair_over(probabilities)

    def record(self):
        return {"model": self.card.name, "model_sha256": self.card.sha256,
                "reference_levels": self.references.tolist() if self.references is not None else None}


def shipped_change_model(layout: str = "dual") -> str:
    """The card of the shipped change detector for dates of ``layout``: single-pol or dual-pol
    (intensities and C2 alike)."""
    name = SINGLE_POL_CHANGE_MODEL if CHANGE_INPUT_KINDS[layout] == "single_pol_pair" else DEFAULT_CHANGE_MODEL
    return os.path.join(SHIPPED_WEIGHTS, name + ".json")


#: METHOD id -> factory taking the run's settings, in the enum order of
#: ``choices.CHANGE_METHOD_LABELS`` (a test checks): ``log_ratio_<threshold>`` for each
#: of :data:`~.thresholds.THRESHOLD_METHODS`. ``automatic`` is not a detector: the pipeline
#: resolves it to one of these first (``automatic.choose_change_method``).
DETECTORS: dict[str, Callable[[ChangeSettings], ChangeDetector]] = {
    "omnibus": lambda settings: OmnibusDetector(settings.significance, settings.approximation),
    **{f"log_ratio_{threshold}": (lambda settings, threshold=threshold: LogRatioDetector(threshold,
                                                                                       settings.significance))
       for threshold in THRESHOLD_METHODS},
    "learned": lambda settings: LearnedDetector(settings.model or shipped_change_model(settings.layout),
                                                settings.layout),
    "unsupervised": lambda settings: _unsupervised(settings.significance),
}


def _unsupervised(significance: float) -> ChangeDetector:
    from .unsupervised import UnsupervisedDetector  # it builds on this module

    return UnsupervisedDetector(significance)
