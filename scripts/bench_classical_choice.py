"""Which classical filter (and window) is best for which speckle: the table METHOD = Automatic uses.

PSNR (dB, on amplitude, peak = 99th percentile of the reference: ``training.metrics``) of every
classical filter at windows 3-15 on the held-out rows 300-499 of the Telecom Paris clean
references (``/work/shared/data/telecom_paris_clean/*.npy``, amplitude), under:

* white Gamma(L, 1/L) speckle, L = 1, 2, 4, 8;
* correlated speckle: ``oversampled_slc``, complex speckle averaged over 2 x 2 pixels before
  detection (1 look, intensity lag-1 autocorrelation 0.25); ``stand_in_2x2``, single-look speckle averaged over 2 x 2 pixels with a
  stride of 1 (4 looks; intensity lag-1 autocorrelation 0.5 on both axes); and, when
  ``training/speckle_model.py`` has it, the ``sentinel1_iw_grdh`` preset (ENL about 4.5, lag-1
  about 0.74 rows / 0.53 cols).

Each filter gets the looks the plugin would give it by default: the project's estimator
(``core.speckle.estimate_looks``) on the noisy image. Scores are averaged over the three
references and ``--seeds`` speckle draws. Prints the per-condition tables (Markdown), the winner
per condition, and writes ``<out>/classical_choice.json``. The winners are what
``core/despeckle/choice.py`` (``CLASSICAL_CHOICE``) encodes; rerun this after changing a filter.

    .venv/bin/python scripts/bench_classical_choice.py [--seeds 1] [--out build/bench]

About 5 minutes on 2 CPU cores with one seed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sar_despeckle_plugin.core.despeckle.filters import CLASSICAL_METHODS, apply_filter
from sar_despeckle_plugin.core.quality import measure_speckle
from sar_despeckle_plugin.core.speckle import estimate_looks
from training.benchmark import despeckle_array
from training.metrics import psnr_amplitude

REFERENCES = os.path.join(os.path.dirname(ROOT), "shared", "data", "telecom_paris_clean")
HELD_OUT_ROWS = (300, 500)
WINDOWS = (3, 5, 7, 9, 11, 13, 15)


def stand_in_2x2(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Single-look speckle of a complex circular Gaussian field (|z|^2, mean 1), averaged over
    2 x 2 pixels with a stride of 1: 4 looks, lag-1 autocorrelation 0.5 along rows and columns."""
    rows, cols = shape
    z = (rng.standard_normal((rows + 1, cols + 1)) + 1j * rng.standard_normal((rows + 1, cols + 1))) * np.sqrt(0.5)
    single = np.abs(z) ** 2
    return 0.25 * (single[:-1, :-1] + single[1:, :-1] + single[:-1, 1:] + single[1:, 1:])


def oversampled_slc(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Single-look speckle of a complex field averaged over 2 x 2 pixels before detection (an
    SLC sampled at twice its bandwidth): 1 look, intensity lag-1 autocorrelation 0.25 per axis."""
    rows, cols = shape
    z = rng.standard_normal((rows + 1, cols + 1)) + 1j * rng.standard_normal((rows + 1, cols + 1))
    z = 0.5 * (z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:])
    return np.abs(z) ** 2 / 2.0


def conditions() -> dict:
    """Condition name -> (speckle draw(shape, rng), description)."""
    found = {
        f"white_L{looks:g}": ((lambda shape, rng, shape_l=looks: rng.gamma(shape_l, 1.0 / shape_l, shape)),
                              f"white Gamma({looks:g}, 1/{looks:g})")
        for looks in (1.0, 2.0, 4.0, 8.0)
    }
    found["oversampled_slc"] = (oversampled_slc, "complex speckle averaged 2 x 2 before detection (1 look, "
                                "lag-1 0.25 / 0.25)")
    found["stand_in_2x2"] = (stand_in_2x2, "1-look speckle averaged 2 x 2, stride 1 (4 looks, lag-1 0.5 / 0.5)")
    try:
        from training.speckle_model import PRESETS
        model = PRESETS["sentinel1_iw_grdh"]
        found["sentinel1_iw_grdh"] = ((lambda shape, rng: model.draw(shape, rng)), model.describe())
    except (ImportError, KeyError) as error:
        print(f"(no sentinel1_iw_grdh speckle preset: {error}; the 2 x 2 stand-in only)")
    return found


#: The shipped network trained on white 1-look speckle, also scored on mildly correlated 1-look
#: speckle: that score is why core.despeckle.choice.WHITE_NETWORK_TOLERANCE exists.
WHITE_NETWORK = "sarcnn_default"
WHITE_NETWORK_CARD = os.path.join(ROOT, "sar_despeckle_plugin", "weights", "sarcnn_default.json")
WHITE_NETWORK_CONDITIONS = ("oversampled_slc",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    parser.add_argument("--references", default=REFERENCES)
    parser.add_argument("--only", nargs="*", help="measure these conditions only")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    paths = sorted(glob.glob(os.path.join(args.references, "*.npy")))
    if not paths:
        sys.exit(f"no references in {args.references}")
    clean = {os.path.basename(p)[:-4]: (np.load(p)[HELD_OUT_ROWS[0]:HELD_OUT_ROWS[1]].astype(np.float64) ** 2)
             for p in paths}
    start = time.perf_counter()
    results = {}
    for name, (draw, description) in conditions().items():
        if args.only and name not in args.only:
            continue
        scores: dict[str, list[float]] = {}
        measured = []
        for seed in range(args.seeds):
            for index, (image_name, image) in enumerate(clean.items()):
                rng = np.random.default_rng([seed, index, 7])
                noisy = (image * draw(image.shape, rng)).astype(np.float32)
                valid = np.ones(noisy.shape, bool)
                looks = estimate_looks([noisy], [valid])
                stats = measure_speckle(draw((256, 256), np.random.default_rng([seed, index, 8])).astype(np.float64))
                measured.append((looks, stats.looks, stats.rows[0], stats.cols[0]))
                x = torch.from_numpy(noisy)[None, None]
                v = torch.ones_like(x, dtype=torch.bool)
                reference = torch.from_numpy(image.astype(np.float32))
                scores.setdefault("noisy input", []).append(psnr_amplitude(x[0, 0], reference))
                for method in CLASSICAL_METHODS:
                    for window in WINDOWS:
                        if method == "refined_lee" and window < 5:
                            continue
                        estimate = apply_filter(method, x, v, looks, window)[0, 0]
                        scores.setdefault(f"{method} {window}", []).append(psnr_amplitude(estimate, reference))
                if name in WHITE_NETWORK_CONDITIONS:  # how far a white-trained network still serves
                    estimate = despeckle_array(noisy, model_card=WHITE_NETWORK_CARD, looks=looks)
                    scores.setdefault(WHITE_NETWORK, []).append(psnr_amplitude(torch.from_numpy(estimate), reference))
        mean = {label: float(np.mean(values)) for label, values in scores.items()}
        best = max((label for label in mean if label not in ("noisy input", WHITE_NETWORK)), key=mean.get)
        per_method = {}
        for label, value in mean.items():
            method = label.rsplit(" ", 1)[0]
            if label not in ("noisy input", WHITE_NETWORK) and value > per_method.get(method, (None, -np.inf))[1]:
                per_method[method] = (int(label.rsplit(" ", 1)[1]), value)
        m = np.mean(measured, axis=0)
        results[name] = {
            "description": description,
            "estimated_looks": float(m[0]),
            "speckle_looks": float(m[1]), "lag1_rows": float(m[2]), "lag1_cols": float(m[3]),
            "best": {"method": best.rsplit(" ", 1)[0], "window": int(best.rsplit(" ", 1)[1]), "psnr": mean[best]},
            "best_per_method": {k: {"window": w, "psnr": p} for k, (w, p) in per_method.items()},
            "noisy_psnr": mean["noisy input"],
            "white_network_psnr": mean.get(WHITE_NETWORK),
            "psnr": mean,
        }
        print(f"\n### {name}: {description}; looks estimated {m[0]:.2f} (pure speckle: {m[1]:.2f} looks, "
              f"lag-1 {m[2]:.2f} rows / {m[3]:.2f} cols); noisy input {mean['noisy input']:.2f} dB\n")
        print("| filter | best window | PSNR (dB) |\n|---|---:|---:|")
        for method, (window, value) in sorted(per_method.items(), key=lambda item: -item[1][1]):
            print(f"| {method} | {window} | {value:.2f} |")
        if WHITE_NETWORK in mean:
            print(f"| {WHITE_NETWORK} (trained on white speckle) | - | {mean[WHITE_NETWORK]:.2f} |")
        print(f"\nbest: {best} ({mean[best]:.2f} dB)  [{time.perf_counter() - start:.0f} s]")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "classical_choice" + ("_" + "_".join(args.only) if args.only else "") + ".json"),
              "w", encoding="utf-8") as handle:
        json.dump({"seeds": args.seeds, "rows": list(HELD_OUT_ROWS), "windows": list(WINDOWS),
                   "references": sorted(clean), "conditions": results}, handle, indent=1)
    print("\n| speckle | looks (estimated) | lag-1 rows / cols | best filter | window | PSNR (dB) |")
    print("|---|---:|---|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['estimated_looks']:.2f} | {r['lag1_rows']:.2f} / {r['lag1_cols']:.2f} | "
              f"{r['best']['method']} | {r['best']['window']} | {r['best']['psnr']:.2f} |")


if __name__ == "__main__":
    main()
