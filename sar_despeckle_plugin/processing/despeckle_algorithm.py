"""``sar_despeckle:despeckle``: remove speckle from intensity, amplitude or dB images."""

from __future__ import annotations


from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.choices import BAND_LAYOUT_LABELS, DEFAULT_NETWORK
from ..core.despeckle.parameters import AUTOMATIC_INDEX, PARAMETERS, available_methods, settings_from_parameters
from ..core.despeckle.settings import check_band_count
from ..core.errors import SarDespeckleError
from ..core.parameters import STACK_LAYOUTS
from . import styles
from .base import SarAlgorithm, torch_required, with_help
from .user_models import model_card_problem, user_models_folder, warn_once


class DespeckleAlgorithm(SarAlgorithm):
    """Single-date despeckling: each selected band independently, or C2 covariance jointly."""

    search_tags = ("despeckle", "despeckling", "speckle filter", "filter", "filtering", "denoise",
                   "denoising", "noise reduction", "smoothing", "lee", "refined lee", "lee sigma",
                   "frost", "gamma map", "kuan", "boxcar", "mmse", "neural network", "deep learning",
                   "cnn", "pytorch", "intensity", "amplitude", "db", "grd", "dual-pol", "dual polarisation",
                   "vv", "vh", "covariance", "c2")

    def name(self) -> str:
        return "despeckle"

    def displayName(self) -> str:
        return "Despeckle SAR image"

    def summary(self) -> str:
        return (
            "Removes speckle from a SAR image given as intensity, amplitude or dB, band by band. "
            "New to it? Choose the image and keep the defaults: Method Automatic measures the "
            "units, the number of looks and the speckle's correlation, then runs the network or "
            "filter made for them, and the log says which and why. Pick a classical filter (Lee, "
            "refined Lee, Frost, ...) only when you need that very filter: Window size applies to "
            "classical filters alone. Dual-pol C2 covariance (C11, C22, Re C12, Im C12): set Band "
            "layout to C2 and it is despeckled jointly into a valid covariance matrix. Tick Ratio "
            "image or Quality report to judge the result without a reference. Complex SLC images go "
            "through Decorrelate SLC speckle first."
        )

    def details(self) -> str:
        return (
            "Classical filters run in PyTorch, on a GPU when there is one. The output keeps the "
            "input's georeference, size, units, nodata and band descriptions, and records the "
            "method and parameters in its metadata. Exact zeros that form a border fill "
            "(Sentinel-1 swath borders) count as nodata, isolated zeros as dark data; NaN is "
            "refused unless the input declares NaN as its nodata value."
        )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(with_help(
            QgsProcessingParameterRasterLayer("INPUT", "Input SAR raster"),
            "A calibrated SAR image (GeoTIFF or any GDAL raster) in intensity, amplitude or dB. "
            "Complex SLC data must be detected first: the Decorrelated intensity output of "
            "Decorrelate SLC speckle, or |z|^2 from GDAL (the plugin's help page gives the command).",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBand(
                "BANDS", "Bands", parentLayerParameterName="INPUT", optional=True,
                allowMultiple=True,
            ),
            "Bands to despeckle (e.g. VV and VH), in the order BAND_LAYOUT reads them. Empty: all bands.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "BAND_LAYOUT", "Band layout", options=list(BAND_LAYOUT_LABELS.values()), defaultValue=0,
            ),
            "What the selected bands are. 0 = single-pol: any number of bands, each despeckled on "
            "its own. 1 = dual-pol intensities: two bands, VV then VH, each despeckled on its own "
            "(intensity, amplitude or dB). 2 = C2 covariance: four linear bands C11, C22, Re C12, "
            "Im C12 (C12 = <Svv conj(Svh)>, as SNAP writes them), despeckled jointly: the method "
            "filters the four intensities |Svv|^2, |Svh|^2, |Svv+Svh|^2 and |Svv+jSvh|^2, C2 is "
            "recovered exactly from them, and C12 is shrunk where needed so that every output pixel "
            "is a valid covariance matrix (C11, C22 >= 0, |C12|^2 <= C11 C22); the looks are "
            "estimated from C11 and C22, and RATIO and REPORT cover C11 and C22 only. A band count "
            "that does not fit the layout is refused.",
        ))
        self.add_units_parameter()
        self.add_looks_parameter()
        self.methods = available_methods(user_models_folder(), warn_once)
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "METHOD", "Method", options=[label for label, _ in self.methods],
                defaultValue=AUTOMATIC_INDEX,
            ),
            "The filter or network: " + "; ".join(
                f"{index} = {label}" for index, (label, _) in enumerate(self.methods)
            ) + ". Classical filters keep indices 0-6; 7 is Automatic, the default; networks "
            "follow: those shipped with the plugin, then the model cards in the user models "
            "folder (Processing options). Automatic takes LOOKS (or estimates them) and measures "
            "the speckle's lag-1 autocorrelation along rows and columns on the image's most "
            "homogeneous windows, then uses a network whose model card covers both (its "
            "looks range, within 25 %, and the same kind of speckle: white, or correlated up to "
            "its largest speckle correlation; the shipped "
            f"{DEFAULT_NETWORK} first, made for 1-look white speckle; for correlated speckle the "
            "closest fit: the SLC network, then the one that reads the measured correlation, then "
            "the others); outside every card, the "
            "classical filter and window that measured best for those looks and that kind of "
            "speckle (white or correlated: scripts/bench_classical_choice.py). A network it "
            "chooses for correlated speckle (an SLC or GRD as delivered) also keeps point targets "
            "(see POINT_TARGETS). The log says which it chose and why. Automatic chooses its own "
            "window: WINDOW applies when a classical filter is chosen by hand.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterFile(
                "MODEL", "Model card (overrides Method)", extension="json", optional=True
            ),
            "A model card (.json beside its weights) exported by `python -m training export`; "
            "when given, this network is used whatever Method says. Its weights are checked "
            "against the card's sha256 before loading.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber(
                "WINDOW", "Window size, classical filters only (pixels, odd)",
                QgsProcessingParameterNumber.Integer, defaultValue=7, minValue=3, maxValue=101,
            ),
            "Side of the moving window of the classical filter chosen in Method; odd, at least 3 "
            "(5 for refined Lee). Larger windows smooth more and blur more. Networks ignore it, "
            "and Automatic picks its own window.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber(
                "FROST_DAMPING", "Frost damping factor", QgsProcessingParameterNumber.Double,
                defaultValue=2.0, minValue=0.01, maxValue=100.0,
            ),
            "Frost only: D in the kernel exp(-D * Ci^2 * distance), Ci the local coefficient of "
            "variation. Smaller values smooth more (Orfeo ToolBox calls it deramp).",
            advanced=True,
        ))
        self.add_device_parameter()
        self.addParameter(with_help(
            QgsProcessingParameterBoolean(
                "SELF_ENSEMBLE", "Average with the mirrored image (networks)", defaultValue=False
            ),
            "Networks only: also despeckle the left-right mirror of the image and keep the "
            "geometric mean of the two estimates. Lowers the error a little (+0.04 dB PSNR for "
            "the default network on the benchmark references) and doubles the time: worth it "
            "on a GPU, or when time does not matter.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean(
                "POINT_TARGETS", "Keep point targets (networks)", defaultValue=False
            ),
            "Networks only: dominant scatterers (corner reflectors, ships, pylons: pixels more "
            "than 20 dB brighter than the ring 2-4 pixels around them) and their bright 3 x 3 "
            "response are kept as measured, as the improved Lee sigma filter keeps point "
            "targets, instead of being spread over their neighbours: 100 % of a corner "
            "reflector's peak is kept with this; without it the SLC network keeps 57 % (its "
            "3 x 3 energy 93 %), the single-look one 64 %. Method "
            "Automatic already keeps them where the speckle is correlated (SLC and GRD products "
            "as delivered); tick it for calibration and point-target measurements on any other "
            "input or network. Off by default for white speckle: on simulated speckle, which "
            "speckles persistent scatterers too, smoothing them scores 0.3-0.7 dB higher.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean(
                "ZEROS_AS_NODATA", "Treat exact zeros as nodata", defaultValue=True
            ),
            "Sentinel-1 products mark swath borders with exact zeros, often without a nodata "
            "tag. On: zeros that form the border fill (runs of 32 or more zeros along a row or "
            "column, or zeros reaching the image edge or nodata) are nodata, kept out of all "
            "statistics; isolated zeros inside the scene, and all zeros of 8-bit bands (their "
            "darkest grey level), are data. The log says how many pixels each rule took. Off: "
            "every zero is data.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("OUTPUT", "Despeckled"),
            "The despeckled GeoTIFF (float32, same units, bands and band descriptions as the input; "
            "C2: a valid covariance matrix at every pixel).",
        ))
        self.add_quality_outputs(
            "Ratio image I / I_hat",
            "Optional quality check without a reference: the input divided by the output, in "
            "linear intensity whatever the input's units (float32, one band per despeckled band; "
            "C2: C11 and C22 only; nodata -1 where the output is nodata). A good despeckler leaves pure speckle here: "
            "mean 1 and no visible edges or shapes of the scene.",
            "Optional quality report for users without a reference, opened in the Results "
            "Viewer: per band the input's looks estimate, the ratio image's mean, ENL and "
            "autocorrelation at lags 1-2 along rows and columns beside the input speckle's own, "
            "the output's ENL, edge preservation (EPD-ROA), the time and device, and a "
            "quick-look of input, output and ratio (C2: C11 and C22 only). A JSON twin (same name, .json) and the "
            "quick-look (.png) are written beside it. Measured on up to 4 Mpx per band.",
        )

    def parameter_problem(self, parameters, context):
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None:
            raw = parameters.get("INPUT")
            return self.input_path_problem(str(raw)) or f"Cannot open input raster '{raw}'."
        return (self.odd_window_problem(parameters, context)
                or self.band_layout_problem(parameters, context, layer)
                or model_card_problem(self.parameterAsFile(parameters, "MODEL", context)))

    def band_layout_problem(self, parameters, context, layer) -> str | None:
        """A message when the selected bands (BANDS, else all of the layer's) do not make BAND_LAYOUT."""
        layout = STACK_LAYOUTS[self.parameterAsEnum(parameters, "BAND_LAYOUT", context)]
        count = len(self.parameterAsInts(parameters, "BANDS", context)) or layer.bandCount()
        try:
            check_band_count(layout, count, layer.source())
        except SarDespeckleError as error:
            return str(error)
        return None

    def processAlgorithm(self, parameters, context, feedback):
        with torch_required():
            from ..core.despeckle.pipeline import despeckle_raster

        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        settings = settings_from_parameters(self.parameter_values(parameters, context, PARAMETERS), self.methods)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        ratio, report = self.quality_paths(parameters, context)
        self.run_core(
            despeckle_raster, layer.source(), output, settings, self.core_feedback(feedback),
            ratio_path=ratio, report_path=report,
        )
        method = styles.recorded_method(output, settings.method)
        styles.style_on_load(context, output, styles.layer_name(layer.name(), method), styles.backscatter)
        if ratio:
            styles.style_on_load(context, ratio, styles.layer_name(layer.name(), method, "ratio"), styles.ratio)
        return {"OUTPUT": output, **self.quality_results(ratio, report)}
