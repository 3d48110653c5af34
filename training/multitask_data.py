"""Training data of the ``multitask`` mode (after MTDN, Li et al.): two-date pairs with change
labels, for a network that despeckles each date and detects change between them
(``core.models.multitask``).

Pairs are the change detector's (:mod:`training.change_data`), plus each date's looks, which the
looks-conditioned despeckling branch reads and debiases with:

* *synthetic*: changes inserted into a clean patch, both dates given independent white Gamma
  speckle of one L per pair (log-uniform in ``[data].looks``) by
  :func:`training.change_data.synthetic_pair` (contrast, calibration gains and date swaps of the
  ``[change]`` section); the label is the inserted mask, known exactly;
* *real*: labelled pairs (the MTDN Sentinel-1 patches), as a network of ``channels`` intensity
  channels per date reads them; each date's looks estimated on the crop
  (:func:`core.speckle.estimate_looks`), within ``[data].looks``; they train the change branch
  only (``noise2noise`` below).

Items (tensors): ``first``, ``second`` (C, P, P) linear intensity, ``references`` (2, C) each
date's and channel's reference level (its median, jittered), ``looks`` (2,), ``label``
(1, P, P) float 0/1, ``noise2noise`` (0-d float): 1 where the despeckling branch learns from the
pair (synthetic pairs), 0 where only the change branch does (labelled real pairs: their speckle is
correlated and multi-looked, their looks only estimated, and "unchanged" land still varies between
dates; as Noise2Noise targets they took ``sarcnn_looks`` from 22.5 to 16.9 dB on one-look
validation pairs in 40 steps of 8, where synthetic pairs took it to 22.7 in 60).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.speckle import estimate_looks

from .change_data import ChangePatches, as_example, reference_levels, synthetic_pair, validation_pairs, with_channels
from .data import speckled


def pair_looks(pair: np.ndarray, looks_range: tuple[float, float]) -> list[float]:
    """Each date's looks of a labelled ``pair`` (2C + 1, rows, cols), estimated over its
    channels, within ``looks_range``; the range's low end where a crop is too small to tell."""
    channels = (pair.shape[0] - 1) // 2
    low, high = looks_range
    looks = []
    for date in (pair[:channels], pair[channels: 2 * channels]):
        try:
            value = estimate_looks(list(date), [np.ones(date.shape[-2:], bool)] * channels)
        except SarDespeckleError:
            value = low
        looks.append(float(min(max(value, low), high)))
    return looks


def as_item(pair: np.ndarray, looks: list[float], references: np.ndarray, noise2noise: bool) -> dict:
    """The tensors a ``multitask`` batch holds (see the module doc) of one pair."""
    example = as_example(pair, references)
    return {"first": example["first"], "second": example["second"], "label": example["label"],
            "references": torch.from_numpy(np.ascontiguousarray(references)),
            "looks": torch.tensor(looks, dtype=torch.float32), "noise2noise": torch.tensor(float(noise2noise))}


class MultitaskPatches(ChangePatches):
    """Training patches of the ``multitask`` mode (see the module doc); the pools and their
    shares as for the change detector (``[change].real_fraction``)."""

    def __init__(self, sets: list, data, settings, seed: int, looks_range: tuple[float, float],
                 length: int | None = None, channels: int = 1) -> None:
        super().__init__(sets, data, settings, seed, length, channels)
        self.looks_range = looks_range

    def __getitem__(self, index: int) -> dict:
        rng = self.generator(index)
        real = rng.random() < self.real_fraction
        if real:
            pair = with_channels(self.samplers["real"].draw(rng), self.channels, rng)
            looks = pair_looks(pair, self.looks_range)
        else:
            low, high = self.looks_range
            drawn = math.exp(rng.uniform(math.log(low), math.log(high)))  # one L per pair
            settings = dataclasses.replace(self.settings, looks=[drawn, drawn])
            pair = synthetic_pair(self.samplers["clean"].draw(rng)[0], settings, rng, self.channels)
            looks = [drawn, drawn]
        return as_item(pair, looks, reference_levels(pair, self.jitter, rng), noise2noise=not real)


#: Contrast of the fixed change of the synthetic validation pairs (date 2 brighter).
VALIDATION_CHANGE = 4.0


def validation_examples(sets: list, settings, seed: int, looks: float, looks_range: tuple[float, float],
                        channels: int = 1) -> list[dict]:
    """Fixed whole validation pairs (tensors with a batch axis of 1; items as in the module doc,
    plus ``name`` and, for clean sources, ``clean`` (1, 2, C, H, W), the dates' reflectivities):

    * labelled pairs as they are (the change detector's :func:`validation_pairs`), looks estimated;
    * each clean image as two dates of ``looks``-look speckle, date 2 :data:`VALIDATION_CHANGE`
      times brighter in its second quarter of rows and columns (the label), every channel alike.
    """
    examples = []
    labelled = [s for s in sets if s.kind != "clean"]
    for pair in validation_pairs(labelled, settings, seed, channels):
        example = pair.example
        references = torch.stack([example["reference_first"][0], example["reference_second"][0]])
        pair_array = torch.cat([example["first"][0], example["second"][0], example["label"][0]]).numpy()
        looks_pair = pair_looks(pair_array, looks_range)
        examples.append({"first": example["first"], "second": example["second"], "label": example["label"],
                         "references": references[None], "looks": torch.tensor([looks_pair]),
                         "noise2noise": torch.zeros(1), "name": pair.name})
    for s, image_set in enumerate(sets):
        if image_set.kind != "clean":
            continue
        for i, image in enumerate(image_set.images):
            rng = np.random.default_rng([seed, 2, s, i])
            clean = np.repeat(image[:1].astype(np.float32)[None], 2, axis=0).repeat(channels, axis=1)  # (2, C, H, W)
            rows, cols = clean.shape[-2:]
            label = np.zeros((1, rows, cols), np.float32)
            label[:, rows // 4: rows // 2, cols // 4: cols // 2] = 1
            clean[1] *= np.where(label > 0, VALIDATION_CHANGE, 1.0).astype(np.float32)
            noisy = np.stack([speckled(date, looks, rng) for date in clean])
            pair = np.concatenate([noisy[0], noisy[1], label])
            item = as_item(pair, [looks, looks], reference_levels(pair), noise2noise=True)
            examples.append({**{key: value[None] for key, value in item.items()},
                             "clean": torch.from_numpy(clean)[None], "name": f"{image_set.description} #{i}"})
    return examples
