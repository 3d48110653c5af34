"""Multitemporal despeckling benchmark: synthetic stacks with known changes, real two-date
dual-pol patches, CPU speed.

1. Synthetic stacks under the held-out protocol (``training.benchmark``): the references
   ``marais2``, ``ramb``, ``risoul`` (../shared/data/telecom_paris_clean), rows 300-499, as the
   clean reflectivity of every date; independent Gamma(L, 1/L) speckle per date
   (``numpy.random.default_rng([seed, reference, date])``), for N dates and L looks. Two changes
   are inserted: a rectangle 6 times brighter in the target date only (the middle date, N // 2
   counted from 0) and a disc 5 times darker (a flood) in date 1 only (date 2 when the target is
   date 1). ``--target-change`` picks what the target's change does to its rectangle:
   ``scaled`` (the default: the reflectivity times 6, its texture kept), ``weak`` (times 2,
   near the change test's threshold for one-look dates), ``replaced`` (another part of the
   reference, rolled by (60, 200) pixels, times 3: a new texture) or ``flat`` (6 times the
   rectangle's mean reflectivity: a new, untextured surface). Each method of ``sar_despeckle:despeckle_multitemporal`` despeckles the target date,
   file to file as the algorithm runs it (LOOKS = L), beside the single-image default
   (``sar_despeckle:despeckle``, METHOD automatic) on the target date alone. Scores, against
   the clean target: PSNR on amplitude (peak = the 99th percentile of the reference) over the
   unchanged pixels (more than 6 pixels from either change), inside the target's own change and
   inside the other date's change, and there the *ghost*: 10 log10 of the mean estimate over the
   mean reflectivity inside the other date's change (0 dB: no trace of it).
2. Real data: the 30 Sentinel-1 dual-pol C2 patch pairs of MTDN (../shared/data/mtdn_patches,
   skipped when absent; no reference): for each date and for C11 (VV) and C22 (VH), the ratio
   image I / I_hat (``core.quality.ratio_statistics``: mean, ENL, lag-1 autocorrelation rows /
   cols; the input's looks and autocorrelation are what only-speckle-removed gives), the ENL of
   the estimate on its most homogeneous windows (``core.quality.measure_speckle``), and for the
   multitemporal methods the pixels where the output is not a valid covariance matrix; beside
   the single-image default on C11 and C22 of each date alone.
3. Speed: CPU seconds (process time, all threads) and wall seconds per megapixel per target
   date, for 3 and 5 one-look dates of 1000 x 1000 pixels, one target.

Markdown on stdout and in ``<out>/multitemporal.md`` (which ``scripts/bench_report.py`` puts into
docs/benchmarks.md), everything in ``<out>/multitemporal.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

import torch
from osgeo import gdal

from sar_despeckle_plugin.core.choices import DEFAULT_MULTITEMPORAL_METHOD, MULTITEMPORAL_METHOD_LABELS
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.multitemporal.pipeline import despeckle_stack
from sar_despeckle_plugin.core.multitemporal.settings import MultitemporalSettings
from sar_despeckle_plugin.core.quality import measure_speckle, ratio_statistics
from training.benchmark import despeckle_array, load_reference, reference_paths, write_tif
from training.data import speckled

#: The METHODs benchmarked (all of them, or those ``--methods`` names).
METHODS = list(MULTITEMPORAL_METHOD_LABELS)
#: Methods that take two dates only (scored on the two-date stacks alone).
TWO_DATE_METHODS = ("multitask",)
SINGLE = "single-date default"
QUIET = Feedback(warn=lambda message: None)
#: The changes: the target's own (rows, cols, factor) rectangle and the other date's disc (centre, radius, factor).
TARGET_CHANGE = (slice(40, 90), slice(60, 160), 6.0)
OTHER_CHANGE = ((110, 350), 40, 0.2)
#: What the target's change does inside its rectangle (``--target-change``): its description, and
#: (reference, rectangle mask) -> the changed date's values there.
TARGET_CHANGES = {
    "scaled": ("x 6, texture kept", lambda reference, own: reference[own] * TARGET_CHANGE[2]),
    "weak": ("x 2, texture kept", lambda reference, own: reference[own] * 2.0),
    "replaced": ("another texture: the reference rolled by (60, 200) pixels, x 3",
                 lambda reference, own: np.roll(reference, (60, 200), (0, 1))[own] * 3.0),
    "flat": ("6 x the rectangle's mean: no texture",
             lambda reference, own: np.full(int(own.sum()), TARGET_CHANGE[2] * reference[own].mean())),
}
def methods_for(dates: int) -> list[str]:
    """The METHODs that run on a stack of ``dates`` dates."""
    return [method for method in METHODS if dates == 2 or method not in TWO_DATE_METHODS]


#: Pixels around a change left out of the "unchanged" score.
MARGIN = 6


def read_tif(path: str) -> np.ndarray:
    dataset = gdal.Open(path)
    return np.stack([dataset.GetRasterBand(i + 1).ReadAsArray().astype(np.float64)
                     for i in range(dataset.RasterCount)])


# ------------------------------------------------------------------------------------------
# synthetic stacks


def change_masks(shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target's change, other date's change, unchanged pixels beyond MARGIN of both)."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    own = np.zeros(shape, bool)
    own[TARGET_CHANGE[0], TARGET_CHANGE[1]] = True
    (row, col), radius, _ = OTHER_CHANGE
    distance = np.hypot(rows - row, cols - col)
    other = distance <= radius
    near = np.zeros(shape, bool)
    near[max(TARGET_CHANGE[0].start - MARGIN, 0): TARGET_CHANGE[0].stop + MARGIN,
         max(TARGET_CHANGE[1].start - MARGIN, 0): TARGET_CHANGE[1].stop + MARGIN] = True
    return own, other, ~(near | (distance <= radius + MARGIN))


def stack_of(clean: np.ndarray, dates: int, target: int, target_change: str = "scaled") -> list[np.ndarray]:
    """The clean reflectivity of each date: the target's own change (``TARGET_CHANGES``), and the other date's."""
    own, other, _ = change_masks(clean.shape)
    other_date = 0 if target != 0 else 1
    result = []
    for t in range(dates):
        date = clean.astype(np.float64).copy()
        if t == target:
            date[own] = TARGET_CHANGES[target_change][1](date, own)
        if t == other_date:
            date[other] *= OTHER_CHANGE[2]
        result.append(date)
    return result


def masked_psnr(estimate: np.ndarray, clean: np.ndarray, where: np.ndarray, peak: float) -> float:
    """PSNR (dB) on amplitude over ``where``, with the protocol's peak."""
    error = float(np.mean((np.sqrt(np.maximum(estimate[where], 0)) - np.sqrt(clean[where])) ** 2))
    return math.inf if error == 0 else 10 * math.log10(peak ** 2 / error)


def scores(estimate: np.ndarray, clean: np.ndarray, reference: np.ndarray) -> dict:
    own, other, unchanged = change_masks(clean.shape)
    peak = float(np.percentile(np.sqrt(reference), 99))
    return {
        "psnr_unchanged": masked_psnr(estimate, clean, unchanged, peak),
        "psnr_own_change": masked_psnr(estimate, clean, own, peak),
        "psnr_other_change": masked_psnr(estimate, clean, other, peak),
        "ghost_db": 10 * math.log10(estimate[other].mean() / clean[other].mean()),
    }


def synthetic(dates_list, looks_list, seeds, scratch, target_change: str = "scaled") -> list[dict]:
    rows = []
    for path_index, path in enumerate(reference_paths()):
        reference, description = load_reference(path)
        for looks in looks_list:
            for dates in dates_list:
                target = dates // 2
                clean = stack_of(reference, dates, target, target_change)
                for seed in seeds:
                    noisy = [speckled(c, looks, np.random.default_rng([seed, path_index, t])) for t, c in enumerate(clean)]
                    paths = [write_tif(os.path.join(scratch, f"date{t + 1}.tif"), n) for t, n in enumerate(noisy)]
                    row = {"reference": os.path.basename(path), "looks": looks, "dates": dates, "seed": seed,
                           "target": target + 1}
                    row[SINGLE] = scores(despeckle_array(noisy[target], scratch, looks=looks, method="automatic"),
                                         clean[target], reference)
                    for method in methods_for(dates):
                        out = os.path.join(scratch, f"{method}.tif")
                        despeckle_stack(paths, out, MultitemporalSettings(method=method, looks=(float(looks),),
                                                                          units="intensity", targets=(target + 1,),
                                                                          device="cpu"), QUIET)
                        row[method] = scores(read_tif(out)[0], clean[target], reference)
                    rows.append(row)
                    print(f"  {description}, L = {looks}, {dates} dates, seed {seed}: " + ", ".join(
                        f"{name} {row[name]['psnr_unchanged']:.2f}" for name in (SINGLE, *methods_for(dates))),
                        file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means over references and seeds per (looks, dates)."""
    summary = []
    for looks in sorted({r["looks"] for r in rows}):
        for dates in sorted({r["dates"] for r in rows}):
            chosen = [r for r in rows if r["looks"] == looks and r["dates"] == dates]
            if not chosen:
                continue
            entry = {"looks": looks, "dates": dates}
            for name in (SINGLE, *methods_for(dates)):
                entry[name] = {key: float(np.mean([r[name][key] for r in chosen])) for key in chosen[0][name]}
            summary.append(entry)
    return summary


# ------------------------------------------------------------------------------------------
# real two-date dual-pol patches


def mtdn_dates(path: str) -> list[np.ndarray]:
    """The two dates of an MTDN patch as C2 bands (C11, C22, Re C12, Im C12), (4, rows, cols)."""
    from scipy.io import loadmat

    data = loadmat(path)["data"].astype(np.float64)
    return [np.stack([data[..., first], data[..., first + 3], data[..., first + 1], data[..., first + 2]])
            for first in (0, 7)]


def invalid_covariances(c2: np.ndarray) -> int:
    c11, c22, re, im = c2
    return int(((c11 < 0) | (c22 < 0) | (re ** 2 + im ** 2 > c11 * c22 * (1 + 1e-5))).sum())


def intensity_figures(noisy: np.ndarray, estimate: np.ndarray) -> dict:
    ratio = ratio_statistics(noisy, estimate)
    homogeneous = measure_speckle(estimate, estimate > 0)
    return {"ratio_mean": ratio.mean, "ratio_enl": ratio.looks, "ratio_lag1_rows": ratio.rows[0],
            "ratio_lag1_cols": ratio.cols[0], "enl_homogeneous": homogeneous.looks if homogeneous else math.nan}


def real(scratch) -> dict | None:
    paths = sorted(glob.glob(os.path.join(DATA, "mtdn_patches", "*.mat")),
                   key=lambda p: int(os.path.splitext(os.path.basename(p))[0]))
    if not paths:
        return None
    figures = {name: [] for name in (SINGLE, *METHODS)}
    invalid = {method: 0 for method in METHODS}
    input_statistics = []
    for path in paths:
        dates = mtdn_dates(path)
        files = [write_tif(os.path.join(scratch, f"patch{t + 1}.tif"), d) for t, d in enumerate(dates)]
        for date in dates:
            for band in (0, 1):
                measured = measure_speckle(date[band], date[band] > 0)
                input_statistics.append((measured.looks, measured.rows[0], measured.cols[0]) if measured
                                        else (math.nan,) * 3)
        for method in METHODS:
            out = os.path.join(scratch, f"{method}.tif")
            despeckle_stack(files, out, MultitemporalSettings(method=method, layout="c2", device="cpu"), QUIET)
            result = read_tif(out)
            for t, date in enumerate(dates):
                invalid[method] += invalid_covariances(result[4 * t: 4 * t + 4])
                for band in (0, 1):
                    figures[method].append(intensity_figures(date[band], result[4 * t + band]))
        for date in dates:
            for band in (0, 1):
                figures[SINGLE].append(intensity_figures(date[band], despeckle_array(
                    date[band].astype(np.float32), scratch, looks=None, method="automatic")))
    pixels = sum(2 * 100 * 100 for _ in paths)
    return {
        "patches": len(paths),
        "input_enl_homogeneous": float(np.nanmean([v[0] for v in input_statistics])),
        "input_lag1": [float(np.nanmean([v[axis] for v in input_statistics])) for axis in (1, 2)],
        "figures": {name: {key: float(np.nanmean([f[key] for f in rows])) for key in rows[0]}
                    for name, rows in figures.items()},
        "invalid_covariances": invalid,
        "pixels": pixels,
    }


# ------------------------------------------------------------------------------------------
# speed


def speed(scratch, dates_list=(3, 5)) -> list[dict]:
    """A 1000 x 1000 scene (one whole reference mirrored 2 x 2): a small image would mostly
    time the networks' halo."""
    reference, _ = load_reference(reference_paths()[0], rows=())
    reference = np.block([[reference, reference[:, ::-1]], [reference[::-1], reference[::-1, ::-1]]])
    megapixels = reference.size / 1e6
    rows = []
    for dates in dates_list:
        paths = [write_tif(os.path.join(scratch, f"speed{t}.tif"),
                           speckled(reference, 1.0, np.random.default_rng([99, t]))) for t in range(dates)]
        for method in methods_for(dates):
            out = os.path.join(scratch, "speed.tif")
            cpu, wall = time.process_time(), time.perf_counter()
            despeckle_stack(paths, out, MultitemporalSettings(method=method, looks=(1.0,), units="intensity",
                                                              targets=(dates // 2 + 1,), device="cpu"), QUIET)
            rows.append({"method": method, "dates": dates, "threads": torch.get_num_threads(),
                         "cpu_s_per_mpx": (time.process_time() - cpu) / megapixels,
                         "wall_s_per_mpx": (time.perf_counter() - wall) / megapixels})
    return rows


# ------------------------------------------------------------------------------------------
# report


def table(header, rows, align) -> list[str]:
    marks = {"l": ":--", "r": "--:"}
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |",
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def markdown(result: dict) -> str:
    lines = ["## Synthetic stacks (held-out rows 300-499, inserted changes)", "",
             f"Target: the middle date; seeds {result['seeds']}; default METHOD `{DEFAULT_MULTITEMPORAL_METHOD}`. "
             "PSNR (dB, amplitude) against the clean target; *own*: inside the target's own change "
             f"({TARGET_CHANGES[result.get('target_change', 'scaled')][0]}); "
             "*other*: inside the change of another date (x 0.2), where the ghost is its trace in the "
             "target (dB; 0 = none).", ""]
    rows = []
    for entry in result["summary"]:
        for name in (SINGLE, *methods_for(entry["dates"])):
            s = entry[name]
            gain = s["psnr_unchanged"] - entry[SINGLE]["psnr_unchanged"]
            rows.append([f"{entry['looks']:g}", str(entry["dates"]), name, f"{s['psnr_unchanged']:.2f}",
                         "" if name == SINGLE else f"{gain:+.2f}", f"{s['psnr_own_change']:.2f}",
                         f"{s['psnr_other_change']:.2f}", f"{s['ghost_db']:+.2f}"])
    lines += table(["L", "dates", "method", "PSNR unchanged", "vs single", "PSNR own change", "PSNR other change",
                    "ghost dB"], rows, "lllrrrrr")
    real_result = result.get("real")
    if real_result:
        lines += ["## Real two-date dual-pol patches (MTDN, Sentinel-1, no reference)", "",
                  f"{real_result['patches']} patches, 2 dates, C11 (VV) and C22 (VH); means over patches, dates and "
                  f"bands. The input's ENL on homogeneous windows: {real_result['input_enl_homogeneous']:.2f}, its "
                  f"speckle's lag-1 autocorrelation {real_result['input_lag1'][0]:.2f} / "
                  f"{real_result['input_lag1'][1]:.2f} (rows / cols): correlated speckle, off-model for the "
                  "networks trained on white speckle. "
                  "Invalid: output pixels that are not a valid covariance matrix, of "
                  f"{real_result['pixels']:,}.", ""]
        rows = []
        for name, f in real_result["figures"].items():
            invalid = real_result["invalid_covariances"].get(name)
            rows.append([name, f"{f['ratio_mean']:.3f}", f"{f['ratio_enl']:.2f}",
                         f"{f['ratio_lag1_rows']:.2f} / {f['ratio_lag1_cols']:.2f}", f"{f['enl_homogeneous']:.1f}",
                         "n/a (intensities)" if invalid is None else str(invalid)])
        lines += table(["method", "ratio mean", "ratio ENL", "ratio lag-1 rows / cols", "ENL homogeneous",
                        "invalid C2"], rows, "lrrrrr")
    if result.get("speed"):
        lines += ["## Speed", "", "1000 x 1000 one-look dates, one target date, CPU "
                  f"({os.cpu_count()} cores, shared); seconds per megapixel per target date:", ""]
        lines += table(["method", "dates", "torch threads", "CPU s/Mpx", "wall s/Mpx"],
                       [[r["method"], str(r["dates"]), str(r["threads"]), f"{r['cpu_s_per_mpx']:.1f}",
                         f"{r['wall_s_per_mpx']:.1f}"] for r in result["speed"]], "lrrrr")
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "bench", "multitemporal"))
    parser.add_argument("--dates", type=int, nargs="+", default=[2, 3, 5, 8])
    parser.add_argument("--looks", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--target-change", default="scaled", choices=sorted(TARGET_CHANGES),
                        help="what the target's own change does to its rectangle (see the module doc)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["synthetic", "real", "speed"])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS,
                        help="the multitemporal METHODs to run (default: all; the single-date default always runs)")
    args = parser.parse_args()
    METHODS[:] = [method for method in METHODS if method in args.methods]
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    result = {"seeds": args.seeds, "default_method": DEFAULT_MULTITEMPORAL_METHOD, "target_change": args.target_change}
    with tempfile.TemporaryDirectory() as scratch:
        if "synthetic" not in args.skip:
            result["synthetic"] = synthetic(args.dates, args.looks, args.seeds, scratch, args.target_change)
            result["summary"] = summarise(result["synthetic"])
        if "real" not in args.skip:
            result["real"] = real(scratch)
        if "speed" not in args.skip:
            result["speed"] = speed(scratch)
    result.setdefault("summary", [])
    text = markdown(result)
    print(text)
    with open(os.path.join(args.out, "multitemporal.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(os.path.join(args.out, "multitemporal.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
