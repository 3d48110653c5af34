"""training/: configs, data preparation, the training loop (all modes, resume, DDP), export,
evaluation and metrics -- on tiny synthetic data, a few seconds each."""

import copy
import json
import os
import re
import socket
import tomllib

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from osgeo import gdal

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.weights import load_model
from training.checkpoints import load_checkpoint
from training.cli import main
from training.config import ConfigError, config_from_dict, load_config
from training.evaluate import evaluate
from training.export import export
from training.metrics import psnr_amplitude, ssim_amplitude
from training.prepare import PrepareOptions, prepare
from training.scenes import POINT_SCATTERER_LN, piecewise_smooth_scene, point_scatterers, urban_scene
from training.tasks import make_task
from training.trainer import learning_rate, mixed_precision, train

from .conftest import ROOT
from .synthetic import piecewise_scene, speckle, write_geotiff

TINY = os.path.join(ROOT, "training", "configs", "tiny_test.toml")


def tiny(path: str = TINY, **changes):
    """The tiny test config (``path``) as a dict, with ``{"section.key": value}`` changes."""
    with open(path, "rb") as handle:
        raw = tomllib.load(handle)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    return raw


def config(raw, folder=None):
    return config_from_dict(copy.deepcopy(raw), folder or os.path.dirname(TINY), "tiny")


def silent(message):
    pass


# ---------------------------------------------------------------------------------------------
# Configs


def test_shipped_configs_parse_and_state_their_budget():
    """Every config `make weights` trains (read from the Makefile's recipe), the examples and a trial."""
    folder = os.path.join(ROOT, "training", "configs")
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as handle:
        recipe = handle.read().split("\nweights:", 1)[1].split("\n\n", 1)[0]
    weights = sorted(set(re.findall(r"training/configs/(\w+)\.toml", recipe)))
    assert {"sarcnn_default", "sarcnn_looks", "sarcnn_grdh", "sarcnn_grdh_mixed", "sarcnn_grdh_looks", "sarcnn_slc", "sarcnn_products", "sarcnn_stack",
            "change_default", "change_single"} <= set(weights)
    names = ("tiny_test", "blind_spot", "contrastive_pretrain", "sarcnn_wide", *weights)
    for name in names:
        path = os.path.join(folder, name + ".toml")
        raw = tomllib.load(open(path, "rb"))
        assert raw["train"]["mode"] in ("supervised", "blind_spot", "contrastive", "change", "multitemporal",
                                        "multitask")
        if name != "tiny_test":
            assert raw["train"]["time_budget_minutes"] > 0
        if name.startswith("sarcnn_"):  # the held-out protocol: rows 300-499 never trained on
            assert all(s.get("rows") == [0, 300] for s in raw["data"]["train"]), name
        if os.path.isdir(os.path.join(os.path.dirname(ROOT), "shared", "data")) or name == "tiny_test":
            init_from = raw["train"].get("init_from", "")
            checkpoint = init_from.endswith(".pt")  # else a model card's name or path
            if not checkpoint or os.path.isfile(os.path.join(folder, init_from)):
                load_config(path)
            else:  # a later stage, before the run it starts from exists
                with pytest.raises(ConfigError, match="init_from"):
                    load_config(path)
    for stage in ("sarcnn_default", "sarcnn_default_scatterers"):
        default = tomllib.load(open(os.path.join(folder, stage + ".toml"), "rb"))
        assert all(s["rows"] == [0, 300] for s in default["data"]["train"])
        assert all(s["rows"] == [300, 500] for s in default["data"]["validation"])
    stage_two = tomllib.load(open(os.path.join(folder, "sarcnn_default_scatterers.toml"), "rb"))
    assert stage_two["train"]["init_from"] == "../../build/runs/sarcnn_default/last.pt"  # make weights' stage 1
    assert stage_two["data"]["point_scatterers"] > 0


@pytest.mark.parametrize("changes, message", [
    ({"train.learning_rat": 0.1}, "Unknown key 'learning_rat' in \\[train\\] \\(did you mean 'learning_rate'\\?\\)"),
    ({"train.epochs": "ten"}, "\\[train\\].epochs must be of type int"),
    ({"train.mode": "supervize"}, "did you mean 'supervised'"),
    ({"model.architecture": "unet"}, "architecture 'unet' is unknown"),
    ({"model.hyperparameters": {"widths": [8], "depth": 3}}, "unknown hyperparameter"),
    ({"data.looks": 4}, "must equal \\[data\\].looks"),
    ({"data.train": [{"path": "missing.npy"}]}, "missing.npy' does not exist"),
    ({"data.train": [{"path": "a.npy", "synthetic": 3}]}, "exactly one of 'path' and 'synthetic'"),
    ({"data.train": [{"synthetic": 3, "scene": "city"}]}, "scene must be one of \\('countryside', 'urban'\\)"),
    ({"data.validation": []}, "validation lists no sources"),
    ({"data.point_scatterers": 1.5}, "point_scatterers has an impossible value"),
    ({"train.init_from": "nowhere.pt"}, "init_from: checkpoint"),
])
def test_bad_configs_are_refused_clearly(changes, message):
    with pytest.raises(ConfigError, match=message):
        config(tiny(**changes))


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(open(TINY).read().replace("batch_size = 8", "batchsize = 8"))
    assert main(["train", "--config", str(path), "--output", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Unknown key 'batchsize'") and "Traceback" not in error
    path.write_text("[train\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_mixed_precision_choices():
    assert mixed_precision("auto", torch.device("cpu")) is None
    assert mixed_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        mixed_precision("fp16", torch.device("cpu"))


def test_urban_scenes_are_reproducible_built_up_and_heavy_tailed():
    first, again = urban_scene(128, np.random.default_rng(3)), urban_scene(128, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and first.shape == (128, 128) and (first > 0).all()
    for seed in range(4):
        urban, countryside = (scene(128, np.random.default_rng(seed)) for scene in (urban_scene, piecewise_smooth_scene))
        tail = [np.quantile(image, 0.999) / np.median(image) for image in (urban, countryside)]
        assert tail[0] > 3 * tail[1]  # bright walls and scatterers
    patches = make_task(config(tiny(**{"data.train": [{"synthetic": 2, "scene": "urban", "side": 64, "seed": 1}]})))
    assert patches.data_description()["train"] == ["2 synthetic urban scenes 64x64 (seed 1)"]


def test_point_scatterers_are_isolated_strong_unspeckled_and_as_frequent_as_asked():
    flat = np.full((200, 300), 2.0, np.float32)
    scatterers = point_scatterers(flat, 0.01, np.random.default_rng(0))
    assert scatterers.dtype == np.float32 and scatterers.shape == flat.shape
    gain = scatterers[scatterers > 0] / 2.0
    assert 400 < gain.size < 800  # Poisson around 0.01 x 60000 (a few draws may coincide)
    low, high = np.exp(POINT_SCATTERER_LN)
    assert gain.min() >= low * 0.999 and gain.max() <= high * 1.001
    task = make_task(config(tiny(**{"data.point_scatterers": 0.02})))
    assert "unspeckled single-pixel point scatterers (20-403 x the reflectivity) on 2.000%" in \
        task.data_description()["speckle"]
    patches = [task.train_dataset()[i] for i in range(8)]
    plain_dataset = make_task(config(tiny())).train_dataset()
    plain = [plain_dataset[i] for i in range(8)]
    clean = np.stack([p["clean"].numpy() for p in patches])
    peaks = isolated_peaks(clean)
    assert peaks.mean() > 0.01 > 10 * isolated_peaks(np.stack([p["clean"].numpy() for p in plain])).mean()
    # scatterers are added after the speckle: the observed value is at least the scatterer's
    noisy = np.stack([p["noisy"].numpy() for p in patches])
    assert (noisy[peaks] >= 0.9 * clean[peaks]).all()
    assert np.median(noisy[peaks] / clean[peaks]) < 1.2  # not speckled: Exp(1) would spread them


def isolated_peaks(images: np.ndarray) -> np.ndarray:
    """Where the pixels of (..., H, W) images are over 10 x all eight neighbours (boolean)."""
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    rows, cols = images.shape[-2:]
    neighbours = [padded[..., 1 + dr: 1 + dr + rows, 1 + dc: 1 + dc + cols]
                  for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    return images > 10 * np.max(neighbours, axis=0)


# ---------------------------------------------------------------------------------------------
# Training


def test_tiny_supervised_run_lowers_validation_loss(tmp_path):
    cfg = config(tiny())
    task = make_task(cfg)
    torch.manual_seed(cfg.train.seed)
    before = task.validate(task.build_model(), torch.device("cpu"))
    model = train(cfg, str(tmp_path), log=silent)
    after = task.validate(model, torch.device("cpu"))
    assert after["loss"] < 0.8 * before["loss"]
    assert after["psnr"] > before["psnr"]
    rows = json.load(open(tmp_path / "metrics.json"))["rows"]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [8, 16]
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(2, 17, 2))
    header = open(tmp_path / "metrics.csv").readline().strip().split(",")
    assert header[:4] == ["epoch", "step", "split", "loss"]
    assert {"best.pt", "last.pt", "config.json"} <= set(os.listdir(tmp_path))
    best = load_checkpoint(str(tmp_path / "best.pt"))
    assert best["step"] == 16 and best["best"]["psnr"] == pytest.approx(after["psnr"], rel=1e-5)


def test_resume_continues_exactly_from_the_checkpoint(tmp_path):
    straight = train(config(tiny()), str(tmp_path / "straight"), log=silent)
    train(config(tiny(**{"train.epochs": 1})), str(tmp_path / "split"), log=silent)
    with pytest.raises(SarDespeckleError, match="already holds a run"):
        train(config(tiny()), str(tmp_path / "split"), log=silent)
    with pytest.raises(ConfigError, match="differs from the checkpoint's in train.learning_rate"):
        train(config(tiny(**{"train.learning_rate": 0.1})), str(tmp_path / "split"), resume=True, log=silent)
    resumed = train(config(tiny()), str(tmp_path / "split"), resume=True, log=silent)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    rows = json.load(open(tmp_path / "split" / "metrics.json"))["rows"]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [8, 16]


def test_time_budget_stops_and_checkpoints_and_resumes_exactly(tmp_path):
    cfg = config(tiny(**{"train.epochs": 50, "train.time_budget_minutes": 1e-9}))
    train(cfg, str(tmp_path / "run"), log=silent)
    summary = json.load(open(tmp_path / "run" / "metrics.json"))["summary"]
    assert summary["stopped_by_time_budget"] and summary["steps"] == 1
    last = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert (last["epoch"], last["epoch_step"], last["step"]) == (0, 1, 1)  # stopped in the middle of epoch 1
    with pytest.raises(SarDespeckleError, match="used its .*budget"):
        train(cfg, str(tmp_path / "run"), resume=True, log=silent)
    more = config(tiny(**{"train.epochs": 2, "train.time_budget_minutes": 10.0}))
    resumed = train(more, str(tmp_path / "run"), resume=True, log=silent)
    summary = json.load(open(tmp_path / "run" / "metrics.json"))["summary"]
    assert summary["steps"] == 16 and summary["planned_epochs"] == 2 and not summary["stopped_by_time_budget"]
    # the rest of epoch 1, then epoch 2: the same model as a run never stopped
    straight = train(config(tiny()), str(tmp_path / "straight"), log=silent)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)


def test_learning_rate_schedule_is_a_function_of_the_step_and_the_plan():
    cfg = config(tiny(**{"train.schedule": "cosine", "train.warmup_steps": 10, "train.learning_rate": 1.0}))
    assert learning_rate(cfg, 0, 110) == pytest.approx(0.1)
    assert learning_rate(cfg, 10, 110) == pytest.approx(1.0)
    assert learning_rate(cfg, 60, 110) == pytest.approx(0.5)
    assert learning_rate(cfg, 110, 110) == pytest.approx(0.0)
    # a time budget's plan made within the warm-up: the plain cosine decay over the planned steps
    assert learning_rate(cfg, 35, 110, 8, 60) == pytest.approx(0.5)
    assert learning_rate(cfg, 60, 110, 8, 60) == pytest.approx(0.0)
    # made after it: the decay goes on continuously from where it was to 0 at the planned end
    before = learning_rate(cfg, 20, 110)
    assert learning_rate(cfg, 20, 110, 20, 60) == pytest.approx(before)
    assert learning_rate(cfg, 40, 110, 20, 60) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.55)))
    assert learning_rate(cfg, 60, 110, 20, 60) == pytest.approx(0.0)


def test_time_budget_plans_epochs_once_and_records_it(tmp_path):
    """The budget becomes a number of epochs after the first one; the schedule and the stop then
    depend on the steps only, and a resume keeps the plan."""
    raw = tiny(**{"train.epochs": 6, "train.time_budget_minutes": 10.0, "train.schedule": "cosine"})
    messages = []
    train(config(raw), str(tmp_path / "run"), log=messages.append)
    plan = load_checkpoint(str(tmp_path / "run" / "last.pt"))["budget_plan"]
    assert plan["from_step"] == 8 and plan["epoch_seconds"] > 0 and plan["epochs"] == 6
    assert any("so the run trains 6 epochs (of 6 configured)" in m for m in messages)
    summary = json.load(open(tmp_path / "run" / "metrics.json"))["summary"]
    assert summary["planned_epochs"] == 6 and summary["budget_plan"] == plan
    rates = [r["learning_rate"] for r in json.load(open(tmp_path / "run" / "metrics.json"))["rows"]
             if r["split"] == "train"]
    cfg = config(raw)
    assert rates == pytest.approx([learning_rate(cfg, step - 1, 48, 8, 48) for step in range(2, 49, 2)])
    # a budget that allows two epochs of the measured length: the schedule ends at epoch 2
    from training.trainer import plan_epochs
    assert plan_epochs(cfg, 290.0) == 2 and plan_epochs(cfg, 1e6) == 1 and plan_epochs(cfg, 1e-3) == 6


def write_speckled_geotiff(path, height=96, width=96, seed=0):
    image = speckle(piecewise_scene(height, width, seed), 1.0, seed + 1)
    image[:10, :10] = -9999.0  # a nodata corner
    return write_geotiff(str(path), image, nodata=-9999.0), image


def test_blind_spot_run_on_prepared_single_look_patches(tmp_path):
    tif, _ = write_speckled_geotiff(tmp_path / "single.tif")
    prepare([tif], PrepareOptions("single_look", patch=32, stride=16), str(tmp_path / "single.npz"))
    raw = tiny(**{
        "model.architecture": "blind_spot",
        "model.hyperparameters": {"widths": [4, 8], "head_width": 8, "looks": 1},
        "train.mode": "blind_spot",
        "data.train": [{"path": str(tmp_path / "single.npz")}],
        "data.validation": [{"synthetic": 1, "side": 64, "seed": 2}, {"path": str(tmp_path / "single.npz")}],
    })
    model = train(config(raw), str(tmp_path / "run"), log=silent)
    rows = json.load(open(tmp_path / "run" / "metrics.json"))["rows"]
    validation = [r for r in rows if r["split"] == "validation"]
    assert len(validation) == 2 and all(np.isfinite(r["loss"]) and np.isfinite(r["psnr"]) for r in validation)
    assert model.architecture == "blind_spot"


def test_contrastive_pretraining_then_fine_tuning(tmp_path, capsys):
    raw = tiny(**{"train.mode": "contrastive", "train.epochs": 1, "data.samples_per_epoch": 32})
    raw["contrastive"] = {"temperature": 0.2, "projection_width": 16}
    pretrained = train(config(raw), str(tmp_path / "pre"), log=silent)
    assert not hasattr(pretrained, "decode")  # the encoder and its projection head only
    rows = json.load(open(tmp_path / "pre" / "metrics.json"))["rows"]
    assert all(np.isfinite(r["loss"]) for r in rows)
    with pytest.raises(SarDespeckleError, match="contrastive pre-training"):
        export(str(tmp_path / "pre" / "best.pt"), "x", str(tmp_path / "models"))
    messages = []
    fine = train(config(tiny(**{"train.init_from": str(tmp_path / "pre" / "best.pt"), "train.epochs": 1})),
                 str(tmp_path / "fine"), log=messages.append)
    encoder_keys = [key for key in fine.state_dict() if key.startswith("encoder.")]
    assert f"initialised {len(encoder_keys)} of {len(fine.state_dict())} tensors" in messages[0]
    assert set(encoder_keys) == {"encoder." + key for key in pretrained.encoder.state_dict()}


def dihedral(patch):
    """The 8 flips/rotations of a (rows, cols) array."""
    return [np.rot90(p, k) for p in (patch, patch[:, ::-1]) for k in range(4)]


def test_contrastive_mixes_real_stacks_and_synthetic_pairs(tmp_path):
    scene = piecewise_scene(64, 64, 3)
    np.save(tmp_path / "pair.npy", np.stack([speckle(scene, 1.0, 10), speckle(scene, 1.0, 11)]))
    prepare([str(tmp_path / "pair.npy")], PrepareOptions("stack", patch=32), str(tmp_path / "pairs.npz"))
    raw = tiny(**{"train.mode": "contrastive", "data.samples_per_epoch": 16})
    raw["data"]["train"].append({"path": str(tmp_path / "pairs.npz")})
    raw["contrastive"] = {"real_fraction": 0.5}
    dataset = make_task(config(raw)).train_dataset()
    dates = [view for patch in np.load(tmp_path / "pairs.npz")["patches"] for date in patch for view in dihedral(date)]
    items = [dataset[i] for i in range(16)]
    real = [any(np.array_equal(item["view_a"][0].numpy(), view) for view in dates) for item in items]
    assert 0 < sum(real) < 16
    for item, is_real in zip(items, real):
        assert item["view_a"].shape == item["view_b"].shape == (1, 32, 32)
        assert is_real == any(np.array_equal(item["view_b"][0].numpy(), view) for view in dates)
        assert not torch.equal(item["view_a"], item["view_b"])
    assert dataset[3]["view_b"].equal(items[3]["view_b"])  # a pure function of the index


def ddp_worker(rank, world, port, raw, folder, outputs, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    model = train(config_from_dict(raw, folder, "tiny"), outputs[rank], log=silent)
    torch.save(model.state_dict(), os.path.join(results, f"rank{rank}.pt"))


def test_distributed_training_keeps_ranks_identical_and_only_rank_0_writes(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outputs = [str(tmp_path / "rank0_run"), str(tmp_path / "rank1_run")]
    raw = tiny(**{"train.epochs": 1, "train.time_budget_minutes": 100.0})  # budget: clock broadcast
    mp.spawn(ddp_worker, args=(2, port, raw, os.path.dirname(TINY), outputs, str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    assert {"best.pt", "last.pt", "metrics.csv"} <= set(os.listdir(outputs[0]))
    assert not os.path.exists(outputs[1])
    rows = json.load(open(os.path.join(outputs[0], "metrics.json")))["rows"]
    assert max(r["step"] for r in rows) == 8  # the same steps as one process: 64 samples / batch 8
    # and it learnt the same thing as the single-process run of the same config, up to float error
    single = train(config(raw), str(tmp_path / "single"), log=silent)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(first[key], value, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# prepare


def test_prepare_geotiff_skips_nodata_patches(tmp_path):
    tif, image = write_speckled_geotiff(tmp_path / "a.tif")
    patches, info = prepare([tif], PrepareOptions("single_look", patch=32, stride=32), str(tmp_path / "a.npz"))
    assert patches.shape == (8, 1, 32, 32) and info["skipped"] == 1  # the top-left one holds nodata
    np.testing.assert_array_equal(patches[0, 0], image[:32, 32:64])
    stored = np.load(tmp_path / "a.npz")
    assert json.loads(str(stored["info"]))["kind"] == "single_look"
    np.testing.assert_array_equal(stored["patches"], patches)


def test_prepare_units_subsample_slc_and_stacks(tmp_path):
    scene = piecewise_scene(64, 64, 1)
    amplitude = np.sqrt(scene)
    patches, _ = prepare([amplitude], PrepareOptions("clean", units="amplitude", patch=16, stride=16, subsample=2))
    np.testing.assert_allclose(patches[0, 0], scene[:32:2, :32:2], rtol=1e-6)
    rng = np.random.default_rng(0)
    slc = (rng.standard_normal((40, 40, 2)) * 3).astype(np.float32)
    np.save(tmp_path / "slc.npy", slc)
    patches, info = prepare([str(tmp_path / "slc.npy")], PrepareOptions("slc", patch=20))
    np.testing.assert_allclose(patches[0, 0], (slc[..., 0] ** 2 + slc[..., 1] ** 2)[:20, :20], rtol=1e-5)
    assert info["kind"] == "single_look"
    dates = [write_geotiff(str(tmp_path / f"d{i}.tif"), speckle(scene, 1.0, i)) for i in range(3)]
    patches, info = prepare(dates, PrepareOptions("stack", patch=32, one_stack=True))
    assert patches.shape == (4, 3, 32, 32) and info["kind"] == "stack"
    db = write_geotiff(str(tmp_path / "db.tif"), 10 * np.log10(scene))
    patches, _ = prepare([db], PrepareOptions("clean", units="dB", patch=32))
    np.testing.assert_allclose(patches[0, 0], scene[:32, :32], rtol=1e-4)


@pytest.mark.parametrize("array, kind, message", [
    (np.full((40, 40), np.nan), "clean", "NaN"),
    (-np.ones((40, 40)), "single_look", "negative"),
    (np.ones((10, 10)), "clean", "smaller than one patch"),
    (np.ones((2, 40, 40)), "clean", "must have layout \\(rows, cols\\)"),
    (np.ones((40, 40)), "stack", "one date \\(rows, cols\\), so it is not a stack on its own.*--one-stack"),
    (np.ones(40), "clean", "has shape \\(40,\\); a clean image must have layout \\(rows, cols\\)"),
    (np.ones((40, 40), np.complex64), "clean", "is complex"),
    (np.ones((40, 40, 3)), "slc", "an SLC must be"),
])
def test_prepare_refuses_bad_data(array, kind, message):
    with pytest.raises(SarDespeckleError, match=message):
        prepare([array], PrepareOptions(kind, patch=16))


def test_prepare_cli_and_bad_rasters(tmp_path, capsys):
    tif, _ = write_speckled_geotiff(tmp_path / "a.tif")
    assert main(["prepare", tif, "--kind", "single_look", "--patch", "32", "--output", str(tmp_path / "p.npz")]) == 0
    assert "8 single_look patches" in capsys.readouterr().out
    other = write_geotiff(str(tmp_path / "b.tif"), np.ones((50, 50), np.float32))
    assert main(["prepare", tif, other, "--kind", "stack", "--one-stack", "--output", str(tmp_path / "s.npz")]) == 2
    assert "co-registered" in capsys.readouterr().err
    nodata = write_geotiff(str(tmp_path / "empty.tif"), np.zeros((64, 64), np.float32))
    assert main(["prepare", nodata, "--kind", "clean", "--output", str(tmp_path / "e.npz")]) == 2
    assert "No fully valid patch" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# export, evaluate, metrics


def test_export_then_load_and_evaluate(tmp_path, capsys):
    train(config(tiny()), str(tmp_path / "run"), log=silent)
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--name", "tiny_net",
                 "--to", str(tmp_path / "models")]) == 0
    card_path = str(tmp_path / "models" / "tiny_net.json")
    loaded = load_model(card_path)
    card = loaded.card
    assert card.training["data"]["train"] == ["4 synthetic countryside scenes 64x64 (seed 1)"]
    assert card.training["config"]["train"]["mode"] == "supervised"
    assert card.training["commit"] and card.training["seconds"] >= 0
    assert card.metrics["psnr"] > card.metrics["psnr_input"] and "validation" in card.metrics["measured_on"]
    reference = piecewise_scene(48, 64, 9)
    np.save(tmp_path / "ref.npy", np.sqrt(reference))
    results = evaluate(card_path, [str(tmp_path / "ref.npy")], "amplitude", 1.0, seed=0, rows="0:40")
    assert results[0]["size"] == [40, 64] and results[0]["psnr"] > results[0]["psnr_input"]
    assert main(["evaluate", "--model", card_path, "--references", str(tmp_path / "ref.npy"),
                 "--json", str(tmp_path / "eval.json")]) == 0
    assert "PSNR / SSIM on amplitude" in capsys.readouterr().out
    single = json.load(open(tmp_path / "eval.json"))[0]
    assert single["ssim"] <= 1.0
    assert main(["evaluate", "--model", card_path, "--references", str(tmp_path / "ref.npy"),
                 "--self-ensemble", "--json", str(tmp_path / "eval.json")]) == 0
    ensemble = json.load(open(tmp_path / "eval.json"))[0]
    assert ensemble["psnr_input"] == single["psnr_input"] and ensemble["psnr"] != single["psnr"]


def test_psnr_and_ssim_on_amplitude():
    reference = torch.from_numpy(piecewise_scene(64, 64, 2)).double()
    assert psnr_amplitude(reference, reference) == float("inf")
    assert ssim_amplitude(reference, reference) == pytest.approx(1.0)
    amplitude = reference.sqrt()
    peak = float(torch.quantile(amplitude.flatten(), 0.99))
    estimate = (amplitude + 0.1 * peak) ** 2  # amplitude error of 10 % of the peak: 20 dB
    assert psnr_amplitude(estimate, reference) == pytest.approx(20.0, abs=1e-9)
    noisy = torch.from_numpy(speckle(reference.numpy(), 1.0, 3))
    assert 0 < ssim_amplitude(noisy, reference) < 0.9


# ---------------------------------------------------------------------------------------------
# Watching real validation images (training/watch.py)


class ScaledTruth(torch.nn.Module):
    """A stand-in despeckler that returns the true reflectivity times ``gain``."""

    def __init__(self, clean, gain):
        super().__init__()
        self.clean, self.gain = clean, gain

    def despeckle(self, intensity, reference, looks=None):
        return self.clean * self.gain


def test_watch_measures_a_too_bright_model_on_a_real_image():
    from training.watch import RealImageWatch

    clean = torch.from_numpy(piecewise_scene(200, 200, 3))[None, None]
    noisy = torch.from_numpy(speckle(clean[0, 0].numpy(), 2.0, 4))[None, None]
    watch = RealImageWatch([("real", noisy, float(noisy.median()))])
    assert watch.looks[0] == pytest.approx(2.0, rel=0.15)
    exact = watch.measure(ScaledTruth(clean, 1.0), torch.device("cpu"))
    assert exact["real_ratio_mean"] == pytest.approx(1.0, abs=0.02)
    assert exact["real_ratio_enl_share"] == pytest.approx(1.0, rel=0.15)
    assert exact["real_ratio_autocorrelation_gap"] < 0.1
    bright = watch.measure(ScaledTruth(clean, 1.25), torch.device("cpu"))
    assert bright["real_ratio_mean"] == pytest.approx(0.8, abs=0.02)  # what the loss did not show


def test_training_logs_and_draws_real_validation_images(tmp_path):
    tif, _ = write_speckled_geotiff(tmp_path / "real.tif", 80, 80)
    raw = tiny(**{"data.validation": [{"synthetic": 1, "side": 64, "seed": 2},
                                      {"path": tif, "kind": "single_look", "rows": [10, 80]}]})
    train(config(raw), str(tmp_path / "run"), log=silent)
    rows = [r for r in json.load(open(tmp_path / "run" / "metrics.json"))["rows"] if r["split"] == "validation"]
    assert len(rows) == 2
    for row in rows:
        assert 0.3 < row["real_ratio_mean"] < 3 and row["real_ratio_enl_share"] > 0
        assert 0 <= row["real_ratio_autocorrelation_gap"] < 1 and np.isfinite(row["psnr"])
    pictures = sorted(os.listdir(tmp_path / "run" / "watch"))
    assert "history.png" in pictures and sum(name.endswith("_epoch002.png") for name in pictures) == 1
    assert gdal.Open(str(tmp_path / "run" / "watch" / "history.png")).RasterCount == 3
