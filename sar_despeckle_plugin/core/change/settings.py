"""What a change-detection run is asked to do (:class:`ChangeSettings`), where it writes
(:class:`ChangeOutputs`), what it reports (:class:`ChangeReport`), their checks, and the
constants of the layouts and outputs. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..choices import CHANGE_METHOD_LABELS, DEFAULT_CHANGE_METHOD
from ..dates import check_stack_settings
from ..errors import SarDespeckleError
from .regions import vector_driver

#: Wishart block shape (p, number of independent blocks m) of each layout.
BLOCKS = {"single": (1, 1), "dual": (1, 2), "c2": (2, 1)}
#: Nodata of the outputs: p-value map (float32), mask and date (uint8).
MAP_NODATA = -1.0
MASK_NODATA = 255
#: Smallest image side we accept (pixels).
MIN_SIDE = 3
#: The Wishart test of p x p matrices needs more than p - 1 looks; we refuse less than p - 1 + this.
MIN_LOOKS_MARGIN = 0.25
#: Pixels sampled for units, looks, speckle correlation, normalisation and thresholds.
SAMPLE_PIXELS = 1_000_000
#: Null distributions of the omnibus statistic (see ``statistics.omnibus_pvalue``).
PVALUE_APPROXIMATIONS = ("auto", "box", "cumulants")


@dataclass(frozen=True)
class ChangeSettings:
    """What the user chose; ``None`` means "work it out from the data".

    Attributes:
        method: a key of ``choices.CHANGE_METHOD_LABELS`` (``detectors.DETECTORS``).
        layout: ``single`` (1 band per date), ``dual`` (VV, VH intensities) or ``c2`` (C11, C22,
            Re C12, Im C12, linear).
        units: ``intensity``, ``amplitude`` or ``dB`` of the single/dual-pol bands (detected when
            None); C2 must be linear (``intensity``).
        looks: ENL of each date (one value for all dates, or one per date); estimated per date
            when None.
        significance: level of the omnibus test (the log-ratio methods threshold automatically).
        window: odd side of the boxcar averaging the covariance before the test (1: none).
        prefilter: handle speckle before the decision (``core.change.prefilter``): each date
            despeckled on its own, at its own looks, by ``core.despeckle``'s automatic choice
            for the log-ratio and unsupervised methods; for the omnibus test and C2 a boxcar
            window chosen from the looks where ``window`` is 1. The learned detector reads
            speckled dates and ignores it.
        min_area: changed or unchanged regions smaller than this many pixels are merged into
            their surroundings in the mask (GDAL sieve, 4-connected; 0 or 1: off); None: the
            minimum mapping unit measured on the image (``core.change.mapping_unit``).
        refine_boundaries: after the sieve, re-decide the pixels just outside each changed
            region by the half-contrast rule (``core.change.boundaries``); the map is unchanged.
        normalise: scale each date so its median log-ratio to date 1 is zero (uncalibrated data).
        zeros_as_nodata: exact zeros that form the border fill (``speckle.fill_mask``) are
            nodata; isolated zeros, and every zero of 8-bit bands, are dark data.
        device: ``auto``, ``cpu`` or ``cuda``.
        approximation: null distribution of the omnibus statistic, one of
            :data:`PVALUE_APPROXIMATIONS` (see ``statistics.omnibus_pvalue``).
        tile: tile core side for the tiling engine (chosen from the image width when None).
        model: model card of the ``learned`` method (when None, the shipped detector of the
            layout: ``detectors.shipped_change_model``).
    """

    method: str = DEFAULT_CHANGE_METHOD
    layout: str = "single"
    units: str | None = None
    looks: tuple[float, ...] | None = None
    significance: float = 0.01
    window: int = 1
    prefilter: bool = True
    min_area: int | None = None
    refine_boundaries: bool = False
    normalise: bool = False
    zeros_as_nodata: bool = True
    device: str = "auto"
    approximation: str = "auto"
    tile: int | None = None
    model: str | None = None


@dataclass(frozen=True)
class ChangeOutputs:
    """Destinations; None skips an output. Rasters are GeoTIFF, polygons GPKG/SHP/GeoJSON."""

    change_map: str | None = None
    change_mask: str | None = None
    change_date: str | None = None
    change_polygons: str | None = None


@dataclass(frozen=True)
class ChangeReport:
    """What a run did; ``prefilter`` says how speckle was handled before the decision,
    ``min_area`` the sieve that ran (pixels), ``nodata_pixels`` how many output pixels are nodata."""

    outputs: dict
    units: str
    looks: tuple[float, ...]
    effective_looks: tuple[float, ...]
    averaging_factor: float
    gains: tuple[tuple[float, ...], ...]
    detector: dict
    changed_fraction: float
    polygons: int | None
    device: str
    prefilter: str = "none"
    min_area: int = 0
    nodata_pixels: int = 0


def check_settings(settings: ChangeSettings, dates: int) -> None:
    """Refuse settings that no stack of ``dates`` dates could make sense of, with the parameter's name."""
    check_stack_settings("change-detection", settings.method, CHANGE_METHOD_LABELS, settings.layout,
                         settings.units, settings.looks, dates)
    if dates >= MASK_NODATA:
        raise SarDespeckleError(f"At most {MASK_NODATA - 1} dates are supported; got {dates}.")
    if not 0 < settings.significance < 1:
        raise SarDespeckleError(f"SIGNIFICANCE must be between 0 and 1; got {settings.significance}.")
    if settings.window < 1 or settings.window % 2 == 0:
        raise SarDespeckleError(f"WINDOW must be an odd number >= 1; got {settings.window}.")
    if settings.approximation not in PVALUE_APPROXIMATIONS:
        raise SarDespeckleError(f"Unknown p-value approximation '{settings.approximation}'; choose one of "
                                f"{', '.join(PVALUE_APPROXIMATIONS)}.")
    if settings.min_area is not None and settings.min_area < 0:
        raise SarDespeckleError(f"MIN_AREA must be >= 0; got {settings.min_area}.")


def check_outputs(outputs: ChangeOutputs) -> None:
    """Refuse output sets no run could write: none at all, a raster not GeoTIFF, a shared path,
    a polygon format we do not write or a missing folder."""
    rasters = [p for p in (outputs.change_map, outputs.change_mask, outputs.change_date) if p]
    if not rasters and not outputs.change_polygons:
        raise SarDespeckleError("No output was requested: give CHANGE_MAP, CHANGE_MASK, CHANGE_DATE or "
                                "CHANGE_POLYGONS.")
    for path in rasters:
        if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
            raise SarDespeckleError(f"Output '{path}' must be a GeoTIFF (.tif or .tiff).")
    paths = [os.path.abspath(p) for p in rasters + [outputs.change_polygons] if p]
    if len(set(paths)) != len(paths):
        raise SarDespeckleError("Two outputs have the same path: give each output its own file.")
    if outputs.change_polygons:
        vector_driver(outputs.change_polygons)
