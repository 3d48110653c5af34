"""Despeckling a raster file end to end: checks, units, looks, tiled filtering, atomic write.

:func:`despeckle_raster` is what ``sar_despeckle:despeckle`` runs; scripts and tests call it
directly. Each band is sampled once (units, value checks, looks, the statistics the method
needs), then read window by window through the tiling engine: raw values (B, C, H, W) in the
input's units -> linear intensity -> the method, band by band ((B, 1, H, W)) -> the input's
units, nodata where the input was invalid.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import speckle
from .. import units as units_rule
from ..device import resolve_device
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..models.normalisation import reference_level
from ..outputs import check_destinations
from ..provenance import output_metadata
from ..raster import RasterReader, RasterWriter, bounded_gdal_cache
from ..tiling import TilingOptions, run_tiled, tile_for_width
from . import filters
from .network import network_despeckler
from .settings import (
    MIN_SIDE, BandDespeckler, BandStatistics, DespeckleReport, DespeckleSettings, check_settings,
)


def _decide_units(settings: DespeckleSettings, reader, samples, feedback) -> str:
    info = reader.info
    return units_rule.decide_units(settings.units, [
        (f"band {band}", sample.valid_values(), info.descriptions[band - 1], info.data_types[band - 1])
        for band, sample in zip(reader.bands, samples)
    ], feedback)


def _output_nodata(reader, units: str) -> float:
    """The input's nodata where it has one; else 0 for linear data whose fill zeros are nodata
    (the Sentinel-1 convention); else NaN."""
    declared = reader.info.nodata[reader.bands[0] - 1]
    if declared is not None:
        return declared
    return 0.0 if any(reader.enabled) and units != "dB" else math.nan


def _band_statistics(reader, samples, units, settings, feedback) -> list[BandStatistics]:
    """Check every band's values and compute its statistics (estimating looks if needed)."""
    statistics = []
    for band, sample in zip(reader.bands, samples):
        speckle.check_values(sample.valid_values(), units, band, feedback.warn)
        speckle.report_zeros(feedback, f"Band {band}", sample.values, sample.valid, sample.fill,
                             reader.info.data_types[band - 1], settings.zeros_as_nodata,
                             not speckle.sample_covers_image(reader.height, reader.width))
        intensity = [speckle.to_intensity(v.astype(np.float64), units) for v in sample.values]
        valid = sample.valid
        values = np.concatenate([i[ok] for i, ok in zip(intensity, valid)])
        if values.size == 0:
            raise SarDespeckleError(
                f"Band {band} of '{reader.info.path}' has no valid pixels: all are nodata or NaN"
                f"{speckle.no_valid_hint(settings.zeros_as_nodata)}."
            )
        looks = settings.looks or speckle.estimate_looks(intensity, valid)
        if settings.looks is None:
            feedback.info(f"Band {band}: estimated {looks:.2f} looks.")
        median = reference_level(values) if settings.model_card else None
        percentile_98 = (float(np.percentile(values, 98))
                         if settings.model_card is None and settings.method == "lee_sigma" else None)
        statistics.append(BandStatistics(float(looks), median, percentile_98))
    return statistics


def _classical(settings: DespeckleSettings, statistics: list[BandStatistics]) -> BandDespeckler:
    def apply(intensity, valid, band):
        return filters.apply_filter(
            settings.method, intensity, valid, statistics[band].looks, settings.window,
            point_target_threshold=statistics[band].percentile_98,
            frost_damping=settings.frost_damping,
        )

    return BandDespeckler(apply, filters.filter_halo(settings.method, settings.window), 0, 1,
                          settings.method, None)


def despeckle_raster(
    input_path: str,
    output_path: str,
    settings: DespeckleSettings = DespeckleSettings(),
    feedback: Feedback | None = None,
) -> DespeckleReport:
    """Despeckle ``input_path`` into the GeoTIFF ``output_path``.

    The output has the input's size, CRS, geotransform, band descriptions and units; pixels
    that were nodata, NaN or (with ``zeros_as_nodata``) exact zeros forming the border fill
    (:func:`core.speckle.fill_mask`; not in 8-bit bands) are nodata in the output.
    Raises :class:`SarDespeckleError` with an actionable message for bad input; on any error or
    cancel no output file is left.
    """
    feedback = feedback or Feedback()
    check_settings(settings)
    reader = RasterReader(input_path, settings.bands)
    info = reader.info
    reader = speckle.ZeroFillReader(reader, speckle.zero_rule(
        settings.zeros_as_nodata, [info.data_types[b - 1] for b in reader.bands]))
    if info.is_complex:
        raise SarDespeckleError(
            f"'{input_path}' is complex ({', '.join(sorted(set(info.data_types)))}): despeckle "
            "takes intensity, amplitude or dB. Compute the intensity |z|^2 first (for example "
            "with the Raster Calculator), or decorrelate the SLC with sar_despeckle:decorrelate."
        )
    if info.width < MIN_SIDE or info.height < MIN_SIDE:
        raise SarDespeckleError(
            f"'{input_path}' is only {info.width} x {info.height} pixels; despeckling needs at "
            f"least {MIN_SIDE} x {MIN_SIDE}. Check that you chose the right layer."
        )
    check_destinations({"INPUT": input_path}, {"OUTPUT": output_path},
                       {"OUTPUT": 4 * info.pixel_count * len(reader.bands)}, feedback.info)

    samples = speckle.read_sample(reader)
    units = _decide_units(settings, reader, samples, feedback)
    statistics = _band_statistics(reader, samples, units, settings, feedback)
    device = resolve_device(settings.device, feedback.warn)
    despeckler = (
        network_despeckler(settings, statistics, device, feedback) if settings.model_card
        else _classical(settings, statistics)
    )
    feedback.info(f"Running {despeckler.name} on {device.type}.")
    nodata = _output_nodata(reader, units)

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Raw values (B, C, H, W) in the input units -> despeckled, same units, NaN = nodata."""
        intensity = speckle.to_intensity(values, units)
        intensity = torch.where(valid, intensity, torch.zeros_like(intensity))
        output = torch.empty_like(intensity)
        for c in range(intensity.shape[1]):
            output[:, c: c + 1] = despeckler.apply(intensity[:, c: c + 1], valid[:, c: c + 1], c)
        output = speckle.from_intensity(output.clamp_min(0), units)
        return torch.where(valid, output, torch.full_like(output, math.nan))

    def finish(strip: np.ndarray) -> np.ndarray:
        if not math.isnan(nodata):  # a data pixel (a dark zero kept as data) must not read as nodata
            strip = np.where(strip == np.float32(nodata), np.nextafter(np.float32(nodata), np.float32(np.inf)), strip)
        return np.where(np.isnan(strip), np.float32(nodata), strip)

    metadata = output_metadata(
        "despeckle", despeckler.name, settings, units,
        model=despeckler.name if despeckler.checksum else "", model_sha256=despeckler.checksum or "",
        looks=[stats.looks for stats in statistics],
    )
    descriptions = [info.descriptions[b - 1] for b in reader.bands]
    tile = settings.tile or tile_for_width(info.width, len(reader.bands))
    while True:
        tile = max(despeckler.alignment, tile - tile % despeckler.alignment)
        options = TilingOptions(tile, despeckler.halo, despeckler.blend, device=device)
        try:
            with bounded_gdal_cache(), RasterWriter(
                output_path, info, len(reader.bands), nodata, descriptions, metadata
            ) as writer:
                run_tiled(reader, writer, process, options, len(reader.bands), finish, feedback)
            break
        except torch.cuda.OutOfMemoryError:
            if tile <= 128:
                raise SarDespeckleError(
                    "The GPU ran out of memory even with 128-pixel tiles: set DEVICE to cpu."
                ) from None
            torch.cuda.empty_cache()
            tile //= 2
            feedback.warn(f"GPU out of memory: retrying with {tile}-pixel tiles.")
    return DespeckleReport(output_path, units, tuple(s.looks for s in statistics), device.type, nodata)
