"""The Processing parameters of an algorithm, described without QGIS.

Each family's ``parameters`` module lists its algorithm's parameters (:class:`Parameter`: name,
kind, default) and turns their values into the family's settings. The values are what QGIS's
``parameterAs...`` functions give (``processing.base.SarAlgorithm.parameter_values`` reads them
by kind) and what :func:`values_from_text` makes of ``--NAME=VALUE`` arguments written as for
``qgis_process`` (the batch runner): so the Toolbox, ``qgis_process`` and the batch runner map
the same values to the same settings.

Value of each kind:

===============  ===========================================================================
``raster``       one input raster (given outside the values: a layer, or the batch's scene)
``rasters``      a list of input rasters (likewise)
``enum``         the option's index (int), None when an optional enum is left empty
``boolean``      bool
``integer``      int, None when an optional integer is left empty
``number``       float, None when an optional number is left empty
``string``       str ("" when empty)
``file``         a path, "" when empty
``bands``        tuple of 1-based band numbers (empty: all bands)
``destination``  an output; for the batch runner a boolean: whether to write it
===============  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .choices import BAND_LAYOUT_LABELS, DEVICES
from .errors import SarDespeckleError
from .speckle import UNITS

KINDS = ("raster", "rasters", "enum", "boolean", "integer", "number", "string", "file", "bands", "destination")
#: Kinds whose value is an input given outside the parameter values.
INPUT_KINDS = ("raster", "rasters")
#: Words a boolean is written with (lower case), as QGIS reads them.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Parameter:
    """One parameter of an algorithm.

    Attributes:
        name: the Processing name (``WINDOW``).
        kind: one of :data:`KINDS`.
        default: its value when not given (for a destination: whether it is written by
            default, as QGIS's ``createByDefault``).
        options: an enum's option ids in enum order (empty when they depend on the machine,
            like the networks of ``despeckle``'s METHOD).
    """

    name: str
    kind: str
    default: object = None
    options: tuple[str, ...] = ()


#: BAND_LAYOUT option ids, in enum order: despeckle and the algorithms that read stacks of dates.
STACK_LAYOUTS = tuple(BAND_LAYOUT_LABELS)
#: The parameters every algorithm reading a stack of dates starts with, as change detection and
#: multitemporal despeckling declare them: the dates, their band layout, units and looks.
STACK_PARAMETERS = (
    Parameter("INPUTS", "rasters"),
    Parameter("BAND_LAYOUT", "enum", 0, STACK_LAYOUTS),
    Parameter("INPUT_UNITS", "enum", None, UNITS),
    Parameter("LOOKS", "number"),
)


def stack_settings(values: Mapping[str, object]) -> dict[str, object]:
    """The settings fields every stack family shares (layout, units, zeros_as_nodata, device),
    from the values of :data:`STACK_PARAMETERS`, ZEROS_AS_NODATA and DEVICE."""
    return {
        "layout": option(values, "BAND_LAYOUT", STACK_LAYOUTS),
        "units": option(values, "INPUT_UNITS", UNITS),
        "zeros_as_nodata": values["ZEROS_AS_NODATA"],
        "device": option(values, "DEVICE", DEVICES),
    }


def by_name(parameters: Sequence[Parameter]) -> dict[str, Parameter]:
    """``{name: parameter}`` in declaration order."""
    return {parameter.name: parameter for parameter in parameters}


def defaults(parameters: Sequence[Parameter]) -> dict[str, object]:
    """The value of every parameter that is not an input, when none is given."""
    return {p.name: p.default for p in parameters if p.kind not in INPUT_KINDS}


def option(values: Mapping[str, object], name: str, options: Sequence[str]) -> str | None:
    """The id of the option chosen by index for enum ``name``; None when left empty. A bad
    index is refused with the parameter's name and the valid range."""
    index = values[name]
    if index is None:
        return None
    if not isinstance(index, int) or not 0 <= index < len(options):
        raise SarDespeckleError(
            f"{name} must be an option index from 0 to {len(options) - 1} "
            f"({', '.join(f'{i} = {o}' for i, o in enumerate(options))}); got {index}."
        )
    return options[index]


def parse_text(parameter: Parameter, text: str) -> object:
    """The value of ``parameter`` written as ``text`` on a command line (see the module doc);
    SarDespeckleError naming the parameter when the text cannot be one."""
    text = text.strip()
    kind = parameter.kind
    try:
        if kind in INPUT_KINDS:
            raise SarDespeckleError(f"{parameter.name} is the input: give the rasters with --inputs.")
        if kind in ("boolean", "destination"):
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise ValueError
        if kind in ("enum", "integer", "number") and not text:
            if parameter.default is not None:
                raise ValueError
            return None
        if kind == "enum" or kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "bands":
            return tuple(int(part) for part in text.replace(";", ",").split(",") if part.strip())
        return text
    except ValueError:
        expected = {"boolean": "true or false", "destination": "true or false", "enum": "an option index",
                    "integer": "a whole number", "number": "a number", "bands": "band numbers, e.g. 1,2"}
        raise SarDespeckleError(f"{parameter.name} must be {expected[kind]}; got '{text}'.") from None


def values_from_text(parameters: Sequence[Parameter], given: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """Every non-input parameter's value: those in ``given`` (name -> the texts given for it,
    several for a repeated ``--BANDS``) parsed, the others at their defaults. Unknown names are
    refused with the list of known ones."""
    known = by_name(parameters)
    values = defaults(parameters)
    for name, texts in given.items():
        parameter = known.get(name)
        if parameter is None:
            names = ", ".join(p.name for p in parameters if p.kind not in INPUT_KINDS)
            raise SarDespeckleError(f"Unknown parameter {name}; this algorithm takes {names}.")
        if len(texts) > 1 and parameter.kind != "bands":
            raise SarDespeckleError(f"{name} is given {len(texts)} times; give it once.")
        parsed = [parse_text(parameter, text) for text in texts]
        values[name] = tuple(band for part in parsed for band in part) if parameter.kind == "bands" else parsed[0]
    return values
