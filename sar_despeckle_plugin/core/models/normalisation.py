"""The model-input contract: the reference level a network's input is normalised by.

A model card's ``normalisation`` names its ``kind``; cards written before the kind was recorded
(both shipped cards among them) are ``median_log``, the only kind so far:

``median_log``
    each image (one band; for change detection, one date and channel) is divided by its
    *reference level*, the median of its valid linear intensity, before the log. The despeckling
    networks then debias, scale and clip the log (``core.models.logdomain``); the change
    detector scales it (``core.models.change_net``); the card's other ``normalisation``
    constants say by how much. At inference the level is the whole image's (every tile of a
    scene sees the same one); in training, each patch's, times ``exp(U(-jitter, jitter))`` so
    that the network never relies on it.

:func:`reference_level` is the one place that computes it: the despeckle pipeline and the
learned change detector (the plugin), and the despeckling and change training datasets
(``training/``) all call it. Torch-free (numpy).
"""

from __future__ import annotations

import numpy as np

from ..errors import SarDespeckleError

#: Divide by the median of the valid linear intensity, then take the log.
MEDIAN_LOG = "median_log"
#: The kinds this version applies, with what each means (the card records the kind).
KINDS = {MEDIAN_LOG: "ln(I / median of the valid linear intensity), then the network's own scale"}


def normalisation_kind(normalisation: dict | None) -> str:
    """The ``kind`` a card's ``normalisation`` record names (``median_log`` where it names
    none); refuses kinds this version does not know."""
    kind = (normalisation or {}).get("kind", MEDIAN_LOG)
    if kind not in KINDS:
        raise SarDespeckleError(
            f"The model's card asks for the input normalisation {kind!r}, which this version of the "
            f"plugin does not apply (it knows {', '.join(KINDS)}): update the plugin, or use a model "
            "trained with this version."
        )
    return kind


def reference_level(values, normalisation: dict | None = None, *, axis: int | None = None,
                    jitter: float = 0.0, rng: np.random.Generator | None = None):
    """The reference level(s) the network input of ``values`` is divided by.

    Args:
        values: valid linear intensities (numpy array or CPU tensor; pass valid pixels only).
        normalisation: the card's ``normalisation`` record (None: the current contract).
        axis: None for one level over all ``values`` (a float); an axis (e.g. -1 over
            (dates, channels, pixels)) for one level per remaining index (an array).
        jitter: training only: multiply each level by ``exp(U(-jitter, jitter))`` drawn from ``rng``.
    Returns:
        The median; where it is not positive (mostly zeros), the mean, or 1 where that is 0 too.
    """
    normalisation_kind(normalisation)
    values = np.asarray(values)
    level = np.median(values, axis=axis)
    unusable = ~(level > 0)
    if np.any(unusable):
        mean = values.mean(axis=axis)
        level = np.where(unusable, np.where(mean > 0, mean, 1.0), level)
    if rng is not None and jitter:
        level = level * np.exp(rng.uniform(-jitter, jitter, np.shape(level)))
    return float(level) if axis is None else np.asarray(level)
