"""Dual-pol single-date despeckling benchmark: C2 covariance of known truth, despeckled jointly
by ``sar_despeckle:despeckle`` with BAND_LAYOUT C2.

Truth, under the held-out protocol (``training.benchmark``): for each reference ``marais2``,
``ramb``, ``risoul`` (../shared/data/telecom_paris_clean), rows 300-499 as linear intensity,

* C11 = the reference;
* C22 = C11 x a VH/VV ratio that falls smoothly from -4 dB on the first row to -14 dB on the
  last, with a disc at -20 dB (a field with little volume scattering);
* a complex VV-VH correlation of magnitude 0.2, 0.4, 0.6 and 0.8 on four column strips, phase
  0.5 rad on the upper half and -1.0 rad on the lower.

Speckle: (Svv, Svh) circular complex Gaussian of that covariance, averaged over L looks
(``training.data.speckled_c2``, generator ``numpy.random.default_rng([seed, reference, L])``).
Each method runs through the plugin's file pipeline (``core.despeckle.pipeline.despeckle_raster``,
GeoTIFF to GeoTIFF, BAND_LAYOUT c2, LOOKS = L): the default (METHOD automatic), the classical
filter and window METHOD automatic picks for those looks when no network fits
(``core.despeckle.choice.best_classical``), and a 7 x 7 boxcar (an average of the covariance
matrices, the classical polarimetric estimate); the noisy input beside them. Scores, averaged
over references and seeds: PSNR (dB) of C11 and of C22 on amplitude (peak = the 99th percentile
of the reference: ``training.benchmark.score``), the mean absolute error of the VV/VH ratio
C11 / C22 in dB and of the coherence magnitude |C12| / sqrt(C11 C22)
(``training.metrics.dualpol_errors``), and the pixels that are not a valid covariance
(``core.covariance.invalid_covariances``; summed, must be 0).

Real data, no reference: the single-look Sentinel-1 dual-pol covariance of Shanghai
(../shared/data/polsar/shanghai_sentinel1_cov.npz, 256 x 256; skipped when absent), looks
estimated. Per method: for C11 and C22 the ratio image I / I_hat (``core.quality.ratio_statistics``:
mean 1, ENL 1 and no autocorrelation when only speckle was removed), the median VV-VH coherence
magnitude of the output (the input's is 1 at every pixel: one look) and the invalid pixels.

Markdown on stdout and in ``<out>/dualpol.md`` (which ``scripts/bench_report.py`` puts into
docs/benchmarks.md), everything in ``<out>/dualpol.json``.

    .venv/bin/python scripts/bench_dualpol.py [--looks 1 4] [--seeds 0 1] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch
from osgeo import gdal

from sar_despeckle_plugin.core.covariance import bands_from_matrix, invalid_covariances
from sar_despeckle_plugin.core.despeckle.choice import best_classical
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.quality import ratio_statistics
from training.benchmark import load_reference, reference_paths, score, write_tif
from training.data import speckled_c2
from training.metrics import dualpol_errors

#: Magnitudes of the VV-VH correlation on the four column strips.
COHERENCES = (0.2, 0.4, 0.6, 0.8)
INPUT = "input (noisy)"
#: The real single-look dual-pol covariance (256, 256, 2, 2), complex.
REAL = os.path.join(os.path.dirname(ROOT), "shared", "data", "polsar", "shanghai_sentinel1_cov.npz")


def known_covariance(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C11, C22 and the complex correlation of the truth built on ``reference`` (see the module doc)."""
    height, width = reference.shape
    rows, cols = np.mgrid[:height, :width]
    ratio_db = -4.0 - 10.0 * rows / max(height - 1, 1)
    disc = (rows - height / 2) ** 2 + (cols - width / 3) ** 2 < (min(height, width) / 5) ** 2
    ratio_db = np.where(disc, -20.0, ratio_db)
    magnitude = np.asarray(COHERENCES)[np.minimum(cols * len(COHERENCES) // width, len(COHERENCES) - 1)]
    phase = np.where(rows < height // 2, 0.5, -1.0)
    c11 = reference.astype(np.float64)
    return c11, c11 * 10 ** (ratio_db / 10), magnitude * np.exp(1j * phase)


def methods_for(looks: float) -> dict[str, dict]:
    """Label -> DespeckleSettings fields of each method measured at ``looks``."""
    classical = best_classical(looks, correlated=False)
    return {
        "default (automatic)": {},
        f"{classical.method} {classical.window} x {classical.window}": {"method": classical.method,
                                                                        "window": classical.window},
        "boxcar 7 x 7": {"method": "boxcar", "window": 7},
    }


def scores(c2: np.ndarray, c11: np.ndarray, c22: np.ndarray, coherence: np.ndarray) -> dict:
    return {
        "psnr_c11": score(c2[0], c11)[0],
        "psnr_c22": score(c2[1], c22)[0],
        **{f"{name}_mae": value for name, value in dualpol_errors(c2, c11, c22, coherence).items()},
        "invalid": invalid_covariances(c2),
    }


def run(looks_list, seeds, scratch) -> list[dict]:
    """One row per (looks, method, reference, seed)."""
    rows = []
    quiet = Feedback(warn=lambda message: None)
    for index, path in enumerate(reference_paths()):
        reference, _ = load_reference(path)
        c11, c22, coherence = known_covariance(reference)
        name = os.path.splitext(os.path.basename(path))[0]
        for looks in looks_list:
            for seed in seeds:
                noisy = speckled_c2(c11, c22, coherence, int(looks), np.random.default_rng([seed, index, int(looks)]))
                source = write_tif(os.path.join(scratch, "c2.tif"), noisy)
                common = {"looks": looks, "reference": name, "seed": seed}
                rows.append({**common, "method": INPUT, **scores(noisy.astype(np.float64), c11, c22, coherence)})
                for label, fields in methods_for(looks).items():
                    out = os.path.join(scratch, "out.tif")
                    start = time.perf_counter()
                    despeckle_raster(source, out, DespeckleSettings(layout="c2", looks=looks, units="intensity",
                                                                    device="cpu", **fields), quiet)
                    seconds = time.perf_counter() - start
                    estimate, ran = read_output(out)
                    rows.append({**common, "method": label, "ran": ran, "seconds": seconds,
                                 **scores(estimate, c11, c22, coherence)})
                    print(f"L={looks:g} {name} seed {seed} {label}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def real(scratch) -> list[dict] | None:
    """One row per method on the real covariance (see the module doc); None when it is absent."""
    if not os.path.exists(REAL):
        return None
    noisy = bands_from_matrix(np.load(REAL)["cov"])
    source = write_tif(os.path.join(scratch, "real.tif"), noisy)
    rows = []
    for label, fields in methods_for(1.0).items():
        out = os.path.join(scratch, "real_out.tif")
        despeckle_raster(source, out, DespeckleSettings(layout="c2", units="intensity", device="cpu", **fields),
                         Feedback(warn=lambda message: None))
        estimate, ran = read_output(out)
        with np.errstate(divide="ignore", invalid="ignore"):
            coherence = np.hypot(estimate[2], estimate[3]) / np.sqrt(estimate[0] * estimate[1])
        row = {"method": label, "ran": ran, "coherence_median": float(np.nanmedian(coherence)),
               "invalid": invalid_covariances(estimate)}
        for band, name in ((0, "c11"), (1, "c22")):
            ratio = ratio_statistics(noisy[band].astype(np.float64), estimate[band])
            row[name] = {"ratio_mean": ratio.mean, "ratio_enl": ratio.looks, "ratio_lag1_rows": ratio.rows[0],
                         "ratio_lag1_cols": ratio.cols[0]}
        rows.append(row)
        print(f"real {label}: {row}", file=sys.stderr, flush=True)
    return rows


def read_output(path: str) -> tuple[np.ndarray, str]:
    """All bands of a despeckled GeoTIFF, (bands, rows, cols) float64, and the method that made it
    (its provenance: what METHOD automatic chose)."""
    dataset = gdal.Open(path)
    bands = np.stack([dataset.GetRasterBand(b + 1).ReadAsArray().astype(np.float64)
                      for b in range(dataset.RasterCount)])
    return bands, dataset.GetMetadataItem("SAR_DESPECKLE_METHOD") or ""


def summarise(rows: list[dict]) -> list[dict]:
    """Per (looks, method): the mean of each score over references and seeds, invalid summed."""
    summary = []
    for key in dict.fromkeys((row["looks"], row["method"]) for row in rows):
        chosen = [row for row in rows if (row["looks"], row["method"]) == key]
        ran = sorted({row.get("ran", "") for row in chosen} - {""})
        summary.append({
            "looks": key[0], "method": key[1], "ran": ", ".join(ran), "runs": len(chosen),
            **{name: float(np.mean([row[name] for row in chosen]))
               for name in ("psnr_c11", "psnr_c22", "ratio_db_mae", "coherence_mae")},
            "invalid": int(sum(row["invalid"] for row in chosen)),
        })
    return summary


def markdown(result: dict) -> str:
    lines = ["## Dual-pol C2, single date (held-out rows 300-499, known covariance)", "",
             f"Seeds {result['seeds']}, references {', '.join(result['references'])}; BAND_LAYOUT C2, LOOKS = L; "
             "VV/VH ratio -4 to -14 dB (a -20 dB disc), coherence 0.2 / 0.4 / 0.6 / 0.8 on column strips. "
             "Means over references and seeds; invalid = pixels that are not a valid covariance, summed.", "",
             "| L | method | PSNR C11 (dB) | PSNR C22 (dB) | VV/VH ratio MAE (dB) | coherence MAE | invalid |",
             "|--:|:--|--:|--:|--:|--:|--:|"]
    for row in result["summary"]:
        method = row["method"] + (f": {row['ran']}" if row["method"].startswith("default") else "")
        lines.append(f"| {row['looks']:g} | {method} | {row['psnr_c11']:.2f} | {row['psnr_c22']:.2f} | "
                     f"{row['ratio_db_mae']:.3f} | {row['coherence_mae']:.3f} | {row['invalid']} |")
    lines += ["", "## Real single-look dual-pol C2 (Sentinel-1, Shanghai, 256 x 256, no reference)", ""]
    if result["real"] is None:
        return "\n".join(lines + [f"Skipped: {REAL} is absent."]) + "\n"
    lines += ["Looks estimated. Ratio I / I_hat of C11 and C22: mean / ENL / lag-1 autocorrelation rows, cols "
              "(1 / 1 / 0, 0 when only speckle was removed); coherence: the output's median |C12| / sqrt(C11 C22) "
              "(the input's is 1: one look).", "",
              "| method | C11 ratio | C22 ratio | coherence median | invalid |",
              "|:--|--:|--:|--:|--:|"]
    for row in result["real"]:
        method = row["method"] + (f": {row['ran']}" if row["method"].startswith("default") else "")
        cells = [f"{r['ratio_mean']:.3f} / {r['ratio_enl']:.2f} / {r['ratio_lag1_rows']:.2f}, {r['ratio_lag1_cols']:.2f}"
                 for r in (row["c11"], row["c22"])]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {row['coherence_median']:.3f} | {row['invalid']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "dualpol"))
    parser.add_argument("--looks", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    missing = [path for path in reference_paths() if not os.path.exists(path)]
    if missing:
        sys.exit(f"bench_dualpol: the references are missing ({', '.join(missing)}): see ../shared/data/README.")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        rows = run(args.looks, args.seeds, scratch)
        real_rows = real(scratch)
    result = {"seeds": args.seeds, "looks": args.looks,
              "references": [os.path.splitext(os.path.basename(p))[0] for p in reference_paths()],
              "summary": summarise(rows), "rows": rows, "real": real_rows}
    text = markdown(result)
    print(text)
    with open(os.path.join(args.out, "dualpol.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(os.path.join(args.out, "dualpol.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
