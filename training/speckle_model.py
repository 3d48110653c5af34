"""Speckle models for training: white Gamma speckle, or speckle made the way SAR products make it.

A :class:`SpeckleModel` draws mean-1 intensity speckle (float32) to multiply a clean reference
by. Two kinds:

* **white** (``rows`` and ``cols`` None): Gamma(L, 1/L) drawn independently per pixel, L fixed
  or drawn per patch log-uniformly from ``looks = (min, max)`` (non-integer allowed). This is
  the speckle of ideal single-look (L = 1) or of independent-look averaging, and what the
  shipped networks were trained on.
* **product** (``rows``/``cols`` :class:`AxisResponse`): the chain a SAR processor applies, per
  axis (rows = azimuth, cols = range for the products we know):

  1. white complex circular Gaussian samples on the SLC sampling grid;
  2. band limitation: the spectrum is multiplied by the processor's spectral window (Hamming
     with coefficient ``alpha``, Kaiser with ``beta``, or rect) over the occupied band, which
     is ``1 / oversampling`` of the sampled spectrum (oversampling = sampling rate / processed
     bandwidth), zero outside: the correlated single-look complex image;
  3. detection |z|^2 and multilooking: the average of ``looks`` adjacent SLC samples along the
     axis (fractional: the two end samples get half the fraction each). Adjacent samples are
     themselves correlated, so the effective number of looks is below the nominal count
     (Sentinel-1 GRDH: 5 x 1 nominal, ENL 4.4);
  4. resampling of the intensity to the output grid (``linear``, ``cubic`` (Keys, a = -0.5)
     or ``nearest``), whose pixel spacing is ``spacing`` times the multilooked resolution,
     at a random sub-pixel offset per draw;
  5. optionally (``regrid``) further resamplings onto new grids at random offsets, as terrain
     correction and map projection do to a GRD (e.g. SNAP's Terrain-Correction, bilinear, to
     10 m; an export to EPSG:4326 at 0.0000898 degrees, nearest neighbour, which is 10 m
     north-south but 7.9 m east-west at 38 degrees of latitude and so repeats every fifth
     column).

  The multilooked resolution of an axis, in SLC samples, is taken as the single-look impulse
  response's -3 dB width plus ``looks - 1`` samples (the width of the response convolved with
  the multilook boxcar; exact for one look, an approximation within a few % beyond).

The fields are periodic (FFT), so a draw has no edges; a (64, 64) patch costs about a
millisecond. :data:`PRESETS` holds the models of common products;
:func:`training.speckle_fit.fit_speckle_model` fits one to the statistics measured on a user's
image (:func:`training.speckle_fit.measure`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from sar_despeckle_plugin.core.errors import SarDespeckleError

WINDOWS = ("hamming", "kaiser", "rect")
RESAMPLING = ("linear", "cubic", "nearest")
#: Side of the images :func:`measure_model` draws (the statistics' spread is about +/-0.02).
MEASURE_SIDE = 512


@dataclass(frozen=True)
class AxisResponse:
    """How a product forms its speckle along one image axis.

    Attributes:
        window: spectral weighting of the processed band: ``hamming``, ``kaiser`` or ``rect``.
        coefficient: Hamming alpha (w = alpha + (1 - alpha) cos(2 pi f / B)) or Kaiser beta;
            ignored for ``rect``.
        oversampling: sampling rate / processed bandwidth of the SLC (>= 1).
        looks: SLC samples averaged along the axis (multilook factor, >= 1, may be fractional).
        spacing: output pixel spacing / multilooked resolution (> 0): 0.5 is a product sampled
            at twice its resolution (Sentinel-1 GRDH range: 10 m pixels, ~20 m resolution).
    """

    window: str = "hamming"
    coefficient: float = 0.75
    oversampling: float = 1.0
    looks: float = 1.0
    spacing: float = 1.0

    def check(self, where: str) -> None:
        if self.window not in WINDOWS:
            raise SarDespeckleError(f"{where}.window must be one of {WINDOWS}; got '{self.window}'.")
        if self.window == "hamming" and not 0.5 <= self.coefficient <= 1.0:
            raise SarDespeckleError(f"{where}.coefficient (Hamming alpha) must be in [0.5, 1]; got {self.coefficient}.")
        if self.window == "kaiser" and not 0 <= self.coefficient <= 20:
            raise SarDespeckleError(f"{where}.coefficient (Kaiser beta) must be in [0, 20]; got {self.coefficient}.")
        if not 1.0 <= self.oversampling <= 8.0:
            raise SarDespeckleError(f"{where}.oversampling must be in [1, 8]; got {self.oversampling}.")
        if not 1.0 <= self.looks <= 64.0:
            raise SarDespeckleError(f"{where}.looks must be in [1, 64]; got {self.looks}.")
        if not 0.05 <= self.spacing <= 8.0:
            raise SarDespeckleError(f"{where}.spacing must be in [0.05, 8]; got {self.spacing}.")

    def weighting(self, frequency: np.ndarray) -> np.ndarray:
        """Amplitude of the processed spectrum at ``frequency`` (cycles per SLC sample)."""
        band = 1.0 / self.oversampling
        u = frequency / band  # -1/2 .. 1/2 inside the band
        inside = np.abs(u) <= 0.5
        if self.window == "hamming":
            w = self.coefficient + (1.0 - self.coefficient) * np.cos(2 * np.pi * u)
        elif self.window == "kaiser":
            w = np.i0(self.coefficient * np.sqrt(np.clip(1.0 - (2 * u) ** 2, 0.0, None))) / np.i0(self.coefficient)
        else:
            w = np.ones_like(u)
        return np.where(inside, w, 0.0)

    def spectrum(self, n: int) -> np.ndarray:
        """The weighting on an n-sample FFT grid (numpy order), scaled so that a unit-power
        white input keeps unit power."""
        return _spectrum(self, n)

    @property
    def irf_width(self) -> float:
        """-3 dB width of the single-look impulse response (intensity), in SLC samples."""
        return _irf_width(self.window, self.coefficient) * self.oversampling

    @property
    def resolution(self) -> float:
        """Multilooked resolution in SLC samples (impulse-response width + looks - 1)."""
        return self.irf_width + self.looks - 1.0

    @property
    def step(self) -> float:
        """Output pixel spacing in SLC samples."""
        return self.spacing * self.resolution


@functools.lru_cache(maxsize=256)
def _spectrum(axis: AxisResponse, n: int) -> np.ndarray:
    h = axis.weighting(np.fft.fftfreq(n))
    return h / math.sqrt(np.mean(h ** 2))


@functools.lru_cache(maxsize=64)
def _irf_width(window: str, coefficient: float) -> float:
    """-3 dB width of |IRF|^2 for a unit band (in units of 1 / bandwidth)."""
    n, over = 64, 256
    axis = AxisResponse(window, coefficient, 1.0, 1.0, 1.0)
    h = axis.weighting((np.arange(n) - n / 2 + 0.5) / n)
    padded = np.zeros(n * over, complex)
    padded[:n] = h
    irf = np.abs(np.fft.fft(padded)) ** 2
    irf /= irf[0]
    below = np.nonzero(irf < 0.5)[0][0]
    # linear interpolation of the half-power crossing, both sides symmetric
    x0, y0, y1 = below - 1, irf[below - 1], irf[below]
    crossing = x0 + (y0 - 0.5) / (y0 - y1)
    return 2.0 * crossing / over


@functools.lru_cache(maxsize=256)
def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n."""
    best = 1 << max(n - 1, 1).bit_length()
    for a in range(best.bit_length() + 1):
        for b in range(12):
            for c in range(8):
                value = (1 << a) * 3 ** b * 5 ** c
                if value >= n:
                    best = min(best, value)
                    break
    return best


@functools.lru_cache(maxsize=256)
def _boxcar_transfer(looks: float, n: int, real: bool) -> np.ndarray:
    """FFT of the circular multilook kernel (``looks`` adjacent samples, fractional ends)."""
    whole = int(math.floor(looks + 1e-9))
    fraction = looks - whole
    taps = np.ones(whole)
    if fraction > 1e-9:
        taps = np.concatenate([[fraction / 2], taps, [fraction / 2]])
    kernel = np.zeros(n)
    kernel[: len(taps)] = taps / taps.sum()
    kernel = np.roll(kernel, -(len(taps) // 2))
    return np.fft.rfft(kernel) if real else np.fft.fft(kernel)


def _interpolation(positions: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices (k, taps) and weights (k, taps) interpolating at ``positions``."""
    if method == "nearest":
        return np.rint(positions).astype(np.int64)[:, None], np.ones((len(positions), 1))
    base = np.floor(positions).astype(np.int64)
    t = positions - base
    if method == "linear":
        return np.stack([base, base + 1], 1), np.stack([1 - t, t], 1)
    a = -0.5  # Keys cubic convolution
    d = np.stack([t + 1, t, 1 - t, 2 - t], 1)
    near = ((a + 2) * d ** 3 - (a + 3) * d ** 2 + 1)
    far = (a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a)
    weights = np.where(d <= 1, near, far)
    return np.stack([base - 1, base, base + 1, base + 2], 1), weights


def _resample(values: np.ndarray, axis: int, count: int, step: float, offset: float, method: str) -> np.ndarray:
    """``count`` samples at ``offset + k * step`` along ``axis`` of a periodic array."""
    n = values.shape[axis]
    index, weights = _interpolation(offset + step * np.arange(count), method)
    index %= n
    moved = np.moveaxis(values, axis, -1)
    out = np.zeros(moved.shape[:-1] + (count,))
    for tap in range(index.shape[1]):
        out += moved[..., index[:, tap]] * weights[:, tap]
    return np.moveaxis(out, -1, axis)


def _log_uniform(bounds: tuple, rng: np.random.Generator) -> float:
    low, high = bounds
    return float(low) if low == high else float(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass(frozen=True)
class Regrid:
    """One more resampling of the output onto a grid of spacing ``rows`` x ``cols`` times the
    current one, by ``resampling``, at a random offset (a geocoding step)."""

    resampling: str = "linear"
    rows: float = 1.0
    cols: float = 1.0

    def check(self, where: str) -> None:
        if self.resampling not in RESAMPLING:
            raise SarDespeckleError(f"{where}.resampling must be one of {RESAMPLING}; got '{self.resampling}'.")
        if not (0.1 <= self.rows <= 10 and 0.1 <= self.cols <= 10):
            raise SarDespeckleError(f"{where}: rows and cols (spacing ratios) must be in [0.1, 10].")


@dataclass(frozen=True)
class SpeckleModel:
    """Mean-1 intensity speckle (see the module's docstring).

    Attributes:
        looks: white models: the Gamma shape L, or (min, max) drawn log-uniformly per draw.
            Product models: None (the axes' multilook factors as given), or (min, max) of
            the nominal looks (product of the axes' factors) drawn log-uniformly per draw,
            the factors of the multilooked axes scaled to reach it (grid unchanged).
        rows, cols: the response along rows (azimuth) and columns (range); both None: white.
            One None: that axis is white and not resampled.
        resampling: ``linear``, ``cubic`` or ``nearest`` interpolation onto the output grid.
        regrid: further resamplings, in order, each a :class:`Regrid` (terrain correction,
            map projection: each onto a new grid at a random offset).
        name: preset name, or "" / "fitted".
    """

    looks: float | tuple | None = 1.0
    rows: AxisResponse | None = None
    cols: AxisResponse | None = None
    resampling: str = "linear"
    regrid: tuple = ()
    name: str = ""
    source: str = field(default="", compare=False)

    # -- checks and descriptions ------------------------------------------------------------

    @property
    def white(self) -> bool:
        return self.rows is None and self.cols is None

    @property
    def looks_range(self) -> tuple | None:
        if self.looks is None:
            return None
        if isinstance(self.looks, (tuple, list)):
            return float(self.looks[0]), float(self.looks[1])
        return float(self.looks), float(self.looks)

    @property
    def nominal_looks(self) -> float:
        """White: L (mid-range geometric mean); product: looks along rows x along cols."""
        if self.white:
            low, high = self.looks_range
            return math.sqrt(low * high)
        return (self.rows.looks if self.rows else 1.0) * (self.cols.looks if self.cols else 1.0)

    def check(self, where: str = "speckle model") -> "SpeckleModel":
        bounds = self.looks_range
        if self.white and bounds is None:
            raise SarDespeckleError(f"{where}: a white speckle model needs looks (a number or [min, max]).")
        if bounds is not None and not (1.0 <= bounds[0] <= bounds[1] <= 1e4):
            raise SarDespeckleError(f"{where}.looks must be >= 1, or [min, max] with 1 <= min <= max; got {self.looks}.")
        if self.resampling not in RESAMPLING:
            raise SarDespeckleError(f"{where}.resampling must be one of {RESAMPLING}; got '{self.resampling}'.")
        for name in ("rows", "cols"):
            axis = getattr(self, name)
            if axis is not None:
                axis.check(f"{where}.{name}")
        for i, stage in enumerate(self.regrid):
            stage.check(f"{where}.regrid[{i}]")
        if self.white and self.regrid:
            raise SarDespeckleError(f"{where}: regrid needs a product model (rows and/or cols).")
        return self

    def describe(self) -> str:
        """One line for logs and model cards."""
        if self.white:
            low, high = self.looks_range
            looks = f"{low:g}" if low == high else f"L log-uniform in [{low:g}, {high:g}]"
            return f"white Gamma({looks}, 1/{looks if low == high else 'L'}) speckle"
        parts = []
        for label, axis in (("rows/azimuth", self.rows), ("cols/range", self.cols)):
            if axis is None:
                parts.append(f"{label}: white")
            else:
                window = "rect" if axis.window == "rect" else f"{axis.window} {axis.coefficient:g}"
                parts.append(f"{label}: {window}, oversampling {axis.oversampling:g}, {axis.looks:g} looks, "
                             f"spacing {axis.spacing:g} x resolution")
        extra = f", nominal looks in [{self.looks_range[0]:g}, {self.looks_range[1]:g}]" if self.looks else ""
        geocoded = "".join(f", then {r.resampling} onto {r.rows:g} x {r.cols:g} spacing" for r in self.regrid)
        name = f"{self.name}: " if self.name else ""
        return f"{name}product speckle ({'; '.join(parts)}; {self.resampling} resampling{geocoded}{extra})"

    def as_dict(self) -> dict:
        """The fields, as a ``[data.speckle]`` table holds them."""
        record = {}
        if self.looks is not None:
            record["looks"] = list(self.looks_range) if isinstance(self.looks, (tuple, list)) else float(self.looks)
        for name in ("rows", "cols"):
            axis = getattr(self, name)
            if axis is not None:
                record[name] = dataclasses.asdict(axis)
        if not self.white:
            record["resampling"] = self.resampling
            if self.regrid:
                record["regrid"] = [dataclasses.asdict(r) for r in self.regrid]
        return record

    def to_toml(self) -> str:
        """The ``[data.speckle]`` block of a training config that selects this model."""
        lines = ["[data.speckle]"]
        for key, value in self.as_dict().items():
            if isinstance(value, dict):
                lines.append(f"{key} = {_toml_table(value)}")
            elif key == "regrid":
                lines.append(f"{key} = [{', '.join(_toml_table(v) for v in value)}]")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines)

    # -- drawing ----------------------------------------------------------------------------

    def _axes_for(self, looks: float | None) -> tuple:
        """The axes with their multilook factors scaled to reach nominal ``looks``."""
        if looks is None:
            return self.rows, self.cols
        nominal = self.nominal_looks
        scale = looks / nominal
        axes = [self.rows, self.cols]
        multilooked = [i for i, a in enumerate(axes) if a is not None and a.looks > 1]
        present = [i for i, a in enumerate(axes) if a is not None]
        for i in present:
            axis = axes[i]
            if multilooked:
                if i not in multilooked:
                    continue
                share = math.log(axis.looks) / math.log(nominal) if nominal > 1 else 1.0 / len(multilooked)
            else:
                share = 1.0 / len(present)
            new_looks = max(1.0, axis.looks * scale ** share)
            # keep the output grid: the spacing in SLC samples stays the nominal one
            resolution = axis.irf_width + new_looks - 1.0
            axes[i] = dataclasses.replace(axis, looks=new_looks, spacing=axis.step / resolution)
        return tuple(axes)

    def draw(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """Speckle of ``shape`` (..., rows, cols), float32, mean 1 in expectation; the leading
        axes are independent images (one looks draw and one grid offset for all)."""
        shape = tuple(int(s) for s in shape)
        if self.white:
            low, high = self.looks_range
            looks = low if low == high else _log_uniform((low, high), rng)
            return rng.gamma(looks, 1.0 / looks, shape).astype(np.float32)
        looks = None if self.looks is None else _log_uniform(self.looks_range, rng)
        return self._draw_product(shape, rng, self._axes_for(looks)).astype(np.float32)

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``clean`` intensity times a draw (float32). White fixed-L models call the random
        generator exactly as ``training.data.speckled`` always has, so old configs draw the
        same patches."""
        if self.white and self.looks_range[0] == self.looks_range[1]:
            looks = self.looks_range[0]
            return (clean * rng.gamma(looks, 1.0 / looks, clean.shape)).astype(np.float32)
        return (clean * self.draw(clean.shape, rng)).astype(np.float32)

    def _draw_product(self, shape: tuple, rng: np.random.Generator, axes: tuple) -> np.ndarray:
        *lead, height, width = shape
        count = int(np.prod(lead)) if lead else 1
        # output samples needed before each regrid stage, and the spacing ratio of each axis
        needed = [(height, width)]
        for stage in reversed(self.regrid):
            rows, cols = needed[0]
            needed.insert(0, (int(math.ceil(rows * stage.rows)) + 5, int(math.ceil(cols * stage.cols)) + 5))
        sizes = []
        for out, axis in zip(needed[0], axes):
            sizes.append(out if axis is None else _fft_size(int(math.ceil(out * axis.step + axis.looks + 6))))
        n_rows, n_cols = sizes
        noise = rng.standard_normal((2, count, n_rows, n_cols))
        z = (noise[0] + 1j * noise[1]) * math.sqrt(0.5)
        filters = [np.ones(n) if a is None else a.spectrum(n) for n, a in zip(sizes, axes)]
        z = np.fft.ifft2(np.fft.fft2(z) * filters[0][:, None] * filters[1][None, :])
        intensity = z.real ** 2 + z.imag ** 2
        if any(a is not None and a.looks != 1 for a in axes):
            boxcars = [
                np.ones(n // 2 + 1 if i else n) if a is None or a.looks == 1
                else _boxcar_transfer(float(a.looks), n, bool(i))
                for i, (n, a) in enumerate(zip(sizes, axes))
            ]
            spectrum = np.fft.rfft2(intensity) * boxcars[0][:, None] * boxcars[1][None, :]
            intensity = np.fft.irfft2(spectrum, s=(n_rows, n_cols))
        for dim, (out, axis) in enumerate(zip(needed[0], axes)):
            if axis is None:
                intensity = np.take(intensity, np.arange(out), axis=dim - 2)
            else:
                step = axis.step
                intensity = _resample(intensity, dim - 2, out, step, rng.uniform(0, step), self.resampling)
        for stage, size in zip(self.regrid, needed[1:]):
            for dim, (out, ratio) in enumerate(zip(size, (stage.rows, stage.cols))):
                intensity = _resample(intensity, dim - 2, out, ratio, 1.0 + rng.uniform(0, 1),
                                      stage.resampling)
        return intensity.reshape(shape)


#: Half-side (pixels) of :func:`point_response`'s kernel.
POINT_RESPONSE_RADIUS = 3


def point_response(model: SpeckleModel, shift: tuple = (0.0, 0.0), radius: int = POINT_RESPONSE_RADIUS) -> np.ndarray:
    """What a dominant point scatterer looks like in the product ``model`` describes: its
    impulse response through the same chain as the speckle (band limitation by each axis's
    window, detection, multilooking, sampling onto the output grid), the scatterer ``shift``
    (rows, cols) pixels from the kernel's centre (sub-pixel: a real target sits anywhere in its
    pixel), scaled so that a centred scatterer peaks at 1; float32 (2 radius + 1, 2 radius + 1).
    A white model's (or axis's) is a single pixel; the ``regrid`` stages are left out (they
    spread it by less than a pixel more).

    An SLC oversampled 1.5 x shows a corner reflector over about 2 x 2 pixels, its first
    neighbours at 0.1-0.4 of the peak (the ALOS PALSAR reflector in ../shared/data/slc, HH: 0.11
    above and 0.25 below it, 0.00 left and 0.20 right): a network trained with single-pixel scatterers
    on such speckle takes the real response for speckle and flattens it."""
    axes = (model.rows, model.cols)
    kernel = np.outer(*[_axis_point_response(a, model.resampling, radius, d) for a, d in zip(axes, shift)])
    return (kernel / _centred_peak(model, radius)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _centred_peak(model: SpeckleModel, radius: int) -> float:
    axes = (model.rows, model.cols)
    return float(np.outer(*[_axis_point_response(a, model.resampling, radius, 0.0) for a in axes]).max())


def _axis_point_response(axis: AxisResponse | None, resampling: str, radius: int, shift: float) -> np.ndarray:
    """One axis of :func:`point_response`: 2 radius + 1 samples (not normalised), the scatterer
    ``shift`` output pixels off the centre (a white axis: the nearest pixel)."""
    profile = np.zeros(2 * radius + 1)
    if axis is None:
        profile[radius + int(np.rint(shift))] = 1.0
        return profile
    n = _fft_size(8 * int(math.ceil((2 * radius + 2) * axis.step + axis.looks)))
    delay = np.exp(-2j * np.pi * np.fft.fftfreq(n) * shift * axis.step)  # shift in SLC samples
    intensity = np.abs(np.fft.ifft(axis.spectrum(n) * delay)) ** 2  # the detected response
    if axis.looks != 1:
        intensity = np.fft.irfft(np.fft.rfft(intensity) * _boxcar_transfer(float(axis.looks), n, True), n)
    index, weights = _interpolation(axis.step * np.arange(-radius, radius + 1), resampling)
    return (intensity[index % n] * weights).sum(1)


def _toml_table(table: dict) -> str:
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in table.items()) + " }"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return f"{round(float(value), 4):g}"


# -- exact statistics -------------------------------------------------------------------------


def _axis_operator(axis: AxisResponse, regrid: list, resampling: str, count: int, offsets: tuple) -> np.ndarray:
    """The linear map from SLC-sample intensities to ``count`` output pixels along one axis
    (multilook, resampling, regrids), for the given sub-pixel offsets."""
    sizes = [count]
    for method, ratio in reversed(regrid):
        sizes.insert(0, int(math.ceil(sizes[0] * ratio)) + 5)
    n = int(math.ceil(sizes[0] * axis.step + axis.looks + 8))
    kernel = np.fft.irfft(_boxcar_transfer(float(axis.looks), n, True), n)
    boxcar = np.stack([np.roll(kernel, i) for i in range(n)], 1)  # column i: kernel centred on i
    index, weights = _interpolation(offsets[0] + axis.step * np.arange(sizes[0]) + axis.looks + 2, resampling)
    operator = np.zeros((sizes[0], n))
    np.add.at(operator, (np.arange(sizes[0])[:, None].repeat(index.shape[1], 1), index % n), weights)
    operator = operator @ boxcar.T
    for (method, ratio), size, offset in zip(regrid, sizes[1:], offsets[1:]):
        index, weights = _interpolation(1.0 + offset + ratio * np.arange(size), method)
        stage = np.zeros((size, operator.shape[0]))
        np.add.at(stage, (np.arange(size)[:, None].repeat(index.shape[1], 1), np.clip(index, 0, operator.shape[0] - 1)),
                  weights)
        operator = stage @ operator
    return operator


def axis_statistics(axis: AxisResponse | None, regrid: list, resampling: str = "linear", lags: int = 2,
                    seed: int = 0) -> tuple[float, tuple]:
    """Exact second-order statistics of the speckle along one axis: the variance factor v
    (the intensity variance is v_rows * v_cols, the true ENL 1 / (v_rows v_cols)) and the
    autocorrelation at lags 1..``lags``, averaged over grid offsets. Uses Cov(I_i, I_j) =
    |rho(i - j)|^2 for circular Gaussian SLC samples of complex correlation rho."""
    if axis is None:
        return 1.0, (0.0,) * lags
    rng = np.random.default_rng(seed)
    n_rho = 4096
    power = axis.spectrum(n_rho) ** 2
    rho = np.fft.ifft(power) / power.mean()
    count = 24
    variance, covariance = [], []
    for _ in range(4):
        offsets = (rng.uniform(0, axis.step),) + tuple(rng.uniform(0, 1) for _ in regrid)
        operator = _axis_operator(axis, regrid, resampling, count, offsets)
        n = operator.shape[1]
        lag = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        cov = operator @ (np.abs(rho[lag]) ** 2) @ operator.T
        inner = slice(4, count - 4)
        variance.append(np.diag(cov)[inner].mean())
        covariance.append([np.diag(cov, k)[4: count - 4 - k].mean() for k in range(1, lags + 1)])
    v = float(np.mean(variance))
    return v, tuple(float(c) / v for c in np.mean(covariance, axis=0))


def true_statistics(model: SpeckleModel, lags: int = 2) -> dict:
    """The model's exact ENL (mean^2 / variance of the intensity) and autocorrelation at lags
    1..``lags`` per axis (white models: L and zeros; looks ranges: at the geometric middle;
    mixtures: the components' geometric mean looks and largest autocorrelations)."""
    if isinstance(model, SpeckleMixture):
        parts = [true_statistics(c, lags) for c in model.components]
        return {"looks": math.exp(float(np.mean([math.log(p["looks"]) for p in parts]))),
                **{axis: tuple(max(p[axis][k] for p in parts) for k in range(lags)) for axis in ("rows", "cols")}}
    if model.white:
        return {"looks": model.nominal_looks, "rows": (0.0,) * lags, "cols": (0.0,) * lags}
    looks = None if model.looks is None else math.sqrt(model.looks_range[0] * model.looks_range[1])
    rows, cols = model._axes_for(looks)
    v_r, c_r = axis_statistics(rows, [(r.resampling, r.rows) for r in model.regrid], model.resampling, lags)
    v_c, c_c = axis_statistics(cols, [(r.resampling, r.cols) for r in model.regrid], model.resampling, lags)
    return {"looks": 1.0 / (v_r * v_c), "rows": c_r, "cols": c_c}


@dataclass(frozen=True)
class SpeckleMixture:
    """Several product speckle models, one drawn (uniformly) per patch: for a product whose
    processors differ, e.g. Sentinel-1 GRDH from ESA's processor and after Earth Engine's
    terrain correction (``speckle = ["sentinel1_iw_grdh", "sentinel1_iw_grdh_ee"]``).

    It answers what the training reads of a model (``white``, ``looks``, ``describe``,
    ``apply``); :func:`true_statistics` and :func:`looks_interval` take the components'
    largest correlation and their looks' span, and :meth:`pick` gives the component one patch
    is drawn with.
    """

    components: tuple[SpeckleModel, ...]
    label: str = ""
    white = False
    looks = None

    @property
    def name(self) -> str:
        """``label`` (a family, :func:`random_products`), else the components' names."""
        return self.label or " + ".join(c.name or "custom" for c in self.components)

    def pick(self, rng: np.random.Generator) -> SpeckleModel:
        return self.components[int(rng.integers(len(self.components)))]

    def apply(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.pick(rng).apply(clean, rng)

    def describe(self) -> str:
        if self.label:
            white = sum(c.white for c in self.components)
            return (f"{self.label}: one per patch of {len(self.components)} speckle models "
                    f"({len(self.components) - white} products, {white} white)")
        return "one per patch of: " + "; ".join(c.describe() for c in self.components)


# -- presets and configs ------------------------------------------------------------------------


def multilook_white(looks) -> SpeckleModel:
    """White Gamma speckle of ``looks`` (a number, or (min, max) drawn log-uniformly)."""
    bounds = tuple(looks) if isinstance(looks, (list, tuple)) else looks
    return SpeckleModel(looks=bounds, name="multilook_white").check()


#: Sentinel-1 IW processing constants (ESA Sentinel-1 Product Specification S1-RS-MDA-52-7441
#: and the Sentinel-1 User Handbook; typical IW SLC annotation values, see docs/training.md):
#: range sampling rate 64.345 MHz for a processed range bandwidth of 56.5 / 48.3 / 42.8 MHz
#: (IW1 / IW2 / IW3): oversampling 1.14 / 1.33 / 1.50, IW2 taken; azimuth sampling ~486 Hz
#: (azimuth time interval 2.056 ms) for a processed azimuth bandwidth of ~327 Hz: 1.49;
#: Hamming windows of coefficient 0.75 in range and azimuth; GRDH: 5 range x 1 azimuth looks,
#: 10 m x 10 m pixels for ~20 m (range) x 22 m (azimuth) resolution, ENL 4.4.
_S1_AZIMUTH = AxisResponse("hamming", 0.75, 1.49, 1.0, round(10 / 22, 4))
_S1_RANGE = AxisResponse("hamming", 0.75, 1.33, 5.0, 0.5)
#: A generic stripmap SLC: Hamming 0.75 weighting, sampled 1.2 x its processed bandwidth on both
#: axes (ALOS PALSAR, TerraSAR-X and Envisat ASAR SLCs are sampled 1.1-1.3 x theirs).
_GENERIC_SLC = AxisResponse("hamming", 0.75, 1.2, 1.0, 1.0)


def on_slc_grid(axis: AxisResponse, block: int = 1) -> AxisResponse:
    """``axis`` detected on its own SLC sampling grid, ``block`` adjacent samples averaged and one
    pixel kept per block (the block multilooking of SNAP's Multilook or of a k x k mean): looks =
    ``block``, output step = ``block`` SLC samples. Sample it with ``resampling = "nearest"``."""
    looked = dataclasses.replace(axis, looks=float(block))
    return dataclasses.replace(looked, spacing=block / looked.resolution)


PRESETS: dict[str, SpeckleModel] = {
    # the shipped networks' speckle: ideal single-look, spatially white (L = 1)
    "slc_single_look": SpeckleModel(looks=1.0, name="slc_single_look",
                                    source="fully developed single-look speckle, white (decorrelated SLC)"),
    # Sentinel-1 IW SLC intensity as delivered, detected without multilooking: single look,
    # correlated by the oversampling (lag-1 0.38 azimuth / 0.29 range)
    "sentinel1_iw_slc": SpeckleModel(
        looks=None, rows=on_slc_grid(_S1_AZIMUTH), cols=on_slc_grid(dataclasses.replace(_S1_RANGE, looks=1.0)),
        resampling="nearest", name="sentinel1_iw_slc",
        source="the Sentinel-1 IW windows and oversampling of sentinel1_iw_grdh, on the SLC grid",
    ),
    # the same SLC multilooked 4 (range) x 1 (azimuth), SNAP's default for IW: about 14 x 14 m
    "sentinel1_iw_slc_ml4x1": SpeckleModel(
        looks=None, rows=on_slc_grid(_S1_AZIMUTH), cols=on_slc_grid(dataclasses.replace(_S1_RANGE, looks=1.0), 4),
        resampling="nearest", name="sentinel1_iw_slc_ml4x1",
        source="sentinel1_iw_slc averaged over blocks of 4 range samples (SNAP Multilook's IW default)",
    ),
    # a generic stripmap SLC intensity, detected on its grid (lag-1 0.21 on both axes)
    "stripmap_slc": SpeckleModel(
        looks=None, rows=on_slc_grid(_GENERIC_SLC), cols=on_slc_grid(_GENERIC_SLC), resampling="nearest",
        name="stripmap_slc", source="Hamming 0.75, oversampling 1.2 on both axes: typical of stripmap SLCs",
    ),
    # ESA's IW GRDH as delivered, in its ground-range / azimuth grid
    "sentinel1_iw_grdh": SpeckleModel(
        looks=None, rows=_S1_AZIMUTH, cols=_S1_RANGE, resampling="linear", name="sentinel1_iw_grdh",
        source="ESA Sentinel-1 Product Specification / User Handbook nominal values (see docs/training.md)",
    ),
    # the same product after Google Earth Engine's COPERNICUS/S1_GRD processing (terrain
    # correction) and an export to EPSG:4326 at 0.0000898 degrees, nearest neighbour (10 m
    # north-south, 7.9 m east-west at 38 degrees N: every fifth column repeated), as in
    # Sen1Floods11; effective spacings fitted to a real crop of it (fit_speckle_model, keep_looks)
    "sentinel1_iw_grdh_ee": SpeckleModel(
        looks=None, rows=dataclasses.replace(_S1_AZIMUTH, spacing=0.4),
        cols=dataclasses.replace(_S1_RANGE, spacing=0.3), resampling="linear",
        regrid=(Regrid("nearest", 1.0, 0.787),), name="sentinel1_iw_grdh_ee",
        source="sentinel1_iw_grdh's windows, oversampling and looks; spacings fitted to the Sen1Floods11 "
               "GRDH crop (Vega Baja, 2019-09-17, VV)",
    ),
}

#: The span of :func:`random_products`: the exact ENL of its models.
FAMILY_LOOKS = (1.0, 16.0)


def _random_axis(rng: np.random.Generator, slc_grid: bool) -> AxisResponse:
    """One axis of a random product: Hamming weighting (alpha 0.6-1), oversampling 1.05-1.6;
    on the SLC grid, 1-4 samples averaged per pixel; else 1-6 looks resampled at 0.3-0.9 of
    the multilooked resolution."""
    base = AxisResponse("hamming", round(float(rng.uniform(0.6, 1.0)), 3), round(float(rng.uniform(1.05, 1.6)), 3))
    if slc_grid:
        return on_slc_grid(base, int(rng.integers(1, 5)))
    return dataclasses.replace(base, looks=round(_log_uniform((1.0, 6.0), rng), 2),
                               spacing=round(float(rng.uniform(0.3, 0.9)), 3))


def random_product(rng: np.random.Generator) -> SpeckleModel:
    """The speckle of a product drawn at random (its exact ENL anywhere from 1 up): an SLC
    intensity detected (and block-multilooked) on its own grid, or a multilooked product
    resampled to its output grid (linear or cubic), a quarter of those then regridded by
    nearest neighbour as a map export does; one axis in six left white (oversampled along the
    other only)."""
    slc_grid = bool(rng.random() < 0.4)
    rows, cols = _random_axis(rng, slc_grid), _random_axis(rng, slc_grid)
    if rng.random() < 1 / 6:
        rows, cols = (None, cols) if rng.random() < 0.5 else (rows, None)
    if slc_grid:
        return SpeckleModel(looks=None, rows=rows, cols=cols, resampling="nearest", name="random_product")
    regrid = ()
    if rng.random() < 0.25:
        regrid = (Regrid("nearest", 1.0, round(float(rng.uniform(0.75, 1.0)), 3)),)
    return SpeckleModel(looks=None, rows=rows, cols=cols, resampling=str(rng.choice(["linear", "linear", "cubic"])),
                        regrid=regrid, name="random_product")


def random_products(count: int = 160, seed: int = 0, white_share: float = 0.15) -> SpeckleMixture:
    """A family of speckle models to train one network for every product (one drawn per
    patch): the product presets, ``count`` :func:`random_product` draws whose exact ENL lies in
    :data:`FAMILY_LOOKS`, and a ``white_share`` of white models (L log-uniform in the same
    span). Deterministic for a ``seed``."""
    rng = np.random.default_rng(seed)
    models = [model for model in PRESETS.values() if not model.white]
    drawn = 0
    while drawn < count:
        model = random_product(rng)
        if FAMILY_LOOKS[0] <= true_statistics(model)["looks"] <= FAMILY_LOOKS[1]:
            models.append(model)
            drawn += 1
    white = int(round(white_share * len(models) / (1 - white_share)))
    models += [multilook_white(round(_log_uniform(FAMILY_LOOKS, rng), 2)) for _ in range(white)]
    return SpeckleMixture(tuple(models), label="random_products")


#: Speckle families a ``[data.speckle]`` table may name (``family = NAME``, ``count``, ``seed``).
FAMILIES = {"random_products": random_products}

#: Keys of a ``[data.speckle]`` table.
SPECKLE_KEYS = ("preset", "name", "looks", "rows", "cols", "resampling", "regrid")
#: Keys of a ``[data.speckle]`` table that names a family.
FAMILY_KEYS = ("family", "count", "seed")


def preset(name: str) -> SpeckleModel:
    if name not in PRESETS:
        close = [p for p in PRESETS if p.startswith(name[:6])] if name else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SarDespeckleError(f"Unknown speckle preset '{name}'{hint}; choose one of {sorted(PRESETS)}.")
    return PRESETS[name]


def _axis_from(table, where: str) -> AxisResponse:
    if not isinstance(table, dict):
        raise SarDespeckleError(f"{where} must be a table {{ window, coefficient, oversampling, looks, spacing }}.")
    fields = {f.name: f for f in dataclasses.fields(AxisResponse)}
    for key, value in table.items():
        if key not in fields:
            raise SarDespeckleError(f"Unknown key '{key}' in {where}; allowed: {', '.join(fields)}.")
        if key == "window":
            if not isinstance(value, str):
                raise SarDespeckleError(f"{where}.window must be a string.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SarDespeckleError(f"{where}.{key} must be a number; got {value!r}.")
    values = {k: (v if k == "window" else float(v)) for k, v in table.items()}
    if values.get("window") == "kaiser" and "coefficient" not in values:
        raise SarDespeckleError(f"{where}: a Kaiser window needs its beta as coefficient.")
    return AxisResponse(**values)


def _model_name(value, where: str) -> str:
    """A table's own name for its model (what cards and METHOD labels show instead of "custom"):
    letters, digits and underscores, not a preset's name."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
        raise SarDespeckleError(f"{where} must be a name of letters, digits and underscores; got {value!r}.")
    if value in PRESETS or value in ("white", "custom", "real", "fitted"):
        raise SarDespeckleError(f"{where}: '{value}' names a preset or a kind of speckle; choose another name.")
    return value


def _looks_value(value, where: str):
    if isinstance(value, bool):
        raise SarDespeckleError(f"{where} must be a number or [min, max]; got {value!r}.")
    if isinstance(value, (int, float)):
        return float(value)
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return (float(value[0]), float(value[1]))
    raise SarDespeckleError(f"{where} must be a number or [min, max]; got {value!r}.")


def model_from_config(speckle, looks=1.0, looks_given: bool = False,
                      where: str = "[data]") -> SpeckleModel | SpeckleMixture:
    """The speckle model of a config's ``[data]`` table: ``speckle`` is "" (white speckle of
    ``looks``, as before speckle models existed), a preset name, a list of names or tables (a
    :class:`SpeckleMixture`: one drawn per patch), or a ``[data.speckle]`` table
    (``preset`` and/or ``looks``, ``rows``, ``cols``, ``resampling``, ``regrid``; fields given
    override the preset's; ``name`` names the result, "custom" otherwise). ``looks`` (a number
    or [min, max]) applies to white models, and to
    product models when ``looks_given`` (the ``[data].looks`` key was written) and it is a
    range (a single number there is the old white-speckle setting: a product model keeps its
    own multilook factors unless ``[data.speckle].looks`` says otherwise)."""
    looks = _looks_value(looks, f"{where}.looks")
    if isinstance(speckle, list):
        if len(speckle) < 2:
            raise SarDespeckleError(f"{where}.speckle: a list mixes two or more models; give one model as a name or table.")
        return SpeckleMixture(tuple(model_from_config(item, looks, looks_given, f"{where}.speckle[{index}]")
                                    for index, item in enumerate(speckle)))
    if speckle == "" or speckle is None:
        return SpeckleModel(looks=looks).check(f"{where}.looks")
    if isinstance(speckle, str):
        speckle = {"preset": speckle}
    if not isinstance(speckle, dict):
        raise SarDespeckleError(f"{where}.speckle must be a preset name or a table.")
    table_where = f"{where}.speckle"
    if "family" in speckle:
        return _family_from(speckle, table_where)
    for key in speckle:
        if key not in SPECKLE_KEYS:
            raise SarDespeckleError(f"Unknown key '{key}' in {table_where}; allowed: {', '.join(SPECKLE_KEYS)}.")
    model = preset(speckle["preset"]) if "preset" in speckle else SpeckleModel(looks=None)
    changes = {}
    if "looks" in speckle:
        changes["looks"] = _looks_value(speckle["looks"], f"{table_where}.looks")
    elif (model.white and "rows" not in speckle and "cols" not in speckle) or (looks_given and isinstance(looks, tuple)):
        changes["looks"] = looks
    for name in ("rows", "cols"):
        if name in speckle:
            changes[name] = _axis_from(speckle[name], f"{table_where}.{name}")
    if "resampling" in speckle:
        changes["resampling"] = speckle["resampling"]
    if "regrid" in speckle:
        stages = speckle["regrid"]
        if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
            raise SarDespeckleError(f"{table_where}.regrid must be a list of tables {{ resampling, rows, cols }}.")
        try:
            changes["regrid"] = tuple(Regrid(**stage) for stage in stages)
        except TypeError as error:
            raise SarDespeckleError(f"{table_where}.regrid: {error}.") from None
    if changes:
        model = dataclasses.replace(model, name=model.name if set(changes) <= {"looks"} else "custom", **changes)
    if "name" in speckle:
        model = dataclasses.replace(model, name=_model_name(speckle["name"], f"{table_where}.name"))
    if model.white and model.looks is None:
        raise SarDespeckleError(f"{table_where}: give a preset, rows/cols, or looks.")
    return model.check(table_where)


def _family_from(table: dict, where: str) -> SpeckleMixture:
    unknown = [key for key in table if key not in FAMILY_KEYS]
    if unknown:
        raise SarDespeckleError(f"Unknown key '{unknown[0]}' in {where} (a family takes {', '.join(FAMILY_KEYS)}).")
    if table["family"] not in FAMILIES:
        raise SarDespeckleError(f"{where}.family must be one of {sorted(FAMILIES)}; got '{table['family']}'.")
    count, seed = table.get("count", 160), table.get("seed", 0)
    if not (isinstance(count, int) and 2 <= count <= 4096 and isinstance(seed, int)):
        raise SarDespeckleError(f"{where}: count must be an integer in [2, 4096] and seed an integer.")
    return FAMILIES[table["family"]](count, seed)


def looks_interval(model: SpeckleModel) -> tuple[float, float]:
    """The true ENL the model's draws span (white: its looks; product: computed; mixture: the
    span of its components')."""
    if isinstance(model, SpeckleMixture):
        spans = [looks_interval(c) for c in model.components]
        return min(low for low, _ in spans), max(high for _, high in spans)
    if model.white:
        return model.looks_range
    if model.looks is None:
        enl = true_statistics(model)["looks"]
        return enl, enl
    ends = [true_statistics(dataclasses.replace(model, looks=float(v)))["looks"] for v in model.looks_range]
    return min(ends), max(ends)
