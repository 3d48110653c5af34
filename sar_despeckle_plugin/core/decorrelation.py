"""Blind speckle decorrelation of complex SLC images (Lapini et al., IEEE TGRS 2014).

Single-look complex images are not spatially white: the processor's spectral weighting
(Hamming, Kaiser, the antenna pattern in azimuth) shapes the spectrum and oversampling leaves
part of it empty, so neighbouring pixels are correlated (|lag-1| about 0.5-0.6). Blind-spot
networks such as Speckle2Void need white speckle. Following Lapini et al. (2014), separately
for azimuth (rows, axis 0) and range (columns, axis 1):

1. point targets (intensity >= cf x median) are replaced by complex Gaussian noise of the local
   power, so that deterministic scatterers neither bias the spectra nor ring after whitening;
2. the spectral centroid (Doppler centroid in azimuth) is estimated from the phase of the
   lag-1 correlation, as a plane: a constant, a drift along the axis (TOPS azimuth spectra
   sweep through the band) and a slope across it (Doppler varying with range); the signal is
   demodulated by it;
3. the averaged periodogram of the demodulated signal (Hann-windowed segments with 50 %
   overlap, weighted by their power up to the typical speckle power, less the share of
   replaced point targets) gives the system response: the band edges are where the spectrum
   steps down to its floor, the centroid is refined to the band's middle, and the amplitude
   response is fitted in band by a smooth Chebyshev series;
4. each line is whitened by 1/response in band, out-of-band frequencies set to zero, with a
   gain that keeps the mean intensity; optionally the spectrum is cropped to the band
   (``spectral`` resampling) or the line subsampled by an integer factor, which removes the
   oversampling correlation that whitening alone leaves;
5. the centroid is restored (when asked) and the original point-target values are put back,
   bit-identical (without resampling).

The filters are separable, so large images go in two passes with whole-line FFTs (rows, then
columns), each holding one strip in memory, exactly as if the whole image were transformed at
once. With ``estimation_window`` > 0 the image is instead cut into windows, each whitened with
its own estimate (for products whose spectra change across the scene), through the tiling
engine (no resampling then).

Layouts: complex arrays are (channels, rows, cols); frequencies are in cycles per pixel, in
[-0.5, 0.5).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import chebyshev
from osgeo import gdal

from .device import resolve_device
from .errors import Cancelled, SarDespeckleError
from .feedback import Feedback
from .raster import RasterInfo, RasterReader, RasterWriter, bounded_gdal_cache, raster_info
from .speckle import sample_windows
from .tiling import TilingOptions, run_tiled
from .version import plugin_version

AXES = ("azimuth", "range")
LAYOUTS = ("auto", "complex", "iq")
RESAMPLE_MODES = ("spectral", "integer")

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


# --------------------------------------------------------------------------------------------
# Complex sources and sinks


class ComplexSource:
    """Complex channels of a raster: complex bands, or I/Q pairs of real bands.

    ``read`` returns complex64 (channels, rows, cols) and validity, with the reader's padding
    semantics (outside the image: 0, invalid); exact zeros are invalid with ``zeros_as_nodata``.
    """

    def __init__(self, path: str, layout: str = "auto", zeros_as_nodata: bool = True) -> None:
        info = raster_info(path)
        complex_bands = [gdal.DataTypeIsComplex(gdal.GetDataTypeByName(t)) for t in info.data_types]
        types = ", ".join(sorted(set(info.data_types)))
        if any(complex_bands) and not all(complex_bands):
            raise SarDespeckleError(
                f"'{path}' mixes complex and real bands ({types}): give only the complex bands "
                "(for example with GDAL Translate and -b)."
            )
        if layout in ("auto", "complex"):
            if not all(complex_bands):
                hint = (" It has an even number of bands: if they hold I and Q (real and "
                        "imaginary parts), set the band layout to I/Q pairs."
                        if info.band_count % 2 == 0 else "")
                raise SarDespeckleError(
                    f"'{path}' is real-valued ({types}, {info.band_count} band(s)), but "
                    f"decorrelation needs complex SLC data (CInt16, CFloat32, ...).{hint}"
                )
            layout = "complex"
        elif layout == "iq":
            if all(complex_bands):
                raise SarDespeckleError(
                    f"'{path}' has complex bands ({types}): set the band layout to complex bands, "
                    "not I/Q pairs."
                )
            if info.band_count % 2:
                raise SarDespeckleError(
                    f"The I/Q band layout needs an even number of bands (I, Q, I, Q, ...), but "
                    f"'{path}' has {info.band_count}. Give the I and Q bands of each channel."
                )
        else:
            raise SarDespeckleError(f"Unknown band layout {layout!r}; expected one of {LAYOUTS}.")
        self.info = info
        self.layout = layout
        self.zeros_as_nodata = zeros_as_nodata
        self.reader = RasterReader(path, complex_values=(layout == "complex"))
        self.channels = info.band_count if layout == "complex" else info.band_count // 2
        self.height, self.width = info.height, info.width

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        values, valid = self.reader.read(row, col, height, width)
        if self.layout == "iq":
            values = (values[0::2] + 1j * values[1::2]).astype(np.complex64)
            valid = valid[0::2] & valid[1::2]
        if self.zeros_as_nodata:
            valid &= values != 0
        return np.where(valid, values, 0).astype(np.complex64), valid

    def descriptions(self) -> list[str]:
        return list(self.info.descriptions)

    def nodata(self) -> float | None:
        return self.info.nodata[0]


class ArraySource:
    """The ComplexSource interface over complex arrays in memory (channels, rows, cols)."""

    layout = "complex"

    def __init__(self, values: np.ndarray, valid: np.ndarray | None = None,
                 zeros_as_nodata: bool = True) -> None:
        values = np.asarray(values)
        if values.ndim == 2:
            values = values[None]
        if values.ndim != 3 or not np.iscomplexobj(values):
            raise SarDespeckleError("Give a complex array of layout (rows, cols) or (channels, rows, cols).")
        ok = np.ones(values.shape, bool) if valid is None else np.broadcast_to(valid, values.shape).copy()
        if not np.isfinite(values[ok]).all():
            raise SarDespeckleError("The complex array holds NaN or infinite values where it is "
                                    "valid: mark them invalid with ``valid``.")
        if zeros_as_nodata:
            ok &= values != 0
        self.values = np.where(ok, values, 0).astype(np.complex64)
        self.valid = ok
        self.channels, self.height, self.width = values.shape

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return _padded_read(self.values, self.valid, row, col, height, width)


def _padded_read(values: np.ndarray, valid: np.ndarray | None, row: int, col: int, height: int,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """A window of (channels, rows, cols) arrays; outside them: 0 and invalid."""
    channels, rows, cols = values.shape
    out = np.zeros((channels, height, width), np.complex64)
    ok = np.zeros(out.shape, bool)
    r0, r1 = max(row, 0), min(row + height, rows)
    c0, c1 = max(col, 0), min(col + width, cols)
    if r0 < r1 and c0 < c1:
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = values[:, r0:r1, c0:c1]
        ok[:, r0 - row:r1 - row, c0 - col:c1 - col] = True if valid is None else valid[:, r0:r1, c0:c1]
    return out, ok


class ArraySink:
    """Collects written complex blocks into an in-memory array."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.values = np.zeros((channels, height, width), np.complex64)

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        self.values[:, row:row + values.shape[1], col:col + values.shape[2]] = values

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return _padded_read(self.values, None, row, col, height, width)


class _RasterStore:
    """A temporary complex GeoTIFF for the intermediate result of large images."""

    def __init__(self, folder: str, channels: int, height: int, width: int) -> None:
        handle, self.path = tempfile.mkstemp(prefix=".decorrelate.", suffix=".partial.tif", dir=folder)
        os.close(handle)
        options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]
        self.dataset = gdal.GetDriverByName("GTiff").Create(
            self.path, width, height, channels, gdal.GDT_CFloat32, options
        )
        if self.dataset is None:
            raise SarDespeckleError(f"Cannot create the temporary file '{self.path}': is the disk full?")

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        for index in range(values.shape[0]):
            if self.dataset.GetRasterBand(index + 1).WriteArray(values[index], col, row) != 0:
                raise SarDespeckleError(f"Writing the temporary file '{self.path}' failed: is the disk full?")

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        block = np.stack([
            self.dataset.GetRasterBand(i + 1).ReadAsArray(col, row, width, height)
            for i in range(self.dataset.RasterCount)
        ]).astype(np.complex64)
        return block, np.ones(block.shape, bool)

    def close(self) -> None:
        self.dataset = None
        for leftover in (self.path, self.path + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)


# --------------------------------------------------------------------------------------------
# Point targets


def local_power(intensity: torch.Tensor, good: torch.Tensor, fallback: float) -> torch.Tensor:
    """Mean intensity of the good pixels in a (2r+1)^2 window around each pixel (2-D)."""
    side = 2 * LOCAL_POWER_RADIUS + 1
    pool = torch.nn.functional.avg_pool2d
    num = pool((intensity * good)[None, None], side, 1, LOCAL_POWER_RADIUS)[0, 0]
    den = pool(good.to(intensity.dtype)[None, None], side, 1, LOCAL_POWER_RADIUS)[0, 0]
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, fallback))


def replace_point_targets(z: torch.Tensor, valid: torch.Tensor, threshold: float, fallback: float,
                          origin: tuple[int, int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``z`` (rows, cols) with point targets replaced by complex Gaussian noise of the local
    power of the surrounding speckle, and invalid pixels set to 0; returns it and the mask.

    The noise at a pixel depends only on its image position (``origin`` is the image position
    of ``z[0, 0]``) and ``seed``, so the result does not depend on how the image is cut.
    """
    intensity = z.real ** 2 + z.imag ** 2
    targets = valid & (intensity >= threshold) if threshold > 0 else torch.zeros_like(valid)
    z = torch.where(valid, z, torch.zeros_like(z))
    if not bool(targets.any()):
        return z, targets
    power = local_power(intensity, valid & ~targets, fallback)
    rows, cols = torch.nonzero(targets, as_tuple=True)
    noise = position_noise(rows.cpu().numpy() + origin[0], cols.cpu().numpy() + origin[1], seed)
    noise = torch.from_numpy(noise).to(z.device) * torch.sqrt(power[rows, cols] / 2)
    z = z.clone()
    z[rows, cols] = noise.to(z.dtype)
    return z, targets


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash (SplitMix64 finaliser) of unsigned 64-bit integers."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def position_noise(rows: np.ndarray, cols: np.ndarray, seed: int = 0) -> np.ndarray:
    """Complex Gaussian noise (complex64, real and imaginary parts of variance 1) that is a
    fixed function of the pixel position and ``seed`` (counter-based: hash, then Box-Muller)."""
    key = (rows.astype(np.uint64) << np.uint64(32)) ^ cols.astype(np.uint64) ^ (np.uint64(seed) << np.uint64(58))
    first, second = _splitmix64(key * np.uint64(2)), _splitmix64(key * np.uint64(2) + np.uint64(1))
    u1 = ((first >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53
    u2 = (second >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
    radius = np.sqrt(-2.0 * np.log(u1))
    return (radius * np.exp(2j * np.pi * u2)).astype(np.complex64)


# --------------------------------------------------------------------------------------------
# Axis plans: what each axis's filter is


@dataclass
class AxisPlan:
    """The estimated (or given) spectrum of one axis and the whitening filter it implies.

    The centroid (cycles/pixel) at pixel (u, v), u along the axis and v across, both relative
    to the image centre, is ``centroid + drift * u + slope * v``. The band is centroid -/+
    bandwidth / 2; the amplitude response on it is the Chebyshev series ``coefficients`` in
    x = 2 (f - centroid) / bandwidth, scaled to unit RMS and held constant for |x| beyond
    ``fit_limit`` (the edge bins, left out of the fit); ``gain`` keeps the mean intensity.
    """

    axis: int
    length: int
    across: int
    centroid: float = 0.0
    drift: float = 0.0
    slope: float = 0.0
    power_centroid: float = 0.0
    bandwidth: float = 1.0
    coefficients: tuple = (1.0,)
    gain: float = 1.0
    manual_centroid: bool = False
    manual_bandwidth: bool = False
    segments: int = 0
    fit_residual_db: float = 0.0
    fit_limit: float = 1.0
    out_length: int = 0
    step: float = 1.0
    decimation: int = 1

    @property
    def name(self) -> str:
        return AXES[self.axis]

    def cutoffs(self) -> tuple[float, float]:
        return self.centroid - self.bandwidth / 2, self.centroid + self.bandwidth / 2

    def response(self, x: np.ndarray) -> np.ndarray:
        """Fitted amplitude response at normalised in-band frequency x in [-1, 1]."""
        return response_at(x, self.coefficients, self.fit_limit)

    def filter(self, n: int, band: float | None = None) -> np.ndarray:
        """Whitening gain (float64, length n) on the FFT grid of an n-sample line, for the
        demodulated signal: gain / response in band, 0 outside."""
        band = self.bandwidth if band is None else band
        f = np.fft.fftfreq(n)
        x = 2 * f / self.bandwidth
        response = self.response(x)
        inside = np.abs(f) <= band / 2 + 1e-9 if band < 1 else np.ones(n, bool)
        return np.where(inside, self.gain / response, 0.0)

    def cycles(self, along: np.ndarray, across: np.ndarray) -> np.ndarray:
        """Demodulation phase in cycles (float64) at pixel positions along/across the axis
        (absolute pixel indices; broadcast). Without a slope across, the phase depends on
        ``along`` only and keeps its shape (cheap to broadcast)."""
        u = along - (self.length - 1) / 2
        cycles = self.centroid * u + self.drift * u * u / 2
        if self.slope:
            cycles = cycles + self.slope * u * (across - (self.across - 1) / 2)
        return cycles

    def summary(self) -> dict:
        low, high = self.cutoffs()
        return {
            "centroid": self.centroid,
            "power_centroid": self.power_centroid,
            "centroid_drift_per_pixel": self.drift,
            "centroid_slope_across_per_pixel": self.slope,
            "bandwidth": self.bandwidth,
            "cutoffs": [low, high],
            "manual_centroid": self.manual_centroid,
            "manual_bandwidth": self.manual_bandwidth,
            "response_chebyshev": list(self.coefficients),
            "response_fit_limit": self.fit_limit,
            "response_fit_residual_db": self.fit_residual_db,
            "gain": self.gain,
            "segments": self.segments,
            "input_samples": self.length,
            "output_samples": self.out_length or self.length,
            "output_step": self.step,
        }


# --------------------------------------------------------------------------------------------
# Statistics over strips: correlations, centroid cells, periodograms


def _hann(n: int, device) -> torch.Tensor:
    window = torch.hann_window(n, periodic=False, dtype=torch.float64, device=device)
    return (window / torch.sqrt((window ** 2).mean())).to(torch.float32)


def segment_starts(n: int, length: int) -> list[int]:
    """Starts of Welch segments of ``length`` along ``n`` samples: 50 % overlap, the last one
    flush with the end (so that an invalid border on either side costs few segments)."""
    if length > n:
        return []
    starts = list(range(0, n - length + 1, max(1, length // 2)))
    if starts[-1] != n - length:
        starts.append(n - length)
    return starts


class Statistics:
    """Sums over blocks of one channel: complex lag-1/lag-2 correlations per axis, lag-1
    products per cell (for the centroid plane), and self-normalised periodograms per axis.

    Pixels that are invalid or point targets (``good`` False) stay out of the correlations;
    segments with any invalid pixel stay out of the periodograms. Every pair and segment is
    counted once however the image is cut into blocks: a pair belongs to the block holding its
    second pixel, a segment to the block holding its first.
    """

    def __init__(self, height: int, width: int, segments: tuple[int, int], reference: float = 0.0,
                 cell: int = CENTROID_CELL) -> None:
        self.height, self.width = height, width
        self.reference = reference
        self.segments = segments
        self.starts = (set(segment_starts(height, segments[0])), set(segment_starts(width, segments[1])))
        self.cell = (max(4, min(cell, height // 4)), max(4, min(cell, width // 4)))
        self.numerator = np.zeros((2, 3), np.complex128)
        self.power = np.zeros((2, 3, 2))
        self.cells = [np.zeros((-(-height // self.cell[0]), -(-width // self.cell[1])), np.complex128)
                      for _ in AXES]
        self.spectra = [np.zeros(segments[0]), np.zeros(segments[1])]
        self.counts = [0, 0]
        self.weights = [0.0, 0.0]

    def add_pairs(self, z: torch.Tensor, good: torch.Tensor, block: "Block",
                  lags: tuple[int, ...] = (1, 2), cells: bool = False) -> None:
        """Pairs whose second pixel lies in the block's core (``z`` is the block's window);
        with ``cells``, the lag-1 products are also summed per cell for the centroid plane."""
        rows, cols = block.core
        zg = torch.where(good, z, torch.zeros_like(z))
        power = zg.real ** 2 + zg.imag ** 2
        weight = good.to(power.dtype)
        for lag in lags:
            shifted = ((slice(rows.start - lag, rows.stop - lag), cols),
                       (rows, slice(cols.start - lag, cols.stop - lag)))
            for axis, other in enumerate(shifted):
                product = zg[rows, cols] * zg[other].conj()  # zero unless both pixels are good
                # float32 sums along rows, then float64 across them
                self.numerator[axis, lag] += complex(product.sum(dim=1).sum(dtype=torch.complex128).item())
                self.power[axis, lag, 0] += float((power[rows, cols] * weight[other]).sum(dim=1).sum(dtype=torch.float64))
                self.power[axis, lag, 1] += float((power[other] * weight[rows, cols]).sum(dim=1).sum(dtype=torch.float64))
                if cells and lag == 1:
                    self._add_cells(axis, product, block.row0 + rows.start, block.col0 + cols.start)

    def _add_cells(self, axis: int, product: torch.Tensor, first_row: int, first_col: int) -> None:
        ch, cw = self.cell
        grid = self.cells[axis]
        rows = (torch.arange(product.shape[0], device=product.device) + first_row) // ch
        cols = (torch.arange(product.shape[1], device=product.device) + first_col) // cw
        index = rows[:, None] * grid.shape[1] + cols[None, :]
        sums = torch.zeros(grid.size, dtype=torch.complex128, device=product.device)
        sums.index_add_(0, index.reshape(-1), product.reshape(-1).to(torch.complex128))
        grid += sums.cpu().numpy().reshape(grid.shape)

    def add_spectra(self, axis: int, z: torch.Tensor, valid: torch.Tensor, block: "Block",
                    targets: torch.Tensor | None = None) -> None:
        """Add the periodograms of the segments along ``axis`` that start in the block's core
        (``z`` is the block's window, reaching one segment beyond the core).

        Each periodogram is scaled to unit mean and weighted by min(power / reference,
        SEGMENT_WEIGHT_CAP) times the share of its power not in replaced point targets
        (``targets``): that noise is white, not shaped by the system, and around a ship it
        would otherwise dominate whole lines."""
        length = self.segments[axis]
        rows, cols = block.core
        targets = torch.zeros_like(valid) if targets is None else targets
        if axis == 0:
            first = [s - block.row0 for s in range(block.row0 + rows.start, block.row0 + rows.stop)
                     if s in self.starts[0]]
            lines, ok, hit = z[:, cols].T, valid[:, cols].T, targets[:, cols].T
        else:
            first = [s - block.col0 for s in range(block.col0 + cols.start, block.col0 + cols.stop)
                     if s in self.starts[1]]
            lines, ok, hit = z[rows], valid[rows], targets[rows]
        first = [s for s in first if s + length <= lines.shape[1]]
        if not first:
            return
        # the starts on the global 50 % grid form one strided view; a start flush with the end
        # of the image is the only other
        step = max(1, length // 2)
        offset = block.row0 if axis == 0 else block.col0
        regular = [s for s in first if (s + offset) % step == 0]
        groups = [s for s in first if (s + offset) % step != 0]
        if regular:
            span = slice(regular[0], regular[-1] + length)
            self._add_segments(axis, lines[:, span].unfold(1, length, step), ok[:, span].unfold(1, length, step),
                               hit[:, span].unfold(1, length, step))
        for start in groups:
            span = slice(start, start + length)
            self._add_segments(axis, lines[:, None, span], ok[:, None, span], hit[:, None, span])

    def _add_segments(self, axis: int, segments: torch.Tensor, valid: torch.Tensor,
                      replaced: torch.Tensor) -> None:
        """Accumulate the periodograms of ``segments`` (lines, count, length)."""
        length = segments.shape[-1]
        keep = valid.all(dim=-1)
        if not bool(keep.any()):
            return
        segs = segments[keep]
        power = segs.real ** 2 + segs.imag ** 2
        total = power.sum(dim=1)
        positive = total > 0
        segs, total = segs[positive], total[positive]
        replaced_power = (power * replaced[keep])[positive].sum(dim=1)
        spectrum = torch.fft.fft(segs * _hann(length, segs.device), dim=1)
        spectra = spectrum.real ** 2 + spectrum.imag ** 2
        spectra = spectra / spectra.mean(dim=1, keepdim=True)
        # the share of a segment's power that is (white) replacement noise does not count
        weight = 1 - replaced_power / total
        if self.reference > 0:
            weight = weight * (total / (length * self.reference)).clamp_max(SEGMENT_WEIGHT_CAP)
        self.spectra[axis] += (spectra * weight[:, None]).sum(dim=0, dtype=torch.float64).cpu().numpy()
        self.counts[axis] += spectra.shape[0]
        self.weights[axis] += float(weight.sum(dtype=torch.float64))

    def correlations(self) -> dict:
        """|lag-1| and |lag-2| complex correlation coefficient per axis (and the lag-1 phase)."""
        out = {}
        for axis, name in enumerate(AXES):
            out[name] = {}
            for lag in (1, 2):
                power = math.sqrt(self.power[axis, lag, 0] * self.power[axis, lag, 1])
                value = self.numerator[axis, lag] / power if power > 0 else 0j
                out[name][f"lag{lag}"] = abs(value)
                if lag == 1:
                    out[name]["lag1_phase_cycles"] = float(np.angle(value) / (2 * np.pi))
        return out

    def spectrum(self, axis: int) -> np.ndarray:
        """Averaged periodogram (unit mean) on the segment's FFT grid (fftfreq order)."""
        if self.counts[axis] == 0:
            return np.ones(self.segments[axis])
        spectrum = self.spectra[axis] / max(self.weights[axis], 1e-30)
        return spectrum / max(spectrum.mean(), 1e-30)


@dataclass(frozen=True)
class Block:
    """A window read for the statistics: it starts at image (row0, col0); ``core`` (two
    slices into the window) is the part whose pairs and segment starts it owns."""

    row0: int
    col0: int
    core: tuple[slice, slice]


def statistics_blocks(height: int, width: int, segments: tuple[int, int],
                      max_pixels: int = 0) -> list[tuple[int, int, int, int]]:
    """Cores (row, col, rows, cols) covering the image, evenly thinned to about
    ``max_pixels`` when that is set and the image is larger."""
    core_rows = segments[0]
    core_cols = segments[1] * max(1, 4096 // segments[1])
    cores = [(r, c, min(core_rows, height - r), min(core_cols, width - c))
             for r in range(0, height, core_rows) for c in range(0, width, core_cols)]
    if max_pixels and height * width > max_pixels:
        keep = max(1, int(len(cores) * max_pixels / (height * width)))
        cores = [cores[int(i)] for i in np.unique(np.linspace(0, len(cores) - 1, keep).round())]
    return cores


def read_block(source, core: tuple[int, int, int, int], segments: tuple[int, int],
               halo: int) -> tuple[np.ndarray, np.ndarray, Block]:
    """The window of a core: ``halo`` pixels of context around it, and one segment length
    beyond its bottom and right edges (for the segments starting in it)."""
    row, col, rows, cols = core
    values, valid = source.read(row - halo, col - halo, rows + segments[0] + 2 * halo,
                                cols + segments[1] + 2 * halo)
    block = Block(row - halo, col - halo, (slice(halo, halo + rows), slice(halo, halo + cols)))
    return values, valid, block


def fit_centroid_plane(stats: Statistics, axis: int) -> tuple[float, float, float]:
    """(centroid at the centre, drift along the axis, slope across) in cycles/pixel from the
    lag-1 products summed per cell: phase differences of neighbouring cells give the drift
    and slope without unwrapping; the constant follows once they are removed."""
    cells = stats.cells[axis]
    ch, cw = stats.cell
    if axis == 1:
        cells, (ch, cw) = cells.T, (cw, ch)
    length, across = (stats.height, stats.width) if axis == 0 else (stats.width, stats.height)
    drift = slope = 0.0
    if cells.shape[0] > 1:
        drift = float(np.angle((cells[1:] * cells[:-1].conj()).sum()) / (2 * np.pi) / ch)
        if abs(drift) * length < CENTROID_VARIATION_MIN:
            drift = 0.0
    if cells.shape[1] > 1:
        slope = float(np.angle((cells[:, 1:] * cells[:, :-1].conj()).sum()) / (2 * np.pi) / cw)
        if abs(slope) * across < CENTROID_VARIATION_MIN:
            slope = 0.0
    u = np.minimum((np.arange(cells.shape[0]) + 0.5) * ch, length) - (length - 1) / 2
    v = np.minimum((np.arange(cells.shape[1]) + 0.5) * cw, across) - (across - 1) / 2
    residual = cells * np.exp(-2j * np.pi * (drift * u[:, None] + slope * v[None, :]))
    total = residual.sum()
    centroid = float(np.angle(total) / (2 * np.pi)) if abs(total) > 0 else 0.0
    return centroid, drift, slope


def _circular_smooth(values: np.ndarray, half: int) -> np.ndarray:
    if half <= 0:
        return values
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    padded = np.concatenate([values[-half:], values, values[:half]])
    return np.convolve(padded, kernel, mode="valid")


def band_edges(spectrum: np.ndarray) -> tuple[float, float] | None:
    """Band edges (cycles/pixel) of a demodulated averaged periodogram (fftfreq order), or
    None when no band limitation shows (the signal fills the whole axis).

    First a rough edge on each side: going out from the centre, where the smoothed spectrum
    falls below floor + EDGE_FRACTION x (in-band level - floor), in dB. Then the edge proper:
    the estimator blurs a step of the true spectrum symmetrically, so the step sits where the
    spectrum crosses the mean (in power) of the levels just inside and just outside it.
    """
    n = spectrum.size
    half = max(1, n // 128)
    smooth = np.fft.fftshift(_circular_smooth(spectrum, half))
    db = 10 * np.log10(np.maximum(smooth, 1e-12 * smooth.max()))
    level, floor = np.percentile(db, 90), np.percentile(db, 3)
    if level - floor < MIN_BAND_CONTRAST_DB:
        return None
    threshold = max(floor + EDGE_FRACTION * (level - floor), level - MAX_GAIN_DB)
    centre = n // 2
    above = db >= threshold
    if not above[centre]:
        return None
    high = centre
    while high + 1 < n and above[high + 1]:
        high += 1
    low = centre
    while low - 1 >= 0 and above[low - 1]:
        low -= 1
    if low == 0 and high == n - 1:
        return None
    f = (np.arange(n) - centre) / n
    raw = np.fft.fftshift(spectrum)
    transition = TRANSITION_BINS + half  # Hann main lobe half-width plus the smoothing
    width = max(2, n // 64)

    def edge(rough: int, outward: int) -> float:
        inside = [rough - outward * (transition + k) for k in range(width)]
        outside = [rough + outward * (transition + 1 + k) for k in range(width)]
        inside = [i for i in inside if 0 <= i < n and above[i]]
        outside = [i for i in outside if 0 <= i < n]
        if not inside or not outside:
            return f[rough] + outward * 0.5 / n
        middle = (np.median(raw[inside]) + np.median(raw[outside])) / 2
        i = rough - outward * transition
        i = min(max(i, 0), n - 1)
        while 0 <= i + outward < n and raw[i + outward] >= middle and abs(i - rough) <= 2 * transition:
            i += outward
        j = i + outward
        if not 0 <= j < n:
            return f[i] + outward * 0.5 / n
        t = (raw[i] - middle) / max(raw[i] - raw[j], 1e-30)
        return f[i] + float(np.clip(t, 0, 1)) * (f[j] - f[i])

    return edge(low, -1), edge(high, 1)


#: Half-width (bins) of the transition that the Hann window's main lobe gives a spectral step.
TRANSITION_BINS = 2


def _shift_spectrum(spectrum: np.ndarray, offset: float) -> np.ndarray:
    """The periodic spectrum (fftfreq order) sampled at f + offset (linear interpolation)."""
    n = spectrum.size
    position = (np.arange(n) + offset * n) % n
    lower = np.floor(position).astype(int)
    t = position - lower
    lower %= n  # a position a hair below 0 wraps to n
    return spectrum[lower] * (1 - t) + spectrum[(lower + 1) % n] * t


def response_at(x: np.ndarray, coefficients, limit: float = 1.0) -> np.ndarray:
    """The fitted amplitude response at normalised in-band frequencies ``x``: the Chebyshev
    series on [-limit, limit], held at its end values beyond (a polynomial must not be
    extrapolated: it would dive at the band edges, and whitening would blow them up), never
    below what the largest whitening gain allows."""
    values = chebyshev.chebval(np.clip(x, -limit, limit), np.asarray(coefficients))
    return np.maximum(values, 10 ** (-MAX_GAIN_DB / 20))


def fit_response(spectrum: np.ndarray, bandwidth: float) -> tuple[tuple, float, float, float]:
    """Fit the amplitude response in band to a demodulated periodogram (fftfreq order).

    Bins within the estimator's transition of a band edge are left out of the fit (they mix
    in-band and out-of-band power); the response is held constant over them.
    Returns the Chebyshev coefficients (scaled to unit RMS over the band), the power gain that
    keeps the mean intensity through whitening, the RMS fit residual (dB), and the limit of
    the fitted range in normalised frequency.
    """
    n = spectrum.size
    f = np.fft.fftfreq(n)
    half = bandwidth / 2
    margin = (TRANSITION_BINS + 1) / n if bandwidth < 1 else 0.0
    inside = np.abs(f) <= half - margin
    if inside.sum() < 8:
        inside = np.abs(f) <= half
    x = f[inside] / half
    limit = float(min(1.0, np.abs(x).max()))
    amplitude = np.sqrt(np.maximum(spectrum[inside], 1e-12))
    degree = int(min(10, max(2, inside.sum() // 12)))
    coefficients = chebyshev.chebfit(x, amplitude, degree)
    grid = np.linspace(-1, 1, 513)
    rms = math.sqrt(float(np.mean(response_at(grid, coefficients, limit) ** 2)))
    coefficients = coefficients / rms
    fitted = response_at(x, coefficients, limit)
    residual = 20 * np.log10(amplitude / rms / fitted)
    # mean intensity kept: sum(S) == gain^2 * sum_band(S / G^2)
    band = np.abs(f) <= half if bandwidth < 1 else np.ones(n, bool)
    response = response_at(f[band] / half, coefficients, limit)
    gain = math.sqrt(spectrum.sum() / max((spectrum[band] / response ** 2).sum(), 1e-12))
    return (tuple(float(c) for c in coefficients), gain, float(np.sqrt(np.mean(residual ** 2))), limit)


def plan_axis(demodulated: Statistics, axis: int, plan: AxisPlan,
              settings: DecorrelationSettings) -> AxisPlan:
    """Finish ``plan`` (whose centroid plane demodulated the periodograms of ``demodulated``):
    band edges, refined centroid, bandwidth, fitted response and gain; manual values win."""
    manual_centroid, manual_bandwidth = settings.manual(axis)
    spectrum = demodulated.spectrum(axis)
    plan.segments = demodulated.counts[axis]
    edges = band_edges(spectrum)
    offset = 0.0
    bandwidth = 1.0
    if edges is not None:
        low, high = edges
        bandwidth = min(1.0, high - low)
        if manual_centroid is None:
            offset = (low + high) / 2
    if manual_bandwidth is not None:
        bandwidth = manual_bandwidth
    if offset:
        plan.centroid = _wrap(plan.centroid + offset)
    plan.bandwidth = float(bandwidth)
    centred = _shift_spectrum(spectrum, offset)
    plan.coefficients, plan.gain, plan.fit_residual_db, plan.fit_limit = fit_response(centred, plan.bandwidth)
    return plan


def _wrap(f: float) -> float:
    return float((f + 0.5) % 1.0 - 0.5)


# --------------------------------------------------------------------------------------------
# Estimation


@dataclass
class ChannelEstimate:
    """Everything estimated for one complex channel. ``before`` holds the correlations and
    periodograms of the input with the estimated centroid removed (what whitening sees)."""

    median: float
    threshold: float
    mean_power: float
    plans: list[AxisPlan]
    before: Statistics
    point_targets: int = 0
    valid_pixels: int = 0
    first: Statistics | None = None


def _channel_medians(source, channel_count: int) -> list[tuple[float, float, int]]:
    """Per channel: (median intensity, typical power, valid pixel count in the sample)."""
    samples = [[] for _ in range(channel_count)]
    for row, col, height, width in sample_windows(source.height, source.width, 4_000_000):
        values, valid = source.read(row, col, height, width)
        for c in range(channel_count):
            samples[c].append((np.abs(values[c][valid[c]]) ** 2).astype(np.float64))
    out = []
    for c in range(channel_count):
        intensity = np.concatenate(samples[c]) if samples[c] else np.zeros(0)
        if intensity.size == 0:
            out.append((0.0, 0.0, 0))
        else:
            median = float(np.median(intensity))
            # typical speckle power, robust to point targets: the mean of single-look
            # (exponential) intensity whose median this is
            out.append((median, median / math.log(2), intensity.size))
    return out


def _segments(settings: DecorrelationSettings, height: int, width: int) -> tuple[int, int]:
    return min(settings.segment, height), min(settings.segment, width)


def estimate(source, settings: DecorrelationSettings, device: torch.device,
             feedback: Feedback, fraction: tuple[float, float] = (0.0, 0.1),
             fixed: list["ChannelEstimate"] | None = None, segments: tuple[int, int] | None = None,
             max_pixels: int = MAX_ESTIMATION_PIXELS) -> list["ChannelEstimate"]:
    """Estimate the plan of every channel of ``source`` from the whole image (large images
    are sampled to ``max_pixels`` per channel, in blocks spread over the scene).

    Two passes over the blocks: the first gathers the lag-1 products per cell (giving the
    centroid plane) and counts point targets; the second the correlations and periodograms of
    the demodulated signal, from which the band and the response follow. When an axis has too
    few fully valid segments (a nodata border across short lines), its segment length is
    halved and the second pass run again. ``fixed`` reuses the point-target thresholds of a
    previous estimate (for estimation windows).
    """
    height, width = source.height, source.width
    segments = segments or _segments(settings, height, width)
    estimates = []
    if fixed is None:
        for c, (median, mean, count) in enumerate(_channel_medians(source, source.channels)):
            if count == 0:
                raise SarDespeckleError(
                    f"Channel {c + 1} has no valid pixels: every pixel is nodata, NaN or exactly "
                    "zero (exact zeros count as nodata; turn ZEROS_AS_NODATA off if they are data)."
                )
            threshold = settings.point_target_factor * median if settings.point_target_factor else 0.0
            estimates.append(ChannelEstimate(median, threshold, mean, [],
                                             Statistics(height, width, segments, mean)))
    else:
        estimates = [ChannelEstimate(e.median, e.threshold, e.mean_power, [],
                                     Statistics(height, width, segments, e.mean_power)) for e in fixed]
    span = fraction[1] - fraction[0]
    _estimation_pass(source, estimates, settings, device, feedback, segments, max_pixels, None,
                     (fraction[0], fraction[0] + span / 2))
    for est in estimates:
        est.first = est.before
        est.plans = [_initial_plan(est.first, axis, settings, height, width) for axis in (0, 1)]
    while True:
        demodulated = _estimation_pass(source, estimates, settings, device, feedback, segments,
                                       max_pixels, estimates, (fraction[0] + span / 2, fraction[1]))
        short = [axis for axis in (0, 1) if min(d.counts[axis] for d in demodulated) < MIN_SEGMENTS]
        if not short or all(segments[axis] // 2 < MIN_SIDE for axis in short):
            break
        segments = tuple(max(MIN_SIDE, n // 2) if axis in short else n for axis, n in enumerate(segments))
    for c, est in enumerate(estimates):
        for axis in (0, 1):
            if demodulated[c].counts[axis] < MIN_SEGMENTS:
                raise SarDespeckleError(
                    f"Channel {c + 1}: only {demodulated[c].counts[axis]} fully valid "
                    f"{AXES[axis]} lines of {segments[axis]} pixels were found (at least "
                    f"{MIN_SEGMENTS} are needed): the image is mostly nodata, zero or NaN. Crop "
                    "it to the valid area."
                )
            plan_axis(demodulated[c], axis, est.plans[axis], settings)
        # what is reported and drawn: correlations and spectra with the centroid removed
        est.before = demodulated[c]
    return estimates


def _estimation_pass(source, estimates: list["ChannelEstimate"], settings: DecorrelationSettings,
                     device: torch.device, feedback: Feedback, segments: tuple[int, int],
                     max_pixels: int, demodulate: list["ChannelEstimate"] | None,
                     fraction: tuple[float, float]) -> list[Statistics]:
    """One pass over the estimation blocks. Without ``demodulate``: lag-1 products per cell
    into each estimate's ``before`` and the point-target counts. With it: a new Statistics per
    channel of the signal demodulated by its plans (correlations and periodograms)."""
    height, width = source.height, source.width
    cores = statistics_blocks(height, width, segments, max_pixels)
    results = [Statistics(height, width, segments, e.mean_power) for e in estimates]
    for index, core in enumerate(cores):
        if feedback.is_cancelled():
            raise Cancelled()
        values, valid, block = read_block(source, core, segments, LOCAL_POWER_RADIUS)
        rows = block.row0 + np.arange(values.shape[1], dtype=np.float64)
        cols = block.col0 + np.arange(values.shape[2], dtype=np.float64)
        for c, est in enumerate(estimates):
            z = torch.from_numpy(values[c]).to(device)
            ok = torch.from_numpy(valid[c]).to(device)
            replaced, targets = replace_point_targets(z, ok, est.threshold, est.mean_power,
                                                      (block.row0, block.col0), settings.seed)
            if demodulate is None:
                est.before.add_pairs(z, ok & ~targets, block, lags=(1,), cells=True)
                est.point_targets += int(targets[block.core].sum())
                est.valid_pixels += int(ok[block.core].sum())
                continue
            cycles = _axis_cycles(est.plans, rows, cols)
            both = z * _phasor(-cycles[0], device) * _phasor(-cycles[1], device)
            results[c].add_pairs(both, ok & ~targets, block)
            for axis in (0, 1):
                results[c].add_spectra(axis, replaced * _phasor(-cycles[axis], device), ok, block, targets)
        feedback.progress(fraction[0] + (fraction[1] - fraction[0]) * (index + 1) / len(cores))
    return results


def _axis_cycles(plans: list[AxisPlan], rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Demodulation phases (cycles) of both axes' plans on the grid of image positions
    ``rows`` x ``cols`` (input pixel coordinates)."""
    return (plans[0].cycles(rows[:, None], cols[None, :]), plans[1].cycles(cols[None, :], rows[:, None]))


def _initial_plan(stats: Statistics, axis: int, settings: DecorrelationSettings,
                  height: int, width: int) -> AxisPlan:
    length, across = (height, width) if axis == 0 else (width, height)
    centroid, drift, slope = fit_centroid_plane(stats, axis)
    plan = AxisPlan(axis, length, across, centroid, drift, slope, power_centroid=centroid)
    manual_centroid, manual_bandwidth = settings.manual(axis)
    if manual_centroid is not None:
        plan.centroid, plan.drift, plan.slope = float(manual_centroid), 0.0, 0.0
        plan.manual_centroid = True
    plan.manual_bandwidth = manual_bandwidth is not None
    return plan


def _phasor(cycles: np.ndarray, device: torch.device) -> torch.Tensor:
    """exp(2 pi i cycles) as complex64, the phase reduced in float64 first."""
    fraction = cycles - np.round(cycles)
    angle = torch.from_numpy(2 * np.pi * fraction).to(device=device, dtype=torch.float32)
    return torch.polar(torch.ones_like(angle), angle)


# --------------------------------------------------------------------------------------------
# Applying the plans


def set_resampling(plan: AxisPlan, settings: DecorrelationSettings) -> None:
    """Output length and step of the axis (no change without resampling)."""
    n = plan.length
    plan.out_length, plan.step, plan.decimation = n, 1.0, 1
    if not settings.resample or plan.bandwidth >= 0.999:
        return
    if settings.resample_mode == "spectral":
        plan.out_length = max(MIN_SIDE // 2, min(n, int(round(n * plan.bandwidth))))
        plan.step = n / plan.out_length
    else:
        d = max(1, int(round(1 / plan.bandwidth)))
        plan.decimation = d
        plan.out_length = -(-n // d)
        plan.step = float(d)


def set_output_grid(estimates: list["ChannelEstimate"], settings: DecorrelationSettings) -> None:
    """One output grid for all channels: each axis resampled to the widest of the channels'
    bandwidths (so that no channel loses signal; they are the same system's anyway)."""
    for axis in (0, 1):
        plans = [est.plans[axis] for est in estimates]
        widest = max(plans, key=lambda p: p.bandwidth)
        set_resampling(widest, settings)
        for plan in plans:
            plan.out_length, plan.step, plan.decimation = widest.out_length, widest.step, widest.decimation


def whiten_lines(z: torch.Tensor, plan: AxisPlan, along: np.ndarray, across: np.ndarray,
                 restore: bool, cache: dict) -> torch.Tensor:
    """Whiten the lines of ``z`` (lines, n) with ``plan``: demodulate, filter in band, crop or
    decimate when resampling, restore the centroid at the output positions.

    ``along`` (n,) are the absolute positions of the samples along the axis; ``across``
    (lines,) the positions of the lines across it.
    """
    n = z.shape[1]
    device = z.device
    key = (plan.axis, n, plan.out_length, plan.decimation)
    if key not in cache:
        band = plan.bandwidth if plan.decimation == 1 else min(plan.bandwidth, 1.0 / plan.decimation)
        gains = plan.filter(n, band)
        cache[key] = torch.from_numpy(gains.astype(np.float32)).to(device)
    gains = cache[key]
    cycles = plan.cycles(along[None, :], across[:, None])
    spectrum = torch.fft.fft(z * _phasor(-cycles, device), dim=1) * gains
    if plan.decimation > 1:
        out = torch.fft.ifft(spectrum, dim=1)[:, ::plan.decimation]
        positions = along[::plan.decimation]
    elif plan.step != 1.0:
        m = plan.out_length
        shifted = torch.fft.fftshift(spectrum, dim=1)
        start = n // 2 - m // 2
        out = torch.fft.ifft(torch.fft.ifftshift(shifted[:, start:start + m], dim=1), dim=1)
        out = out * (m / n)  # ifft of m samples scales by 1/m, not 1/n
        positions = along[0] + np.arange(m) * (n / m)
    else:
        out = torch.fft.ifft(spectrum, dim=1)
        positions = along
    if restore:
        out = out * _phasor(plan.cycles(positions[None, :], across[:, None]), device)
    return out


def _strip_size(lines: int, channels: int, settings: DecorrelationSettings) -> int:
    """Lines per strip so that a strip's working set stays within STRIP_BUDGET."""
    if settings.strip:
        return settings.strip
    per_line = max(1, lines) * 8 * 8  # complex64 with a few working copies
    size = STRIP_BUDGET // per_line
    return int(max(16, min(4096, size // 16 * 16)))


def _output_validity(valid: np.ndarray, rows_in: np.ndarray, cols_in: np.ndarray) -> np.ndarray:
    return valid[:, rows_in][:, :, cols_in]


def apply_whole(source, estimates: list[ChannelEstimate], settings: DecorrelationSettings,
                device: torch.device, sink, store, intensity_sink, feedback: Feedback,
                fraction: tuple[float, float]) -> None:
    """Two passes with whole-line FFTs: row strips (range) into ``store``, then column strips
    (azimuth) into ``sink``; point targets put back and nodata kept at the end."""
    height, width = source.height, source.width
    channels = len(estimates)
    az_plans = [e.plans[0] for e in estimates]
    rg_plans = [e.plans[1] for e in estimates]
    out_height, out_width = az_plans[0].out_length, rg_plans[0].out_length
    resampled = (out_height, out_width) != (height, width)
    halo = LOCAL_POWER_RADIUS
    rows_per_strip = _strip_size(width, channels, settings)
    span = fraction[1] - fraction[0]
    cache: list[dict] = [{} for _ in range(channels)]
    strips = list(range(0, height, rows_per_strip))
    for index, row0 in enumerate(strips):
        if feedback.is_cancelled():
            raise Cancelled()
        rows = min(rows_per_strip, height - row0)
        values, valid = source.read(row0 - halo, 0, rows + 2 * halo, width)
        block = np.zeros((channels, rows, out_width), np.complex64)
        for c, est in enumerate(estimates):
            z = torch.from_numpy(values[c]).to(device)
            ok = torch.from_numpy(valid[c]).to(device)
            replaced, _ = replace_point_targets(z, ok, est.threshold, est.mean_power,
                                                (row0 - halo, 0), settings.seed)
            lines = replaced[halo:halo + rows]
            whitened = whiten_lines(lines, rg_plans[c], np.arange(width, dtype=np.float64),
                                    np.arange(row0, row0 + rows, dtype=np.float64),
                                    settings.restore_centroid, cache[c])
            block[c] = whitened.cpu().numpy()
        store.write(block, row0, 0)
        feedback.progress(fraction[0] + 0.5 * span * (index + 1) / len(strips))
    cols_per_strip = _strip_size(height, channels, settings)
    col_strips = list(range(0, out_width, cols_per_strip))
    rows_in = np.minimum(np.round(np.arange(out_height) * az_plans[0].step).astype(int), height - 1)
    for index, col0 in enumerate(col_strips):
        if feedback.is_cancelled():
            raise Cancelled()
        cols = min(cols_per_strip, out_width - col0)
        stored, _ = store.read(0, col0, height, cols)
        cols_in = np.minimum(np.round(np.arange(col0, col0 + cols) * rg_plans[0].step).astype(int), width - 1)
        first, last = int(cols_in[0]), int(cols_in[-1]) + 1
        original, valid = source.read(0, first, height, last - first)
        out = np.zeros((channels, out_height, cols), np.complex64)
        for c, est in enumerate(estimates):
            lines = torch.from_numpy(np.ascontiguousarray(stored[c].T)).to(device)
            across = np.arange(col0, col0 + cols, dtype=np.float64) * rg_plans[c].step
            whitened = whiten_lines(lines, az_plans[c], np.arange(height, dtype=np.float64), across,
                                    settings.restore_centroid, cache[c])
            out[c] = whitened.T.cpu().numpy()
        if resampled:
            ok = _output_validity(valid, rows_in, cols_in - first)
        else:
            ok = valid
            for c, est in enumerate(estimates):
                if est.threshold > 0:
                    targets = ok[c] & (np.abs(original[c]) ** 2 >= est.threshold)
                    out[c][targets] = original[c][targets]
        out = np.where(ok, out, 0).astype(np.complex64)
        sink.write(out, 0, col0)
        if intensity_sink is not None:
            intensity_sink.write((np.abs(out) ** 2).astype(np.float32), 0, col0)
        feedback.progress(fraction[0] + span * (0.5 + 0.5 * (index + 1) / len(col_strips)))


def apply_windowed(source, estimates: list[ChannelEstimate], settings: DecorrelationSettings,
                   device: torch.device, sink, intensity_sink, feedback: Feedback,
                   fraction: tuple[float, float]) -> list[dict]:
    """Whiten windows of ``estimation_window`` pixels, each with its own plan, through the
    tiling engine (feathered overlaps); point targets are put back after blending."""
    channels = len(estimates)
    window = settings.estimation_window
    halo = max(16, window // 8)
    blend = halo // 2
    tile = max(window - 2 * halo, 2 * blend)
    windows: list[dict] = []
    counter = [0]

    class Source:
        height, width = source.height, source.width

        def read(self, row, col, h, w):
            values, valid = source.read(row, col, h, w)
            return (np.concatenate([values.real, values.imag]).astype(np.float32),
                    np.concatenate([valid, valid]))

    tiles_across = -(-source.width // tile)

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        outputs = []
        for b in range(values.shape[0]):
            # the engine runs tiles strip by strip, left to right, one per batch
            row0 = (counter[0] // tiles_across) * tile - halo
            col0 = (counter[0] % tiles_across) * tile - halo
            out = torch.zeros((2 * channels,) + values.shape[2:], device=values.device)
            record = {"row": row0 + halo, "col": col0 + halo}
            for c, est in enumerate(estimates):
                z = torch.complex(values[b, c], values[b, channels + c])
                ok = valid[b, c]
                if int(ok.sum()) < MIN_SIDE * MIN_SIDE:
                    continue
                part = ArraySource(z.cpu().numpy(), ok.cpu().numpy(), settings.zeros_as_nodata)
                rows = np.arange(z.shape[0], dtype=np.float64)
                cols = np.arange(z.shape[1], dtype=np.float64)
                try:
                    plans = estimate(part, settings, device, Feedback(), fixed=[est], max_pixels=0,
                                     segments=(min(settings.segment, part.height // 2),
                                               min(settings.segment, part.width // 2)))[0].plans
                    record[f"channel{c + 1}"] = {p.name: {"centroid": p.centroid, "bandwidth": p.bandwidth}
                                                 for p in plans}
                except SarDespeckleError:
                    # too little valid data in this window: the global plan, in image positions
                    plans = est.plans
                    rows, cols = rows + row0, cols + col0
                    record[f"channel{c + 1}"] = "global estimate (too few valid pixels)"
                replaced, _ = replace_point_targets(z, ok, est.threshold, est.mean_power,
                                                    (row0, col0), settings.seed)
                cache: dict = {}
                lines = whiten_lines(replaced, plans[1], cols, rows, settings.restore_centroid, cache)
                whitened = whiten_lines(lines.T.contiguous(), plans[0], rows, cols,
                                        settings.restore_centroid, {}).T
                whitened = torch.where(ok, whitened, torch.zeros_like(whitened))
                out[c], out[channels + c] = whitened.real, whitened.imag
            windows.append(record)
            counter[0] += 1
            outputs.append(out)
        return torch.stack(outputs)

    class Sink:
        def write(self, values: np.ndarray, row: int, col: int) -> None:
            z = (values[:channels] + 1j * values[channels:]).astype(np.complex64)
            original, valid = source.read(row, col, z.shape[1], z.shape[2])
            for c, est in enumerate(estimates):
                if est.threshold > 0:
                    targets = valid[c] & (np.abs(original[c]) ** 2 >= est.threshold)
                    z[c][targets] = original[c][targets]
            z = np.where(valid, z, 0).astype(np.complex64)
            sink.write(z, row, col)
            if intensity_sink is not None:
                intensity_sink.write((np.abs(z) ** 2).astype(np.float32), row, col)

    span = fraction[1] - fraction[0]
    inner = Feedback(progress=lambda f: feedback.progress(fraction[0] + span * f),
                     is_cancelled=feedback.is_cancelled, info=feedback.info, warn=feedback.warn)
    options = TilingOptions(tile=tile, halo=halo, blend=blend, batch_size=1, device=device)
    run_tiled(Source(), Sink(), process, options, 2 * channels, feedback=inner)
    return windows


def measure(readback, estimates: list[ChannelEstimate], height: int, width: int,
            settings: DecorrelationSettings, device: torch.device) -> list[Statistics]:
    """Correlations and periodograms of an output, as for the input: with the centroid
    removed (when it was restored) and with nodata and the pixels above each channel's
    point-target threshold left out of the correlations."""
    segments = tuple(min(n, size) for n, size in zip(estimates[0].before.segments, (height, width)))
    results = [Statistics(height, width, segments, e.mean_power) for e in estimates]
    for core in statistics_blocks(height, width, segments, MEASURE_PIXELS):
        values, valid, block = read_block(readback, core, segments, 2)
        for c, est in enumerate(estimates):
            z = torch.from_numpy(np.ascontiguousarray(values[c])).to(device)
            ok = torch.from_numpy(valid[c] & (values[c] != 0)).to(device)
            good = ok & ((z.real ** 2 + z.imag ** 2) < est.threshold) if est.threshold > 0 else ok
            cycles = (np.zeros(1), np.zeros(1))
            if settings.restore_centroid:
                rows = (block.row0 + np.arange(values.shape[1])) * est.plans[0].step
                cols = (block.col0 + np.arange(values.shape[2])) * est.plans[1].step
                cycles = _axis_cycles(est.plans, rows, cols)
            both = z * _phasor(-cycles[0], device) * _phasor(-cycles[1], device)
            results[c].add_pairs(both, good, block)
            for axis in (0, 1):
                results[c].add_spectra(axis, z * _phasor(-cycles[axis], device), ok, block, ok & ~good)
    return results


# --------------------------------------------------------------------------------------------
# Whole runs


def _resampled_info(info: RasterInfo, height: int, width: int, row_step: float, col_step: float) -> RasterInfo:
    """``info`` for a grid resampled to height x width with the given steps (input pixels per
    output pixel): output pixel i's centre lies on input pixel i * step's centre."""
    geotransform = info.geotransform
    if geotransform:
        x0, a, b, y0, c, d = geotransform
        du, dv = 0.5 - col_step / 2, 0.5 - row_step / 2
        geotransform = (x0 + a * du + b * dv, a * col_step, b * row_step,
                        y0 + c * du + d * dv, c * col_step, d * row_step)
    gcps = tuple(
        gdal.GCP(g.GCPX, g.GCPY, g.GCPZ, (g.GCPPixel - 0.5 + col_step / 2) / col_step,
                 (g.GCPLine - 0.5 + row_step / 2) / row_step, g.Info, g.Id)
        for g in info.gcps
    )
    return dataclasses.replace(info, width=width, height=height, geotransform=geotransform, gcps=gcps)


class _LayoutSink:
    """Writes complex channels in the input's layout: complex bands, or I/Q float pairs."""

    def __init__(self, writer: RasterWriter, layout: str, nodata: float | None) -> None:
        self.writer, self.layout, self.nodata = writer, layout, nodata

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        if self.nodata is not None:
            values = np.where(values == 0, np.complex64(self.nodata), values)
        if self.layout == "complex":
            self.writer.write(values, row, col)
        else:
            pairs = np.empty((2 * values.shape[0],) + values.shape[1:], np.float32)
            pairs[0::2], pairs[1::2] = values.real, values.imag
            self.writer.write(pairs, row, col)


class _FileReadback:
    """Reads back a finished output in the decorrelation layout, for the after-statistics."""

    def __init__(self, path: str, layout: str) -> None:
        self.source = ComplexSource(path, layout, zeros_as_nodata=True)

    def read(self, row, col, height, width):
        return self.source.read(row, col, height, width)


def _check_source(source, path: str) -> None:
    if source.width < MIN_SIDE or source.height < MIN_SIDE:
        raise SarDespeckleError(
            f"'{path}' is only {source.width} x {source.height} pixels; decorrelation needs at "
            f"least {MIN_SIDE} x {MIN_SIDE} to estimate a spectrum. Give a larger image."
        )


def build_report(estimates, after, settings, source_shape, output_shape, device, seconds,
                 resampled, windows) -> dict:
    channels = []
    for c, est in enumerate(estimates):
        channels.append({
            "channel": c + 1,
            "median_intensity": est.median,
            "point_target_threshold": est.threshold,
            "point_targets": est.point_targets,
            "valid_pixels_used": est.valid_pixels,
            "axes": {p.name: p.summary() for p in est.plans},
            "correlation_before": est.before.correlations(),
            "correlation_after": after[c].correlations() if after else None,
        })
    return {
        "algorithm": "decorrelate",
        "plugin_version": plugin_version(),
        "method": "Lapini et al. 2014 blind decorrelation (point targets, centroid, averaged "
                  "periodogram, in-band whitening)",
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "strip"},
        "device": device.type,
        "seconds": seconds,
        "input_size": list(source_shape),
        "output_size": list(output_shape),
        "resampled": resampled,
        "point_targets_restored": not resampled,
        "axis_convention": "azimuth = rows (axis 0), range = columns (axis 1); frequencies in "
                           "cycles per pixel",
        "channels": channels,
        "windows": windows,
    }


def decorrelate_array(values: np.ndarray, settings: DecorrelationSettings = DecorrelationSettings(),
                      valid: np.ndarray | None = None, feedback: Feedback | None = None) -> tuple[np.ndarray, dict]:
    """Decorrelate complex arrays in memory ((rows, cols) or (channels, rows, cols)).

    Returns the output (same layout; resampled when asked) and the report dict. The same
    passes as :func:`decorrelate_raster` run, in memory.
    """
    feedback = feedback or Feedback()
    check_settings(settings)
    start = time.perf_counter()
    squeeze = np.asarray(values).ndim == 2
    source = ArraySource(values, valid, settings.zeros_as_nodata)
    _check_source(source, "the array")
    device = resolve_device(settings.device, feedback.warn)
    estimates = estimate(source, settings, device, feedback)
    set_output_grid(estimates, settings)
    height, width = estimates[0].plans[0].out_length, estimates[0].plans[1].out_length
    sink = ArraySink(source.channels, height, width)
    windows: list[dict] = []
    if settings.estimation_window:
        windows = apply_windowed(source, estimates, settings, device, sink, None, feedback, (0.1, 0.9))
    else:
        store = ArraySink(source.channels, source.height, width)
        apply_whole(source, estimates, settings, device, sink, store, None, feedback, (0.1, 0.9))
    after = measure(sink, estimates, height, width, settings, device)
    report = build_report(estimates, after, settings, (source.height, source.width), (height, width),
                          device, time.perf_counter() - start, (height, width) != (source.height, source.width),
                          windows)
    report["_spectra"] = spectra_for_plot(estimates, after, settings.restore_centroid)
    out = sink.values
    return (out[0] if squeeze else out), report


def spectra_for_plot(estimates: list[ChannelEstimate], after: list[Statistics] | None,
                     restored: bool = True) -> list[dict]:
    """Per channel and axis, for the picture: the averaged spectra before and after (the
    centroid at the image centre put back, so they show where the signal sits), the fitted
    response and the cut-offs. ``after`` is on the output's own frequency axis."""
    result = []
    for c, est in enumerate(estimates):
        axes = {}
        for axis, plan in enumerate(est.plans):
            before = _shift_spectrum(est.before.spectrum(axis), -plan.centroid)
            f = np.fft.fftfreq(before.size)
            x = 2 * ((f - plan.centroid + 0.5) % 1.0 - 0.5) / plan.bandwidth
            fitted = np.where(np.abs(x) <= 1, plan.response(x) ** 2, np.nan)
            panel = {"frequency": f, "before": before, "fit": fitted, "cutoffs": plan.cutoffs(),
                     "centroid": plan.centroid, "drift": plan.drift, "after": None,
                     "after_frequency": None}
            if after:
                spectrum = after[c].spectrum(axis)
                if restored:
                    spectrum = _shift_spectrum(spectrum, -_wrap(plan.centroid * plan.step))
                panel["after"], panel["after_frequency"] = spectrum, np.fft.fftfreq(spectrum.size)
            axes[plan.name] = panel
        result.append(axes)
    return result


def decorrelate_raster(
    input_path: str,
    output_path: str,
    settings: DecorrelationSettings = DecorrelationSettings(),
    report_path: str | None = None,
    intensity_path: str | None = None,
    feedback: Feedback | None = None,
) -> dict:
    """Decorrelate the complex raster ``input_path`` into the GeoTIFF ``output_path``.

    The output has the input's band layout (complex bands as CFloat32, I/Q pairs as float32),
    CRS, georeference (scaled when resampling), nodata and band descriptions. ``report_path``
    (JSON) gets the report, with a PNG of the spectra beside it (same name, ``.png``);
    ``intensity_path`` an intensity GeoTIFF (|z|^2, one band per channel). On error or cancel
    no output is left. Returns the report dict.
    """
    feedback = feedback or Feedback()
    check_settings(settings)
    start = time.perf_counter()
    source = ComplexSource(input_path, settings.layout, settings.zeros_as_nodata)
    _check_source(source, input_path)
    if report_path and os.path.splitext(report_path)[1].lower() != ".json":
        raise SarDespeckleError(f"The report '{report_path}' must be a .json file.")
    for path in (report_path, intensity_path):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SarDespeckleError(f"Output folder '{os.path.dirname(os.path.abspath(path))}' does not exist: create it first.")
    device = resolve_device(settings.device, feedback.warn)
    feedback.info(f"Decorrelating {source.channels} channel(s) of {source.width} x {source.height} "
                  f"pixels on {device.type}.")
    with bounded_gdal_cache():
        estimates = estimate(source, settings, device, feedback, (0.0, 0.1))
        set_output_grid(estimates, settings)
        for c, est in enumerate(estimates):
            parts = [f"{p.name}: centroid {p.centroid:+.3f}, bandwidth {p.bandwidth:.3f}"
                     + (f", drift {p.drift * p.length:+.2f} cycles over the image" if p.drift else "")
                     for p in est.plans]
            feedback.info(f"Channel {c + 1}: {'; '.join(parts)}; {est.point_targets} point targets.")
        height, width = estimates[0].plans[0].out_length, estimates[0].plans[1].out_length
        resampled = (height, width) != (source.height, source.width)
        info = source.info
        if resampled:
            info = _resampled_info(info, height, width, estimates[0].plans[0].step, estimates[0].plans[1].step)
            feedback.info(f"Resampled to {width} x {height} pixels.")
        nodata = source.nodata()
        metadata = {
            "algorithm": "decorrelate",
            "method": "lapini2014",
            "parameters": {k: v for k, v in dataclasses.asdict(settings).items() if k != "strip"},
            "plans": [{p.name: p.summary() for p in est.plans} for est in estimates],
            "plugin_version": plugin_version(),
        }
        layout = source.layout
        data_type = gdal.GDT_CFloat32 if layout == "complex" else gdal.GDT_Float32
        band_count = source.channels if layout == "complex" else 2 * source.channels
        descriptions = source.descriptions()
        folder = os.path.dirname(os.path.abspath(output_path))
        windows: list[dict] = []
        store = None
        try:
            with RasterWriter(output_path, info, band_count, nodata, descriptions, metadata,
                              data_type=data_type) as writer:
                intensity_writer = None
                if intensity_path:
                    names = [descriptions[2 * c if layout == "iq" else c] for c in range(source.channels)]
                    intensity_writer = RasterWriter(
                        intensity_path, info, source.channels, nodata if nodata is not None else 0.0,
                        [f"Intensity_{n}" if n else "Intensity" for n in names],
                        {**metadata, "units": "intensity"},
                    ).__enter__()
                try:
                    sink = _LayoutSink(writer, layout, nodata)
                    isink = None
                    if intensity_writer is not None:
                        isink = _IntensitySink(intensity_writer, nodata if nodata is not None else 0.0)
                    if settings.estimation_window:
                        windows = apply_windowed(source, estimates, settings, device, sink, isink,
                                                 feedback, (0.1, 0.9))
                    else:
                        if source.channels * source.height * width * 8 <= IN_MEMORY_LIMIT:
                            store = ArraySink(source.channels, source.height, width)
                        else:
                            store = _RasterStore(folder, source.channels, source.height, width)
                        apply_whole(source, estimates, settings, device, sink, store, isink,
                                    feedback, (0.1, 0.9))
                except BaseException as error:
                    if intensity_writer is not None:
                        intensity_writer.__exit__(type(error), error, None)
                    raise
                if intensity_writer is not None:
                    intensity_writer.__exit__(None, None, None)
        finally:
            if isinstance(store, _RasterStore):
                store.close()
        after = measure(_FileReadback(output_path, layout), estimates, height, width, settings, device)
    feedback.progress(1.0)
    report = build_report(estimates, after, settings, (source.height, source.width), (height, width),
                          device, time.perf_counter() - start, resampled, windows)
    report["input"], report["output"] = input_path, output_path
    if intensity_path:
        report["intensity_output"] = intensity_path
    for c, channel in enumerate(report["channels"]):
        b, a = channel["correlation_before"], channel["correlation_after"]
        feedback.info(
            f"Channel {c + 1}: |lag-1| azimuth {b['azimuth']['lag1']:.3f} -> {a['azimuth']['lag1']:.3f}, "
            f"range {b['range']['lag1']:.3f} -> {a['range']['lag1']:.3f}."
        )
    if report_path:
        picture = os.path.splitext(report_path)[0] + ".png"
        from .plots import spectra_png

        spectra_png(spectra_for_plot(estimates, after, settings.restore_centroid), picture)
        report["spectra_png"] = picture
        write_report(report, report_path)
    return report


class _IntensitySink:
    def __init__(self, writer: RasterWriter, nodata: float) -> None:
        self.writer, self.nodata = writer, nodata

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        self.writer.write(np.where(values == 0, np.float32(self.nodata), values), row, col)


def write_report(report: dict, path: str) -> None:
    """Write the report as JSON (atomically), without the plot arrays."""
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    folder = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(prefix=".report.", suffix=".json", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(clean, stream, indent=2, default=_json_default)
    os.replace(temp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
