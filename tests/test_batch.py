"""The batch runner (sar_despeckle_plugin.batch): outputs equal to qgis_process runs of the same
algorithm and parameters, on a 2-worker local Dask cluster; skipped complete scenes, a scene whose
worker dies run again, the JSON summary, and refusals that name what is wrong.

The cluster tests skip when Dask is not installed (`make setup` installs it); the rest do not
need it."""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from osgeo import gdal

from sar_despeckle_plugin.batch import cli
from sar_despeckle_plugin.batch.algorithms import algorithm
from sar_despeckle_plugin.batch.runner import Job, run_batch, run_scene
from sar_despeckle_plugin.batch.scenes import input_groups, plan_tasks
from sar_despeckle_plugin.core.parameters import values_from_text

from .conftest import ROOT
from .slc_data import Axis, synthetic_slc
from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff

#: torch's threads in a process of its own, as qgis_process has them; read before a local cluster
#: starts, which sets OMP_NUM_THREADS=1 in this process's environment for its workers.
TORCH_THREADS = torch.get_num_threads()
#: Lee, 5 x 5, 1-look intensity: what the despeckle runs are asked for (qgis_process style).
LEE = ["--METHOD=1", "--LOOKS=1", "--INPUT_UNITS=0", "--WINDOW=5"]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a local cluster of 2 single-threaded worker processes (a task may kill
    its worker, which the nanny restarts); a task that kills 2 workers fails."""
    pytest.importorskip("distributed")
    import dask
    from dask.distributed import LocalCluster

    environment = dict(os.environ)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
    yield cluster.scheduler_address
    cluster.close()
    os.environ.clear()
    os.environ.update(environment)  # the nannies set OMP_NUM_THREADS=1 & co. here for their workers


@pytest.fixture
def scenes(tmp_path):
    """Three small 1-look intensity scenes in tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [write_geotiff(str(folder / f"scene{i}.tif"), speckle(piecewise_scene(48, 64, seed=i), 1.0, seed=10 + i))
            for i in range(3)]


def batch(arguments, capsys):
    """Run the command line in this process; (exit status, summary or None, stderr)."""
    status = cli.main(arguments)
    out, err = capsys.readouterr()
    return status, (json.loads(out) if out.strip() else None), err


def job_and_tasks(name, inputs, output_dir, arguments):
    """The Job and tasks the command line would make of ``arguments`` (qgis_process style)."""
    chosen = algorithm(name)
    values = values_from_text(chosen.parameters, cli._split(arguments)[1])
    tasks = plan_tasks(chosen, input_groups(inputs, chosen.stack), values, str(output_dir))
    return Job(chosen.id, values, chosen.settings(values), 1), tasks


def qgis_process_output(qgis_process, name, inputs, arguments, outputs):
    """Run sar_despeckle:``name`` in qgis_process; ``outputs`` maps output names to paths."""
    flag = "INPUTS" if algorithm(name).stack else "INPUT"
    qgis_process("run", f"sar_despeckle:{name}", *(f"--{flag}={path}" for path in inputs), *arguments,
                 *(f"--{key}={path}" for key, path in outputs.items()))


def test_despeckle_outputs_equal_qgis_process_and_the_summary(scheduler, scenes, tmp_path, capsys, qgis_process):
    out = tmp_path / "out"
    status, summary, err = batch(["run", "despeckle", "--inputs", str(tmp_path / "in" / "*.tif"), "--output-dir",
                                  str(out), "--scheduler", scheduler, "--RATIO=true", *LEE], capsys)
    assert status == 0, err
    assert summary["algorithm"] == "despeckle" and summary["scheduler"] == scheduler
    assert [scene["name"] for scene in summary["scenes"]] == ["scene0", "scene1", "scene2"]
    for scene, source in zip(summary["scenes"], scenes):
        assert scene["status"] == "done" and scene["device"] == "cpu" and scene["seconds"] > 0
        assert scene["inputs"] == [source] and scene["output"] == str(out / f"{scene['name']}.tif")
        assert scene["outputs"] == {"OUTPUT": scene["output"], "RATIO": str(out / f"{scene['name']}_ratio.tif")}
        assert "[" in err and f"{scene['name']}: done" in err  # progress lines
    for source in scenes[:2]:
        name = os.path.splitext(os.path.basename(source))[0]
        expected = {"OUTPUT": str(tmp_path / f"{name}_qp.tif"), "RATIO": str(tmp_path / f"{name}_qp_ratio.tif")}
        qgis_process_output(qgis_process, "despeckle", [source], LEE, expected)
        np.testing.assert_array_equal(read_geotiff(str(out / f"{name}.tif")), read_geotiff(expected["OUTPUT"]))
        np.testing.assert_array_equal(read_geotiff(str(out / f"{name}_ratio.tif")), read_geotiff(expected["RATIO"]))
        batch_meta = gdal.Info(str(out / f"{name}.tif"), format="json")["metadata"][""]
        assert batch_meta == gdal.Info(expected["OUTPUT"], format="json")["metadata"][""]


def test_default_network_and_stacks_equal_qgis_process(scheduler, tmp_path, capsys, qgis_process):
    """The default despeckling (Automatic: the network), change detection and multitemporal
    despeckling of stacks given one per line of a list file, and decorrelation of an SLC. The
    tasks use as many torch threads as qgis_process does: the networks' sums are then added in
    the same order (with 1 thread the default network differs by up to 4e-7 relative)."""
    folder = tmp_path / "in"
    folder.mkdir()
    scene = piecewise_scene(48, 64, seed=5)
    dates = [write_geotiff(str(folder / f"d{t}.tif"), speckle(scene * (1 + 5 * (t == 2) * (np.arange(64) > 40)), 4.0,
                                                                 seed=20 + t)) for t in range(3)]
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(f"# date order\n{dates[0]}, {dates[1]}\nin/d1.tif in/d2.tif\n")
    slc = write_geotiff(str(folder / "slc.tif"), synthetic_slc(128, 128, Axis(), Axis(), seed=2),
                        data_type=gdal.GDT_CFloat32)
    cases = [
        ("despeckle", str(folder / "d0.tif"), ["--LOOKS=4", "--INPUT_UNITS=0"], "d0", {"OUTPUT": ".tif"}),
        ("change_detection", str(stacks), ["--LOOKS=4", "--INPUT_UNITS=0", "--METHOD=0", "--PREFILTER=false",
                                           "--CHANGE_MAP=true", "--CHANGE_DATE=true"],
         "d1_to_d2", {"CHANGE_MAP": "_change_map.tif", "CHANGE_MASK": "_change_mask.tif",
                      "CHANGE_DATE": "_change_date.tif"}),
        ("despeckle_multitemporal", str(stacks), ["--LOOKS=4", "--INPUT_UNITS=0", "--METHOD=0", "--WINDOW=5"],
         "d1_to_d2", {"OUTPUT": ".tif"}),
        ("decorrelate", slc, ["--DEVICE=1", "--OUTPUT_INTENSITY=false", "--REPORT=false"], "slc", {"OUTPUT": ".tif"}),
    ]
    for name, inputs, arguments, task, suffixes in cases:
        out = tmp_path / name
        status, summary, err = batch(["run", name, "--inputs", inputs, "--output-dir", str(out), "--scheduler",
                                      scheduler, "--torch-threads", str(TORCH_THREADS), *arguments], capsys)
        assert status == 0, err
        assert all(scene["status"] == "done" for scene in summary["scenes"])
        assert len(summary["scenes"]) == (2 if inputs == str(stacks) else 1)
        compared = next(scene for scene in summary["scenes"] if scene["name"] == task)
        reference = {key: str(tmp_path / f"qp_{name}{suffix}") for key, suffix in suffixes.items()}
        outputs = algorithm(name).suffixes  # the batch's output switches; qgis_process gets paths
        arguments = [a for a in arguments if a[2:].split("=")[0] not in outputs]
        qgis_process_output(qgis_process, name, compared["inputs"], arguments, reference)
        for key, suffix in suffixes.items():
            assert compared["outputs"][key] == str(out / f"{task}{suffix}")
            np.testing.assert_array_equal(gdal.Open(compared["outputs"][key]).ReadAsArray(),
                                          gdal.Open(reference[key]).ReadAsArray())


def test_complete_scenes_are_skipped(scheduler, scenes, tmp_path, capsys):
    out = tmp_path / "out"
    arguments = ["run", "despeckle", "--inputs", str(tmp_path / "in" / "*.tif"), "--output-dir", str(out),
                 "--scheduler", scheduler, *LEE]
    assert batch(arguments, capsys)[0] == 0
    written = {path: os.stat(path).st_mtime_ns for path in out.glob("*.tif")}
    status, summary, err = batch(arguments, capsys)
    assert status == 0 and [s["status"] for s in summary["scenes"]] == ["skipped"] * 3
    assert err.count("skipped") == 3 and summary["scheduler"] is None  # no cluster needed
    assert {path: os.stat(path).st_mtime_ns for path in out.glob("*.tif")} == written
    # another parameter, an input rewritten, an output deleted: those scenes run again
    write_geotiff(scenes[1], speckle(piecewise_scene(48, 64, seed=9), 1.0))
    os.remove(out / "scene2.tif")
    status, summary, _ = batch(arguments, capsys)
    assert [s["status"] for s in summary["scenes"]] == ["skipped", "done", "done"]
    status, summary, _ = batch(arguments[:-1] + ["--WINDOW=7"], capsys)
    assert [s["status"] for s in summary["scenes"]] == ["done"] * 3


def kill_worker_once(flag_folder, job, task):
    """A task that kills its worker process the first time it runs ``scene1`` (a worker that
    dies mid-scene), then runs normally."""
    flag = os.path.join(flag_folder, f"{task.name}.killed")
    if task.name == "scene1" and not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(1)
    return run_scene(job, task)


def kill_worker_always(job, task):
    """A task whose worker always dies."""
    os._exit(1)


def test_a_scene_whose_worker_dies_runs_again(scheduler, scenes, tmp_path):
    job, tasks = job_and_tasks("despeckle", str(tmp_path / "in" / "*.tif"), tmp_path / "out", LEE)
    summary = run_batch(job, tasks, scheduler=scheduler, task_function=functools.partial(kill_worker_once, str(tmp_path)))
    assert (tmp_path / "scene1.killed").exists()
    assert [s["status"] for s in summary["scenes"]] == ["done"] * 3
    reference = run_batch(job, plan_tasks(algorithm("despeckle"), input_groups(scenes[1], False), job.values,
                                          str(tmp_path / "reference")), scheduler=scheduler)
    np.testing.assert_array_equal(read_geotiff(summary["scenes"][1]["output"]),
                                  read_geotiff(reference["scenes"][0]["output"]))


def test_a_scene_that_keeps_killing_workers_fails_alone(scheduler, scenes, tmp_path):
    job, tasks = job_and_tasks("despeckle", scenes[0], tmp_path / "out", LEE)
    summary = run_batch(job, tasks, scheduler=scheduler, task_function=kill_worker_always)
    scene = summary["scenes"][0]
    assert scene["status"] == "failed" and "KilledWorker" in scene["error"]
    assert not os.path.exists(scene["output"]) and not os.path.exists(tasks[0].record)


def test_a_user_error_fails_its_scene_without_retries(scheduler, scenes, tmp_path, capsys):
    write_geotiff(scenes[0], -np.ones((48, 64), np.float32))  # negative intensities
    status, summary, err = batch(["run", "despeckle", "--inputs", str(tmp_path / "in" / "*.tif"), "--output-dir",
                                  str(tmp_path / "out"), "--scheduler", scheduler, *LEE], capsys)
    assert status == 1
    assert [s["status"] for s in summary["scenes"]] == ["failed", "done", "done"]
    assert "negative" in summary["scenes"][0]["error"] and "scene0: failed" in err


@pytest.mark.parametrize("arguments, message", [
    (["run", "despeckl"], "Unknown algorithm 'despeckl'; choose one of despeckle, decorrelate, change_detection"),
    (["run", "despeckle", "--WINDOWS=5"], "Unknown parameter WINDOWS; this algorithm takes BANDS"),
    (["run", "despeckle", "--METHOD=lee"], "METHOD must be an option index; got 'lee'"),
    (["run", "despeckle", "--INPUT_UNITS=7"], "INPUT_UNITS must be an option index from 0 to 2"),
    (["run", "despeckle", "--inputs", "{folder}/none/*.tif"], "No input matched"),
    (["run", "despeckle", "--OUTPUT=false"], "Choose at least one output: OUTPUT, RATIO, REPORT"),
    (["run", "change_detection", "--inputs", "{folder}/in/scene0.tif"], "needs a stack of at least two dates"),
    (["run", "despeckle", "--output-dir", "{folder}/in"], "would overwrite an input"),
])
def test_usage_errors_are_named(scenes, tmp_path, capsys, arguments, message):
    defaults = {"--inputs": str(tmp_path / "in" / "*.tif"), "--output-dir": str(tmp_path / "out")}
    arguments = [a.format(folder=tmp_path) for a in arguments]
    for option, value in defaults.items():
        if option not in arguments:
            arguments += [option, value]
    status, summary, err = batch(arguments, capsys)
    assert status == 2 and summary is None
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_dask_stays_optional(scenes, tmp_path):
    """Without Dask the plugin's modules and the batch runner import, and the runner says how to
    install it; nothing else imports Dask."""
    code = f"""
import importlib.abc, sys
class NoDask(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, NoDask())
sys.path.insert(0, {ROOT!r})
import sar_despeckle_plugin.core.despeckle.pipeline, sar_despeckle_plugin.batch.runner
from sar_despeckle_plugin.batch import cli
sys.exit(cli.main(["run", "despeckle", "--inputs", {scenes[0]!r}, "--output-dir", {str(tmp_path / 'out')!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "python -m pip install dask distributed" in done.stderr


def test_list_shows_every_algorithm_with_its_defaults(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("despeckle", "decorrelate", "change_detection", "despeckle_multitemporal"):
        assert f"\n{name}: " in "\n" + out
    assert "change_detection: INPUTS (stack per task)" in out and "despeckle: INPUT (one raster per task)" in out
    assert " --ZEROS_AS_NODATA=true" in out and " --LOOKS= " in out and " --OUTPUT=true" in out
