"""Model cards: the JSON beside each weights file, saving, and safe loading.

A model is two files in one folder: ``NAME.pt`` (a plain ``state_dict``, loadable with
``torch.load(..., weights_only=True)``) and ``NAME.json`` (the card). Loading checks the card is
one of ours, then the weights' sha256 against the card, and only then reads the weights with
``weights_only=True``; anything else is refused with a :class:`SarDespeckleError` that says why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import torch

from ..errors import SarDespeckleError
from .base import DespecklingNet
from .complexity import macs_per_pixel, parameter_count
from .registry import ARCHITECTURES, build_model

#: The ``format`` of every card we write; cards without it are not ours.
CARD_FORMAT = "sar_despeckle_model_card"
#: Version of the card layout; a newer one is refused with a hint to update the plugin.
CARD_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ModelCard:
    """Everything a user, a script or the plugin needs to know about a trained network.

    Attributes:
        name: file stem of the card and weights (letters, digits, ``_ . -``).
        architecture: key of ``ARCHITECTURES``.
        hyperparameters: keyword arguments of the architecture's constructor.
        input_kind: what the network reads; ``intensity`` (linear) for both of ours.
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


@dataclass
class LoadedModel:
    """A checked, loaded network ready to despeckle tiles.

    Attributes:
        card: its model card.
        module: the network, in eval mode on the device it was loaded to.
    """

    card: ModelCard
    module: DespecklingNet

    @property
    def receptive_radius(self) -> int:
        """Reach in pixels: give tiles at least this much halo."""
        return self.module.receptive_radius

    @property
    def alignment(self) -> int:
        """Tile origins that are multiples of this see the whole image's pooling grid, so the
        tiled result equals the whole-image one (choose tile and halo as multiples of it)."""
        return self.module.alignment

    def despeckle(self, intensity: torch.Tensor, valid: torch.Tensor, fill_value) -> torch.Tensor:
        """Despeckle a batch of tiles.

        Args:
            intensity: linear intensity (B, 1, H, W), float32, on the module's device.
            valid: bool (B, 1, H, W); invalid pixels (nodata, outside the image) are replaced
                by ``fill_value`` before the network, so nodata never enters it.
            fill_value: one linear intensity for the whole image (float or 0-d tensor): the
                median of its valid pixels. It is also the reference level the network's
                log input is centred on, so it must not change from tile to tile.
        Returns:
            Estimated reflectivity, linear intensity (B, 1, H, W) float32 (meaningless where
            ``valid`` is False).
        """
        fill = torch.as_tensor(fill_value, dtype=intensity.dtype, device=intensity.device)
        if not (torch.isfinite(fill) and fill > 0):
            raise SarDespeckleError(f"fill_value must be a positive intensity; got {float(fill)}.")
        inputs = torch.where(valid, intensity, fill).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return self.module.despeckle(inputs, fill).float().contiguous()


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(module: DespecklingNet, card: ModelCard, folder: str) -> str:
    """Write ``card.name``.pt (state_dict) and ``card.name``.json into ``folder``.

    The architecture, hyper-parameters, looks, normalisation, receptive radius, MACs per
    pixel, parameter count, weights file name and sha256 are taken from ``module`` and the
    written file, overriding whatever ``card`` held. Returns the card's path.
    """
    if not _NAME.match(card.name):
        raise SarDespeckleError(
            f"Model name {card.name!r} is not usable as a file name: use letters, digits, '_', '.', '-'."
        )
    if ARCHITECTURES.get(module.architecture) is not type(module):
        raise SarDespeckleError(f"{type(module).__name__} is not a registered architecture.")
    os.makedirs(folder, exist_ok=True)
    weights_path = os.path.join(folder, card.name + ".pt")
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    torch.save(state, weights_path)
    card = dataclasses.replace(
        card,
        architecture=module.architecture,
        hyperparameters=module.hyperparameters,
        looks=module.looks,
        normalisation=module.normalisation,
        receptive_radius=module.receptive_radius,
        sha256=sha256_of(weights_path),
        weights_file=os.path.basename(weights_path),
        macs_per_pixel=macs_per_pixel(module),
        parameters=parameter_count(module),
    )
    card_path = os.path.join(folder, card.name + ".json")
    with open(card_path, "w", encoding="utf-8") as handle:
        handle.write(card.to_json())
    return card_path


def read_card(card_path: str) -> ModelCard:
    """Read and check the card at ``card_path`` (not the weights)."""
    try:
        with open(card_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise SarDespeckleError(f"Cannot read model card '{card_path}': {error}.") from None
    return ModelCard.from_json(text, f"'{card_path}'")


def load_model(card_path: str, device: torch.device | str = "cpu") -> LoadedModel:
    """Check and load the model whose card is ``card_path`` onto ``device``.

    Refuses (SarDespeckleError): cards that are not ours, unknown architectures, weights
    files outside the card's folder, checksum mismatches (checked before the weights are
    read), files ``torch.load(weights_only=True)`` rejects, and weights that do not fit the
    architecture.
    """
    card = read_card(card_path)
    if card.architecture not in ARCHITECTURES:
        raise SarDespeckleError(
            f"Model '{card.name}' needs architecture '{card.architecture}', which this plugin "
            f"does not have ({', '.join(ARCHITECTURES)}). Update the plugin."
        )
    name = card.weights_file
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise SarDespeckleError(
            f"Model card '{card_path}' names weights file {name!r}; it must be a plain file "
            "name in the card's folder."
        )
    weights_path = os.path.join(os.path.dirname(os.path.abspath(card_path)), name)
    if not os.path.isfile(weights_path):
        raise SarDespeckleError(f"Weights file '{weights_path}' of model '{card.name}' is missing.")
    actual = sha256_of(weights_path)
    if actual != card.sha256:
        raise SarDespeckleError(
            f"Weights file '{weights_path}' does not match its model card (sha256 {actual[:12]}... "
            f"instead of {card.sha256[:12]}...): it was modified or corrupted. Refusing to load "
            "it; export or download the model again."
        )
    try:
        state = torch.load(weights_path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise SarDespeckleError(
            f"Cannot load weights '{weights_path}' safely ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Only plain state_dicts are accepted."
        ) from None
    try:
        module = build_model(card.architecture, **card.hyperparameters)
        if not isinstance(state, dict):
            raise TypeError("the weights file holds no state_dict")
        module.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SarDespeckleError(
            f"Weights '{weights_path}' do not fit architecture '{card.architecture}' with "
            f"{card.hyperparameters}: {str(error).splitlines()[0]}"
        ) from None
    module = module.to(device=device, memory_format=torch.channels_last).eval()
    return LoadedModel(card, module)


def list_model_cards(folder: str) -> list[str]:
    """Paths of the model cards of ours in ``folder`` (sorted; [] if the folder is absent)."""
    if not os.path.isdir(folder):
        return []
    cards = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry.endswith(".json") and os.path.isfile(path):
            try:
                read_card(path)
            except SarDespeckleError:
                continue
            cards.append(path)
    return cards
