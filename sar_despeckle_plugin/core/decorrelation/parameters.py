"""``sar_despeckle:decorrelate``'s parameters (``core.parameters``) and their settings: what both
the Processing algorithm and the batch runner map the parameter values through. Torch-free."""

from __future__ import annotations

from typing import Mapping

from ..choices import DEVICES
from ..parameters import Parameter, option
from .settings import DEFAULT_POINT_TARGET_FACTOR, LAYOUTS, RESAMPLE_MODES, DecorrelationSettings

PARAMETERS = (
    Parameter("INPUT", "raster"),
    Parameter("BAND_LAYOUT", "enum", 0, LAYOUTS),
    Parameter("POINT_TARGET_FACTOR", "number", DEFAULT_POINT_TARGET_FACTOR),
    Parameter("RESAMPLE", "boolean", False),
    Parameter("RESAMPLE_MODE", "enum", 0, RESAMPLE_MODES),
    Parameter("RESTORE_CENTROID", "boolean", True),
    Parameter("ESTIMATION_WINDOW", "integer", 0),
    Parameter("AZIMUTH_CENTROID", "number"),
    Parameter("AZIMUTH_BANDWIDTH", "number"),
    Parameter("RANGE_CENTROID", "number"),
    Parameter("RANGE_BANDWIDTH", "number"),
    Parameter("ZEROS_AS_NODATA", "boolean", True),
    Parameter("DEVICE", "enum", 0, DEVICES),
    Parameter("OUTPUT", "destination", True),
    Parameter("OUTPUT_INTENSITY", "destination", True),
    Parameter("REPORT", "destination", True),
)


def settings_from_parameters(values: Mapping[str, object]) -> DecorrelationSettings:
    """The settings of a run given the parameter values (``core.parameters``)."""
    return DecorrelationSettings(
        layout=option(values, "BAND_LAYOUT", LAYOUTS),
        point_target_factor=values["POINT_TARGET_FACTOR"],
        resample=values["RESAMPLE"],
        resample_mode=option(values, "RESAMPLE_MODE", RESAMPLE_MODES),
        restore_centroid=values["RESTORE_CENTROID"],
        estimation_window=values["ESTIMATION_WINDOW"],
        azimuth_centroid=values["AZIMUTH_CENTROID"],
        azimuth_bandwidth=values["AZIMUTH_BANDWIDTH"],
        range_centroid=values["RANGE_CENTROID"],
        range_bandwidth=values["RANGE_BANDWIDTH"],
        zeros_as_nodata=values["ZEROS_AS_NODATA"],
        device=option(values, "DEVICE", DEVICES),
    )
