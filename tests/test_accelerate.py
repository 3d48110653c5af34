"""The device path (core.accelerate): its precision rule (a reduced precision is kept when it
moves the shipped log-domain networks' output by at most 0.05 dB RMS and 0.5 dB at any pixel of
the probe: float16 and bfloat16 both do, measured here with CPU autocast), bfloat16 on CPUs that
compute it natively, float32 on the others and whenever SAR_DESPECKLE_FLOAT32=1, nothing compiled
or batched on a CPU (scripts/device_check.py measures the GPU's own)."""

import pytest
import torch

from sar_despeckle_plugin.core import accelerate
from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.models.weights import load_model

CPU = torch.device("cpu")


def shipped_network(name):
    model = load_model(f"{SHIPPED_WEIGHTS}/{name}.json", CPU, input_kind="intensity")

    def run(images):
        return model.despeckle(images, torch.ones_like(images, dtype=torch.bool), float(images.median()), looks=1.0)

    return run


def test_a_cpu_without_native_bfloat16_runs_as_it_always_did(monkeypatch):
    monkeypatch.setattr(accelerate, "native_bfloat16_cpu", lambda: False)
    monkeypatch.setenv(accelerate.COMPILE_VARIABLE, "1")
    network = torch.nn.Conv2d(1, 1, 3)
    forward = network.forward
    assert accelerate.candidate_precisions(CPU) == ()
    assert accelerate.choose_precision(lambda x: x, CPU) == (None, None)
    assert accelerate.maybe_compile(network, CPU) is False and network.forward == forward
    assert accelerate.batch_for_memory(lambda v, m: v, 1, 64, 17, CPU) == 1
    said = []
    assert accelerate.network_precision(None, 1.0, CPU, Feedback(info=said.append)) is None and said == []
    with accelerate.autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu")


def test_a_cpu_with_native_bfloat16_runs_networks_in_it_unless_told_not_to(monkeypatch):
    monkeypatch.setattr(accelerate, "native_bfloat16_cpu", lambda: True)
    model = load_model(f"{SHIPPED_WEIGHTS}/sarcnn_default.json", CPU, input_kind="intensity")
    said = []
    assert accelerate.network_precision(model, 1.0, CPU, Feedback(info=said.append)) == torch.bfloat16
    assert len(said) == 1 and said[0].startswith("CPU inference in bfloat16") and accelerate.FLOAT32_VARIABLE in said[0]
    monkeypatch.setenv(accelerate.FLOAT32_VARIABLE, "1")
    assert accelerate.candidate_precisions(CPU) == ()
    assert accelerate.network_precision(model, 1.0, CPU, Feedback(info=said.append)) is None and len(said) == 1


def test_a_precision_that_moves_the_output_too_far_is_refused():
    def coarse(images):
        """A 'network' that cancels a large product, which autocast rounds to 8 bits: float32
        returns the probe itself, bfloat16 moves it by whole dB."""
        identity = torch.eye(images.shape[-1])
        return ((100 * images) @ identity - 99 * images).clamp_min(1e-3)

    probe = accelerate.probe_image(CPU)
    error = accelerate.precision_error(coarse, probe, torch.bfloat16)
    assert not error.within_bounds
    assert accelerate.choose_precision(coarse, CPU, candidates=(torch.bfloat16,)) == (None, error)
    assert accelerate.PrecisionError(0.05, 0.5).within_bounds
    assert not accelerate.PrecisionError(0.051, 0.1).within_bounds and not accelerate.PrecisionError(0.01, 0.51).within_bounds


def test_tiles_per_batch_from_memory():
    mib = 2 ** 20
    assert accelerate.tiles_per_batch(400 * mib, 10_000 * mib, 17) == 12  # half of the free memory
    assert accelerate.tiles_per_batch(400 * mib, 100_000 * mib, 17) == 17  # at most a strip's tiles
    assert accelerate.tiles_per_batch(400 * mib, 500 * mib, 17) == 1  # at least one
    assert accelerate.tiles_per_batch(0, 500 * mib, 5) == 5


def test_probe_is_fixed_and_leaves_the_random_state_alone():
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    first, second = accelerate.probe_image(CPU), accelerate.probe_image(CPU)
    assert torch.equal(first, second) and first.shape == (1, 1, 256, 256) and bool((first > 0).all())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert float(first.mean()) == pytest.approx(float(accelerate.probe_image(CPU, looks=4.0).mean()), rel=0.05)


@pytest.mark.parametrize("name", ["sarcnn_default", "sarcnn_looks", "sarcnn_grdh", "sarcnn_slc", "sarcnn_products"])
def test_both_reduced_precisions_stay_within_bounds_on_the_shipped_networks(name):
    network = shipped_network(name)
    probe = accelerate.probe_image(CPU)
    float16 = accelerate.precision_error(network, probe, torch.float16)
    bfloat16 = accelerate.precision_error(network, probe, torch.bfloat16)
    assert float16.within_bounds and bfloat16.within_bounds
    assert 0 < float16.rms_db < bfloat16.rms_db and float16.peak_db < bfloat16.peak_db  # float16 first on a GPU
