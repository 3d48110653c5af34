"""Per-axis building blocks: point-target replacement, the axis plans (what each axis's filter
is), and the statistics gathered over strips (lag-1 correlations, centroid cells, averaged
periodograms) with the band-edge and response fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import chebyshev

from .settings import (
    AXES, CENTROID_CELL, CENTROID_VARIATION_MIN, EDGE_FRACTION, LOCAL_POWER_RADIUS, MAX_GAIN_DB,
    MIN_BAND_CONTRAST_DB, SEGMENT_WEIGHT_CAP, DecorrelationSettings,
)


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


def shift_spectrum(spectrum: np.ndarray, offset: float) -> np.ndarray:
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
        plan.centroid = wrap_frequency(plan.centroid + offset)
    plan.bandwidth = float(bandwidth)
    centred = shift_spectrum(spectrum, offset)
    plan.coefficients, plan.gain, plan.fit_residual_db, plan.fit_limit = fit_response(centred, plan.bandwidth)
    return plan


def wrap_frequency(f: float) -> float:
    return float((f + 0.5) % 1.0 - 0.5)
