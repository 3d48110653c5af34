"""core.despeckle.pipeline end to end on files: units, tiling, cancel, device fallback."""

import os

import numpy as np
import pytest

from sar_despeckle_plugin.core.despeckle.filters import CLASSICAL_METHODS
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.errors import Cancelled
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.tiling import tile_for_width

from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff


@pytest.fixture
def intensity_tif(tmp_path):
    image = speckle(piecewise_scene(150, 170), 2, seed=5)
    image[:, :4] = 0  # an untagged swath border
    return write_geotiff(str(tmp_path / "intensity.tif"), image)


def run(source, out, **settings):
    despeckle_raster(source, str(out), DespeckleSettings(**settings))
    return read_geotiff(str(out))


@pytest.mark.parametrize("method", CLASSICAL_METHODS)
def test_small_tiles_equal_one_tile(intensity_tif, tmp_path, method):
    common = dict(method=method, looks=2.0, units="intensity", window=7)
    tiled = run(intensity_tif, tmp_path / "tiled.tif", tile=32, **common)
    whole = run(intensity_tif, tmp_path / "whole.tif", tile=256, **common)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-7)
    assert (tiled[:, :, :4] == 0).all() and (tiled[:, :, 4:] > 0).all()


@pytest.mark.parametrize("units, declared", [("amplitude", "amplitude"), ("dB", None)])
def test_outputs_keep_the_input_units(intensity_tif, tmp_path, units, declared):
    """Amplitude must be declared (it looks like intensity); dB is detected from its signs."""
    intensity = read_geotiff(intensity_tif)[0]
    valid = intensity > 0
    safe = np.where(valid, intensity, 1.0)
    converted = np.where(valid, np.sqrt(safe) if units == "amplitude" else 10 * np.log10(safe), -99)
    source = write_geotiff(str(tmp_path / f"{units}.tif"), converted.astype(np.float32), nodata=-99)
    expected = run(intensity_tif, tmp_path / "ref.tif", method="lee", looks=2.0, units="intensity")[0]
    output = run(source, tmp_path / "out.tif", method="lee", looks=2.0, units=declared)[0]
    back = output ** 2 if units == "amplitude" else 10 ** (output / 10)
    np.testing.assert_allclose(back[valid], expected[valid], rtol=2e-4)
    assert (output[~valid] == -99).all()


def test_cancel_writes_nothing(intensity_tif, tmp_path):
    out = tmp_path / "out.tif"
    with pytest.raises(Cancelled):
        despeckle_raster(intensity_tif, str(out), DespeckleSettings(looks=2.0, tile=32),
                         Feedback(is_cancelled=lambda: True))
    assert sorted(os.listdir(tmp_path)) == ["intensity.tif"]


def test_cuda_without_gpu_falls_back_with_warning(intensity_tif, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    warnings = []
    report = despeckle_raster(intensity_tif, str(tmp_path / "out.tif"),
                              DespeckleSettings(device="cuda", looks=2.0), Feedback(warn=warnings.append))
    assert report.device == "cpu" and any("falls back" in w or "instead" in w for w in warnings)


def test_wide_images_get_shorter_strips():
    assert tile_for_width(4096, 1) == 1024
    assert tile_for_width(20_000, 1) < 1024
    assert tile_for_width(10 ** 6, 4) == 256


def test_catalog_lists_the_filters_in_order():
    from sar_despeckle_plugin.core.choices import CLASSICAL_METHOD_LABELS

    assert tuple(CLASSICAL_METHOD_LABELS) == CLASSICAL_METHODS
