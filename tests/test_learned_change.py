"""The learned change detector: the network (core.models.change_net), its training mode
(training/ in ``change`` mode), and the ``learned`` METHOD of change detection."""

import copy
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.change.detectors import shipped_change_model
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.models.card import list_model_cards
from sar_despeckle_plugin.core.models.change_net import ChangeNet
from sar_despeckle_plugin.core.models.weights import load_model
from training.change_data import check_pair, load_change_pairs, synthetic_pair
from training.config import ChangeConfig, ConfigError, SourceConfig, config_from_dict
from training.export import export
from training.metrics import change_scores
from training.tasks import make_task
from training.trainer import train

from .conftest import ROOT
from .synthetic import assert_refused_without_output, piecewise_scene, read_geotiff, write_geotiff

QUIET = Feedback()
SHIPPED = shipped_change_model()
needs_shipped = pytest.mark.skipif(not os.path.isfile(SHIPPED), reason="no shipped change model")


def tiny_change_config(**train):
    raw = {
        "description": "tiny change detector",
        "model": {"architecture": "change_attention", "hyperparameters": {"width": 8, "dilations": [1, 2],
                                                                         "fusion_dilations": [1]}},
        "data": {"patch": 32, "samples_per_epoch": 256,
                 "train": [{"synthetic": 4, "side": 64, "seed": 1}],
                 "validation": [{"synthetic": 3, "side": 64, "seed": 2}]},
        "change": {"contrast_db": [6.0, 10.0], "looks": [4.0, 8.0]},
        "train": {"mode": "change", "epochs": 6, "batch_size": 8, "learning_rate": 5e-3, "threads": 1,
                  "log_every": 4, "schedule": "constant", **train},
    }
    return config_from_dict(copy.deepcopy(raw), ROOT, "tiny_change")


def silent(message):
    pass


# ---------------------------------------------------------------------------------------------
# The network


def test_change_net_shapes_reach_and_gain_invariance():
    torch.manual_seed(0)
    net = ChangeNet(width=8, dilations=(1, 2, 4), fusion_dilations=(1,)).eval()
    assert net.receptive_radius == 8
    first, second = torch.rand(1, 2, 48, 48) + 0.1, torch.rand(1, 2, 48, 48) + 0.1
    references = torch.tensor([[0.5, 0.1]])
    with torch.no_grad():
        z1, z2 = net.normalise(first, references), net.normalise(second, references)
        context = net.context(net.features(z1, z2))
        base = net(z1, z2, context)
        assert base.shape == (1, 1, 48, 48)
        poked = z2.clone()
        poked[0, 1, 24, 24] += 1.0
        difference = (net(z1, poked, context) - base).abs()[0, 0]
    changed = torch.nonzero(difference > 0)
    reach = (changed - torch.tensor([24, 24])).abs().max()
    assert difference[24, 24] > 0 and reach <= net.receptive_radius
    # a calibration gain on one date and channel cancels with that date's reference level
    gain = torch.tensor([3.0, 0.5]).reshape(1, 2, 1, 1)
    with torch.no_grad():
        scaled = net(net.normalise(first * gain, references * gain.reshape(1, 2)), z2, context)
    torch.testing.assert_close(scaled, base, rtol=1e-4, atol=1e-5)


def test_given_context_makes_tiles_match_the_whole_image():
    torch.manual_seed(1)
    net = ChangeNet(width=8, dilations=(1, 2, 4), fusion_dilations=(1, 2)).eval()
    z1, z2 = torch.randn(1, 2, 80, 80), torch.randn(1, 2, 80, 80)
    halo = net.receptive_radius
    with torch.no_grad():
        context = net.context(net.features(z1, z2))
        whole = net(z1, z2, context)
        tile = net(z1[..., 20:60, :50], z2[..., 20:60, :50], context)
    torch.testing.assert_close(tile[..., halo: 40 - halo, : 50 - halo], whole[..., 20 + halo: 60 - halo, : 50 - halo])


def test_context_pooled_in_parts_equals_pooling_the_whole():
    torch.manual_seed(2)
    net = ChangeNet(width=8, dilations=(1, 2), fusion_dilations=(1,)).eval()
    features = torch.randn(1, 8, 40, 60) * 3
    valid = torch.rand(1, 1, 40, 60) > 0.2
    with torch.no_grad():
        whole = net.context(features, valid)
        parts = [net.attention.partial(features[..., :, :25], valid[..., :, :25]),
                 net.attention.partial(features[..., :, 25:], valid[..., :, 25:])]
        torch.testing.assert_close(net.attention.combine(parts), whole, rtol=1e-5, atol=1e-6)
        # softmax pooling by hand
        logits = net.attention.key(features).flatten(1)[0][valid.flatten()]
        weights = torch.softmax(logits, 0)
        expected = (features.flatten(2)[0][:, valid.flatten()] * weights).sum(1)
        torch.testing.assert_close(whole.flatten(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Training data and the change mode


def test_synthetic_pairs_hold_their_label_and_calibration_offsets():
    rng = np.random.default_rng(3)
    settings = ChangeConfig(contrast_db=[8.0, 8.0], looks=[50.0, 50.0], gain_db=0.0)
    clean = piecewise_scene(96, 96)
    pairs = [synthetic_pair(clean, settings, rng) for _ in range(40)]
    for pair in pairs:
        assert pair.shape == (5, 96, 96) and pair.dtype == np.float32 and np.isin(pair[4], (0, 1)).all()
        check_pair(pair, "synthetic")
        ratio = np.log10(pair[2:4] / pair[0:2]) * 10  # dB, per channel
        changed, unchanged = pair[4] > 0, pair[4] == 0
        if changed.any():  # the strongest channel moved by the contrast inside the blobs only
            assert np.abs(np.median(ratio[:, changed], axis=1)).max() == pytest.approx(8.0, abs=1.0)
        assert np.abs(np.median(ratio[:, unchanged], axis=1)).max() < 0.5
    assert any(p[4].any() for p in pairs) and any(not p[4].any() for p in pairs)


def test_change_pairs_load_from_rasters_and_globs_and_bad_ones_are_refused(tmp_path):
    rng = np.random.default_rng(4)
    for i in range(3):
        pair = synthetic_pair(piecewise_scene(40, 40, seed=i), ChangeConfig(), rng)
        write_geotiff(str(tmp_path / f"pair{i}.tif"), pair)
    loaded = load_change_pairs(SourceConfig(path=str(tmp_path / "pair*.tif"), kind="change_pair"))
    assert len(loaded.images) == 3 and loaded.kind == "change_pair" and loaded.images[0].shape == (5, 40, 40)
    bad = np.ones((5, 8, 8), np.float32)
    bad[4, 0, 0] = 2
    with pytest.raises(SarDespeckleError, match="0 .unchanged. and 1"):
        check_pair(bad, "x")
    with pytest.raises(SarDespeckleError, match="VV1, VH1, VV2, VH2, label"):
        check_pair(np.ones((4, 8, 8), np.float32), "x")
    with pytest.raises(ConfigError, match="matches no file"):
        config_from_dict({"model": {"architecture": "change_attention"}, "train": {"mode": "change"},
                          "data": {"train": [{"path": str(tmp_path / "none*.mat"), "kind": "change_pair"}]}},
                         ROOT, "x")
    with pytest.raises(ConfigError, match="trains the 'change_attention' architecture"):
        config_from_dict({"model": {"architecture": "log_residual"}, "train": {"mode": "change"},
                          "data": {"train": [{"synthetic": 1}], "validation": [{"synthetic": 1}]}}, ROOT, "x")


def test_tiny_change_run_learns_synthetic_changes_and_exports_a_change_card(tmp_path):
    cfg = tiny_change_config()
    task = make_task(cfg)
    torch.manual_seed(cfg.train.seed)
    before = task.validate(task.build_model(), torch.device("cpu"))
    model = train(cfg, str(tmp_path / "run"), log=silent)
    after = task.validate(model, torch.device("cpu"))
    assert after["loss"] < 0.8 * before["loss"]
    assert after["kappa"] > before["kappa"] + 0.2
    card_path = export(str(tmp_path / "run" / "best.pt"), "tiny_change", str(tmp_path / "models"))
    loaded = load_model(card_path, "cpu", input_kind="dual_pol_pair")
    # the card holds the best checkpoint's validation kappa: at least the last epoch's
    assert loaded.card.input_kind == "dual_pol_pair" and loaded.card.metrics["kappa"] >= after["kappa"] - 1e-9
    assert loaded.card.macs_per_pixel > 0 and loaded.card.receptive_radius == 4
    # a change card is neither a despeckling network nor listed among them
    with pytest.raises(SarDespeckleError, match="is a change detector"):
        load_model(card_path, "cpu", input_kind="intensity")
    assert list_model_cards(str(tmp_path / "models"), input_kind="intensity") == []
    assert list_model_cards(str(tmp_path / "models"), input_kind="dual_pol_pair") == [card_path]


def test_change_scores_on_known_masks():
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    perfect = change_scores(truth, truth)
    assert perfect["kappa"] == 1 and perfect["f1"] == 1 and perfect["oa"] == 1
    one_false_alarm = change_scores(np.array([1, 1, 1, 0, 0, 0, 0, 0], bool), truth)
    # po = 7/8; pe = (3*2 + 5*6) / 64 = 36/64
    assert one_false_alarm["kappa"] == pytest.approx((7 / 8 - 36 / 64) / (1 - 36 / 64))
    assert one_false_alarm["false_alarms"] == 1 and one_false_alarm["missed_alarms"] == 0


# ---------------------------------------------------------------------------------------------
# The learned METHOD


def dual_pol_dates(folder, shape=(96, 112), region=(slice(30, 66), slice(30, 80)), contrast_db=9.0, seed=0,
                   unchanged_dates=1):
    """Dual-pol (VV, VH) dates, 5 looks: ``unchanged_dates`` of one scene, then one with a strong
    backscatter change in ``region``."""
    rng = np.random.default_rng(seed)
    vv = piecewise_scene(*shape, seed=seed)
    clean = np.stack([vv, 0.2 * vv])
    changed = clean.copy()
    changed[:, region[0], region[1]] *= 10 ** (contrast_db / 10)
    paths = []
    for t, scene in enumerate([clean] * unchanged_dates + [changed]):
        bands = (scene * rng.gamma(5, 1 / 5, scene.shape)).astype(np.float32)
        paths.append(write_geotiff(str(folder / f"dual{t + 1}.tif"), bands, descriptions=("VV", "VH")))
    truth = np.zeros(shape, bool)
    truth[region] = True
    return paths, truth


@needs_shipped
def test_shipped_detector_finds_a_strong_change_and_tiles_do_not_matter(tmp_path):
    paths, truth = dual_pol_dates(tmp_path)
    masks = []
    for tile in (None, 32):
        outputs = ChangeOutputs(str(tmp_path / f"map{tile}.tif"), str(tmp_path / f"mask{tile}.tif"))
        report = detect_changes(paths, outputs, ChangeSettings(method="learned", layout="dual", tile=tile), QUIET)
        masks.append(read_geotiff(outputs.change_mask)[0])
        probability = read_geotiff(outputs.change_map)[0]
        assert np.all((probability >= 0) & (probability <= 1))
    assert report.detector["name"] == "learned" and report.detector["model"] == "change_default"
    np.testing.assert_array_equal(masks[0], masks[1])
    assert change_scores(masks[0] == 1, truth)["kappa"] > 0.8


@needs_shipped
def test_learned_detector_dates_the_change_in_a_three_date_stack(tmp_path):
    paths, truth = dual_pol_dates(tmp_path, seed=1, unchanged_dates=2)
    outputs = ChangeOutputs(change_mask=str(tmp_path / "mask.tif"), change_date=str(tmp_path / "date.tif"))
    detect_changes(paths, outputs, ChangeSettings(method="learned", layout="dual"), QUIET)
    mask, date = read_geotiff(outputs.change_mask)[0], read_geotiff(outputs.change_date)[0]
    assert change_scores(mask == 1, truth)["kappa"] > 0.8
    assert np.mean(date[mask == 1] == 3) > 0.95 and (date[mask == 0] == 0).all()


@needs_shipped
def test_learned_method_through_processing_and_its_refusals(qgis_processing, tmp_path):
    from sar_despeckle_plugin.core.choices import CHANGE_METHOD_LABELS

    learned = list(CHANGE_METHOD_LABELS).index("learned")
    paths, truth = dual_pol_dates(tmp_path, seed=2)
    result = qgis_processing.run("sar_despeckle:change_detection", {
        "INPUTS": paths, "METHOD": learned, "BAND_LAYOUT": 1,
        "CHANGE_MAP": str(tmp_path / "map.tif"), "CHANGE_MASK": str(tmp_path / "mask.tif"),
    })
    mask = read_geotiff(result["CHANGE_MASK"])[0]
    assert change_scores(mask == 1, truth)["kappa"] > 0.8
    single = [write_geotiff(str(tmp_path / f"single{t}.tif"), read_geotiff(p)[0]) for t, p in enumerate(paths)]
    outputs = {"CHANGE_MAP": str(tmp_path / "m2.tif"), "CHANGE_MASK": str(tmp_path / "k2.tif")}
    assert_refused_without_output(qgis_processing, "sar_despeckle:change_detection",
                                  {"INPUTS": single, "METHOD": learned, "MODEL": SHIPPED, **outputs}, tmp_path,
                                  "reads dual-pol dates, but Band layout .* is single")
    despeckler = os.path.join(os.path.dirname(SHIPPED), "sarcnn_default.json")
    assert_refused_without_output(qgis_processing, "sar_despeckle:change_detection",
                                  {"INPUTS": paths, "METHOD": learned, "BAND_LAYOUT": 1, "MODEL": despeckler,
                                   **outputs}, tmp_path, "not a change detector")
