"""Loading the configured image sources of a split, whatever their kind.

The one place that knows which reader takes which kind: labelled change pairs go to
:mod:`training.change_data`, every other kind (clean references, real single-look images,
stacks, ``prepare`` files, synthetic scenes) to :mod:`training.data`. Imports run one way
(``sources`` -> ``change_data`` -> ``data``), so neither reader imports the other's caller.
"""

from __future__ import annotations

from .change_data import load_change_pairs
from .config import ConfigError, SourceConfig
from .data import ImageSet, load_image_source

#: What each training mode can learn from.
MODE_KINDS = {
    "supervised": ("clean",),
    "blind_spot": ("clean", "single_look", "stack"),
    "contrastive": ("clean", "stack"),
    "change": ("clean", "change_pair"),
    "multitemporal": ("clean", "stack"),
    "multitask": ("clean", "change_pair"),
}


def load_source(source: SourceConfig) -> ImageSet:
    """Load and check the images of one configured source."""
    if source.kind == "change_pair":
        return load_change_pairs(source)
    return load_image_source(source)


#: What each mode's validation also takes besides what it learns from: real images, which
#: supervised training cannot score but watches (:mod:`training.watch`).
WATCHED_KINDS = {"supervised": ("single_look",)}


def load_sources(sources: list, mode: str, split: str) -> list[ImageSet]:
    """Load every source of a split, refusing kinds the mode cannot learn from (or, for the
    validation split, watch)."""
    sets = [load_source(source) for source in sources]
    accepted = MODE_KINDS[mode] + (WATCHED_KINDS.get(mode, ()) if split == "validation" else ())
    for image_set in sets:
        if image_set.kind not in accepted:
            raise ConfigError(
                f"[data].{split}: {image_set.description} is {image_set.kind} data, which {mode} "
                f"training cannot use (it takes {', '.join(accepted)})."
            )
    return sets
