"""The one tiling engine every algorithm runs through.

The image is cut into a grid of square *cores* of ``tile`` pixels. Each core is processed
with ``halo`` pixels of context on every side (outside the image: value 0, valid False), so
a filter whose reach is at most ``halo`` gives exactly the whole-image result. Networks with a
reach wider than the halo set ``blend`` > 0: each tile then also contributes ``blend`` pixels
beyond its core, and neighbouring contributions are mixed with linear ramps that sum to one
(feathered blending, no seams).

Work goes strip by strip (one row of tiles): the engine holds one input strip and one output
strip, so memory is bounded by ``width x (tile + 2 halo) x bands`` whatever the image height.
Reading the next strip and writing the previous one overlap with computing the current one.
Progress moves tile by tile, and within a batch of tiles when the process function reports its
own progress through :func:`report_within_tile` (a network does, layer by layer); cancelling is
then honoured there too.

Layouts: numpy arrays are (bands, rows, cols); the process function receives torch tensors
(batch, bands, rows, cols) on the chosen device and returns (batch, out_bands, rows, cols).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from .errors import Cancelled
from .feedback import Feedback

ProcessFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
FinishFn = Callable[[np.ndarray], np.ndarray]

#: Where the batch being processed reports the share of its work done (set by run_tiled).
_within_batch: ContextVar[Callable[[float], None] | None] = ContextVar("within_batch", default=None)


def report_within_tile(fraction: float) -> None:
    """Called by a long process function with the share (0-1) of the current batch of tiles it
    has done: the run's progress moves within the batch, and a cancel requested meanwhile
    raises :class:`Cancelled` here. Does nothing outside :func:`run_tiled`."""
    report = _within_batch.get()
    if report is not None:
        report(fraction)


class WindowSource(Protocol):
    """Anything that reads padded windows, like :class:`core.raster.RasterReader`."""

    height: int
    width: int

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        ...


class WindowSink(Protocol):
    """Anything that writes (bands, rows, cols) arrays at a position, like RasterWriter."""

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        ...


@dataclass(frozen=True)
class TilingOptions:
    """How to cut and run the image.

    Attributes:
        tile: side of a tile's core in pixels.
        halo: context read around each core (>= the algorithm's reach for exact results).
        blend: feathering width in pixels (0: cores are simply cropped; must be <= halo and
            <= tile / 2).
        batch_size: tiles sent to the device together.
        device: torch device the process function runs on.
    """

    tile: int = 1024
    halo: int = 8
    blend: int = 0
    batch_size: int = 1
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.tile < 1 or self.halo < 0 or self.batch_size < 1:
            raise ValueError("tile and batch_size must be >= 1 and halo >= 0")
        if not 0 <= self.blend <= min(self.halo, self.tile // 2):
            raise ValueError("blend must be between 0 and min(halo, tile / 2)")


#: Bytes held per strip pixel and band: two input strips in flight (float32 values + bool
#: validity) and two output strips (float32) being accumulated and written.
STRIP_BYTES_PER_PIXEL = 2 * (4 + 1) + 2 * 4


def tile_for_width(width: int, bands: int, budget_bytes: int = 160 * 2 ** 20, largest: int = 1024) -> int:
    """The largest tile side (halving from ``largest`` down to 256) whose strips fit the budget.

    Strips span the whole image width, so very wide images get shorter strips.
    """
    tile = largest
    while tile > 256 and width * bands * tile * STRIP_BYTES_PER_PIXEL > budget_bytes:
        tile //= 2
    return tile


def fit_tile_to_image(tile: int, height: int, width: int, alignment: int = 64) -> int:
    """``tile``, shrunk to the image's longer side rounded up to ``alignment``: a small image is
    one tile of its own size instead of being padded to a full tile (a 256-px image in a
    1024-px tile costs 16 times the work)."""
    return min(tile, -(-max(height, width) // alignment) * alignment)


def feather_profile(start: int, stop: int, blend: int, length: int) -> np.ndarray:
    """Weights along one axis for a tile core [start, stop) of an axis of ``length`` pixels.

    The returned profile covers [start - blend, stop + blend) clipped to [0, length): it ramps
    linearly up across [start - blend, start + blend) and down across [stop - blend,
    stop + blend), except at the image edges where it stays 1. Two neighbouring profiles sum to
    exactly one on their shared band.
    """
    lo, hi = max(start - blend, 0), min(stop + blend, length)
    centres = np.arange(lo, hi, dtype=np.float64) + 0.5
    weight = np.ones(hi - lo)
    if blend > 0 and start > 0:
        weight *= np.clip((centres - (start - blend)) / (2 * blend), 0.0, 1.0)
    if blend > 0 and stop < length:
        weight *= np.clip(((stop + blend) - centres) / (2 * blend), 0.0, 1.0)
    return weight.astype(np.float32)


def _default_finish(values: np.ndarray) -> np.ndarray:
    return values


def run_tiled(
    source: WindowSource,
    sink: WindowSink,
    process: ProcessFn,
    options: TilingOptions,
    out_bands: int,
    finish: FinishFn = _default_finish,
    feedback: Feedback | None = None,
) -> None:
    """Run ``process`` over the whole of ``source`` tile by tile and write to ``sink``.

    Args:
        source: padded-window reader (values are 0 where invalid).
        sink: receives finished strips, top to bottom.
        process: (values, valid) tensors (B, C, H, W) on ``options.device`` -> output
            (B, out_bands, H, W); H = W = tile + 2 * halo.
        options: see :class:`TilingOptions`.
        out_bands: number of bands ``process`` returns.
        finish: applied to each finished strip of output on the CPU before writing (for
            example, NaN to the nodata value).
        feedback: receives progress; its ``is_cancelled`` is polled between batches, and when
            it returns True :class:`Cancelled` is raised and nothing more is written.
    """
    feedback = feedback or Feedback()
    tile, halo, blend = options.tile, options.halo, options.blend
    height, width = source.height, source.width
    tiles_down, tiles_across = math.ceil(height / tile), math.ceil(width / tile)
    total_tiles = tiles_down * tiles_across
    col_profiles = [
        feather_profile(c * tile, min((c + 1) * tile, width), blend, width)
        for c in range(tiles_across)
    ]
    strip_width = tiles_across * tile + 2 * halo

    def read_strip(index: int) -> tuple[np.ndarray, np.ndarray]:
        return source.read(index * tile - halo, -halo, tile + 2 * halo, strip_width)

    start = time.perf_counter()
    pending = None  # accumulated output of rows [row0 - blend, row0 + blend) from the last strip
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        next_strip = reader.submit(read_strip, 0)
        last_write = None
        for strip in range(tiles_down):
            values, valid = next_strip.result()
            if strip + 1 < tiles_down:
                next_strip = reader.submit(read_strip, strip + 1)
            row0, row1 = strip * tile, min((strip + 1) * tile, height)
            out_lo, out_hi = max(row0 - blend, 0), min(row1 + blend, height)
            accumulated = np.zeros((out_bands, out_hi - out_lo, width), np.float32)
            row_profile = feather_profile(row0, row1, blend, height)[:, None]
            for first in range(0, tiles_across, options.batch_size):
                if feedback.is_cancelled():
                    raise Cancelled()
                columns = range(first, min(first + options.batch_size, tiles_across))
                span = tile + 2 * halo
                batch_values = np.stack([values[:, :, c * tile: c * tile + span] for c in columns])
                batch_valid = np.stack([valid[:, :, c * tile: c * tile + span] for c in columns])
                done_before = strip * tiles_across + first

                def within(fraction: float, done_before=done_before, count=len(columns)) -> None:
                    if feedback.is_cancelled():
                        raise Cancelled()
                    feedback.progress((done_before + min(max(fraction, 0.0), 1.0) * count) / total_tiles)

                token = _within_batch.set(within)
                try:
                    with torch.no_grad():
                        result = process(
                            torch.from_numpy(batch_values).to(options.device),
                            torch.from_numpy(batch_valid).to(options.device),
                        )
                finally:
                    _within_batch.reset(token)
                result = result.float().cpu().numpy()
                for output, c in zip(result, columns):
                    col0, col1 = c * tile, min((c + 1) * tile, width)
                    lo, hi = max(col0 - blend, 0), min(col1 + blend, width)
                    # tile pixel (i, j) sits at image (row0 - halo + i, col0 - halo + j)
                    piece = output[
                        :,
                        out_lo - row0 + halo: out_hi - row0 + halo,
                        lo - col0 + halo: hi - col0 + halo,
                    ]
                    accumulated[:, :, lo:hi] += piece * (row_profile * col_profiles[c][None, :])
                tiles_done = strip * tiles_across + columns[-1] + 1
                feedback.progress(tiles_done / total_tiles)
                if tiles_done == len(columns) < total_tiles:
                    _announce_duration(feedback, time.perf_counter() - start, tiles_done, total_tiles)
            if pending is not None:
                accumulated[:, : pending.shape[1]] += pending
            done_hi = out_hi if strip + 1 == tiles_down else row1 - blend
            finished = accumulated[:, : done_hi - out_lo]
            pending = accumulated[:, done_hi - out_lo:].copy()
            if last_write is not None:
                last_write.result()
            last_write = writer.submit(_finish_and_write, sink, finish, finished, out_lo)
        if last_write is not None:
            last_write.result()


#: Runs expected to last longer than this (seconds) are announced with a warning.
LONG_RUN = 3600.0


def _announce_duration(feedback: Feedback, seconds: float, tiles_done: int, total_tiles: int) -> None:
    """After the first batch of tiles, tell the user how long the whole run will take."""
    expected = seconds * total_tiles / tiles_done
    if expected < 60:
        return
    hours, minutes = divmod(round(expected / 60), 60)
    duration = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
    message = (f"Expected duration about {duration} ({total_tiles} tiles; measured on the first "
               f"{tiles_done}).")
    if expected > LONG_RUN:
        feedback.warn(message + " Cancel now and choose a smaller extent, a faster method or a GPU "
                      "if that is too long.")
    else:
        feedback.info(message)


def _finish_and_write(sink: WindowSink, finish: FinishFn, values: np.ndarray, row: int) -> None:
    sink.write(finish(values), row, 0)
