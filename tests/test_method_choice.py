"""METHOD = Automatic and conditioned networks: the choice for given looks, correlation and model
cards (pure function), the card fields that drive it, the looks reaching conditioned networks
(and not the others), the training hook, and the default METHOD through qgis_process."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.choices import AUTOMATIC_METHOD_LABEL, SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle.choice import (
    CLASSICAL_CHOICE, WHITE_NETWORK_TOLERANCE, best_classical, choose_method, measure_correlation,
)
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import ModelCard, read_card, read_model_cards
from tests.synthetic import write_geotiff

SHIPPED_CARD = os.path.join(SHIPPED_WEIGHTS, "sarcnn_default.json")


def card(name="net", looks=1.0, looks_range=None, max_correlation=0.1, speckle_model="white", conditioning="none"):
    return ModelCard(name=name, architecture="log_residual", hyperparameters={}, looks=looks,
                     looks_range=looks_range, max_correlation=max_correlation, speckle_model=speckle_model,
                     conditioning=conditioning)


# -- the choice (pure function) ---------------------------------------------------------------


def test_table_covers_white_and_correlated_speckle():
    kinds = {(row.correlated, row.looks) for row in CLASSICAL_CHOICE}
    assert any(not c for c, _ in kinds) and any(c for c, _ in kinds)
    assert all(row.psnr > row.runner_up_psnr for row in CLASSICAL_CHOICE)


def test_one_look_white_speckle_takes_the_shipped_network():
    shipped = read_card(SHIPPED_CARD)
    choice = choose_method(1.05, (0.02, -0.01), [("other.json", card("other", 1.0)), (SHIPPED_CARD, shipped)])
    assert choice.model_card == SHIPPED_CARD and choice.method == "sarcnn_default" and choice.window is None
    assert "using network sarcnn_default: 1 look, white speckle" in choice.reason


@pytest.mark.parametrize("looks", [1.0, 2.0, 4.0, 8.0])
def test_white_speckle_outside_every_card_takes_the_measured_best(looks):
    shipped = read_card(SHIPPED_CARD)
    correlation = (0.01, 0.0)
    choice = choose_method(looks, correlation, [(SHIPPED_CARD, shipped)] if looks > 1.5 else [])
    best = best_classical(looks, correlated=False)
    assert best.correlated is False
    assert (choice.method, choice.window, choice.model_card) == (best.method, best.window, None)
    assert f"using {best.method}, window {best.window}, the best classical filter measured" in choice.reason


def test_correlated_multilook_speckle_takes_the_correlated_row():
    shipped = read_card(SHIPPED_CARD)
    choice = choose_method(4.3, (0.68, 0.72), [(SHIPPED_CARD, shipped)])
    best = best_classical(4.3, correlated=True)
    assert best.correlated and (choice.method, choice.window) == (best.method, best.window)
    assert choice.reason.startswith("METHOD automatic: input 4.30 looks (estimated), speckle lag-1 correlation "
                                    "0.68 / 0.72 (rows / cols): no network's model card covers it "
                                    "(sarcnn_default: 1 look, white speckle); using ")
    assert "scripts/bench_classical_choice.py" in choice.reason


def test_correlation_alone_rules_a_network_out():
    """A 1-look network does not take 1-look speckle that is correlated."""
    choice = choose_method(1.0, (0.05, 0.4), [(SHIPPED_CARD, read_card(SHIPPED_CARD))])
    assert choice.model_card is None and best_classical(1.0, True).method == choice.method


def test_a_network_serves_only_the_kind_of_speckle_it_was_trained_on():
    """A network trained on correlated (GRDH-like) speckle does not take white speckle of the same
    looks, nor speckle more correlated than it was trained for; a white one no correlated."""
    grdh = card("grdh", looks=4.5, max_correlation=0.74, speckle_model="sentinel1_iw_grdh")
    white = card("white4", looks=4.5)
    cards = [("grdh.json", grdh), ("white4.json", white)]
    assert choose_method(4.5, (0.70, 0.75), cards).model_card == "grdh.json"  # within the margin
    assert choose_method(4.5, (0.70, 0.85), cards).model_card is None
    assert choose_method(4.5, (0.02, 0.01), cards).model_card == "white4.json"
    assert choose_method(4.5, (0.02, 0.01), [("grdh.json", grdh)]).model_card is None


def test_mildly_correlated_single_look_speckle_keeps_the_white_network():
    """An oversampled SLC's speckle (lag-1 about 0.2): no correlated network covers 1 look, and
    the white-trained network beats every classical filter there (23.51 against 21.39 dB)."""
    shipped = read_card(SHIPPED_CARD)
    mild = choose_method(1.0, (0.22, 0.05), [(SHIPPED_CARD, shipped)], lag2=(0.01, 0.0))
    assert mild.model_card == SHIPPED_CARD and "still beats every classical filter" in mild.reason
    strong = choose_method(1.0, (0.40, 0.05), [(SHIPPED_CARD, shipped)], lag2=(0.01, 0.0))
    assert strong.model_card is None


def slc_card():
    return card("slc", looks=1.0, looks_range=[1.0, 2.78], max_correlation=0.38,
                speckle_model="sentinel1_iw_slc + stripmap_slc", conditioning="looks")


def test_correlated_single_look_speckle_takes_a_network_trained_on_slc_speckle():
    """A Sentinel-1 SLC's intensity (lag-1 0.33 / 0.24) went to Kuan, an oversampled stripmap
    SLC's (0.2) to the white network: a card trained on SLC-like correlation serves both."""
    shipped = read_card(SHIPPED_CARD)
    cards = [(SHIPPED_CARD, shipped), ("slc.json", slc_card())]
    s1 = choose_method(1.1, (0.33, 0.24), cards, lag2=(-0.02, -0.02))
    assert s1.model_card == "slc.json" and "slc: 1-2.78 looks, sentinel1_iw_slc + stripmap_slc speckle" in s1.reason
    assert choose_method(1.1, (0.22, 0.05), cards, lag2=(0.01, 0.0)).model_card == "slc.json"
    assert choose_method(1.0, (0.02, 0.01), cards).model_card == SHIPPED_CARD  # white: the default
    assert choose_method(1.1, (0.60, 0.50), cards, lag2=(0.1, 0.1)).model_card is None  # beyond 0.38 + 0.05


def test_networks_chosen_for_correlated_speckle_keep_point_targets():
    """An SLC or GRD as delivered (correlated speckle) is where targets are measured: the network
    chosen for it keeps them, and the log says so; on white speckle, or when a classical filter
    runs, Automatic leaves them to POINT_TARGETS."""
    shipped = read_card(SHIPPED_CARD)
    cards = [(SHIPPED_CARD, shipped), ("slc.json", slc_card())]
    slc = choose_method(1.1, (0.33, 0.24), cards, lag2=(-0.02, -0.02))
    assert slc.model_card == "slc.json" and slc.keep_point_targets
    assert "point targets (more than 20 dB over their surroundings" in slc.reason
    mild = choose_method(1.0, (0.22, 0.05), [(SHIPPED_CARD, shipped)], lag2=(0.01, 0.0))  # rule 2, white network
    assert mild.model_card == SHIPPED_CARD and mild.keep_point_targets
    white = choose_method(1.0, (0.02, 0.01), cards)
    assert white.model_card == SHIPPED_CARD and not white.keep_point_targets and "point targets" not in white.reason
    classical = choose_method(1.1, (0.60, 0.50), cards, lag2=(0.1, 0.1))
    assert classical.model_card is None and not classical.keep_point_targets


def test_mild_correlation_bound_moves_mild_speckle_between_slc_and_white_networks():
    """Change detection's prefilter asks networks trained on SLC-like correlation to take only
    speckle past WHITE_NETWORK_TOLERANCE: own lag-1 0.2 then goes to the white network."""
    cards = [(SHIPPED_CARD, read_card(SHIPPED_CARD)), ("slc.json", slc_card())]
    mild = dict(correlation=(0.22, 0.05), lag2=(0.01, 0.0))
    assert choose_method(1.0, mild["correlation"], cards, lag2=mild["lag2"]).model_card == "slc.json"
    kept_white = choose_method(1.0, mild["correlation"], cards, lag2=mild["lag2"],
                               mild_correlation=WHITE_NETWORK_TOLERANCE)
    assert kept_white.model_card == SHIPPED_CARD
    strong = choose_method(1.1, (0.33, 0.24), cards, lag2=(-0.02, -0.02), mild_correlation=WHITE_NETWORK_TOLERANCE)
    assert strong.model_card == "slc.json"  # an S1 SLC's correlation is past the bound either way


def test_the_closest_correlated_card_wins_and_grd_cards_leave_mild_correlation():
    """Where a GRD network (trained up to lag-1 0.93) and an SLC network both cover the input, the
    one trained on the weaker correlation runs, in whatever order they come; mildly correlated
    speckle goes to the SLC network or, without it, to the white network, never to the GRD one."""
    grdh = dataclasses.replace(card("grdh", looks=4.5, max_correlation=0.93, speckle_model="sentinel1_iw_grdh",
                                    conditioning="looks"), looks_range=(2.83, 10.0))
    white = dataclasses.replace(card("looks", looks=4.0), looks_range=(1.0, 16.0))
    for cards in ([("grdh.json", grdh), ("slc.json", slc_card())], [("slc.json", slc_card()), ("grdh.json", grdh)]):
        assert choose_method(2.8, (0.34, 0.04), cards, lag2=(-0.02, -0.01)).model_card == "slc.json"  # S1 SLC 4 x 1
        assert choose_method(4.8, (0.72, 0.75), cards, lag2=(0.30, 0.43)).model_card == "grdh.json"  # a GRDH
    mild = (0.22, 0.05), (0.01, 0.0)
    assert choose_method(2.5, mild[0], [("grdh.json", grdh), ("looks.json", white)], lag2=mild[1]).model_card == "looks.json"
    assert choose_method(2.5, mild[0], [("grdh.json", grdh), ("slc.json", slc_card())], lag2=mild[1]).model_card == "slc.json"


def test_looks_tolerance_and_range():
    one = card(looks=1.0)
    assert choose_method(1.2, (0, 0), [("a.json", one)]).model_card == "a.json"
    assert choose_method(1.3, (0, 0), [("a.json", one)]).model_card is None
    ranged = card("ranged", looks=3.0, looks_range=[1.0, 16.0], conditioning="looks")
    for looks in (1.0, 4.4, 19.0):
        assert choose_method(looks, (0.0, 0.0), [("r.json", ranged)]).model_card == "r.json"
    assert choose_method(21.0, (0.0, 0.0), [("r.json", ranged)]).model_card is None


def test_the_shipped_default_is_tried_first_then_the_order_given():
    wide = card("wide", looks=2.0, looks_range=[1.0, 8.0], conditioning="looks")
    default = card("sarcnn_default")
    assert choose_method(1.0, (0, 0), [("w.json", wide), ("d.json", default)]).model_card == "d.json"
    assert choose_method(2.0, (0, 0), [("w.json", wide), ("d.json", default)]).model_card == "w.json"
    grdh = card("grdh", looks=4.5, looks_range=[3.0, 6.0], max_correlation=0.75, speckle_model="sentinel1_iw_grdh")
    choice = choose_method(4.3, (0.68, 0.72), [("w.json", wide), ("g.json", grdh)])
    assert choice.model_card == "g.json"
    assert "grdh: 3-6 looks, sentinel1_iw_grdh speckle, lag-1 up to 0.75" in choice.reason


def test_unmeasurable_correlation_counts_as_white_and_says_so():
    choice = choose_method(1.0, None, [(SHIPPED_CARD, read_card(SHIPPED_CARD))])
    assert choice.model_card == SHIPPED_CARD and "not measurable" in choice.reason


def test_measured_correlation_of_white_and_averaged_speckle():
    rng = np.random.default_rng(0)
    white = rng.exponential(1.0, (256, 256))
    (rows, cols), lag2 = measure_correlation([white], [np.ones_like(white, bool)])
    assert abs(rows) < 0.05 and abs(cols) < 0.05 and max(map(abs, lag2)) < 0.05
    averaged = two_by_two(rng, 256, 256)
    (rows, cols), lag2 = measure_correlation([averaged[:128], averaged[128:]], [np.ones((128, 256), bool)] * 2)
    assert 0.4 < rows < 0.6 and 0.4 < cols < 0.6 and max(map(abs, lag2)) < 0.05


def test_scene_texture_does_not_make_white_speckle_correlated():
    """Weak (16-look) white speckle over a textured scene: lag 1 and lag 2 both carry the
    texture; the speckle's own part (lag 1 - lag 2) is white, so the white network serves it.
    Sentinel-1 GRDH's lag 1 / 2 (0.72 / 0.30) stays correlated."""
    looks_net = card("looks", looks=4.0, looks_range=[1.0, 16.0])
    texture = choose_method(16.0, (0.195, 0.207), [("l.json", looks_net)], lag2=(0.136, 0.192))
    assert texture.model_card == "l.json" and "scene texture" in texture.reason
    grdh = choose_method(4.5, (0.72, 0.75), [("l.json", looks_net)], lag2=(0.30, 0.43))
    assert grdh.model_card is None and "correlated speckle" in grdh.reason


# -- card fields ---------------------------------------------------------------------------------


def test_cards_without_the_new_fields_read_their_defaults():
    shipped = read_card(SHIPPED_CARD)
    assert shipped.looks_range == [1.0, 1.0] and shipped.max_correlation == 0.1
    assert shipped.speckle_model == "white" and shipped.conditioning == "none"


@pytest.mark.parametrize("field, value, message", [
    ("looks_range", [4, 2], "field 'looks_range' must be [min, max]"),
    ("looks_range", "1-8", "field 'looks_range' must be [min, max]"),
    ("max_correlation", 1.5, "field 'max_correlation' must be a number in [0, 1]"),
    ("speckle_model", "", "field 'speckle_model' must be a non-empty"),
    ("conditioning", "noise", "field 'conditioning' must be one of 'none', 'looks'"),
])
def test_new_card_fields_are_checked(tmp_path, field, value, message):
    record = json.loads(open(SHIPPED_CARD, encoding="utf-8").read())
    record[field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record))
    with pytest.raises(SarDespeckleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_card(str(path))


def test_new_card_fields_round_trip(tmp_path):
    written = card("ranged", looks=3.0, looks_range=[1.0, 16.0], max_correlation=0.7,
                   speckle_model="sentinel1_iw_grdh", conditioning="looks")
    written = dataclasses.replace(written, sha256="0" * 64, weights_file="ranged.pt")
    path = tmp_path / "ranged.json"
    path.write_text(written.to_json())
    read = read_card(str(path))
    assert (read.looks_range, read.max_correlation, read.speckle_model, read.conditioning) == (
        [1.0, 16.0], 0.7, "sentinel1_iw_grdh", "looks")


# -- conditioning: the architecture and the inference path ---------------------------------------


def test_unconditioned_architecture_keeps_the_shipped_state_dict_and_ignores_looks():
    from sar_despeckle_plugin.core.models.weights import load_model

    loaded = load_model(SHIPPED_CARD)
    assert not loaded.module.conditioned and "condition_channels" not in loaded.module.hyperparameters
    image = torch.from_numpy(np.random.default_rng(1).exponential(1.0, (1, 1, 48, 48)).astype(np.float32))
    valid = torch.ones_like(image, dtype=torch.bool)
    base = loaded.despeckle(image, valid, 1.0)
    for looks in (1.0, 4.0, 16.0):
        torch.testing.assert_close(loaded.despeckle(image, valid, 1.0, looks=looks), base, rtol=0, atol=0)


def conditioned_net():
    from sar_despeckle_plugin.core.models.registry import build_model

    torch.manual_seed(0)
    return build_model("log_residual", widths=[8, 8], convs_per_level=1, looks=2.0, condition_channels=1).eval()


def test_condition_map_is_the_log_speckle_std_and_reaches_the_network():
    net = conditioned_net()
    seen = []
    net.encoder.stem[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    image = torch.full((2, 1, 20, 20), 0.7)
    with torch.no_grad():
        net.despeckle(image, 0.7, looks=torch.tensor([1.0, 8.0]))
    (first,) = seen
    assert first.shape == (2, 2, 20, 20)
    expected = [math.sqrt(float(torch.special.polygamma(1, torch.tensor(v, dtype=torch.float64)))) / net.log_scale
                for v in (1.0, 8.0)]
    for item, value in enumerate(expected):
        assert torch.allclose(first[item, 1], torch.full((20, 20), value), atol=1e-6)
    assert expected[0] == pytest.approx(1.2825 / 2, abs=1e-3)
    # the input is debiased with each item's own looks
    bias = [float(torch.special.digamma(torch.tensor(v)) - math.log(v)) for v in (1.0, 8.0)]
    for item, value in enumerate(bias):
        assert torch.allclose(first[item, 0], torch.full((20, 20), -value / net.log_scale), atol=1e-5)


def test_pipeline_passes_the_looks_to_a_conditioned_network(tmp_path, monkeypatch):
    from sar_despeckle_plugin.core import accelerate
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
    from sar_despeckle_plugin.core.feedback import Feedback
    from sar_despeckle_plugin.core.models.card import ModelCard as Card
    from sar_despeckle_plugin.core.models.weights import save_model
    from tests.synthetic import read_geotiff

    monkeypatch.setenv(accelerate.FLOAT32_VARIABLE, "1")  # compared with the float32 network below
    net = conditioned_net()
    path = save_model(net, Card(name="cond", architecture="log_residual", hyperparameters={},
                                looks_range=[1.0, 8.0]), str(tmp_path))
    written = read_card(path)
    assert written.conditioning == "looks" and written.looks_range == [1.0, 8.0]
    image = np.random.default_rng(2).exponential(1.0, (1, 40, 40)).astype(np.float32)
    source = str(tmp_path / "in.tif")
    write_geotiff(source, image)
    lines = []
    outputs = {}
    for looks in (2.0, 6.0):
        out = str(tmp_path / f"out{looks:g}.tif")
        settings = DespeckleSettings(model_card=path, looks=looks, self_ensemble=False, keep_point_targets=False,
                                     units="intensity")
        despeckle_raster(source, out, settings, Feedback(info=lines.append))
        outputs[looks] = read_geotiff(out)[0]
        intensity = torch.from_numpy(image[None])
        with torch.no_grad():
            direct = net.despeckle(intensity, float(np.median(image)), looks=looks)[0, 0].numpy()
        inner = slice(net.receptive_radius, -net.receptive_radius)  # the tiles see fill beyond the edges
        np.testing.assert_allclose(outputs[looks][inner, inner], direct[inner, inner], rtol=2e-4)
    assert not np.allclose(outputs[2.0], outputs[6.0])
    assert any("conditioned on the looks: it reads 2.00 look(s)" in line for line in lines)


def shipped_conditioned_cards():
    return [(p, c) for p, c in read_model_cards(SHIPPED_WEIGHTS, "intensity") if c.conditioning == "looks"]


@pytest.mark.skipif(not shipped_conditioned_cards(), reason="no conditioned network is shipped yet")
@pytest.mark.parametrize("index", range(len(shipped_conditioned_cards())))
def test_conditioned_network_smooths_less_as_the_looks_grow(index):
    """A trained conditioned network removes less as the looks it is told grow: on one image
    speckled as the network was trained (white 2-look speckle; a GRDH preset for networks of
    correlated speckle), the ratio image's log spread shrinks monotonically with L over the
    card's range."""
    from sar_despeckle_plugin.core.models.weights import load_model
    from training.speckle_model import PRESETS

    path, found = shipped_conditioned_cards()[index]
    loaded = load_model(path)
    rng = np.random.default_rng(3)
    clean = np.repeat(np.repeat(rng.uniform(0.2, 2.0, (8, 8)), 16, 0), 16, 1)
    speckled = (clean * rng.gamma(2.0, 0.5, clean.shape) if found.white
                else PRESETS[found.speckle_model.split(" + ")[0]].apply(clean, rng))
    noisy = torch.from_numpy(speckled.astype(np.float32))[None, None]
    valid = torch.ones_like(noisy, dtype=torch.bool)
    low, high = found.looks_range
    ladder = [v for v in (1.0, 2.0, 4.0, 8.0, 16.0) if low <= v <= high] or [low, high]
    spread = []
    for looks in ladder:
        estimate = loaded.despeckle(noisy, valid, float(noisy.median()), looks=looks)
        spread.append(float((noisy.log() - estimate.log()).std()))
    assert all(a > b for a, b in zip(spread, spread[1:])), spread


# -- training: the dataset hook --------------------------------------------------------------------


def test_supervised_patches_return_the_looks_drawn():
    from training.config import DataConfig, SourceConfig
    from training.data import TrainingPatches, speckle_with_looks
    from training.sources import load_sources
    from training.speckle_model import model_from_config

    sets = load_sources([SourceConfig(synthetic=2, side=64, seed=1)], "supervised", "train")
    data = DataConfig(looks=[1.0, 8.0], patch=32, samples_per_epoch=8)
    data.speckle_model = model_from_config("", [1.0, 8.0])
    patches = TrainingPatches("supervised", sets, data, seed=0)
    looks = [float(patches[i]["looks"]) for i in range(8)]
    assert all(1.0 <= v <= 8.0 for v in looks) and len(set(looks)) == 8
    fixed = model_from_config("", 4.0)
    clean = np.full((16, 16), 2.0, np.float32)
    noisy, drawn = speckle_with_looks(fixed, clean, np.random.default_rng(5))
    np.testing.assert_array_equal(noisy, fixed.apply(clean, np.random.default_rng(5)))
    assert drawn == 4.0
    grdh = model_from_config("sentinel1_iw_grdh", 1.0)
    _, enl = speckle_with_looks(grdh, clean, np.random.default_rng(5))
    assert 4.2 < enl < 4.8


# -- through qgis_process -------------------------------------------------------------------------


def two_by_two(rng, rows, cols):
    z = (rng.standard_normal((rows + 1, cols + 1)) + 1j * rng.standard_normal((rows + 1, cols + 1))) * math.sqrt(0.5)
    single = np.abs(z) ** 2
    return 0.25 * (single[:-1, :-1] + single[1:, :-1] + single[:-1, 1:] + single[1:, 1:])


def scene(rows, cols):
    y, x = np.mgrid[:rows, :cols]
    return np.where((x // 48 + y // 48) % 2 == 0, 1.0, 4.0)


@pytest.fixture()
def white_one_look_tif(tmp_path):
    path = str(tmp_path / "white1.tif")
    rng = np.random.default_rng(11)
    write_geotiff(path, (scene(192, 192) * rng.exponential(1.0, (192, 192))).astype(np.float32)[None])
    return path


@pytest.fixture()
def correlated_four_look_tif(tmp_path):
    path = str(tmp_path / "corr4.tif")
    rng = np.random.default_rng(12)
    write_geotiff(path, (scene(192, 192) * two_by_two(rng, 192, 192)).astype(np.float32)[None])
    return path


@pytest.fixture()
def correlated_two_look_tif(tmp_path):
    """Two horizontally neighbouring 1-look samples averaged: about 2 looks, correlated along
    columns (lag-1 0.5); no specialist is trained for it."""
    path = str(tmp_path / "corr2.tif")
    rng = np.random.default_rng(13)
    single = rng.exponential(1.0, (192, 193))
    write_geotiff(path, (scene(192, 192) * 0.5 * (single[:, :-1] + single[:, 1:])).astype(np.float32)[None])
    return path


@pytest.fixture()
def beyond_every_card_tif(tmp_path):
    """Two horizontally neighbouring 30-look samples averaged: about 60 looks, lag-1 0.5 along
    columns; more looks than any shipped network of correlated speckle was trained for."""
    path = str(tmp_path / "corr60.tif")
    rng = np.random.default_rng(15)
    many = rng.gamma(30.0, 1 / 30, (192, 193))
    write_geotiff(path, (scene(192, 192) * 0.5 * (many[:, :-1] + many[:, 1:])).astype(np.float32)[None])
    return path


@pytest.fixture()
def sentinel1_slc_tif(tmp_path):
    """A Sentinel-1 IW SLC's intensity as delivered: one look, speckle correlated by the
    oversampling (the sentinel1_iw_slc speckle model, lag-1 about 0.38 / 0.29)."""
    path = str(tmp_path / "s1slc.tif")
    from training.speckle_model import PRESETS

    speckled = PRESETS["sentinel1_iw_slc"].apply(scene(192, 192), np.random.default_rng(14))
    write_geotiff(path, speckled.astype(np.float32)[None])
    return path


def run_log(qgis_process, *args):
    done = qgis_process("run", "sar_despeckle:despeckle", *args)
    return done.stdout + done.stderr


def test_qgis_process_default_method_fits_the_input(qgis_process, white_one_look_tif, correlated_four_look_tif,
                                                    sentinel1_slc_tif, correlated_two_look_tif, beyond_every_card_tif,
                                                    tmp_path):
    from sar_despeckle_plugin.core.raster import raster_info

    out = str(tmp_path / "white_out.tif")
    log = run_log(qgis_process, f"--INPUT={white_one_look_tif}", f"--OUTPUT={out}")
    assert "Method (METHOD) automatic: input" in log and "using network sarcnn_default: 1 look, white speckle" in log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "sarcnn_default"

    out = str(tmp_path / "corr_out.tif")
    log = run_log(qgis_process, f"--INPUT={correlated_four_look_tif}", f"--OUTPUT={out}")
    assert "using network sarcnn_products: " in log, log  # a product no specialist was trained for
    assert "also reads the speckle's lag-1 autocorrelation (rows / cols): 0.4" in log, log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "sarcnn_products"

    out = str(tmp_path / "slc_out.tif")
    log = run_log(qgis_process, f"--INPUT={sentinel1_slc_tif}", f"--OUTPUT={out}")
    assert "using network sarcnn_slc: 1-2.779 looks" in log, log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "sarcnn_slc"

    out = str(tmp_path / "corr2_out.tif")
    log = run_log(qgis_process, f"--INPUT={correlated_two_look_tif}", f"--OUTPUT={out}")
    assert "using network sarcnn_products: " in log, log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "sarcnn_products"

    out = str(tmp_path / "corr60_out.tif")
    log = run_log(qgis_process, f"--INPUT={beyond_every_card_tif}", f"--OUTPUT={out}")
    line = next(line for line in log.splitlines() if "(METHOD) automatic" in line)
    looks = float(line.split("input ")[1].split(" looks")[0])
    best = best_classical(looks, correlated=True)
    assert "no network's model card covers it" in line and f"using {best.method}, window {best.window}" in line, line
    info = raster_info(out)
    assert info.metadata["SAR_DESPECKLE_METHOD"] == best.method
    assert json.loads(info.metadata["SAR_DESPECKLE_PARAMETERS"])["window"] == best.window


def test_qgis_process_explicit_methods_still_work(qgis_process, correlated_four_look_tif, tmp_path):
    from sar_despeckle_plugin.core.raster import raster_info

    help_text = qgis_process("help", "sar_despeckle:despeckle").stdout
    assert f"7 = {AUTOMATIC_METHOD_LABEL}" in help_text.replace("\n", " ") or AUTOMATIC_METHOD_LABEL in help_text
    out = str(tmp_path / "lee.tif")
    log = run_log(qgis_process, f"--INPUT={correlated_four_look_tif}", "--METHOD=1", "--WINDOW=5", f"--OUTPUT={out}")
    assert "(METHOD) automatic" not in log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "lee"
    out = str(tmp_path / "net.tif")
    log = run_log(qgis_process, f"--INPUT={correlated_four_look_tif}", "--METHOD=8", "--LOOKS=1", f"--OUTPUT={out}")
    assert "(METHOD) automatic" not in log
    assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "sarcnn_default"


def test_estimated_looks_of_correlated_speckle_are_read_per_pixel():
    """Correlated speckle: cards are compared with the looks per pixel, the geometric mean of the
    block estimate (too many looks) and the estimate on every second pixel (too few over
    texture). Earth Engine-processed GRDH (4.46 looks) reads 6.2 / 4.8 on a smooth scene, the real
    Sen1Floods11 crop 4.83 / 3.23: both in a 4.5-look card (the first fell to Frost on the block
    estimate alone); a 100 x 100 MTDN patch reads 3.23 / 1.08 (1.87 per pixel): not. Given LOOKS
    are taken as they are; white speckle keeps the block estimate."""
    grdh = card("grdh", looks=4.5, max_correlation=0.815, speckle_model="sentinel1_iw_grdh")
    for block, sparse in ((6.2, 4.8), (4.83, 3.23)):
        chosen = choose_method(block, (0.73, 0.77), [("grdh.json", grdh)], lag2=(0.30, 0.48), per_pixel=sparse)
        assert chosen.model_card == "grdh.json"
        assert (f"input {block:.2f} looks (estimated; {sparse:.2f} on every second pixel, so "
                f"{(block * sparse) ** 0.5:.2f} per pixel, the speckle being correlated)") in chosen.reason
    assert choose_method(6.2, (0.73, 0.77), [("grdh.json", grdh)], lag2=(0.30, 0.48)).model_card is None
    assert choose_method(6.2, (0.73, 0.77), [("grdh.json", grdh)], looks_given=True, lag2=(0.30, 0.48),
                         per_pixel=4.8).model_card is None
    for block, sparse in ((3.23, 1.08), (2.6, 2.1), (13.0, 9.0)):
        assert choose_method(block, (0.73, 0.77), [("grdh.json", grdh)], lag2=(0.30, 0.48),
                             per_pixel=sparse).model_card is None, (block, sparse)
    white = card("white4", looks=4.0)
    assert choose_method(6.2, (0.02, 0.01), [("w.json", white)], per_pixel=4.0).model_card is None


def test_pixel_looks_undo_the_block_estimators_correlation_bias():
    """On product speckle drawn by the training package's Sentinel-1 GRDH presets over a smooth
    scene, the block estimate reads 25-60 % too many looks; per pixel it is within 20 % of the
    model's true ENL (the cards' tolerance is 25 %). On white speckle both agree within 5 %."""
    from sar_despeckle_plugin.core.speckle import estimate_looks, pixel_looks
    from training.speckle_model import PRESETS, multilook_white, true_statistics

    rows, cols = np.mgrid[0:384, 0:384]
    scene = 1.0 + 0.5 * np.sin(rows / 40.0) * np.cos(cols / 55.0)
    valid = np.ones(scene.shape, bool)
    for name in ("sentinel1_iw_grdh", "sentinel1_iw_grdh_ee"):
        model = PRESETS[name]
        truth = true_statistics(model)["looks"]
        for seed in (3, 4):
            intensity = model.apply(scene, np.random.default_rng(seed))
            block = estimate_looks([intensity], [valid])
            per_pixel = pixel_looks([intensity], [valid])
            assert block > 1.2 * truth and abs(per_pixel / truth - 1) < 0.2, (name, seed, block, per_pixel, truth)
    white = multilook_white(4.0).apply(scene, np.random.default_rng(4))
    assert abs(pixel_looks([white], [valid]) / estimate_looks([white], [valid]) - 1) < 0.05


def test_mildly_correlated_multi_look_speckle_goes_to_the_white_networks():
    """Block-averaged single-look crops have mildly correlated speckle (own lag-1 part 0.1-0.25):
    a network trained on GRDH-like speckle over-smooths it; the white looks network takes it."""
    grdh = card("grdh", looks=4.5, max_correlation=0.93, speckle_model="sentinel1_iw_grdh")
    grdh = dataclasses.replace(grdh, looks_range=(2.8, 10.0))
    white = dataclasses.replace(card("looks", looks=4.0), looks_range=(1.0, 16.0))
    cards = [("grdh.json", grdh), ("looks.json", white)]
    mild = choose_method(2.65, (0.15, 0.07), cards, lag2=(0.04, 0.03), per_pixel=2.1)  # Envisat 2 x 2
    assert mild.model_card == "looks.json" and "still beats every classical filter" in mild.reason
    strong = choose_method(4.83, (0.72, 0.75), cards, lag2=(0.30, 0.43), per_pixel=3.23)  # the GRDH crop
    assert strong.model_card == "grdh.json"
    # an own lag-1 part of 0.11 is below MILD_CORRELATION: not for the SLC network either
    with_slc = [*cards, ("slc.json", slc_card())]
    assert choose_method(2.65, (0.15, 0.07), with_slc, lag2=(0.04, 0.03), per_pixel=2.1).model_card == "looks.json"
    assert choose_method(1.0, (0.25, 0.04), with_slc, lag2=(0.02, 0.02)).model_card == "slc.json"  # Envisat
