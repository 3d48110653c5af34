"""The held-out benchmark protocol: one for ``python -m training evaluate``,
``scripts/bench_networks.py`` (``make bench``, docs/benchmarks.md), the model card's measured
``metrics`` (``evaluate --write-card``, run by ``make weights``) and the figures in the docs.

* References: the speckle-free Sentinel-1 references ``marais2``, ``ramb``, ``risoul``
  (``../shared/data/telecom_paris_clean``, amplitude), held-out rows 300-500 (the shipped
  despeckler trains on rows 0-300); loaded with ``training.data.load_image_source`` as linear
  intensity, float32.
* Speckle: Gamma(L, 1/L) with L = 1 on the intensity, drawn by :func:`draw_speckle` from
  ``numpy.random.default_rng([seed, index])`` (``index``: the reference's position in the list),
  for the ten seeds 0-9; scores are averaged over references, then over seeds. The multi-look
  benchmark (``scripts/bench_multilook.py``) draws other looks, or a product's correlated speckle
  (a ``training.speckle_model.SpeckleModel``, e.g. the ``sentinel1_iw_grdh`` preset), from the
  same generators.
* Despeckling: :func:`despeckle_array`, through the plugin's file pipeline
  (``core.despeckle.pipeline.despeckle_raster``, GeoTIFF to GeoTIFF, tiled) exactly as the
  plugin runs it, LOOKS = L, INPUT_UNITS intensity.
* Scores: :func:`score`, PSNR (dB) and SSIM on amplitude, peak = 99th percentile of the
  reference (``training.metrics``), of the network as the plugin runs it by default (the
  mirrored pass averaged in, SELF_ENSEMBLE on) and of the noisy input.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
from osgeo import gdal

from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings

from .config import SourceConfig
from .data import load_image_source, speckled
from .metrics import psnr_amplitude, ssim_amplitude

#: The clean references (file stems) and where they live.
REFERENCES = ("marais2", "ramb", "risoul")
REFERENCE_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                                "shared", "data", "telecom_paris_clean")
#: Held-out rows [start, stop) of every reference.
HELD_OUT_ROWS = (300, 500)
#: Speckle seeds averaged over, and the looks of the speckle.
SEEDS = tuple(range(10))
LOOKS = 1.0
#: What the protocol measures, as the card's ``metrics`` say it.
DEFINITION = ("PSNR (dB) / SSIM on amplitude, peak = 99th percentile of the reference, mean over the "
              "references and over the speckle seeds; psnr_input / ssim_input = the noisy input's")


def reference_paths(folder: str = REFERENCE_FOLDER) -> list[str]:
    return [os.path.normpath(os.path.join(folder, f"{name}.npy")) for name in REFERENCES]


def load_reference(path: str, rows=HELD_OUT_ROWS, cols=(), units: str = "amplitude") -> tuple[np.ndarray, str]:
    """A clean reference (rows x cols region) as (H, W) float32 linear intensity, and its description."""
    source = SourceConfig(path=os.path.abspath(path), kind="clean", units=units, rows=list(rows), cols=list(cols))
    return load_image_source(source).images[0][0], source.describe()


def draw_speckle(clean: np.ndarray, looks: float, seed: int, index: int, model=None) -> np.ndarray:
    """``clean`` intensity times the protocol's Gamma(L, 1/L) speckle for ``seed`` and the
    reference at ``index`` (float32): every code path that benchmarks draws through here.
    ``model`` (a :class:`training.speckle_model.SpeckleModel`): its speckle instead (``looks``
    unused), drawn from the same generator (``SpeckleModel.apply``)."""
    rng = np.random.default_rng([seed, index])
    return speckled(clean, looks, rng) if model is None else model.apply(clean, rng)


def score(estimate, clean) -> tuple[float, float]:
    """(PSNR, SSIM) on amplitude of an intensity estimate against the clean intensity."""
    estimate, clean = torch.as_tensor(np.asarray(estimate)), torch.as_tensor(np.asarray(clean))
    return psnr_amplitude(estimate, clean), ssim_amplitude(estimate, clean)


def held_out_pairs(paths, seed: int, looks: float = LOOKS, rows=HELD_OUT_ROWS, cols=(), units: str = "amplitude",
                   model=None):
    """(index, description, clean, noisy) for each reference of ``paths``: its region as float32
    linear intensity and the protocol's speckle draw on it for ``seed`` (``model``: see
    :func:`draw_speckle`)."""
    for index, path in enumerate(paths):
        clean, description = load_reference(path, rows, cols, units)
        yield index, description, clean, draw_speckle(clean, looks, seed, index, model)


def write_tif(path: str, intensity: np.ndarray) -> str:
    """A float32 GeoTIFF of ``intensity`` (rows, cols) or (bands, rows, cols)."""
    bands = intensity[None] if intensity.ndim == 2 else intensity
    dataset = gdal.GetDriverByName("GTiff").Create(path, bands.shape[2], bands.shape[1], bands.shape[0],
                                                   gdal.GDT_Float32)
    for index, band in enumerate(bands):
        dataset.GetRasterBand(index + 1).WriteArray(band.astype(np.float32))
    dataset = None
    return path


def despeckle_array(intensity: np.ndarray, folder: str | None = None, looks: float | None = LOOKS,
                    device: str = "cpu", metadata: dict | None = None, **settings) -> np.ndarray:
    """Despeckle a linear-intensity array through the plugin's file pipeline (``settings``:
    :class:`DespeckleSettings` fields, e.g. ``model_card``, ``self_ensemble``, ``method``;
    ``looks`` None: estimated, as a run without LOOKS does). ``metadata``: a dict to receive the
    output's metadata items (``SAR_DESPECKLE_METHOD``, ``..._PARAMETERS``, ``..._LOOKS``: what
    the run used, e.g. what METHOD = Automatic chose)."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        source = write_tif(os.path.join(scratch, "in.tif"), intensity)
        out = os.path.join(scratch, "out.tif")
        despeckle_raster(source, out, DespeckleSettings(units="intensity", looks=looks, device=device, **settings))
        dataset = gdal.Open(out)
        estimate = dataset.GetRasterBand(1).ReadAsArray().astype(np.float64)
        if metadata is not None:
            metadata.update(dataset.GetMetadata())
        dataset = None
    return estimate
