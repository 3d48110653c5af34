"""The GPU path (core.accelerate) leaves the CPU as it was, and its precision rule: float16
keeps the shipped log-domain networks within 0.05 dB of float32, bfloat16 does not (measured
here with CPU autocast; scripts/device_check.py measures the GPU's own)."""

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


def test_nothing_changes_on_the_cpu(monkeypatch):
    monkeypatch.setenv(accelerate.COMPILE_VARIABLE, "1")
    network = torch.nn.Conv2d(1, 1, 3)
    forward = network.forward
    assert accelerate.choose_precision(lambda x: x, CPU) == (None, None)
    assert accelerate.maybe_compile(network, CPU) is False and network.forward == forward
    assert accelerate.batch_for_memory(lambda v, m: v, 1, 64, 17, CPU) == 1
    said = []
    assert accelerate.network_precision(None, 1.0, CPU, Feedback(info=said.append)) is None and said == []
    with accelerate.autocast(CPU, None):
        assert not torch.is_autocast_enabled("cpu")


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


@pytest.mark.parametrize("name", ["sarcnn_default", "sarcnn_looks"])
def test_float16_stays_within_the_limit_bfloat16_does_not(name):
    network = shipped_network(name)
    probe = accelerate.probe_image(CPU)
    float16 = accelerate.error_db(network, probe, torch.float16)
    bfloat16 = accelerate.error_db(network, probe, torch.bfloat16)
    assert 0 < float16 <= accelerate.MAX_ERROR_DB < bfloat16
