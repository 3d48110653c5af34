"""``sar_despeckle:despeckle_multitemporal``'s parameters (``core.parameters``) and their
settings: what both the Processing algorithm and the batch runner map the parameter values
through. Torch-free."""

from __future__ import annotations

from typing import Mapping

from ..choices import DEFAULT_MULTITEMPORAL_METHOD, DEVICES, MULTITEMPORAL_METHOD_LABELS
from ..errors import SarDespeckleError
from ..parameters import STACK_PARAMETERS, Parameter, option, stack_settings
from .settings import MultitemporalSettings

METHODS = tuple(MULTITEMPORAL_METHOD_LABELS)

PARAMETERS = (
    *STACK_PARAMETERS,
    Parameter("TARGET", "string", ""),
    Parameter("METHOD", "enum", METHODS.index(DEFAULT_MULTITEMPORAL_METHOD), METHODS),
    Parameter("MODEL", "file", ""),
    Parameter("WINDOW", "integer", 7),
    Parameter("ZEROS_AS_NODATA", "boolean", True),
    Parameter("DEVICE", "enum", 0, DEVICES),
    Parameter("OUTPUT", "destination", True),
    Parameter("RATIO", "destination", False),
    Parameter("REPORT", "destination", False),
)


def parse_targets(text: str) -> tuple[int, ...] | None:
    """TARGET: '2' or '1, 3' -> date positions (1-based); '' -> None (every date);
    SarDespeckleError with a message otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = tuple(int(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise SarDespeckleError(
            f"TARGET must be date positions separated by commas, e.g. '2' or '1, 3'; got '{text}'.") from None
    if not values or min(values) < 1:
        raise SarDespeckleError(f"TARGET must hold date positions from 1 on; got '{text}'.")
    return values


def settings_from_parameters(values: Mapping[str, object]) -> MultitemporalSettings:
    """The settings of a run given the parameter values (``core.parameters``)."""
    return MultitemporalSettings(
        **stack_settings(values),
        method=option(values, "METHOD", METHODS),
        looks=None if values["LOOKS"] is None else (values["LOOKS"],),
        targets=parse_targets(values["TARGET"]),
        window=values["WINDOW"],
        model=values["MODEL"] or None,
    )
