"""Model cards: the JSON that describes each trained network (torch-free).

The Processing layer lists and describes networks from their cards before torch is imported;
``core.models.weights`` loads the weights a card points to (checksum first, ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SarDespeckleError

#: The ``format`` of every card we write; cards without it are not ours.
CARD_FORMAT = "sar_despeckle_model_card"
#: Version of the card layout; a newer one is refused with a hint to update the plugin.
CARD_VERSION = 1
#: What a model name (the file stem of its card and weights) may look like.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: A card is a few kB; a bigger file is not one (and is not read whole).
MAX_CARD_BYTES = 1 << 20
#: Fields a card may leave out (cards written before they existed), each read as its default.
OPTIONAL_FIELDS = ("looks_range", "max_correlation", "speckle_model", "conditioning")
#: Lag-1 speckle autocorrelation up to which speckle counts as white (a card's default).
WHITE_CORRELATION = 0.1
#: A network serves looks within its card's range widened by this share each way.
LOOKS_TOLERANCE = 0.25
#: What ``conditioning`` may say.
CONDITIONING = ("none", "looks", "looks_correlation")

LOG = logging.getLogger(__name__)


class NotAModelCard(SarDespeckleError):
    """A JSON file that does not say it is a model card: listing skips it without a warning."""


@dataclass
class ModelCard:
    """Everything a user, a script or the plugin needs to know about a trained network.

    Attributes:
        name: file stem of the card and weights (letters, digits, ``_ . -``).
        architecture: key of ``registry.ARCHITECTURES``.
        hyperparameters: keyword arguments of the architecture's constructor.
        input_kind: what the network reads: ``intensity`` (one date of linear intensity, the
            despeckling networks), ``dual_pol_pair`` (two dates of VV, VH intensity, the
            dual-pol change detector), ``single_pol_pair`` (two single-pol dates) or
            ``date_pair`` (two dates despeckled with a change branch, ``models.multitask``).
        looks: equivalent number of looks the network expects.
        normalisation: input normalisation constants (see ``core.models.logdomain``).
        receptive_radius: reach in pixels (the halo a tile needs).
        sha256: checksum of the weights file.
        weights_file: weights file name, relative to the card's folder.
        training: ``data`` (description, held-out region included), ``config`` (the training
            configuration), ``commit`` (git), ``seconds`` (training wall time), ``device``.
        metrics: measured quality, each with what it was measured on.
        macs_per_pixel: multiply-accumulates per input pixel.
        parameters: number of trainable values.
        description: free text for users.
        looks_range: [min, max] equivalent number of looks the network was trained for (and
            serves); cards without it: [looks, looks].
        max_correlation: the largest lag-1 speckle autocorrelation (either image axis) the
            network was trained for; cards without it: 0.1 (white speckle).
        speckle_model: the speckle it was trained on (a ``training.speckle_model`` preset name,
            or a short description); cards without it: "white".
        conditioning: ``none`` (the network serves its looks only), ``looks`` (it reads the
            image's looks as a noise-level input, FFDNet-style, and serves all of
            ``looks_range``) or ``looks_correlation`` (it also reads the lag-1 autocorrelation
            of the image's speckle along rows and columns, as measured on the image).
    """

    name: str
    architecture: str
    hyperparameters: dict
    input_kind: str = "intensity"
    looks: float = 1.0
    normalisation: dict = field(default_factory=dict)
    receptive_radius: int = 0
    sha256: str = ""
    weights_file: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    macs_per_pixel: int = 0
    parameters: int = 0
    description: str = ""
    looks_range: list | None = None
    max_correlation: float = WHITE_CORRELATION
    speckle_model: str = "white"
    conditioning: str = "none"

    def __post_init__(self) -> None:
        if self.looks_range is None:
            self.looks_range = [self.looks, self.looks]

    @property
    def white(self) -> bool:
        """Whether the network was trained on white speckle (not spatially correlated)."""
        return self.max_correlation <= WHITE_CORRELATION

    def covers(self, looks: float, tolerance: float = LOOKS_TOLERANCE) -> bool:
        """Whether ``looks`` lies in ``looks_range``, widened by ``tolerance`` (relative) each way."""
        low, high = self.looks_range
        return low / (1 + tolerance) <= looks <= high * (1 + tolerance)

    def to_json(self) -> str:
        record = {"format": CARD_FORMAT, "format_version": CARD_VERSION, **dataclasses.asdict(self)}
        return json.dumps(record, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "the model card") -> "ModelCard":
        """Parse and check a card: every field present, of its type and in its range.

        Raises SarDespeckleError with one line naming ``source``, the field, what it must be
        and what it holds (NotAModelCard for JSON that is not a card of ours at all).
        """
        where = f"Model card {source}"
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, over-long integers, nesting
            raise SarDespeckleError(
                f"{where} is not valid JSON ({error}): re-export the model or remove the file."
            ) from None
        if not isinstance(record, dict) or record.get("format") != CARD_FORMAT:
            raise NotAModelCard(
                f"{source} is not a SAR Despeckle model card (no \"format\": \"{CARD_FORMAT}\"). "
                "Choose the .json card written by `python -m training export`."
            )
        record = dict(record)
        record.pop("format")
        version = record.pop("format_version", None)
        if not _is_integer(version) or version < 1:
            raise SarDespeckleError(
                f"{where}: field 'format_version' must be an integer >= 1; got {_shown(version)}."
            )
        if version > CARD_VERSION:
            raise SarDespeckleError(
                f"{where} has card format version {version}; this plugin reads up to "
                f"{CARD_VERSION}. Update the plugin."
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(record) - set(known))
        missing = [name for name in known if name not in record and name not in OPTIONAL_FIELDS]
        if unknown or missing:
            raise SarDespeckleError(
                f"{where} is damaged: "
                + "; ".join(filter(None, [
                    f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                ]))
                + ". Re-export the model."
            )
        values = {}
        for name in known:
            if name not in record:
                continue
            check, expected = FIELD_CHECKS[name]
            value = record[name]
            problem = None if check(value) else expected
            if problem is None and name == "hyperparameters":
                problem = _hyperparameter_problem(value)
            if problem:
                raise SarDespeckleError(
                    f"{where}: field '{name}' must be {problem}; got {_shown(value)}. "
                    "Fix the card or re-export the model."
                )
            values[name] = value
        values["looks"] = float(values["looks"])
        values["sha256"] = values["sha256"].lower()
        for name in ("receptive_radius", "macs_per_pixel", "parameters"):
            values[name] = int(values[name])
        if "looks_range" in values:
            values["looks_range"] = [float(v) for v in values["looks_range"]]
        if "max_correlation" in values:
            values["max_correlation"] = float(values["max_correlation"])
        return cls(**values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value) -> bool:
    return _is_number(value) and float(value).is_integer()


def _is_text(value, limit: int = 10_000) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _is_label(value) -> bool:
    """Short, one line, printable: it is shown in the METHOD list and in output metadata."""
    return _is_text(value, 200) and value.strip() != "" and value.isprintable()


SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

#: Field -> (check, what the field must be). Every field of ModelCard has one.
FIELD_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "name": (_is_label, "a non-empty one-line text of at most 200 characters"),
    "architecture": (_is_label, "a non-empty one-line text (an architecture name)"),
    "hyperparameters": (lambda v: isinstance(v, dict), "an object (JSON {...})"),
    "input_kind": (_is_label, "a non-empty one-line text (e.g. \"intensity\")"),
    "looks": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "normalisation": (lambda v: isinstance(v, dict), "an object (JSON {...})"),
    "receptive_radius": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
    "sha256": (lambda v: isinstance(v, str) and bool(SHA256.match(v)), "64 hexadecimal digits"),
    "weights_file": (
        lambda v: _is_label(v) and os.path.basename(v) == v and v not in (".", ".."),
        "a plain file name in the card's folder",
    ),
    "training": (lambda v: isinstance(v, dict), "an object (JSON {...})"),
    "metrics": (lambda v: isinstance(v, dict), "an object (JSON {...})"),
    "macs_per_pixel": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
    "parameters": (lambda v: _is_integer(v) and v >= 0, "an integer >= 0"),
    "description": (_is_text, "a text"),
    "looks_range": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) and x > 0 for x in v) and v[0] <= v[1],
        "[min, max], two numbers with 0 < min <= max",
    ),
    "max_correlation": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "speckle_model": (_is_label, "a non-empty one-line text (a speckle preset name, or \"white\")"),
    "conditioning": (lambda v: v in CONDITIONING, f"one of {', '.join(repr(c) for c in CONDITIONING)}"),
}


def _hyperparameter_problem(hyperparameters: dict) -> str | None:
    """What is wrong with a hyper-parameter value (numbers, booleans, texts, null or lists of
    numbers are accepted; the architecture checks the rest when it is built), or None."""
    for key, value in hyperparameters.items():
        if value is None or isinstance(value, bool) or _is_number(value) or _is_text(value, 200):
            continue
        if isinstance(value, list) and all(_is_number(item) for item in value):
            continue
        return f"an object of numbers, texts or lists of numbers ('{key}' is {_shown(value)})"
    return None


def _shown(value) -> str:
    """``'one' (str)``: a value as a message shows it, cut to one short line."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({'null' if value is None else type(value).__name__})"


def read_card(card_path: str) -> ModelCard:
    """Read and check the card at ``card_path`` (not the weights); SarDespeckleError with one
    line naming the file and what is wrong when it cannot be used."""
    try:
        size = os.path.getsize(card_path)
        if size > MAX_CARD_BYTES:
            raise SarDespeckleError(
                f"Model card '{card_path}' is {size / 1e6:.1f} MB; a model card is a few kB "
                f"(at most {MAX_CARD_BYTES // (1 << 20)} MB): choose the .json card written by "
                "`python -m training export`."
            )
        with open(card_path, encoding="utf-8") as handle:
            text = handle.read(MAX_CARD_BYTES + 1)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise SarDespeckleError(f"Cannot read model card '{card_path}': {reason}.") from None
    return ModelCard.from_json(text, f"'{card_path}'")


def read_model_cards(
    folder: str, input_kind: str | None = None, warn: Callable[[str], None] | None = None
) -> list[tuple[str, ModelCard]]:
    """(path, card) of the usable model cards in ``folder``, sorted by path ([] if the folder is
    absent or unreadable), only those whose networks read ``input_kind`` when it is given.

    Never raises for a bad file: JSON files that are not cards are skipped silently; damaged
    cards are skipped and ``warn`` (default: this module's logger) gets one line naming the
    file and the field.
    """
    warn = warn or LOG.warning
    try:
        entries = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    except OSError as error:
        warn(f"Cannot list model cards in '{folder}': {error.strerror or error}.")
        return []
    cards = []
    for entry in entries:
        path = os.path.join(folder, entry)
        if not entry.lower().endswith(".json") or not os.path.isfile(path):
            continue
        try:
            card = read_card(path)
        except NotAModelCard:
            continue
        except SarDespeckleError as error:
            warn(f"Skipped: {error}")
            continue
        if input_kind is None or card.input_kind == input_kind:
            cards.append((path, card))
    return cards


def list_model_cards(
    folder: str, input_kind: str | None = None, warn: Callable[[str], None] | None = None
) -> list[str]:
    """Paths of :func:`read_model_cards` (same skipping and warnings)."""
    return [path for path, _ in read_model_cards(folder, input_kind, warn)]
