"""core.speckle: unit conversions and detection, value checks, the looks estimator."""

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core import speckle
from sar_despeckle_plugin.core.errors import SarDespeckleError

from .synthetic import piecewise_scene


@pytest.mark.parametrize("units", speckle.UNITS)
def test_unit_round_trip_numpy_and_torch(units):
    intensity = np.array([0.01, 0.5, 1.0, 30.0])
    converted = speckle.from_intensity(intensity, units)
    np.testing.assert_allclose(speckle.to_intensity(converted, units), intensity, rtol=1e-12)
    as_tensor = speckle.from_intensity(torch.from_numpy(intensity), units).numpy()
    np.testing.assert_allclose(as_tensor, converted, rtol=1e-12)
    expected = {"intensity": intensity, "amplitude": np.sqrt(intensity), "dB": 10 * np.log10(intensity)}
    np.testing.assert_allclose(converted, expected[units])


@pytest.mark.parametrize("values, description, expected", [
    ([-12.0, -3.0, 2.0], "", "dB"),
    ([0.1, 0.3], "Sigma0_VV_db", "dB"),
    ([0.1, 0.3], "Amplitude_VH", "amplitude"),
    ([0.1, 0.3], "Intensity_VV", "intensity"),
    ([0.1, 0.3], "", None),
])
def test_detect_units(values, description, expected):
    assert speckle.detect_units(np.array(values), description) == expected


def test_db_declared_as_intensity_is_named():
    db = 10 * np.log10(np.random.default_rng(0).gamma(1, 0.05, 1000))
    with pytest.raises(SarDespeckleError, match="looks like dB"):
        speckle.check_values(db, "intensity", 1)


def test_negative_intensities_are_refused():
    with pytest.raises(SarDespeckleError, match="negative values"):
        speckle.check_values(np.array([1.0, 2.0, -500.0] * 100 + [3000.0]), "intensity", 2)


def test_linear_declared_as_db_is_refused():
    with pytest.raises(SarDespeckleError, match="looks linear"):
        speckle.check_values(np.array([10.0, 400.0, 2500.0]), "dB", 1)
    speckle.check_values(np.array([-25.0, -10.0, 5.0]), "dB", 1)


@pytest.mark.parametrize("looks", [1, 2, 4.4, 16])
def test_looks_estimate_on_heterogeneous_scene(looks):
    rng = np.random.default_rng(3)
    scene = piecewise_scene(384, 384).astype(np.float64)
    scene[:, 250:] *= rng.gamma(3.0, 1 / 3.0, (384, 134))  # textured third of the scene
    image = scene * rng.gamma(looks, 1 / looks, scene.shape)
    valid = np.ones(image.shape, bool)
    valid[:40] = False  # a nodata border must not matter
    assert speckle.estimate_looks([image], [valid]) == pytest.approx(looks, rel=0.12)


def test_looks_estimate_needs_enough_pixels():
    with pytest.raises(SarDespeckleError, match="give LOOKS"):
        speckle.estimate_looks([np.ones((10, 10))], [np.ones((10, 10), bool)])


def test_sample_windows_cover_small_images_and_spread_on_big_ones():
    assert speckle.sample_windows(100, 200) == [(0, 0, 100, 200)]
    windows = speckle.sample_windows(20_000, 30_000, max_pixels=1_000_000)
    assert sum(h * w for _, _, h, w in windows) <= 1_000_000
    assert max(r for r, _, _, _ in windows) == 20_000 - 256
