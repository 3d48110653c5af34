"""Point targets kept through networks: detection statistics, the peak and 3 x 3 energy kept,
tiling invariance, and the POINT_TARGETS parameter through qgis_process."""

import json
import math

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle import point_targets
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.raster import raster_info

from .synthetic import read_geotiff, speckle, write_geotiff

DEFAULT_NETWORK = f"{SHIPPED_WEIGHTS}/sarcnn_default.json"
#: A deterministic point target's 3 x 3 response (intensity over a background of 1): a peak
#: 40 dB over the clutter and sidelobes 14 and 20 dB below it (an oversampled impulse response).
RESPONSE = 1e4 * np.array([[0.01, 0.04, 0.01], [0.04, 1.0, 0.04], [0.01, 0.04, 0.01]])


@pytest.mark.parametrize("looks", [1.0, 2.5, 8.0])
def test_speckle_quantile_is_exceeded_with_the_asked_probability(looks):
    quantile = point_targets.speckle_quantile(looks, 1e-3)
    if looks == 1.0:
        assert quantile == pytest.approx(-math.log(1e-3), rel=1e-6)  # exponential tail
    draws = np.random.default_rng(0).gamma(looks, 1 / looks, 2_000_000)
    assert np.mean(draws > quantile) == pytest.approx(1e-3, rel=0.1)


def scene_with_target(size=96, looks=1.0, seed=0):
    """Unit clutter with Gamma speckle and one deterministic (unspeckled) target at the centre."""
    image = speckle(np.ones((size, size), np.float32), looks, seed=seed)
    centre = size // 2
    image[centre - 1: centre + 2, centre - 1: centre + 2] = RESPONSE
    return image, centre


def test_detection_finds_the_target_and_rarely_speckle():
    image, centre = scene_with_target(256)
    targets, background = point_targets.find_point_targets(
        torch.from_numpy(image)[None, None], torch.ones(1, 1, 256, 256, dtype=torch.bool), 1.0)
    found = targets[0, 0].numpy()
    assert found[centre - 1: centre + 2, centre - 1: centre + 2].all()  # peak and sidelobes
    assert found.sum() == 9  # speckle alone never reaches 20 dB over its background
    assert background[0, 0, 10:80, 10:80].mean().item() == pytest.approx(1.0, rel=0.05)  # unit clutter

    speckle_only = torch.from_numpy(speckle(np.ones((512, 512), np.float32), 1.0, seed=4))[None, None]
    none, _ = point_targets.find_point_targets(speckle_only, torch.ones_like(speckle_only, dtype=torch.bool), 1.0)
    assert int(none.sum()) == 0


def test_invalid_pixels_are_never_targets_and_do_not_count_as_background():
    image, centre = scene_with_target(64)
    valid = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    valid[..., :, : centre - 2] = False
    values = torch.from_numpy(image)[None, None].clone()
    values[~valid] = 1e9  # whatever sits under nodata must not matter
    targets, background = point_targets.find_point_targets(values, valid, 1.0)
    assert not targets[~valid].any()
    assert targets[0, 0, centre, centre]
    assert background[0, 0, 5, centre + 10].item() < 10


@pytest.fixture
def target_tif(tmp_path):
    image, centre = scene_with_target(200)
    return write_geotiff(str(tmp_path / "target.tif"), image), centre


def run(source, out, **settings):
    despeckle_raster(source, str(out), DespeckleSettings(model_card=DEFAULT_NETWORK, units="intensity",
                                                         looks=1.0, **settings))
    return read_geotiff(str(out))[0]


def test_the_network_keeps_the_peak_and_its_energy_only_when_asked(target_tif, tmp_path):
    source, centre = target_tif
    box = (slice(centre - 1, centre + 2), slice(centre - 1, centre + 2))
    kept = run(source, tmp_path / "kept.tif", keep_point_targets=True)
    spread = run(source, tmp_path / "spread.tif")  # the default
    assert kept[centre, centre] == pytest.approx(RESPONSE[1, 1], rel=1e-5)
    assert kept[box].sum() == pytest.approx(RESPONSE.sum(), rel=0.02)
    assert spread[centre, centre] < 0.9 * RESPONSE[1, 1]  # what the option is for
    # Away from the target the clutter is despeckled the same way (within the network's reach,
    # the target no longer leaks into its neighbours).
    far = (slice(0, centre - 64), slice(None))  # beyond the network's reach (51 px)
    np.testing.assert_allclose(kept[far], spread[far], rtol=1e-4)
    ring = np.ones((9, 9), bool)
    ring[3:6, 3:6] = False
    neighbourhood = kept[centre - 4: centre + 5, centre - 4: centre + 5][ring]
    assert np.median(neighbourhood) < 3  # unit clutter, not a halo of the target
    parameters = json.loads(raster_info(str(tmp_path / "spread.tif")).metadata["SAR_DESPECKLE_PARAMETERS"])
    assert parameters["keep_point_targets"] is False


def test_tiles_keep_the_target_as_the_whole_image_does(target_tif, tmp_path):
    source, _ = target_tif
    whole = run(source, tmp_path / "whole.tif", keep_point_targets=True)
    tiled = run(source, tmp_path / "tiled.tif", keep_point_targets=True, tile=64)
    assert np.abs(np.log(tiled) - np.log(whole)).max() < 1e-3


def test_qgis_process_point_targets_parameter(qgis_process, target_tif, tmp_path):
    source, centre = target_tif
    outputs = {}
    for value in ("true", "false"):
        out = str(tmp_path / f"cli_{value}.tif")
        qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={source}", "--METHOD=8", "--LOOKS=1",
                     "--INPUT_UNITS=0", f"--POINT_TARGETS={value}", f"--OUTPUT={out}")
        outputs[value] = read_geotiff(out)[0][centre, centre]
    assert outputs["true"] == pytest.approx(RESPONSE[1, 1], rel=1e-5)
    assert outputs["false"] < 0.9 * RESPONSE[1, 1]


def test_qgis_process_default_keeps_point_targets_in_correlated_speckle_only(qgis_process, tmp_path):
    """With every parameter at its default, a target in a Sentinel-1 SLC's intensity (speckle
    correlated by the oversampling) is kept as measured; in white one-look speckle the default
    network spreads it (POINT_TARGETS left off)."""
    from training.speckle_model import PRESETS

    size, centre = 192, 96
    box = (slice(centre - 1, centre + 2), slice(centre - 1, centre + 2))
    clutter = {"slc": PRESETS["sentinel1_iw_slc"].apply(np.ones((size, size)), np.random.default_rng(3)),
               "white": speckle(np.ones((size, size), np.float32), 1.0, seed=3)}
    for kind, image in clutter.items():
        image = image.astype(np.float32)
        image[box] = RESPONSE
        source = write_geotiff(str(tmp_path / f"{kind}.tif"), image)
        out, report = str(tmp_path / f"{kind}_out.tif"), str(tmp_path / f"{kind}_report.html")
        done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={source}", f"--OUTPUT={out}",
                            f"--REPORT={report}")
        log = done.stdout + done.stderr
        peak = read_geotiff(out)[0][centre, centre]
        parameters = json.loads(raster_info(out).metadata["SAR_DESPECKLE_PARAMETERS"])
        with open(str(tmp_path / f"{kind}_report.json")) as twin:
            reported = json.load(twin)["point_targets"]
        with open(report) as page:
            assert f"<td>{reported}</td>" in page.read().replace("\n", "")
        assert reported.startswith("kept as measured" if kind == "slc" else "spread by the network")
        if kind == "slc":
            assert "using network sarcnn_slc" in log and "are kept as measured" in log, log
            assert peak == pytest.approx(RESPONSE[1, 1], rel=1e-5) and parameters["keep_point_targets"] is True
        else:
            assert "using network sarcnn_default" in log and "are kept as measured" not in log, log
            assert peak < 0.9 * RESPONSE[1, 1] and parameters["keep_point_targets"] is False
