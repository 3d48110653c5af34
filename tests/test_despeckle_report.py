"""The per-run quality report of sar_despeckle:despeckle: RATIO (I / I_hat) and REPORT (HTML + JSON
twin + quick-look PNG), on synthetic cases with known answers, in the core and through qgis_process."""

import json
import os
import re

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core.despeckle.report import (
    RATIO_NODATA, band_quality, edge_preservation, mosaic, quicklook_factor,
)
from sar_despeckle_plugin.core.errors import SarDespeckleError

from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff

LOOKS = 4.0


def _boxcar(image: np.ndarray, side: int = 7) -> np.ndarray:
    padded = np.pad(image.astype(np.float64), side // 2, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (side, side))
    return windows.mean(axis=(2, 3))


@pytest.fixture(scope="module")
def scene_and_speckled():
    scene = piecewise_scene(384, 384, seed=3).astype(np.float64)
    return scene, speckle(scene, LOOKS, seed=4).astype(np.float64)


# -- the measures, with known answers -----------------------------------------------------------


def test_ratio_of_the_true_scene_is_white_speckle_with_the_input_looks(scene_and_speckled):
    scene, speckled = scene_and_speckled
    valid = np.ones(scene.shape, bool)
    quality = band_quality(speckled, scene, valid)
    ratio = quality["ratio"]
    assert ratio["mean"] == pytest.approx(1.0, abs=0.02)
    assert ratio["enl"] == pytest.approx(LOOKS, rel=0.1)
    for lag in ratio["autocorrelation_rows"] + ratio["autocorrelation_cols"]:
        assert abs(lag) < 0.03
    assert quality["input_speckle"]["looks"] == pytest.approx(LOOKS, rel=0.15)
    assert quality["output_enl"] is None or quality["output_enl"] > 100  # flat areas are flat
    json.dumps(quality, allow_nan=False)  # JSON-safe: NaN would have become None


def test_epd_roa_is_one_for_an_unchanged_image_and_lower_for_a_blurred_one(scene_and_speckled):
    scene, speckled = scene_and_speckled
    same = edge_preservation(speckled, speckled)
    assert same == {"horizontal": pytest.approx(1.0), "vertical": pytest.approx(1.0)}
    perfect = edge_preservation(speckled, scene)
    blurred = edge_preservation(speckled, _boxcar(scene, 9))
    for direction in ("horizontal", "vertical"):
        # removing L-look speckle alone: about (9L - 1) / 9L on flat ground
        assert 0.9 < perfect[direction] < 1.0
        assert blurred[direction] < perfect[direction] - 0.003


def test_epd_roa_skips_invalid_blocks_and_is_nan_without_any():
    image = np.full((20, 20), 2.0)
    valid = np.zeros(image.shape, bool)
    assert all(np.isnan(v) for v in edge_preservation(image, image, valid).values())
    valid[:, :10] = True
    image[:, 10:] = 50.0  # beyond the valid part: must not count
    result = edge_preservation(image, np.ones_like(image), valid)
    assert result["horizontal"] == pytest.approx(1.0)


def test_mosaic_keeps_sample_windows_apart_and_counts_repeats_once():
    rng = np.random.default_rng(0)
    windows = [(0, 0, 64, 64), (0, 500, 64, 64), (0, 500, 64, 64), (300, 0, 64, 64)]
    arrays = [np.full((64, 64), level) * rng.gamma(LOOKS, 1 / LOOKS, (64, 64)) for level in (1, 30, 30, 900)]
    values, valid = mosaic(windows, arrays, [np.ones((64, 64), bool)] * 4)
    assert valid.sum() == 3 * 64 * 64
    truth, _ = mosaic(windows, [np.full((64, 64), level, float) for level in (1, 30, 30, 900)],
                      [np.ones((64, 64), bool)] * 4)
    ratio = band_quality(values, truth, valid)["ratio"]
    assert all(abs(lag) < 0.05 for lag in ratio["autocorrelation_rows"] + ratio["autocorrelation_cols"])


def test_quicklook_fits_a_sentinel1_grd_scene_in_one_panel():
    factor = quicklook_factor(17000, 25000)
    assert 25000 / factor <= 336 and 17000 / factor <= 480
    assert quicklook_factor(300, 200) == 1


# -- the core pipeline: one tiled pass writes output, ratio and quick-look ---------------------


@pytest.fixture(scope="module")
def db_raster(tmp_path_factory):
    """A dB scene (2 bands) with a nodata corner, wider than one quick-look panel."""
    folder = tmp_path_factory.mktemp("report")
    scene = piecewise_scene(150, 420, seed=5)
    bands = np.stack([10 * np.log10(speckle(scene, LOOKS, seed)) for seed in (6, 7)]).astype(np.float32)
    bands[:, :20, :30] = -9999.0
    return write_geotiff(str(folder / "grd_db.tif"), bands, nodata=-9999.0, descriptions=("VV_db", "VH_db"))


def test_core_run_writes_ratio_and_report_committed_with_the_output(db_raster, tmp_path):
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings

    output, ratio, report = tmp_path / "clean.tif", tmp_path / "ratio.tif", tmp_path / "quality.html"
    result = despeckle_raster(db_raster, str(output), DespeckleSettings(method="lee", tile=64),
                              ratio_path=str(ratio), report_path=str(report))
    assert sorted(os.listdir(tmp_path)) == ["clean.tif", "quality.html", "quality.json", "quality.png",
                                            "ratio.tif"]
    raw_in, raw_out, written = read_geotiff(db_raster), read_geotiff(str(output)), read_geotiff(str(ratio))
    nodata = raw_out == -9999.0
    assert nodata[:, :20, :30].all() and (written[nodata] == RATIO_NODATA).all()
    with np.errstate(invalid="ignore"):  # nodata pixels: 0 / 0
        expected = 10 ** (raw_in / 10) / 10 ** (raw_out / 10)  # intensity terms whatever the input's units
    np.testing.assert_allclose(written[~nodata], expected[~nodata], rtol=1e-5)

    dataset = gdal.Open(str(ratio))
    assert [dataset.GetRasterBand(b).GetDescription() for b in (1, 2)] == ["ratio I/I_hat VV_db",
                                                                           "ratio I/I_hat VH_db"]
    assert dataset.GetGeoTransform() == gdal.Open(str(output)).GetGeoTransform()
    assert dataset.GetMetadataItem("SAR_DESPECKLE_UNITS") == "ratio"

    twin = json.loads((tmp_path / "quality.json").read_text())
    assert twin == result.quality
    assert twin["units"] == "dB" and twin["device"] == "cpu" and twin["seconds"] > 0
    assert [band["band"] for band in twin["bands"]] == [1, 2]
    for band in twin["bands"]:
        assert 0.9 < band["ratio"]["mean"] < 1.1 and band["ratio"]["enl"] > 0
        assert band["looks_estimated"] == pytest.approx(LOOKS, rel=0.2)
        assert 0 < band["edge_preservation"]["horizontal"] < 1
    page = (tmp_path / "quality.html").read_text()
    assert 'src="quality.png"' in page and "Band 2 VH_db" in page
    picture = gdal.Open(str(tmp_path / "quality.png"))
    assert picture.GetDriver().ShortName == "PNG" and picture.RasterCount == 3
    assert picture.RasterXSize <= 1100


def test_ratio_alone_and_a_plain_run_write_nothing_else(db_raster, tmp_path):
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings

    settings = DespeckleSettings(method="boxcar", window=3)
    despeckle_raster(db_raster, str(tmp_path / "plain.tif"), settings)
    result = despeckle_raster(db_raster, str(tmp_path / "out.tif"), settings, ratio_path=str(tmp_path / "r.tif"))
    assert sorted(os.listdir(tmp_path)) == ["out.tif", "plain.tif", "r.tif"]
    assert result.quality is None and result.ratio == str(tmp_path / "r.tif")
    np.testing.assert_array_equal(read_geotiff(str(tmp_path / "plain.tif")), read_geotiff(str(tmp_path / "out.tif")))


@pytest.mark.parametrize("case, message", [
    ("report is output", "same file"),
    ("ratio is input", "would destroy the input"),
    ("report not html", "must be an HTML file"),
    ("report twin is output", "same file"),
    ("unwritable report", "Cannot write REPORT"),
])
def test_bad_ratio_or_report_is_refused_before_any_work(db_raster, tmp_path, case, message):
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings

    output = str(tmp_path / "out.tif")
    ratio, report = str(tmp_path / "r.tif"), str(tmp_path / "r.html")
    if case == "report is output":
        report = output
    elif case == "ratio is input":
        ratio = db_raster
    elif case == "report not html":
        report = str(tmp_path / "r.txt")
    elif case == "report twin is output":
        output = str(tmp_path / "r.png")
    else:
        report = "/proc/sar_despeckle_report.html"
    with pytest.raises(SarDespeckleError, match=message):
        despeckle_raster(db_raster, output, DespeckleSettings(method="lee"), ratio_path=ratio, report_path=report)
    assert os.listdir(tmp_path) == []


# -- through qgis_process ----------------------------------------------------------------------


def test_qgis_process_writes_ratio_and_report(qgis_process, tmp_path):
    scene = piecewise_scene(200, 240, seed=8)
    speckled = speckle(scene, LOOKS, seed=9)
    source = write_geotiff(str(tmp_path / "in.tif"), speckled, descriptions=("sigma0_VV",))
    output, ratio, report = tmp_path / "out.tif", tmp_path / "ratio.tif", tmp_path / "report.html"
    done = qgis_process("run", "sar_despeckle:despeckle", "--json", f"--INPUT={source}", "--METHOD=1",
                        f"--OUTPUT={output}", f"--RATIO={ratio}", f"--REPORT={report}")
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert results["RATIO"] == str(ratio) and results["REPORT"] == str(report)
    assert results["REPORT_JSON"] == str(tmp_path / "report.json")
    estimate = read_geotiff(str(output))[0]
    np.testing.assert_allclose(read_geotiff(str(ratio))[0], speckled / estimate, rtol=1e-5)
    twin = json.loads((tmp_path / "report.json").read_text())
    assert twin["method"] == "lee" and twin["units"] == "intensity"
    band = twin["bands"][0]
    assert band["description"] == "sigma0_VV"
    assert 0.9 < band["ratio"]["mean"] < 1.1 and band["ratio"]["enl"] > 0
    assert len(band["ratio"]["autocorrelation_rows"]) == len(band["input_speckle"]["autocorrelation_cols"]) == 2
    page = report.read_text()
    image = re.search(r'<img src="([^"]+)"', page).group(1)
    assert image == "report.png" and gdal.Open(str(tmp_path / image)).RasterXSize > 0


@pytest.mark.parametrize("where, message", [
    ("unwritable", "Cannot write Quality report (REPORT)"),
    ("output", "same file"),
])
def test_qgis_process_refuses_a_bad_report_before_any_work(qgis_process, tmp_path, where, message):
    source = write_geotiff(str(tmp_path / "in.tif"), speckle(piecewise_scene(64, 64), LOOKS))
    output = tmp_path / "out.tif"
    report = "/proc/sar_despeckle_report.html" if where == "unwritable" else str(output)
    done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={source}", "--METHOD=1",
                        f"--OUTPUT={output}", f"--REPORT={report}", check=False)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert sorted(f for f in os.listdir(tmp_path) if not f.endswith(".aux.xml")) == ["in.tif"]
