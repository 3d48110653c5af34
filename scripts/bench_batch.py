"""Batch runner scaling (make bench): the same scenes through a local Dask cluster of 1 worker x 1
thread, then 2 workers x 1 thread.

    python scripts/bench_batch.py --out build/bench/batch [--scenes 8] [--side 1024]

Each scene is ``side`` x ``side`` pixels of 1-look speckle over a piecewise scene, despeckled
with the defaults (Automatic: the shipped network), each task's torch on one thread. Reports
per configuration the wall time (cluster start, worker start and imports included), the sum of
the scenes' own seconds, the per-scene overhead ((wall - sum / workers) / scenes) and the wall
time relative to 1 x 1 (issue 19's target: at most 0.65 with 2 workers on 2 cores), with the
load average before and after, since other jobs on the machine change everything. Writes
``batch.json`` and ``batch.md`` (the fragment scripts/bench_report.py puts into
docs/benchmarks.md) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sar_despeckle_plugin.batch.algorithms import algorithm
from sar_despeckle_plugin.batch.runner import Job, run_batch
from sar_despeckle_plugin.batch.scenes import input_groups, plan_tasks
from sar_despeckle_plugin.core.parameters import values_from_text
from tests.synthetic import piecewise_scene, speckle, write_geotiff

#: (workers, threads per task) of each run, the first being the reference.
CONFIGURATIONS = ((1, 1), (2, 1))
#: The issue's target for 2 workers x 1 thread relative to 1 x 1.
TARGET_RATIO = 0.65


def write_scenes(folder: str, count: int, side: int) -> str:
    """``count`` scenes in ``folder``/in; returns their glob pattern."""
    os.makedirs(os.path.join(folder, "in"), exist_ok=True)
    for index in range(count):
        write_geotiff(os.path.join(folder, "in", f"scene{index}.tif"),
                      speckle(piecewise_scene(side, side, seed=index), 1.0, seed=100 + index))
    return os.path.join(folder, "in", "*.tif")


def run(pattern: str, folder: str, workers: int, threads: int) -> dict:
    """One batch of every scene into a fresh output folder; its timings."""
    chosen = algorithm("despeckle")
    values = values_from_text(chosen.parameters, {"INPUT_UNITS": ["0"], "LOOKS": ["1"]})
    output = os.path.join(folder, f"out_{workers}x{threads}")
    shutil.rmtree(output, ignore_errors=True)
    tasks = plan_tasks(chosen, input_groups(pattern, chosen.stack), values, output)
    start = time.perf_counter()
    summary = run_batch(Job(chosen.id, values, chosen.settings(values), threads), tasks, workers=workers, retries=0)
    wall = time.perf_counter() - start
    failed = [scene["name"] for scene in summary["scenes"] if scene["status"] != "done"]
    if failed:
        raise SystemExit(f"scenes failed: {failed}")
    task_seconds = sum(scene["seconds"] for scene in summary["scenes"])
    return {"workers": workers, "threads": threads, "wall_seconds": wall, "task_seconds": task_seconds,
            "overhead_per_scene": (wall - task_seconds / workers) / len(tasks)}


def markdown(result: dict) -> str:
    runs = result["runs"]
    reference = runs[0]["wall_seconds"]
    lines = [f"{result['scenes']} scenes of {result['side']} x {result['side']} pixels, despeckled with the "
             "defaults (the shipped network), one torch thread per task; load average "
             f"{result['load_before']:.1f} before, {result['load_after']:.1f} after "
             f"({os.cpu_count()} cores).", "",
             "| workers x threads | wall (s) | scenes' own (s) | overhead per scene (s) | wall / 1 x 1 |",
             "|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['workers']} x {r['threads']} | {r['wall_seconds']:.1f} | {r['task_seconds']:.1f} | "
                     f"{r['overhead_per_scene']:.2f} | {r['wall_seconds'] / reference:.2f} |")
    ratio = runs[-1]["wall_seconds"] / reference
    verdict = "met" if ratio <= TARGET_RATIO else "not met"
    lines += ["", f"Target: 2 x 1 at most {TARGET_RATIO} x the 1 x 1 wall time: {ratio:.2f}, {verdict}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    pattern = write_scenes(args.out, args.scenes, args.side)
    load_before = os.getloadavg()[0]
    runs = [run(pattern, args.out, workers, threads) for workers, threads in CONFIGURATIONS]
    result = {"scenes": args.scenes, "side": args.side, "load_before": load_before,
              "load_after": os.getloadavg()[0], "runs": runs}
    with open(os.path.join(args.out, "batch.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    text = markdown(result)
    with open(os.path.join(args.out, "batch.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
