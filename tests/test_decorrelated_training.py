"""decorrelate -> prepare -> blind-spot training: the chain the blind-spot network needs."""

import json
import os

import numpy as np
import tomllib

from sar_despeckle_plugin.core.decorrelation.pipeline import decorrelate_raster
from sar_despeckle_plugin.core.decorrelation.settings import DecorrelationOutputs, DecorrelationSettings
from training.config import config_from_dict
from training.prepare import PrepareOptions, prepare
from training.trainer import train

from .conftest import ROOT
from .slc_data import Axis, synthetic_slc
from .synthetic import read_geotiff

CONFIG = os.path.join(ROOT, "training", "configs", "blind_spot_decorrelated.toml")


def write_complex(path, slc):
    from osgeo import gdal

    dataset = gdal.GetDriverByName("GTiff").Create(str(path), slc.shape[1], slc.shape[0], 1, gdal.GDT_CFloat32)
    dataset.GetRasterBand(1).WriteArray(slc)
    dataset = None
    return str(path)


def lag1(intensity: np.ndarray, axis: int) -> float:
    centred = intensity - intensity.mean()
    a = np.take(centred, range(centred.shape[axis] - 1), axis=axis)
    b = np.take(centred, range(1, centred.shape[axis]), axis=axis)
    return float((a * b).mean() / centred.var())


def test_blind_spot_trains_on_decorrelated_slc(tmp_path):
    slc = synthetic_slc(256, 256, Axis("hamming", 1 / 1.4, 0.2), Axis("kaiser", 1 / 1.3), seed=4)
    source = write_complex(tmp_path / "slc.tif", slc)
    report = decorrelate_raster(source, DecorrelationOutputs(str(tmp_path / "white.tif"),
                                                         intensity=str(tmp_path / "white_intensity.tif")),
                                DecorrelationSettings(resample=True))
    intensity = read_geotiff(str(tmp_path / "white_intensity.tif"))[0]
    raw = np.abs(slc) ** 2
    # Correlated speckle in, white speckle out (intensity correlation = |complex correlation|^2).
    assert min(lag1(raw, 0), lag1(raw, 1)) > 0.1
    assert max(abs(lag1(intensity, 0)), abs(lag1(intensity, 1))) < 0.05
    assert report["intensity_output"].endswith("white_intensity.tif")

    patches = str(tmp_path / "decorrelated.npz")
    prepare([str(tmp_path / "white_intensity.tif")], PrepareOptions("single_look", patch=32, stride=16), patches)

    with open(CONFIG, "rb") as handle:
        raw_config = tomllib.load(handle)
    raw_config["model"]["hyperparameters"] = {"widths": [4, 8], "head_width": 8, "looks": 1}
    raw_config["data"].update(patch=32, samples_per_epoch=32, train=[{"path": patches}], validation=[{"path": patches}])
    raw_config["train"].update(epochs=1, batch_size=8, warmup_steps=0, threads=1, log_every=1)
    model = train(config_from_dict(raw_config, os.path.dirname(CONFIG), "decorrelated"), str(tmp_path / "run"),
                  log=lambda message: None)
    rows = json.load(open(tmp_path / "run" / "metrics.json"))["rows"]
    assert model.architecture == "blind_spot"
    assert any(r["split"] == "validation" for r in rows) and all(np.isfinite(r["loss"]) for r in rows)
