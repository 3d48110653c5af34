"""Networks conditioned on the speckle's correlation (``condition_channels = 3``): the maps they
read, growing one from a looks-conditioned network, the random product family they train on, the
correlation each training patch carries, and the pipeline measuring it on the input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import ModelCard, read_card, read_model_cards
from tests.synthetic import read_geotiff, write_geotiff


def correlation_net(seed: int = 0):
    from sar_despeckle_plugin.core.models.registry import build_model

    torch.manual_seed(seed)
    return build_model("log_residual", widths=[8, 8], convs_per_level=1, looks=2.0, condition_channels=3).eval()


def stem_inputs(net):
    seen = []
    net.encoder.stem[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    return seen


def test_condition_maps_are_the_looks_level_and_the_clipped_correlations():
    net = correlation_net()
    seen = stem_inputs(net)
    image = torch.full((2, 1, 20, 20), 0.7)
    with torch.no_grad():
        net.despeckle(image, 0.7, looks=torch.tensor([1.0, 8.0]), correlation=torch.tensor([[0.3, 0.6], [-0.1, 1.2]]))
        net.despeckle(image[:1], 0.7, looks=4.0)
    first, white = seen
    assert first.shape == (2, 4, 20, 20)
    level = math.sqrt(float(torch.special.polygamma(1, torch.tensor(8.0, dtype=torch.float64)))) / net.log_scale
    assert torch.allclose(first[1, 1], torch.full((20, 20), level), atol=1e-6)
    for item, (rows, cols) in enumerate([(0.3, 0.6), (0.0, 0.95)]):  # clipped to [0, MAX_CORRELATION]
        assert torch.allclose(first[item, 2], torch.full((20, 20), rows))
        assert torch.allclose(first[item, 3], torch.full((20, 20), cols))
    assert white.shape == (1, 4, 20, 20) and not white[0, 2:].any()  # no correlation given: white speckle


def test_correlation_changes_the_output_and_other_networks_ignore_it():
    net = correlation_net()
    with torch.no_grad():  # a random network's new channels are not zero
        image = torch.from_numpy(np.random.default_rng(1).exponential(1.0, (1, 1, 32, 32)).astype(np.float32))
        white = net.despeckle(image, 1.0, looks=2.0)
        correlated = net.despeckle(image, 1.0, looks=2.0, correlation=(0.6, 0.4))
    assert not torch.allclose(white, correlated)
    assert net.reads_correlation and net.hyperparameters["condition_channels"] == 3
    with pytest.raises(ValueError, match="condition_channels"):
        from sar_despeckle_plugin.core.models.registry import build_model

        build_model("log_residual", widths=[8, 8], condition_channels=2)


def test_a_looks_conditioned_network_grows_into_one_that_reads_the_correlation(tmp_path):
    """Fine-tuning starts from a looks-conditioned card: its stem's two new input channels
    start at zero, so the grown network gives the card's output whatever correlation it reads."""
    from sar_despeckle_plugin.core.models.registry import build_model
    from sar_despeckle_plugin.core.models.weights import save_model
    from training.trainer import initialise_from

    torch.manual_seed(4)
    looks_net = build_model("log_residual", widths=[8, 8], convs_per_level=1, looks=2.0, condition_channels=1).eval()
    path = save_model(looks_net, ModelCard(name="looks_net", architecture="log_residual", hyperparameters={},
                                           looks_range=[1.0, 8.0]), str(tmp_path))
    grown = correlation_net(seed=9)
    assert "initialised" in initialise_from(grown, path)
    image = torch.from_numpy(np.random.default_rng(2).exponential(1.0, (1, 1, 32, 32)).astype(np.float32))
    with torch.no_grad():
        expected = looks_net.despeckle(image, 1.0, looks=3.0)
        for correlation in ((0.0, 0.0), (0.7, 0.5)):
            torch.testing.assert_close(grown.despeckle(image, 1.0, looks=3.0, correlation=correlation), expected)


# -- the training family ----------------------------------------------------------------------------


def test_random_products_are_reproducible_products_and_white_speckle_within_the_looks_span():
    from training.speckle_model import FAMILY_LOOKS, PRESETS, random_products, true_statistics

    family = random_products(count=12, seed=3)
    assert family == random_products(count=12, seed=3) and family != random_products(count=12, seed=4)
    products = [m for m in family.components if not m.white]
    white = [m for m in family.components if m.white]
    presets = [m for m in PRESETS.values() if not m.white]
    assert products[:len(presets)] == presets and len(products) == len(presets) + 12
    assert len(white) == round(0.15 * len(products) / 0.85)
    for model in family.components:
        looks = true_statistics(model)["looks"]
        assert FAMILY_LOOKS[0] - 1e-9 <= looks <= FAMILY_LOOKS[1] + 1e-9
    correlations = [max(true_statistics(m)["rows"][0], true_statistics(m)["cols"][0]) for m in products]
    assert min(correlations) < 0.3 and max(correlations) > 0.6  # mild (SLC-like) to GRD-like
    assert family.name == "random_products" and "165 products" not in family.describe()
    assert family.describe().startswith(f"random_products: one per patch of {len(family.components)} speckle models")


def test_a_config_names_the_family_and_bad_family_tables_are_refused():
    from training.speckle_model import SpeckleMixture, model_from_config

    family = model_from_config({"family": "random_products", "count": 4, "seed": 1})
    assert isinstance(family, SpeckleMixture) and family.label == "random_products" and len(family.components) == 5 + 4 + 2
    for table, message in (({"family": "products"}, "family must be one of"),
                           ({"family": "random_products", "looks": 2}, "Unknown key 'looks'"),
                           ({"family": "random_products", "count": 1}, "count must be an integer")):
        with pytest.raises(SarDespeckleError, match=message):
            model_from_config(table)


def test_measured_correlation_is_what_the_plugin_reads_on_the_speckle():
    """White speckle reads 0 without measuring; product speckle what the estimator reads on its
    draws, which docs/training.md lists for the presets (window normalisation lowers it below
    the exact value)."""
    from training.data import measured_correlation
    from training.speckle_model import PRESETS, multilook_white, true_statistics

    assert measured_correlation(multilook_white(3.0)) == (0.0, 0.0)
    for name, (rows, cols) in (("sentinel1_iw_grdh", (0.69, 0.48)), ("stripmap_slc", (0.17, 0.18))):
        measured = measured_correlation(PRESETS[name])
        assert measured == pytest.approx((rows, cols), abs=0.04)
        exact = true_statistics(PRESETS[name])
        assert measured[0] < exact["rows"][0] and measured[1] < exact["cols"][0]


def test_supervised_patches_carry_the_correlation_of_the_speckle_drawn():
    from training.config import DataConfig, SourceConfig
    from training.data import TrainingPatches, measured_correlation, speckle_with_conditioning
    from training.sources import load_sources
    from training.speckle_model import PRESETS, SpeckleMixture, multilook_white

    sets = load_sources([SourceConfig(synthetic=2, side=64, seed=1)], "supervised", "train")
    data = DataConfig(patch=32, samples_per_epoch=12)
    grdh = PRESETS["sentinel1_iw_grdh"]
    data.speckle_model = SpeckleMixture((grdh, multilook_white(2.0)))
    patches = TrainingPatches("supervised", sets, data, seed=0, correlation=True)
    seen = {tuple(round(v, 6) for v in patches[i]["correlation"].tolist()) for i in range(12)}
    assert seen == {(0.0, 0.0), tuple(round(v, 6) for v in torch.tensor(measured_correlation(grdh)).tolist())}
    assert "correlation" not in TrainingPatches("supervised", sets, data, seed=0)[0]
    clean = np.full((16, 16), 2.0, np.float32)
    noisy, looks, correlation = speckle_with_conditioning(grdh, clean, np.random.default_rng(5))
    np.testing.assert_array_equal(noisy, grdh.apply(clean, np.random.default_rng(5)))
    assert 4.2 < looks < 4.8 and correlation == measured_correlation(grdh)


# -- the pipeline -----------------------------------------------------------------------------------


def correlated_image(rng, rows, cols):
    """Two-look speckle correlated along columns (neighbouring 1-look samples averaged) over a
    checkerboard: lag-1 about 0.5 between columns, 0 between rows."""
    single = rng.exponential(1.0, (rows, cols + 1))
    y, x = np.mgrid[:rows, :cols]
    return np.where((x // 32 + y // 32) % 2 == 0, 1.0, 3.0) * 0.5 * (single[:, :-1] + single[:, 1:])


def test_pipeline_measures_the_correlation_and_hands_it_to_the_network(tmp_path, monkeypatch):
    from sar_despeckle_plugin.core import accelerate
    from sar_despeckle_plugin.core.despeckle.choice import measure_correlation
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
    from sar_despeckle_plugin.core.feedback import Feedback
    from sar_despeckle_plugin.core.models.weights import save_model

    monkeypatch.setenv(accelerate.FLOAT32_VARIABLE, "1")  # compared with the float32 network below
    net = correlation_net()
    path = save_model(net, ModelCard(name="corr", architecture="log_residual", hyperparameters={},
                                     looks_range=[1.0, 8.0], max_correlation=0.8, speckle_model="random_products"),
                      str(tmp_path))
    assert read_card(path).conditioning == "looks_correlation"
    image = correlated_image(np.random.default_rng(3), 160, 160).astype(np.float32)
    source = str(tmp_path / "in.tif")
    write_geotiff(source, image[None])
    lines = []
    out = str(tmp_path / "out.tif")
    despeckle_raster(source, out, DespeckleSettings(model_card=path, looks=2.0, keep_point_targets=False,
                                                    units="intensity"), Feedback(info=lines.append))
    (rows, cols), _ = measure_correlation([image.astype(np.float64)], [np.ones(image.shape, bool)])
    assert rows < 0.1 < 0.35 < cols
    assert any(f"lag-1 autocorrelation (rows / cols): {rows:.2f} / {cols:.2f}" in line for line in lines), lines
    with torch.no_grad():
        direct = net.despeckle(torch.from_numpy(image[None, None]), float(np.median(image)), looks=2.0,
                               correlation=(rows, cols))[0, 0].numpy()
        white = net.despeckle(torch.from_numpy(image[None, None]), float(np.median(image)), looks=2.0)[0, 0].numpy()
    inner = slice(net.receptive_radius, -net.receptive_radius)
    output = read_geotiff(out)[0]
    np.testing.assert_allclose(output[inner, inner], direct[inner, inner], rtol=2e-4)
    assert not np.allclose(output[inner, inner], white[inner, inner], rtol=2e-4)


def shipped_correlation_cards():
    return [(p, c) for p, c in read_model_cards(SHIPPED_WEIGHTS, "intensity") if c.conditioning == "looks_correlation"]


@pytest.mark.skipif(not shipped_correlation_cards(), reason="no correlation-conditioned network is shipped")
def test_shipped_correlation_network_smooths_less_as_the_looks_grow_and_more_as_the_correlation_does():
    """On one image speckled by a 3-look product model (lag-1 about 0.6 / 0.7), the ratio
    image's log spread shrinks as the looks the network is told grow, and grows with the
    correlation it is told (more of the pixel-to-pixel variation is then speckle)."""
    from sar_despeckle_plugin.core.models.weights import load_model
    from training.data import measured_correlation
    from training.speckle_model import AxisResponse, SpeckleModel

    path, _ = shipped_correlation_cards()[0]
    loaded = load_model(path)
    axis = AxisResponse("hamming", 0.75, 1.2, 1.0, 0.5)
    model = SpeckleModel(looks=None, rows=AxisResponse("hamming", 0.75, 1.2, 3.0, 0.5), cols=axis)
    rng = np.random.default_rng(3)
    clean = np.repeat(np.repeat(rng.uniform(0.2, 2.0, (8, 8)), 16, 0), 16, 1)
    noisy = torch.from_numpy(model.apply(clean, rng).astype(np.float32))[None, None]
    valid = torch.ones_like(noisy, dtype=torch.bool)
    measured = measured_correlation(model)

    def spread(looks, correlation):
        estimate = loaded.despeckle(noisy, valid, float(noisy.median()), looks=looks, correlation=correlation)
        return float((noisy.log() - estimate.log()).std())

    by_looks = [spread(looks, measured) for looks in (1.0, 2.0, 4.0, 8.0, 16.0)]
    assert all(a > b for a, b in zip(by_looks, by_looks[1:])), by_looks
    by_correlation = [spread(3.5, (c, c)) for c in (0.0, 0.3, 0.6, 0.9)]
    assert all(a < b for a, b in zip(by_correlation, by_correlation[1:])), by_correlation


def test_the_training_watch_hands_a_correlation_network_the_real_images_correlation():
    """The real-image watch measures each image's speckle correlation once, for a network that
    reads it, as a run would, and not for others."""
    from sar_despeckle_plugin.core.models.registry import build_model
    from training.watch import RealImageWatch

    image = correlated_image(np.random.default_rng(6), 160, 160).astype(np.float32)
    examples = [("columns correlated", torch.from_numpy(image)[None, None], float(np.median(image)))]
    cpu = torch.device("cpu")
    net = correlation_net()
    seen = stem_inputs(net)
    watch = RealImageWatch(examples, per_pixel=True)
    with torch.no_grad():  # as the trainer's validation runs it
        watch.measure(net, cpu)
    ((rows, cols),) = watch.correlation()
    assert rows < 0.1 < 0.35 < cols
    assert torch.allclose(seen[0][0, 3], torch.full_like(seen[0][0, 3], cols))
    other = RealImageWatch(examples, per_pixel=True)
    with torch.no_grad():
        other.measure(build_model("log_residual", widths=[8, 8], convs_per_level=1, condition_channels=1).eval(), cpu)
    assert other._correlation is None
