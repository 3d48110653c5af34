"""Model cards: the JSON that describes each trained network (torch-free).

The Processing layer lists and describes networks from their cards before torch is imported;
``core.models.weights`` loads the weights a card points to (checksum first, ``weights_only=True``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field

from ..errors import SarDespeckleError

#: The ``format`` of every card we write; cards without it are not ours.
CARD_FORMAT = "sar_despeckle_model_card"
#: Version of the card layout; a newer one is refused with a hint to update the plugin.
CARD_VERSION = 1
#: What a model name (the file stem of its card and weights) may look like.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ModelCard:
    """Everything a user, a script or the plugin needs to know about a trained network.

    Attributes:
        name: file stem of the card and weights (letters, digits, ``_ . -``).
        architecture: key of ``registry.ARCHITECTURES``.
        hyperparameters: keyword arguments of the architecture's constructor.
        input_kind: what the network reads: ``intensity`` (one date of linear intensity, the
            despeckling networks) or ``dual_pol_pair`` (two dates of VV, VH intensity, the
            change detector).
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

    def to_json(self) -> str:
        record = {"format": CARD_FORMAT, "format_version": CARD_VERSION, **dataclasses.asdict(self)}
        return json.dumps(record, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "the model card") -> "ModelCard":
        """Parse a card, refusing anything that is not a card of ours with a clear message."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise SarDespeckleError(f"{source} is not valid JSON ({error}): not a SAR Despeckle model card.") from None
        if not isinstance(record, dict) or record.get("format") != CARD_FORMAT:
            raise SarDespeckleError(
                f"{source} is not a SAR Despeckle model card (no \"format\": \"{CARD_FORMAT}\"). "
                "Choose the .json card written by `python -m training export`."
            )
        version = record.pop("format_version", None)
        if not isinstance(version, int) or version > CARD_VERSION:
            raise SarDespeckleError(
                f"{source} has card format version {version!r}; this plugin reads up to "
                f"{CARD_VERSION}. Update the plugin."
            )
        record.pop("format")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - known)
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in record)
        if unknown or missing:
            raise SarDespeckleError(
                f"{source} is damaged: "
                + "; ".join(filter(None, [
                    f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                    f"missing field(s) {', '.join(missing)}" if missing else "",
                ]))
                + ". Re-export the model."
            )
        return cls(**record)


def read_card(card_path: str) -> ModelCard:
    """Read and check the card at ``card_path`` (not the weights)."""
    try:
        with open(card_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise SarDespeckleError(f"Cannot read model card '{card_path}': {error}.") from None
    return ModelCard.from_json(text, f"'{card_path}'")


def list_model_cards(folder: str, input_kind: str | None = None) -> list[str]:
    """Paths of the model cards of ours in ``folder`` (sorted; [] if the folder is absent),
    only those whose networks read ``input_kind`` when it is given."""
    if not os.path.isdir(folder):
        return []
    cards = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.endswith(".json") and os.path.isfile(path):
            try:
                card = read_card(path)
            except SarDespeckleError:
                continue
            if input_kind is None or card.input_kind == input_kind:
                cards.append(path)
    return cards
