"""Applying the axis plans: whitening lines, resampling, and the whole-image and windowed passes;
measuring the result.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import Cancelled, SarDespeckleError
from ..feedback import Feedback
from ..tiling import TilingOptions, run_tiled
from .estimation import axis_cycles, ChannelEstimate, estimate, phasor
from .settings import (
    LOCAL_POWER_RADIUS, MEASURE_PIXELS, MIN_SIDE, STRIP_BUDGET, DecorrelationSettings,
)
from .sources import ArraySource
from .spectra import AxisPlan, read_block, replace_point_targets, Statistics, statistics_blocks


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
    spectrum = torch.fft.fft(z * phasor(-cycles, device), dim=1) * gains
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
        out = out * phasor(plan.cycles(positions[None, :], across[:, None]), device)
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
                cycles = axis_cycles(est.plans, rows, cols)
            both = z * phasor(-cycles[0], device) * phasor(-cycles[1], device)
            results[c].add_pairs(both, good, block)
            for axis in (0, 1):
                results[c].add_spectra(axis, z * phasor(-cycles[axis], device), ok, block, ok & ~good)
    return results
