"""``python -m training evaluate``: PSNR / SSIM of a model card on clean references.

Each reference gets seeded Gamma(L, 1/L) speckle; the model despeckles the whole image (all
pixels valid, fill value = the median of the noisy image), and PSNR / SSIM are computed on
amplitude (see metrics.py), for the model and for the noisy input.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.normalisation import reference_level
from sar_despeckle_plugin.core.models.weights import load_model

from .config import SourceConfig
from .data import load_image_source, speckled
from .metrics import psnr_amplitude, ssim_amplitude


def parse_span(text: str) -> list:
    """``"300:500"`` -> [300, 500]; ``""`` -> [] (whole axis)."""
    if not text:
        return []
    start, _, stop = text.partition(":")
    try:
        span = [int(start), int(stop)]
    except ValueError:
        span = []
    if len(span) != 2 or not 0 <= span[0] < span[1]:
        raise SarDespeckleError(f"A region must be start:stop with 0 <= start < stop (e.g. 300:500); got '{text}'.")
    return span


def evaluate(card: str, references: list, units: str, looks: float, seed: int, rows: str = "",
             cols: str = "", device: str = "cpu", self_ensemble: bool = True) -> list[dict]:
    """One record per reference: name, size, psnr/ssim of the model and of the noisy input.
    ``self_ensemble``: average in the mirrored image's estimate, as the plugin's SELF_ENSEMBLE
    does by default (False: the network's single pass)."""
    model = load_model(card, device)
    results = []
    for index, path in enumerate(references):
        source = SourceConfig(path=os.path.abspath(path), kind="clean", units=units,
                              rows=parse_span(rows), cols=parse_span(cols))
        clean = load_image_source(source).images[0][:1]
        noisy = speckled(clean, looks, np.random.default_rng([seed, index]))
        noisy_t = torch.from_numpy(noisy[None]).to(device)
        valid = torch.ones_like(noisy_t, dtype=torch.bool)
        estimate = model.despeckle(noisy_t, valid, reference_level(noisy), self_ensemble).cpu()
        clean_t = torch.from_numpy(clean[None])
        results.append({
            "reference": source.describe(),
            "size": list(clean.shape[-2:]),
            "psnr": psnr_amplitude(estimate, clean_t),
            "ssim": ssim_amplitude(estimate, clean_t),
            "psnr_input": psnr_amplitude(torch.from_numpy(noisy), clean_t),
            "ssim_input": ssim_amplitude(torch.from_numpy(noisy), clean_t),
        })
    return results


def format_table(results: list[dict], looks: float, seed: int) -> str:
    lines = [f"PSNR / SSIM on amplitude, {looks:g}-look synthetic speckle, seed {seed}",
             f"{'reference':<48} {'PSNR':>7} {'SSIM':>6}   {'input PSNR':>10} {'SSIM':>6}"]
    for r in results:
        lines.append(f"{r['reference'][:48]:<48} {r['psnr']:7.2f} {r['ssim']:6.3f}   {r['psnr_input']:10.2f} {r['ssim_input']:6.3f}")
    if len(results) > 1:
        mean = {k: sum(r[k] for r in results) / len(results) for k in ("psnr", "ssim", "psnr_input", "ssim_input")}
        lines.append(f"{'mean':<48} {mean['psnr']:7.2f} {mean['ssim']:6.3f}   {mean['psnr_input']:10.2f} {mean['ssim_input']:6.3f}")
    return "\n".join(lines)
