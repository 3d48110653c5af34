"""``sar_despeckle:decorrelate``: blind speckle decorrelation of complex SLC images."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.choices import DECORRELATION_LAYOUT_LABELS, RESAMPLE_MODE_LABELS
from ..core.decorrelation.parameters import PARAMETERS, settings_from_parameters
from ..core.decorrelation.settings import DEFAULT_POINT_TARGET_FACTOR, DecorrelationOutputs
from . import styles
from .base import SarAlgorithm, torch_required, with_help

class DecorrelateAlgorithm(SarAlgorithm):
    """Whitens the speckle of single-look complex images (Lapini et al. 2014)."""

    group_key = "complex_slc"
    search_tags = ("slc", "single look complex", "complex", "decorrelate", "decorrelation", "whitening",
                   "spectral whitening", "spectrum", "doppler", "oversampling", "speckle2void",
                   "blind spot", "lapini", "intensity", "despeckle")

    def name(self) -> str:
        return "decorrelate"

    def displayName(self) -> str:
        return "Decorrelate SLC speckle (spectral whitening)"

    def summary(self) -> str:
        return (
            "Makes the speckle of a single-look complex (SLC) image spatially white, as blind-spot "
            "despeckling networks (Speckle2Void) need. New to it? Choose the SLC and keep the "
            "defaults: the Decorrelated intensity output is ready for Despeckle SAR image, and the "
            "report shows how far the neighbour correlation fell. Tick Resample to remove the "
            "oversampling correlation too (the output is then smaller)."
        )

    def details(self) -> str:
        return (
            "The method is the blind one of Lapini et al. (IEEE TGRS 2014): point targets are "
            "set aside, the spectral centroid (Doppler) and the system response of azimuth (rows) "
            "and range (columns) are estimated from the "
            "averaged periodogram, and each axis is whitened in band, out-of-band frequencies "
            "zeroed. Whitening alone leaves the oversampling correlation; Resample removes it "
            "too. The output keeps the band layout, georeference (scaled when resampling), nodata "
            "and band descriptions; point targets keep their exact values when not resampling. "
            "The report (JSON) gives the estimated centroids, cut-offs, point-target count and "
            "lag-1/lag-2 correlations before and after; a PNG of the spectra and a page of both, "
            "shown in the Results Viewer, go beside it."
        )

    def initAlgorithm(self, config=None) -> None:
        self.addParameter(with_help(
            QgsProcessingParameterRasterLayer("INPUT", "Input SLC raster"),
            "A single-look complex image, rows along azimuth and columns along range: complex "
            "bands (CInt16, CFloat32, e.g. a Sentinel-1 SLC measurement file or an HDF5 "
            "subdataset), or real bands holding I and Q (set Band layout). Any size: large "
            "images are processed in strips.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "BAND_LAYOUT", "Band layout", options=list(DECORRELATION_LAYOUT_LABELS.values()), defaultValue=0
            ),
            "How the complex values are stored: 0 = automatic (complex bands; real bands are "
            "refused, as they could be anything), 1 = complex bands, each a channel, 2 = pairs "
            "of real bands I, Q, I, Q, ... (e.g. VH re, VH im, VV re, VV im), each pair a "
            "channel. Every channel is decorrelated with its own estimate; the output has the "
            "same layout.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber(
                "POINT_TARGET_FACTOR", "Point-target factor (x median intensity)",
                QgsProcessingParameterNumber.Double, defaultValue=DEFAULT_POINT_TARGET_FACTOR,
                minValue=0.0, maxValue=1e6,
            ),
            "cf: pixels whose intensity is at least cf times the median intensity are point "
            "targets; they are replaced by speckle-like noise for the estimation and the "
            "filtering, and get their original values back in the output. 30 suits the "
            "sensors tested (TerraSAR-X, Envisat, Sentinel-1 TOPS, UAVSAR); lower values flag "
            "whole bright areas, higher ones let bright targets into the estimate. 0 turns "
            "point-target handling off.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("RESAMPLE", "Resample to remove oversampling", defaultValue=False),
            "Whitening flattens the spectrum in band but the empty part of an oversampled "
            "spectrum still correlates neighbours (|lag-1| about 0.2-0.4). On: each axis is "
            "also resampled to its bandwidth (the output is smaller, its pixel size and "
            "georeference scaled accordingly), which removes that too; point targets are then "
            "whitened like the rest.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterEnum(
                "RESAMPLE_MODE", "Resampling mode", options=list(RESAMPLE_MODE_LABELS.values()),
                defaultValue=0,
            ),
            "With Resample: 0 = spectral (crop each axis's spectrum to its band: N x bandwidth "
            "samples, exact band-limited resampling), 1 = integer (low-pass to 1/d and keep "
            "every d-th sample, d = round(1 / bandwidth); the grid stays aligned with the "
            "input's, at the cost of some residual correlation or bandwidth).",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("RESTORE_CENTROID", "Restore the spectral centroid", defaultValue=True),
            "On: after whitening, each axis's spectrum is shifted back to its centroid, so the "
            "phase history (e.g. for interferometry) is kept. Off: the output stays "
            "demodulated to zero centroid; point targets, put back unchanged, then keep their "
            "original phase.",
            advanced=True,
        ))
        self.addParameter(with_help(
            QgsProcessingParameterNumber(
                "ESTIMATION_WINDOW", "Estimation window (pixels, 0 = whole image)",
                QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0,
            ),
            "0: one estimate of the spectra over the whole image (large images are sampled in "
            "blocks spread over the scene), the most stable choice. N >= 128: the image is "
            "whitened in windows of N x N pixels (overlapping, blended), each with its own "
            "estimate, for scenes whose spectra change (Doppler varying along the swath). "
            "Not with Resample.",
            advanced=True,
        ))
        for axis, doppler in (("AZIMUTH", "Doppler centroid / PRF"), ("RANGE", "range spectral shift")):
            self.addParameter(with_help(
                QgsProcessingParameterNumber(
                    f"{axis}_CENTROID", f"{axis.title()} centroid (cycles/pixel, empty = estimate)",
                    QgsProcessingParameterNumber.Double, optional=True, minValue=-0.5, maxValue=0.5,
                ),
                f"Overrides the estimated {axis.lower()} spectral centroid ({doppler}, in "
                "[-0.5, 0.5]); given, it is a constant (no drift). Empty: estimated from the "
                "phase of the lag-1 correlation, with drift and slope, and refined to the "
                "middle of the band.",
                advanced=True,
            ))
            self.addParameter(with_help(
                QgsProcessingParameterNumber(
                    f"{axis}_BANDWIDTH", f"{axis.title()} bandwidth (fraction of sampling rate, empty = estimate)",
                    QgsProcessingParameterNumber.Double, optional=True, minValue=0.05, maxValue=1.0,
                ),
                f"Overrides the estimated {axis.lower()} bandwidth, as a fraction of the sampling "
                "rate (processed azimuth bandwidth / PRF; range bandwidth / range sampling "
                "rate). The cut-offs are centroid -/+ bandwidth / 2. Empty: where the "
                "averaged periodogram falls to its floor.",
                advanced=True,
            ))
        self.addParameter(with_help(
            QgsProcessingParameterBoolean("ZEROS_AS_NODATA", "Treat exact zeros as nodata", defaultValue=True),
            "Pixels exactly 0 + 0i (swath borders, unfocused margins) are nodata: they stay out "
            "of every estimate and are 0 (or the input's nodata value) in the output. The input's "
            "nodata value always is; NaN is refused unless it is the declared nodata value.",
            advanced=True,
        ))
        self.add_device_parameter()
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination("OUTPUT", "Decorrelated SLC"),
            "The decorrelated complex image (GeoTIFF): CFloat32 bands for complex input, "
            "float32 I/Q pairs for I/Q input; the input's size unless Resample is on.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_INTENSITY", "Decorrelated intensity", optional=True, createByDefault=True
            ),
            "Optional: the intensity |z|^2 of the decorrelated image (float32, one band per "
            "channel), e.g. as input to Despeckle or to train a blind-spot network.",
        ))
        self.addParameter(with_help(
            QgsProcessingParameterFileDestination(
                "REPORT", "Report (JSON)", fileFilter="JSON files (*.json)", optional=True,
                createByDefault=True,
            ),
            "The run's report: per channel the estimated centroids (with drift and slope), "
            "cut-offs and bandwidths, fitted responses, point-target count, and |lag-1| and "
            "|lag-2| complex correlation per axis before and after. A PNG of the average "
            "azimuth and range spectra before and after, with the fit and cut-offs, is written "
            "beside it (same name, .png), and a page of both (.html) that opens in the Results "
            "Viewer.",
        ))
        self.addOutput(QgsProcessingOutputHtml("REPORT_HTML", "Decorrelation report"))
        self.addOutput(QgsProcessingOutputFile("SPECTRA_PNG", "Spectra picture (PNG)"))
        self.addOutput(QgsProcessingOutputNumber("POINT_TARGETS", "Point targets (first channel)"))
        self.addOutput(QgsProcessingOutputNumber("AZIMUTH_LAG1_AFTER", "|lag-1| azimuth after (first channel)"))
        self.addOutput(QgsProcessingOutputNumber("RANGE_LAG1_AFTER", "|lag-1| range after (first channel)"))

    def parameter_problem(self, parameters, context):
        if self.parameterAsRasterLayer(parameters, "INPUT", context) is None:
            raw = parameters.get("INPUT")
            return self.input_path_problem(str(raw)) or f"Cannot open input raster '{raw}'."
        window = self.parameterAsInt(parameters, "ESTIMATION_WINDOW", context)
        if window and self.parameterAsBoolean(parameters, "RESAMPLE", context):
            return ("RESAMPLE needs one estimate for the whole image: set ESTIMATION_WINDOW to 0, "
                    "or turn RESAMPLE off.")
        return None

    def processAlgorithm(self, parameters, context, feedback):
        with torch_required():
            from ..core.decorrelation.pipeline import decorrelate_raster

        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        settings = settings_from_parameters(self.parameter_values(parameters, context, PARAMETERS))
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        intensity = self.parameterAsOutputLayer(parameters, "OUTPUT_INTENSITY", context) or None
        report_path = self.parameterAsFileOutput(parameters, "REPORT", context) or None
        report = self.run_core(
            decorrelate_raster, layer.source(), DecorrelationOutputs(output, intensity, report_path),
            settings, self.core_feedback(feedback),
        )
        first = report["channels"][0]
        results = {
            "OUTPUT": output,
            "REPORT": report_path,
            "REPORT_HTML": report.get("html"),
            "SPECTRA_PNG": report.get("spectra_png"),
            "POINT_TARGETS": first["point_targets"],
            "AZIMUTH_LAG1_AFTER": first["correlation_after"]["azimuth"]["lag1"],
            "RANGE_LAG1_AFTER": first["correlation_after"]["range"]["lag1"],
        }
        styles.style_on_load(context, output, styles.layer_name(layer.name(), "decorrelated"), None)
        if intensity:
            styles.style_on_load(context, intensity, styles.layer_name(layer.name(), "decorrelated intensity"),
                                 styles.backscatter)
            results["OUTPUT_INTENSITY"] = intensity
        return results
