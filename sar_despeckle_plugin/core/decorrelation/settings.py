"""What a decorrelation run is asked to do (:class:`DecorrelationSettings`) and where it writes
(:class:`DecorrelationOutputs`), the checks, and the constants of the method. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..choices import DECORRELATION_LAYOUT_LABELS, RESAMPLE_MODE_LABELS
from ..errors import SarDespeckleError

AXES = ("azimuth", "range")
LAYOUTS = tuple(DECORRELATION_LAYOUT_LABELS)
RESAMPLE_MODES = tuple(RESAMPLE_MODE_LABELS)

#: Default point-target factor cf: pixels with intensity >= cf x median are point targets.
#: For fully developed single-look speckle P(I >= cf x median) = 2**-cf, so speckle alone
#: practically never reaches 30; what does are genuine bright scatterers.
DEFAULT_POINT_TARGET_FACTOR = 30.0

#: cf per sensor, from the residual |lag-1| after decorrelation with resampling on the real
#: crops of the benchmark for cf = 10, 16, 30, 60 (scripts/bench_decorrelation.py). Too low a
#: factor flags whole bright areas (fields, a ship's sidelobes), whose white replacement noise
#: leaves correlation behind; too high a one lets bright targets into the estimate.
POINT_TARGET_FACTORS = {
    "TerraSAR-X / TanDEM-X stripmap (X-band, urban)": 30.0,  # 10-60 all below 0.035
    "Envisat ASAR, ERS (C-band stripmap)": 30.0,  # 10-60 all below 0.025
    "Sentinel-1 IW TOPS (C-band; sea with ships)": 30.0,  # 10 leaves 0.06 around a large ship
    "UAVSAR, ALOS PALSAR (L-band, agricultural)": 30.0,  # 10 flags bright fields: 0.11 in range
}

#: Smallest image side we accept (pixels): below it no spectrum can be estimated.
MIN_SIDE = 32
#: Longest Welch segment (pixels) along each axis; shorter images use their whole length.
DEFAULT_SEGMENT = 256
#: Fewest fully valid segments per axis for a usable spectrum estimate.
MIN_SEGMENTS = 8
#: Side (pixels) of the cells in which lag-1 products are summed to fit the centroid plane.
CENTROID_CELL = 32
#: A centroid drift or slope is used only when it moves the centroid by more than this
#: (cycles/pixel) across the image; below, it is estimation noise.
CENTROID_VARIATION_MIN = 0.05
#: Half side of the window giving the local power of replaced point targets (pixels).
LOCAL_POWER_RADIUS = 4
#: Largest whitening gain, relative to the RMS in-band response (dB).
MAX_GAIN_DB = 30.0
#: Band edge threshold: the fraction of the in-band-to-floor dB range above the floor.
EDGE_FRACTION = 0.2
#: No band edge is sought when the spectrum's dynamic range is below this (dB).
MIN_BAND_CONTRAST_DB = 6.0
#: Each segment's periodogram counts with the weight min(power / mean power, this cap): the
#: averaged periodogram is power-weighted (the classical estimate, which the power-weighted
#: correlations also follow), but no bright area that is not a point target (a ship's
#: surroundings, a town) weighs more than a few ordinary ones, and dark, noise-dominated areas
#: (water at L-band) weigh little.
SEGMENT_WEIGHT_CAP = 1.0
#: Pixels (per channel) read for the spectrum estimate on large images.
MAX_ESTIMATION_PIXELS = 16_000_000
#: Pixels (per channel) of the output read back for the after-correlations and spectra.
MEASURE_PIXELS = 4_000_000
#: Bytes of working memory a processing strip may use.
STRIP_BUDGET = 192 * 2 ** 20
#: Images whose intermediate result fits in this many bytes keep it in memory.
IN_MEMORY_LIMIT = 512 * 2 ** 20


@dataclass(frozen=True)
class DecorrelationSettings:
    """What the user chose; ``None`` means "estimate it from the data".

    Attributes:
        layout: ``complex`` (complex bands, each a channel), ``iq`` (pairs of real bands: I, Q,
            I, Q, ...) or ``auto`` (complex bands; real bands are refused as ambiguous).
        point_target_factor: cf; pixels with intensity >= cf x median intensity are point
            targets (0 turns point-target handling off).
        resample: also remove the oversampling correlation by resampling each axis.
        resample_mode: ``spectral`` (crop the spectrum to the band: N x bandwidth samples) or
            ``integer`` (keep every d-th sample, d = round(1 / bandwidth), the band narrowed to
            1 / d where needed).
        restore_centroid: shift the spectrum back to its centroid after whitening (keeps the
            phase history; off leaves the output demodulated to zero centroid).
        estimation_window: 0 estimates the spectra over the whole image; N > 0 whitens windows
            of N x N pixels each with its own estimate (no resampling then).
        segment: longest Welch segment (pixels) of the periodograms.
        azimuth_centroid, range_centroid: manual centroid (cycles/pixel) replacing the
            estimate (a constant: no drift or slope).
        azimuth_bandwidth, range_bandwidth: manual bandwidth (fraction of the sampling rate,
            (0, 1]); the cut-offs are centroid -/+ bandwidth / 2.
        zeros_as_nodata: exact zeros (swath borders) are nodata.
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: seed of the noise replacing point targets (the output is reproducible).
        strip: pixels per processing strip (rows or columns); chosen from the memory budget
            when ``None`` (tests set it small to exercise the block path).
    """

    layout: str = "auto"
    point_target_factor: float = DEFAULT_POINT_TARGET_FACTOR
    resample: bool = False
    resample_mode: str = "spectral"
    restore_centroid: bool = True
    estimation_window: int = 0
    segment: int = DEFAULT_SEGMENT
    azimuth_centroid: float | None = None
    azimuth_bandwidth: float | None = None
    range_centroid: float | None = None
    range_bandwidth: float | None = None
    zeros_as_nodata: bool = True
    device: str = "auto"
    seed: int = 0
    strip: int | None = None

    def manual(self, axis: int) -> tuple[float | None, float | None]:
        if axis == 0:
            return self.azimuth_centroid, self.azimuth_bandwidth
        return self.range_centroid, self.range_bandwidth


@dataclass(frozen=True)
class DecorrelationOutputs:
    """Destinations; None skips an optional output.

    Attributes:
        output: the decorrelated image, GeoTIFF (complex bands as CFloat32, I/Q pairs as float32).
        intensity: its intensity |z|^2, GeoTIFF (float32, one band per channel).
        report: the JSON report; a PNG of the spectra goes beside it (same name, ``.png``).
    """

    output: str
    intensity: str | None = None
    report: str | None = None


def check_settings(settings: DecorrelationSettings) -> None:
    """Refuse settings no image could make sense of, with the parameter's name."""
    if settings.layout not in LAYOUTS:
        raise SarDespeckleError(f"Band layout must be one of {', '.join(LAYOUTS)}; got {settings.layout!r}.")
    if settings.resample_mode not in RESAMPLE_MODES:
        raise SarDespeckleError(
            f"Resampling mode must be one of {', '.join(RESAMPLE_MODES)}; got {settings.resample_mode!r}."
        )
    if not (settings.point_target_factor == 0 or settings.point_target_factor >= 1):
        raise SarDespeckleError(
            "POINT_TARGET_FACTOR must be 0 (no point-target handling) or at least 1 (times the "
            f"median intensity); got {settings.point_target_factor}."
        )
    for name, value in (("AZIMUTH_CENTROID", settings.azimuth_centroid),
                        ("RANGE_CENTROID", settings.range_centroid)):
        if value is not None and not -0.5 <= value <= 0.5:
            raise SarDespeckleError(
                f"{name} is in cycles per pixel (Doppler centroid / PRF in azimuth) and must lie "
                f"in [-0.5, 0.5]; got {value}."
            )
    for name, value in (("AZIMUTH_BANDWIDTH", settings.azimuth_bandwidth),
                        ("RANGE_BANDWIDTH", settings.range_bandwidth)):
        if value is not None and not 0.05 <= value <= 1.0:
            raise SarDespeckleError(
                f"{name} is a fraction of the sampling rate (processed bandwidth / PRF in "
                f"azimuth, range bandwidth / range sampling rate) in [0.05, 1]; got {value}."
            )
    if settings.estimation_window and settings.estimation_window < 4 * MIN_SIDE:
        raise SarDespeckleError(
            f"ESTIMATION_WINDOW must be 0 (whole image) or at least {4 * MIN_SIDE} pixels for a "
            f"stable spectrum; got {settings.estimation_window}."
        )
    if settings.estimation_window and settings.resample:
        raise SarDespeckleError(
            "RESAMPLE needs one spectrum estimate for the whole image (ESTIMATION_WINDOW = 0): "
            "windows with their own bandwidths cannot share one output grid."
        )
    if settings.segment < MIN_SIDE:
        raise SarDespeckleError(f"The segment length must be at least {MIN_SIDE}; got {settings.segment}.")
