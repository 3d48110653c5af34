"""No-reference speckle statistics: looks and autocorrelation of known synthetic speckle."""

import numpy as np
import pytest

from sar_despeckle_plugin.core.quality import measure_speckle, ratio_statistics

from .conftest import shared_data


def _correlated_looks(shape, looks, seed):
    """Intensity of ``looks`` independent complex speckle fields, each averaged over 2 x 2
    neighbours: the intensity autocorrelation at lag 1 is |0.5|^2 = 0.25 on both axes."""
    rng = np.random.default_rng(seed)
    total = np.zeros(shape)
    for _ in range(looks):
        z = rng.normal(size=(shape[0] + 1, shape[1] + 1)) + 1j * rng.normal(size=(shape[0] + 1, shape[1] + 1))
        z = (z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:]) / 2
        total += np.abs(z) ** 2 / 2
    return total / looks


def test_white_speckle_over_two_flat_areas_measures_its_looks_and_no_correlation():
    rng = np.random.default_rng(0)
    scene = np.where(np.arange(512)[None, :] < 256, 1.0, 5.0) * np.ones((512, 1))
    stats = measure_speckle(scene * rng.gamma(4, 1 / 4, scene.shape))
    assert 3.8 < stats.looks < 4.6
    assert max(map(abs, stats.rows + stats.cols)) < 0.03


@pytest.mark.parametrize("looks", [1, 4])
def test_correlated_speckle_measures_its_lag_one_correlation(looks):
    stats = measure_speckle(_correlated_looks((512, 512), looks, seed=looks))
    assert 0.85 * looks < stats.looks < 1.2 * looks
    for axis in (stats.rows, stats.cols):
        assert 0.2 < axis[0] < 0.3 and abs(axis[1]) < 0.05


def test_too_small_an_image_gives_no_measurement():
    assert measure_speckle(np.ones((40, 40))) is None


def test_ratio_of_the_true_scene_is_white_with_the_input_looks():
    rng = np.random.default_rng(1)
    scene = np.exp(rng.normal(size=(256, 256)))
    stats = ratio_statistics(scene * rng.gamma(2, 1 / 2, scene.shape), scene)
    assert abs(stats.mean - 1) < 0.02 and 1.9 < stats.looks < 2.1
    assert max(map(abs, stats.rows + stats.cols)) < 0.03


def test_sentinel1_grdh_speckle_is_multilook_and_correlated():
    from osgeo import gdal

    grd = gdal.Open(shared_data("grd/s1_grdh_spain_vegabaja_20190917_vv.tif")).ReadAsArray().astype(float)
    stats = measure_speckle(grd)
    assert 3.5 < stats.looks < 6 and stats.rows[0] > 0.6 and stats.cols[0] > 0.6
