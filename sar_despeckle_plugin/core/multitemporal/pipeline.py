"""Multitemporal despeckling of co-registered dates, file to file: :func:`despeckle_stack`
(what ``sar_despeckle:despeckle_multitemporal`` runs).

The dates are checked to share one grid and band layout and sampled once (units, values, looks,
the networks' reference levels: :mod:`core.stack`), then read window by window through the
tiling engine: raw (B, k * bands, H, W) in the input's units -> linear covariance
(B, k, C, H, W) with each date's validity -> the method on the intensity channels
(:mod:`.methods`) -> for C2 the cross term from each date's own coherence -> the input's units
-> (B, T * bands, H, W), the target dates' bands in date order, written to one GeoTIFF. With
a RATIO or a REPORT the pass also hands on the target dates' input intensities, and
:class:`core.despeckle.report.RunSink` writes the ratio and fills the quick-look beside the
output; the report (:mod:`.report`) is measured after the pass. All outputs are committed
together, or none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .. import speckle, stack
from ..choices import (
    INTENSITY_BANDS, LAYOUT_BANDS, MULTITEMPORAL_MULTITASK_NETWORK, MULTITEMPORAL_NETWORK,
    MULTITEMPORAL_STACK_NETWORK, SHIPPED_WEIGHTS,
)
from ..device import resolve_device
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..models.card import ModelCard
from ..models.normalisation import reference_level
from ..models.weights import load_model
from ..despeckle import report as quality_report
from ..despeckle.choice import measure_correlation
from ..outputs import OutputSet, check_destinations
from ..provenance import output_metadata
from ..raster import RasterWriter, bounded_gdal_cache
from ..tiling import TilingOptions, fit_tile_to_image, run_tiled, tile_for_width
from .alone import date_alone
from .methods import LearnedStack, Rabasar, complete_c2, quegan, region_reach
from .multitask import MultiTaskPair
from .report import intensity_bands, write_report
from .settings import (
    MIN_SIDE, SAMPLE_PIXELS, MultitemporalReport, MultitemporalSettings, band_descriptions, check_output,
    check_settings, target_dates,
)

#: Feathering width of the networks' tiles (pixels), as for single-date despeckling.
NETWORK_BLEND = 8


@dataclass(frozen=True)
class _Method:
    """How a run filters: ``apply(intensity, valid, targets)`` on (B, k, C, H, W) linear
    intensity, the tiling it needs, its name, its network (None for a classical filter), the
    looks the super-image is despeckled with and the metadata items of its own."""

    apply: Callable[[torch.Tensor, torch.Tensor, Sequence[int]], torch.Tensor]
    halo: int
    blend: int
    alignment: int
    name: str
    card: ModelCard | None = None
    super_looks: float | None = None
    metadata: dict = dataclasses.field(default_factory=dict)


def _levels(layout: str, covs, valids) -> list[float]:
    """Per intensity channel, the reference level (median) of the temporal mean of the sample
    (``covs``: per window (k, C, H, W); ``valids``: (k, H, W)): one level for the whole image."""
    levels = []
    for band in INTENSITY_BANDS[layout]:
        values = []
        for cov, valid in zip(covs, valids):
            count = valid.sum(0)
            mean = (cov[:, band] * valid).sum(0) / np.maximum(count, 1)
            values.append(mean[count > 0])
        levels.append(reference_level(np.concatenate(values)))
    return levels


def _network(name: str, kind: str, device, card: str | None = None):
    """The network of model card ``card``, else the shipped network ``name`` (card
    ``input_kind`` ``kind``), checked and loaded."""
    return load_model(card or os.path.join(SHIPPED_WEIGHTS, name + ".json"), device, kind)


def _network_halo(alignment: int, reach: int) -> int:
    """Context for a tiled pass whose reach is ``reach`` pixels, plus the blend, on ``alignment``."""
    return -(-(reach + NETWORK_BLEND) // alignment) * alignment


#: A variance factor above which :func:`change_looks` says in the log that the speckle is correlated.
CORRELATED_FACTOR = 1.5


def change_looks(settings, looks: Sequence[float], covs, valids, feedback) -> list[float]:
    """Per date, the looks the change tests count per pixel of a ``settings.window`` local mean:
    the date's ``looks`` over :func:`core.speckle.mean_variance_factor` of its most correlated
    intensity channel, the autocorrelation measured on the sample (``covs``: per window, linear
    (k, bands, rows, cols); ``valids``: per window, (k, rows, cols)). Neighbours of correlated
    speckle repeat each other, so a local mean holds fewer independent looks than its pixels:
    counted as independent, the Sentinel-1 MTDN pairs (lag-1 about 0.65) showed 14 % of their
    pixels as a change of the target's own."""
    factors = [
        max(speckle.mean_variance_factor(measure_correlation([cov[date, band] for cov in covs],
                                                             [valid[date] for valid in valids]), settings.window)
            for band in INTENSITY_BANDS[settings.layout])
        for date in range(len(looks))
    ]
    if max(factors) > CORRELATED_FACTOR:
        feedback.info(f"The dates' speckle is correlated in space: the change test counts each {settings.window} x "
                      f"{settings.window} local mean as " + ", ".join(f"{f:.1f}" for f in factors)
                      + " times fewer looks than independent pixels would give (date order).")
    return [value / factor for value, factor in zip(looks, factors)]


def _rabasar(settings, looks, covs, valids, device, feedback) -> _Method:
    """The ratio method with the shipped looks-conditioned network; the super-image's looks
    (the sum of the dates') are kept within the network's range. Inside a target's own change
    the date is despeckled alone as single-date despeckling would (:func:`.alone.date_alone`;
    recorded in the metadata as ``own_change_method`` and ``own_change_sha256``)."""
    model = _network(MULTITEMPORAL_NETWORK, "intensity", device)
    low, high = model.card.looks_range
    super_looks = float(min(max(sum(looks), low), high))
    if super_looks < sum(looks):
        feedback.info(f"The temporal mean has about {sum(looks):.1f} looks where nothing changed; network "
                      f"'{model.card.name}' covers {low:g}-{high:g}: it reads {super_looks:g} (a little more smoothing).")
    alone = date_alone(settings, looks, covs, valids, target_dates(settings, len(looks)), device, feedback)
    method = Rabasar(model, super_looks, _levels(settings.layout, covs, valids), looks, settings.window,
                     settings.self_ensemble, alone, change_looks(settings, looks, covs, valids, feedback))
    alignment = math.lcm(model.alignment, alone.alignment)
    halo = _network_halo(alignment, max(2 * model.receptive_radius + settings.window // 2,
                                        region_reach(settings.window), alone.halo))
    return _Method(method, halo, NETWORK_BLEND, alignment, "rabasar", model.card, super_looks,
                   {"own_change_method": alone.name, "own_change_sha256": alone.checksum or ""})


def _learned(settings, looks, covs, valids, device, feedback) -> _Method:
    """The multitemporal network of ``settings.model`` (card input kind ``stack``), else the shipped one."""
    model = _network(MULTITEMPORAL_STACK_NETWORK, "stack", device, settings.model)
    method = LearnedStack(model, _levels(settings.layout, covs, valids), looks, settings.window, settings.self_ensemble,
                          change_looks(settings, looks, covs, valids, feedback))
    halo = _network_halo(model.alignment, model.receptive_radius + settings.window // 2)
    return _Method(method, halo, NETWORK_BLEND, model.alignment, "learned", model.card)


def _multitask(settings, looks, covs, valids, device, feedback) -> _Method:
    """The multi-task network of ``settings.model`` (card input kind ``date_pair``), else the
    shipped one, on a two-date stack; normalisation and change context set from the sample."""
    model = _network(MULTITEMPORAL_MULTITASK_NETWORK, "date_pair", device, settings.model)
    method = MultiTaskPair(model, looks)
    method.fit([cov[:, list(INTENSITY_BANDS[settings.layout])] for cov in covs], valids)
    return _Method(method, _network_halo(model.alignment, model.receptive_radius), NETWORK_BLEND, model.alignment,
                   "multitask", model.card)


def _quegan(settings, *unused) -> _Method:
    def apply(intensity, valid, targets):
        return quegan(intensity, valid, targets, settings.window)

    return _Method(apply, settings.window // 2, 0, 1, "quegan")


#: METHOD id -> how a run with the settings, the dates' looks, the sample, the device and the
#: feedback filters (ids of ``choices.MULTITEMPORAL_METHOD_LABELS``).
METHODS = {"quegan": _quegan, "rabasar": _rabasar, "learned": _learned, "multitask": _multitask}


def despeckle_stack(
    inputs: Sequence[str],
    output_path: str,
    settings: MultitemporalSettings = MultitemporalSettings(),
    feedback: Feedback | None = None,
    ratio_path: str | None = None,
    report_path: str | None = None,
) -> MultitemporalReport:
    """Despeckle the target dates of the co-registered rasters ``inputs`` (in date order) into
    the GeoTIFF ``output_path``: for each target date in date order, its bands (1, 2 or 4 by
    the layout), described 'date N (file) BAND', in the input's units (C2 linear).

    The output keeps date 1's size, CRS and geotransform, and the first nodata value the dates
    declare. ``ratio_path`` (GeoTIFF) gets the ratio image I_t / J_t of each target date's
    intensity bands (single-pol; VV, VH; C11, C22) in linear intensity, float32, nodata
    :data:`core.despeckle.report.RATIO_NODATA`; ``report_path`` (.html) the quality report with
    its JSON twin and quick-look PNG beside it (:mod:`.report`). Each date counts where it is
    valid: a pixel that is nodata, NaN or (with ``zeros_as_nodata``) zero fill
    (:func:`core.speckle.fill_mask`) in a target date is nodata in that date's output bands, and
    the other dates' statistics leave out the dates invalid there. Bad input raises
    :class:`SarDespeckleError` before anything is written; on any error or cancel no output is left.
    """
    feedback = feedback or Feedback()
    start = time.perf_counter()
    inputs = list(inputs)
    check_settings(settings, len(inputs))
    check_output(output_path)
    quality_report.check_extensions(ratio_path, report_path)
    layout = settings.layout
    readers = stack.zero_fill_readers(stack.open_dates(inputs, layout, MIN_SIDE, "multitemporal despeckling"),
                                      layout, settings.zeros_as_nodata)
    k, bands, info = len(readers), LAYOUT_BANDS[layout], readers[0].info
    targets = target_dates(settings, k)
    ratio_bands = intensity_bands(layout, len(targets))
    check_destinations(
        {"INPUTS": inputs},
        {"OUTPUT": output_path, "RATIO": ratio_path,
         **(quality_report.report_paths(report_path) if report_path else {})},
        {"OUTPUT": 4 * info.pixel_count * bands * len(targets),
         "RATIO": 4 * info.pixel_count * len(ratio_bands) if ratio_path else 0}, feedback.info,
    )
    extra = bool(ratio_path or report_path)  # the pass also hands the targets' input intensities on
    stack_reader = stack.StackReader(readers)
    raw, fills = stack.sample_stack(stack_reader, 0, SAMPLE_PIXELS)
    windows = [(values, valid, fill) for (values, valid), fill in zip(raw, fills)]
    samples = stack.date_samples(layout, k, windows)
    units = stack.check_dates(layout, settings.units, settings.zeros_as_nodata, readers, samples, SAMPLE_PIXELS,
                              feedback)
    floors = stack.floors(samples, layout, units)
    linear = [stack.linear_dates(torch.from_numpy(v)[None], torch.from_numpy(ok)[None], layout, units, floors)
              for v, ok, _ in windows]
    covs = [cov[0].numpy() for cov, _ in linear]
    valids = [valid[0].numpy() for _, valid in linear]
    for date in range(k):
        if not any(valid[date].any() for valid in valids):
            raise SarDespeckleError(
                f"Date {date + 1} ('{inputs[date]}') has no valid pixel: all are nodata, NaN or zero fill"
                f"{speckle.no_valid_hint(settings.zeros_as_nodata)}. Remove it from INPUTS or fix its nodata."
            )
    looks = stack.stack_looks(layout, settings.looks, covs, valids, feedback)
    device = resolve_device(settings.device, feedback.warn)
    method = METHODS[settings.method](settings, looks, covs, valids, device, feedback)
    del raw, fills, windows, samples, linear, covs, valids
    feedback.info(f"Running {method.name} on {device.type} for date(s) "
                  + ", ".join(str(t + 1) for t in targets) + f" of {k}.")
    nodata = speckle.output_nodata([value for reader in readers for value in reader.info.nodata],
                                   any(readers[0].enabled), units)
    diagonal = list(INTENSITY_BANDS[layout])

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Raw (B, k * bands, H, W) -> (B, T * bands, H, W) in the input's units, NaN = nodata;
        with a ratio or report, then the target dates' input intensities (B, T * C, H, W)."""
        cov, date_valid = stack.linear_dates(values, valid, layout, units, floors)
        cov = torch.where(date_valid[:, :, None], cov, torch.zeros_like(cov))
        estimate = method.apply(cov[:, :, diagonal], date_valid, targets).clamp_min(0)
        if layout == "c2":
            estimate = complete_c2(cov, date_valid, targets, estimate, settings.window)
        else:
            estimate = speckle.from_intensity(estimate, units)
        target_valid = date_valid[:, list(targets), None]
        estimate = torch.where(target_valid, estimate, torch.full_like(estimate, math.nan))
        estimate = estimate.reshape(estimate.shape[0], -1, *estimate.shape[-2:])
        if not extra:
            return estimate
        intensity = cov[:, list(targets)][:, :, diagonal]
        intensity = torch.where(target_valid, intensity, torch.full_like(intensity, math.nan))
        return torch.cat([estimate, intensity.reshape(intensity.shape[0], -1, *intensity.shape[-2:])], 1)

    def finish(strip: np.ndarray) -> np.ndarray:
        return speckle.nan_to_nodata(strip, nodata)

    card = method.card
    metadata = output_metadata(
        "despeckle_multitemporal", method.name, settings, units,
        model=card.name if card else "", model_sha256=card.sha256 if card else "",
        dates=[os.path.basename(path) for path in inputs], targets=[t + 1 for t in targets],
        looks=list(looks), super_looks=method.super_looks, **method.metadata,
    )
    descriptions = band_descriptions(layout, inputs, info.descriptions, targets)
    out_bands = len(targets) * bands
    passed_bands = out_bands + (len(ratio_bands) if extra else 0)
    tile = fit_tile_to_image(settings.tile or tile_for_width(info.width, k * bands + passed_bands),
                             info.height, info.width, max(method.alignment, 64))
    tile = max(method.alignment, tile - tile % method.alignment)
    options = TilingOptions(tile, method.halo, method.blend, device=device)
    quality = None
    with OutputSet() as run:
        with bounded_gdal_cache(), contextlib.ExitStack() as writers:
            writer = writers.enter_context(RasterWriter(output_path, info, out_bands, nodata, descriptions, metadata,
                                                        outputs=run))
            if not extra:
                run_tiled(stack_reader, writer, process, options, out_bands, finish, feedback)
            else:
                ratio_writer = writers.enter_context(quality_report.ratio_writer(
                    ratio_path, info, [descriptions[band] for band in ratio_bands], metadata, run)) if ratio_path else None
                quicklook = quality_report.QuickLook(len(ratio_bands), info.height, info.width) if report_path else None
                sink = quality_report.RunSink(writer, finish, out_bands, lambda v: speckle.to_intensity(v, units),
                                              ratio_writer, quicklook, ratio_bands)
                run_tiled(stack_reader, sink, process, options, passed_bands, feedback=feedback)
        if report_path:
            quality = write_report(
                inputs=inputs, output_path=output_path, ratio_path=ratio_path, report_path=report_path, run=run,
                stack_reader=stack_reader, layout=layout, units=units, floors=floors, targets=targets, looks=looks,
                method=method.name, model=card.name if card else "", model_sha256=card.sha256 if card else "",
                super_looks=method.super_looks, device=device.type, descriptions=descriptions, quicklook=quicklook,
                start=start, feedback=feedback,
            )
    return MultitemporalReport(output_path, units, tuple(looks), tuple(t + 1 for t in targets), method.name,
                               method.super_looks, device.type, nodata, ratio_path or None, report_path or None,
                               quality)
