"""What a batch run is made of, without Dask: the tasks read from ``--inputs`` (one raster, or
one stack of dates, per task), each task's output paths, and the completion record that lets a
rerun skip what is done.

``--inputs`` is a glob pattern (``'scenes/*.tif'``, ``**`` recursive) or a list file (a file
whose name ends in .txt, .list or .lst). For one-raster algorithms each matched file or each
line of the list is a task. For stack algorithms (``change_detection``,
``despeckle_multitemporal``) a glob makes one stack of every match in name order, and each line
of a list file is one stack: its dates in date order, separated by commas or white space
(quote paths holding spaces). Empty lines and lines starting with # are skipped; relative
paths in a list are relative to the list file's folder.

A task is named after its input's file name without extension (``S1A_0101.tif`` ->
``S1A_0101``), a stack after its first and last dates (``S1A_0101_to_S1A_0301``); its outputs
are ``<output dir>/<name><suffix>`` (the suffix per output in ``algorithms``).

A task is *complete* when its record ``<output dir>/<name>.batch.json`` exists, names the same
algorithm, parameter values, inputs (path, size and modification time) and plugin version, and
every output it lists exists. The record is written (atomically) only after the core has
committed the outputs, themselves written through ``core.outputs``' atomic writer, so a scene
stopped half-way is never taken as complete.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
from dataclasses import dataclass
from typing import Mapping

from ..core.errors import SarDespeckleError
from ..core.version import plugin_version
from .algorithms import BatchAlgorithm

#: Names of ``--inputs`` files read as lists rather than taken as a glob pattern.
LIST_SUFFIXES = (".txt", ".list", ".lst")
#: Suffix of a task's completion record.
RECORD_SUFFIX = ".batch.json"


@dataclass(frozen=True)
class Task:
    """One scene (or stack of dates) to run: its name, input paths (dates in date order), the
    path of each output (None where that output is not written) and of its completion record."""

    name: str
    sources: tuple[str, ...]
    outputs: Mapping[str, "str | None"]
    record: str

    @property
    def main_output(self) -> str:
        """The first output that is written (the one the summary names)."""
        return next(path for path in self.outputs.values() if path)


def _list_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]


def input_groups(inputs: str, stack: bool) -> list[tuple[str, ...]]:
    """The inputs of each task (see the module doc); SarDespeckleError when nothing matched."""
    if os.path.isfile(inputs) and inputs.lower().endswith(LIST_SUFFIXES):
        folder = os.path.dirname(os.path.abspath(inputs))
        lines = _list_lines(inputs)
        split = (lambda line: shlex.split(line.replace(",", " "))) if stack else (lambda line: [line])
        groups = [tuple(os.path.join(folder, os.path.expanduser(p)) for p in split(line)) for line in lines]
        if not groups:
            raise SarDespeckleError(f"The list file '{inputs}' names no input.")
    else:
        matches = sorted(path for path in glob.glob(os.path.expanduser(inputs), recursive=True) if os.path.isfile(path))
        if not matches:
            raise SarDespeckleError(f"No input matched '{inputs}': give a glob pattern (quoted, e.g. "
                                    f"'scenes/*.tif') or a list file ({', '.join(LIST_SUFFIXES)}).")
        groups = [tuple(matches)] if stack else [(path,) for path in matches]
    missing = [path for group in groups for path in group if not os.path.exists(path)]
    if missing:
        raise SarDespeckleError(f"Input '{missing[0]}' does not exist" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + ".")
    return [tuple(os.path.abspath(path) for path in group) for group in groups]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def plan_tasks(algorithm: BatchAlgorithm, groups: list[tuple[str, ...]], values: Mapping[str, object],
               output_dir: str) -> list[Task]:
    """One task per group: its name, output paths (only the outputs ``values`` asks for) and
    record path. Refuses stacks of fewer than two dates, two tasks of the same name and
    outputs that would overwrite an input."""
    tasks, seen = [], {}
    inputs = {path for group in groups for path in group}
    for group in groups:
        if algorithm.stack and len(group) < 2:
            raise SarDespeckleError(f"{algorithm.id} needs a stack of at least two dates per task; "
                                    f"got {len(group)}: {', '.join(group)}.")
        name = f"{_stem(group[0])}_to_{_stem(group[-1])}" if algorithm.stack else _stem(group[0])
        if name in seen:
            raise SarDespeckleError(f"Two tasks would write outputs named '{name}' ({seen[name]} and {group[0]}): "
                                    "run them in separate batches or output folders.")
        seen[name] = group[0]
        outputs = {output: os.path.join(output_dir, name + suffix) if values[output] else None
                   for output, suffix in algorithm.suffixes.items()}
        clash = inputs & {path for path in outputs.values() if path}
        if clash:
            raise SarDespeckleError(f"Output '{clash.pop()}' would overwrite an input: choose another --output-dir.")
        if not any(outputs.values()):
            raise SarDespeckleError(f"Choose at least one output: {', '.join(algorithm.suffixes)} (e.g. --{next(iter(algorithm.suffixes))}=true).")
        tasks.append(Task(name, group, outputs, os.path.join(output_dir, name + RECORD_SUFFIX)))
    return tasks


def _jsonable(values: Mapping[str, object]) -> dict:
    """``values`` as they read back from JSON (tuples become lists)."""
    return json.loads(json.dumps(dict(values)))


def request_record(algorithm_id: str, task: Task, values: Mapping[str, object]) -> dict:
    """What a task's record must hold for it to count as complete (see the module doc)."""
    inputs = []
    for path in task.sources:
        status = os.stat(path)
        inputs.append({"path": path, "size": status.st_size, "mtime": status.st_mtime})
    return {"algorithm": algorithm_id, "parameters": _jsonable(values), "inputs": inputs,
            "plugin_version": plugin_version(), "outputs": {k: v for k, v in task.outputs.items() if v}}


def is_complete(algorithm_id: str, task: Task, values: Mapping[str, object]) -> bool:
    """Whether ``task`` was already run with these parameters on these inputs (module doc)."""
    try:
        with open(task.record, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return False
    expected = request_record(algorithm_id, task, values)
    return (all(record.get(key) == value for key, value in expected.items())
            and all(os.path.exists(path) for path in expected["outputs"].values()))


def write_record(algorithm_id: str, task: Task, values: Mapping[str, object], result: Mapping[str, object]) -> None:
    """Record that ``task`` is complete, with ``result`` (seconds, device); written to a
    temporary name and renamed, so a record is whole or absent."""
    record = {**request_record(algorithm_id, task, values), **result}
    partial = f"{task.record}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    os.replace(partial, task.record)
