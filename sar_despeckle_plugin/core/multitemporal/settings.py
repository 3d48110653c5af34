"""What a multitemporal despeckling run is asked to do (:class:`MultitemporalSettings`), what it
reports (:class:`MultitemporalReport`), their checks and the names of the output bands.
Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..choices import DEFAULT_MULTITEMPORAL_METHOD, MULTITEMPORAL_METHOD_LABELS
from ..dates import check_stack_settings
from ..errors import SarDespeckleError
from ..raster import band_of, dated_band

#: Smallest image side we accept (pixels).
MIN_SIDE = 3
#: Pixels sampled for units, values, looks and the networks' reference levels.
SAMPLE_PIXELS = 1_000_000
#: Names of each layout's bands, for the output's band descriptions when the input has none.
BAND_NAMES = {"single": ("",), "dual": ("VV", "VH"), "c2": ("C11", "C22", "Re C12", "Im C12")}


@dataclass(frozen=True)
class MultitemporalSettings:
    """What the user chose; ``None`` means "work it out from the data".

    Attributes:
        method: a key of ``choices.MULTITEMPORAL_METHOD_LABELS``: ``quegan``, ``rabasar``,
            ``learned`` or ``multitask`` (two dates only).
        layout: ``single`` (1 band per date), ``dual`` (VV, VH intensities) or ``c2`` (C11, C22,
            Re C12, Im C12, linear).
        units: ``intensity``, ``amplitude`` or ``dB`` of the single/dual-pol bands (detected when
            None); C2 must be linear (``intensity``).
        looks: ENL of each date (one value for all dates, or one per date); estimated per date
            when None.
        targets: 1-based positions of the dates to despeckle (every date when None); written in
            date order whatever the order given.
        window: odd side of the local means of Quegan's filter and of the change test of the
            ratio and learned methods, and of the window that estimates each date's VV/VH
            coherence for C2. 7, for small changes: with 11 a 20 x 20 change of another date left
            a 10 % ghost in the target (tests/test_multitemporal.py).
        self_ensemble: ``rabasar``: the network also despeckles the mirrored images and keeps
            the geometric mean (twice the time for a few hundredths of a dB; off, as for
            single-date despeckling).
        zeros_as_nodata: exact zeros that form the border fill (``speckle.fill_mask``) are
            nodata; isolated zeros, and every zero of 8-bit bands, are dark data.
        device: ``auto``, ``cpu`` or ``cuda``.
        model: ``learned``: the model card of a multitemporal network (input kind ``stack``,
            exported by ``python -m training export`` from a run in mode ``multitemporal``);
            ``multitask``: of a multi-task network (input kind ``date_pair``, mode
            ``multitask``); None: the shipped one.
        tile: tile core side for the tiling engine (chosen from the image width when None).
    """

    method: str = DEFAULT_MULTITEMPORAL_METHOD
    layout: str = "single"
    units: str | None = None
    looks: tuple[float, ...] | None = None
    targets: tuple[int, ...] | None = None
    window: int = 7
    self_ensemble: bool = False
    zeros_as_nodata: bool = True
    device: str = "auto"
    model: str | None = None
    tile: int | None = None


@dataclass(frozen=True)
class MultitemporalReport:
    """What a run did: the output, the units, the looks of each date, the target dates (1-based),
    the method, the looks the super-image was despeckled with (``rabasar``; else None), the
    device, the output's nodata value, the RATIO and REPORT paths (None when not asked for) and
    the report's content (``multitemporal.report``; None without a REPORT)."""

    output: str
    units: str
    looks: tuple[float, ...]
    targets: tuple[int, ...]
    method: str
    super_looks: float | None
    device: str
    nodata: float
    ratio: str | None = None
    report: str | None = None
    quality: dict | None = None


def target_dates(settings: MultitemporalSettings, dates: int) -> tuple[int, ...]:
    """The 0-based indices of the dates to despeckle, in date order."""
    return tuple(sorted({t - 1 for t in settings.targets})) if settings.targets else tuple(range(dates))


def check_settings(settings: MultitemporalSettings, dates: int) -> None:
    """Refuse settings that no stack of ``dates`` dates could make sense of, with the parameter's name."""
    check_stack_settings("multitemporal despeckling", settings.method, MULTITEMPORAL_METHOD_LABELS,
                         settings.layout, settings.units, settings.looks, dates)
    if settings.targets is not None:
        outside = [t for t in settings.targets if not 1 <= t <= dates]
        if outside or not settings.targets:
            raise SarDespeckleError(
                f"TARGET must list date positions between 1 and {dates} (the number of INPUTS); got "
                f"{list(settings.targets)}."
            )
    if settings.method == "multitask" and dates != 2:
        raise SarDespeckleError(
            f"METHOD multitask despeckles two dates (its network was trained on pairs); INPUTS has {dates}: give "
            "two dates, or choose the ratio, Quegan or learned method for longer stacks."
        )
    if settings.window < 3 or settings.window % 2 == 0:
        raise SarDespeckleError(f"WINDOW must be an odd number >= 3; got {settings.window}.")


def check_output(path: str) -> None:
    """Refuse an OUTPUT that is not a GeoTIFF."""
    if not path:
        raise SarDespeckleError("No OUTPUT was given.")
    if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
        raise SarDespeckleError(f"OUTPUT '{path}' must be a GeoTIFF (.tif or .tiff).")


def band_descriptions(layout: str, inputs, descriptions, targets) -> list[str]:
    """One description per output band: for each target date (0-based ``targets``), in date
    order, 'date N (file name) BAND' (``core.raster.dated_band``), BAND the input's band
    description or the layout's name."""
    names = [band_of(given) or default for given, default in zip(descriptions, BAND_NAMES[layout])]
    return [dated_band(t + 1, inputs[t], name) for t in targets for name in names]
