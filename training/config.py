"""Training configurations: TOML files checked against typed sections.

Every table maps to a dataclass below; unknown keys, wrong types and impossible values are
refused with a :class:`ConfigError` naming the key (and a close match when there is one).
Relative data and checkpoint paths resolve against the folder of the config file.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
import tomllib
import typing
from dataclasses import dataclass, field
from typing import Any

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.registry import ARCHITECTURES, build_model
from sar_despeckle_plugin.core.speckle import UNITS

from .scenes import SCENES
from .speckle_model import looks_interval, model_from_config

MODES = ("supervised", "blind_spot", "contrastive", "change", "multitemporal", "multitask")
KINDS = ("clean", "single_look", "stack", "change_pair")
#: The architecture each mode trains, where only one fits.
MODE_ARCHITECTURE = {"blind_spot": "blind_spot", "change": "change_attention", "multitask": "mtdn_multitask"}
AMP_CHOICES = ("auto", "off", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")


class ConfigError(SarDespeckleError):
    """The configuration cannot be used as written; the message names the key."""


@dataclass
class SourceConfig:
    """One source of training or validation images.

    Exactly one of ``path`` (a 2-D ``.npy`` array, a ``.npz`` written by ``prepare``, or any
    GDAL raster) and ``synthetic`` (number of generated piecewise-smooth scenes).

    Attributes:
        kind: ``clean`` (speckle-free reference: speckle is synthesised on it; the default),
            ``single_look`` (real speckled intensity: spatially white, or correlated for a
            blind-spot network whose ``blind_radius`` covers the correlation), ``stack``
            (co-registered dates of one area, layout (dates, rows, cols)), ``change_pair``
            (two labelled dual-pol dates, see :mod:`training.change_data`; ``path`` may be a
            glob pattern). A ``prepare`` file states its own kind (giving another one is an
            error).
        units: units of the stored values (``intensity``, ``amplitude``, ``dB``); ignored for
            ``prepare`` files and synthetic scenes, which are intensity.
        rows, cols: ``[start, stop)`` region to use (held-out evaluation regions), whole image
            when empty.
        band: 1-based raster band for ``clean`` / ``single_look`` rasters (stacks use all).
        side, seed: size and seed of synthetic scenes.
        scene: generator of synthetic scenes: ``countryside`` (piecewise-smooth fields, rivers,
            roads) or ``urban`` (city blocks, bright walls and point scatterers over countryside).
        speckle: the declared statistics of a real source's speckle, ``{ looks = L, rows =
            [lag1, lag2], cols = [lag1, lag2] }`` (autocorrelation of the intensity between
            vertical / horizontal neighbours); otherwise those ``prepare`` recorded, or measured
            when training starts (lags 1-4). Blind-spot training warns when the lag just past
            its ``blind_radius`` (lag 1 for the plain blind spot) exceeds 0.15.
    """

    path: str = ""
    synthetic: int = 0
    kind: str = ""
    units: str = "intensity"
    rows: list = field(default_factory=list)
    cols: list = field(default_factory=list)
    band: int = 1
    side: int = 256
    seed: int = 0
    scene: str = "countryside"
    speckle: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for model cards and logs."""
        if self.synthetic:
            return f"{self.synthetic} synthetic {self.scene} scenes {self.side}x{self.side} (seed {self.seed})"
        region = []
        if self.rows:
            region.append(f"rows {self.rows[0]}-{self.rows[1]}")
        if self.cols:
            region.append(f"cols {self.cols[0]}-{self.cols[1]}")
        where = f" ({', '.join(region)})" if region else ""
        return f"{os.path.basename(self.path)}{where}, {self.kind}, stored as {self.units}"


@dataclass
class ModelConfig:
    architecture: str = "log_residual"
    hyperparameters: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Attributes:
        train, validation: image sources (see :class:`SourceConfig`).
        looks: looks of the speckle synthesised on clean references: a number, or [min, max]
            drawn log-uniformly per patch (non-integer allowed). With a product ``speckle``
            model only a range counts (the model's nominal looks drawn from it); a number
            there is ignored (the model keeps its multilook factors).
        speckle: the speckle model (:mod:`training.speckle_model`): "" (white Gamma speckle of
            ``looks``, as always), a preset name (``training.speckle_model.PRESETS``: e.g.
            ``sentinel1_iw_grdh``, ``sentinel1_iw_slc``), a list of names or tables (a mixture: one model drawn
            per patch) or a ``[data.speckle]`` table (``preset``, ``looks``,
            ``rows``, ``cols``, ``resampling``, ``regrid``; ``python -m training speckle --fit
            IMAGE`` prints one fitted to your product). The resolved model is
            ``DataConfig.speckle_model``.
        patch: side of training patches (pixels).
        reference_jitter: the reference level of each training patch is its median intensity
            times exp(u), u uniform in [-jitter, jitter] (ln units), so that the network
            works whatever the image-wide median it gets at inference.
        samples_per_epoch: patches drawn per epoch (all processes together).
        point_scatterers: average fraction of the pixels of each clean training patch that get
            a strong single-pixel point scatterer, added after the speckle is drawn (see
            :func:`training.scenes.point_scatterers`); 0: none.
    """

    train: list = field(default_factory=list)
    validation: list = field(default_factory=list)
    looks: float | list = 1.0
    speckle: str | dict | list = ""
    patch: int = 64
    reference_jitter: float = 1.0
    samples_per_epoch: int = 1024
    point_scatterers: float = 0.0


@dataclass
class TrainConfig:
    """Attributes:
        mode: ``supervised`` (synthetic speckle on clean references), ``blind_spot``
            (self-supervised on noisy images), ``contrastive`` (encoder pre-training),
            ``change`` (the change detector), ``multitemporal`` (Noise2Noise across the dates of
            stacks: a ``log_residual`` network with ``auxiliary_channels = 1``, white speckle),
            ``multitask`` (despeckling + change detection of two dates, ``mtdn_multitask``,
            white speckle; reads ``[change]``).
        batch_size: patches per optimiser step, all processes together.
        time_budget_minutes: wall-clock limit of the run, resumes included (0: none). After the
            first epoch the run plans, once, as many epochs as fit (at most ``epochs``) from the
            time that epoch took; the learning-rate decay ends with the planned epochs, and
            the run validates, checkpoints and stops there (or at the budget, should the
            machine slow down): see trainer.py. Raise it and ``--resume`` to continue.
        amp: mixed precision: ``auto`` (bf16, or fp16 where bf16 is unsupported, on CUDA; off
            on CPU), ``off``, ``bf16``, ``fp16`` (CUDA only).
        device: ``auto``, ``cpu`` or ``cuda``.
        init_from: checkpoint whose matching weights initialise the model (e.g. a
            contrastive pre-training's encoder), or a model card (``.json``, shipped ones
            included), or a model's name (``sarcnn_default``: the shipped card, else one in the
            default user models folder): fine-tuning; relative to the config's folder.
        threads: torch CPU threads per process (0: torch's default).
        workers: DataLoader worker processes.
        log_every: steps between training-loss records.
        validate_every: epochs between validations (the last epoch always validates).
    """

    mode: str = "supervised"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip: float = 0.0
    time_budget_minutes: float = 0.0
    amp: str = "auto"
    device: str = "auto"
    init_from: str = ""
    threads: int = 0
    workers: int = 0
    log_every: int = 10
    validate_every: int = 1


@dataclass
class ContrastiveConfig:
    """Attributes:
        temperature: InfoNCE temperature.
        projection_width: width of the projection head's hidden layer and of the embedding.
        real_fraction: share of positive pairs drawn from real stacks (two dates of one area)
            rather than from two synthetic speckle draws on a clean reference.
    """

    temperature: float = 0.1
    projection_width: int = 64
    real_fraction: float = 0.5


@dataclass
class ChangeConfig:
    """Attributes (``change`` mode):
        real_fraction: share of training patches drawn from labelled pairs when clean
            sources (synthetic changes) are given too.
        contrast_db: range of the synthetic changes' contrast (dB, either sign).
        looks: range of the looks of each synthetic date.
        gain_db: calibration offset of each synthetic date and channel, +/- dB.
        reference_jitter: reference levels of training patches are their medians times
            exp(U(+/-jitter)), so the network tolerates image-wide medians.
        dice_weight: weight of the soft Dice term beside binary cross-entropy.
    """

    real_fraction: float = 0.5
    contrast_db: list = field(default_factory=lambda: [2.0, 10.0])
    looks: list = field(default_factory=lambda: [1.0, 8.0])
    gain_db: float = 2.0
    reference_jitter: float = 0.3
    dice_weight: float = 1.0


@dataclass
class Config:
    name: str
    description: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    contrastive: ContrastiveConfig
    change: ChangeConfig
    #: folder of the config file: relative paths resolve against it
    folder: str
    #: the file's content as parsed (stored in checkpoints and model cards)
    raw: dict

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.folder, path))


def _suggest(key: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a simple annotation (str, int, float, bool, list, dict)."""
    if annotation == "float | list":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _check_type(
            value, "list", where)
    if annotation == "str | dict | list":
        if isinstance(value, (str, list)):
            return value
        return _check_type(value, "dict", where)
    expected = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}[annotation]
    if isinstance(value, bool) and annotation in ("int", "float"):
        raise ConfigError(f"{where} must be a number, not {value!r}.")
    if not isinstance(value, expected):
        raise ConfigError(f"{where} must be of type {annotation}; got {value!r}.")
    return float(value) if annotation == "float" else value


def _build(cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            raise ConfigError(f"Unknown key '{key}' in {where}{_suggest(key, fields)}.")
    values = {key: _check_type(value, fields[key].type, f"{where}.{key}") for key, value in table.items()}
    return cls(**values)


def _check_source(source: SourceConfig, where: str, config_folder: str) -> None:
    if bool(source.path) == bool(source.synthetic):
        raise ConfigError(f"{where} needs exactly one of 'path' and 'synthetic'.")
    if source.synthetic < 0 or source.side < 16:
        raise ConfigError(f"{where}: 'synthetic' must be >= 0 and 'side' >= 16.")
    if source.scene not in SCENES:
        raise ConfigError(f"{where}.scene must be one of {tuple(SCENES)}; got '{source.scene}'.")
    if not source.kind and not source.path.endswith(".npz"):
        source.kind = "clean"
    if source.kind and source.kind not in KINDS:
        raise ConfigError(f"{where}.kind must be one of {KINDS}; got '{source.kind}'.")
    if source.units not in UNITS:
        raise ConfigError(f"{where}.units must be one of {UNITS}; got '{source.units}'.")
    for key, value in source.speckle.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        lags = isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if key not in ("looks", "rows", "cols") or not (number if key == "looks" else (number or lags)):
            raise ConfigError(
                f"{where}.speckle.{key}: declare {{ looks = L, rows = [lag1, lag2], cols = [lag1, lag2] }}; "
                f"got {key} = {value!r}."
            )
    for name in ("rows", "cols"):
        span = getattr(source, name)
        if span and not (
            len(span) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            and 0 <= span[0] < span[1]
        ):
            raise ConfigError(f"{where}.{name} must be [start, stop) with 0 <= start < stop; got {span}.")
    if source.path:
        source.path = source.path if os.path.isabs(source.path) else os.path.normpath(
            os.path.join(config_folder, source.path)
        )
        if glob.has_magic(source.path):
            if not glob.glob(source.path):
                raise ConfigError(f"{where}.path: the pattern '{source.path}' matches no file.")
        elif not os.path.exists(source.path):
            raise ConfigError(
                f"{where}.path: '{source.path}' does not exist (relative paths resolve against "
                f"the config's folder, {config_folder})."
            )


def load_config(path: str) -> Config:
    """Read, check and resolve the TOML configuration at ``path``."""
    if not os.path.isfile(path):
        raise ConfigError(f"Config file '{path}' does not exist.")
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"'{path}' is not valid TOML: {error}.") from None
    return config_from_dict(raw, os.path.dirname(os.path.abspath(path)), os.path.splitext(os.path.basename(path))[0])


def config_from_dict(raw: dict, folder: str, default_name: str) -> Config:
    """Check a parsed configuration (the content of a TOML file) whose paths are relative to ``folder``."""
    sections = {"name", "description", "model", "data", "train", "contrastive", "change"}
    for key in raw:
        if key not in sections:
            raise ConfigError(f"Unknown top-level key '{key}'{_suggest(key, sections)}.")
    model = _build(ModelConfig, raw.get("model", {}), "[model]")
    data_table = dict(raw.get("data", {}))
    sources = {}
    for split in ("train", "validation"):
        entries = data_table.pop(split, [])
        if not isinstance(entries, list):
            raise ConfigError(f"[data].{split} must be a list of tables.")
        sources[split] = [_build(SourceConfig, entry, f"[data].{split}[{i}]") for i, entry in enumerate(entries)]
        for i, source in enumerate(sources[split]):
            _check_source(source, f"[data].{split}[{i}]", folder)
    data = _build(DataConfig, data_table, "[data]")
    data.train, data.validation = sources["train"], sources["validation"]
    try:
        #: the resolved speckle model (not a TOML key)
        data.speckle_model = model_from_config(data.speckle, data.looks, "looks" in data_table)
    except SarDespeckleError as error:
        raise ConfigError(str(error)) from None
    train = _build(TrainConfig, raw.get("train", {}), "[train]")
    contrastive = _build(ContrastiveConfig, raw.get("contrastive", {}), "[contrastive]")
    change = _build(ChangeConfig, raw.get("change", {}), "[change]")
    config = Config(
        name=_check_type(raw.get("name", default_name), "str", "name"),
        description=_check_type(raw.get("description", ""), "str", "description"),
        model=model, data=data, train=train, contrastive=contrastive, change=change, folder=folder, raw=raw,
    )
    _check_values(config)
    return config


def _is_range(values: list, lowest: float) -> bool:
    return (len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and lowest <= values[0] <= values[1])


def _check_values(config: Config) -> None:
    model, data, train = config.model, config.data, config.train
    if model.architecture not in ARCHITECTURES:
        raise ConfigError(
            f"[model].architecture '{model.architecture}' is unknown{_suggest(model.architecture, ARCHITECTURES)}; "
            f"choose one of {sorted(ARCHITECTURES)}."
        )
    if train.mode not in MODES:
        raise ConfigError(f"[train].mode must be one of {MODES}; got '{train.mode}'{_suggest(train.mode, MODES)}.")
    for mode, architecture in MODE_ARCHITECTURE.items():
        if (train.mode == mode) != (model.architecture == architecture):
            raise ConfigError(
                f"[train].mode '{mode}' trains the '{architecture}' architecture, and that "
                f"architecture trains in mode '{mode}' only."
            )
    auxiliary = model.architecture == "log_residual" and model.hyperparameters.get("auxiliary_channels", 0) == 1
    if (train.mode == "multitemporal") != auxiliary:
        raise ConfigError("[train].mode 'multitemporal' trains a 'log_residual' network with "
                          "[model].hyperparameters.auxiliary_channels = 1, and such a network trains in that mode only.")
    if train.mode in ("multitemporal", "multitask") and not data.speckle_model.white:
        raise ConfigError(f"[train].mode '{train.mode}' draws white Gamma speckle per date: leave [data].speckle empty.")
    if not data.train:
        raise ConfigError("[data].train lists no sources: give at least one path or synthetic source.")
    if train.amp not in AMP_CHOICES:
        raise ConfigError(f"[train].amp must be one of {AMP_CHOICES}; got '{train.amp}'.")
    if train.schedule not in SCHEDULES:
        raise ConfigError(f"[train].schedule must be one of {SCHEDULES}; got '{train.schedule}'.")
    if train.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"[train].device must be auto, cpu or cuda; got '{train.device}'.")
    positive = {
        "[data].patch": data.patch >= 8,
        "[data].samples_per_epoch": data.samples_per_epoch >= train.batch_size,
        "[data].point_scatterers": 0 <= data.point_scatterers <= 1,
        "[train].epochs": train.epochs >= 1, "[train].batch_size": train.batch_size >= 1,
        "[train].learning_rate": train.learning_rate > 0, "[train].log_every": train.log_every >= 1,
        "[train].validate_every": train.validate_every >= 1,
        "[train].time_budget_minutes": train.time_budget_minutes >= 0,
        "[contrastive].temperature": config.contrastive.temperature > 0,
        "[contrastive].real_fraction": 0 <= config.contrastive.real_fraction <= 1,
        "[change].real_fraction": 0 <= config.change.real_fraction <= 1,
        "[change].contrast_db": _is_range(config.change.contrast_db, 0),
        "[change].looks": _is_range(config.change.looks, 1),
        "[change].gain_db": config.change.gain_db >= 0,
    }
    for key, ok in positive.items():
        if not ok:
            raise ConfigError(
                f"{key} has an impossible value (patch >= 8, looks >= 1, samples_per_epoch >= "
                "batch_size, positive epochs/batch/learning rate/temperature, fractions in [0, 1], "
                "ranges [low, high] with low <= high)."
            )
    try:
        network = build_model(model.architecture, **model.hyperparameters)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"[model].hyperparameters: {error}.") from None
    speckle_model = data.speckle_model
    if train.mode != "change" and speckle_model.white and isinstance(speckle_model.looks, float):
        if network.looks != speckle_model.looks:
            raise ConfigError(
                f"[model].hyperparameters.looks ({network.looks:g}) must equal [data].looks "
                f"({speckle_model.looks:g}): the network is made for the speckle it is trained on."
            )
    elif train.mode != "change":
        low, high = looks_interval(speckle_model)
        slack = 1.0 if speckle_model.white else 1.25  # product models: the ENL is a figure, not a parameter
        if not low / slack - 1e-6 <= network.looks <= high * slack + 1e-6:
            span = f"{low:.2f}" if low == high else f"{low:.2f}-{high:.2f}"
            raise ConfigError(
                f"[model].hyperparameters.looks ({network.looks:g}) does not fit the speckle model "
                f"({speckle_model.describe()}), whose equivalent number of looks is {span}: set looks "
                f"{'within that range' if low != high else f'to about {low:.1f}'}; the network is made for "
                "the speckle it is trained on."
            )
    if not data.validation:
        raise ConfigError("[data].validation lists no sources: validation needs at least one.")
    if train.mode == "contrastive" and model.architecture != "log_residual":
        raise ConfigError("Contrastive pre-training trains the encoder of a 'log_residual' model.")
    if train.init_from:
        train.init_from = resolve_init_from(train.init_from, config)


#: Where the shipped model cards are.
SHIPPED_MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "sar_despeckle_plugin", "weights")


def resolve_init_from(value: str, config: Config) -> str:
    """A training checkpoint (``.pt``) or a model card (``.json``: shipped or exported) by path
    (relative to the config's folder), or a model card by name: ``sarcnn_default`` finds the
    shipped card, then one in the default user models folder."""
    path = config.resolve(value)
    if os.path.isfile(path):
        return path
    if os.sep not in value and "/" not in value:
        from sar_despeckle_plugin.core.user_models import default_models_folder

        name = value[:-5] if value.endswith(".json") else value
        for folder in (SHIPPED_MODELS, default_models_folder()):
            card = os.path.join(folder, name + ".json")
            if os.path.isfile(card):
                return card
    raise ConfigError(
        f"[train].init_from: checkpoint '{path}' does not exist; give a training checkpoint (RUN/last.pt), a model "
        "card (.json, shipped or exported) or the name of a shipped or user model (e.g. 'sarcnn_default')."
    )
