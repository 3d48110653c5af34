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

Start-up and small runs (median of ``--startup-repeats`` whole processes, 5 by default): what a
``qgis_process list``, ``help sar_despeckle:despeckle`` and a run on a 256 x 256 and a 1024 x 1024
image (Lee 7 x 7; Automatic, the shipped network) cost, beside QGIS's own share of it: the same
``list`` / ``help`` without the plugin, and ``native:fillnodata`` on the same image without the
plugin (QGIS's start-up, its Processing and the same raster read and written). "Ours" is the
difference. ``otbcli_Despeckle`` (Lee radius 3) on the same images and ``python -c "import torch"``
(the part of ours that every run pays) stand beside it; and, inside one process (the QGIS window,
a batch worker), the first and the second Automatic run on the 256 x 256 image.

Each is timed quiet (no process of ours competing; the load average is recorded), then while one
``python -c "while True: pass"`` runs; each figure of the first table is the best of
``--repeats``. Results: Markdown on stdout and in ``<out>/busy.md``, figures in ``<out>/busy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_filters import best_time, write_speckle_image
from bench_report import table

SIDE = 4096
NETWORK_SIDE = 1024
#: Sides of the small runs whose start-up is measured (crops of the big image).
SMALL_SIDES = (256, 1024)
#: QGIS's own share of a run: a native algorithm reading and writing the same image.
QGIS_OWN_ALGORITHM = "native:fillnodata"
#: One Python process running METHOD = Automatic twice through a headless QGIS: the seconds of
#: each run (argv: the image, the output), as JSON on the last line.
TWO_RUNS_IN_ONE_PROCESS = r"""
import json, sys, time
from sar_despeckle_plugin.processing.headless import start_qgis
qgis = start_qgis()
seconds = []
for _ in range(2):
    start = time.perf_counter()
    qgis.processing.run("sar_despeckle:despeckle", {"INPUT": sys.argv[1], "INPUT_UNITS": 0, "LOOKS": 1,
                                                    "OUTPUT": sys.argv[2]})
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


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


@dataclass
class StartupCase:
    """One row of the start-up table: the labels (in :func:`startup_commands`) of our whole
    process, of QGIS's own share of it, and of OTB's peer (None: none)."""

    name: str
    ours: str
    qgis_own: str
    otb: str | None = None


def startup_commands(executable: str, images: dict[int, str], folder: str,
                     own_profile: str) -> tuple[dict[str, tuple[list[str], dict]], list[StartupCase]]:
    """label -> (command, environment changes) of every start-up process, and the table's rows.
    QGIS's own share runs in ``own_profile``, a QGIS profile where the plugin is not enabled."""
    without_plugin = {"QGIS_CUSTOM_CONFIG_PATH": own_profile}
    commands = {
        "list": ([executable, "list"], {}),
        "list, without the plugin": ([executable, "list"], without_plugin),
        "help sar_despeckle:despeckle": ([executable, "help", "sar_despeckle:despeckle"], {}),
        f"help {QGIS_OWN_ALGORITHM}, without the plugin": ([executable, "help", QGIS_OWN_ALGORITHM], without_plugin),
        "torch import alone": ([sys.executable, "-c", "import torch"], {}),
    }
    cases = [StartupCase("qgis_process list", "list", "list, without the plugin"),
             StartupCase("qgis_process help sar_despeckle:despeckle", "help sar_despeckle:despeckle",
                         f"help {QGIS_OWN_ALGORITHM}, without the plugin")]
    otb = shutil.which("otbcli_Despeckle")
    for side, image in images.items():
        own = f"{QGIS_OWN_ALGORITHM}, {side} x {side}, without the plugin"
        commands[own] = ([executable, "run", QGIS_OWN_ALGORITHM, f"--INPUT={image}", "--BAND=1", "--FILL_VALUE=0",
                          f"--OUTPUT={os.path.join(folder, 'own.tif')}"], without_plugin)
        lee, network = f"Lee 7 x 7, {side} x {side}", f"Automatic (network), {side} x {side}"
        commands[lee] = (qgis_process_command(executable, image, os.path.join(folder, "lee.tif"), METHOD=1, WINDOW=7),
                         {})
        commands[network] = (qgis_process_command(executable, image, os.path.join(folder, "net.tif")), {})
        peer = None
        if otb:
            peer = f"otbcli_Despeckle Lee radius 3, {side} x {side}"
            commands[peer] = ([otb, "-in", image, "-out", os.path.join(folder, "otb.tif"), "float", "-filter", "lee",
                               "-filter.lee.rad", "3", "-filter.lee.nblooks", "1"], {})
        cases += [StartupCase(f"qgis_process run: {lee}", lee, own, peer),
                  StartupCase(f"qgis_process run: {network}", network, own)]
    return commands, cases


def process_seconds(command: list[str], environment: dict) -> dict[str, float]:
    """Wall-clock and CPU (user + system, all its threads) seconds of one whole process: the CPU
    seconds change less than the wall-clock ones when other jobs share the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def median_times(commands: dict, repeats: int) -> dict[str, dict[str, list[float]]]:
    """label -> {"wall": [...], "cpu": [...]}: the seconds of each of ``repeats`` whole processes
    (after one untimed run, which fills the file cache and a fresh profile)."""
    seconds = {}
    for label, (command, changes) in commands.items():
        environment = {"QT_QPA_PLATFORM": "offscreen", **os.environ, **changes}
        subprocess.run(command, check=True, capture_output=True, env=environment)
        runs = [process_seconds(command, environment) for _ in range(repeats)]
        seconds[label] = {kind: [run[kind] for run in runs] for kind in ("wall", "cpu")}
        print(f"  {label}: median {statistics.median(seconds[label]['wall']):.2f} s, "
              f"CPU {statistics.median(seconds[label]['cpu']):.2f} s", flush=True)
    return seconds


def runs_in_one_process(image: str, folder: str, repeats: int) -> list[list[float]]:
    """[first run, second run] seconds of METHOD = Automatic on ``image`` inside one process, for
    each of ``repeats`` processes: the second run pays no imports and no model loading."""
    environment = {"QT_QPA_PLATFORM": "offscreen", **os.environ}
    found = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", TWO_RUNS_IN_ONE_PROCESS, image, os.path.join(folder, "twice.tif")],
                              check=True, capture_output=True, text=True, env=environment)
        found.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"  Automatic in one process: first {statistics.median(r[0] for r in found):.2f} s, "
          f"second {statistics.median(r[1] for r in found):.2f} s", flush=True)
    return found


def startup_rows(cases: list[StartupCase], seconds: dict[str, dict[str, list[float]]]) -> list[list[str]]:
    """The start-up table's rows: case, whole process, QGIS's own, ours (the difference) in
    wall-clock and in CPU seconds, OTB's whole process."""
    wall, cpu = ({label: statistics.median(times[kind]) for label, times in seconds.items()} for kind in ("wall", "cpu"))
    return [[case.name, f"{wall[case.ours]:.2f}", f"{wall[case.qgis_own]:.2f}",
             f"{wall[case.ours] - wall[case.qgis_own]:.2f}", f"{cpu[case.ours] - cpu[case.qgis_own]:.2f}",
             f"{wall[case.otb]:.2f}" if case.otb else ""]
            for case in cases]


def startup_section(cases: list[StartupCase], seconds_by_condition: dict, twice: dict, repeats: int,
                    load_average: dict) -> list[str]:
    """The Markdown of the start-up tables (quiet, then with the competing process)."""
    header = ["case", "whole process (s)", "QGIS's own (s)", "ours (s)", "ours, CPU (s)", "otbcli_Despeckle (s)"]
    lines = ["## Start-up and small runs", "",
             f"Median of {repeats} whole processes each. QGIS's own: the same `list` / `help` in a profile "
             f"without the plugin, and `{QGIS_OWN_ALGORITHM}` on the same image without it (QGIS's start-up, "
             "Processing, the raster read and written); ours = whole process - QGIS's own, in wall-clock "
             "seconds and in CPU seconds (user + system, all threads).", ""]
    for title, key in (("Quiet", "quiet"), ("One competing CPU-bound process", "busy")):
        seconds = seconds_by_condition[key]
        torch_wall, torch_cpu = (statistics.median(seconds["torch import alone"][kind]) for kind in ("wall", "cpu"))
        first, second = (statistics.median(run[i] for run in twice[key]) for i in (0, 1))
        lines += [f"### {title} (load average {load_average[key][0]:.1f})", "",
                  *table(header, startup_rows(cases, seconds), "lrrrrr"),
                  f"Of ours, importing torch alone (`python -c \"import torch\"`) takes {torch_wall:.2f} s "
                  f"({torch_cpu:.2f} s CPU). "
                  f"Automatic on the 256 x 256 image inside one process: first run {first:.2f} s, second run "
                  f"{second:.2f} s (no imports, the model already checked and read).", ""]
    return lines


def whole_runs_section(commands: dict, whole: dict, repeats: int, load_average: dict) -> list[str]:
    """The Markdown of the first table: each whole run quiet, busy, and the slow-down."""
    quiet, busy = whole["quiet"], whole["busy"]
    rows = [[label, f"{quiet[label]:.2f}", f"{busy[label]:.2f}", f"{busy[label] / quiet[label]:.2f}"]
            for label in commands]
    return [f"`scripts/bench_busy.py`, {os.cpu_count()} CPU cores, best of {repeats}; whole processes, "
            f"start-up included (load average {load_average['quiet'][0]:.1f} quiet, "
            f"{load_average['busy'][0]:.1f} with the competing process).", "",
            *table(["run", "quiet (s)", "one competing process (s)", "slow-down"], rows, "lrrr")]


#: What ``--sections`` may choose.
SECTIONS = ("whole", "startup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/bench/busy")
    parser.add_argument("--qgis-process", default=shutil.which("qgis_process.bin") or "qgis_process")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--startup-repeats", type=int, default=5, help="whole processes per start-up figure (median)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="measure only these (quick comparisons; make bench measures both)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    big = os.path.join(args.out, f"speckle_{SIDE}.tif")
    write_speckle_image(big, SIDE)
    result = {"cpu_count": os.cpu_count(), "repeats": args.repeats, "startup_repeats": args.startup_repeats}
    with tempfile.TemporaryDirectory() as folder:
        crops = {}
        for side in sorted({NETWORK_SIDE, *SMALL_SIDES}):
            crops[side] = os.path.join(folder, f"speckle_{side}.tif")
            subprocess.run(["gdal_translate", "-q", "-srcwin", "0", "0", str(side), str(side), big, crops[side]],
                           check=True)
        commands = runs(args.qgis_process, big, crops[NETWORK_SIDE], folder) if "whole" in args.sections else {}
        own_profile = os.path.join(folder, "profile_without_plugin")
        os.makedirs(own_profile)
        startup, cases = startup_commands(args.qgis_process, {side: crops[side] for side in SMALL_SIDES}, folder,
                                          own_profile) if "startup" in args.sections else ({}, [])
        load_average, whole, startup_seconds, twice = {}, {}, {}, {}

        def measure(key: str) -> None:
            """Every chosen section once, under the condition ``key`` ("quiet" or "busy")."""
            load_average[key] = os.getloadavg()
            if commands:
                whole[key] = time_all(commands, args.repeats)
            if startup:
                startup_seconds[key] = median_times(startup, args.startup_repeats)
                twice[key] = runs_in_one_process(crops[SMALL_SIDES[0]], folder, args.startup_repeats)

        print("Quiet:", flush=True)
        measure("quiet")
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            print("One competing CPU-bound process:", flush=True)
            measure("busy")
        finally:
            competitor.kill()
            competitor.wait()
    result["load_average_quiet"], result["load_average_busy"] = load_average["quiet"], load_average["busy"]
    lines = []
    if commands:
        result["seconds"] = {label: {key: whole[key][label] for key in whole} for label in commands}
        lines += whole_runs_section(commands, whole, args.repeats, load_average)
    if startup:
        result["startup_seconds"] = startup_seconds
        result["automatic_first_and_second_run_in_one_process"] = twice
        lines += startup_section(cases, startup_seconds, twice, args.startup_repeats, load_average)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(os.path.join(args.out, "busy.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(os.path.join(args.out, "busy.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
