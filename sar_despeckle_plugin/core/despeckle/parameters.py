"""``sar_despeckle:despeckle``'s parameters (``core.parameters``) and their settings: what both
the Processing algorithm and the batch runner map the parameter values through. Torch-free."""

from __future__ import annotations

import os
from typing import Callable, Mapping

from ..choices import AUTOMATIC_METHOD, AUTOMATIC_METHOD_LABEL, CLASSICAL_METHOD_LABELS, DEVICES, SHIPPED_WEIGHTS
from ..errors import SarDespeckleError
from ..models.card import read_model_cards
from ..parameters import STACK_LAYOUTS, Parameter, option
from ..speckle import UNITS
from .settings import DespeckleSettings

CLASSICAL = tuple(CLASSICAL_METHOD_LABELS)
#: METHOD index of the automatic choice (right after the classical filters; the default).
AUTOMATIC_INDEX = len(CLASSICAL)

PARAMETERS = (
    Parameter("INPUT", "raster"),
    Parameter("BANDS", "bands", ()),
    Parameter("BAND_LAYOUT", "enum", 0, STACK_LAYOUTS),
    Parameter("INPUT_UNITS", "enum", None, UNITS),
    Parameter("LOOKS", "number"),
    Parameter("METHOD", "enum", AUTOMATIC_INDEX),
    Parameter("MODEL", "file", ""),
    Parameter("WINDOW", "integer", 7),
    Parameter("FROST_DAMPING", "number", 2.0),
    Parameter("DEVICE", "enum", 0, DEVICES),
    Parameter("SELF_ENSEMBLE", "boolean", False),
    Parameter("POINT_TARGETS", "boolean", False),
    Parameter("ZEROS_AS_NODATA", "boolean", True),
    Parameter("OUTPUT", "destination", True),
    Parameter("RATIO", "destination", False),
    Parameter("REPORT", "destination", False),
)

#: A METHOD option: its label and the model card of its network (None for the classical
#: filters and Automatic).
Method = tuple[str, "str | None"]


def available_methods(user_folder: str, warn: Callable[[str], None]) -> list[Method]:
    """Every METHOD option in enum order: the classical filters first (their indices never
    change), then Automatic (index 7), then the shipped networks, then those whose cards are in
    ``user_folder``.

    Never raises: damaged cards are left out and ``warn`` gets a line naming them. Networks
    sharing a name are told apart by their card's file name."""
    networks, seen = [], set()
    for folder, origin in ((SHIPPED_WEIGHTS, "network"), (user_folder, "user network")):
        for path, card in read_model_cards(folder, input_kind="intensity", warn=warn):
            if os.path.realpath(path) not in seen:  # the user folder may be set to weights/
                seen.add(os.path.realpath(path))
                networks.append((path, card, origin))
    names = [card.name for _, card, _ in networks]
    methods: list[Method] = [(label, None) for label in CLASSICAL_METHOD_LABELS.values()]
    methods.append((AUTOMATIC_METHOD_LABEL, None))
    for path, card, origin in networks:
        shared = f", {os.path.basename(path)}" if names.count(card.name) > 1 else ""
        low, high = card.looks_range
        looks = f"{low:.3g} look(s)" if low == high else f"{low:.3g}-{high:.3g} looks"
        speckle = "" if card.white else f", {short_speckle_text(card.speckle_model)} speckle"
        methods.append((f"{card.name} ({origin}, {looks}{speckle}{shared})", path))
    return methods


def short_speckle_text(speckle_model: str) -> str:
    """A card's ``speckle_model`` short enough for a METHOD option: a mixture ("a + b + c")
    names its first model and counts the others (the log and the card give them all)."""
    models = speckle_model.split(" + ")
    return models[0] if len(models) == 1 else f"{models[0]} + {len(models) - 1} more"


def settings_from_parameters(values: Mapping[str, object], methods: list[Method]) -> DespeckleSettings:
    """The settings of a run given the parameter values (``core.parameters``) and the METHOD
    options (:func:`available_methods`). A METHOD index outside them is refused."""
    if not 0 <= values["METHOD"] < len(methods):
        raise SarDespeckleError(f"METHOD must be an option index from 0 to {len(methods) - 1}; "
                                f"got {values['METHOD']}.")
    choice = values["METHOD"]
    return DespeckleSettings(
        method=CLASSICAL[choice] if choice < len(CLASSICAL) else AUTOMATIC_METHOD,
        model_card=values["MODEL"] or methods[choice][1] or None,
        networks=tuple(path for _, path in methods if path),
        bands=tuple(values["BANDS"]) or None,
        layout=option(values, "BAND_LAYOUT", STACK_LAYOUTS),
        units=option(values, "INPUT_UNITS", UNITS),
        looks=values["LOOKS"],
        window=values["WINDOW"],
        device=option(values, "DEVICE", DEVICES),
        self_ensemble=values["SELF_ENSEMBLE"],
        keep_point_targets=values["POINT_TARGETS"],
        zeros_as_nodata=values["ZEROS_AS_NODATA"],
        frost_damping=values["FROST_DAMPING"],
    )
