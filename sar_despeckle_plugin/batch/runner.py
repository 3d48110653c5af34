"""Running the tasks on Dask distributed: one task per scene (or stack), on a scheduler given by
address or on a local cluster started here, with retries, progress and a summary.

Dask (``dask``, ``distributed``) is imported only inside :func:`run_batch`: the rest of the
plugin never needs it. Failures:

* a worker that dies (out of memory, killed) takes its scene with it: the scheduler runs the
  scene again on another worker, up to ``retries`` times (``distributed.scheduler.allowed-failures``
  on the local cluster; a remote scheduler uses its own setting);
* an exception other than a user error (an I/O error, a crash in a library) is retried up to
  ``retries`` times (Dask's ``retries``);
* a user error (``SarDespeckleError``: a bad input, a parameter the data refuse) fails the
  scene at once: running it again would fail the same way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from ..core.errors import SarDespeckleError
from ..core.feedback import Feedback
from .algorithms import ALGORITHMS
from .scenes import Task, is_complete, write_record

LOG = logging.getLogger("sar_despeckle_plugin.batch")


@dataclass(frozen=True)
class Job:
    """What every task of a batch shares: the algorithm id, the parameter values (for the
    records), the settings they map to, and the torch threads per task (None: the worker's
    own setting, e.g. its OMP_NUM_THREADS)."""

    algorithm: str
    values: Mapping[str, object]
    settings: object
    torch_threads: int | None = None


def run_scene(job: Job, task: Task) -> dict:
    """Run one task (on a worker) and record it complete: {status, seconds, device, error}.
    User errors come back as status ``failed``; anything else is raised, for Dask to retry."""
    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    feedback = Feedback(info=lambda message: LOG.info("%s: %s", task.name, message),
                        warn=lambda message: LOG.warning("%s: %s", task.name, message))
    start = time.perf_counter()
    try:
        device = ALGORITHMS[job.algorithm].run(task.sources, task.outputs, job.settings, feedback)
    except SarDespeckleError as error:
        return {"status": "failed", "seconds": round(time.perf_counter() - start, 3), "device": None,
                "error": str(error)}
    result = {"status": "done", "seconds": round(time.perf_counter() - start, 3), "device": device}
    write_record(job.algorithm, task, job.values, result)
    return result


def _summary_entry(task: Task, result: Mapping[str, object]) -> dict:
    entry = {"name": task.name, "inputs": list(task.sources), "status": result["status"],
             "seconds": result.get("seconds"), "device": result.get("device"), "output": task.main_output,
             "outputs": {name: path for name, path in task.outputs.items() if path}}
    if result.get("error"):
        entry["error"] = result["error"]
    return entry


def _start_client(scheduler: str | None, workers: int, retries: int, processes: bool):
    """A Dask client of the scheduler at ``scheduler``, or of a new local cluster of ``workers``
    single-threaded workers (processes, or threads of this process)."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    dask.config.set({"distributed.scheduler.allowed-failures": retries})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                           dashboard_address=":0", silence_logs=logging.WARNING)
    return Client(cluster), cluster


def _dashboard(client, cluster) -> str:
    """The dashboard's address; a local cluster serves it only when bokeh is installed."""
    if cluster is not None and importlib.util.find_spec("bokeh") is None:
        return "off (python -m pip install bokeh to get Dask's dashboard)"
    return client.dashboard_link


def run_batch(job: Job, tasks: list[Task], *, scheduler: str | None = None, workers: int = 1, retries: int = 2,
              processes: bool = True, task_function: Callable[[Job, Task], dict] = run_scene) -> dict:
    """Run ``tasks`` (skipping the complete ones) and return the summary: the algorithm, the
    scheduler, the wall time and, per task in ``tasks`` order, its status (done, skipped,
    failed), seconds, device and outputs. ``task_function`` runs one task on a worker (tests
    pass one that kills its worker)."""
    start = time.perf_counter()
    results: dict[str, dict] = {}
    todo = []
    for task in tasks:
        if is_complete(job.algorithm, task, job.values):
            LOG.info("%s: skipped (complete: %s)", task.name, task.record)
            results[task.name] = {"status": "skipped"}
        else:
            todo.append(task)
    address = None
    for task in todo:
        os.makedirs(os.path.dirname(task.record), exist_ok=True)
    if todo:
        client, cluster = _start_client(scheduler, workers, retries, processes)
        try:
            address = client.scheduler.address
            LOG.info("Scheduler %s, dashboard %s: %d task(s) to run, %d skipped", address,
                     _dashboard(client, cluster), len(todo), len(tasks) - len(todo))
            results.update(_gather(client, job, todo, retries, task_function))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return {"algorithm": job.algorithm, "scheduler": address, "seconds": round(time.perf_counter() - start, 3),
            "scenes": [_summary_entry(task, results[task.name]) for task in tasks]}


def _gather(client, job: Job, todo: list[Task], retries: int, task_function) -> dict[str, dict]:
    """Submit one Dask task per scene and collect the results as they finish, logging progress."""
    from dask.distributed import as_completed

    futures = {client.submit(task_function, job, task, key=f"{job.algorithm}-{task.name}-{os.getpid()}-{time.time_ns()}",
                             retries=retries, pure=False): task for task in todo}
    results = {}
    for done, future in enumerate(as_completed(futures), start=1):
        task = futures[future]
        try:
            result = future.result()
        except Exception as error:  # a worker died too often, or the task kept raising
            result = {"status": "failed", "seconds": None, "device": None, "error": f"{type(error).__name__}: {error}"}
        results[task.name] = result
        outcome = (f"{result['status']} in {result['seconds']:.1f} s on {result['device']}"
                   if result["status"] == "done" else f"failed: {result['error']}")
        LOG.info("[%d/%d] %s: %s", done, len(todo), task.name, outcome)
    return results
