"""Parameters, MACs per pixel, reach and CPU/GPU speed of a network (`python -m training profile`)."""

from __future__ import annotations

import time

import torch

from sar_despeckle_plugin.core.models.base import DespecklingNet
from sar_despeckle_plugin.core.models.complexity import macs_per_pixel, measured_reach, parameter_count
from sar_despeckle_plugin.core.models.weights import load_model


def profile(module: DespecklingNet, side: int, device: str, repeats: int = 2) -> dict:
    """Cost and speed of ``module.despeckle`` on a ``side`` x ``side`` image of 1-look speckle.

    Runs channels-last without gradients, as LoadedModel does; the time is the best of
    ``repeats`` runs after a warm-up on a 256 x 256 crop.
    """
    module = module.to(device=device, memory_format=torch.channels_last).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.empty(1, 1, side, side).exponential_(generator=generator).to(device)
    image = image.contiguous(memory_format=torch.channels_last)
    timings = []
    with torch.no_grad():
        module.despeckle(image[..., :256, :256], 1.0)
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            module.despeckle(image, 1.0)
            if device != "cpu":
                torch.cuda.synchronize()
            timings.append(time.perf_counter() - start)
    seconds = min(timings)
    return {
        "architecture": module.architecture,
        "hyperparameters": module.hyperparameters,
        "parameters": parameter_count(module),
        "macs_per_pixel": macs_per_pixel(module),
        "receptive_radius": module.receptive_radius,
        "measured_reach": measured_reach(module.cpu().float()),
        "side": side,
        "device": device,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "seconds_per_megapixel": seconds / (side * side / 1e6),
    }


def profile_card(card: str, side: int, device: str) -> dict:
    return profile(load_model(card, device).module, side, device)
