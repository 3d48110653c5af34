"""Start-up stays cheap: loading the provider (what every `qgis_process list`, `help` and `run`
does first, and the QGIS window at each start) imports no torch, SciPy or Dask and builds each
algorithm once; a model's weights are checked and read once per process.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models import weights
from sar_despeckle_plugin.core.models.weights import load_model

from .conftest import ROOT

#: Packages that loading the provider, listing its algorithms and showing their help must not import.
HEAVY = ("torch", "scipy", "dask", "distributed", "matplotlib")

PROVIDER_LOAD = r"""
import json, sys
from sar_despeckle_plugin.processing.headless import start_qgis

qgis = start_qgis(provider=False)  # QGIS and its own providers (kept: they go with it)
from qgis.core import QgsApplication
import sar_despeckle_plugin
from sar_despeckle_plugin.processing.provider import SarDespeckleProvider

listings = []
list_algorithms = SarDespeckleProvider.loadAlgorithms

def counted(provider):
    listings.append(provider.id())
    list_algorithms(provider)

SarDespeckleProvider.loadAlgorithms = counted
plugin = sar_despeckle_plugin.classFactory(None)  # as QGIS loads the plugin
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
ids = [algorithm.id() for algorithm in registry.providerById("sar_despeckle").algorithms()]
for algorithm_id in ids:  # what `qgis_process help` does with each
    algorithm = registry.createAlgorithmById(algorithm_id)
    algorithm.shortHelpString()
    [parameter.description() for parameter in algorithm.parameterDefinitions()]
unresolved = [f"{model.id()}: {child.childId()}" for model in plugin.provider.algorithms()
              if hasattr(model, "childAlgorithms") for child in model.childAlgorithms().values()
              if child.algorithm() is None]  # example workflows whose steps were not found
print(json.dumps({"ids": ids, "listings": listings, "unresolved": unresolved,
                  "imported": [name for name in HEAVY if name in sys.modules]}))
"""


def test_provider_loads_without_torch_and_lists_its_algorithms_once():
    code = f"HEAVY = {HEAVY!r}\n{PROVIDER_LOAD}"
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
                   "PYTHONPATH": os.pathsep.join([ROOT, *sys.path[1:]])}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "sar_despeckle:despeckle" in result["ids"] and "sar_despeckle:change_detection" in result["ids"]
    assert result["imported"] == [], f"loading the provider imported {result['imported']}"
    assert result["listings"] == ["sar_despeckle"], "the provider built its algorithms more than once"
    assert any(name.endswith("despeckle_then_change") for name in result["ids"]) and result["unresolved"] == []


@pytest.fixture
def shipped_copy(tmp_path):
    """A copy of the shipped default network (card and weights) in a folder of its own."""
    for extension in (".json", ".pt"):
        shutil.copy(os.path.join(SHIPPED_WEIGHTS, "sarcnn_default" + extension), tmp_path)
    return str(tmp_path / "sarcnn_default.json")


def test_a_model_is_checked_and_read_once_per_process(shipped_copy, monkeypatch):
    hashed, read = [], []
    hash_file, read_file = weights.sha256_of, torch.load
    monkeypatch.setattr(weights, "sha256_of", lambda path: hashed.append(path) or hash_file(path))
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: read.append(args[0]) or read_file(*args, **kwargs))
    first, second = load_model(shipped_copy), load_model(shipped_copy)
    assert len(hashed) == 1 and len(read) == 1
    assert first.module is not second.module and not second.module.training
    assert first.card.sha256 == second.card.sha256
    for (name, a), (_, b) in zip(first.module.state_dict().items(), second.module.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():  # what one run does to its network stays out of the next run's
        next(first.module.parameters()).zero_()
    third = load_model(shipped_copy)
    assert torch.equal(next(third.module.parameters()), next(second.module.parameters()))
    assert next(third.module.parameters()).abs().sum() > 0
    image = torch.rand(1, 1, 48, 48) * 2 + 0.1
    valid = torch.ones_like(image, dtype=torch.bool)
    assert torch.equal(second.despeckle(image, valid, 1.0), third.despeckle(image, valid, 1.0))
    assert len(hashed) == 1 and len(read) == 1


def test_weights_changed_after_a_load_are_checked_again(shipped_copy):
    load_model(shipped_copy)
    weights_path = shipped_copy[:-len(".json")] + ".pt"
    data = bytearray(open(weights_path, "rb").read())
    data[-20] ^= 0xFF
    with open(weights_path, "r+b") as handle:  # in place: same file, same size
        handle.write(data)
    with pytest.raises(SarDespeckleError, match="does not match its model card"):
        load_model(shipped_copy)
