"""One held-out benchmark protocol: `python -m training evaluate` and scripts/bench_networks.py
draw the same speckle for a seed and score the same PSNR (training/benchmark.py)."""

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.models.card import ModelCard
from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.weights import save_model, sha256_of
from training import benchmark
from training.evaluate import evaluate, protocol_means, write_card_metrics

from .synthetic import piecewise_scene

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two small clean amplitude references (.npy) and a small untrained network's card."""
    folder = tmp_path_factory.mktemp("bench")
    paths = []
    for index, name in enumerate(("marais2", "ramb")):
        amplitude = np.sqrt(piecewise_scene(48, 40, seed=index)).astype(np.float64)
        paths.append(str(folder / f"{name}.npy"))
        np.save(paths[-1], amplitude)
    torch.manual_seed(0)
    module = build_model("log_residual", widths=[4, 8], convs_per_level=1, looks=1)
    card = save_model(module, ModelCard(name="tiny_unet", architecture="log_residual", hyperparameters={}),
                      str(folder))
    return paths, card


def bench_networks():
    spec = importlib.util.spec_from_file_location("bench_networks", os.path.join(ROOT, "scripts", "bench_networks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_protocol_pins_its_speckle_draws(tiny):
    paths, _ = tiny
    pairs = list(benchmark.held_out_pairs(paths, 3, rows=(8, 40)))
    for index, (position, _, clean, noisy) in enumerate(pairs):
        amplitude = np.load(paths[index])[8:40].astype(np.float32)
        expected = amplitude ** 2 * np.random.default_rng([3, index]).gamma(1.0, 1.0, amplitude.shape)
        assert position == index and clean.dtype == noisy.dtype == np.float32
        np.testing.assert_allclose(noisy, expected, rtol=1e-6)
    again = list(benchmark.held_out_pairs(paths, 3, rows=(8, 40)))
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(pairs, again))
    other = list(benchmark.held_out_pairs(paths, 4, rows=(8, 40)))
    assert not np.array_equal(pairs[0][3], other[0][3])


def test_evaluate_and_bench_networks_score_the_same(tiny, tmp_path, monkeypatch):
    paths, card = tiny
    seen = []
    real_score = benchmark.score

    def spy(estimate, clean):
        seen.append(np.asarray(clean).copy())
        return real_score(estimate, clean)

    bench = bench_networks()
    monkeypatch.setattr(bench, "score", spy)
    table = bench.full_reference({"tiny": {"model_card": card}}, str(tmp_path), 5, paths, rows=(8, 40),
                                 compare=False)
    records = evaluate(card, paths, "amplitude", 1.0, 5, rows="8:40")
    assert [r["seed"] for r in records] == [5, 5]
    for record, name in zip(records, ("marais2", "ramb")):
        # the same images, despeckled by the same file pipeline, scored the same way
        assert table["tiny"][name] == (record["psnr"], record["ssim"])
    pairs = list(benchmark.held_out_pairs(paths, 5, rows=(8, 40)))
    assert all(np.array_equal(a, p[2]) for a, p in zip(seen, pairs))


def test_card_metrics_record_the_protocol_and_keep_the_weights(tiny, tmp_path):
    paths, card = tiny
    copy = tmp_path / "tiny_unet.json"
    copy.write_text(open(card).read())
    os.link(os.path.join(os.path.dirname(card), "tiny_unet.pt"), tmp_path / "tiny_unet.pt")
    before = sha256_of(str(tmp_path / "tiny_unet.pt"))
    records = evaluate(str(copy), paths, "amplitude", 1.0, 0, rows="8:40", seeds=[0, 1])
    metrics = write_card_metrics(str(copy), records, 1.0, True)
    written = json.loads(copy.read_text())
    assert written["metrics"] == metrics and written["sha256"] == before == sha256_of(str(tmp_path / "tiny_unet.pt"))
    assert metrics["psnr"] == pytest.approx(protocol_means(records)["psnr"])
    assert "seeds 0, 1" in metrics["measured_on"] and "SELF_ENSEMBLE on" in metrics["measured_on"]
