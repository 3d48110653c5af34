"""`make bench` (busy machine): whole-process run times, on the machine as it is and with one
more CPU-bound process competing, beside Orfeo ToolBox in the same run.

A QGIS desktop is never idle. PyTorch's OpenMP threads spin at every barrier by default, and a
thread spinning while its partner is descheduled stalls the whole operation: the plugin sets
OpenMP's wait policy to passive (``sar_despeckle_plugin/__init__.py``). This script measures what
that buys, with whole processes (start-up included, as a user meets them):

- ``qgis_process run sar_despeckle:despeckle`` with a 7 x 7 Lee filter on a 4096 x 4096
  single-look intensity GeoTIFF (as ``scripts/bench_filters.py`` writes it), with the plugin's
  wait policy and with ``OMP_WAIT_POLICY=ACTIVE`` (the spinning it replaces);
- ``otbcli_Despeckle -filter lee`` (radius 3) on the same file;
- ``qgis_process`` with METHOD left at Automatic (the shipped network) on a 1024 x 1024 crop;
- ``qgis_process --version``: the start-up alone.

Each is timed quiet (no process of ours competing; the load average is recorded), then while one
``python -c "while True: pass"`` runs; each figure is the best of ``--repeats``. Results: Markdown
on stdout and in ``<out>/busy.md``, figures in ``<out>/busy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_filters import best_time, write_speckle_image
from bench_report import table

SIDE = 4096
NETWORK_SIDE = 1024


def qgis_process_command(executable: str, source: str, out: str, **parameters) -> list[str]:
    return [executable, "run", "sar_despeckle:despeckle", f"--INPUT={source}", "--INPUT_UNITS=0", "--LOOKS=1",
            *(f"--{name}={value}" for name, value in parameters.items()), f"--OUTPUT={out}"]


def runs(executable: str, big: str, small: str, folder: str) -> dict[str, tuple[list[str], dict]]:
    """label -> (command, environment changes) of every timed process."""
    lee = qgis_process_command(executable, big, os.path.join(folder, "lee.tif"), METHOD=1, WINDOW=7)
    found = {
        "qgis_process: start-up alone (--version)": ([executable, "--version"], {}),
        "qgis_process: Lee 7 x 7, 4096 x 4096": (lee, {}),
        "qgis_process: Lee 7 x 7, 4096 x 4096, OMP_WAIT_POLICY=ACTIVE": (lee, {"OMP_WAIT_POLICY": "ACTIVE"}),
        "qgis_process: Automatic (network), 1024 x 1024": (
            qgis_process_command(executable, small, os.path.join(folder, "net.tif")), {}),
    }
    if shutil.which("otbcli_Despeckle"):
        found["otbcli_Despeckle: Lee radius 3, 4096 x 4096"] = (
            ["otbcli_Despeckle", "-in", big, "-out", os.path.join(folder, "otb.tif"), "float", "-filter", "lee",
             "-filter.lee.rad", "3", "-filter.lee.nblooks", "1"], {})
    return found


def time_all(commands: dict, repeats: int) -> dict[str, float]:
    seconds = {}
    for label, (command, changes) in commands.items():
        environment = {"QT_QPA_PLATFORM": "offscreen", **os.environ, **changes}
        seconds[label] = best_time(lambda: subprocess.run(command, check=True, capture_output=True, env=environment),
                                   repeats)
        print(f"  {label}: {seconds[label]:.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/bench/busy")
    parser.add_argument("--qgis-process", default=shutil.which("qgis_process.bin") or "qgis_process")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    big = os.path.join(args.out, f"speckle_{SIDE}.tif")
    write_speckle_image(big, SIDE)
    result = {"cpu_count": os.cpu_count(), "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as folder:
        small = os.path.join(folder, f"speckle_{NETWORK_SIDE}.tif")
        subprocess.run(["gdal_translate", "-q", "-srcwin", "0", "0", str(NETWORK_SIDE), str(NETWORK_SIDE), big, small],
                       check=True)
        commands = runs(args.qgis_process, big, small, folder)
        result["load_average_quiet"] = os.getloadavg()
        print("Quiet:", flush=True)
        quiet = time_all(commands, args.repeats)
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            result["load_average_busy"] = os.getloadavg()
            print("One competing CPU-bound process:", flush=True)
            busy = time_all(commands, args.repeats)
        finally:
            competitor.kill()
            competitor.wait()
    result["seconds"] = {label: {"quiet": quiet[label], "busy": busy[label]} for label in commands}
    rows = [[label, f"{quiet[label]:.2f}", f"{busy[label]:.2f}", f"{busy[label] / quiet[label]:.2f}"]
            for label in commands]
    lines = [f"`scripts/bench_busy.py`, {os.cpu_count()} CPU cores, best of {args.repeats}; whole processes, "
             f"start-up included (load average {result['load_average_quiet'][0]:.1f} quiet, "
             f"{result['load_average_busy'][0]:.1f} with the competing process).", "",
             *table(["run", "quiet (s)", "one competing process (s)", "slow-down"], rows, "lrrr")]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(os.path.join(args.out, "busy.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(os.path.join(args.out, "busy.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
