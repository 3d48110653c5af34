"""The single-pol learned change detector: single-pol training pairs (synthetic changes, and
dual-pol labelled pairs read one polarisation at a time), the ``change`` training mode with one
channel per date, and the shipped ``change_single`` card that the ``learned`` METHOD picks for
single-pol dates, through the core, processing.run and qgis_process."""

import copy
import json
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.change.detectors import LearnedDetector, shipped_change_model
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.choices import CHANGE_METHOD_LABELS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.models.weights import load_model
from training.change_data import check_pair, single_pol_view, synthetic_pair, with_channels
from training.config import ChangeConfig, config_from_dict
from training.export import export
from training.metrics import change_scores
from training.tasks import make_task
from training.trainer import train

from .conftest import ROOT
from .synthetic import piecewise_scene, read_geotiff, write_geotiff

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SINGLE = shipped_change_model("single")
DUAL = shipped_change_model("dual")
needs_single = pytest.mark.skipif(not os.path.isfile(SINGLE), reason="no shipped single-pol change model")
LEARNED = list(CHANGE_METHOD_LABELS).index("learned")
REGION = (slice(30, 66), slice(30, 80))


def single_pol_dates(folder, shape=(96, 112), contrast_db=9.0, looks=(4.0, 1.0), seed=0):
    """Two single-pol intensity dates of one scene, ``looks`` each; at date 2 ``REGION``
    brightens by ``contrast_db``. Returns the paths and the true change mask."""
    rng = np.random.default_rng(seed)
    scene = piecewise_scene(*shape, seed=seed)
    paths = []
    for date, n in enumerate(looks):
        reflectivity = scene.copy()
        if date == 1:
            reflectivity[REGION] *= 10 ** (contrast_db / 10)
        values = (reflectivity * rng.gamma(n, 1 / n, shape)).astype(np.float32)
        paths.append(write_geotiff(str(folder / f"single{date + 1}.tif"), values, descriptions=("HH",)))
    truth = np.zeros(shape, bool)
    truth[REGION] = True
    return paths, truth


# ---------------------------------------------------------------------------------------------
# Training data and the change mode with one channel


def test_single_pol_pairs_hold_their_change_and_dual_pol_pairs_serve_as_either_polarisation():
    rng = np.random.default_rng(5)
    clean = piecewise_scene(96, 96)
    settings = ChangeConfig(contrast_db=[8.0, 8.0], looks=[50.0, 50.0], gain_db=0.0)
    pairs = [synthetic_pair(clean, settings, rng, channels=1) for _ in range(20)]
    for pair in pairs:
        assert pair.shape == (3, 96, 96) and pair.dtype == np.float32
        check_pair(pair, "single-pol synthetic")
        ratio = 10 * np.log10(pair[1] / pair[0])  # dB
        if pair[2].any():
            assert abs(np.median(ratio[pair[2] > 0])) == pytest.approx(8.0, abs=1.0)
        assert abs(np.median(ratio[pair[2] == 0])) < 0.5
    assert any(p[2].any() for p in pairs) and any(not p[2].any() for p in pairs)
    dual = synthetic_pair(clean, ChangeConfig(), rng, channels=2)
    np.testing.assert_array_equal(single_pol_view(dual, 1), dual[[1, 3, 4]])
    views = {with_channels(dual, 1, np.random.default_rng(seed)).tobytes() for seed in range(8)}
    assert views == {single_pol_view(dual, 0).tobytes(), single_pol_view(dual, 1).tobytes()}
    assert with_channels(dual, 2, rng) is dual
    with pytest.raises(SarDespeckleError, match="channels = 1"):
        with_channels(pairs[0], 2, rng)


def tiny_single_config():
    raw = {
        "description": "tiny single-pol change detector",
        "model": {"architecture": "change_attention",
                  "hyperparameters": {"channels": 1, "width": 8, "dilations": [1, 2], "fusion_dilations": [1]}},
        "data": {"patch": 32, "samples_per_epoch": 256,
                 "train": [{"synthetic": 4, "side": 64, "seed": 1}],
                 "validation": [{"synthetic": 3, "side": 64, "seed": 2}]},
        "change": {"contrast_db": [6.0, 10.0], "looks": [4.0, 8.0]},
        "train": {"mode": "change", "epochs": 6, "batch_size": 8, "learning_rate": 5e-3, "threads": 1,
                  "log_every": 4, "schedule": "constant"},
    }
    return config_from_dict(copy.deepcopy(raw), ROOT, "tiny_single_change")


def test_tiny_single_pol_run_learns_and_exports_a_single_pol_card(tmp_path):
    cfg = tiny_single_config()
    task = make_task(cfg)
    torch.manual_seed(cfg.train.seed)
    before = task.validate(task.build_model(), torch.device("cpu"))
    model = train(cfg, str(tmp_path / "run"), log=lambda message: None)
    after = task.validate(model, torch.device("cpu"))
    assert after["loss"] < 0.8 * before["loss"] and after["kappa"] > before["kappa"] + 0.2
    card_path = export(str(tmp_path / "run" / "best.pt"), "tiny_single", str(tmp_path / "models"))
    loaded = load_model(card_path, "cpu", input_kind="single_pol_pair")
    assert loaded.card.input_kind == "single_pol_pair" and loaded.card.hyperparameters["channels"] == 1
    assert "single-pol" in loaded.card.training["data"]["input"]
    with pytest.raises(SarDespeckleError, match="two single-pol dates"):
        load_model(card_path, "cpu", input_kind="dual_pol_pair")
    # the learned METHOD takes the card for single-pol dates and refuses it for dual-pol ones
    assert LearnedDetector(card_path, "single").input_kind == "single_pol_pair"
    with pytest.raises(SarDespeckleError, match="reads single-pol dates, but BAND_LAYOUT is dual"):
        LearnedDetector(card_path, "dual")


# ---------------------------------------------------------------------------------------------
# The shipped card, picked by layout


def test_the_shipped_card_is_picked_by_layout():
    assert os.path.basename(SINGLE) == "change_single.json"
    assert shipped_change_model("dual") == shipped_change_model("c2") == DUAL != SINGLE
    with pytest.raises(SarDespeckleError, match="reads dual-pol dates, but BAND_LAYOUT is single"):
        LearnedDetector(DUAL, "single")


@needs_single
def test_shipped_single_pol_detector_finds_a_known_change_whatever_the_tiles(tmp_path):
    paths, truth = single_pol_dates(tmp_path)
    masks = []
    for tile in (None, 32):
        outputs = ChangeOutputs(str(tmp_path / f"map{tile}.tif"), str(tmp_path / f"mask{tile}.tif"))
        report = detect_changes(paths, outputs, ChangeSettings(method="learned", tile=tile), Feedback())
        masks.append(read_geotiff(outputs.change_mask)[0])
        probability = read_geotiff(outputs.change_map)[0]
        assert np.all((probability >= 0) & (probability <= 1))
    assert report.detector["name"] == "learned" and report.detector["model"] == "change_single"
    np.testing.assert_array_equal(masks[0], masks[1])
    assert change_scores(masks[0] == 1, truth)["kappa"] > 0.8


@needs_single
def test_single_pol_learned_method_through_processing_and_qgis_process(qgis_processing, qgis_process, tmp_path):
    paths, truth = single_pol_dates(tmp_path, seed=3)
    result = qgis_processing.run("sar_despeckle:change_detection", {
        "INPUTS": paths, "METHOD": LEARNED, "BAND_LAYOUT": 0, "CHANGE_MASK": str(tmp_path / "mask.tif"),
    })
    mask = read_geotiff(result["CHANGE_MASK"])[0]
    assert change_scores(mask == 1, truth)["kappa"] > 0.8
    cli_mask = str(tmp_path / "cli_mask.tif")
    done = qgis_process("run", "sar_despeckle:change_detection", "--json", *(f"--INPUTS={p}" for p in paths),
                        f"--METHOD={LEARNED}", f"--CHANGE_MASK={cli_mask}")
    assert json.loads(done.stdout[done.stdout.index("{"):])["results"]["CHANGE_MASK"] == cli_mask
    np.testing.assert_array_equal(read_geotiff(cli_mask)[0], mask)
