"""Networks through the plugin: the despeckle pipeline, processing.run, qgis_process, settings."""

import json
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import ModelCard
from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.weights import save_model
from sar_despeckle_plugin.core.raster import raster_info

from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff


@pytest.fixture(scope="module")
def model_card(tmp_path_factory):
    """A small, untrained log-residual U-Net with random weights, saved as a card."""
    torch.manual_seed(0)
    module = build_model("log_residual", widths=[4, 8], convs_per_level=1, looks=1)
    folder = tmp_path_factory.mktemp("models")
    return save_model(module, ModelCard(name="tiny_unet", architecture="log_residual", hyperparameters={}),
                      str(folder))


@pytest.fixture
def speckled_tif(tmp_path):
    image = speckle(piecewise_scene(150, 170), 1, seed=3)
    image[:, :5] = 0  # untagged border: nodata
    return write_geotiff(str(tmp_path / "speckled.tif"), image)


def despeckle(source, out, card, **settings):
    despeckle_raster(source, str(out), DespeckleSettings(model_card=card, looks=1.0, units="intensity", **settings))
    return read_geotiff(str(out))[0]


@pytest.mark.parametrize("self_ensemble", [True, False])
def test_tiled_network_matches_whole_image_in_log_domain(speckled_tif, tmp_path, model_card, self_ensemble):
    tiled = despeckle(speckled_tif, tmp_path / "tiled.tif", model_card, tile=32, self_ensemble=self_ensemble)
    whole = despeckle(speckled_tif, tmp_path / "whole.tif", model_card, tile=512, self_ensemble=self_ensemble)
    valid = tiled > 0
    assert (tiled[:, :5] == 0).all() and valid[:, 5:].all()
    assert np.abs(np.log(tiled[valid]) - np.log(whole[valid])).max() < 1e-3


def test_self_ensemble_is_off_by_default_and_recorded(speckled_tif, tmp_path, model_card):
    default = despeckle(speckled_tif, tmp_path / "default.tif", model_card)
    mirrored = despeckle(speckled_tif, tmp_path / "mirrored.tif", model_card, self_ensemble=True)
    valid = default > 0
    assert np.abs(np.log(default[valid]) - np.log(mirrored[valid])).max() > 1e-3
    for name, expected in (("default.tif", False), ("mirrored.tif", True)):
        parameters = json.loads(raster_info(str(tmp_path / name)).metadata["SAR_DESPECKLE_PARAMETERS"])
        assert parameters["self_ensemble"] is expected


def test_output_records_the_model_and_its_checksum(speckled_tif, tmp_path, model_card):
    despeckle(speckled_tif, tmp_path / "out.tif", model_card)
    metadata = raster_info(str(tmp_path / "out.tif")).metadata
    card = json.load(open(model_card))
    assert metadata["SAR_DESPECKLE_METHOD"] == "tiny_unet"
    assert metadata["SAR_DESPECKLE_MODEL_SHA256"] == card["sha256"]


def test_tampered_weights_are_refused_and_nothing_written(speckled_tif, tmp_path, model_card):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(str(model_card).rsplit("/", 1)[0], folder)
    weights = folder / "tiny_unet.pt"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out.tif"
    with pytest.raises(SarDespeckleError, match="does not match its model card"):
        despeckle(speckled_tif, out, str(folder / "tiny_unet.json"))
    assert not out.exists()


def test_processing_run_with_model_card_and_user_folder(qgis_processing, speckled_tif, tmp_path, model_card):
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsApplication

    from sar_despeckle_plugin.processing.user_models import MODELS_FOLDER_SETTING

    out = str(tmp_path / "card.tif")
    qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "MODEL": model_card, "LOOKS": 1,
                                                     "OUTPUT": out})
    np.testing.assert_allclose(read_geotiff(out)[0], despeckle(speckled_tif, tmp_path / "core.tif", model_card),
                               rtol=1e-5)

    ProcessingConfig.setSettingValue(MODELS_FOLDER_SETTING, str(model_card).rsplit("/", 1)[0])
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("sar_despeckle:despeckle")
        options = algorithm.parameterDefinition("METHOD").options()
        index = next(i for i, label in enumerate(options) if label.startswith("tiny_unet"))
        assert index >= 7  # classical filters keep indices 0-6
        out = str(tmp_path / "method.tif")
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "METHOD": index, "LOOKS": 1,
                                                         "OUTPUT": out})
        assert raster_info(out).metadata["SAR_DESPECKLE_METHOD"] == "tiny_unet"
    finally:
        ProcessingConfig.setSettingValue(MODELS_FOLDER_SETTING, "")


def test_qgis_process_with_model_card(qgis_process, speckled_tif, tmp_path, model_card):
    out = str(tmp_path / "cli.tif")
    done = qgis_process("run", "sar_despeckle:despeckle", "--json", f"--INPUT={speckled_tif}",
                        f"--MODEL={model_card}", "--LOOKS=1", "--INPUT_UNITS=0", f"--OUTPUT={out}")
    assert json.loads(done.stdout[done.stdout.index("{"):])["results"]["OUTPUT"] == out
    # Another process may sum convolutions in another order: equal to float32 rounding.
    np.testing.assert_allclose(read_geotiff(out)[0], despeckle(speckled_tif, tmp_path / "core.tif", model_card),
                               rtol=1e-5)


def test_foreign_file_as_model_is_refused(qgis_processing, speckled_tif, tmp_path):
    from qgis.core import QgsProcessingException

    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}')
    with pytest.raises(QgsProcessingException, match="not a SAR Despeckle model card"):
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "MODEL": str(foreign),
                                                         "OUTPUT": str(tmp_path / "o.tif")})
    assert not (tmp_path / "o.tif").exists()


def test_progress_moves_within_a_tile_and_cancel_stops_there(speckled_tif, tmp_path, model_card):
    from sar_despeckle_plugin.core.errors import Cancelled
    from sar_despeckle_plugin.core.feedback import Feedback

    fractions = []
    despeckle_raster(speckled_tif, str(tmp_path / "one_tile.tif"),
                     DespeckleSettings(model_card=model_card, looks=1.0, units="intensity", self_ensemble=True),
                     Feedback(progress=fractions.append))
    within = [f for f in fractions if 0 < f < 1]
    assert len(set(within)) >= 5  # one tile (150 x 170), yet the bar moves layer by layer
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    reports = []
    cancel = Feedback(progress=reports.append, is_cancelled=lambda: len(reports) >= 2)
    with pytest.raises(Cancelled):
        despeckle_raster(speckled_tif, str(tmp_path / "cancelled.tif"),
                         DespeckleSettings(model_card=model_card, looks=1.0, units="intensity"), cancel)
    assert max(reports) < 1.0  # stopped inside the only tile
    assert not any(name.startswith((".cancelled", "cancelled")) for name in os.listdir(tmp_path))


def test_a_conditioned_network_of_correlated_speckle_reads_the_looks_per_pixel(tmp_path):
    """The shipped sarcnn_grdh (conditioned, trained on correlated speckle) reads the geometric
    mean of the block estimate and the estimate on every second pixel, which correlated speckle
    pulls apart; a white conditioned network (sarcnn_looks) reads the block estimate."""
    from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
    from sar_despeckle_plugin.core.feedback import Feedback
    from sar_despeckle_plugin.core.speckle import estimate_looks, pixel_looks
    from training.speckle_model import PRESETS

    rows, cols = np.mgrid[0:256, 0:256]
    scene = 1.0 + 0.5 * np.sin(rows / 30.0) * np.cos(cols / 45.0)
    intensity = PRESETS["sentinel1_iw_grdh_ee"].apply(scene, np.random.default_rng(5)).astype(np.float32)
    source = write_geotiff(str(tmp_path / "grdh.tif"), intensity)
    valid = np.ones(intensity.shape, bool)
    block, sparse = estimate_looks([intensity], [valid]), pixel_looks([intensity], [valid])
    assert block > 1.15 * sparse  # correlated speckle pulls the two apart
    for name, expected in (("sarcnn_grdh", (block * sparse) ** 0.5), ("sarcnn_looks", block)):
        messages = []
        despeckle_raster(str(source), str(tmp_path / f"{name}.tif"),
                         DespeckleSettings(units="intensity", method="network",
                                           model_card=os.path.join(SHIPPED_WEIGHTS, f"{name}.json")),
                         Feedback(info=messages.append, warn=messages.append))
        line = next(m for m in messages if "is conditioned on the looks" in m)
        assert f"it reads {expected:.2f} look(s)" in line, (line, block, sparse)
