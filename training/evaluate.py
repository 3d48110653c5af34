"""``python -m training evaluate``: PSNR / SSIM of a model card on clean references.

Each reference gets seeded Gamma(L, 1/L) speckle, drawn as the benchmark protocol draws it
(``training.benchmark``: the same images and scores as ``scripts/bench_networks.py`` for the
same seed); the model despeckles it through the plugin's file pipeline, as the plugin runs it
(``benchmark.despeckle_array``), and PSNR / SSIM are computed on amplitude (see metrics.py), for
the model and for the noisy input. ``--protocol`` runs the whole protocol (the three held-out
references, ten seeds) and ``--write-card`` records its means as the card's ``metrics``.
"""

from __future__ import annotations

import json

import numpy as np

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.weights import load_model

from .benchmark import DEFINITION, despeckle_array, held_out_pairs, score


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
             cols: str = "", device: str = "cpu", self_ensemble: bool = False,
             seeds: list | None = None) -> list[dict]:
    """One record per seed and reference: name, seed, size, psnr/ssim of the model and of the
    noisy input. ``seeds``: several speckle draws (default: ``seed`` alone).
    ``self_ensemble``: average in the mirrored image's estimate, as the plugin's SELF_ENSEMBLE
    does when ticked (False: the network's single pass, the plugin's default)."""
    load_model(card, device)  # refuses a card that is not a despeckler before any work
    results = []
    for draw in seeds or [seed]:
        for _, description, clean, noisy in held_out_pairs(references, draw, looks, parse_span(rows),
                                                           parse_span(cols), units):
            estimate = despeckle_array(noisy, looks=looks, device=device, model_card=card,
                                       self_ensemble=self_ensemble)
            psnr, ssim = score(estimate, clean)
            psnr_input, ssim_input = score(noisy, clean)
            results.append({"reference": description, "seed": draw, "size": list(clean.shape[-2:]),
                            "psnr": psnr, "ssim": ssim, "psnr_input": psnr_input, "ssim_input": ssim_input})
    return results


def protocol_means(results: list[dict]) -> dict:
    """psnr, ssim, psnr_input, ssim_input: the mean over references, then over seeds."""
    seeds = sorted({r["seed"] for r in results})
    return {key: float(np.mean([np.mean([r[key] for r in results if r["seed"] == s]) for s in seeds]))
            for key in ("psnr", "ssim", "psnr_input", "ssim_input")}


def write_card_metrics(card: str, results: list[dict], looks: float, self_ensemble: bool) -> dict:
    """Record the protocol's means in the card's ``metrics`` (the weights, and so the card's
    sha256, are untouched); the training's own figures (loss, epoch, step) are kept."""
    with open(card, encoding="utf-8") as handle:
        record = json.load(handle)
    seeds = sorted({r["seed"] for r in results})
    references = list(dict.fromkeys(r["reference"] for r in results))
    metrics = {key: value for key, value in record.get("metrics", {}).items()
               if key in ("loss", "epoch", "step")}
    metrics.update(protocol_means(results))
    metrics.update(
        measured_on=f"benchmark protocol (training/benchmark.py): {'; '.join(references)}; "
                    f"{looks:g}-look speckle, seeds {', '.join(map(str, seeds))}; "
                    + ("SELF_ENSEMBLE on" if self_ensemble else "single pass (the plugin's default)"),
        definition=DEFINITION + ("; loss = the training's validation loss" if "loss" in metrics else ""),
    )
    record["metrics"] = metrics
    with open(card, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
    return metrics


def format_table(results: list[dict], looks: float, seed: int) -> str:
    seeds = sorted({r.get("seed", seed) for r in results})
    lines = [f"PSNR / SSIM on amplitude, {looks:g}-look synthetic speckle, seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}",
             f"{'reference':<48} {'PSNR':>7} {'SSIM':>6}   {'input PSNR':>10} {'SSIM':>6}"]
    for r in results:
        name = r["reference"] if len(seeds) == 1 else f"{r['reference']} (seed {r['seed']})"
        lines.append(f"{name[:48]:<48} {r['psnr']:7.2f} {r['ssim']:6.3f}   {r['psnr_input']:10.2f} {r['ssim_input']:6.3f}")
    if len(results) > 1:
        mean = {k: sum(r[k] for r in results) / len(results) for k in ("psnr", "ssim", "psnr_input", "ssim_input")}
        lines.append(f"{'mean':<48} {mean['psnr']:7.2f} {mean['ssim']:6.3f}   {mean['psnr_input']:10.2f} {mean['ssim_input']:6.3f}")
    return "\n".join(lines)
