"""What every algorithm reading a stack of co-registered dates checks in its settings before
reading anything (torch-free): the method, the number of dates, the band layout, the units and
the looks per date."""

from __future__ import annotations

from typing import Sequence

from . import speckle
from .choices import LAYOUT_BANDS
from .errors import SarDespeckleError


def check_stack_settings(purpose: str, method: str, methods, layout: str, units: str | None,
                         looks: Sequence[float] | None, dates: int) -> None:
    """Refuse, with the parameter's name: a ``method`` not among ``methods`` (METHOD), fewer than
    two ``dates`` (INPUTS), a ``layout`` we do not know (BAND_LAYOUT), ``units`` (INPUT_UNITS)
    that are not ours or not linear for C2, and ``looks`` (LOOKS: one for all dates or one per
    date) that are not positive. ``purpose`` names the algorithm ("change detection", ...)."""
    if method not in methods:
        raise SarDespeckleError(f"Unknown {purpose} method '{method}'; choose one of {', '.join(methods)}.")
    if dates < 2:
        raise SarDespeckleError(
            f"{purpose[0].upper()}{purpose[1:]} needs at least two dates; got {dates}. Give the co-registered "
            "acquisitions in INPUTS, in date order."
        )
    if layout not in LAYOUT_BANDS:
        raise SarDespeckleError(f"Unknown band layout '{layout}'; choose one of {', '.join(LAYOUT_BANDS)}.")
    if units is not None and units not in speckle.UNITS:
        raise SarDespeckleError(f"INPUT_UNITS must be one of {speckle.UNITS}; got {units}.")
    if layout == "c2" and units not in (None, "intensity"):
        raise SarDespeckleError(
            "C2 covariance bands must be linear (power): set INPUT_UNITS to intensity or leave it empty."
        )
    if looks is not None:
        if len(looks) not in (1, dates):
            raise SarDespeckleError(
                f"Give one number of looks for all dates or one per date ({dates}); got {len(looks)}."
            )
        if not all(value > 0 for value in looks):
            raise SarDespeckleError(f"LOOKS must be positive; got {list(looks)}.")
