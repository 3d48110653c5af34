"""Whole runs: file to file (:func:`decorrelate_raster`) and array to array
(:func:`decorrelate_array`), with the JSON report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import numpy as np
from osgeo import gdal

from ..device import resolve_device
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..outputs import OutputSet, check_destinations, staged_file
from ..provenance import output_metadata
from ..raster import RasterInfo, RasterWriter, bounded_gdal_cache
from ..version import plugin_version
from .estimation import ChannelEstimate, estimate
from .plots import spectra_png
from .report_page import write_html
from .settings import check_settings, DecorrelationOutputs, DecorrelationSettings, IN_MEMORY_LIMIT, MIN_SIDE
from .sources import ArraySink, ArraySource, ComplexSource, RasterStore
from .spectra import shift_spectrum, Statistics, wrap_frequency
from .whitening import apply_whole, apply_windowed, measure, set_output_grid


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
            before = shift_spectrum(est.before.spectrum(axis), -plan.centroid)
            f = np.fft.fftfreq(before.size)
            x = 2 * ((f - plan.centroid + 0.5) % 1.0 - 0.5) / plan.bandwidth
            fitted = np.where(np.abs(x) <= 1, plan.response(x) ** 2, np.nan)
            panel = {"frequency": f, "before": before, "fit": fitted, "cutoffs": plan.cutoffs(),
                     "centroid": plan.centroid, "drift": plan.drift, "after": None,
                     "after_frequency": None}
            if after:
                spectrum = after[c].spectrum(axis)
                if restored:
                    spectrum = shift_spectrum(spectrum, -wrap_frequency(plan.centroid * plan.step))
                panel["after"], panel["after_frequency"] = spectrum, np.fft.fftfreq(spectrum.size)
            axes[plan.name] = panel
        result.append(axes)
    return result


def decorrelate_raster(
    input_path: str,
    outputs: DecorrelationOutputs,
    settings: DecorrelationSettings = DecorrelationSettings(),
    feedback: Feedback | None = None,
) -> dict:
    """Decorrelate the complex raster ``input_path`` into the GeoTIFF ``outputs.output``.

    The output has the input's band layout (complex bands as CFloat32, I/Q pairs as float32),
    CRS, georeference (scaled when resampling), nodata and band descriptions. ``outputs.report``
    (JSON) gets the report, with a PNG of the spectra and an HTML page of both for QGIS's Results
    Viewer beside it (same name, ``.png`` and ``.html``);
    ``outputs.intensity`` an intensity GeoTIFF (|z|^2, one band per channel). On error or cancel
    no output is left. Returns the report dict.
    """
    output_path, intensity_path, report_path = outputs.output, outputs.intensity, outputs.report
    feedback = feedback or Feedback()
    check_settings(settings)
    start = time.perf_counter()
    if report_path and os.path.splitext(report_path)[1].lower() != ".json":
        raise SarDespeckleError(f"The report '{report_path}' must be a .json file.")
    source = ComplexSource(input_path, settings.layout, settings.zeros_as_nodata)
    _check_source(source, input_path)
    pixel_bytes = source.width * source.height * 4
    check_destinations(
        {"INPUT": input_path},
        {"OUTPUT": output_path, "OUTPUT_INTENSITY": intensity_path, "REPORT": report_path,
         "REPORT picture": os.path.splitext(report_path)[0] + ".png" if report_path else None,
         "REPORT page": os.path.splitext(report_path)[0] + ".html" if report_path else None},
        {"OUTPUT": 2 * source.channels * pixel_bytes, "OUTPUT_INTENSITY": source.channels * pixel_bytes},
        feedback.info,
    )
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
        metadata = output_metadata(
            "decorrelate", "lapini2014", settings, "complex",
            plans=[{p.name: p.summary() for p in est.plans} for est in estimates],
        )
        layout = source.layout
        data_type = gdal.GDT_CFloat32 if layout == "complex" else gdal.GDT_Float32
        band_count = source.channels if layout == "complex" else 2 * source.channels
        descriptions = source.descriptions()
        folder = os.path.dirname(os.path.abspath(output_path))
        windows: list[dict] = []
        store = None
        with OutputSet() as outputs:
            try:
                with contextlib.ExitStack() as writers:
                    writer = writers.enter_context(RasterWriter(
                        output_path, info, band_count, nodata, descriptions, metadata,
                        data_type=data_type, outputs=outputs))
                    isink = None
                    if intensity_path:
                        names = [descriptions[2 * c if layout == "iq" else c] for c in range(source.channels)]
                        intensity_nodata = nodata if nodata is not None else 0.0
                        isink = _IntensitySink(writers.enter_context(RasterWriter(
                            intensity_path, info, source.channels, intensity_nodata,
                            [f"Intensity_{n}" if n else "Intensity" for n in names],
                            {**metadata, "units": "intensity"}, outputs=outputs,
                        )), intensity_nodata)
                    sink = _LayoutSink(writer, layout, nodata)
                    if settings.estimation_window:
                        windows = apply_windowed(source, estimates, settings, device, sink, isink,
                                                 feedback, (0.1, 0.9))
                    else:
                        if source.channels * source.height * width * 8 <= IN_MEMORY_LIMIT:
                            store = ArraySink(source.channels, source.height, width)
                        else:
                            store = RasterStore(folder, source.channels, source.height, width)
                        apply_whole(source, estimates, settings, device, sink, store, isink,
                                    feedback, (0.1, 0.9))
            finally:
                if isinstance(store, RasterStore):
                    store.close()
            after = measure(_FileReadback(outputs.staged_path(output_path), layout), estimates, height,
                            width, settings, device)
            report = build_report(estimates, after, settings, (source.height, source.width),
                                  (height, width), device, time.perf_counter() - start, resampled, windows)
            report["input"], report["output"] = input_path, output_path
            if intensity_path:
                report["intensity_output"] = intensity_path
            if report_path:
                picture = os.path.splitext(report_path)[0] + ".png"
                with staged_file(picture, outputs) as partial:
                    spectra_png(spectra_for_plot(estimates, after, settings.restore_centroid), partial)
                report["spectra_png"] = picture
                report["html"] = os.path.splitext(report_path)[0] + ".html"
                with staged_file(report["html"], outputs) as partial:
                    write_html(report, partial)
                with staged_file(report_path, outputs) as partial:
                    write_report(report, partial)
    feedback.progress(1.0)
    for c, channel in enumerate(report["channels"]):
        b, a = channel["correlation_before"], channel["correlation_after"]
        feedback.info(
            f"Channel {c + 1}: |lag-1| azimuth {b['azimuth']['lag1']:.3f} -> {a['azimuth']['lag1']:.3f}, "
            f"range {b['range']['lag1']:.3f} -> {a['range']['lag1']:.3f}."
        )
    return report


class _IntensitySink:
    def __init__(self, writer: RasterWriter, nodata: float) -> None:
        self.writer, self.nodata = writer, nodata

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        self.writer.write(np.where(values == 0, np.float32(self.nodata), values), row, col)


def write_report(report: dict, path: str) -> None:
    """Write the report as JSON, without the plot arrays."""
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(clean, stream, indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
