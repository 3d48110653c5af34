"""The CUDA subset (scripts/device_check.sh runs it on a lent GPU; skipped without one): a
GPU run equals the CPU run, within the reduced-precision bound for networks."""

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core import accelerate
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.models.weights import load_model

from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
QUIET = Feedback(warn=lambda message: None)


@pytest.fixture
def scene_tif(tmp_path):
    """A 1-look intensity scene wider than one tile, so a strip holds several tiles."""
    return write_geotiff(str(tmp_path / "scene.tif"), speckle(piecewise_scene(700, 2300, seed=4), 1.0, seed=5))


def run_on(device, path, folder, **settings):
    out = str(folder / f"{device}.tif")
    report = despeckle_raster(path, out, DespeckleSettings(device=device, looks=1.0, units="intensity", **settings), QUIET)
    assert report.device == device
    return read_geotiff(out)


def test_network_on_the_gpu_equals_the_cpu_within_the_precision_bound(scene_tif, tmp_path, monkeypatch):
    card = f"{SHIPPED_WEIGHTS}/sarcnn_default.json"
    messages = []
    gpu_out = str(tmp_path / "gpu.tif")
    despeckle_raster(scene_tif, gpu_out, DespeckleSettings(device="cuda", model_card=card, looks=1.0,
                                                          units="intensity"), Feedback(info=messages.append))
    assert any("GPU inference in float16" in m for m in messages), messages
    monkeypatch.setenv(accelerate.FLOAT32_VARIABLE, "1")  # the CPU reference in float32
    cpu = run_on("cpu", scene_tif, tmp_path, model_card=card)
    difference_db = np.abs(10 * np.log10(read_geotiff(gpu_out) / cpu))
    assert difference_db.max() <= 0.1  # float16 moves the probe's pixels by 0.03 dB at most: margin for other content
    assert np.sqrt(np.mean(difference_db ** 2)) <= accelerate.MAX_RMS_ERROR_DB / 2


def test_classical_filter_on_the_gpu_equals_the_cpu(scene_tif, tmp_path):
    np.testing.assert_allclose(run_on("cuda", scene_tif, tmp_path, method="lee", window=7),
                               run_on("cpu", scene_tif, tmp_path, method="lee", window=7), rtol=1e-5, atol=1e-7)


def test_shipped_networks_take_float16_and_batches_fill_the_gpu():
    device = torch.device("cuda")
    for name in ("sarcnn_default", "sarcnn_looks", "sarcnn_grdh"):
        model = load_model(f"{SHIPPED_WEIGHTS}/{name}.json", device, input_kind="intensity")

        def run(images):
            return model.despeckle(images, torch.ones_like(images, dtype=torch.bool), float(images.median()), looks=1.0)

        precision, error = accelerate.choose_precision(run, device)
        assert precision == torch.float16 and error.within_bounds and error.peak_db < 0.1, (name, error)
    assert accelerate.batch_for_memory(lambda v, m: torch.nn.functional.avg_pool2d(v, 3, 1, 1), 1, 1088, 25, device) > 1


def test_change_detection_on_the_gpu_equals_the_cpu(tmp_path):
    scene = piecewise_scene(300, 400, seed=6)
    change = np.where(np.arange(400) > 250, 8.0, 1.0).astype(np.float32)  # date 2 brighter on the right
    dates = [write_geotiff(str(tmp_path / f"d{t}.tif"), speckle(scene * (change if t else 1), 4.0, seed=t))
             for t in range(2)]
    masks = {}
    for device in ("cpu", "cuda"):
        masks[device] = str(tmp_path / f"mask_{device}.tif")
        detect_changes(dates, ChangeOutputs(change_mask=masks[device]),
                       ChangeSettings(looks=(4.0,), units="intensity", device=device), QUIET)
    cpu, gpu = read_geotiff(masks["cpu"]), read_geotiff(masks["cuda"])
    assert (cpu != gpu).mean() < 1e-3
