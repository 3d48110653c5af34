"""How networks run on a GPU: reduced precision where it stays within :data:`MAX_ERROR_DB` of
float32, compilation when asked for, and batches of tiles sized to the GPU's free memory.

Every function here leaves the CPU path exactly as it was: on a CPU device no precision is
chosen, nothing is compiled and one tile goes per batch. (Channels-last memory, which pays on
both, is already how ``core.models.weights.load_model`` places every network and its input.)

Precision: a log-domain network's output is an intensity, so its reduced-precision error is
measured as the largest per-pixel ratio to the float32 output, in dB,
``max |10 log10(I_reduced / I_fp32)|``, on a fixed probe (1-look speckle over a piecewise scene,
256 x 256). Measured with CPU autocast on the shipped networks (scripts/device_check.py prints
the GPU's own): float16 0.026-0.028 dB (PSNR against the clean scene unchanged to 0.001 dB),
bfloat16 0.18-0.23 dB (RMS 0.018-0.024 dB): float16 is kept, bfloat16 is not.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch

from .feedback import Feedback

#: Largest per-pixel change a reduced precision may make to a network's output (dB).
MAX_ERROR_DB = 0.05
#: Reduced precisions tried, in order of preference (float16 first: 10 mantissa bits against
#: bfloat16's 7; log-domain inputs are clipped, so its smaller range never overflows).
PRECISIONS = (torch.float16, torch.bfloat16)
#: Side of the probe image (pixels).
PROBE_SIDE = 256
#: Environment variable that turns torch.compile on for networks on a GPU ("1").
COMPILE_VARIABLE = "SAR_DESPECKLE_COMPILE"
#: Share of the GPU's free memory a batch of tiles may take.
MEMORY_SHARE = 0.5

#: A network run: linear intensity (B, 1, H, W) on the device -> linear intensity estimate.
Network = Callable[[torch.Tensor], torch.Tensor]


def probe_image(device: torch.device, looks: float = 1.0, side: int = PROBE_SIDE) -> torch.Tensor:
    """The fixed probe: Gamma(looks, 1/looks) speckle (drawn under seed 0, leaving the caller's
    random state alone) over four flat patches (intensities 0.25-4) and a few bright points,
    linear intensity (1, 1, side, side) float32 on ``device``."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    scene = torch.where(cols < side // 2, 1.0, 4.0) * torch.where(rows < side // 2, 1.0, 0.25)
    scene[side // 4:: side // 4, side // 3:: side // 3] = 60.0
    shape = torch.full((side, side), float(looks))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        speckle = torch.distributions.Gamma(shape, shape).sample()
    return (scene * speckle).reshape(1, 1, side, side).to(device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context running the network in ``dtype`` on ``device`` (nothing when ``dtype`` is None).
    Autocast lowers convolutions and matrix products only: log, exp and reductions stay float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def error_db(network: Network, probe: torch.Tensor, dtype: torch.dtype) -> float:
    """``max |10 log10(I_dtype / I_fp32)|`` over the probe's pixels (dB)."""
    with torch.no_grad():
        reference = network(probe).float()
        with autocast(probe.device, dtype):
            reduced = network(probe).float()
    ratio = reduced.clamp_min(torch.finfo(torch.float32).tiny) / reference.clamp_min(torch.finfo(torch.float32).tiny)
    return float((10 * torch.log10(ratio)).abs().max())


def choose_precision(network: Network, device: torch.device, looks: float = 1.0,
                     candidates: tuple[torch.dtype, ...] = PRECISIONS) -> tuple[torch.dtype | None, float | None]:
    """The first of ``candidates`` whose :func:`error_db` on the probe is within
    :data:`MAX_ERROR_DB`, and that error; (None, None) on a CPU (float32 as always) or when
    none is within it (then the smallest error found is returned beside None)."""
    if device.type != "cuda":
        return None, None
    probe = probe_image(device, looks)
    errors = {}
    for dtype in candidates:
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            continue
        errors[dtype] = error_db(network, probe, dtype)
        if errors[dtype] <= MAX_ERROR_DB:
            return dtype, errors[dtype]
    return None, min(errors.values(), default=None)


def network_precision(model, looks: float, device: torch.device, feedback: Feedback) -> torch.dtype | None:
    """The precision a loaded despeckling network (``core.models.weights.LoadedModel``) runs in
    on ``device`` (:func:`choose_precision`, probed at ``looks``), said through ``feedback``;
    None (float32) on a CPU. Run the network within :func:`autocast` of it."""
    def run(images):
        return model.despeckle(images, torch.ones_like(images, dtype=torch.bool), float(images.median()), looks=looks)

    precision, error = choose_precision(run, device, looks)
    if precision is not None:
        feedback.info(f"GPU inference in {str(precision).removeprefix('torch.')}: within {error:.3f} dB of "
                      f"float32 on the probe (at most {MAX_ERROR_DB} dB allowed).")
    elif error is not None:
        feedback.info(f"GPU inference in float32: reduced precisions differ by {error:.3f} dB or more "
                      f"from it (at most {MAX_ERROR_DB} dB allowed).")
    return precision


def maybe_compile(module: torch.nn.Module, device: torch.device) -> bool:
    """Compile ``module``'s forward with torch.compile on a GPU when the environment variable
    :data:`COMPILE_VARIABLE` is "1" (compilation takes tens of seconds: it pays on whole
    scenes, not on small crops); returns whether it did. Never on a CPU."""
    if device.type != "cuda" or os.environ.get(COMPILE_VARIABLE) != "1":
        return False
    module.forward = torch.compile(module.forward, dynamic=False)
    return True


def tiles_per_batch(peak_bytes: int, free_bytes: int, tiles_across: int, share: float = MEMORY_SHARE) -> int:
    """How many tiles one batch may hold: ``share`` of the free memory over one tile's peak
    memory, between 1 and the tiles of a strip."""
    if peak_bytes <= 0:
        return tiles_across
    return max(1, min(tiles_across, int(share * free_bytes // peak_bytes)))


def batch_for_memory(process: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], channels: int, side: int,
                     tiles_across: int, device: torch.device) -> int:
    """Tiles per batch for ``process`` ((values, valid) (B, channels, side, side) -> output) on
    ``device``: 1 on a CPU; on a GPU, from the peak memory one probe tile takes (measured) and
    the memory free after it (:func:`tiles_per_batch`)."""
    if device.type != "cuda":
        return 1
    values = torch.ones(1, channels, side, side, device=device)
    valid = torch.ones_like(values, dtype=torch.bool)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.no_grad():
        process(values, valid)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del values, valid
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    return tiles_per_batch(peak, free, tiles_across)
