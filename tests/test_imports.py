"""The QGIS-free part imports without QGIS: every module below core/ and training/, found anew each run.

Each package is walked and imported in a fresh interpreter in which any import of `qgis` (or of a
`qgis.` submodule) fails, as on a machine with PyTorch and GDAL but no QGIS.
"""

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

PACKAGES = ["sar_despeckle_plugin.core", "training"]
if os.path.exists(os.path.join(ROOT, "sar_despeckle_plugin", "batch")) or os.path.exists(
        os.path.join(ROOT, "sar_despeckle_plugin", "batch.py")):
    PACKAGES.append("sar_despeckle_plugin.batch")  # runs on Dask workers, which have no QGIS

SCRIPT = r"""
import importlib, importlib.abc, json, pkgutil, sys, traceback

class NoQgis(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "qgis" or name.startswith("qgis."):
            raise ImportError(f"QGIS is blocked in this test: import of {name}")
        return None

sys.meta_path.insert(0, NoQgis())
for name in [n for n in sys.modules if n == "qgis" or n.startswith("qgis.")]:
    del sys.modules[name]
sys.path.insert(0, ROOT)

failures = {}
package = importlib.import_module(PACKAGE)
names = [PACKAGE]
if hasattr(package, "__path__"):
    def failed(name):
        failures[name] = traceback.format_exc()
    names += [info.name for info in pkgutil.walk_packages(package.__path__, PACKAGE + ".", onerror=failed)
              if info.name.rsplit(".", 1)[-1] != "__main__"]  # __main__ would run the program
for name in names:
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc()
print(json.dumps({"modules": names, "failures": failures}))
"""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports_without_qgis(package):
    code = f"ROOT = {ROOT!r}\nPACKAGE = {package!r}\n{SCRIPT}"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["failures"], "\n".join(f"{name}:\n{tb}" for name, tb in result["failures"].items())
    if package != "sar_despeckle_plugin.batch":
        assert len(result["modules"]) > 5, result["modules"]  # the walk found the package's modules
