"""How networks run on a device: reduced precision where it stays within the bounds below of
float32, compilation when asked for, and batches of tiles sized to the GPU's free memory.

Precision: a log-domain network's output is an intensity, so its reduced-precision error is
measured as the per-pixel ratio to the float32 output, in dB, ``10 log10(I_reduced / I_fp32)``,
on a fixed probe (1-look speckle over a piecewise scene with bright points, 256 x 256): a
precision is kept when the RMS of that error is within :data:`MAX_RMS_ERROR_DB` and its
largest value within :data:`MAX_PEAK_ERROR_DB`. Measured on the shipped networks: float16
0.002-0.003 dB RMS, 0.026-0.028 dB largest; bfloat16 0.018-0.024 dB RMS, 0.18-0.27 dB largest,
its held-out PSNR within 0.01 dB of float32 (docs/gpu.md).

* On a GPU: float16 first (10 mantissa bits against bfloat16's 7), then bfloat16.
* On a CPU: bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX-BF16: AMD Zen 4
  and later, Intel Cooper Lake, Sapphire Rapids and later), where oneDNN runs the convolutions
  about twice as fast as in float32; float32 elsewhere (emulated bfloat16 is slower, and CPU
  float16 is emulated everywhere).
* ``SAR_DESPECKLE_FLOAT32=1`` in the environment keeps float32 on every device (the same
  result on every machine, to rounding).

Precision aside, a CPU run is what it always was: nothing compiled and one tile per batch.
(Channels-last memory, which pays on both, is already how ``core.models.weights.load_model``
places every network and its input.)
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, NamedTuple

import torch

from .feedback import Feedback

#: RMS over the probe's pixels of the change a reduced precision may make to a network's
#: output (dB): a few hundredths of a dB, far below what despeckling itself leaves.
MAX_RMS_ERROR_DB = 0.05
#: Largest change it may make to any one pixel of the probe (dB).
MAX_PEAK_ERROR_DB = 0.5
#: Reduced precisions tried on a GPU, in order of preference (float16 first: 10 mantissa bits
#: against bfloat16's 7; log-domain inputs are clipped, so its smaller range never overflows).
PRECISIONS = (torch.float16, torch.bfloat16)
#: Environment variable that keeps every network in float32 on every device ("1").
FLOAT32_VARIABLE = "SAR_DESPECKLE_FLOAT32"
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


class PrecisionError(NamedTuple):
    """How far a reduced precision moves a network's output from float32 over the probe's
    pixels: the RMS and the largest of ``|10 log10(I_reduced / I_fp32)|`` (dB)."""

    rms_db: float
    peak_db: float

    @property
    def within_bounds(self) -> bool:
        return self.rms_db <= MAX_RMS_ERROR_DB and self.peak_db <= MAX_PEAK_ERROR_DB


def precision_error(network: Network, probe: torch.Tensor, dtype: torch.dtype) -> PrecisionError:
    """The :class:`PrecisionError` of running ``network`` in ``dtype`` on ``probe``."""
    with torch.no_grad():
        reference = network(probe).float()
        with autocast(probe.device, dtype):
            reduced = network(probe).float()
    tiny = torch.finfo(torch.float32).tiny
    error = (10 * torch.log10(reduced.clamp_min(tiny) / reference.clamp_min(tiny))).abs()
    return PrecisionError(float(error.pow(2).mean().sqrt()), float(error.max()))


def native_bfloat16_cpu() -> bool:
    """Whether this CPU computes bfloat16 products in hardware (AVX512-BF16 or AMX-BF16)."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def candidate_precisions(device: torch.device) -> tuple[torch.dtype, ...]:
    """The reduced precisions worth probing on ``device``, in order of preference (see the
    module's docstring); none when :data:`FLOAT32_VARIABLE` is "1"."""
    if os.environ.get(FLOAT32_VARIABLE) == "1":
        return ()
    if device.type == "cuda":
        return tuple(dtype for dtype in PRECISIONS if dtype != torch.bfloat16 or torch.cuda.is_bf16_supported())
    if device.type == "cpu" and native_bfloat16_cpu():
        return (torch.bfloat16,)
    return ()


def choose_precision(network: Network, device: torch.device, looks: float = 1.0,
                     candidates: tuple[torch.dtype, ...] | None = None
                     ) -> tuple[torch.dtype | None, PrecisionError | None]:
    """The first of ``candidates`` (default: :func:`candidate_precisions`) whose
    :func:`precision_error` on the probe is within bounds, and that error; (None, None) when
    there is no candidate (float32), (None, the error of the last one tried) when none is."""
    candidates = candidate_precisions(device) if candidates is None else candidates
    if not candidates:
        return None, None
    probe = probe_image(device, looks)
    error = None
    for dtype in candidates:
        error = precision_error(network, probe, dtype)
        if error.within_bounds:
            return dtype, error
    return None, error


def network_precision(model, looks: float, device: torch.device, feedback: Feedback) -> torch.dtype | None:
    """The precision a loaded despeckling network (``core.models.weights.LoadedModel``) runs in
    on ``device`` (:func:`choose_precision`, probed at ``looks``), said through ``feedback``;
    None for float32. Run the network within :func:`autocast` of it."""
    def run(images):
        return model.despeckle(images, torch.ones_like(images, dtype=torch.bool), float(images.median()), looks=looks)

    precision, error = choose_precision(run, device, looks)
    where = "GPU" if device.type == "cuda" else "CPU"
    bounds = f"at most {MAX_RMS_ERROR_DB} dB RMS and {MAX_PEAK_ERROR_DB} dB at any pixel allowed"
    if precision is not None:
        feedback.info(f"{where} inference in {str(precision).removeprefix('torch.')}: {error.rms_db:.3f} dB RMS "
                      f"and at most {error.peak_db:.3f} dB from float32 on the probe ({bounds}; "
                      f"{FLOAT32_VARIABLE}=1 keeps float32).")
    elif error is not None:
        feedback.info(f"{where} inference in float32: reduced precision differs from it by {error.rms_db:.3f} dB "
                      f"RMS, {error.peak_db:.3f} dB at most on the probe ({bounds}).")
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
