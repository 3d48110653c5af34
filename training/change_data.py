"""Training data for the change detector: labelled two-date pairs, and synthetic changes
inserted into speckled pairs made from clean references.

A *pair* of C intensity channels per date is float32 (2C + 1, rows, cols): date 1's channels,
date 2's channels (linear intensity), then the label (1 = changed, 0 = unchanged). Dual-pol
(C = 2): VV1, VH1, VV2, VH2, label; single-pol (C = 1): I1, I2, label. The network's
``channels`` hyper-parameter sets C; a dual-pol labelled pair serves a single-pol network as two
single-pol pairs (its VV and its VH: :func:`single_pol_view`). Sources of kind ``change_pair`` are:

* MTDN ``.mat`` patches (key ``data``, (rows, cols, 15): channels 0 and 3 are date 1's C11 (VV)
  and C22 (VH), 7 and 10 date 2's, 14 the label);
* ``.npy`` arrays or GDAL rasters holding the five (dual-pol) or three (single-pol) bands above,
  in that order.

``path`` may be a glob pattern (``patches/[1-9].mat``): every match is one pair.
Patches are a pure function of (seed, epoch, index), as in :mod:`training.data`. This module
builds on :mod:`training.data` and never the other way round (:mod:`training.sources` picks the
reader of each source).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np
import torch

from sar_despeckle_plugin.core import speckle
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.normalisation import reference_level
from sar_despeckle_plugin.core.raster import RasterReader

from .config import ChangeConfig, DataConfig, SourceConfig
from .data import ImageSet, OnTheFlyPatches

#: Bands of a pair per intensity channels of a date: (I1, I2, label) and (VV1, VH1, VV2, VH2, label).
PAIR_BANDS = {1: 3, 2: 5}
#: MTDN .mat channels of VV1, VH1, VV2, VH2 and the label.
MTDN_CHANNELS = (0, 3, 7, 10, 14)


def source_paths(path: str) -> list[str]:
    """The files a source path names: itself, or the sorted matches of a glob pattern."""
    return sorted(glob.glob(path)) if glob.has_magic(path) else [path]


def _read_pair(path: str) -> np.ndarray:
    name = f"'{path}'"
    if path.endswith(".mat"):
        from scipy.io import loadmat

        try:
            data = loadmat(path)["data"]
        except (OSError, ValueError, KeyError) as error:
            raise SarDespeckleError(f"{name} is not an MTDN patch file with key 'data' ({error}).") from None
        if data.ndim != 3 or data.shape[-1] <= max(MTDN_CHANNELS):
            raise SarDespeckleError(f"{name} has shape {data.shape}; MTDN patches are (rows, cols, 15).")
        return np.moveaxis(data[..., list(MTDN_CHANNELS)], -1, 0).astype(np.float32)
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False).astype(np.float32)
    reader = RasterReader(path)
    values, valid = reader.read(0, 0, reader.height, reader.width)
    if not valid.all():
        raise SarDespeckleError(f"{name} has {int((~valid).sum())} nodata pixels; change pairs must be fully valid.")
    return values


def check_pair(pair: np.ndarray, name: str) -> np.ndarray:
    """Refuse pairs of the wrong layout, with non-finite or non-positive intensities, or
    labels other than 0/1; return it as float32."""
    if pair.ndim != 3 or pair.shape[0] not in PAIR_BANDS.values():
        raise SarDespeckleError(
            f"{name} has shape {pair.shape}; a change pair is (5, rows, cols): VV1, VH1, VV2, VH2, label; "
            "or single-pol (3, rows, cols): I1, I2, label."
        )
    intensity, label = pair[:-1], pair[-1]
    if not np.isfinite(pair).all():
        raise SarDespeckleError(f"{name} holds NaN or infinite values.")
    speckle.check_values(intensity.ravel(), "intensity", 1)
    if (intensity <= 0).any():
        raise SarDespeckleError(f"{name} has zero intensities: change pairs need positive linear intensity.")
    if not np.isin(label, (0, 1)).all():
        raise SarDespeckleError(f"{name}: the label band must hold 0 (unchanged) and 1 (changed) only.")
    return pair.astype(np.float32)


def load_change_pairs(source: SourceConfig) -> ImageSet:
    paths = source_paths(source.path)
    pairs = []
    for path in paths:
        pair = _read_pair(path)
        rows = source.rows or [0, pair.shape[-2]]
        cols = source.cols or [0, pair.shape[-1]]
        pairs.append(check_pair(pair[..., rows[0]: rows[1], cols[0]: cols[1]], f"'{path}'"))
    names = ", ".join(os.path.basename(p) for p in paths)
    kinds = sorted({"dual-pol" if pair_channels(p) == 2 else "single-pol" for p in pairs})
    return ImageSet(pairs, "change_pair", f"{len(pairs)} labelled {' and '.join(kinds)} pair(s): {names}")


def pair_channels(pair: np.ndarray) -> int:
    """Intensity channels per date of a pair (2C + 1 bands)."""
    return (pair.shape[0] - 1) // 2


def single_pol_view(pair: np.ndarray, channel: int) -> np.ndarray:
    """The single-pol pair (3, rows, cols) of one ``channel`` (0 VV, 1 VH) of a dual-pol pair."""
    return pair[[channel, 2 + channel, 4]]


def with_channels(pair: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    """``pair`` as a network of ``channels`` intensity channels per date reads it: as it is, or
    one randomly chosen polarisation of a dual-pol pair for a single-pol network."""
    if pair_channels(pair) == channels:
        return pair
    if channels == 1:
        return single_pol_view(pair, int(rng.integers(2)))
    raise SarDespeckleError("A single-pol labelled pair cannot train a dual-pol change detector: give "
                            "dual-pol pairs, or set [model].hyperparameters.channels = 1.")


#: Largest share of a synthetic patch that may change: changes stay a minority, so that each
#: date's median (the reference level the network normalises by) is an unchanged level, as it is
#: in real scenes and as the normalisation assumes.
MAX_CHANGED_SHARE = 0.4


def _blobs(side: int, rng: np.random.Generator) -> np.ndarray:
    """A bool (side, side) mask of 0-4 random shapes 3-48 px across (half-axes log-uniform, so
    small ones are as common as large): ellipses, rectangles and irregular outlines (an ellipse
    whose radius wanders with the angle, like a field or a flooded patch); a shape that would
    take the changed share past :data:`MAX_CHANGED_SHARE` is left out."""
    rows, cols = np.mgrid[:side, :side].astype(np.float32)
    mask = np.zeros((side, side), bool)
    for _ in range(int(rng.choice(5, p=[0.15, 0.35, 0.25, 0.15, 0.10]))):
        r, c = rng.uniform(0, side, 2)
        a, b = np.exp(rng.uniform(np.log(1.5), np.log(24.0), 2))
        kind = int(rng.integers(3))
        if kind == 1:
            shape = (np.abs(rows - r) <= a) & (np.abs(cols - c) <= b)
        else:
            radius = np.sqrt(((rows - r) / a) ** 2 + ((cols - c) / b) ** 2)
            if kind == 2:  # outline radius 1 + harmonics 2-4 of the angle, up to +/-0.25 each
                angle = np.arctan2(rows - r, cols - c)
                radius = radius / (1 + sum(rng.uniform(0, 0.25) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
                                           for k in (2, 3, 4)))
            shape = radius <= 1
        if (mask | shape).mean() <= MAX_CHANGED_SHARE:
            mask |= shape
    return mask


def synthetic_pair(clean: np.ndarray, settings: ChangeConfig, rng: np.random.Generator,
                   channels: int = 2) -> np.ndarray:
    """A speckled pair (2 * channels + 1, P, P) with changes inserted into a clean intensity patch
    (P, P): dual-pol (``channels`` 2) or single-pol (1, the clean patch itself).

    VH is VV times a cross-pol ratio (-10 to -4 dB, mildly textured); inside random blobs date 2
    is multiplied by a change of ``settings.contrast_db`` (dual-pol: in one or both channels), of
    random sign, or in half the pairs towards the patch's median level, so that a level far from
    the scene's (brightened bright ground, darkened dark ground) is no cue for change by itself:
    trained on random signs only, a single-pol detector missed dark ground brightened to the
    scene's level. In half the pairs the dates swap, so that changes which erase a region's
    contrast (date 1 holds the blob) are as common as changes which create it. Each date gets its
    own looks (uniform in ``settings.looks``) and a calibration gain (+/- ``settings.gain_db``) per
    channel, so that only local contrast marks change.
    """
    side = clean.shape[-1]
    if channels == 2:
        cross = 10 ** (rng.uniform(-1.0, -0.4)) * np.exp(rng.normal(0, 0.3, clean.shape))
        first = np.stack([clean, clean * cross]).astype(np.float64)
    else:
        first = clean[None].astype(np.float64)
    mask = _blobs(side, rng)
    change_db = rng.uniform(*settings.contrast_db) * rng.choice([-1.0, 1.0])
    if mask.any() and rng.random() < 0.5:  # towards the patch's median level (see the docstring)
        change_db = abs(change_db) * (-1.0 if np.median(clean[mask]) > np.median(clean) else 1.0)
    if channels == 2:  # both channels, or one fully and the other in part
        shares = [[1.0, 1.0], [1.0, rng.uniform(0, 1)], [rng.uniform(0, 1), 1.0]][int(rng.integers(3))]
    else:
        shares = [1.0]
    factors = np.array([10 ** (change_db * share / 10) for share in shares])[:, None, None]
    second = np.where(mask, first * factors, first)
    if rng.random() < 0.5:  # changes that remove contrast as often as changes that add it
        first, second = second, first
    dates = []
    for date in (first, second):
        looks = rng.uniform(*settings.looks)
        gains = 10 ** (rng.uniform(-settings.gain_db, settings.gain_db, (channels, 1, 1)) / 10)
        dates.append(date * gains * rng.gamma(looks, 1.0 / looks, date.shape))
    return np.concatenate([*dates, mask[None]]).astype(np.float32)


def reference_levels(pair: np.ndarray, jitter: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """(2, C) reference levels (``core.models.normalisation``: the median intensity) of each date
    (rows) and channel (cols), times exp(U(+/-jitter))."""
    channels = pair_channels(pair)
    return reference_level(pair[:-1].reshape(2, channels, -1), axis=-1, jitter=jitter, rng=rng).astype(np.float32)


def as_example(pair: np.ndarray, references: np.ndarray) -> dict:
    """Tensors the change task reads: ``first``/``second`` (C, P, P) intensity,
    ``reference_first``/``reference_second`` (C,), ``label`` (1, P, P)."""
    channels = pair_channels(pair)
    return {
        "first": torch.from_numpy(np.ascontiguousarray(pair[:channels])),
        "second": torch.from_numpy(np.ascontiguousarray(pair[channels: 2 * channels])),
        "reference_first": torch.from_numpy(references[0]),
        "reference_second": torch.from_numpy(references[1]),
        "label": torch.from_numpy(np.ascontiguousarray(pair[-1:])),
    }


class ChangePatches(OnTheFlyPatches):
    """Training patches: from labelled pairs (the real pool; share ``settings.real_fraction``
    when clean sources are there too) or synthetic changes on clean patches; random
    flips/rotations; ``channels`` intensity channels per date (the network's)."""

    def __init__(self, sets: list, data: DataConfig, settings: ChangeConfig, seed: int,
                 length: int | None = None, channels: int = 2) -> None:
        super().__init__(sets, data, seed, length)
        self.settings, self.jitter, self.channels = settings, settings.reference_jitter, channels
        self.real_fraction = settings.real_fraction if self.both_pools() else self.only_pool_fraction()

    def __getitem__(self, index: int) -> dict:
        rng = self.generator(index)
        if rng.random() < self.real_fraction:
            pair = with_channels(self.samplers["real"].draw(rng), self.channels, rng)
        else:
            pair = synthetic_pair(self.samplers["clean"].draw(rng)[0], self.settings, rng, self.channels)
        return as_example(pair, reference_levels(pair, self.jitter, rng))


@dataclass
class ValidationPair:
    """A fixed whole validation pair (tensors with a batch axis of 1) and its name."""

    example: dict
    name: str


def validation_pairs(sets: list, settings: ChangeConfig, seed: int, channels: int = 2) -> list[ValidationPair]:
    """Labelled pairs as they are (for a single-pol network, each polarisation of a dual-pol
    pair); clean images with fixed synthetic changes."""
    pairs = []
    for s, image_set in enumerate(sets):
        for i, image in enumerate(image_set.images):
            if image_set.kind == "clean":
                views = [synthetic_pair(image[0], settings, np.random.default_rng([seed, 0, s, i]), channels)]
            elif pair_channels(image) != channels and channels == 1:
                views = [single_pol_view(image, channel) for channel in (0, 1)]
            else:
                views = [with_channels(image, channels, None)]
            for view, pair in enumerate(views):
                example = {key: value[None] for key, value in as_example(pair, reference_levels(pair)).items()}
                pairs.append(ValidationPair(example, f"{image_set.description} #{i}" + (f" ({('VV', 'VH')[view]})"
                                                                                         if len(views) > 1 else "")))
    return pairs
