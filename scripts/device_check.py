"""Times every algorithm file to file on a GRD-sized synthetic raster, and one training step, on
the GPU when there is one (scripts/device_check.sh runs the CUDA tests first).

    python scripts/device_check.py [--small] [--out DIR] [--budget SECONDS]

On a GPU the rasters are full Sentinel-1 IW GRDH size, 17,000 rows x 25,000 columns (425 Mpx,
1.7 GB of float32 per date; the decorrelated SLC a quarter of that area); with --small, and
always on a CPU, 1,024 x 1,536. The synthetic dates are flat patches under 1-look Gamma speckle
(date 2 eight times brighter in one band of columns); the SLC is white complex Gaussian speckle. Prints a
Markdown table: algorithm, size, seconds (reading and writing included), Mpx/s, device, and what
the log said about precision and tiles; steps still to run when --budget seconds have passed
are listed as skipped. Writes nothing outside --out (default: a temporary folder, removed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import tomllib

import numpy as np
import torch
from osgeo import gdal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sar_despeckle_plugin.core import accelerate
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.decorrelation.pipeline import decorrelate_raster
from sar_despeckle_plugin.core.decorrelation.settings import DecorrelationOutputs, DecorrelationSettings
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.multitemporal.pipeline import despeckle_stack
from sar_despeckle_plugin.core.multitemporal.settings import MultitemporalSettings
from training.config import config_from_dict
from training.trainer import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = (17_000, 25_000)
SMALL = (1_024, 1_536)
#: Rows written per block when making the synthetic rasters.
BLOCK_ROWS = 1_024
#: Log lines worth a column in the table.
NOTES = ("GPU inference", "compiled", "Running", "out of memory")


def write_raster(path: str, rows: int, cols: int, seed: int, changed: bool = False, slc: bool = False) -> str:
    """A synthetic GeoTIFF written block by block (see the module doc)."""
    driver = gdal.GetDriverByName("GTiff")
    kind = gdal.GDT_CFloat32 if slc else gdal.GDT_Float32
    dataset = driver.Create(path, cols, rows, 1, kind, ["TILED=YES", "BIGTIFF=YES"])
    dataset.SetGeoTransform((500000.0, 10.0, 0.0, 4800000.0, 0.0, -10.0))
    band = dataset.GetRasterBand(1)
    rng = np.random.default_rng(seed)
    levels = np.random.default_rng(1).uniform(0.05, 2.0, (rows // 256 + 1, cols // 256 + 1)).astype(np.float32)
    for row in range(0, rows, BLOCK_ROWS):
        height = min(BLOCK_ROWS, rows - row)
        if slc:
            block = ((rng.standard_normal((height, cols), np.float32)
                      + 1j * rng.standard_normal((height, cols), np.float32)) / np.sqrt(2)).astype(np.complex64)
        else:
            scene = np.repeat(np.repeat(levels[row // 256: (row + height - 1) // 256 + 1], 256, 0), 256, 1)
            offset = row % 256
            scene = scene[offset: offset + height, :cols]
            if changed:
                scene = scene.copy()
                scene[:, cols // 3: cols // 3 + cols // 10] *= 8
            block = scene * rng.standard_gamma(1.0, (height, cols)).astype(np.float32)
        band.WriteArray(block, 0, row)
    dataset = None
    return path


def timed(step, name: str, pixels: int, device: str):
    """Run ``step(feedback)``; the table row with its time and the log lines in :data:`NOTES`."""
    lines = []
    feedback = Feedback(info=lines.append, warn=lines.append)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(feedback)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    notes = "; ".join(line for line in lines if any(key in line for key in NOTES))
    return {"step": name, "Mpx": pixels / 1e6, "seconds": seconds, "Mpx/s": pixels / 1e6 / seconds,
            "device": device, "notes": notes}


def training_step_seconds(device: str, folder: str) -> float:
    """Seconds per optimisation step of the default network's configuration (its architecture,
    batch 16 of 64 x 64 patches, mixed precision as configured) on synthetic scenes: the slope
    between the logged steps of a short run, so set-up and validation do not count."""
    with open(os.path.join(ROOT, "training", "configs", "sarcnn_default.toml"), "rb") as handle:
        raw = tomllib.load(handle)
    steps = 40
    raw["data"]["train"] = [{"synthetic": 8, "side": 256, "seed": 1}]
    raw["data"]["validation"] = [{"synthetic": 1, "side": 128, "seed": 2}]
    raw["data"].pop("watch", None)
    raw["data"]["samples_per_epoch"] = steps * raw["train"]["batch_size"]
    raw["train"].update(epochs=1, device=device, log_every=10, warmup_steps=0)
    raw["train"].pop("time_budget_minutes", None)
    output = os.path.join(folder, "training")
    train(config_from_dict(raw, os.path.join(ROOT, "training", "configs"), "device_check"), output, log=lambda m: None)
    with open(os.path.join(output, "metrics.json")) as handle:
        rows = [row for row in json.load(handle)["rows"] if row["split"] == "train"]
    return (rows[-1]["seconds"] - rows[0]["seconds"]) / (rows[-1]["step"] - rows[0]["step"])


def steps(folder: str, rows: int, cols: int, device: str):
    """(name, pixels, function of the feedback) of every timed step, in order."""
    dates = [os.path.join(folder, f"date{t}.tif") for t in (1, 2)]
    slc = os.path.join(folder, "slc.tif")
    slc_rows, slc_cols = rows // 2, cols // 2
    out = os.path.join(folder, "out")
    os.makedirs(out, exist_ok=True)
    pixels = rows * cols

    def despeckle(method=None, name="x"):
        settings = DespeckleSettings(device=device, looks=1.0, units="intensity",
                                     **({"method": method, "window": 7} if method else {}))
        return lambda feedback: despeckle_raster(dates[0], os.path.join(out, f"{name}.tif"), settings, feedback)

    def compiled(feedback):
        os.environ[accelerate.COMPILE_VARIABLE] = "1"
        try:
            despeckle(name="network_compiled")(feedback)
        finally:
            del os.environ[accelerate.COMPILE_VARIABLE]

    yield "despeckle: Lee 7 x 7", pixels, despeckle("lee", "lee")
    yield "despeckle: default (Automatic: sarcnn_default)", pixels, despeckle(name="network")
    if device == "cuda":
        yield "despeckle: default, torch.compile", pixels, compiled
    yield "change_detection: default method, 2 dates", pixels, lambda feedback: detect_changes(
        dates, ChangeOutputs(change_mask=os.path.join(out, "mask.tif")),
        ChangeSettings(looks=(1.0,), units="intensity", device=device), feedback)
    yield "despeckle_multitemporal: RABASAR, 2 dates", pixels, lambda feedback: despeckle_stack(
        dates, os.path.join(out, "rabasar.tif"), MultitemporalSettings(looks=(1.0,), units="intensity", device=device),
        feedback)
    yield "decorrelate: SLC (a quarter of the area)", slc_rows * slc_cols, lambda feedback: decorrelate_raster(
        slc, DecorrelationOutputs(os.path.join(out, "slc_white.tif")), DecorrelationSettings(device=device), feedback)


def table(results: list[dict]) -> str:
    lines = ["| step | Mpx | seconds | Mpx/s | device | notes |", "|---|---|---|---|---|---|"]
    for r in results:
        if r.get("seconds") is None:
            lines.append(f"| {r['step']} | {r['Mpx']:.1f} | {r['notes']} | | {r['device']} | |")
        else:
            lines.append(f"| {r['step']} | {r['Mpx']:.1f} | {r['seconds']:.2f} | {r['Mpx/s']:.2f} | "
                         f"{r['device']} | {r['notes']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="1,024 x 1,536 rasters (always on a CPU)")
    parser.add_argument("--out", help="working folder (kept); default: a temporary folder, removed")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no new step starts")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows, cols = SMALL if args.small or device == "cpu" else FULL
    folder = args.out or tempfile.mkdtemp(prefix="device_check_")
    os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; rasters {rows} x {cols}", flush=True)
    try:
        made = time.perf_counter()
        for t, path in enumerate(("date1.tif", "date2.tif")):
            write_raster(os.path.join(folder, path), rows, cols, seed=10 + t, changed=t == 1)
        write_raster(os.path.join(folder, "slc.tif"), rows // 2, cols // 2, seed=12, slc=True)
        print(f"synthetic rasters written in {time.perf_counter() - made:.1f} s", flush=True)
        results = []
        for step_name, pixels, step in steps(folder, rows, cols, device):
            if time.perf_counter() - started > args.budget:
                results.append({"step": step_name, "Mpx": pixels / 1e6, "seconds": None, "device": device,
                                "notes": "skipped (budget)"})
                continue
            results.append(timed(step, step_name, pixels, device))
            print(f"  {step_name}: {results[-1]['seconds']:.2f} s", flush=True)
        if time.perf_counter() - started <= args.budget:
            seconds = training_step_seconds(device, folder)
            results.append({"step": "training: one step of sarcnn_default (16 x 64 x 64)", "Mpx": 16 * 64 * 64 / 1e6,
                            "seconds": seconds, "Mpx/s": 16 * 64 * 64 / 1e6 / seconds, "device": device,
                            "notes": "mean of 30 steps"})
        print(table(results))
        print(f"total {time.perf_counter() - started:.0f} s")
    finally:
        if not args.out:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
