"""``sar_despeckle:change_detection``'s parameters (``core.parameters``) and their settings: what
both the Processing algorithm and the batch runner map the parameter values through. Torch-free."""

from __future__ import annotations

from typing import Mapping

from ..choices import CHANGE_METHOD_LABELS, DEFAULT_CHANGE_METHOD, DEVICES
from ..errors import SarDespeckleError
from ..parameters import STACK_PARAMETERS, Parameter, option, stack_settings
from .settings import ChangeSettings

METHODS = tuple(CHANGE_METHOD_LABELS)

PARAMETERS = (
    *STACK_PARAMETERS,
    Parameter("LOOKS_PER_DATE", "string", ""),
    Parameter("METHOD", "enum", METHODS.index(DEFAULT_CHANGE_METHOD), METHODS),
    Parameter("MODEL", "file", ""),
    Parameter("SIGNIFICANCE", "number", 0.01),
    Parameter("WINDOW", "integer", 1),
    Parameter("PREFILTER", "boolean", True),
    Parameter("MIN_AREA", "integer", None),
    Parameter("REFINE_BOUNDARIES", "boolean", False),
    Parameter("NORMALISE", "boolean", False),
    Parameter("ZEROS_AS_NODATA", "boolean", True),
    Parameter("DEVICE", "enum", 0, DEVICES),
    Parameter("CHANGE_MAP", "destination", True),
    Parameter("CHANGE_MASK", "destination", True),
    Parameter("CHANGE_DATE", "destination", False),
    Parameter("CHANGE_POLYGONS", "destination", False),
)


def parse_looks(text: str) -> tuple[float, ...] | None:
    """LOOKS_PER_DATE: '4, 1' -> (4.0, 1.0); '' -> None; SarDespeckleError with a message otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = tuple(float(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise SarDespeckleError(
            f"LOOKS_PER_DATE must be numbers separated by commas, e.g. '4, 1'; got '{text}'.") from None
    if not values or not all(value > 0 for value in values):
        raise SarDespeckleError(f"LOOKS_PER_DATE must hold positive numbers; got '{text}'.")
    return values


def settings_from_parameters(values: Mapping[str, object]) -> ChangeSettings:
    """The settings of a run given the parameter values (``core.parameters``): LOOKS_PER_DATE
    overrides LOOKS."""
    looks = parse_looks(values["LOOKS_PER_DATE"])
    if looks is None and values["LOOKS"] is not None:
        looks = (values["LOOKS"],)
    return ChangeSettings(
        **stack_settings(values),
        method=option(values, "METHOD", METHODS),
        looks=looks,
        significance=values["SIGNIFICANCE"],
        window=values["WINDOW"],
        prefilter=values["PREFILTER"],
        min_area=values["MIN_AREA"],
        refine_boundaries=values["REFINE_BOUNDARIES"],
        normalise=values["NORMALISE"],
        model=values["MODEL"] or None,
    )
