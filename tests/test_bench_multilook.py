"""scripts/bench_multilook.py: its pieces on tiny crops of the shared data, one seed, classical
filters only (no MuLoG + BM3D, no network), and the protocol's product-speckle draws."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from training import benchmark
from training.speckle_model import PRESETS, multilook_white

from .conftest import shared_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOXCAR = {"boxcar": {"method": "boxcar", "window": 7}}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_multilook", os.path.join(ROOT, "scripts", "bench_multilook.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_draw_speckle_takes_a_speckle_model():
    clean = np.full((32, 48), 2.0, np.float32)
    before = (clean * np.random.default_rng([5, 1]).gamma(2.0, 0.5, clean.shape)).astype(np.float32)
    np.testing.assert_array_equal(benchmark.draw_speckle(clean, 2.0, 5, 1), before)  # unchanged
    np.testing.assert_array_equal(benchmark.draw_speckle(clean, 7.0, 5, 1, multilook_white(2.0)), before)
    grdh = benchmark.draw_speckle(clean, 1.0, 5, 1, PRESETS["sentinel1_iw_grdh"])
    assert grdh.dtype == np.float32 and grdh.shape == clean.shape
    np.testing.assert_array_equal(grdh, benchmark.draw_speckle(clean, 1.0, 5, 1, PRESETS["sentinel1_iw_grdh"]))
    assert not np.array_equal(grdh, benchmark.draw_speckle(clean, 1.0, 6, 1, PRESETS["sentinel1_iw_grdh"]))
    centred = grdh[:, :-1] / 2 - 1, grdh[:, 1:] / 2 - 1  # correlated along columns, unlike white speckle
    assert np.mean(centred[0] * centred[1]) / np.var(grdh / 2) > 0.3


def test_full_reference_on_a_crop(bench, tmp_path):
    shared_data("telecom_paris_clean/marais2.npy")
    chosen = bench.conditions(["L2", "sentinel1_iw_grdh"])
    full = bench.full_reference(chosen, BOXCAR, [0], str(tmp_path), rows=(300, 332), cols=(0, 64), compare=False,
                                log=lambda _: None)
    assert list(full) == ["L2", "sentinel1_iw_grdh"]
    for name, entry in full.items():
        scores = entry["seeds"]["0"]
        assert set(scores) == {"boxcar", bench.NOISY}
        assert set(scores["boxcar"]) == {*benchmark.REFERENCES, "mean"}
        assert scores["boxcar"]["mean"][0] > scores[bench.NOISY]["mean"][0] + 2
        assert entry["ran"]["boxcar"] == ["boxcar 7"] * 3
    assert full["L2"]["looks"]["boxcar"] == [2.0] * 3  # white: the true L
    estimated = full["sentinel1_iw_grdh"]["looks"]["boxcar"]  # GRDH: LOOKS empty, estimated
    assert all(3 < looks < 8 for looks in estimated)
    summary = bench.summarise_full_reference(full, "boxcar", ["boxcar"])
    assert summary["L2"]["over_mulog"] is None and summary["L2"]["over_best_classical"]["mean"] == 0.0
    text = "\n".join(bench.full_reference_markdown(summary, ["boxcar", bench.MULOG, bench.NOISY], "boxcar",
                                                   ["boxcar"], {n: c.label for n, c in chosen.items()}, [0]))
    assert "| **boxcar** | **" in text and "| MuLoG+BM3D | n/a | n/a |" in text and "boxcar 7 x3" in text


def test_real_ratio_point_target_and_targets(bench, tmp_path):
    grd = bench.read_tif(shared_data("grd/s1_grdh_spain_vegabaja_20190917_vv.tif"))[:96, :96]
    shared_data("slc/calib_RSLC_ALPSRP025826990_RIO_BRANCO_CR.h5")
    images = {"grdh_vv": grd, "grdh_vv_ml2x2": bench.block_average(grd, 2)}
    assert images["grdh_vv_ml2x2"].shape == (48, 48)
    np.testing.assert_allclose(images["grdh_vv_ml2x2"][0, 0], grd[:2, :2].mean())
    real = bench.real_ratio({"grdh_vv": grd}, BOXCAR["boxcar"], str(tmp_path), str(tmp_path), log=lambda _: None)
    entry = real["grdh_vv"]
    assert entry["ran"] == "boxcar 7" and 1.5 < entry["looks_used"] < 8
    assert 0.8 < entry["ratio"]["mean"] < 1.2 and entry["input"]["looks"] > 2
    assert entry["autocorrelation_gap"] >= 0 and isinstance(entry["ok"], bool)
    assert os.path.getsize(tmp_path / "ratio_grdh_vv.png") > 0
    points = bench.point_target({"lee_sigma": {"method": "lee_sigma", "window": 7}}, str(tmp_path), out=str(tmp_path))
    hh = points["HH"]["methods"]["lee_sigma"]
    assert points["HH"]["peak"] == [50, 25] and hh["peak_kept"] >= 0.9 and abs(hh["energy_3x3"] - 1) <= 0.1
    assert os.path.exists(tmp_path / "point_target_HH.png")
    found = bench.targets({}, real, points, 1.5, "lee_sigma")
    assert found[-1] == {"target": "speed <= 2.0 s per Mpx", "measured": 1.5, "pass": True}
    assert {"corner reflector HH: peak kept >= 90%", "grdh_vv: ratio mean within 1 +/- 0.03"} <= {
        t["target"] for t in found}
    text = "\n".join(bench.real_markdown(real) + bench.point_markdown(points) + bench.targets_markdown(found))
    assert "| grdh_vv | 96 x 96 | boxcar 7 |" in text and "| HH | lee_sigma | lee_sigma 7 | 100 % | 100 % | pass |" in text
    json.dumps(found)  # machine-readable as it stands


def test_a_perfect_estimate_passes_the_ratio_enl_target_on_correlated_speckle(bench):
    """The ratio's ENL is that of single pixels; the block estimate reads correlated speckle as
    more looks than its pixels have. Over a flat scene with GRDH speckle (exact ENL 4.5) the
    perfect estimate (the scene itself) must pass, as it does on white speckle."""
    from training.speckle_model import true_statistics

    rng = np.random.default_rng(3)
    for model in (PRESETS["sentinel1_iw_grdh"], multilook_white(4.0)):
        speckled = 2.0 * model.draw((384, 384), rng)
        entry = bench.ratio_check(speckled, np.full_like(speckled, 2.0))
        exact = float(true_statistics(model)["looks"])
        assert entry["ratio"]["looks"] == pytest.approx(exact, rel=0.1)
        assert entry["input"]["pixel_looks"] == pytest.approx(exact, rel=0.25)
        assert entry["enl_ok"] and entry["mean_ok"]
    assert entry["input"]["pixel_looks"] == entry["input"]["looks"]  # white: the block estimate itself


def test_intensity_kept_reads_what_an_estimate_loses_over_bright_areas(bench):
    """The scene itself keeps the speckled input's intensity (to the speckle's sampling error);
    an estimate that halves a bright block keeps half of it there and less overall."""
    rng = np.random.default_rng(4)
    scene = np.ones((200, 200))
    scene[80:120, 80:120] = 50.0  # 4 % of the pixels, most of the intensity
    speckled = scene * rng.gamma(4.0, 1 / 4.0, scene.shape)
    valid = np.ones(scene.shape, bool)
    whole, bright = bench.intensity_kept(speckled, scene, valid)
    assert whole == pytest.approx(1.0, abs=0.02) and bright == pytest.approx(1.0, abs=0.03)
    darkened = np.where(scene > 1, 0.5 * scene, scene)
    whole, bright = bench.intensity_kept(speckled, darkened, valid)
    assert bright == pytest.approx(0.5, abs=0.05) and 0.5 < whole < 0.7
