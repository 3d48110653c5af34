"""training/ keeps the user's work and data straight: stacks of different areas stay apart,
Ctrl-C / SIGTERM save and stop in one line, export never overwrites by surprise and defaults
to the user models folder, clean references with zeros are refused, and user mistakes give one
``error:`` line -- on tiny synthetic data, a few seconds each."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.user_models import default_models_folder, qgis_settings_folder
from training.checkpoints import load_checkpoint
from training.cli import main
from training.prepare import PrepareOptions, prepare
from training.trainer import train

from .conftest import ROOT
from .synthetic import piecewise_scene, speckle, write_geotiff
from .test_training import TINY, config, silent, tiny


def one_error_line(capsys) -> str:
    """The stderr of a failed command: exactly one line, ``error: ...``, no traceback."""
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error, error
    return error


# ---------------------------------------------------------------------------------------------
# prepare: stacks


def two_dates(path, seed):
    scene = piecewise_scene(64, 64, seed)
    return write_geotiff(str(path), np.stack([speckle(scene, 1.0, 10 * seed + d) for d in range(2)]))


def test_prepare_keeps_the_stacks_of_different_areas_apart(tmp_path, capsys):
    files = [two_dates(tmp_path / f"area{i}.tif", i) for i in range(5)]
    patches, info = prepare(files, PrepareOptions("stack", patch=32))
    assert patches.shape == (20, 2, 32, 32)  # five two-date stacks, not one ten-date stack
    assert info["images"] == 5 and info["patches_per_image"] == [4] * 5
    for i, path in enumerate(files):  # every patch holds the two dates of one area
        bands = gdal.Open(path).ReadAsArray()
        np.testing.assert_array_equal(patches[4 * i], bands[:, :32, :32])
    # dates of one area in several files are merged only when asked, and only co-registered
    dates = [write_geotiff(str(tmp_path / f"d{i}.tif"), speckle(piecewise_scene(64, 64, 7), 1.0, i)) for i in range(3)]
    assert main(["prepare", *dates, "--kind", "stack", "--output", str(tmp_path / "s.npz")]) == 2
    assert "not a stack on its own" in one_error_line(capsys) and "--one-stack" in capsys.readouterr().err + "--one-stack"
    patches, info = prepare(dates, PrepareOptions("stack", patch=32, one_stack=True))
    assert patches.shape == (4, 3, 32, 32) and info["images"] == 1
    moved = gdal.Open(dates[2], gdal.GA_Update)
    moved.SetGeoTransform((500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0))
    moved = None
    with pytest.raises(SarDespeckleError, match="different CRS or geotransforms"):
        prepare(dates, PrepareOptions("stack", patch=32, one_stack=True))
    # stacks of different lengths cannot share one patch file
    three = write_geotiff(str(tmp_path / "three.tif"), np.stack([speckle(piecewise_scene(64, 64, 8), 1.0, d) for d in range(3)]))
    assert main(["prepare", files[0], three, "--kind", "stack", "--output", str(tmp_path / "s.npz")]) == 2
    assert "have 2, 3 dates" in one_error_line(capsys)
    # arrays follow the same rule
    with pytest.raises(SarDespeckleError, match="not a stack on its own"):
        prepare([np.ones((40, 40)), np.ones((40, 40))], PrepareOptions("stack", patch=16))
    patches, _ = prepare([np.ones((40, 40)), np.ones((2, 40, 40))], PrepareOptions("stack", patch=16, one_stack=True))
    assert patches.shape[1] == 3
    with pytest.raises(SarDespeckleError, match="--one-stack applies to --kind stack only"):
        prepare(files[:1], PrepareOptions("clean", patch=32, one_stack=True))


# ---------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM


def write_config(path, epochs):
    text = open(TINY).read()
    assert "epochs = 2\n" in text
    path.write_text(text.replace("epochs = 2\n", f"epochs = {epochs}\n"))
    return str(path)


def train_command(config_path, output, *extra):
    return [sys.executable, "-m", "training", "train", "--config", config_path, "--output", output, *extra]


@pytest.mark.parametrize("signal_number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_stops_in_one_line_and_resume_continues(tmp_path, signal_number, status):
    output = str(tmp_path / "run")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(train_command(write_config(tmp_path / "long.toml", 500), output), cwd=ROOT,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(output, "metrics.csv")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:  # wait for the first logged steps
        if os.path.exists(metrics) and ",train," in open(metrics).read():
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    name = signal.Signals(signal_number).name
    assert last_line.startswith(f"interrupted by {name} after ") and "--resume" in last_line
    assert sum(line.startswith("interrupted") for line in err.splitlines()) == 1
    checkpoint = load_checkpoint(os.path.join(output, "last.pt"))
    steps = checkpoint["step"]
    assert steps >= 2 and checkpoint["epoch"] * 8 + checkpoint["epoch_step"] == steps
    if signal_number != signal.SIGINT:
        return
    # --resume continues from that very step (to a nearer end: epochs may change on resume)
    epochs = checkpoint["epoch"] + 2
    resumed = subprocess.run(train_command(write_config(tmp_path / "long.toml", epochs), output, "--resume"),
                             cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {steps})" in resumed.stdout  # "Resuming ... (step N)."
    summary = json.load(open(os.path.join(output, "metrics.json")))["summary"]
    assert summary["steps"] == 8 * epochs and summary["epochs"] == epochs


def test_a_signal_at_an_epoch_end_or_none_at_all(tmp_path):
    """Driving the loop in-process: a stop request seen at the end of an epoch stops after its
    checkpoint; the run resumes exactly."""
    from training import interrupts, trainer

    calls = []

    class AskToStopAtStep(interrupts.StopRequests):
        @property
        def requested(self):
            calls.append(1)
            return len(calls) >= 8  # from the eighth check on: after the last step of epoch 1

    original = trainer.StopRequests
    trainer.StopRequests = AskToStopAtStep
    try:
        with pytest.raises(interrupts.TrainingInterrupted) as stop:
            train(config(tiny()), str(tmp_path / "run"), log=silent)
    finally:
        trainer.StopRequests = original
    assert stop.value.exit_status == 130 and "after epoch 1 (step 8)" in stop.value.message
    assert load_checkpoint(str(tmp_path / "run" / "last.pt"))["epoch"] == 1
    resumed = train(config(tiny()), str(tmp_path / "run"), resume=True, log=silent)
    straight = train(config(tiny()), str(tmp_path / "straight"), log=silent)
    for key, value in straight.state_dict().items():
        assert resumed.state_dict()[key].equal(value)


# ---------------------------------------------------------------------------------------------
# export


def test_user_models_folder_is_computed_without_qgis():
    assert qgis_settings_folder("linux", {"HOME": "/h"}).endswith(os.path.join(".local", "share", "QGIS", "QGIS3", "profiles", "default"))
    assert qgis_settings_folder("linux", {"XDG_DATA_HOME": "/x"}) == os.path.join("/x", "QGIS", "QGIS3", "profiles", "default")
    assert qgis_settings_folder("win32", {"APPDATA": "C:/Users/u/AppData/Roaming"}) == os.path.join(
        "C:/Users/u/AppData/Roaming", "QGIS", "QGIS3", "profiles", "default")
    assert qgis_settings_folder("darwin", {}).endswith(os.path.join("Library", "Application Support", "QGIS", "QGIS3", "profiles", "default"))
    assert qgis_settings_folder("linux", {"QGIS_CUSTOM_CONFIG_PATH": "/p"}) == os.path.join("/p", "profiles", "default")
    assert default_models_folder("/s") == os.path.join("/s", "sar_despeckle", "models")


def test_export_goes_to_the_user_models_folder_and_never_overwrites_unasked(tmp_path, capsys, monkeypatch):
    train(config(tiny(**{"train.epochs": 1})), str(tmp_path / "run"), log=silent)
    checkpoint = str(tmp_path / "run" / "last.pt")
    monkeypatch.setenv("QGIS_CUSTOM_CONFIG_PATH", str(tmp_path / "qgis"))
    folder = tmp_path / "qgis" / "profiles" / "default" / "sar_despeckle" / "models"
    assert main(["export", "--checkpoint", checkpoint, "--name", "mine"]) == 0
    assert (folder / "mine.json").is_file() and (folder / "mine.pt").is_file()
    assert str(folder / "mine.json") in capsys.readouterr().out
    before = (folder / "mine.json").read_text()
    assert main(["export", "--checkpoint", checkpoint, "--name", "mine"]) == 2
    assert "already exists" in one_error_line(capsys)
    assert (folder / "mine.json").read_text() == before
    assert main(["export", "--checkpoint", checkpoint, "--name", "mine", "--overwrite", "--description", "again"]) == 0
    assert json.loads((folder / "mine.json").read_text())["description"] == "again"
    # a folder that cannot be written
    (tmp_path / "file").write_text("")
    assert main(["export", "--checkpoint", checkpoint, "--name", "x", "--to", str(tmp_path / "file" / "models")]) == 2
    assert "Cannot create the folder" in one_error_line(capsys)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert main(["export", "--checkpoint", checkpoint, "--name", "x", "--to", str(locked)]) == 2
        assert "Cannot write into" in one_error_line(capsys)


def test_makefile_exports_the_shipped_weights_into_the_plugin_explicitly():
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    exports = [line for line in makefile.splitlines() if "-m training export" in line]
    assert exports and all("--to $(PLUGIN)/weights" in line for line in exports)


# ---------------------------------------------------------------------------------------------
# data checks and one-line errors


def test_clean_references_with_zeros_are_refused(tmp_path, capsys):
    reference = piecewise_scene(64, 64, 3)
    reference[:4] = 0.0  # a swath border
    np.save(tmp_path / "ref.npy", reference)
    raw = tiny(**{"data.train": [{"path": str(tmp_path / "ref.npy")}]})
    with pytest.raises(SarDespeckleError, match="256 pixels at exactly zero.*must be positive"):
        train(config(raw), str(tmp_path / "run"), log=silent)
    # a region without them trains
    raw = tiny(**{"data.train": [{"path": str(tmp_path / "ref.npy"), "rows": [4, 64]}], "train.epochs": 1})
    train(config(raw), str(tmp_path / "run"), log=silent)
    assert main(["prepare", str(tmp_path / "ref.npy"), "--kind", "clean", "--keep-zeros",
                 "--output", str(tmp_path / "p.npz")]) == 2
    assert "--keep-zeros does not apply to --kind clean" in one_error_line(capsys)


def test_user_mistakes_print_one_error_line(tmp_path, capsys):
    np.save(tmp_path / "line.npy", np.ones(100, np.float32))
    bad = tmp_path / "bad.toml"
    bad.write_text(open(TINY).read().replace("train = [{ synthetic = 4, side = 64, seed = 1 }]",
                                             f"train = [{{ path = '{tmp_path / 'line.npy'}' }}]"))
    cases = [
        (["train", "--config", str(bad), "--output", str(tmp_path / "r")], "has shape (100,)"),
        (["train", "--config", str(tmp_path / "missing.toml")], "does not exist"),
        (["train", "--config", TINY, "--output", str(tmp_path / "none"), "--resume"], "Nothing to resume"),
        (["export", "--checkpoint", str(tmp_path / "missing.pt"), "--name", "x", "--to", str(tmp_path)], "does not exist"),
        (["profile", "--architecture", "log_residual", "--hyperparameters", "{widths: [8]"], "not valid JSON"),
        (["profile", "--architecture", "log_residual", "--hyperparameters", "[8]"], "must be a JSON object"),
        (["profile", "--architecture", "log_residual", "--hyperparameters", '{"depth": 3}'], "--hyperparameters"),
        (["evaluate", "--model", str(tmp_path / "none.json"), "--references", "x.npy"], ""),
        (["prepare", str(tmp_path / "line.npy"), "--kind", "clean", "--output", str(tmp_path / "p.npz")], "has shape (100,)"),
        (["prepare", str(tmp_path / "missing.npy"), "--kind", "clean", "--output", str(tmp_path / "p.npz")], "missing.npy"),
    ]
    for argv, message in cases:
        assert main(argv) in (1, 2), argv
        assert message in one_error_line(capsys), argv
    from training.evaluate import parse_span
    with pytest.raises(SarDespeckleError, match="start:stop"):
        parse_span("300-500")
