"""Despeckling a raster file end to end: checks, units, looks, tiled filtering, atomic write.

:func:`despeckle_raster` is what ``sar_despeckle:despeckle`` runs; scripts and tests call it
directly. Each band is sampled once (units, value checks), and each channel the layout makes of
the bands (:mod:`.layouts`: the bands themselves, or C2's four intensities) once too (looks,
the statistics the method needs); then the bands are read window by window through the tiling
engine: raw values (B, bands, H, W) in the input's units -> channels (B, C, H, W) linear
intensity -> the method, channel by channel ((B, 1, H, W)) -> output bands in the input's units
(C2: a valid covariance), nodata where the input was invalid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time

import numpy as np
import torch

from .. import accelerate, speckle
from .. import units as units_rule
from ..device import resolve_device
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..models.normalisation import reference_level
from ..outputs import OutputSet, check_destinations
from ..provenance import output_metadata
from ..raster import RasterReader, RasterWriter, bounded_gdal_cache
from ..tiling import TilingOptions, fit_tile_to_image, run_tiled, tile_for_width
from ..version import plugin_version
from . import filters, layouts
from . import report as quality_report
from .choice import AUTOMATIC, resolve_automatic, sample_correlations, with_correlation
from .network import network_despeckler
from .settings import (
    MIN_SIDE, BandDespeckler, BandStatistics, DespeckleReport, DespeckleSettings, check_band_count, check_settings,
)


def _decide_units(settings: DespeckleSettings, reader, samples, feedback) -> str:
    info = reader.info
    return units_rule.decide_units(settings.units, [
        (f"band {band}", sample.valid_values(), info.descriptions[band - 1], info.data_types[band - 1])
        for band, sample in zip(reader.bands, samples)
    ], feedback)


def _check_bands(reader, samples, units, settings: DespeckleSettings, feedback) -> None:
    """Refuse impossible values and log what the zero rule did, in each intensity band."""
    for index in layouts.intensity_bands(settings.layout, len(reader.bands)):
        band, sample = reader.bands[index], samples[index]
        speckle.check_values(sample.valid_values(), units, band, feedback.warn)
        speckle.report_zeros(feedback, f"Band {band}", sample.values, sample.valid, sample.fill,
                             reader.info.data_types[band - 1], settings.zeros_as_nodata,
                             not speckle.sample_covers_image(reader.height, reader.width))


def _channel_statistics(channels, names, settings: DespeckleSettings, path: str, feedback) -> list[BandStatistics]:
    """Each channel's statistics from its sample (linear intensity), estimating the looks if
    needed: per channel, or for C2 once from C11 and C22 (their mean), for all four."""
    values = []
    for name, sample in zip(names, channels):
        values.append(sample.valid_values())
        if values[-1].size == 0:
            raise SarDespeckleError(
                f"{name} of '{path}' has no valid pixels: all are nodata or NaN"
                f"{speckle.no_valid_hint(settings.zeros_as_nodata)}."
            )
    if settings.looks is not None:
        looks = [settings.looks] * len(channels)
    elif settings.layout == "c2":
        shared = float(np.mean([speckle.estimate_looks(s.values, s.valid) for s in channels[:2]]))
        feedback.info(f"C2: estimated {shared:.2f} looks (mean of C11's and C22's estimates), for its four intensities.")
        looks = [shared] * len(channels)
    else:
        looks = [speckle.estimate_looks(s.values, s.valid) for s in channels]
        for name, value in zip(names, looks):
            feedback.info(f"{name}: estimated {value:.2f} looks.")
    automatic = settings.method == AUTOMATIC and not settings.model_card  # either may be chosen
    sparse = [None] * len(channels)
    if settings.looks is None and (settings.model_card or automatic):  # networks of correlated speckle read it
        sparse = [speckle.pixel_looks(sample.values, sample.valid) for sample in channels]
    statistics = []
    for value, pixel_value, channel_values in zip(looks, sparse, values):
        median = reference_level(channel_values) if settings.model_card or automatic else None
        percentile_98 = (float(np.percentile(channel_values, 98)) if automatic or (
            settings.model_card is None and settings.method == "lee_sigma") else None)
        statistics.append(BandStatistics(float(value), median, percentile_98, pixel_value))
    return statistics



def classical_despeckler(settings: DespeckleSettings, statistics: list[BandStatistics]) -> BandDespeckler:
    """The classical filter ``settings.method`` as a :class:`BandDespeckler`, each band with its
    own looks and 98th-percentile point-target threshold from ``statistics``."""

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
    ratio_path: str | None = None,
    report_path: str | None = None,
) -> DespeckleReport:
    """Despeckle ``input_path`` into the GeoTIFF ``output_path``.

    ``ratio_path`` (GeoTIFF) gets the ratio image I / I_hat in linear intensity, one float32
    band per despeckled band, nodata :data:`report.RATIO_NODATA`; ``report_path`` (.html) the
    quality report, with its JSON twin and quick-look PNG beside it (same name): see
    :mod:`core.despeckle.report`. All outputs are committed together, or none.

    The output has the input's size, CRS, geotransform, band descriptions and units; pixels
    that were nodata, NaN or (with ``zeros_as_nodata``) exact zeros forming the border fill
    (:func:`core.speckle.fill_mask`; not in 8-bit bands) are nodata in the output.
    Raises :class:`SarDespeckleError` with an actionable message for bad input; on any error or
    cancel no output file is left.
    """
    feedback = feedback or Feedback()
    start = time.perf_counter()
    check_settings(settings)
    reader = RasterReader(input_path, settings.bands)
    info = reader.info
    layout = settings.layout
    intensity_bands = layouts.intensity_bands(layout, len(reader.bands))
    reader = speckle.ZeroFillReader(reader, [
        on and index in intensity_bands for index, on in
        enumerate(speckle.zero_rule(settings.zeros_as_nodata, [info.data_types[b - 1] for b in reader.bands]))])
    if info.is_complex:
        raise SarDespeckleError(
            f"'{input_path}' is complex ({', '.join(sorted(set(info.data_types)))}): despeckle "
            "takes intensity, amplitude or dB. Decorrelate the SLC with sar_despeckle:decorrelate "
            "and despeckle its OUTPUT_INTENSITY (its speckle is then white, as the networks "
            "expect), or compute the intensity |z|^2 with GDAL: gdal_calc.py -A slc.tif "
            "--outfile=intensity.tif --calc=\"numpy.abs(A)**2\" --type=Float32 (QGIS 3.22's "
            "Raster Calculator gives NaN on complex bands)."
        )
    check_band_count(layout, len(reader.bands), input_path)
    if info.width < MIN_SIDE or info.height < MIN_SIDE:
        raise SarDespeckleError(
            f"'{input_path}' is only {info.width} x {info.height} pixels; despeckling needs at "
            f"least {MIN_SIDE} x {MIN_SIDE}. Check that you chose the right layer."
        )
    band_bytes = 4 * info.pixel_count
    check_destinations(
        {"INPUT": input_path},
        {"OUTPUT": output_path, "RATIO": ratio_path,
         **(quality_report.report_paths(report_path) if report_path else {})},
        {"OUTPUT": band_bytes * len(reader.bands), "RATIO": band_bytes * len(intensity_bands) if ratio_path else 0},
        feedback.info,
    )
    if ratio_path and os.path.splitext(ratio_path)[1].lower() not in (".tif", ".tiff"):
        raise SarDespeckleError(f"RATIO '{ratio_path}' must be a GeoTIFF (.tif or .tiff).")
    if report_path and os.path.splitext(report_path)[1].lower() not in (".html", ".htm"):
        raise SarDespeckleError(f"REPORT '{report_path}' must be an HTML file (.html); its JSON "
                                "twin and quick-look PNG are written beside it.")
    extra = bool(ratio_path or report_path)  # the pass also hands the input intensity on

    samples = speckle.read_sample(reader)
    units = "intensity" if layout == "c2" else _decide_units(settings, reader, samples, feedback)
    _check_bands(reader, samples, units, settings, feedback)
    channels = layouts.channel_samples(layout, samples, units)
    statistics = _channel_statistics(channels, layouts.channel_names(layout, reader.bands), settings,
                                     input_path, feedback)
    correlations = None  # measured once, for the automatic choice and a network that reads them
    if settings.method == AUTOMATIC and not settings.model_card:
        correlations = sample_correlations(channels)
        settings = resolve_automatic(settings, channels, "intensity", [s.looks for s in statistics], feedback,
                                     per_pixel=[s.pixel_looks for s in statistics], correlations=correlations)
    statistics = with_correlation(statistics, channels, settings.model_card, correlations)
    del channels
    device = resolve_device(settings.device, feedback.warn)
    despeckler = (
        network_despeckler(settings, statistics, device, feedback) if settings.model_card
        else classical_despeckler(settings, statistics)
    )
    feedback.info(f"Running {despeckler.name} on {device.type}.")
    nodata = speckle.output_nodata([reader.info.nodata[reader.bands[0] - 1]], any(reader.enabled), units)

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Raw values (B, bands, H, W) in the input units -> despeckled, same units, NaN = nodata;
        with RATIO or REPORT, then the input's intensity bands (linear)."""
        intensity, valid = layouts.to_channels(layout, values, valid, units)
        output = torch.empty_like(intensity)
        for c in range(intensity.shape[1]):
            output[:, c: c + 1] = despeckler.apply(intensity[:, c: c + 1], valid[:, c: c + 1], c)
        output = layouts.from_channels(layout, output, units)
        output = torch.where(valid, output, torch.full_like(output, math.nan))
        if not extra:
            return output
        picked = list(intensity_bands)  # C2: its first two channels are C11 and C22
        return torch.cat([output, torch.where(valid[:, picked], intensity[:, picked], math.nan)], 1)

    def finish(strip: np.ndarray) -> np.ndarray:
        return speckle.nan_to_nodata(strip, nodata)

    ran = dataclasses.replace(settings, method=despeckler.name) if settings.model_card else settings
    metadata = output_metadata(  # a network ignores METHOD: its parameters record the network
        "despeckle", despeckler.name, ran, units,
        model=despeckler.name if despeckler.checksum else "", model_sha256=despeckler.checksum or "",
        looks=[stats.looks for stats in statistics], band_layout=layout,
    )
    descriptions = [info.descriptions[b - 1] for b in reader.bands]
    bands = len(reader.bands)
    tile = fit_tile_to_image(settings.tile or tile_for_width(info.width, bands + (len(intensity_bands) if extra else 0)),
                             info.height, info.width, despeckler.alignment)
    quality = None
    with OutputSet() as run:
        while True:
            tile = max(despeckler.alignment, tile - tile % despeckler.alignment)
            try:
                batch = accelerate.batch_for_memory(process, bands, tile + 2 * despeckler.halo,
                                                    math.ceil(info.width / tile), device)
                options = TilingOptions(tile, despeckler.halo, despeckler.blend, batch, device)
                with bounded_gdal_cache(), contextlib.ExitStack() as stack:
                    writer = stack.enter_context(RasterWriter(
                        output_path, info, bands, nodata, descriptions, metadata, outputs=run))
                    if not extra:
                        run_tiled(reader, writer, process, options, bands, finish, feedback)
                    else:
                        ratio_writer = stack.enter_context(quality_report.ratio_writer(
                            ratio_path, info, [descriptions[i] or f"band {reader.bands[i]}" for i in intensity_bands],
                            metadata, run)) if ratio_path else None
                        quicklook = (quality_report.QuickLook(len(intensity_bands), info.height, info.width)
                                     if report_path else None)
                        sink = quality_report.RunSink(writer, finish, bands,
                                                      lambda v: speckle.to_intensity(v, units),
                                                      ratio_writer, quicklook, intensity_bands)
                        run_tiled(reader, sink, process, options, bands + len(intensity_bands), feedback=feedback)
                break
            except torch.cuda.OutOfMemoryError:
                if tile <= 128:
                    raise SarDespeckleError(
                        "The GPU ran out of memory even with 128-pixel tiles: set DEVICE to cpu."
                    ) from None
                torch.cuda.empty_cache()
                tile //= 2
                feedback.warn(f"GPU out of memory: retrying with {tile}-pixel tiles.")
        if report_path:
            quality = _write_report(input_path, output_path, ratio_path, report_path, run, reader, samples,
                                    intensity_bands, statistics, units, despeckler, device.type, quicklook,
                                    start, feedback, settings.keep_point_targets)
    return DespeckleReport(output_path, units, tuple(s.looks for s in statistics), device.type, nodata,
                           ratio_path or None, report_path or None, quality)


def _write_report(input_path, output_path, ratio_path, report_path, run: OutputSet, reader, samples,
                  intensity_bands, statistics, units, despeckler, device, quicklook, start, feedback,
                  keep_point_targets: bool) -> dict:
    """Measure the run on the sample windows (the input's, already read; the output's, read
    back from its staged file) and stage the report's HTML, JSON twin and quick-look PNG: one
    entry per intensity band (C2: C11 and C22, whose channels come first). A network's report
    also says what became of point targets (``keep_point_targets``)."""
    info = reader.info
    windows = speckle.sample_windows(reader.height, reader.width)
    staged = RasterReader(run.staged_path(output_path))
    read_back = [staged.read(*window) for window in windows]
    del staged
    crop = quality_report.detail_crop(windows, reader.height, reader.width) if quicklook.factor > 1 else None
    entries, details = [], []
    for index in intensity_bands:
        band, sample = reader.bands[index], samples[index]
        estimate = quality_report.intensity_windows([values[index] for values, _ in read_back], units)
        entry, detail = quality_report.band_entry(
            band, info.descriptions[band - 1], statistics[index].looks, windows,
            quality_report.intensity_windows(sample.values, units), sample.valid,
            estimate, [valid[index] for _, valid in read_back], crop,
        )
        entries.append(entry)
        details.append(detail)
        feedback.info(quality_report.summary(entry))
    report = quality_report.build_report(
        input_path=input_path, output_path=os.path.abspath(output_path),
        ratio_path=os.path.abspath(ratio_path) if ratio_path else None,
        report_path=os.path.abspath(report_path), method=despeckler.name,
        model=despeckler.name if despeckler.checksum else "", model_sha256=despeckler.checksum or "",
        units=units, width=info.width, height=info.height, device=device,
        seconds=time.perf_counter() - start, windows=windows, bands=entries,
        plugin_version=plugin_version(),
    )
    if despeckler.checksum:
        report["point_targets"] = quality_report.point_targets_text(keep_point_targets)
    names = [f"BAND {e['band']} {e['description']}".strip() for e in entries]
    quality_report.write_report_files(report, report_path, quicklook, details, names, run)
    return report
