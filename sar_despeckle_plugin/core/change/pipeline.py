"""Whole change-detection runs, file to file: :func:`detect_changes` (what
``sar_despeckle:change_detection`` runs).

The dates are checked to share one grid and band layout, sampled (units, values, looks,
speckle correlation, gains, and what METHOD automatic and PREFILTER decide from them: the
:class:`_Plan`). Where the decision reads despeckled dates (:mod:`.prefilter`), each date is
despeckled into a scratch file and the run starts again on those. Then the sample, read with
the detector's context, goes to the detector's ``fit`` and sets the minimum mapping unit
(:mod:`.mapping_unit`, MIN_AREA empty), and the dates are read window by window through the
tiling engine: raw (B, k * bands, H, W) -> linear covariance (B, k, C, H, W), boxcar-averaged
with per-pixel looks (a :class:`~.detectors.Stack`) -> the detector -> (map, changed, date)
strips written to the requested rasters; the mask is then sieved and polygonised with GDAL
(:mod:`.regions`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from osgeo import gdal

from .. import speckle, stack
from ..choices import AUTOMATIC_CHANGE_METHOD, INTENSITY_BANDS
from ..device import resolve_device
from ..errors import SarDespeckleError
from ..feedback import Feedback
from ..outputs import OutputSet, check_destinations
from ..provenance import output_metadata
from ..raster import RasterWriter, bounded_gdal_cache
from ..tiling import TilingOptions, fit_tile_to_image, run_tiled, tile_for_width
from . import boundaries, prefilter, regions
from .automatic import choose_change_method
from .detectors import DETECTORS, Stack, shipped_change_model
from .looks import averaging_factor, radiometric_gains
from .mapping_unit import INDEPENDENT_SAMPLES, correlation_area, minimum_mapping_unit
from .settings import (
    BLOCKS, MAP_NODATA, MASK_NODATA, MIN_LOOKS_MARGIN, MIN_SIDE, SAMPLE_PIXELS,
    ChangeOutputs, ChangeReport, ChangeSettings, check_outputs, check_settings,
)


@dataclass(frozen=True)
class _Plan:
    """Everything the per-tile preparation needs, decided once from the sample."""

    layout: str
    units: str
    looks: tuple[float, ...]
    kappa: float
    gains: tuple[tuple[float, ...], ...]
    window: int
    floors: tuple[tuple[float, ...], ...]
    method: str
    prefilter: str


def _linear(values: torch.Tensor, valid: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (B, k*C, H, W) -> linear covariance (B, k, C, H, W), gains applied, and joint validity (B, H, W)."""
    values, valid = stack.linear_dates(values, valid, plan.layout, plan.units, plan.floors)
    diagonal = list(INTENSITY_BANDS[plan.layout])
    gains = torch.tensor(plan.gains, dtype=values.dtype, device=values.device)  # (k, 2 or 1)
    scale = torch.ones(values.shape[1:3], dtype=values.dtype, device=values.device)
    scale[:, diagonal] = gains
    if plan.layout == "c2":
        scale[:, 2] = scale[:, 3] = (gains[:, 0] * gains[:, 1]).sqrt()
    values = values * scale[None, :, :, None, None]
    joint = valid.all(1)
    return torch.where(joint[:, None, None], values, torch.zeros_like(values)), joint


def _prepare(values: torch.Tensor, valid: torch.Tensor, plan: _Plan) -> Stack:
    """Raw window -> Stack: units, gains, validity, boxcar averaging and per-pixel looks."""
    cov, joint = _linear(values, valid, plan)
    batch, k, channels, height, width = cov.shape
    looks = torch.tensor(plan.looks, dtype=torch.float32, device=cov.device)[None, :, None, None]
    if plan.window > 1:
        w = plan.window
        count = stack.box_sum(joint[:, None].float(), w)
        sums = stack.box_sum(cov.reshape(batch, k * channels, height, width), w)
        cov = (sums / count.clamp_min(1)).reshape(cov.shape)
        looks = looks * count.clamp_min(1) / plan.kappa
    diagonal = cov[:, :, list(INTENSITY_BANDS[plan.layout])]
    joint = joint & (diagonal > 0).all(2).all(1)
    return Stack(cov, looks, joint, plan.layout)


def _plan(settings, readers, raw, fills, feedback, floors_=None) -> _Plan:
    """Units, value checks, zero report, looks, the method (METHOD automatic) and how speckle is
    handled before it (PREFILTER: despeckled dates, or the window), averaging factor and gains,
    from the sampled windows (``fills``: the zero rule's fill masks of ``raw``); ``floors_``:
    the intensity floors of dark data (``stack.floors``) when given, else from the sample."""
    k = len(readers)
    windows = [(v, ok, f) for (v, ok), f in zip(raw, fills)]
    samples = stack.date_samples(settings.layout, k, windows)
    units = stack.check_dates(settings.layout, settings.units, settings.zeros_as_nodata, readers, samples,
                              SAMPLE_PIXELS, feedback)
    diagonal = INTENSITY_BANDS[settings.layout]
    floors = floors_ or stack.floors(samples, settings.layout, units)
    plan = _Plan(settings.layout, units, (1.0,) * k, 1.0, ((1.0,) * len(diagonal),) * k, 1, floors,
                 settings.method, "none")
    linear = [_linear(torch.from_numpy(v)[None], torch.from_numpy(ok)[None], plan) for v, ok, _ in windows]
    covs = [c[0].numpy() for c, _ in linear]  # (k, C, H, W)
    joints = [j[0].numpy() for _, j in linear]
    if not any(j.any() for j in joints):
        raise SarDespeckleError(
            "No pixel is valid on every date: all are nodata, NaN or zero fill somewhere"
            f"{speckle.no_valid_hint(settings.zeros_as_nodata)}. Check that the dates overlap."
        )
    looks = stack.stack_looks(settings.layout, settings.looks, covs, [np.broadcast_to(j, (k, *j.shape)) for j in joints],
                              feedback)
    method = settings.method
    if method == AUTOMATIC_CHANGE_METHOD:
        method, reason = choose_change_method(settings.layout, looks,
                                              settings.model or shipped_change_model(settings.layout))
        feedback.info(reason)

    def kappa_of(window: int) -> float:
        return 1.0 if window <= 1 else float(np.mean([
            averaging_factor([c[d, b] for c in covs], joints, looks[d], window) for d in range(k) for b in diagonal
        ]))

    window, handled = settings.window, "none"
    if settings.prefilter and method != "learned":
        if method in prefilter.DESPECKLED_METHODS and settings.layout != "c2":
            handled = "despeckled"
        elif window == 1:
            window = prefilter.adaptive_window(looks, kappa_of)
            handled = f"window {window}" if window > 1 else "none"
            feedback.info(f"PREFILTER: a {window} x {window} boxcar, the smallest that gives every date "
                          f"{prefilter.TARGET_LOOKS:g} looks or more ({method} reads Wishart speckle)." if window > 1
                          else f"PREFILTER: every date has {prefilter.TARGET_LOOKS:g} looks or more already: no boxcar.")
    kappa = kappa_of(window)
    if window > 1:
        feedback.info(f"A {window} x {window} boxcar multiplies the looks by "
                      f"{window ** 2 / kappa:.1f} (speckle correlation factor {kappa:.2f}).")
    gains = ((1.0,) * len(diagonal),) * k
    if settings.normalise:
        intensities = np.concatenate([c[:, list(diagonal)].reshape(k, len(diagonal), -1) for c in covs], -1)
        valid = np.concatenate([j.reshape(-1) for j in joints])
        gains = tuple(tuple(float(g) for g in row) for row in radiometric_gains(intensities, valid, looks))
        feedback.info("Radiometric gains per date: " + "; ".join(
            ", ".join(f"{g:.3f}" for g in row) for row in gains) + ".")
    return _Plan(settings.layout, units, looks, kappa, gains, window, floors, method, handled)


class _SplitSink:
    """Receives (4 + E, rows, cols) strips of (map, changed, date, invalid on some input date,
    then the E bands of REFINE_BOUNDARIES' evidence, if any), NaN = nodata, writes all but the
    fourth and counts the pixels: changed, valid, and nodata by cause."""

    def __init__(self, map_writer, mask_writer, date_writer, evidence_writer, candidate_dates: bool) -> None:
        self.writers = (map_writer, mask_writer, date_writer)
        self.evidence_writer = evidence_writer
        self.candidate_dates = candidate_dates
        self.changed = 0
        self.valid = 0
        self.invalid_input = 0
        self.nodata = 0

    def write(self, values, row, col):
        nodata = np.isnan(values[0])
        self.valid += int((~nodata).sum())
        self.nodata += int(nodata.sum())
        self.invalid_input += int((nodata & (values[3] == 1)).sum())
        self.changed += int((values[1] == 1).sum())
        map_writer, mask_writer, date_writer = self.writers
        if map_writer is not None:
            map_writer.write(np.where(nodata, np.float32(MAP_NODATA), values[0])[None], row, col)
        if mask_writer is not None:
            mask_writer.write(np.where(nodata, MASK_NODATA, values[1]).astype(np.uint8)[None], row, col)
        if date_writer is not None:
            dates = values[2] if self.candidate_dates else np.where(values[1] == 1, values[2], 0)
            date_writer.write(np.where(nodata, MASK_NODATA, dates).astype(np.uint8)[None], row, col)
        if self.evidence_writer is not None:
            self.evidence_writer.write(np.where(nodata, np.float32(0), values[4:]), row, col)


def detect_changes(
    inputs: Sequence[str],
    outputs: ChangeOutputs,
    settings: ChangeSettings = ChangeSettings(),
    feedback: Feedback | None = None,
) -> ChangeReport:
    """Detect changes across the co-registered rasters ``inputs`` (in date order).

    Writes the requested outputs: CHANGE_MAP (float32 p-value of no change, or the change
    probability of the learned and unsupervised detectors; nodata -1), CHANGE_MASK (uint8, 1 =
    changed, 0 = unchanged, 255 = nodata), CHANGE_DATE (uint8, index of the first date after the
    first change, 0 = none, 255 = nodata) and CHANGE_POLYGONS (changed regions with their area
    and first change date). Rasters keep date 1's size, CRS and geotransform. Pixels that are
    nodata, NaN or (with ``zeros_as_nodata``) zero fill (:func:`core.speckle.fill_mask`) on any
    date are nodata; other zeros are dark data. Bad input raises :class:`SarDespeckleError`
    before anything is written; on any error or cancel no output is left.
    """
    feedback = feedback or Feedback()
    inputs = list(inputs)
    check_settings(settings, len(inputs))
    check_outputs(outputs)
    readers = _open(inputs, settings)
    pixels = readers[0].info.pixel_count
    check_destinations(
        {"INPUTS": inputs},
        {"CHANGE_MAP": outputs.change_map, "CHANGE_MASK": outputs.change_mask,
         "CHANGE_DATE": outputs.change_date, "CHANGE_POLYGONS": outputs.change_polygons},
        {"CHANGE_MAP": 4 * pixels, "CHANGE_MASK": pixels, "CHANGE_DATE": pixels},
        feedback.info,
    )
    scratch = tempfile.mkdtemp(prefix=".change-", dir=_scratch_folder(outputs))
    try:
        return _detect(inputs, readers, [os.path.basename(path) for path in inputs], outputs, settings, scratch,
                       feedback, settings)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _open(inputs: Sequence[str], settings: ChangeSettings):
    """The dates' readers, checked to share one grid and layout, with the zero rule applied."""
    return stack.zero_fill_readers(stack.open_dates(inputs, settings.layout, MIN_SIDE, "change detection"),
                                   settings.layout, settings.zeros_as_nodata)


def _detect(inputs, readers, names, outputs, settings, scratch, feedback, asked: ChangeSettings,
            prefiltered: str | None = None, floors=None) -> ChangeReport:
    """One pass of :func:`detect_changes` on ``inputs`` (opened as ``readers``; ``names`` and
    ``asked``: the user's dates and settings, for the record); ``prefiltered``: what despeckled
    ``inputs`` when this is the pass on their output, ``floors`` then the dates' own floors (a
    despeckled estimate below the input's quantisation step means nothing)."""
    stack_reader = stack.StackReader(readers)
    raw, fills = stack.sample_stack(stack_reader, 0, SAMPLE_PIXELS)
    plan = _plan(settings, readers, raw, fills, feedback, floors)
    del raw, fills
    if plan.prefilter == "despeckled":
        feedback.info(f"PREFILTER: each date is despeckled on its own, at its own looks, by one despeckler chosen "
                      f"for the most demanding date (core.despeckle, METHOD automatic), before {plan.method} decides.")
        despeckled = prefilter.despeckle_dates(inputs, plan.units, plan.looks, settings.looks is not None,
                                               settings.zeros_as_nodata, settings.device, scratch, feedback)
        # the despeckled files tag their nodata; a zero in them is a dark pixel, never border fill
        again = dataclasses.replace(settings, method=plan.method, prefilter=False, looks=None, units=plan.units,
                                    zeros_as_nodata=False)
        done = len(inputs) / (len(inputs) + 1)  # the despeckling's share of the progress bar
        rest = dataclasses.replace(feedback, progress=lambda fraction: feedback.progress(done + (1 - done) * fraction))
        return _detect(despeckled, _open(despeckled, again), names, outputs, again, scratch, rest, asked,
                       prefiltered="despeckled", floors=plan.floors)
    settings = dataclasses.replace(settings, method=plan.method, window=plan.window)
    detector = DETECTORS[settings.method](settings)
    effective = tuple(n * plan.window ** 2 / plan.kappa for n in plan.looks)
    p, _ = BLOCKS[settings.layout]
    if settings.method == "omnibus" and min(effective) < p - 1 + MIN_LOOKS_MARGIN:
        raise SarDespeckleError(
            f"The C2 test needs more than {p - 1} look per date (the determinant of single-look C2 is "
            f"zero); the dates have {min(effective):.2f}. Set WINDOW to 3 or more, or use BAND_LAYOUT dual."
        )
    device = resolve_device(settings.device, feedback.warn)
    halo = plan.window // 2 + detector.halo
    samples = []
    for values, valid in stack.sample_stack(stack_reader, halo, SAMPLE_PIXELS)[0]:
        prepared = _prepare(torch.from_numpy(values)[None].to(device), torch.from_numpy(valid)[None].to(device), plan)
        samples.append(prepared.crop(halo))
    if not any(bool(s.valid.any()) for s in samples):
        raise SarDespeckleError("No pixel is valid on every date after averaging: check the inputs' nodata.")
    detector.fit(samples, feedback)
    if settings.min_area is None:
        area = correlation_area([(s.cov[0].cpu(), s.valid[0].cpu()) for s in samples], settings.layout)
        settings = dataclasses.replace(settings, min_area=minimum_mapping_unit(area))
        feedback.info(f"MIN_AREA automatic: {settings.min_area} pixels, {_mapping_unit_text(area)}")
    del samples
    feedback.info(f"Running {detector.name} on {device.type}.")

    def process(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        prepared = _prepare(values, valid, plan)
        change_map, changed, date = detector.detect(prepared)
        input_invalid = ~valid.all(1)
        result = torch.stack([change_map.float(), changed.float(), date.float()], 1)
        result = torch.where(prepared.valid[:, None], result, torch.full_like(result, math.nan))
        extra = [boundaries.evidence(prepared)] if settings.refine_boundaries else []
        return torch.cat([result, input_invalid[:, None].float(), *extra], 1)

    handled = prefiltered or plan.prefilter
    info = readers[0].info
    record = output_metadata(
        "change_detection", detector.name, asked, plan.units,
        dates=list(names),
        looks=list(plan.looks),
        effective_looks=list(effective),
        averaging_factor=plan.kappa,
        gains=[list(row) for row in plan.gains],
        map=detector.map_kind,
        speckle_handling=handled,
        min_area_used=settings.min_area,
        **detector.record(),
    )
    try:
        with OutputSet() as run:
            counts, polygons, nodata = _run(stack_reader, info, process, plan, settings, detector, outputs, record,
                                            device, scratch, run, feedback)
    except BaseException:
        if outputs.change_polygons and regions.vector_driver(outputs.change_polygons) not in regions.ATOMIC:
            regions.remove_vector(outputs.change_polygons)  # a Shapefile is written in place, last
        raise
    return ChangeReport(
        outputs={key: path for key, path in asdict(outputs).items() if path},
        units=plan.units,
        looks=plan.looks,
        effective_looks=effective,
        averaging_factor=plan.kappa,
        gains=plan.gains,
        detector={"name": detector.name, **detector.record()},
        changed_fraction=counts[0] / max(counts[1], 1),
        polygons=polygons,
        device=device.type,
        prefilter=handled,
        min_area=settings.min_area,
        nodata_pixels=nodata,
    )


def _mapping_unit_text(area: float) -> str:
    """Why the automatic MIN_AREA is what it is (the log line's end)."""
    return (f"{INDEPENDENT_SAMPLES} independent samples of the log-ratio error, which is correlated over {area:.1f} pixels "
            "on this image (its resolution cell and the prefilter's footprint; mapping_unit).")


def _scratch_folder(outputs: ChangeOutputs) -> str | None:
    """A writable folder beside the outputs for intermediate rasters (system temp otherwise)."""
    for path in (outputs.change_polygons, outputs.change_mask, outputs.change_date, outputs.change_map):
        folder = os.path.dirname(os.path.abspath(path)) if path else ""
        if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):
            return folder
    return None


def _run(stack_reader, info, process, plan, settings, detector, outputs, record, device, scratch,
         run: OutputSet, feedback) -> tuple[tuple[int, int], int | None, int]:
    """The tiled pass, then the sieve (in place), the dates it cleared and the polygons, every
    output staged in ``run`` (rasters are sieved in their staged files, before the commit).

    Returns ((changed pixels, valid pixels), polygon count or None, nodata pixels).
    """
    k = len(plan.looks)
    sieve = settings.min_area > 1
    reshaped = sieve or settings.refine_boundaries  # the final mask differs from the detector's
    mask_path = outputs.change_mask or (
        os.path.join(scratch, "mask.tif")
        if outputs.change_polygons or (reshaped and outputs.change_date) else None
    )
    evidence_path = os.path.join(scratch, "evidence.tif") if settings.refine_boundaries and mask_path else None
    date_path = outputs.change_date or (
        os.path.join(scratch, "date.tif") if outputs.change_polygons and k > 2 else None
    )
    descriptions = {
        "map": detector.map_kind,
        "mask": "change mask: 1 changed, 0 unchanged",
        "date": f"first change: index (2..{k}) of the first date after it, 0 none",
    }
    with bounded_gdal_cache():
        writers = [
            RasterWriter(path, info, 1, nodata, [descriptions[kind]], {**record, "output": kind}, data_type,
                         outputs=run)
            if path else None
            for kind, path, nodata, data_type in (
                ("map", outputs.change_map, MAP_NODATA, gdal.GDT_Float32),
                ("mask", mask_path, MASK_NODATA, gdal.GDT_Byte),
                ("date", date_path, MASK_NODATA, gdal.GDT_Byte),
            )
        ]
        evidence_bands = (k - 1) * len(INTENSITY_BANDS[plan.layout]) if settings.refine_boundaries else 0
        writers.append(RasterWriter(evidence_path, info, evidence_bands, None,
                                    [f"evidence {band + 1}" for band in range(evidence_bands)], {})
                       if evidence_path else None)
        tile = fit_tile_to_image(settings.tile or tile_for_width(info.width, info.band_count * k + 3 + evidence_bands),
                                 info.height, info.width)
        options = TilingOptions(tile, settings.window // 2 + detector.halo, 0, device=device)
        with contextlib.ExitStack() as stack:
            sink = _SplitSink(*(stack.enter_context(w) if w else None for w in writers), reshaped and bool(date_path))
            run_tiled(stack_reader, sink, process, options, 4 + evidence_bands, feedback=feedback)
        mask_path = run.staged_path(mask_path) if mask_path else None
        date_path = run.staged_path(date_path) if date_path else None
        counts = (sink.changed, sink.valid)
        _report_nodata(sink, info.pixel_count, feedback)
        if sieve and mask_path:
            feedback.info(f"Merging regions smaller than {settings.min_area} pixels into their surroundings.")
            counts = regions.sieve_in_place(mask_path, settings.min_area, MASK_NODATA)
        if evidence_path:
            feedback.info("REFINE_BOUNDARIES: the pixels just outside each changed region join it where their own "
                          "log-ratio is past half the contrast between the region and its surroundings.")
            counts = boundaries.refine_mask_file(mask_path, evidence_path, MASK_NODATA,
                                                 os.path.join(scratch, "refined.tif"), device,
                                                 dataclasses.replace(feedback, progress=lambda fraction: None),
                                                 date_path)
        if reshaped and date_path:
            regions.finalise_dates(date_path, mask_path, MASK_NODATA)
        polygons = None
        if outputs.change_polygons:
            polygons = regions.polygonize_changes(
                mask_path, outputs.change_polygons, date_path if k > 2 else None,
                MASK_NODATA, run, feedback.is_cancelled,
            )
            feedback.info(f"Wrote {polygons} change polygon(s) to {outputs.change_polygons}.")
    return counts, polygons, sink.nodata


def _report_nodata(sink: _SplitSink, pixels: int, feedback) -> None:
    """Log how many output pixels are nodata, and why."""
    if not sink.nodata:
        feedback.info("Nodata: none; every pixel is valid on every date.")
        return
    causes = []
    if sink.invalid_input:
        causes.append(f"{sink.invalid_input:,} are nodata, NaN or zero fill (ZEROS_AS_NODATA) on at least one date")
    other = sink.nodata - sink.invalid_input
    if other:
        causes.append(f"{other:,} have a non-positive intensity (or C2 diagonal) on at least one date, where "
                      "no ratio or determinant is defined")
    feedback.info(f"Nodata: {sink.nodata:,} of {pixels:,} pixels ({100 * sink.nodata / pixels:.2f} %) are nodata in "
                  "the outputs: " + "; ".join(causes) + ".")
