"""Training data of the ``multitemporal`` mode: Noise2Noise across dates, after MTPI-Net (Xu et
al.), with change masking.

Each item is a stack of k dates of one area (k drawn in :data:`DATES`): real co-registered
dates (``stack`` sources, as they are), or a clean patch given independent white Gamma speckle
per date (one L per stack, drawn log-uniformly in ``[data].looks``) and, in each date with
probability :data:`CHANGE_PROBABILITY`, a change (a rectangle multiplied by a contrast drawn
log-uniformly in 1/:data:`CONTRAST` .. :data:`CONTRAST`). Two dates are drawn: the *target* the
network despeckles and the *other* date, whose intensity is the Noise2Noise training target (its
speckle is independent of the inputs). The network reads the target and the *auxiliary* image:
the dates but those two averaged after bringing those that changed to the target's level
(``core.multitemporal.methods.compensated_mean``). The loss is counted only where the other date
agrees with the target (``mask``: the same local-mean test), so that real changes are not learned
as noise.

Items (tensors; images (1, P, P) linear intensity): ``target``, ``auxiliary``, ``other``,
``mask`` (float 0/1), ``reference`` (the target's level, jittered), ``looks`` (of the target and
of the other date), ``auxiliary_looks`` (the sum of the averaged dates' looks).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sar_despeckle_plugin.core.models.normalisation import reference_level
from sar_despeckle_plugin.core.multitemporal.methods import compensated_mean, differs, local_means

from .config import DataConfig
from .data import OnTheFlyPatches, speckle_model_of, speckled

#: Dates per training stack (inclusive): the target, the other date and at least one auxiliary.
DATES = (3, 5)
#: Chance that a synthetic date holds a change, and the largest contrast of a change.
CHANGE_PROBABILITY = 0.5
CONTRAST = 8.0
#: Side of the local means of the change test (pixels).
WINDOW = 7


def insert_change(date: np.ndarray, rng: np.random.Generator) -> None:
    """Multiply a random rectangle (an eighth to a half of each side) of ``date`` (rows, cols),
    in place, by a contrast drawn log-uniformly in [1 / CONTRAST, CONTRAST]."""
    rows, cols = date.shape
    height, width = (int(rng.integers(max(side // 8, 1), max(side // 2, 2))) for side in (rows, cols))
    top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
    date[top: top + height, left: left + width] *= math.exp(rng.uniform(-math.log(CONTRAST), math.log(CONTRAST)))


def auxiliary_image(dates: torch.Tensor, looks: list[float], target: int, used: list[int]) -> tuple[torch.Tensor, float]:
    """The auxiliary image (1, rows, cols) of the ``target`` date from the dates ``used`` (not
    the target; ``dates`` (1, k, 1, rows, cols) linear intensity of ``looks`` each), brought to
    the target's level where they changed, and its looks (the sum of theirs)."""
    chosen = [target, *used]
    valid = torch.ones(dates.shape[:2] + dates.shape[-2:], dtype=torch.bool)[:, chosen]
    stack = dates[:, chosen]
    chosen_looks = [looks[t] for t in chosen]
    means = local_means(stack, valid, WINDOW)
    auxiliary = compensated_mean(stack, valid, means, 0, chosen_looks, WINDOW, with_target=False)
    return auxiliary[0], float(sum(chosen_looks[1:]))


def as_stack(dates: np.ndarray) -> torch.Tensor:
    """(k, rows, cols) -> (1, k, 1, rows, cols) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(dates, dtype=np.float32))[None, :, None]


def stack_example(dates: np.ndarray, looks: list[float], target: int, other: int) -> dict:
    """The network's inputs and the Noise2Noise target from ``dates`` (k, rows, cols) linear
    intensity of ``looks`` each: see the module doc (no batch axis; the caller adds the
    reference level)."""
    stack = as_stack(dates)
    auxiliary, auxiliary_looks = auxiliary_image(stack, looks, target,
                                                 [t for t in range(len(dates)) if t not in (target, other)])
    pair = stack[:, [target, other]]
    means = local_means(pair, torch.ones(pair.shape[:2] + pair.shape[-2:], dtype=torch.bool), WINDOW)
    changed = differs(means, 0, [looks[target], looks[other]], WINDOW)[0, 1]
    return {
        "target": stack[0, target], "auxiliary": auxiliary, "other": stack[0, other], "mask": (~changed).float(),
        "looks": torch.tensor(looks[target], dtype=torch.float32),
        "auxiliary_looks": torch.tensor(auxiliary_looks, dtype=torch.float32),
    }


def validation_stacks(sets: list, looks: float, seed: int) -> list[dict]:
    """Fixed validation examples from the clean images of ``sets``: three dates with independent
    speckle of ``looks``, date 1 changed (its second quarter of rows and columns 4 times
    brighter), date 2 the target, every other date auxiliary. Items: ``target``, ``auxiliary``
    (1, 1, H, W), ``clean`` (the target's), ``reference``, ``looks``, ``auxiliary_looks``."""
    examples = []
    for s, image_set in enumerate(sets):
        for i, image in enumerate(image_set.images):
            if image_set.kind != "clean":
                continue
            rng = np.random.default_rng([seed, 1, s, i])
            clean = np.repeat(image[:1], 3, axis=0).astype(np.float32)
            rows, cols = clean.shape[1:]
            clean[0, rows // 4: rows // 2, cols // 4: cols // 2] *= 4.0
            stack = as_stack(np.stack([speckled(date, looks, rng) for date in clean]))
            auxiliary, auxiliary_looks = auxiliary_image(stack, [looks] * 3, 1, [0, 2])
            examples.append({
                "target": stack[:, 1], "auxiliary": auxiliary[None], "clean": torch.from_numpy(clean[1:2])[None],
                "reference": reference_level(stack[0, 1].numpy()), "looks": looks, "auxiliary_looks": auxiliary_looks,
            })
    return examples


class StackPatches(OnTheFlyPatches):
    """Patches of the ``multitemporal`` mode, drawn on the fly (see the module doc)."""

    def __init__(self, sets: list, data: DataConfig, seed: int, length: int | None = None) -> None:
        super().__init__(sets, data, seed, length)
        self.speckle = speckle_model_of(data)
        self.jitter = data.reference_jitter

    def __getitem__(self, index: int) -> dict:
        rng = self.generator(index)
        real = "real" in self.samplers and (len(self.samplers) == 1 or rng.random() < 0.5)
        patch = self.samplers["real" if real else "clean"].draw(rng)
        if real:
            dates = patch[rng.permutation(len(patch))[: min(len(patch), DATES[1])]]
            looks = [float(self.speckle.looks_range[0])] * len(dates)
        else:
            count = int(rng.integers(DATES[0], DATES[1] + 1))
            low, high = self.speckle.looks_range
            drawn = math.exp(rng.uniform(math.log(low), math.log(high)))  # one L per stack
            dates = np.stack([speckled(clean, drawn, rng) for clean in self._changed(patch[0], count, rng)])
            looks = [drawn] * count
        target, other = (int(t) for t in rng.choice(len(dates), 2, replace=False))
        item = stack_example(dates, looks, target, other)
        item["reference"] = torch.tensor(reference_level(dates[target], jitter=self.jitter, rng=rng))
        return item

    @staticmethod
    def _changed(clean: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
        dates = []
        for _ in range(count):
            date = clean.astype(np.float32).copy()
            if rng.random() < CHANGE_PROBABILITY:
                insert_change(date, rng)
            dates.append(date)
        return dates
