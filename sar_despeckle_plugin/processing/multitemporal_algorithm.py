"""``sar_despeckle:despeckle_multitemporal``: despeckle dates of a co-registered stack with the
help of the other dates."""

from __future__ import annotations


from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ..core.choices import DEFAULT_MULTITEMPORAL_METHOD, MULTITEMPORAL_METHOD_LABELS
from ..core.errors import SarDespeckleError
from ..core.multitemporal.parameters import METHODS, PARAMETERS, parse_targets, settings_from_parameters
from .base import SarAlgorithm, torch_required, with_help
from .user_models import model_card_problem


class MultitemporalAlgorithm(SarAlgorithm):
    """Multitemporal despeckling: Quegan's filter and a RABASAR-style ratio method."""

    search_tags = ("multitemporal", "multi-temporal", "time series", "stack", "despeckle", "speckle filter",
                   "quegan", "rabasar", "ratio", "dual-pol", "covariance", "c2")

    def name(self) -> str:
        return "despeckle_multitemporal"

    def displayName(self) -> str:
        return "Despeckle a stack of SAR dates (multitemporal)"

    def summary(self) -> str:
        return (
            "Removes speckle from chosen dates of a stack of co-registered SAR acquisitions "
            "(e.g. a Sentinel-1 time series) using every date: far more speckle goes than one "
            "image allows, while changes that happened at one date stay at that date. The "
            "RABASAR-style method despeckles the temporal mean with the shipped network and "
            "then each date's ratio to it; Quegan's filter rescales each date's local mean by "
            "the stack's average ratio; the learned network reads the date and the other dates' "
            "mean. Single-pol, dual-pol (VV, VH) intensities and the dual-pol covariance C2 "
            "(which stays a valid covariance matrix). The output is one "
            "GeoTIFF holding each target date's bands in date order, on the inputs' grid, in "
            "their units and with their nodata. Optional ratio images and a quality report "
            "judge each target date without a reference, as for sar_despeckle:despeckle."
        )

    def initAlgorithm(self, config=None) -> None:
        self.add_dates_parameters(
            " Complex (SLC) rasters are refused: detect them first.",
            "What each date's bands are: 0 = single-pol (one band); 1 = dual-pol intensities "
            "(band 1 VV, band 2 VH), each filtered on its own; 2 = dual-pol covariance C2 (C11, "
            "C22, Re C12, Im C12, linear power): C11 and C22 are filtered and C12 keeps each "
            "date's own VV/VH coherence, so every output pixel is a valid covariance matrix.",
            "Units of the single-pol or dual-pol bands: intensity (power), amplitude (its square "
            "root) or dB. Left empty, detected from band descriptions, values and storage type "
            "as for sar_despeckle:despeckle, on every date (dates in different units are "
            "refused); the log says why. C2 bands must be linear. The output keeps the units.",
        )
        self.addParameter(with_help(
            QgsProcessingParameterNumber("LOOKS", "Number of looks (ENL), all dates",
                                         QgsProcessingParameterNumber.Double, optional=True, minValue=0.1),
            "Equivalent number of looks of every date (1 for single-look data, about 4.4 for "
            "Sentinel-1 IW GRDH). Left empty, estimated for each date separately from the image.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterString("TARGET", "Dates to despeckle (positions)", optional=True),
            "Positions in INPUTS (1 = the first date) of the dates to despeckle, separated by "
            "commas, e.g. '2' or '1, 3'. Left empty, every date is despeckled. The output holds "
            "the target dates in date order; every date of INPUTS helps despeckle them.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "METHOD", "Method", options=[MULTITEMPORAL_METHOD_LABELS[m] for m in METHODS],
                defaultValue=METHODS.index(DEFAULT_MULTITEMPORAL_METHOD),
            ),
            "How the dates are combined: " + "; ".join(
                f"{index} = {label}" for index, label in enumerate(MULTITEMPORAL_METHOD_LABELS.values())
            ) + ". The ratio method removes much more speckle (see docs/multitemporal.md for the "
            "measurements) and runs the network twice per target date; the learned network (MODEL, "
            "or the shipped one) once per target date; Quegan's filter is fast and needs no network; "
            "the multi-task network takes exactly two dates, despeckles both and keeps them apart "
            "where its change branch sees change.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterFile("MODEL", "Multitemporal model card (learned method)", extension="json",
                                       optional=True),
            "For the learned method: the model card (.json beside its weights) of a multitemporal "
            "network exported by `python -m training export` from a run in mode multitemporal; for "
            "the multi-task method: of a run in mode multitask; empty = the shipped network. Its weights are checked against the card's sha256 before loading.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber("WINDOW", "Window (pixels, odd)", QgsProcessingParameterNumber.Integer,
                                         defaultValue=7, minValue=3, maxValue=51),
            "Side of the window of the local means in Quegan's filter (larger: smoother, but "
            "changes' outlines spread further), of the test that finds where another date changed "
            "against the target in the ratio and learned methods (larger: steadier, but small "
            "changes may go unnoticed), and of the window that estimates each date's VV/VH "
            "coherence for C2.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("ZEROS_AS_NODATA", "Treat exact zeros as nodata", defaultValue=True),
            "Sentinel-1 products mark swath borders with exact zeros, often without a nodata tag. "
            "On: zeros that form the border fill (runs of 32 or more zeros along a row or column, "
            "or zeros reaching the image edge or nodata) are nodata for their date; isolated zeros "
            "and all zeros of 8-bit bands are dark data. Off: every zero is data.",
            advanced=True,
        ))
        self.add_device_parameter()
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("OUTPUT", "Despeckled dates"),
            "GeoTIFF with, for each target date in date order, its despeckled bands (1, 2 or 4 by "
            "BAND_LAYOUT), described 'date N (file) band'; the inputs' grid, CRS, units and nodata; "
            "a pixel that is nodata in a date is nodata in that date's bands.",
        ))
        self.add_quality_outputs(
            "Ratio images I / I_hat",
            "Optional quality check without a reference: for each target date in date order, its "
            "input divided by its output for each intensity band (the single-pol band; VV, VH; "
            "C11, C22 of C2), in linear intensity whatever the input's units (float32, nodata -1 "
            "where the output is nodata). A good despeckler leaves pure speckle here: mean 1 and no "
            "visible edges or shapes of the scene; a change of the date that shows here was smoothed.",
            "Optional quality report for users without a reference, opened in the Results "
            "Viewer: for each target date and intensity band the input's looks estimate, the "
            "ratio image's mean, ENL and autocorrelation at lags 1-2 along rows and columns beside "
            "the input speckle's own, the output's ENL and edge preservation (EPD-ROA); the "
            "method, time and device; and a quick-look of input, output and ratio per target "
            "date. A JSON twin (same name, .json) and the quick-look (.png) are written beside "
            "it. Measured on up to 1 Mpx per band.",
        )

    def parameter_problem(self, parameters, context):
        problem = self.dates_problem(parameters, context, "Multitemporal despeckling needs",
                                     ", or use sar_despeckle:despeckle for one date")
        if problem:
            return problem
        layers = self.parameterAsLayerList(parameters, "INPUTS", context)
        try:
            targets = parse_targets(self.parameterAsString(parameters, "TARGET", context))
        except SarDespeckleError as error:
            return str(error)
        if targets is not None and max(targets) > len(layers):
            return f"TARGET names date {max(targets)} but INPUTS has {len(layers)} dates."
        method = METHODS[self.parameterAsEnum(parameters, "METHOD", context)]
        if method == "multitask" and len(layers) != 2:
            return (f"The multi-task method despeckles two dates; INPUTS has {len(layers)}: give two dates, or "
                    "choose another METHOD for longer stacks.")
        return model_card_problem(self.parameterAsFile(parameters, "MODEL", context))

    def processAlgorithm(self, parameters, context, feedback):
        with torch_required():
            from ..core.multitemporal.pipeline import despeckle_stack

        sources = [layer.source() for layer in self.parameterAsLayerList(parameters, "INPUTS", context)]
        settings = settings_from_parameters(self.parameter_values(parameters, context, PARAMETERS))
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        ratio, report_path = self.quality_paths(parameters, context)
        report = self.run_core(despeckle_stack, sources, output, settings, self.core_feedback(feedback),
                               ratio_path=ratio, report_path=report_path)
        feedback.pushInfo(f"Wrote date(s) {', '.join(map(str, report.targets))} to {output}.")
        return {"OUTPUT": output, **self.quality_results(ratio, report_path)}
