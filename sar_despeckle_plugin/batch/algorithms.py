"""The provider's algorithms as the batch runner runs them: their parameters and settings (the
families' ``parameters`` modules, shared with the Processing algorithms), whether a task is one
raster or a stack of dates, the file name of each output, and the core function that runs them.
No QGIS, no Dask; torch is imported only when a scene runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ..core.change import parameters as change
from ..core.decorrelation import parameters as decorrelation
from ..core.despeckle import parameters as despeckle
from ..core.errors import SarDespeckleError
from ..core.feedback import Feedback
from ..core.multitemporal import parameters as multitemporal
from ..core.parameters import Parameter
from ..core.user_models import default_models_folder

LOG = logging.getLogger(__name__)

#: Runs one task: (input paths, {output name: path or None}, settings, feedback) -> the device
#: it ran on ('cpu', 'cuda').
Runner = Callable[[Sequence[str], Mapping[str, "str | None"], object, Feedback], str]


@dataclass(frozen=True)
class BatchAlgorithm:
    """One provider algorithm for the batch runner.

    Attributes:
        id: the algorithm id (``despeckle``), as in ``sar_despeckle:despeckle``.
        parameters: its parameters (``core.parameters.Parameter``), as the Processing algorithm declares them.
        stack: True when a task is a stack of co-registered dates (INPUTS), False for one raster (INPUT).
        suffixes: output name -> what follows the task's name in the output file's name.
        settings: parameter values -> the family's settings.
        run: the core call (see :data:`Runner`).
    """

    id: str
    parameters: tuple[Parameter, ...]
    stack: bool
    suffixes: Mapping[str, str]
    settings: Callable[[Mapping[str, object]], object]
    run: Runner


def _despeckle_settings(values):
    """DespeckleSettings; METHOD's networks are the shipped ones then those of the default user
    models folder (as ``qgis_process`` lists them with that folder's default setting)."""
    return despeckle.settings_from_parameters(values, despeckle.available_methods(default_models_folder(), LOG.warning))


def _despeckle(sources, outputs, settings, feedback) -> str:
    from ..core.despeckle.pipeline import despeckle_raster

    return despeckle_raster(sources[0], outputs["OUTPUT"], settings, feedback,
                            ratio_path=outputs["RATIO"], report_path=outputs["REPORT"]).device


def _decorrelate(sources, outputs, settings, feedback) -> str:
    from ..core.decorrelation.pipeline import decorrelate_raster
    from ..core.decorrelation.settings import DecorrelationOutputs

    chosen = DecorrelationOutputs(outputs["OUTPUT"], outputs["OUTPUT_INTENSITY"], outputs["REPORT"])
    return decorrelate_raster(sources[0], chosen, settings, feedback)["device"]


def _change_detection(sources, outputs, settings, feedback) -> str:
    from ..core.change.pipeline import detect_changes
    from ..core.change.settings import ChangeOutputs

    chosen = ChangeOutputs(change_map=outputs["CHANGE_MAP"], change_mask=outputs["CHANGE_MASK"],
                           change_date=outputs["CHANGE_DATE"], change_polygons=outputs["CHANGE_POLYGONS"])
    return detect_changes(sources, chosen, settings, feedback).device


def _despeckle_multitemporal(sources, outputs, settings, feedback) -> str:
    from ..core.multitemporal.pipeline import despeckle_stack

    return despeckle_stack(sources, outputs["OUTPUT"], settings, feedback, ratio_path=outputs["RATIO"],
                           report_path=outputs["REPORT"]).device


ALGORITHMS = {algorithm.id: algorithm for algorithm in (
    BatchAlgorithm("despeckle", despeckle.PARAMETERS, False,
                   {"OUTPUT": ".tif", "RATIO": "_ratio.tif", "REPORT": "_report.html"},
                   _despeckle_settings, _despeckle),
    BatchAlgorithm("decorrelate", decorrelation.PARAMETERS, False,
                   {"OUTPUT": ".tif", "OUTPUT_INTENSITY": "_intensity.tif", "REPORT": "_report.json"},
                   decorrelation.settings_from_parameters, _decorrelate),
    BatchAlgorithm("change_detection", change.PARAMETERS, True,
                   {"CHANGE_MAP": "_change_map.tif", "CHANGE_MASK": "_change_mask.tif",
                    "CHANGE_DATE": "_change_date.tif", "CHANGE_POLYGONS": "_change_polygons.gpkg"},
                   change.settings_from_parameters, _change_detection),
    BatchAlgorithm("despeckle_multitemporal", multitemporal.PARAMETERS, True,
                   {"OUTPUT": ".tif", "RATIO": "_ratio.tif", "REPORT": "_report.html"},
                   multitemporal.settings_from_parameters, _despeckle_multitemporal),
)}


def algorithm(name: str) -> BatchAlgorithm:
    """The algorithm ``name`` (``despeckle`` or ``sar_despeckle:despeckle``); SarDespeckleError
    listing the ids otherwise."""
    found = ALGORITHMS.get(name.removeprefix("sar_despeckle:"))
    if found is None:
        raise SarDespeckleError(f"Unknown algorithm '{name}'; choose one of {', '.join(ALGORITHMS)}.")
    return found
