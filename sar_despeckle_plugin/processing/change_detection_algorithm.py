"""``sar_despeckle:change_detection``: changes between co-registered SAR dates."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..core.change.parameters import METHODS, PARAMETERS, parse_looks, settings_from_parameters
from ..core.change.settings import ChangeOutputs
from ..core.choices import CHANGE_METHOD_LABELS, DEFAULT_CHANGE_METHOD
from ..core.errors import SarDespeckleError
from . import styles
from .base import SarAlgorithm, is_given, torch_required, with_help
from .user_models import model_card_problem

OUTPUTS = ("CHANGE_MAP", "CHANGE_MASK", "CHANGE_DATE", "CHANGE_POLYGONS")
#: The methods whose CHANGE_MAP is a change probability (the others give a p-value).
PROBABILITY_METHODS = ("learned", "unsupervised")


class ChangeDetectionAlgorithm(SarAlgorithm):
    """Change detection across two or more dates: statistical tests and a learned detector."""

    group_key = "change_detection"
    search_tags = ("change", "change detection", "omnibus", "wishart", "likelihood ratio", "log-ratio",
                   "log ratio", "otsu", "kittler-illingworth", "threshold", "time series",
                   "multitemporal", "flood", "deforestation", "p-value", "dual-pol", "covariance")

    def name(self) -> str:
        return "change_detection"

    def displayName(self) -> str:
        return "Detect changes between SAR dates"

    def summary(self) -> str:
        return (
            "Finds where the radar backscatter changed between two or more co-registered SAR "
            "acquisitions (floods, harvest, construction, ice break-up). New to it? Give the dates "
            "oldest first, set Band layout to what their bands are (one band, VV and VH, or C2) "
            "and keep the defaults: they handle speckle before deciding and choose the method and "
            "the minimum mapping unit from the images; the log says what they chose and why. "
            "Choose the omnibus test with Prefilter off where a known false-alarm rate matters."
        )

    def details(self) -> str:
        return (
            "The defaults: METHOD automatic runs the learned detector on dual-pol pairs of the looks "
            "it was trained on (1-8), else the unsupervised detector on despeckled dates; "
            "PREFILTER despeckles each date on its own, at its own looks (a 4-look and a single-look "
            "date are each filtered for their own speckle), with the despeckler the plugin's automatic "
            "choice makes for the most demanding date (the network whose model card fits its looks, "
            "else the best classical filter); MIN_AREA left empty merges "
            "regions smaller than four independent samples of the log-ratio's error (its correlation "
            "area, measured on the image: larger for coarse resolution cells and for the prefilter's "
            "footprint) into their surroundings. The omnibus test "
            "(Conradsen et al. 2016) compares all dates at once with a known false-alarm rate "
            "(SIGNIFICANCE) for single-pol intensities, dual-pol intensities or the dual-pol "
            "covariance C2, and dates the first change of each pixel; the log-ratio methods "
            "threshold the standardised log-ratio automatically (Kittler-Illingworth or Otsu); "
            "the learned detector (after MTDN) maps the probability of change between dual-pol or "
            "single-pol dates (a model for each); "
            "the unsupervised detector trains a small network on the pair itself from the clear cases "
            "of a log-ratio pre-classification and maps the probability of change. "
            "Outputs keep the inputs' grid and georeference. Pixels that are nodata or exactly zero on "
            "any date are nodata in every output; NaN is refused unless declared as nodata."
        )

    def initAlgorithm(self, config=None) -> None:
        self.add_dates_parameters(
            "",
            "What each date's bands are: 0 = single-pol (one band); 1 = dual-pol intensities "
            "(band 1 VV, band 2 VH), tested as the diagonal of C2 (two independent Wishart "
            "blocks); 2 = dual-pol covariance C2 (C11, C22, Re C12, Im C12, linear power), tested "
            "as a full 2 x 2 complex Wishart matrix.",
            "Units of the single-pol or dual-pol intensity bands: intensity (power), amplitude "
            "(its square root) or dB. Left empty, detected from band descriptions, values (dB: "
            "many negatives spread symmetrically; a few small negatives in linear data are the "
            "noise floor, read as 0) and storage type (integer bands are taken as amplitude DN); "
            "intensity is assumed when it cannot be told, and the log says why. C2 bands must "
            "be linear.",
        )
        self.addParameter(with_help(
            QgsProcessingParameterNumber("LOOKS", "Number of looks (ENL), all dates",
                                         QgsProcessingParameterNumber.Double, optional=True, minValue=0.1),
            "Equivalent number of looks of every date (1 for single-look data, about 4.4 for "
            "Sentinel-1 IW GRDH). Left empty, estimated for each date separately from the image; "
            "LOOKS_PER_DATE overrides it when dates differ.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterString("LOOKS_PER_DATE", "Number of looks per date", optional=True),
            "Comma-separated looks, one per date in INPUTS order (e.g. '4, 1' when date 1 is "
            "4-look and date 2 single-look). Overrides LOOKS.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "METHOD", "Method", options=[CHANGE_METHOD_LABELS[m] for m in METHODS],
                defaultValue=METHODS.index(DEFAULT_CHANGE_METHOD),
            ),
            "How changes are found: " + "; ".join(
                f"{index} = {label}" for index, label in enumerate(CHANGE_METHOD_LABELS.values())
            ) + ". Automatic (the default): the learned detector for dual-pol dates of 1-8 looks "
            "(what it was trained on), else the unsupervised detector on dates PREFILTER despeckled; "
            "the log names the choice. The omnibus test controls false alarms through SIGNIFICANCE and gives "
            "first change dates; the log-ratio methods pick their threshold from the image "
            "histogram; the learned detector is a network trained on synthetic changes in speckled "
            "pairs (and, for dual-pol dates, labelled Sentinel-1 pairs), one model for dual-pol and "
            "one for single-pol dates, and maps the probability of change; "
            "the unsupervised detector needs no labels: it trains a small network (seconds on a CPU) "
            "on the pixels a log-ratio pre-classification is sure of, then maps every pixel.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterFile("MODEL", "Change model card (learned method)", extension="json",
                                       optional=True),
            "For the learned method: a change-detector model card (.json beside its weights) "
            "exported by `python -m training export` from a run in change mode, for dates of the "
            "Band layout (single-pol or dual-pol); empty = the shipped detector of that layout "
            "(change_single for single-pol, change_default for dual-pol and C2). Its weights are "
            "checked against the card's sha256 before loading.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber("SIGNIFICANCE", "Significance level (omnibus test)",
                                         QgsProcessingParameterNumber.Double, defaultValue=0.01,
                                         minValue=1e-12, maxValue=0.5),
            "Probability of flagging an unchanged pixel (false-alarm rate) of the omnibus test: a "
            "pixel is changed when its p-value is below it. Smaller values give fewer, surer "
            "changes. For the log-ratio methods and the unsupervised detector it is the noise floor: "
            "their automatic threshold never falls below the change index that unchanged pixels pass "
            "this often (their spread measured on the image), so a pair without change stays quiet.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber("WINDOW", "Averaging window (pixels, odd)",
                                         QgsProcessingParameterNumber.Integer, defaultValue=1,
                                         minValue=1, maxValue=51),
            "Side of a boxcar that averages each date's covariance before the test (1 = none). "
            "It raises the looks (the test then uses looks x window^2, reduced for correlated "
            "speckle as measured on the image) and so detects weaker changes, at the cost of "
            "blurring their outlines. Needed for single-look C2.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("PREFILTER", "Handle speckle before deciding", defaultValue=True),
            "On (default): speckle is reduced before the decision. For the log-ratio methods and the "
            "unsupervised detector the plugin's automatic despeckling chooses one despeckler for the "
            "most demanding date (the network whose model card fits its looks and speckle "
            "correlation, else the best classical filter for them) and each date goes through it on "
            "its own, at its own number of looks, so a 4-look and a single-look date are each "
            "treated for what they are, with the same resolution. For the omnibus test and C2 "
            "it is a boxcar (when WINDOW is 1) just large enough to give every date 9 looks, which "
            "the test accounts for. The learned detector reads speckled dates and ignores it. Off: "
            "the decision is made pixel by pixel on the dates as given.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber("MIN_AREA", "Minimum region size (pixels)",
                                         QgsProcessingParameterNumber.Integer, optional=True, minValue=0),
            "Changed and unchanged regions (4-connected) smaller than this many pixels are merged "
            "into their surroundings in the mask, the dates and the polygons (GDAL sieve): a "
            "minimum mapping unit. Empty (default): measured on the image, four times the area over "
            "which the log-ratio's error is correlated (about the resolution cell, or the prefilter's "
            "footprint; typically 10-130 pixels), the smallest region that holds four independent "
            "samples; the log gives it. 0 keeps every pixel's own decision.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("REFINE_BOUNDARIES", "Refine region outlines (half-contrast rule)",
                                          defaultValue=False),
            "After MIN_AREA, the pixels just outside each changed region join it where their own "
            "log-ratio lies past half the contrast between the region and its unchanged surroundings "
            "(both measured over 7 x 7 pixels away from the outline). The prefilter and the "
            "detector's window read both sides near an outline and shrink regions by about a pixel "
            "where the change is weak against the speckle; this puts that ring back. Off by default: "
            "on the benchmark pairs it recovered Yellow River's missed ring (kappa 0.895 to 0.923) "
            "but cost San Francisco and Sulzberger, whose reference outlines are drawn tighter "
            "(0.915 to 0.906, 0.944 to 0.940). The change map is not altered.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("NORMALISE", "Normalise radiometry to the first date",
                                          defaultValue=False),
            "Scale every later date so that its median log-ratio to date 1 is zero. For "
            "uncalibrated or differently processed products only: calibrated data need none, and "
            "it hides changes that affect more than half of the image.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("ZEROS_AS_NODATA", "Treat exact zeros as nodata", defaultValue=True),
            "Sentinel-1 products mark swath borders with exact zeros, often without a nodata tag. "
            "On: zeros that form the border fill (runs of 32 or more zeros along a row or column, "
            "or zeros reaching the image edge or nodata) are nodata, on every date; isolated zeros "
            "inside the scene, and all zeros of 8-bit bands (their darkest grey level), are dark "
            "data. The log says how many pixels each rule took. Off: every zero is data.",
            advanced=True,
        ))
        self.add_device_parameter()
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("CHANGE_MAP", "Change map (p-value or probability)",
                                                    optional=True, createByDefault=True),
            "Float32 for every pixel, nodata -1: the p-value of 'no change' (small = change) of "
            "the omnibus test, or for the log-ratio methods a chi-square approximation of it; "
            "for the learned method the probability of change (large = change).",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("CHANGE_MASK", "Change mask", optional=True,
                                                    createByDefault=True),
            "Uint8 mask: 1 changed, 0 unchanged, 255 nodata; at SIGNIFICANCE for the omnibus test, "
            "at the automatic threshold for the log-ratio methods, at probability 0.5 for the "
            "learned method.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("CHANGE_DATE", "First change date", optional=True,
                                                    createByDefault=False),
            "Uint8: for each changed pixel the position in INPUTS (2 = second date, ...) of the "
            "first date after its first change; 0 unchanged, 255 nodata. Most useful with more "
            "than two dates.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterVectorDestination("CHANGE_POLYGONS", "Change polygons",
                                                    QgsProcessing.TypeVectorPolygon, optional=True,
                                                    createByDefault=False),
            "The changed regions as polygons (GeoPackage, Shapefile or GeoJSON) with their area "
            "(field 'area', square CRS units; m^2 for geographic CRSs) and, with more than two "
            "dates, their first change date (field 'date').",
        ))

    def parameter_problem(self, parameters, context):
        problem = self.dates_problem(parameters, context, "Change detection needs")
        if problem:
            return problem
        layers = self.parameterAsLayerList(parameters, "INPUTS", context)
        try:
            looks = parse_looks(self.parameterAsString(parameters, "LOOKS_PER_DATE", context))
        except SarDespeckleError as error:
            return str(error)
        if looks is not None and len(looks) != len(layers):
            return f"LOOKS_PER_DATE has {len(looks)} value(s) but INPUTS has {len(layers)} dates."
        if not any(is_given(parameters, name) for name in OUTPUTS):
            return "Choose at least one output: CHANGE_MAP, CHANGE_MASK, CHANGE_DATE or CHANGE_POLYGONS."
        return model_card_problem(self.parameterAsFile(parameters, "MODEL", context))

    def processAlgorithm(self, parameters, context, feedback):
        with torch_required():
            from ..core.change.pipeline import detect_changes

        layers = self.parameterAsLayerList(parameters, "INPUTS", context)
        sources = [layer.source() for layer in layers]
        settings = settings_from_parameters(self.parameter_values(parameters, context, PARAMETERS))
        paths = {
            name: (self.parameterAsOutputLayer(parameters, name, context) or None)
            if is_given(parameters, name) else None
            for name in OUTPUTS
        }
        outputs = ChangeOutputs(
            change_map=paths["CHANGE_MAP"], change_mask=paths["CHANGE_MASK"],
            change_date=paths["CHANGE_DATE"], change_polygons=paths["CHANGE_POLYGONS"],
        )
        report = self.run_core(detect_changes, sources, outputs, settings, self.core_feedback(feedback))
        feedback.pushInfo(f"Changed: {100 * report.changed_fraction:.2f} % of the valid pixels.")
        self.style_outputs(context, paths, f"{layers[0].name()} … {layers[-1].name()}", report.detector["name"],
                           len(layers))
        return {name: path for name, path in paths.items() if path}

    @staticmethod
    def style_outputs(context, paths: dict, dates_name: str, method: str, dates: int) -> None:
        """Name and style the outputs QGIS loads (see ``styles``); ``method``: the one that ran."""
        probability = method in PROBABILITY_METHODS
        appearance = {
            "CHANGE_MAP": ("change probability" if probability else "change p-value",
                           styles.probability if probability else styles.p_value),
            "CHANGE_MASK": ("change mask", styles.change_mask),
            "CHANGE_DATE": ("first change date", styles.first_change_date(dates)),
            "CHANGE_POLYGONS": ("change polygons", styles.change_polygons),
        }
        for name, path in paths.items():
            if path:
                what, style = appearance[name]
                styles.style_on_load(context, path, styles.layer_name(dates_name, method, what), style)
