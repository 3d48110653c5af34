"""``python -m sar_despeckle_plugin.batch run ALGORITHM --inputs GLOB_OR_LIST_FILE --output-dir DIR
[--scheduler tcp://HOST:8786 | --workers N] [--PARAM=VALUE ...]``: the command line of the batch
runner (docs/batch.md). Parameters are written as for ``qgis_process`` (enum indices, true/false,
numbers); the summary JSON goes to standard output (and to ``--summary``), the log to standard
error. Exit status: 0 when every scene is done or skipped, 1 when one failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys

from ..core.errors import SarDespeckleError
from ..core.parameters import values_from_text
from .algorithms import ALGORITHMS, algorithm
from .runner import LOG, Job, run_batch
from .scenes import input_groups, plan_tasks

#: An algorithm parameter on the command line: --NAME=VALUE, NAME in capitals as in qgis_process.
PARAMETER = re.compile(r"^--([A-Z][A-Z0-9_]*)=(.*)$", re.DOTALL)
DASK_MISSING = ("The batch runner needs Dask: install it into the Python that runs it with "
                "`python -m pip install dask distributed` (`make setup` does, into the project's venv).")


def _require_dask() -> None:
    """SarDespeckleError naming the install command when Dask cannot be imported."""
    try:
        importlib.import_module("distributed")
    except ImportError:
        raise SarDespeckleError(DASK_MISSING) from None


def default_workers() -> int:
    """Workers of a local cluster when --workers is not given: one per 4 cores (at least one),
    each task's torch using its share of the cores."""
    return max(1, (os.cpu_count() or 1) // 4)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m sar_despeckle_plugin.batch", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one algorithm on many scenes",
                              epilog="Algorithm parameters follow as --NAME=VALUE, as for qgis_process; "
                                     "outputs are true/false (written or not).")
    run.add_argument("algorithm", help=f"one of {', '.join(ALGORITHMS)} (or sar_despeckle:ID)")
    run.add_argument("--inputs", required=True, help="glob pattern (quote it) or list file (.txt, .list, .lst)")
    run.add_argument("--output-dir", required=True, help="folder of the outputs and completion records")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://HOST:8786")
    where.add_argument("--workers", type=int, help="workers of the local cluster (default: one per 4 cores)")
    run.add_argument("--retries", type=int, default=2, help="runs again of a scene whose worker died or that raised")
    run.add_argument("--torch-threads", type=int,
                     help="torch threads per task (default: on a local cluster the cores / workers; "
                          "with --scheduler the workers' own setting)")
    run.add_argument("--summary", help="also write the JSON summary to this file")
    commands.add_parser("list", help="list the algorithms and their parameters")
    return main


def _split(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The runner's own arguments, and the algorithm parameters (NAME -> texts given)."""
    own, given = [], {}
    for argument in argv:
        match = PARAMETER.match(argument)
        if match:
            given.setdefault(match.group(1), []).append(match.group(2))
        else:
            own.append(argument)
    return own, given


def _as_text(value) -> str:
    """A default as it is written on the command line (true/false, empty for none)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def _list() -> int:
    """``list``: each algorithm, what a task is, and its parameters with their defaults."""
    for entry in ALGORITHMS.values():
        inputs = "INPUTS (stack per task)" if entry.stack else "INPUT (one raster per task)"
        names = " ".join(f"--{p.name}={_as_text(p.default)}" for p in entry.parameters
                         if p.kind not in ("raster", "rasters"))
        print(f"{entry.id}: {inputs}\n  {names}")
    return 0


def main(argv: list[str] | None = None) -> int:
    own, given = _split(sys.argv[1:] if argv is None else argv)
    arguments = parser().parse_args(own)
    if arguments.command == "list":
        return _list()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        return _run(arguments, given)
    finally:
        LOG.removeHandler(handler)


def _run(arguments: argparse.Namespace, given: dict[str, list[str]]) -> int:
    """``run``: plan the tasks (usage errors: status 2), run them, print the summary."""
    try:
        chosen = algorithm(arguments.algorithm)
        values = values_from_text(chosen.parameters, given)
        settings = chosen.settings(values)
        output_dir = os.path.abspath(arguments.output_dir)
        tasks = plan_tasks(chosen, input_groups(arguments.inputs, chosen.stack), values, output_dir)
        _require_dask()
    except SarDespeckleError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    workers = arguments.workers or default_workers()
    threads = arguments.torch_threads or (None if arguments.scheduler else max(1, (os.cpu_count() or 1) // workers))
    LOG.info("%s: %d task(s) into %s", chosen.id, len(tasks), output_dir)
    summary = run_batch(Job(chosen.id, values, settings, threads), tasks, scheduler=arguments.scheduler,
                        workers=workers, retries=arguments.retries)
    text = json.dumps(summary, indent=1)
    print(text)
    if arguments.summary:
        with open(arguments.summary, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return 1 if any(scene["status"] == "failed" for scene in summary["scenes"]) else 0
