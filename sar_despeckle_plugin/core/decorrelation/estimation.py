"""Estimating each channel's axis plans from the image (the estimation pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled, SarDespeckleError
from ..feedback import Feedback
from ..speckle import no_valid_hint, sample_windows
from .settings import (
    AXES, LOCAL_POWER_RADIUS, MAX_ESTIMATION_PIXELS, MIN_SEGMENTS, MIN_SIDE,
    DecorrelationSettings,
)
from .spectra import (
    AxisPlan, Statistics, fit_centroid_plane, plan_axis, read_block, replace_point_targets,
    statistics_blocks,
)


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
                    f"zero{no_valid_hint(settings.zeros_as_nodata, complex_data=True)}."
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
            cycles = axis_cycles(est.plans, rows, cols)
            both = z * phasor(-cycles[0], device) * phasor(-cycles[1], device)
            results[c].add_pairs(both, ok & ~targets, block)
            for axis in (0, 1):
                results[c].add_spectra(axis, replaced * phasor(-cycles[axis], device), ok, block, targets)
        feedback.progress(fraction[0] + (fraction[1] - fraction[0]) * (index + 1) / len(cores))
    return results


def axis_cycles(plans: list[AxisPlan], rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def phasor(cycles: np.ndarray, device: torch.device) -> torch.Tensor:
    """exp(2 pi i cycles) as complex64, the phase reduced in float64 first."""
    fraction = cycles - np.round(cycles)
    angle = torch.from_numpy(2 * np.pi * fraction).to(device=device, dtype=torch.float32)
    return torch.polar(torch.ones_like(angle), angle)
