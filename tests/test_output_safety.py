"""Nothing lost, whatever the user does: outputs never destroy inputs, a full disk or a killed
run keeps the older result, all outputs of a run or none, and the umask is honoured.

The destination rules live in ``core.outputs``; these tests reach them the way users do
(``processing.run``, ``qgis_process``) and, for faults that need a process of their own (a file
size limit, SIGTERM), through a small script in a subprocess.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core import outputs
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.outputs import OutputSet, check_destinations, partial_path, remove_stale_partials
from sar_despeckle_plugin.core.raster import RasterWriter, raster_info

from .conftest import ROOT
from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff


def _bytes(path) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


@pytest.fixture
def scene_tif(tmp_path):
    return write_geotiff(str(tmp_path / "x.tif"), speckle(piecewise_scene(48, 40), 1, seed=3))


# -- core.outputs ----------------------------------------------------------------------------


def test_an_output_that_is_the_input_is_refused_however_it_is_spelled(scene_tif, tmp_path):
    (tmp_path / "sub").mkdir()
    os.symlink(scene_tif, tmp_path / "link.tif")
    os.link(scene_tif, tmp_path / "hard.tif")
    for spelling in (scene_tif, str(tmp_path / "sub" / ".." / "x.tif"), str(tmp_path / "link.tif"),
                     str(tmp_path / "hard.tif")):
        with pytest.raises(SarDespeckleError, match=r"OUTPUT .* is the same file as INPUT"):
            check_destinations({"INPUT": scene_tif}, {"OUTPUT": spelling})


def test_two_outputs_on_one_path_a_folder_as_output_and_a_missing_folder_are_refused(tmp_path):
    with pytest.raises(SarDespeckleError, match="OUTPUT and OUTPUT_INTENSITY are the same file"):
        check_destinations({}, {"OUTPUT": str(tmp_path / "a.tif"), "OUTPUT_INTENSITY": str(tmp_path / "a.tif")})
    with pytest.raises(SarDespeckleError, match="is a folder"):
        check_destinations({}, {"OUTPUT": str(tmp_path)})
    with pytest.raises(SarDespeckleError, match="does not exist"):
        check_destinations({}, {"OUTPUT": str(tmp_path / "no" / "a.tif")})


def test_an_output_larger_than_the_free_space_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(0, 0, 10_000_000))
    check_destinations({}, {"OUTPUT": str(tmp_path / "a.tif")}, {"OUTPUT": 5_000_000})
    with pytest.raises(SarDespeckleError, match=r"Not enough disk space for OUTPUT: about 19.1 MB needed"):
        check_destinations({}, {"OUTPUT": str(tmp_path / "a.tif")}, {"OUTPUT": 20_000_000})


def test_outputs_of_a_run_are_committed_together_or_not_at_all(tmp_path):
    first, second = str(tmp_path / "a.txt"), str(tmp_path / "b.txt")
    with open(first, "w") as stream:
        stream.write("older")
    with pytest.raises(RuntimeError):
        with OutputSet() as run:
            with outputs.staged_file(first, run) as partial:
                open(partial, "w").write("new a")
            assert os.path.exists(run.staged_path(first)) and _bytes(first) == b"older"
            raise RuntimeError("the second output failed")
    assert _bytes(first) == b"older" and not os.path.exists(second)
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
    with OutputSet() as run:
        for path in (first, second):
            with outputs.staged_file(path, run) as partial:
                open(partial, "w").write("new")
    assert _bytes(first) == _bytes(second) == b"new" and sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_stale_partial_files_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    destination = str(tmp_path / "out.tif")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    mine = partial_path(destination)
    stale = mine.replace(f"-{os.getpid()}.", f"-{dead}.")
    other = partial_path(str(tmp_path / "other.tif")).replace(f"-{os.getpid()}.", f"-{dead}.")
    for path in (mine, stale, other):
        open(path, "w").close()
    assert remove_stale_partials(destination) == [os.path.basename(stale)]
    assert os.path.exists(mine) and os.path.exists(other) and not os.path.exists(stale)


# -- the writer under faults -----------------------------------------------------------------

WRITER_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    from sar_despeckle_plugin.core.errors import SarDespeckleError
    from sar_despeckle_plugin.core.raster import RasterWriter, raster_info
    like = raster_info({like!r})
    mode = sys.argv[1]
    if mode == "limit":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    try:
        with RasterWriter({out!r}, like, 1, None, ["x"], {{}}) as writer:
            for row in range(like.height):
                writer.write(np.random.default_rng(row).random((1, 1, like.width), np.float32), row, 0)
                if mode == "sigterm" and row == 3:
                    print("writing", flush=True)
                    time.sleep(60)
    except SarDespeckleError as error:
        print(error)
        sys.exit(1)
""")


def _writer(mode, like, out):
    script = WRITER_SCRIPT.format(root=ROOT, like=like, out=out)
    return subprocess.Popen([sys.executable, "-c", script, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _older_output(path) -> bytes:
    """Write a small GeoTIFF at ``path``, standing for a good result of an earlier run; its bytes."""
    write_geotiff(str(path), np.full((8, 8), 7, np.float32))
    return _bytes(path)


def test_a_write_that_fails_midway_fails_the_run_and_keeps_the_older_file(tmp_path):
    like = write_geotiff(str(tmp_path / "like.tif"), np.ones((128, 128), np.float32))
    out = str(tmp_path / "out.tif")
    older = _older_output(out)
    process = _writer("limit", like, out)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "file size limit" in stdout and "older file there is kept" in stdout and "Traceback" not in stderr
    assert _bytes(out) == older and sorted(os.listdir(tmp_path)) == ["like.tif", "out.tif"]


def test_sigterm_removes_the_partial_file_and_keeps_the_older_file(tmp_path):
    like = write_geotiff(str(tmp_path / "like.tif"), np.ones((64, 64), np.float32))
    out = str(tmp_path / "out.tif")
    older = _older_output(out)
    process = _writer("sigterm", like, out)
    assert process.stdout.readline().strip() == "writing"
    assert any(name.endswith(".partial.tif") for name in os.listdir(tmp_path))
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM
    assert _bytes(out) == older and sorted(os.listdir(tmp_path)) == ["like.tif", "out.tif"]


def _tmpfs(path) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_fails_the_write_and_keeps_the_older_file(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _tmpfs(disk):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        like = raster_info(write_geotiff(str(tmp_path / "like.tif"), np.ones((512, 512), np.float32)))
        out = str(disk / "out.tif")
        write_geotiff(out, np.full((8, 8), 7, np.float32))
        older = _bytes(out)
        with pytest.raises(SarDespeckleError, match="Not enough disk space"):  # checked before work
            RasterWriter(out, like, 1, None, ["x"], {}).__enter__()
        monkeypatch.setattr(outputs, "DISK_MARGIN", -10 ** 9)  # space that vanishes during the run
        with pytest.raises(SarDespeckleError, match="The disk is full"):
            with RasterWriter(out, like, 1, None, ["x"], {}) as writer:
                writer.write(np.random.default_rng(0).random((1, 512, 512), np.float32), 0, 0)
        assert _bytes(out) == older and os.listdir(disk) == ["out.tif"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_outputs_honour_the_umask(tmp_path):
    like = raster_info(write_geotiff(str(tmp_path / "like.tif"), np.ones((8, 8), np.float32)))
    previous = os.umask(0o027)
    try:
        with RasterWriter(str(tmp_path / "out.tif"), like, 1, None, ["x"], {}) as writer:
            writer.write(np.ones((1, 8, 8), np.float32), 0, 0)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "out.tif").st_mode) == 0o640


# -- as users meet it ------------------------------------------------------------------------


@pytest.fixture
def slc_tif(tmp_path):
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(64, 64)) + 1j * rng.normal(size=(64, 64))).astype(np.complex64)
    return write_geotiff(str(tmp_path / "slc.tif"), z, descriptions=("HH",), data_type=gdal.GDT_CFloat32)


def _spellings(path, tmp_path):
    (tmp_path / "sub").mkdir(exist_ok=True)
    link = tmp_path / f"link_{os.path.basename(path)}"
    if not link.exists():
        os.symlink(path, link)
    folder, name = os.path.split(path)
    return [path, os.path.join(folder, "sub", "..", name), str(link)]


def _refused(processing, algorithm, parameters, message, protected):
    from qgis.core import QgsProcessingException

    before = {path: _bytes(path) for path in protected}
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(algorithm, parameters)
    for path, content in before.items():
        assert _bytes(path) == content, f"{path} was changed"


def test_despeckle_refuses_an_output_that_is_its_input(qgis_processing, scene_tif, tmp_path):
    for spelling in _spellings(scene_tif, tmp_path):
        _refused(qgis_processing, "sar_despeckle:despeckle",
                 {"INPUT": scene_tif, "METHOD": 1, "OUTPUT": spelling},
                 r"\(OUTPUT\) .* is the same file as Input SAR raster \(INPUT\)", [scene_tif])


def test_change_detection_refuses_an_output_that_is_an_input(qgis_processing, tmp_path):
    dates = [write_geotiff(str(tmp_path / f"d{i}.tif"), speckle(piecewise_scene(40, 40), 4, seed=i))
             for i in (1, 2)]
    for name in ("CHANGE_MASK", "CHANGE_MAP", "CHANGE_DATE"):
        _refused(qgis_processing, "sar_despeckle:change_detection",
                 {"INPUTS": dates, "INPUT_UNITS": 0, name: dates[0]},
                 rf"\({name}\) .* is the same file as .*\(INPUTS\)", dates)


def test_decorrelate_refuses_an_output_on_its_input_or_on_another_output(qgis_processing, slc_tif, tmp_path):
    for spelling in _spellings(slc_tif, tmp_path):
        _refused(qgis_processing, "sar_despeckle:decorrelate", {"INPUT": slc_tif, "OUTPUT": spelling},
                 r"\(OUTPUT\) .* is the same file as Input SLC raster \(INPUT\)", [slc_tif])
    both = str(tmp_path / "both.tif")
    _refused(qgis_processing, "sar_despeckle:decorrelate",
             {"INPUT": slc_tif, "OUTPUT": both, "OUTPUT_INTENSITY": both},
             r"\(OUTPUT\) and Decorrelated intensity \(OUTPUT_INTENSITY\) are the same file", [slc_tif])
    assert not os.path.exists(both)


def test_decorrelate_writes_all_outputs_or_none(qgis_processing, slc_tif, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    out, intensity = str(tmp_path / "out.tif"), str(tmp_path / "intensity.tif")
    parameters = {"INPUT": slc_tif, "OUTPUT": out, "OUTPUT_INTENSITY": intensity,
                  "REPORT": str(locked / "report.json")}
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: a folder in the way instead
            os.chmod(locked, 0o700)
            os.mkdir(locked / "report.json")
            message = r"Report \(REPORT\) .* is a folder"
        else:
            message = r"Cannot write Report \(REPORT\)"
        _refused(qgis_processing, "sar_despeckle:decorrelate", parameters, message, [slc_tif])
    finally:
        os.chmod(locked, 0o700)
    assert not os.path.exists(out) and not os.path.exists(intensity)
    for folder in (tmp_path, locked):
        assert not [name for name in os.listdir(folder) if ".partial" in name]


def test_an_output_that_is_a_folder_is_one_clear_line_in_qgis_process(qgis_process, scene_tif, tmp_path):
    done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={scene_tif}", "--METHOD=1",
                        f"--OUTPUT={tmp_path}", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "is a folder" in done.stdout + done.stderr


def test_qgis_process_refuses_output_equal_to_input_and_keeps_it(qgis_process, scene_tif):
    before = _bytes(scene_tif)
    done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={scene_tif}", "--METHOD=1",
                        f"--OUTPUT={scene_tif}", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "is the same file as Input SAR raster (INPUT)" in done.stdout + done.stderr
    assert _bytes(scene_tif) == before
    assert read_geotiff(scene_tif).shape == (1, 48, 40)


# -- every failure is one line a user understands ---------------------------------------------


def test_a_polygon_destination_that_cannot_be_written_is_refused_before_any_work(qgis_processing, tmp_path):
    dates = [write_geotiff(str(tmp_path / f"d{i}.tif"), speckle(piecewise_scene(40, 40), 4, seed=i))
             for i in (1, 2)]
    mask = str(tmp_path / "mask.tif")
    _refused(qgis_processing, "sar_despeckle:change_detection",
             {"INPUTS": dates, "INPUT_UNITS": 0, "CHANGE_MASK": mask, "CHANGE_POLYGONS": "/proc/changes.gpkg"},
             r"Cannot write Change polygons \(CHANGE_POLYGONS\) '/proc/changes.gpkg'", dates)
    assert not os.path.exists(mask)


def test_a_truncated_geotiff_is_called_that(qgis_process, tmp_path):
    good = write_geotiff(str(tmp_path / "good.tif"), speckle(piecewise_scene(300, 300), 1))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(_bytes(good)[: os.path.getsize(good) // 2])
    done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={truncated}", "--METHOD=1",
                        f"--OUTPUT={tmp_path / 'out.tif'}", check=False)
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "is truncated or corrupt" in done.stdout + done.stderr
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("algorithm, parameter, value, message", [
    ("despeckle", "WINDOW", 2001, r"Window size, classical filters only \(WINDOW\) must be between 3 and 101; 2001 was given"),
    ("despeckle", "LOOKS", -3, r"Number of looks \(LOOKS\) must be at least 0.1; -3 was given"),
])
def test_an_out_of_range_number_names_its_label_range_and_value(qgis_process, scene_tif, tmp_path, algorithm,
                                                                parameter, value, message):
    done = qgis_process("run", f"sar_despeckle:{algorithm}", f"--INPUT={scene_tif}", f"--{parameter}={value}",
                        f"--OUTPUT={tmp_path / 'out.tif'}", check=False)
    assert done.returncode != 0 and re.search(message, done.stdout + done.stderr), done.stdout + done.stderr


def test_sigterm_to_qgis_process_leaves_no_partial_file_and_keeps_the_older_output(qgis_process, tmp_path):
    import time

    scene = write_geotiff(str(tmp_path / "big.tif"), speckle(piecewise_scene(2400, 2400), 1))
    out = str(tmp_path / "out.tif")
    older = _older_output(out)
    process = qgis_process.start("run", "sar_despeckle:despeckle", f"--INPUT={scene}", f"--OUTPUT={out}")
    deadline = time.monotonic() + 120
    while not any(".partial" in name for name in os.listdir(tmp_path)):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before writing"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert _bytes(out) == older
    assert sorted(name for name in os.listdir(tmp_path) if not name.endswith(".aux.xml")) == ["big.tif", "out.tif"]


def test_large_outputs_are_announced_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(0, 0, 50 * 2 ** 30))
    lines = []
    check_destinations({}, {"OUTPUT": str(tmp_path / "a.tif")}, {"OUTPUT": 3 * 2 ** 30}, lines.append)
    check_destinations({}, {"OUTPUT": str(tmp_path / "b.tif")}, {"OUTPUT": 2 ** 20}, lines.append)
    assert lines == [f"OUTPUT will take about 3.0 GB in '{tmp_path}' (50.0 GB free)."]
