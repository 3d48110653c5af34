"""sar_despeckle:decorrelate: blind SLC speckle decorrelation (Lapini et al. 2014).

Synthetic speckle with a known separable transfer function checks the estimates and the
residual correlation; the real crops in ../shared/data/slc (skipped when absent) check real
products; then the algorithm as users meet it: processing.run, qgis_process, a model, bad input.
"""

import json
import os

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core.decorrelation.pipeline import decorrelate_array, decorrelate_raster
from sar_despeckle_plugin.core.decorrelation.settings import DecorrelationOutputs, DecorrelationSettings
from sar_despeckle_plugin.core.decorrelation.spectra import position_noise
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.raster import raster_info

from . import slc_data
from .slc_data import Axis, synthetic_slc
from .synthetic import GEOTRANSFORM, assert_refused_without_output, documented_algorithm, write_geotiff

CPU = {"device": "cpu"}

#: (azimuth, range) responses: Hamming and Kaiser weighting, oversampling 1.2-1.6, Doppler.
CASES = {
    "hamming 1.4 / kaiser 1.25": (Axis("hamming", 1 / 1.4, 0.23), Axis("kaiser", 1 / 1.25, -0.05, 4.0)),
    "kaiser 1.6 / hamming 1.2": (Axis("kaiser", 1 / 1.6, -0.31, 3.0), Axis("hamming", 1 / 1.2, 0.02)),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lag1(values: np.ndarray, axis: int) -> float:
    """|lag-1| complex correlation coefficient of a complex image along ``axis``."""
    a = np.moveaxis(values.astype(np.complex128), axis, 0)
    num = np.sum(a[1:] * np.conj(a[:-1]))
    return float(abs(num) / np.sqrt(np.sum(np.abs(a[1:]) ** 2) * np.sum(np.abs(a[:-1]) ** 2)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_synthetic_response_is_estimated_and_whitened(case):
    azimuth, range_ = CASES[case]
    z = synthetic_slc(384, 512, azimuth, range_, seed=3)
    out, report = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    channel = report["channels"][0]
    for name, truth in (("azimuth", azimuth), ("range", range_)):
        axis = channel["axes"][name]
        assert axis["centroid"] == pytest.approx(truth.centroid, abs=0.005), name
        assert axis["bandwidth"] == pytest.approx(truth.bandwidth, abs=0.01), name
        assert slc_data.response_error(axis, truth) < 0.05, name
        assert channel["correlation_before"][name]["lag1"] > 0.5
        assert channel["correlation_after"][name]["lag1"] < 0.05, name
    # resampled to the estimated bandwidths (within 1 % of the true ones)
    assert out.shape[0] == pytest.approx(384 * azimuth.bandwidth, abs=4)
    assert out.shape[1] == pytest.approx(512 * range_.bandwidth, abs=5)
    # the report's measure agrees with a direct one on the output
    assert lag1(out, 0) < 0.05 and lag1(out, 1) < 0.05
    assert np.mean(np.abs(out) ** 2) == pytest.approx(1.0, rel=0.05)


def test_whitening_alone_leaves_oversampling_correlation_and_keeps_the_grid():
    azimuth, range_ = CASES["hamming 1.4 / kaiser 1.25"]
    z = synthetic_slc(256, 320, azimuth, range_, seed=1)
    out, report = decorrelate_array(z, DecorrelationSettings(**CPU))
    after = report["channels"][0]["correlation_after"]
    assert out.shape == z.shape
    # an ideally whitened band of fraction B has |lag-1| = |sinc(B)|
    for name, truth in (("azimuth", azimuth), ("range", range_)):
        assert after[name]["lag1"] == pytest.approx(abs(np.sinc(truth.bandwidth)), abs=0.05)


def test_tops_like_centroid_drift_is_deramped():
    azimuth, range_ = Axis("hamming", 0.67, 0.0), Axis("hamming", 0.75, 0.0)
    drift = 0.006  # cycles/pixel per line: Sentinel-1 IW measured about 0.0062
    z = synthetic_slc(256, 256, azimuth, range_, seed=2, drift=drift)
    out, report = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    axis = report["channels"][0]["axes"]["azimuth"]
    assert axis["centroid_drift_per_pixel"] == pytest.approx(drift, rel=0.05)
    assert axis["bandwidth"] == pytest.approx(0.67, abs=0.015)
    after = report["channels"][0]["correlation_after"]
    assert after["azimuth"]["lag1"] < 0.05 and after["range"]["lag1"] < 0.05


def test_manual_overrides_replace_the_estimates():
    azimuth, range_ = CASES["hamming 1.4 / kaiser 1.25"]
    z = synthetic_slc(200, 200, azimuth, range_, seed=4)
    settings = DecorrelationSettings(azimuth_centroid=0.2, azimuth_bandwidth=0.6, range_bandwidth=0.9,
                                     resample=True, **CPU)
    out, report = decorrelate_array(z, settings)
    axes = report["channels"][0]["axes"]
    assert axes["azimuth"]["centroid"] == 0.2 and axes["azimuth"]["manual_centroid"]
    assert axes["azimuth"]["cutoffs"] == pytest.approx([-0.1, 0.5])
    assert axes["range"]["bandwidth"] == 0.9 and axes["range"]["manual_bandwidth"]
    assert not axes["range"]["manual_centroid"]
    assert out.shape == (120, 180)


def test_strips_and_blocks_do_not_change_the_result():
    azimuth, range_ = CASES["kaiser 1.6 / hamming 1.2"]
    z = synthetic_slc(160, 200, azimuth, range_, seed=5)
    z[40, 50] = z[100, 7] = 60.0  # point targets, replaced by position-seeded noise
    for resample in (False, True):
        whole, _ = decorrelate_array(z, DecorrelationSettings(resample=resample, **CPU))
        strips, _ = decorrelate_array(z, DecorrelationSettings(resample=resample, strip=32, **CPU))
        np.testing.assert_array_equal(whole, strips)
    noise = position_noise(np.array([3, 3, 4]), np.array([5, 6, 5]))
    assert len(set(noise.tolist())) == 3
    np.testing.assert_array_equal(noise, position_noise(np.array([3, 3, 4]), np.array([5, 6, 5])))


@pytest.fixture
def slc_tif(tmp_path):
    """A CFloat32 SLC GeoTIFF with point targets, a zero (nodata) border and a description."""
    azimuth, range_ = CASES["hamming 1.4 / kaiser 1.25"]
    z = synthetic_slc(192, 256, azimuth, range_, seed=7)
    rng = np.random.default_rng(8)
    targets = [(int(r), int(c)) for r, c in zip(rng.integers(0, 192, 12), rng.integers(8, 256, 12))]
    for r, c in targets:
        z[r, c] = 80 * np.exp(1j * rng.uniform(0, 2 * np.pi))
    z[:, :3] = 0
    path = write_geotiff(str(tmp_path / "slc.tif"), z, descriptions=("HH",), data_type=gdal.GDT_CFloat32)
    return path, z, targets


def read_complex(path):
    dataset = gdal.Open(path)
    return dataset.ReadAsArray()


def test_file_run_keeps_point_targets_bit_identical_and_the_layout(slc_tif, tmp_path):
    path, z, targets = slc_tif
    out, report_path = str(tmp_path / "out.tif"), str(tmp_path / "report.json")
    intensity = str(tmp_path / "intensity.tif")
    report = decorrelate_raster(path, DecorrelationOutputs(out, intensity, report_path), DecorrelationSettings(**CPU))
    values = read_complex(out)
    assert values.dtype == np.complex64 and values.shape == z.shape
    for r, c in targets:
        assert values[r, c] == z[r, c]  # bit-identical
    assert report["channels"][0]["point_targets"] == len(targets)
    assert report["point_targets_restored"]
    assert (values[:, :3] == 0).all() and (values[:, 3:] != 0).all()
    ok = np.ones(z.shape, bool)
    ok[:, :3] = False
    for r, c in targets:
        ok[r, c] = False
    assert np.mean(np.abs(values[ok]) ** 2) == pytest.approx(np.mean(np.abs(z[ok]) ** 2), rel=0.05)
    info = raster_info(out)
    assert info.geotransform == GEOTRANSFORM and info.crs_wkt and info.descriptions == ("HH",)
    assert info.metadata["SAR_DESPECKLE_ALGORITHM"] == "decorrelate"
    np.testing.assert_allclose(read_complex(intensity), np.abs(values) ** 2, rtol=1e-5)
    with open(report_path) as stream:
        saved = json.load(stream)
    assert saved["channels"][0]["axes"]["azimuth"]["cutoffs"] == report["channels"][0]["axes"]["azimuth"]["cutoffs"]
    picture = gdal.Open(report["spectra_png"])
    assert picture.RasterCount == 3 and picture.RasterXSize > 800
    # the same passes in memory give the same output
    array, _ = decorrelate_array(z, DecorrelationSettings(**CPU))
    np.testing.assert_array_equal(array, values)


def test_resampling_scales_the_georeference_and_iq_pairs_keep_their_layout(slc_tif, tmp_path):
    path, z, _ = slc_tif
    iq = np.stack([z.real, z.imag, 0.5 * z.real, 0.5 * z.imag]).astype(np.float32)
    source = write_geotiff(str(tmp_path / "iq.tif"), iq, descriptions=("VV_re", "VV_im", "VH_re", "VH_im"))
    out = str(tmp_path / "iq_out.tif")
    report = decorrelate_raster(source, DecorrelationOutputs(out),
                                DecorrelationSettings(layout="iq", resample=True, **CPU))
    info = raster_info(out)
    height, width = report["output_size"]
    assert info.band_count == 4 and info.data_types == ("Float32",) * 4
    assert info.descriptions == ("VV_re", "VV_im", "VH_re", "VH_im")
    assert (info.height, info.width) == (height, width) and height < 192 and width < 256
    x0, dx, _, y0, _, dy = info.geotransform
    assert dx == pytest.approx(20.0 * 256 / width) and dy == pytest.approx(-20.0 * 192 / height)
    # the extent is kept: the output's pixel centres sample the input's span
    assert x0 + dx * width == pytest.approx(GEOTRANSFORM[0] + 20.0 * 256, abs=dx)
    values = read_complex(out)
    vv, vh = values[0] + 1j * values[1], values[2] + 1j * values[3]
    np.testing.assert_allclose(vh, 0.5 * vv, atol=1e-4 * np.abs(vv).max())
    for channel in report["channels"]:
        assert channel["correlation_after"]["azimuth"]["lag1"] < 0.05
        assert channel["correlation_after"]["range"]["lag1"] < 0.05


def test_estimation_windows_whiten_locally(slc_tif, tmp_path):
    path, z, targets = slc_tif
    out = str(tmp_path / "windows.tif")
    report = decorrelate_raster(path, DecorrelationOutputs(out), DecorrelationSettings(estimation_window=128, **CPU))
    values = read_complex(out)
    assert len(report["windows"]) > 1
    for r, c in targets:
        assert values[r, c] == z[r, c]
    after = report["channels"][0]["correlation_after"]
    assert after["azimuth"]["lag1"] < 0.4 and after["range"]["lag1"] < 0.3  # band-limited, not resampled


REAL = {
    "TerraSAR-X": slc_data.terrasarx,
    "Envisat": slc_data.envisat,
    "UAVSAR Winnipeg": slc_data.winnipeg,
    "Sentinel-1 TOPS sea": slc_data.tops_sea,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_crops_are_decorrelated_below_0_1(name):
    z = REAL[name]()
    if z is None:
        pytest.skip(f"real data for {name} not present in ../shared/data/slc")
    out, report = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    channel = report["channels"][0]
    for axis in ("azimuth", "range"):
        assert channel["correlation_after"][axis]["lag1"] < 0.1, (axis, channel["correlation_after"])
    assert max(channel["correlation_before"][axis]["lag1"] for axis in ("azimuth", "range")) > 0.25


def test_envisat_estimate_agrees_with_the_product_metadata():
    z, metadata = slc_data.envisat(), slc_data.envisat_metadata()
    if z is None:
        pytest.skip("real data envisat.h5 not present")
    _, report = decorrelate_array(z, DecorrelationSettings(**CPU))
    axes = report["channels"][0]["axes"]
    doppler = axes["azimuth"]["centroid"] * metadata["line_rate_hz"]
    assert doppler == pytest.approx(metadata["doppler_centroid_hz"], abs=15)
    bandwidth = axes["range"]["bandwidth"] * metadata["range_sampling_rate_hz"]
    assert bandwidth == pytest.approx(metadata["processed_range_bandwidth_hz"], rel=0.05)


def test_hdf5_subdataset_runs_from_file(tmp_path):
    source = slc_data.hdf5_subdataset("winnipeg.h5")
    if source is None:
        pytest.skip("real data winnipeg.h5 not present")
    out = str(tmp_path / "winnipeg.tif")
    report = decorrelate_raster(source, DecorrelationOutputs(out), DecorrelationSettings(resample=True, **CPU))
    assert raster_info(out).data_types == ("CFloat32",)
    assert report["channels"][0]["correlation_after"]["range"]["lag1"] < 0.1


# -------------------------------------------------------------------------------------------
# Processing


def test_provider_lists_decorrelate_with_help_for_every_parameter(qgis_processing):
    algorithm = documented_algorithm("sar_despeckle:decorrelate")
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert {"INPUT", "OUTPUT", "REPORT", "RESAMPLE", "POINT_TARGET_FACTOR", "BAND_LAYOUT",
            "AZIMUTH_CENTROID", "RANGE_BANDWIDTH", "OUTPUT_INTENSITY", "DEVICE"} <= names


def test_processing_run_writes_outputs_and_report(qgis_processing, slc_tif, tmp_path):
    path, z, targets = slc_tif
    out, report = str(tmp_path / "p.tif"), str(tmp_path / "p.json")
    result = qgis_processing.run("sar_despeckle:decorrelate", {
        "INPUT": path, "OUTPUT": out, "REPORT": report, "RESAMPLE": True, "POINT_TARGET_FACTOR": 30,
    })
    assert result["OUTPUT"] == out and result["REPORT"] == report
    assert os.path.exists(result["SPECTRA_PNG"])
    assert result["POINT_TARGETS"] == len(targets)
    assert result["AZIMUTH_LAG1_AFTER"] < 0.05 and result["RANGE_LAG1_AFTER"] < 0.05
    expected, _ = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    np.testing.assert_array_equal(read_complex(out), expected)


def test_qgis_process_json_run(qgis_process, slc_tif, tmp_path):
    path, _, _ = slc_tif
    out, report = str(tmp_path / "cli.tif"), str(tmp_path / "cli.json")
    done = qgis_process("run", "sar_despeckle:decorrelate", "--json", f"--INPUT={path}", f"--OUTPUT={out}",
                        f"--REPORT={report}", "--RESAMPLE=true", "--DEVICE=1")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["OUTPUT"] == out
    with open(report) as stream:
        channel = json.load(stream)["channels"][0]
    assert channel["correlation_after"]["azimuth"]["lag1"] < 0.05
    assert read_complex(out).shape == tuple(json.load(open(report))["output_size"])


def complex_tif(folder, name, values, data_type=gdal.GDT_CFloat32, nodata=None):
    return write_geotiff(str(folder / name), values, data_type=data_type, nodata=nodata)


BAD_INPUTS = {
    "real raster": (lambda d: write_geotiff(str(d / "real.tif"), np.ones((64, 64), np.float32)), {},
                    "real-valued"),
    "real pair without layout": (lambda d: write_geotiff(str(d / "pair.tif"), np.ones((2, 64, 64), np.float32)),
                                 {}, "I/Q pairs"),
    "odd I/Q band count": (lambda d: write_geotiff(str(d / "odd.tif"), np.ones((3, 64, 64), np.float32)),
                           {"BAND_LAYOUT": 2}, "even number of bands"),
    "complex given as I/Q": (lambda d: complex_tif(d, "c.tif", np.ones((64, 64), np.complex64)),
                             {"BAND_LAYOUT": 2}, "complex bands"),
    "tiny image": (lambda d: complex_tif(d, "tiny.tif", np.ones((16, 20), np.complex64)), {}, "16 pixels"),
    "all zero": (lambda d: complex_tif(d, "zero.tif", np.zeros((64, 64), np.complex64)), {}, "no valid pixels"),
    "all NaN (nodata)": (lambda d: complex_tif(d, "nan.tif", np.full((64, 64), np.nan, np.complex64),
                                               nodata=np.nan), {}, "no valid pixels"),
    "NaN not declared as nodata": (lambda d: complex_tif(d, "nan.tif", np.where(
        np.eye(64, dtype=bool), np.nan, 1 + 1j).astype(np.complex64)), {}, "NaN or infinite values"),
    "mostly zero": (lambda d: complex_tif(d, "holes.tif", np.where(
        np.add.outer(np.arange(64), np.arange(64)) % 9 == 0, 0, 1 + 1j).astype(np.complex64)), {},
        "mostly nodata"),
    "window with resampling": (lambda d: complex_tif(d, "w.tif", np.ones((64, 64), np.complex64)),
                               {"ESTIMATION_WINDOW": 256, "RESAMPLE": True}, "ESTIMATION_WINDOW"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(qgis_processing, tmp_path, case):
    make_input, extra, message = BAD_INPUTS[case]
    outputs = {"OUTPUT": str(tmp_path / "out.tif"), "REPORT": str(tmp_path / "r.json"),
               "OUTPUT_INTENSITY": str(tmp_path / "i.tif")}
    assert_refused_without_output(qgis_processing, "sar_despeckle:decorrelate",
                                  {"INPUT": make_input(tmp_path), **outputs, **extra}, tmp_path, message)


def test_nan_declared_as_nodata_is_nodata_in_the_output(tmp_path):
    azimuth, range_ = CASES["hamming 1.4 / kaiser 1.25"]
    z = synthetic_slc(128, 128, azimuth, range_, seed=9)
    z[60:64, 30:40] = np.nan
    out = str(tmp_path / "nan_out.tif")
    decorrelate_raster(complex_tif(tmp_path, "nan.tif", z, nodata=np.nan), DecorrelationOutputs(out),
                       DecorrelationSettings(**CPU))
    values = read_complex(out)
    assert np.isnan(values[60:64, 30:40]).all()  # the input's nodata value
    assert np.isfinite(values).sum() == values.size - 40
    assert (values[:60] != 0).all()


def test_bad_settings_are_refused():
    z = synthetic_slc(64, 64, Axis(), Axis())
    for settings, message in (
        (DecorrelationSettings(azimuth_bandwidth=1.5), "AZIMUTH_BANDWIDTH"),
        (DecorrelationSettings(range_centroid=0.7), "RANGE_CENTROID"),
        (DecorrelationSettings(point_target_factor=0.5), "POINT_TARGET_FACTOR"),
        (DecorrelationSettings(estimation_window=50), "ESTIMATION_WINDOW"),
    ):
        with pytest.raises(SarDespeckleError, match=message):
            decorrelate_array(z, settings)


def test_large_image_path_streams_through_a_temporary_file(slc_tif, tmp_path, monkeypatch):
    from sar_despeckle_plugin.core.decorrelation import pipeline

    path, z, _ = slc_tif
    expected, _ = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    monkeypatch.setattr(pipeline, "IN_MEMORY_LIMIT", 0)
    folder = tmp_path / "big"
    folder.mkdir()
    out = str(folder / "out.tif")
    decorrelate_raster(path, DecorrelationOutputs(out), DecorrelationSettings(resample=True, strip=48, **CPU))
    np.testing.assert_array_equal(read_complex(out), expected)
    assert os.listdir(folder) == ["out.tif"]  # the intermediate file is gone


def test_cancel_leaves_no_output(slc_tif, tmp_path):
    from sar_despeckle_plugin.core.errors import Cancelled
    from sar_despeckle_plugin.core.feedback import Feedback

    path, _, _ = slc_tif
    calls = []
    feedback = Feedback(is_cancelled=lambda: len(calls) > 3, progress=calls.append)
    folder = tmp_path / "cancel"
    folder.mkdir()
    with pytest.raises(Cancelled):
        decorrelate_raster(path, DecorrelationOutputs(str(folder / "out.tif"), str(folder / "i.tif"),
                                                      str(folder / "r.json")), DecorrelationSettings(**CPU), feedback)
    assert os.listdir(folder) == []


def test_channels_with_different_bandwidths_share_one_output_grid():
    azimuth, range_ = CASES["hamming 1.4 / kaiser 1.25"]
    narrow = Axis("hamming", 1 / 1.6, 0.23)
    z = np.stack([synthetic_slc(256, 256, azimuth, range_, seed=1),
                  synthetic_slc(256, 256, narrow, range_, seed=2)])
    out, report = decorrelate_array(z, DecorrelationSettings(resample=True, **CPU))
    widths = [c["axes"]["azimuth"]["bandwidth"] for c in report["channels"]]
    assert widths[1] < widths[0] - 0.05
    assert out.shape == (2, report["output_size"][0], report["output_size"][1])
    assert report["output_size"][0] == pytest.approx(256 * widths[0], abs=2)
    assert report["channels"][0]["correlation_after"]["azimuth"]["lag1"] < 0.05


def test_report_page_for_the_results_viewer(qgis_processing, slc_tif, tmp_path):
    """The JSON report and the spectra reach the user as an HTML output (issue 18, item 8)."""
    import re

    from qgis.core import QgsApplication, QgsProcessingOutputHtml

    algorithm = QgsApplication.processingRegistry().algorithmById("sar_despeckle:decorrelate")
    assert isinstance(algorithm.outputDefinition("REPORT_HTML"), QgsProcessingOutputHtml)  # the Results Viewer's kind
    path, _, _ = slc_tif
    report = str(tmp_path / "run.json")
    result = qgis_processing.run("sar_despeckle:decorrelate", {"INPUT": path, "OUTPUT": str(tmp_path / "white.tif"),
                                                              "REPORT": report})
    assert result["REPORT_HTML"] == str(tmp_path / "run.html")
    with open(result["REPORT_HTML"], encoding="utf-8") as page, open(report, encoding="utf-8") as stream:
        text, recorded = page.read(), json.load(stream)
    channel = recorded["channels"][0]
    assert recorded["html"] == result["REPORT_HTML"]
    after = channel["correlation_after"]
    assert f"→ {after['azimuth']['lag1']:.3f}</td><td>" in text and f"→ {after['range']['lag1']:.3f}</td>" in text
    assert f"{channel['point_targets']:,} point targets" in text
    image = re.search(r'<img src="([^"]+)"', text).group(1)
    assert image == "run.png" and os.path.isfile(tmp_path / image) and result["SPECTRA_PNG"] == str(tmp_path / image)
