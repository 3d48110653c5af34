"""Training data: loading image sources, checking them, and drawing patches on the fly.

Every image is held as a float32 array of layout (dates, rows, cols) in LINEAR INTENSITY
(dates = 1 except for stacks), fully valid. Patches are a pure function of (seed, epoch,
index): any process, any resume, draws the same patch for the same index, so neither
checkpoints nor distributed ranks carry random-number state.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from sar_despeckle_plugin.core import speckle
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.normalisation import reference_level
from sar_despeckle_plugin.core.raster import RasterReader

from .config import ConfigError, DataConfig, SourceConfig
from .scenes import SCENES, point_scatterers
from .speckle_fit import measure_model
from .speckle_model import (
    POINT_RESPONSE_RADIUS, SpeckleMixture, SpeckleModel, model_from_config, point_response, true_statistics,
)

#: ``format`` of the .npz files ``prepare`` writes.
PATCHES_FORMAT = "sar_despeckle_patches"


@dataclass
class ImageSet:
    """Images of one source: (dates, rows, cols) float32 linear intensity, all valid."""

    images: list
    kind: str
    description: str
    #: statistics of the speckle of real images (``looks``, ``rows``, ``cols``: lags 1, 2),
    #: declared in the config or recorded by ``prepare``; None: unknown
    speckle: dict | None = None


def as_intensity_stack(array: np.ndarray, kind: str, units: str, name: str) -> np.ndarray:
    """Check a raw array and return it as (dates, rows, cols) float32 linear intensity.

    Layouts: ``clean`` and ``single_look`` take (rows, cols); ``stack`` takes (dates, rows,
    cols) with at least two dates. Refuses complex values, NaN/inf and values impossible in
    ``units`` (negative intensity, dB above 80) with messages naming ``name``.
    """
    if np.iscomplexobj(array):
        raise SarDespeckleError(
            f"{name} is complex: give detected intensity, or run `python -m training prepare "
            "--kind slc`, which computes |z|^2."
        )
    if not np.issubdtype(array.dtype, np.number):
        raise SarDespeckleError(f"{name} holds {array.dtype} values, not numbers.")
    expected = 3 if kind == "stack" else 2
    if array.ndim != expected:
        layout = "(dates, rows, cols)" if kind == "stack" else "(rows, cols)"
        raise SarDespeckleError(
            f"{name} has shape {array.shape}; a {kind} image must have layout {layout}."
        )
    stack = array[None] if expected == 2 else array
    if kind == "stack" and stack.shape[0] < 2:
        raise SarDespeckleError(f"{name} is a stack of {stack.shape[0]} date(s); a stack needs at least 2.")
    if not np.isfinite(stack).all():
        raise SarDespeckleError(
            f"{name} holds {int((~np.isfinite(stack)).sum())} NaN or infinite values: crop them out "
            "(rows/cols) or use `prepare`, which keeps fully valid patches only."
        )
    speckle.check_values(stack.ravel(), units, 1)
    intensity = speckle.to_intensity(stack.astype(np.float64), units)
    return intensity.astype(np.float32)


def _crop(array: np.ndarray, source: SourceConfig, name: str) -> np.ndarray:
    """The [rows] x [cols] region of the last two axes, checked against the array's size."""
    if array.ndim < 2:
        layout = "(dates, rows, cols)" if source.kind == "stack" else "(rows, cols)"
        raise SarDespeckleError(
            f"{name} has shape {array.shape}; a {source.kind} image must have layout {layout}."
        )
    rows = source.rows or [0, array.shape[-2]]
    cols = source.cols or [0, array.shape[-1]]
    if rows[1] > array.shape[-2] or cols[1] > array.shape[-1]:
        raise SarDespeckleError(
            f"{name}: region rows {rows}, cols {cols} exceeds its size {array.shape[-2]} x {array.shape[-1]}."
        )
    return array[..., rows[0]: rows[1], cols[0]: cols[1]]


def load_prepared(path: str) -> tuple[np.ndarray, dict]:
    """A ``prepare`` file: patches (N, dates, P, P) float32 linear intensity and its info."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            info = json.loads(str(archive["info"]))
            patches = archive["patches"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise SarDespeckleError(
            f"'{path}' is not a patch file written by `python -m training prepare` ({error})."
        ) from None
    if info.get("format") != PATCHES_FORMAT or patches.ndim != 4:
        raise SarDespeckleError(f"'{path}' is not a patch file written by `python -m training prepare`.")
    return patches, info


def _read_raster(source: SourceConfig) -> np.ndarray:
    reader = RasterReader(source.path, None if source.kind == "stack" else [source.band])
    if reader.info.is_complex:
        raise SarDespeckleError(
            f"'{source.path}' is complex: run `python -m training prepare --kind slc` on it first."
        )
    rows = source.rows or [0, reader.height]
    cols = source.cols or [0, reader.width]
    if rows[1] > reader.height or cols[1] > reader.width:
        raise SarDespeckleError(
            f"'{source.path}': region rows {rows}, cols {cols} exceeds its size {reader.height} x {reader.width}."
        )
    values, valid = reader.read(rows[0], cols[0], rows[1] - rows[0], cols[1] - cols[0])
    if not valid.all():
        raise SarDespeckleError(
            f"'{source.path}' has {int((~valid).sum())} nodata/NaN pixels in the region used: "
            "choose a fully valid region (rows/cols), or run `prepare`, which keeps fully valid patches."
        )
    return values if source.kind == "stack" else values[0]


def load_image_source(source: SourceConfig) -> ImageSet:
    """Load and check the images of one configured despeckling source (any kind but
    ``change_pair``, which :mod:`training.change_data` reads; :mod:`training.sources` picks)."""
    if source.synthetic:
        rngs = [np.random.default_rng([source.seed, i]) for i in range(source.synthetic)]
        images = [SCENES[source.scene](source.side, rng)[None] for rng in rngs]
        return ImageSet(images, "clean", source.describe())
    name = f"'{source.path}'"
    if source.path.endswith(".npz"):
        patches, info = load_prepared(source.path)
        if source.kind and source.kind != info["kind"]:
            raise ConfigError(f"{name} holds {info['kind']} patches, but the config says kind = '{source.kind}'.")
        if source.rows or source.cols:
            raise ConfigError(f"{name}: rows/cols do not apply to prepared patches.")
        description = f"{os.path.basename(source.path)}: {len(patches)} {info['kind']} patches from {', '.join(info['sources'])}"
        image_set = ImageSet(list(patches), info["kind"], description, info.get("speckle"))
    else:
        if source.path.endswith(".npy"):
            try:
                array = np.load(source.path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise SarDespeckleError(f"Cannot read {name} as a numpy array: {error}.") from None
            array = _crop(array, source, name)
        else:
            array = _read_raster(source)
        image_set = ImageSet([as_intensity_stack(array, source.kind, source.units, name)], source.kind,
                             source.describe())
    if image_set.kind == "clean":
        check_positive(image_set.images, name)
    if source.speckle:
        image_set.speckle = {**(image_set.speckle or {}), **source.speckle, "declared": True}
    return image_set


#: Above this autocorrelation (either axis) at the nearest lag a blind-spot network reads (lag 1
#: for the plain blind spot, r + 1 with a blind radius r), speckle is not white enough for
#: blind-spot training: the masked pixel is predictable from its neighbours' speckle.
BLIND_SPOT_CORRELATION = 0.15


def speckle_statistics(image_set: ImageSet, limit: int = 256) -> dict | None:
    """The speckle statistics of a real image set: declared or recorded ones, else measured
    (:func:`training.speckle_fit.measure`) on up to ``limit`` of its images or patches and kept
    on the set (the warnings and the run's data record both read them)."""
    if image_set.speckle:
        return image_set.speckle
    from .speckle_fit import measure

    images = [image[0] for image in image_set.images[:limit]]
    if len({image.shape for image in images}) == 1 and images[0].shape[0] < 256:
        images = [np.concatenate(images, axis=0)]  # patches: one tall mosaic of them
    found = [s for s in (measure(image) for image in images[:4]) if s is not None]
    if not found:
        return None
    image_set.speckle = {"looks": float(np.mean([s.looks for s in found])),  # measured once per run
                         "rows": [float(v) for v in np.mean([s.rows for s in found], axis=0)],
                         "cols": [float(v) for v in np.mean([s.cols for s in found], axis=0)]}
    return image_set.speckle


def _lag(values, lag: int) -> float:
    """The autocorrelation at ``lag`` (1-based) of a measured or declared sequence (lag 1, 2,
    ...), or of a single lag-1 number; beyond the lags given, the last one (an upper bound:
    speckle correlation decays with the lag)."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return float(values[min(lag, len(values)) - 1])


def blind_radius_needed(statistics: dict) -> int | None:
    """The smallest blind radius r whose lag r + 1 autocorrelation is at most
    :data:`BLIND_SPOT_CORRELATION` on both axes, among the lags ``statistics`` gives (None: even
    the last lag given is above it)."""
    lags = max(len(v) if isinstance(v, (list, tuple)) else 1 for v in (statistics["rows"], statistics["cols"]))
    for radius in range(lags):
        if max(_lag(statistics[axis], radius + 1) for axis in ("rows", "cols")) <= BLIND_SPOT_CORRELATION:
            return radius
    return None


def blind_radius_advice(statistics) -> str:
    """One line for ``prepare`` and ``speckle --fit``: the blind radius a blind-spot network needs
    on speckle of ``statistics`` (a :class:`SpeckleStatistics` or a dict with ``rows``, ``cols``
    at lags 1, 2, ...)."""
    if not isinstance(statistics, dict):
        statistics = {"rows": list(statistics.rows), "cols": list(statistics.cols)}
    needed = blind_radius_needed(statistics)
    if needed is None:
        return (f"blind-spot training: the autocorrelation is still above {BLIND_SPOT_CORRELATION:g} at lag "
                f"{len(statistics['rows'])}; train supervised with a matching speckle model")
    return (f"blind-spot training needs blind_radius = {needed} (its lag-{needed + 1} autocorrelation is at most "
            f"{BLIND_SPOT_CORRELATION:g})")


def blind_spot_warning(description: str, statistics: dict | None, blind_radius: int = 0) -> str | None:
    """A warning when speckle of ``statistics`` (``rows``, ``cols``: autocorrelation at lags 1,
    2, ...) is too correlated for a blind-spot network of ``blind_radius``: its autocorrelation
    at lag ``blind_radius`` + 1, the nearest pixels the network reads, above
    :data:`BLIND_SPOT_CORRELATION`."""
    if not statistics:
        return None
    lag = blind_radius + 1
    nearest = [_lag(statistics[axis], lag) for axis in ("rows", "cols")]
    if max(nearest) <= BLIND_SPOT_CORRELATION:
        return None
    how = statistics.get("how") or ("declared" if statistics.get("declared") else "measured")
    needed = blind_radius_needed(statistics)
    wider = (f"set [model] hyperparameters blind_radius = {needed} (the pixels it reads are then {needed + 1} or more "
             "away, where the correlation has died out)" if needed is not None and needed > blind_radius
             else "use a wider blind spot ([model] hyperparameters blind_radius)")
    return (
        f"{description}: its speckle is spatially correlated ({how} lag-{lag} autocorrelation {nearest[0]:.2f} between "
        f"rows, {nearest[1]:.2f} between columns; white speckle has 0, a blind-spot network with blind_radius "
        f"{blind_radius} needs < {BLIND_SPOT_CORRELATION:g} there): the network can predict the hidden pixel's "
        "speckle from its neighbours and learns to copy it. For SLC data run sar_despeckle:decorrelate first "
        f"(resampled output) and prepare that; for multi-looked products (GRD) {wider}, or subsample (prepare "
        "--subsample 2), or train supervised with a matching [data.speckle] model (python -m training speckle "
        "--fit IMAGE)."
    )


def check_positive(images: list, name: str) -> None:
    """Refuse a clean reference with exact zeros: its log is the training target (a zero makes
    the loss hundreds of times too large), as NaN and negative values are refused."""
    zeros = sum(int((image <= 0).sum()) for image in images)
    if zeros:
        total = sum(image.size for image in images)
        raise SarDespeckleError(
            f"{name} is a clean reference with {zeros} pixels at exactly zero ({zeros / total:.2%}; nodata or "
            "a swath border?): a clean reference must be positive. Choose a region without them (rows/cols), "
            "or run `python -m training prepare --kind clean`, which keeps only patches without zeros."
        )


class PatchSampler:
    """Random crops with random flips / 90-degree rotations from a list of images.

    Images are chosen in proportion to the number of crops they hold.
    """

    def __init__(self, images: list, patch: int, description: str) -> None:
        small = [img.shape for img in images if min(img.shape[-2:]) < patch]
        if small:
            raise SarDespeckleError(
                f"{description}: image of size {small[0][-2]} x {small[0][-1]} is smaller than "
                f"the training patch ({patch}); lower [data].patch or use larger images."
            )
        self.images = images
        self.patch = patch
        counts = np.array([(i.shape[-2] - patch + 1) * (i.shape[-1] - patch + 1) for i in images], float)
        self.weights = counts / counts.sum()

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One (dates, patch, patch) crop, randomly flipped and rotated."""
        image = self.images[rng.choice(len(self.images), p=self.weights)]
        row = rng.integers(0, image.shape[-2] - self.patch + 1)
        col = rng.integers(0, image.shape[-1] - self.patch + 1)
        crop = image[:, row: row + self.patch, col: col + self.patch]
        if rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        return np.ascontiguousarray(np.rot90(crop, int(rng.integers(4)), axes=(1, 2)))


def speckled(clean: np.ndarray, looks: float, rng: np.random.Generator) -> np.ndarray:
    """``clean`` intensity times Gamma(L, 1/L) speckle (mean 1, variance 1/L), float32."""
    return (clean * rng.gamma(looks, 1.0 / looks, clean.shape)).astype(np.float32)


def speckled_c2(c11: np.ndarray, c22: np.ndarray, coherence: np.ndarray, looks: int,
                rng: np.random.Generator) -> np.ndarray:
    """Dual-pol speckle of known covariance: (C11, C22, Re C12, Im C12) (4, rows, cols) float32,
    the average over ``looks`` looks of (Svv, Svh) drawn circular complex Gaussian with
    <|Svv|^2> = ``c11``, <|Svh|^2> = ``c22`` and complex correlation ``coherence``
    (<Svv conj(Svh)> / sqrt(c11 c22), |coherence| <= 1; arrays of one shape, or numbers), so
    C12 = <Svv conj(Svh)> (``core.covariance``)."""
    c11, c22, coherence = np.broadcast_arrays(np.asarray(c11, np.float64), np.asarray(c22, np.float64),
                                              np.asarray(coherence, np.complex128))
    shape = (looks, *c11.shape)

    def circular():
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)

    first, second = circular(), circular()
    # Svh = sqrt(c22) (conj(rho) z1 + sqrt(1 - |rho|^2) z2): <Svv conj(Svh)> = rho sqrt(c11 c22)
    vv = np.sqrt(c11) * first
    vh = np.sqrt(c22) * (np.conj(coherence) * first + np.sqrt(np.clip(1 - np.abs(coherence) ** 2, 0, None)) * second)
    c12 = (vv * np.conj(vh)).mean(0)
    return np.stack([(np.abs(vv) ** 2).mean(0), (np.abs(vh) ** 2).mean(0), c12.real, c12.imag]).astype(np.float32)


def speckle_model_of(data: DataConfig) -> SpeckleModel:
    """The configured speckle model (``config.load_config`` resolves it; a DataConfig built
    in code without one gets white speckle of its ``looks``)."""
    model = getattr(data, "speckle_model", None)
    return model if model is not None else model_from_config(data.speckle, data.looks)


@functools.lru_cache(maxsize=4096)
def _product_looks(model: SpeckleModel) -> float:
    return float(true_statistics(model)["looks"])


@functools.lru_cache(maxsize=4096)
def measured_correlation(model: SpeckleModel) -> tuple[float, float]:
    """The lag-1 intensity autocorrelation (rows, cols) that the plugin's estimator
    (``core.quality.measure_speckle``, what a despeckling run measures on its input) reads on
    pure-speckle draws of ``model`` (:func:`training.speckle_fit.measure_model`, one 512 x 512
    draw, fixed seed): what a correlation-conditioned network reads in training. White: 0."""
    if model.white:
        return 0.0, 0.0
    statistics = measure_model(model, images=1)
    return statistics["rows"][0], statistics["cols"][0]


def speckle_component(model: SpeckleModel | SpeckleMixture, rng: np.random.Generator) -> SpeckleModel:
    """The model one patch is speckled with: a mixture's component drawn for it, else ``model``."""
    return model.pick(rng) if isinstance(model, SpeckleMixture) else model


def _draw_speckle(model: SpeckleModel | SpeckleMixture, clean: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, SpeckleModel]:
    """``clean`` times one speckle draw of ``model`` (the very draw ``model.apply`` makes), and
    the model drawn with: a mixture's component, its looks fixed where they are drawn (at
    0.01-look steps for product models)."""
    model = speckle_component(model, rng)
    bounds = model.looks_range
    if bounds is not None and bounds[0] != bounds[1]:  # draw L as SpeckleModel.draw does, then fix it
        model = dataclasses.replace(model, looks=math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))
    noisy = model.apply(clean, rng)
    if not model.white and model.looks is not None:
        model = dataclasses.replace(model, looks=round(float(model.looks), 2))
    return noisy, model


def _drawn_looks(model: SpeckleModel) -> float:
    return float(model.looks_range[0]) if model.white else _product_looks(model)


def speckle_with_looks(model: SpeckleModel | SpeckleMixture, clean: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``clean`` times one speckle draw of ``model`` (the very draw ``model.apply`` makes), and
    the equivalent number of looks of that draw: what a network conditioned on the looks reads
    (white models: the L drawn; product models: the exact ENL of the nominal looks drawn,
    :func:`training.speckle_model.true_statistics`, at 0.01-look steps; mixtures: of the
    component drawn for this patch)."""
    noisy, drawn = _draw_speckle(model, clean, rng)
    return noisy, _drawn_looks(drawn)


def speckle_with_conditioning(model: SpeckleModel | SpeckleMixture, clean: np.ndarray,
                              rng: np.random.Generator) -> tuple[np.ndarray, float, tuple[float, float]]:
    """As :func:`speckle_with_looks`, and the lag-1 autocorrelation (rows, cols) the plugin
    measures on that speckle (:func:`measured_correlation`): what a correlation-conditioned
    network reads."""
    noisy, drawn = _draw_speckle(model, clean, rng)
    return noisy, _drawn_looks(drawn), measured_correlation(drawn)


def spread_point_scatterers(scatterers: np.ndarray, model: SpeckleModel, rng: np.random.Generator) -> np.ndarray:
    """Single-pixel scatterers (:func:`training.scenes.point_scatterers`, (..., rows, cols)
    linear intensity) as the product ``model`` images them: each replaced by its impulse
    response (:func:`training.speckle_model.point_response`) at a random sub-pixel position,
    peak intensity where centred. White models: unchanged, and ``rng`` is not drawn from."""
    if model.white or not scatterers.any():
        return scatterers
    radius = POINT_RESPONSE_RADIUS
    *lead_shape, rows, cols = scatterers.shape
    padded = np.zeros((*lead_shape, rows + 2 * radius, cols + 2 * radius))
    for where in zip(*np.nonzero(scatterers)):
        *lead, row, col = where
        kernel = point_response(model, tuple(rng.uniform(-0.5, 0.5, 2)))
        padded[(*lead, slice(row, row + 2 * radius + 1), slice(col, col + 2 * radius + 1))] += scatterers[where] * kernel
    inside = (slice(radius, -radius), slice(radius, -radius))
    return padded[(Ellipsis, *inside)].astype(scatterers.dtype)


class OnTheFlyPatches(Dataset):
    """Base of the training datasets: ``length`` patches per epoch, each drawn by
    :meth:`generator` from (seed, epoch, index), from two pools of images: ``clean`` (speckle
    or changes are synthesised on them) and ``real`` (every other kind); ``real_fraction`` is
    the share of patches taken from the real pool. Subclasses implement ``__getitem__``."""

    def __init__(self, sets: list, data: DataConfig, seed: int, length: int | None) -> None:
        self.seed = seed
        self.length = data.samples_per_epoch if length is None else length
        self.epoch = 0
        by_origin = {}
        for image_set in sets:
            by_origin.setdefault("real" if image_set.kind != "clean" else "clean", []).extend(
                (image, image_set.description) for image in image_set.images
            )
        self.samplers = {
            key: PatchSampler([img for img, _ in items], data.patch, items[0][1]) for key, items in by_origin.items()
        }

    def both_pools(self) -> bool:
        return len(self.samplers) == 2

    def only_pool_fraction(self) -> float:
        """``real_fraction`` when one pool is empty: 1 with real images only, else 0."""
        return 1.0 if "real" in self.samplers else 0.0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch + 1, index])


class TrainingPatches(OnTheFlyPatches):
    """Patches for one despeckling training mode, drawn on the fly; ``len`` = samples per epoch.

    Items (tensors; images (1, P, P) linear intensity, references 0-d):

    * supervised: ``noisy``, ``clean``, ``reference``, ``looks`` (the equivalent number of looks
      of the speckle drawn on this patch: a conditioned network reads it); with ``correlation``,
      also ``correlation`` ((2,): the lag-1 autocorrelation, rows and cols, measured on that
      speckle, :func:`measured_correlation`, what a correlation-conditioned network reads)
    * blind_spot: ``noisy``, ``reference``
    * contrastive: ``view_a``, ``view_b``, ``reference_a``, ``reference_b`` (two independent
      speckle draws on one clean patch, or two dates of one real area)
    """

    def __init__(self, mode: str, sets: list, data: DataConfig, seed: int, real_fraction: float = 0.0,
                 length: int | None = None, jitter: float | None = None, correlation: bool = False) -> None:
        super().__init__(sets, data, seed, length)
        self.mode = mode
        self.looks = data.looks
        self.speckle = speckle_model_of(data)
        self.correlation = correlation
        if correlation:  # products of fixed looks measured once here, before data-loader workers fork
            for component in getattr(self.speckle, "components", (self.speckle,)):
                if component.looks_range is None:
                    measured_correlation(component)
        self.point_scatterers = data.point_scatterers
        self.jitter = data.reference_jitter if jitter is None else jitter
        # share of real images: contrastive follows the config, blind-spot follows the areas
        if self.both_pools():
            if mode == "contrastive":
                self.real_fraction = real_fraction
            else:
                areas = {k: sum(i.size for i in s.images) for k, s in self.samplers.items()}
                self.real_fraction = areas["real"] / (areas["real"] + areas["clean"])
        else:
            self.real_fraction = self.only_pool_fraction()

    def __getitem__(self, index: int) -> dict:
        rng = self.generator(index)
        real = rng.random() < self.real_fraction
        patch = self.samplers["real" if real else "clean"].draw(rng)
        if self.mode == "supervised":
            patch = patch[:1]
        if real:
            scatterers = None
        elif self.point_scatterers:
            scatterers = point_scatterers(patch, self.point_scatterers, rng)
        else:
            scatterers = np.zeros_like(patch)

        def observed(clean: np.ndarray) -> np.ndarray:
            """A speckled look at the clean patch; point scatterers do not speckle."""
            return self.speckle.apply(clean, rng) + scatterers

        if self.mode == "supervised":
            component = speckle_component(self.speckle, rng)
            if self.correlation:
                noisy, looks, correlation = speckle_with_conditioning(component, patch, rng)
            else:
                noisy, looks = speckle_with_looks(component, patch, rng)
            scatterers = spread_point_scatterers(scatterers, component, rng)
            noisy, clean = noisy + scatterers, patch + scatterers
            item = {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean),
                    "reference": torch.tensor(reference_level(noisy, jitter=self.jitter, rng=rng)),
                    "looks": torch.tensor(looks, dtype=torch.float32)}
            if self.correlation:
                item["correlation"] = torch.tensor(correlation, dtype=torch.float32)
            return item
        if self.mode == "blind_spot":
            noisy = patch[rng.integers(len(patch))][None] if real else observed(patch)
            return {"noisy": torch.from_numpy(np.ascontiguousarray(noisy)),
                    "reference": torch.tensor(reference_level(noisy, jitter=self.jitter, rng=rng))}
        if real:
            first, second = rng.choice(len(patch), 2, replace=False)
            view_a, view_b = patch[first][None], patch[second][None]
        else:
            view_a, view_b = observed(patch), observed(patch)
        return {
            "view_a": torch.from_numpy(np.ascontiguousarray(view_a)),
            "view_b": torch.from_numpy(np.ascontiguousarray(view_b)),
            "reference_a": torch.tensor(reference_level(view_a, jitter=self.jitter, rng=rng)),
            "reference_b": torch.tensor(reference_level(view_b, jitter=self.jitter, rng=rng)),
        }


@dataclass
class ValidationImage:
    """A fixed validation example: ``noisy`` (1, 1, H, W) intensity, ``clean`` (same) or None,
    ``reference`` (median of ``noisy``), ``name``, ``looks`` (of the speckle drawn; None for
    real images), ``correlation`` (its measured lag-1 autocorrelation, rows and cols, when
    asked for; else None)."""

    noisy: torch.Tensor
    clean: torch.Tensor | None
    reference: float
    name: str
    looks: float | None = None
    correlation: tuple[float, float] | None = None


def validation_images(sets: list, looks: float | SpeckleModel | SpeckleMixture, seed: int,
                      correlation: bool = False) -> list[ValidationImage]:
    """Whole validation images with fixed speckle (clean sources) or as they are (real);
    ``looks``: white Gamma speckle of that many looks, or a speckle model; ``correlation``: also
    the measured lag-1 autocorrelation of the speckle drawn (:func:`speckle_with_conditioning`)."""
    examples = []
    for s, image_set in enumerate(sets):
        for i, image in enumerate(image_set.images):
            name = image_set.description if len(image_set.images) == 1 else f"{image_set.description} #{i}"
            drawn, measured = None, None
            if image_set.kind == "clean":
                rng = np.random.default_rng([seed, 0, s, i])
                if not isinstance(looks, (SpeckleModel, SpeckleMixture)):
                    noisy, drawn, measured = speckled(image, looks, rng), float(looks), (0.0, 0.0)
                elif correlation:
                    noisy, drawn, measured = speckle_with_conditioning(looks, image, rng)
                else:
                    noisy, drawn = speckle_with_looks(looks, image, rng)
                clean = torch.from_numpy(image[None])
            else:
                noisy, clean = image[:1], None
            examples.append(ValidationImage(torch.from_numpy(noisy[None]), clean, reference_level(noisy), name, drawn,
                                            measured if correlation else None))
    return examples
