"""What a despeckling run is asked to do (:class:`DespeckleSettings`) and its checks, what it
works out per band (:class:`BandStatistics`), the interface every method presents to the
pipeline (:class:`BandDespeckler`), and what it reports (:class:`DespeckleReport`). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .. import speckle
from ..choices import AUTOMATIC_METHOD, BAND_LAYOUT_LABELS, CLASSICAL_METHOD_LABELS, DEFAULT_METHOD, LAYOUT_BANDS
from ..errors import SarDespeckleError

if TYPE_CHECKING:
    import torch

#: Smallest image side we accept (pixels).
MIN_SIDE = 3


@dataclass(frozen=True)
class DespeckleSettings:
    """What the user chose; ``None`` means "work it out from the data".

    Attributes:
        method: one of ``filters.CLASSICAL_METHODS`` (the ids of
            ``choices.CLASSICAL_METHOD_LABELS``), or ``automatic`` (the network whose card
            covers the input's looks and speckle correlation, else the best classical filter and
            window measured for them: ``core.despeckle.choice``); ignored when ``model_card`` is set.
        model_card: path of a network's model card (JSON beside its weights), or None.
        networks: ``automatic`` only: the model cards it may choose from, in order (None: the
            shipped networks).
        bands: 1-based bands to despeckle (all when ``None``), in the order ``layout`` reads them.
        layout: a key of ``choices.BAND_LAYOUT_LABELS``: ``single`` (any number of bands, each
            despeckled on its own), ``dual`` (two bands, VV and VH intensities, each on its own)
            or ``c2`` (four bands C11, C22, Re C12, Im C12, linear, despeckled jointly into a
            valid covariance: ``core.despeckle.layouts``).
        units: ``intensity``, ``amplitude`` or ``dB`` (detected when ``None``).
        looks: equivalent number of looks of the input intensity (estimated when ``None``).
        window: odd window side in pixels.
        device: ``auto``, ``cpu`` or ``cuda``.
        self_ensemble: networks only: also despeckle the left-right mirror image and keep the
            geometric mean of the two estimates (+0.04 dB PSNR for twice the time: off by
            default; 0.9 s per megapixel on two CPU cores with native bfloat16, 1.5 s in float32,
            for the default's single pass).
        keep_point_targets: networks only: dominant scatterers (20 dB over their surroundings:
            corner reflectors, ships) are kept as measured instead of being spread over their
            neighbours (:mod:`.point_targets`). Off by default: on simulated white speckle,
            which speckles persistent scatterers too, keeping them costs 0.3-0.7 dB PSNR.
            ``automatic`` turns it on when it picks a network for correlated speckle (SLC and
            GRD products: :mod:`.choice`).
        zeros_as_nodata: exact zeros that form the border fill (Sentinel-1 swath borders: zero
            runs of ``speckle.FILL_RUN``+ pixels or reaching the image edge or nodata) count as
            nodata; isolated zeros, and every zero of 8-bit bands, stay data.
        frost_damping: damping factor D of the Frost kernel exp(-D * Ci^2 * distance).
        tile: tile core side for the tiling engine (pixels); chosen from the image width and
            band count to bound memory when ``None``.
    """

    method: str = DEFAULT_METHOD
    model_card: str | None = None
    networks: tuple[str, ...] | None = None
    bands: tuple[int, ...] | None = None
    layout: str = "single"
    units: str | None = None
    looks: float | None = None
    window: int = 7
    device: str = "auto"
    self_ensemble: bool = False
    keep_point_targets: bool = False
    zeros_as_nodata: bool = True
    frost_damping: float = 2.0
    tile: int | None = None


@dataclass(frozen=True)
class DespeckleReport:
    """What a run did: the units, the looks of each channel (``layouts``: each band, or C2's four
    intensities), the device, the output path; the ratio and
    report paths and the report's content (its JSON twin) when they were asked for."""

    output: str
    units: str
    looks: tuple[float, ...]
    device: str
    nodata: float | None
    ratio: str | None = None
    report: str | None = None
    quality: dict | None = None


def check_settings(settings: DespeckleSettings) -> None:
    """Refuse settings no image could make sense of, with the parameter's name."""
    if settings.model_card is None and settings.method != AUTOMATIC_METHOD:
        if settings.method not in CLASSICAL_METHOD_LABELS:
            raise SarDespeckleError(
                f"Unknown method '{settings.method}'; choose one of "
                f"{', '.join(CLASSICAL_METHOD_LABELS)} or {AUTOMATIC_METHOD}."
            )
        minimum = 5 if settings.method == "refined_lee" else 3
        if settings.window < minimum or settings.window % 2 == 0:
            raise SarDespeckleError(
                f"WINDOW must be an odd number >= {minimum} for {settings.method}; "
                f"got {settings.window}."
            )
    if not settings.frost_damping > 0:
        raise SarDespeckleError(f"FROST_DAMPING must be positive; got {settings.frost_damping}.")
    if settings.looks is not None and not settings.looks > 0:
        raise SarDespeckleError(f"LOOKS must be positive; got {settings.looks}.")
    if settings.units is not None and settings.units not in speckle.UNITS:
        raise SarDespeckleError(f"INPUT_UNITS must be one of {speckle.UNITS}; got {settings.units}.")
    if settings.layout not in BAND_LAYOUT_LABELS:
        raise SarDespeckleError(f"Unknown BAND_LAYOUT '{settings.layout}'; choose one of "
                                f"{', '.join(BAND_LAYOUT_LABELS)}.")
    if settings.layout == "c2" and settings.units not in (None, "intensity"):
        raise SarDespeckleError("C2 covariance bands are linear (power): set INPUT_UNITS to intensity or "
                                "leave it empty.")


def check_band_count(layout: str, count: int, path: str) -> None:
    """Refuse an input whose selected bands (``count`` of them) do not make the ``layout``:
    dual-pol intensities need 2 bands, C2 4; single-pol takes any number."""
    needed = LAYOUT_BANDS[layout]
    if layout != "single" and count != needed:
        raise SarDespeckleError(
            f"BAND_LAYOUT '{layout}' needs {needed} bands ("
            + ("VV, VH intensities" if layout == "dual" else "C11, C22, Re C12, Im C12, linear")
            + f") but {count} band(s) of '{path}' are selected. Choose the matching BAND_LAYOUT, or pick "
            f"the {needed} bands in that order with BANDS."
        )


@dataclass(frozen=True)
class BandStatistics:
    """Whole-image statistics of one band, from the sample, in linear intensity.

    Only what the run needs is computed: the median for networks (their fill value and log
    centre), the 98th percentile for Lee sigma (its point-target threshold); else ``None``.
    ``looks`` are given (LOOKS) or estimated on blocks of neighbouring pixels; ``pixel_looks``,
    when the looks were estimated, on every second pixel (``core.speckle.pixel_looks``). On
    correlated speckle the two bracket the looks per pixel: the block estimate reads more, the
    sparse one (over texture) fewer. ``correlation``: the lag-1 autocorrelation of its speckle
    (rows, cols; ``core.quality.measure_speckle``), measured when the network that runs reads it
    (``choice.with_correlation``); None otherwise or when not measurable.
    """

    looks: float
    median: float | None
    percentile_98: float | None
    pixel_looks: float | None = None
    correlation: tuple[float, float] | None = None

    @property
    def looks_per_pixel(self) -> float:
        """The looks per pixel of correlated speckle (``core.speckle.looks_per_pixel``)."""
        return speckle.looks_per_pixel(self.looks, self.pixel_looks)


@dataclass(frozen=True)
class BandDespeckler:
    """How one run despeckles a band: the function, the context it needs, what to record.

    ``apply(intensity, valid, band)`` takes linear intensity (B, 1, H, W) and validity on the
    device, and the band's index among the selected bands; it returns linear intensity.
    """

    apply: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    halo: int
    blend: int
    alignment: int
    name: str
    checksum: str | None
