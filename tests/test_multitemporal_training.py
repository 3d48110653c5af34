"""The ``multitemporal`` training mode: Noise2Noise across dates after MTPI-Net, with change
masking (training/stack_data.py), and the log-residual U-Net's auxiliary channel it trains."""

import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.weights import load_model
from sar_despeckle_plugin.core.multitemporal.pipeline import despeckle_stack
from sar_despeckle_plugin.core.multitemporal.settings import MultitemporalSettings
from sar_despeckle_plugin.core.raster import raster_info
from training.cli import main
from training.config import ConfigError
from training.stack_data import stack_example
from training.tasks import make_task
from training.trainer import train

from .conftest import ROOT
from .synthetic import piecewise_scene, read_geotiff, write_geotiff
from .test_training import config
from .test_training import tiny as tiny_raw

TINY = os.path.join(ROOT, "training", "configs", "multitemporal_tiny.toml")


def tiny(**changes):
    """The tiny multitemporal config, with ``{"section.key": value}`` changes."""
    return config(tiny_raw(TINY, **changes))


def test_the_training_target_stays_out_of_the_inputs_and_its_changes_out_of_the_loss():
    rng = np.random.default_rng(0)
    scene = np.full((48, 48), 2.0)
    dates = np.stack([scene * rng.gamma(4, 0.25, scene.shape) for _ in range(3)])
    dates[2] *= 500.0  # the other date (the Noise2Noise target) differs everywhere
    item = stack_example(dates, [4.0] * 3, target=0, other=2)
    assert item["auxiliary"].max() < 20  # built from date 2 (index 1) alone, at date 1's level
    assert item["mask"].sum() == 0  # nothing of a date that changed everywhere is learned
    assert float(item["auxiliary_looks"]) == 4.0
    dates[2] /= 500.0
    dates[2, 10:30, 10:30] *= 8.0  # now only a square changed
    mask = stack_example(dates, [4.0] * 3, target=0, other=2)["mask"][0]
    assert mask[14:26, 14:26].mean() < 0.05 and mask[35:, :].mean() > 0.95


def test_the_mode_and_the_auxiliary_channel_go_together():
    with pytest.raises(ConfigError, match="auxiliary_channels = 1"):
        tiny(**{"model.hyperparameters": {"widths": [8, 8], "convs_per_level": 1, "looks": 2,
                                          "condition_channels": 1}})
    with pytest.raises(ConfigError, match="auxiliary_channels = 1"):
        tiny(**{"train.mode": "supervised"})
    with pytest.raises(ValueError, match="auxiliary_channels must be 0 or 1"):
        build_model("log_residual", auxiliary_channels=2)


def test_tiny_run_learns_from_other_dates_and_exports_a_stack_network(tmp_path):
    config = tiny()
    task = make_task(config)
    torch.manual_seed(config.train.seed)
    before = task.validate(task.build_model(), torch.device("cpu"))
    model = train(config, str(tmp_path / "run"), log=lambda message: None)
    after = task.validate(model, torch.device("cpu"))
    assert after["psnr"] > before["psnr"] + 3 and after["psnr"] > after["psnr_input"]
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--name", "tiny_stack",
                 "--to", str(tmp_path / "models")]) == 0
    card_path = str(tmp_path / "models" / "tiny_stack.json")
    with pytest.raises(Exception, match="needed here"):
        load_model(card_path, input_kind="intensity")  # not offered as a single-date despeckler
    loaded = load_model(card_path, input_kind="stack")
    assert loaded.card.hyperparameters["auxiliary_channels"] == 1 and loaded.card.macs_per_pixel > 0
    example = task.examples[0]
    estimate = loaded.module.despeckle(example["target"], example["reference"], example["looks"],
                                       example["auxiliary"], example["auxiliary_looks"])
    assert estimate.shape == example["target"].shape and bool((estimate > 0).all())
    # and METHOD learned runs it on a stack of files, dual-pol, tile by tile as the whole image
    rng = np.random.default_rng(1)
    scene = piecewise_scene(70, 90, seed=4)
    paths = [write_geotiff(str(tmp_path / f"d{t}.tif"), np.stack([scene, 0.2 * scene]) * rng.gamma(2, 0.5, (2, 70, 90)))
             for t in range(3)]
    outputs = []
    for tile in (None, 64):
        outputs.append(str(tmp_path / f"learned_{tile}.tif"))
        despeckle_stack(paths, outputs[-1], MultitemporalSettings(method="learned", layout="dual", looks=(2.0,),
                                                                   units="intensity", model=card_path, tile=tile))
    whole, tiled = read_geotiff(outputs[0]), read_geotiff(outputs[1])
    assert whole.shape == (6, 70, 90) and (whole > 0).all()
    np.testing.assert_allclose(tiled, whole, rtol=2e-3)
    assert raster_info(outputs[0]).metadata["SAR_DESPECKLE_MODEL"] == "tiny_stack"
