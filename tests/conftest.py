"""Shared fixtures: the repository on sys.path, a headless QGIS application when asked for."""

import inspect
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


# Fixtures that start QGIS, and the imports a test's own code shows when it needs QGIS without
# them (a lazy import, or a script it runs in a subprocess). Others take @pytest.mark.qgis.
QGIS_FIXTURES = {"qgis_processing", "qgis_process"}
QGIS_CODE = re.compile(r"\b(from|import) qgis\b")


def pytest_collection_modifyitems(config, items):
    """Mark `qgis` the tests that need QGIS, so that `pytest -m "not qgis"` runs the rest alone."""
    for item in items:
        if item.get_closest_marker("qgis"):
            continue
        function = getattr(item, "function", None)
        try:
            source = inspect.getsource(function) if function is not None else ""
        except (OSError, TypeError):
            source = ""
        if QGIS_FIXTURES & set(getattr(item, "fixturenames", ())) or QGIS_CODE.search(source):
            item.add_marker(pytest.mark.qgis)


def shared_data(relative: str) -> str:
    """Path of a real-data file under ../shared/data, or skip the test when it is absent."""
    path = os.path.join(DATA, relative)
    if not os.path.exists(path):
        pytest.skip(f"real data {relative} not present")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of small images: torch's thread pool costs more than it
    gains there, above all on a shared machine where idle threads spin against other jobs
    (measured: 0.4 s against 8 s per decorrelation run). Modules take it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def qgis_processing():
    """A headless QGIS with Processing initialised and our provider added (returns processing;
    see ``sar_despeckle_plugin.processing.headless``)."""
    from sar_despeckle_plugin.processing.headless import start_qgis

    qgis = start_qgis()
    yield qgis.processing
    qgis.stop()


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    """Run ``qgis_process.bin`` with this checkout's plugin enabled in a throw-away profile.

    Returns a function taking the arguments after the executable and returning the
    CompletedProcess (text output).
    """
    import shutil
    import subprocess
    import sysconfig

    executable = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    if executable is None:
        pytest.fail("qgis_process is not installed: run `make setup`")
    profile = tmp_path_factory.mktemp("qgis-profile")
    env = dict(os.environ)
    env.update(
        QGIS_PLUGINPATH=ROOT,
        QGIS_CUSTOM_CONFIG_PATH=str(profile),
        QT_QPA_PLATFORM="offscreen",
        PYTHONPATH=os.pathsep.join([sysconfig.get_paths()["purelib"], ROOT]),
    )

    def run(*args, check=True):
        done = subprocess.run([executable, *args], env=env, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"qgis_process {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def start(*args):
        """Start qgis_process without waiting (to signal it mid-run); text pipes."""
        return subprocess.Popen([executable, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    run("plugins", "enable", "sar_despeckle_plugin")
    run.start = start
    run.profile = str(profile)  # its QGIS_CUSTOM_CONFIG_PATH, for tests that put files in it
    return run
