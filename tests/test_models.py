"""core.models: architectures, receptive fields, losses, model cards and safe loading."""

import json
import math
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import ModelCard, list_model_cards
from sar_despeckle_plugin.core.models.complexity import macs_per_pixel, measured_reach, parameter_count
from sar_despeckle_plugin.core.models.registry import ARCHITECTURES, build_model
from sar_despeckle_plugin.core.models.weights import load_model, save_model
from sar_despeckle_plugin.core.models.blind_spot import marginal_nll, posterior_mean
from sar_despeckle_plugin.core.models.logdomain import (
    intensity_to_log, log_bias, log_to_intensity, normalise_log,
)
from sar_despeckle_plugin.core.tiling import TilingOptions, run_tiled

from .synthetic import piecewise_scene, speckle

#: The despeckling architectures (the change detector has its own tests: test_learned_change.py).
DESPECKLERS = sorted(name for name, cls in ARCHITECTURES.items() if cls.input_kind == "intensity")
SMALL = {
    "log_residual": {"widths": [4, 8, 8], "convs_per_level": 1},
    "blind_spot": {"widths": [4, 8, 8], "head_width": 8},
}


def small(architecture, seed=0):
    torch.manual_seed(seed)
    return build_model(architecture, **SMALL[architecture]).eval()


def speckled_tensor(height, width, seed=0, batch=1):
    scenes = [speckle(piecewise_scene(height, width, seed + b), 1.0, seed + 10 + b) for b in range(batch)]
    return torch.from_numpy(np.stack(scenes)[:, None])


# ---------------------------------------------------------------------------------------------
# Architectures


@pytest.mark.parametrize("architecture", DESPECKLERS)
@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 1, 32, 32)])
def test_output_shapes_and_values(architecture, shape):
    model = small(architecture)
    intensity = speckled_tensor(shape[2], shape[3], batch=shape[0])
    with torch.no_grad():
        estimate = model.despeckle(intensity, intensity.flatten(1).median(dim=1).values)
    assert estimate.shape == shape
    assert torch.isfinite(estimate).all() and (estimate > 0).all()


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_reach_of_the_default_structures_is_their_receptive_radius(architecture):
    """The reach depends on the levels and layers, not on the widths: thin copies are enough."""
    default = build_model(architecture)
    model = build_model(architecture, widths=[2] * len(default.widths))
    assert model.receptive_radius == default.receptive_radius
    assert measured_reach(model) == model.receptive_radius


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_pixels_beyond_the_radius_do_not_change_the_output(architecture):
    """With real (random) weights: perturbing a pixel just outside the radius changes nothing."""
    model = small(architecture)
    radius = model.receptive_radius
    side = 2 * radius + 24
    image = speckled_tensor(side, side, seed=3)
    centre = side // 2
    touched = image.clone()
    touched[0, 0, centre - radius - 1, centre + 3] *= 50.0
    touched[0, 0, centre + 2, centre + radius + 1] *= 50.0
    inside = image.clone()
    inside[0, 0, centre - radius + 1, centre] *= 50.0
    with torch.no_grad():
        before, after, near = (model.despeckle(x, 1.0)[0, 0, centre, centre] for x in (image, touched, inside))
    assert after == before
    assert near != before


@pytest.mark.parametrize("shape, pixel", [((1, 1, 40, 40), (20, 17)), ((2, 1, 24, 40), (0, 39)), ((1, 1, 32, 32), (31, 0))])
def test_blind_spot_prior_ignores_the_centre_pixel(shape, pixel):
    """Square (rotations batched), non-square (looped) inputs and image corners alike."""
    model = small("blind_spot", seed=1)
    z = torch.randn(shape, requires_grad=True)
    output = model(z)
    output[-1, :, pixel[0], pixel[1]].sum().backward()
    gradient = z.grad[-1, 0].abs()
    assert gradient[pixel] == 0
    neighbours = gradient[max(pixel[0] - 1, 0): pixel[0] + 2, max(pixel[1] - 1, 0): pixel[1] + 2]
    assert (neighbours > 0).sum() == neighbours.numel() - 1
    assert z.grad[:-1].abs().sum() == 0  # nor does it see other batch items


@pytest.mark.parametrize("radius", [1, 2])
def test_blind_spot_radius_hides_the_square_around_the_pixel(radius):
    """With ``blind_radius`` r the prior reads nothing in the (2r + 1) x (2r + 1) square (where
    correlated speckle would leak the pixel's own), and does read the pixels just outside it."""
    torch.manual_seed(1)  # a tiny network whose branches all have live units
    model = build_model("blind_spot", **{**SMALL["blind_spot"], "blind_radius": radius}).eval()
    assert model.hyperparameters["blind_radius"] == radius
    assert model.receptive_radius == small("blind_spot").receptive_radius + radius
    z = torch.randn((1, 1, 40, 40), requires_grad=True)
    model(z)[0, :, 20, 20].sum().backward()
    gradient = z.grad[0, 0].abs()
    assert gradient[20 - radius: 21 + radius, 20 - radius: 21 + radius].sum() == 0
    outside = radius + 1
    for row, col in ((20 - outside, 20), (20 + outside, 20), (20, 20 - outside), (20, 20 + outside)):
        assert gradient[row, col] > 0


def test_blind_spot_radius_must_be_a_whole_number_of_pixels():
    for radius in (-1, 1.5):
        with pytest.raises(ValueError, match="blind_radius"):
            build_model("blind_spot", **{**SMALL["blind_spot"], "blind_radius": radius})


def test_blind_spot_estimate_uses_the_centre_pixel_through_the_posterior_only():
    model = small("blind_spot")
    image = speckled_tensor(32, 32)
    brighter = image.clone()
    brighter[0, 0, 16, 16] *= 4.0
    with torch.no_grad():
        mean, alpha = model.prior(image, 1.0)
        mean2, alpha2 = model.prior(brighter, 1.0)
        estimate = model.despeckle(brighter, 1.0)
    assert mean2[0, 0, 16, 16] == mean[0, 0, 16, 16] and alpha2[0, 0, 16, 16] == alpha[0, 0, 16, 16]
    expected = posterior_mean(brighter, mean2, alpha2, 1.0)
    torch.testing.assert_close(estimate, expected)


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_output_scales_with_the_input(architecture):
    """Centring on the reference level makes the estimate scale-equivariant."""
    model = small(architecture)
    image = speckled_tensor(32, 32, seed=4)
    with torch.no_grad():
        base = model.despeckle(image, 0.8)
        scaled = model.despeckle(image * 1000.0, 800.0)
    torch.testing.assert_close(scaled, base * 1000.0, rtol=1e-4, atol=0)


def test_macs_per_pixel_counts_convolutions():
    model = build_model("log_residual", widths=[8], convs_per_level=1)
    assert macs_per_pixel(model) == 9 * 8 + 8  # 3x3 conv 1->8, 1x1 head 8->1
    model = build_model("log_residual", widths=[8, 16], convs_per_level=1)
    # stem; strided 2x2 conv and 3x3 conv at 1/4 resolution; transposed 2x2 conv; decoder 3x3; head
    expected = 9 * 8 + (4 * 8 * 16 + 9 * 16 * 16) / 4 + 4 * 16 * 8 / 4 + 9 * 8 * 8 + 8
    assert macs_per_pixel(model) == round(expected)
    assert parameter_count(model) == sum(p.numel() for p in model.parameters())


def test_build_model_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("unet3000")
    with pytest.raises(ValueError, match="unknown hyperparameter.*width"):
        build_model("log_residual", width=[8])


# ---------------------------------------------------------------------------------------------
# Log domain and losses


@pytest.mark.parametrize("looks", [1.0, 3.0, 4.5])
def test_log_debias_makes_log_speckle_zero_mean(looks):
    rng = np.random.default_rng(0)
    reflectivity = 2.5
    samples = reflectivity * rng.gamma(looks, 1.0 / looks, 1_000_000)
    debiased = np.log(samples) - log_bias(looks)
    assert abs(debiased.mean() - math.log(reflectivity)) < 3e-3
    assert log_bias(1.0) == pytest.approx(-0.5772156649, abs=1e-9)


def test_normalisation_round_trip_and_centre():
    intensity = torch.tensor([[[[0.5, 2.0], [8.0, 1.0]]]])
    z = intensity_to_log(intensity, 2.0)
    torch.testing.assert_close(log_to_intensity(z, 2.0), intensity)
    # the network input is the debiased version of the same thing
    torch.testing.assert_close(normalise_log(intensity, 2.0, 1.0), z - log_bias(1.0) / 2.0)


def inverse_gamma_samples(alpha, beta, count, rng):
    return beta / rng.gamma(alpha, 1.0, count)


@pytest.mark.parametrize("looks, alpha, mean", [(1.0, 3.0, 2.0), (4.0, 6.0, 0.5)])
def test_blind_spot_nll_is_minimal_at_the_true_prior(looks, alpha, mean):
    """Noisy samples of an inverse-Gamma reflectivity: minimising the mean NLL over the prior's
    (mean, alpha) -- from a distant start -- recovers the true ones."""
    rng = np.random.default_rng(1)
    x = inverse_gamma_samples(alpha, mean * (alpha - 1), 100_000, rng)
    y = torch.from_numpy(x * rng.gamma(looks, 1.0 / looks, x.size))
    log_mean = torch.tensor(math.log(mean) + 0.7, dtype=torch.float64, requires_grad=True)
    log_excess = torch.tensor(math.log(alpha - 1) - 0.7, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_mean, log_excess], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = marginal_nll(y, log_mean.exp(), 1 + log_excess.exp(), looks).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert float(log_mean.detach().exp()) == pytest.approx(mean, rel=0.03)
    assert float(1 + log_excess.detach().exp()) == pytest.approx(alpha, rel=0.06)


@pytest.mark.parametrize("looks", [1.0, 2.0])
def test_blind_spot_marginal_is_a_density_and_posterior_mean_is_exact(looks):
    alpha, mean = torch.tensor(2.5, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64)
    y = torch.logspace(-8, 5, 200_001, dtype=torch.float64)
    density = torch.exp(-marginal_nll(y, mean, alpha, looks))
    assert float(torch.trapezoid(density, y)) == pytest.approx(1.0, abs=2e-4)
    # posterior mean by numerical integration over x for one observation
    observed, beta = 0.7, float(mean * (alpha - 1))
    x = torch.logspace(-6, 6, 400_001, dtype=torch.float64)
    log_prior = -(alpha + 1) * x.log() - beta / x
    log_likelihood = (looks - 1) * math.log(observed) - looks * x.log() - looks * observed / x
    weight = torch.exp(log_prior + log_likelihood - (log_prior + log_likelihood).max())
    numeric = float(torch.trapezoid(weight * x, x) / torch.trapezoid(weight, x))
    closed = float(posterior_mean(torch.tensor(observed, dtype=torch.float64), mean, alpha, looks))
    assert closed == pytest.approx(numeric, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Model cards and loading


def saved(tmp_path, architecture="log_residual", name="net"):
    model = small(architecture)
    card = ModelCard(name=name, architecture=architecture, hyperparameters={}, description="test",
                     training={"data": "synthetic"}, metrics={"psnr": 1.0})
    return model, save_model(model, card, str(tmp_path))


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_save_load_round_trip(tmp_path, architecture):
    model, card_path = saved(tmp_path, architecture)
    record = json.loads(open(card_path).read())
    assert record["format"] == "sar_despeckle_model_card"
    assert record["architecture"] == architecture
    assert record["receptive_radius"] == model.receptive_radius
    assert record["macs_per_pixel"] == macs_per_pixel(model) > 0
    assert record["parameters"] == parameter_count(model)
    assert record["weights_file"] == "net.pt" and len(record["sha256"]) == 64
    assert record["normalisation"]["scale"] == model.log_scale
    loaded = load_model(card_path, "cpu")
    assert loaded.card.metrics == {"psnr": 1.0} and not loaded.module.training
    assert loaded.receptive_radius == model.receptive_radius
    image = speckled_tensor(40, 40)
    valid = torch.ones_like(image, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(loaded.despeckle(image, valid, 1.0), model.despeckle(image, 1.0))


def test_weights_load_with_weights_only(tmp_path, monkeypatch):
    _, card_path = saved(tmp_path)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model(card_path)
    assert calls == [True]


def test_list_model_cards_finds_ours_only(tmp_path):
    _, card_path = saved(tmp_path, name="b")
    saved(tmp_path, "blind_spot", name="a")
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{")
    assert list_model_cards(str(tmp_path)) == [str(tmp_path / "a.json"), card_path]
    assert list_model_cards(str(tmp_path / "absent")) == []


def test_checksum_mismatch_is_refused_before_loading(tmp_path, monkeypatch):
    _, card_path = saved(tmp_path)
    weights = tmp_path / "net.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("loaded before checking"))
    with pytest.raises(SarDespeckleError, match="does not match its model card"):
        load_model(card_path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def rewrite_card(card_path, **changes):
    record = json.loads(open(card_path).read())
    record.update(changes)
    with open(card_path, "w") as handle:
        json.dump(record, handle)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    _, card_path = saved(tmp_path)
    # not our card
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"name": "x", "architecture": "log_residual"}))
    with pytest.raises(SarDespeckleError, match="not a SAR Despeckle model card"):
        load_model(str(foreign))
    with pytest.raises(SarDespeckleError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{ nope")
        load_model(str(tmp_path / "bad.json"))
    # a pickle with code in it, even with a matching checksum
    from sar_despeckle_plugin.core.models.weights import sha256_of

    evil = tmp_path / "evil.pt"
    torch.save({"stem": Payload()}, evil)
    rewrite_card(card_path, weights_file="evil.pt", sha256=sha256_of(str(evil)))
    with pytest.raises(SarDespeckleError, match="Cannot load weights"):
        load_model(card_path)
    # random bytes
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(256))
    rewrite_card(card_path, weights_file="junk.pt", sha256=sha256_of(str(junk)))
    with pytest.raises(SarDespeckleError, match="Cannot load weights"):
        load_model(card_path)
    # weights outside the card's folder
    rewrite_card(card_path, weights_file="../net.pt")
    with pytest.raises(SarDespeckleError, match="plain file name"):
        load_model(card_path)


def test_cards_with_unknown_architecture_or_wrong_weights_are_refused(tmp_path):
    _, card_path = saved(tmp_path)
    rewrite_card(card_path, architecture="unet3000")
    with pytest.raises(SarDespeckleError, match="unet3000"):
        load_model(card_path)
    _, card_path = saved(tmp_path, name="other")
    rewrite_card(card_path, hyperparameters={"widths": [4, 8, 16], "convs_per_level": 1})
    with pytest.raises(SarDespeckleError, match="do not fit"):
        load_model(card_path)
    rewrite_card(card_path, extra_field=1)
    with pytest.raises(SarDespeckleError, match="unknown field"):
        load_model(card_path)
    rewrite_card(card_path, format_version=99)
    with pytest.raises(SarDespeckleError, match="Update the plugin"):
        load_model(card_path)


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_invalid_pixels_never_reach_the_network(tmp_path, architecture):
    _, card_path = saved(tmp_path, architecture)
    loaded = load_model(card_path)
    image = speckled_tensor(32, 32)
    valid = torch.ones_like(image, dtype=torch.bool)
    valid[..., 5:9, 20:30] = False
    garbage = torch.where(valid, image, torch.full_like(image, math.nan))
    garbage[..., 6, 25] = 1e30
    filled = torch.where(valid, image, torch.full_like(image, 0.7))
    result = loaded.despeckle(garbage, valid, 0.7)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, loaded.despeckle(filled, torch.ones_like(valid), 0.7))
    with pytest.raises(SarDespeckleError, match="fill_value"):
        loaded.despeckle(image, valid, 0.0)


class ArraySource:
    def __init__(self, image):
        self.image, (_, self.height, self.width) = image, image.shape

    def read(self, row, col, height, width):
        values = np.zeros((1, height, width), np.float32)
        r0, r1, c0, c1 = max(row, 0), min(row + height, self.height), max(col, 0), min(col + width, self.width)
        values[:, r0 - row: r1 - row, c0 - col: c1 - col] = self.image[:, r0:r1, c0:c1]
        valid = np.zeros(values.shape, bool)
        valid[:, r0 - row: r1 - row, c0 - col: c1 - col] = True
        return values, valid


class ArraySink:
    def __init__(self, shape):
        self.image = np.full(shape, np.nan, np.float32)

    def write(self, values, row, col):
        self.image[:, row: row + values.shape[1], col: col + values.shape[2]] = values


@pytest.mark.parametrize("architecture", DESPECKLERS)
@pytest.mark.parametrize("self_ensemble", [False, True])
def test_tiles_with_an_aligned_halo_equal_the_whole_image(tmp_path, architecture, self_ensemble):
    """What the plugin relies on: halo >= receptive_radius, tile and halo multiples of alignment
    give the result of the whole image surrounded by ``halo`` invalid (filled) pixels, with or
    without the mirrored pass."""
    _, card_path = saved(tmp_path, architecture)
    loaded = load_model(card_path)
    image = speckled_tensor(45, 70, seed=5)[0].numpy()
    fill = float(np.median(image))
    halo = -(-loaded.receptive_radius // loaded.alignment) * loaded.alignment
    padded = torch.nn.functional.pad(torch.from_numpy(image[None]), (halo,) * 4, value=fill)
    whole = loaded.despeckle(padded, torch.ones_like(padded, dtype=torch.bool), fill,
                             self_ensemble)[..., halo:-halo, halo:-halo]
    sink = ArraySink(image.shape)
    options = TilingOptions(tile=4 * loaded.alignment, halo=halo)
    run_tiled(ArraySource(image), sink, lambda v, ok: loaded.despeckle(v, ok, fill, self_ensemble), options, 1)
    np.testing.assert_allclose(sink.image, whole[0].numpy(), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", DESPECKLERS)
def test_self_ensemble_is_the_geometric_mean_with_the_mirrored_estimate(tmp_path, architecture):
    _, card_path = saved(tmp_path, architecture)
    loaded = load_model(card_path)
    width = 4 * loaded.alignment  # a multiple: the mirror needs no padding
    image = speckled_tensor(40, width, seed=3)
    valid = torch.ones_like(image, dtype=torch.bool)
    fill = float(image.median())
    plain = loaded.despeckle(image, valid, fill)
    mirrored = loaded.despeckle(image.flip(-1), valid, fill).flip(-1)
    assert not torch.allclose(plain, mirrored, rtol=1e-3)  # the network is not mirror-symmetric
    torch.testing.assert_close(loaded.despeckle(image, valid, fill, self_ensemble=True),
                               torch.sqrt(plain * mirrored), rtol=1e-5, atol=1e-6)
    symmetric = torch.cat([image[..., : width // 2], image[..., : width // 2].flip(-1)], dim=-1)
    estimate = loaded.despeckle(symmetric, valid, fill, self_ensemble=True)
    torch.testing.assert_close(estimate, estimate.flip(-1), rtol=1e-5, atol=1e-6)
