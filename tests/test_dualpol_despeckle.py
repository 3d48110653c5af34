"""sar_despeckle:despeckle on dual-pol data (BAND_LAYOUT): VV/VH intensities band by band, C2
covariance jointly through its four intensities, on synthetic data of known covariance."""

import json
import os

import numpy as np
import pytest
import torch

from sar_despeckle_plugin.core.covariance import (
    bands_from_matrix, c2_from_intensities, intensities_from_c2, invalid_covariances, valid_covariance,
)
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.quality import ratio_statistics
from sar_despeckle_plugin.core.raster import raster_info
from training.data import speckled_c2
from training.metrics import dualpol_errors

from .conftest import shared_data
from .synthetic import (
    GEOTRANSFORM, assert_refused_without_output, piecewise_scene, read_geotiff, speckle, write_geotiff,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C2_NAMES = ("C11", "C22", "C12_real", "C12_imag")
C2_LAYOUT = 2  # BAND_LAYOUT index
SIDE = 96


def known_covariance(side=SIDE):
    """A scene of known covariance: C11 the piecewise test scene (edge, patches, point
    targets), VV/VH ratio 3.3 on the upper half and 12.5 on the lower, coherence 0.2, 0.5 and
    0.8 (phase 0.4 rad) on the thirds from left to right."""
    rows, cols = np.mgrid[:side, :side]
    c11 = piecewise_scene(side, side, 0).astype(np.float64)
    c22 = c11 * np.where(rows < side // 2, 0.3, 0.08)
    coherence = np.where(cols < side // 3, 0.2, np.where(cols < 2 * side // 3, 0.5, 0.8)) * np.exp(0.4j)
    return c11, c22, coherence


def noise_free_c2(c11, c22, coherence):
    """The true C2 bands (4, rows, cols) of the covariance."""
    c12 = coherence * np.sqrt(c11 * c22)
    return np.stack([c11, c22, c12.real, c12.imag])


@pytest.fixture
def c2_tif(tmp_path):
    """One-look C2 of the known covariance, with band descriptions."""
    c11, c22, coherence = known_covariance()
    return write_geotiff(str(tmp_path / "c2.tif"), speckled_c2(c11, c22, coherence, 1, np.random.default_rng(1)),
                         descriptions=C2_NAMES)


def despeckled(path, tmp_path, name="out.tif", **settings):
    out = str(tmp_path / name)
    despeckle_raster(path, out, DespeckleSettings(**settings))
    return read_geotiff(out)


# -- the four intensities ------------------------------------------------------------------------


def test_four_intensities_are_those_of_the_scattering_vectors_and_give_c2_back_exactly():
    rng = np.random.default_rng(0)
    vv, vh = (rng.standard_normal((5, 200)) + 1j * rng.standard_normal((5, 200)) for _ in range(2))
    c12 = (vv * np.conj(vh)).mean(0)  # C12 = <Svv conj(Svh)>, five looks
    c2 = [(abs(vv) ** 2).mean(0), (abs(vh) ** 2).mean(0), c12.real, c12.imag]
    intensities = intensities_from_c2(c2)
    for computed, direct in zip(intensities, [vv, vh, vv + vh, vv + 1j * vh]):
        np.testing.assert_allclose(computed, (abs(direct) ** 2).mean(0), rtol=1e-12)
    for recovered, given in zip(c2_from_intensities(intensities), c2):
        np.testing.assert_allclose(recovered, given, rtol=1e-12, atol=1e-12)


def test_valid_covariance_shrinks_c12_keeps_its_phase_and_never_inflates_the_diagonal():
    c11, c22 = torch.tensor([4.0, 1.0, 1.0, -0.5]), torch.tensor([1.0, 1.0, 0.0, 2.0])
    re, im = torch.tensor([3.0, 0.3, 0.2, 0.1]), torch.tensor([4.0, 0.4, 0.0, 0.0])
    out11, out22, out_re, out_im = valid_covariance((c11, c22, re, im))
    assert out11.tolist() == [4.0, 1.0, 1.0, 0.0] and out22.tolist() == [1.0, 1.0, 0.0, 2.0]
    magnitude = torch.hypot(out_re, out_im)
    assert magnitude[0] == pytest.approx(2.0, rel=1e-5)  # |C12| = 5 > sqrt(4 x 1): shrunk to 2
    assert out_im[0] / out_re[0] == pytest.approx(4 / 3)  # phase kept
    assert (out_re[1], out_im[1]) == (re[1], im[1])  # already valid: untouched
    assert magnitude[2:].tolist() == [0.0, 0.0]  # a zero diagonal term leaves no cross term
    assert invalid_covariances([t.numpy() for t in (out11, out22, out_re, out_im)]) == 0


def test_noise_free_c2_comes_back_unchanged_through_the_pipeline(tmp_path):
    """Constant covariance per region: every filter leaves a constant as it is, so the output
    is the input wherever the window stays within one region (the recovery is exact)."""
    side = 60
    rows, cols = np.mgrid[:side, :side]
    c11 = np.where(cols < side // 2, 1.0, 3.0)
    c22 = c11 * 0.2
    coherence = np.where(rows < side // 2, 0.6 * np.exp(-1.1j), 0.3 * np.exp(2.0j))
    truth = noise_free_c2(c11, c22, coherence).astype(np.float32)
    path = write_geotiff(str(tmp_path / "clean.tif"), truth)
    interior = (np.abs(rows - (side - 1) / 2) > 3) & (np.abs(cols - (side - 1) / 2) > 3)  # 5 x 5 windows in one region
    for method in ("boxcar", "lee", "refined_lee"):
        output = despeckled(path, tmp_path, f"{method}.tif", method=method, layout="c2", looks=1.0, window=5)
        np.testing.assert_allclose(output[:, interior], truth[:, interior], rtol=1e-5, atol=1e-5)


# -- despeckling C2 --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["boxcar", "lee", "refined_lee", "lee_sigma", "frost", "gamma_map", "kuan",
                                    "automatic"])
def test_every_output_pixel_is_a_valid_covariance(c2_tif, tmp_path, method):
    output = despeckled(c2_tif, tmp_path, method=method, layout="c2")
    assert np.isfinite(output).all()
    assert invalid_covariances(output) == 0


def test_default_keeps_the_polarimetric_information(tmp_path):
    """Against the known covariance, one look: the VV/VH ratio error of the default (the
    1-look network on the four intensities) is less than half a 7 x 7 boxcar's (measured 0.34
    against 0.73 dB; the input's 5.2 dB), and its coherence-magnitude error a seventh of the
    input's (0.073 against 0.50) and near the boxcar's (0.064), which averages 49 looks of a
    coherence that is flat over large areas here."""
    c11, c22, coherence = known_covariance()
    noisy = speckled_c2(c11, c22, coherence, 1, np.random.default_rng(1))
    path = write_geotiff(str(tmp_path / "c2.tif"), noisy)
    errors = {
        "input": dualpol_errors(noisy, c11, c22, coherence),
        "boxcar": dualpol_errors(despeckled(path, tmp_path, "boxcar.tif", method="boxcar", layout="c2", window=7),
                                 c11, c22, coherence),
        "default": dualpol_errors(despeckled(path, tmp_path, "default.tif", layout="c2"), c11, c22, coherence),
    }
    assert errors["default"]["ratio_db"] < 0.6 * errors["boxcar"]["ratio_db"]
    assert errors["default"]["ratio_db"] < 0.1 * errors["input"]["ratio_db"]
    assert errors["default"]["coherence"] < 0.2 * errors["input"]["coherence"]
    assert errors["default"]["coherence"] < 1.4 * errors["boxcar"]["coherence"]


def test_nodata_tiling_and_provenance_are_kept(tmp_path):
    c11, c22, coherence = known_covariance()
    noisy = speckled_c2(c11, c22, coherence, 2, np.random.default_rng(3))
    noisy[:, :, :4] = -9999  # a nodata border on every band
    path = write_geotiff(str(tmp_path / "c2.tif"), noisy, nodata=-9999, descriptions=C2_NAMES)
    whole = despeckled(path, tmp_path, "whole.tif", method="lee", layout="c2", window=5)
    tiled = despeckled(path, tmp_path, "tiled.tif", method="lee", layout="c2", window=5, tile=32)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)
    assert (whole[:, :, :4] == -9999).all() and invalid_covariances(whole[:, :, 4:]) == 0
    info = raster_info(str(tmp_path / "whole.tif"))
    assert info.descriptions == C2_NAMES and info.nodata == (-9999.0,) * 4 and info.geotransform == GEOTRANSFORM
    assert info.metadata["SAR_DESPECKLE_BAND_LAYOUT"] == "c2"
    assert json.loads(info.metadata["SAR_DESPECKLE_PARAMETERS"])["layout"] == "c2"
    looks = json.loads(info.metadata["SAR_DESPECKLE_LOOKS"])
    assert len(looks) == 4 and len(set(looks)) == 1 and looks[0] == pytest.approx(2.0, rel=0.25)


def test_zero_fill_of_a_c2_product_is_nodata(tmp_path):
    """Sentinel-1 swath borders: every band exactly 0 on a 40-pixel strip, no nodata tag. The
    zero rule (which reads C11 and C22) makes the strip nodata, 0, in all four output bands."""
    c11, c22, coherence = known_covariance()
    noisy = speckled_c2(c11, c22, coherence, 1, np.random.default_rng(4))
    noisy[:, :, :40] = 0
    path = write_geotiff(str(tmp_path / "c2.tif"), noisy)
    output = despeckled(path, tmp_path, method="lee", layout="c2", window=5)
    assert (output[:, :, :40] == 0).all()
    assert (output[:2, :, 40:] > 0).all() and invalid_covariances(output[:, :, 40:]) == 0


def test_ratio_and_report_cover_c11_and_c22(c2_tif, tmp_path):
    ratio, report = str(tmp_path / "ratio.tif"), str(tmp_path / "report.html")
    result = despeckle_raster(c2_tif, str(tmp_path / "out.tif"),
                              DespeckleSettings(method="lee", layout="c2", looks=1.0, window=7),
                              ratio_path=ratio, report_path=report)
    info = raster_info(ratio)
    assert info.band_count == 2 and info.descriptions == ("ratio I/I_hat C11", "ratio I/I_hat C22")
    values = read_geotiff(ratio)
    assert values.mean(axis=(1, 2)) == pytest.approx([1.0, 1.0], abs=0.15)
    assert [entry["description"] for entry in result.quality["bands"]] == ["C11", "C22"]
    assert os.path.exists(report) and os.path.exists(str(tmp_path / "report.json"))


def test_dual_pol_intensities_are_despeckled_band_by_band(tmp_path):
    scene = piecewise_scene(64, 64)
    bands = np.stack([speckle(scene, 1, 1), speckle(0.2 * scene, 1, 2)])
    path = write_geotiff(str(tmp_path / "vvvh.tif"), bands, descriptions=("VV", "VH"))
    dual = despeckled(path, tmp_path, "dual.tif", method="lee", layout="dual", looks=1.0)
    single = despeckled(path, tmp_path, "single.tif", method="lee", looks=1.0)
    np.testing.assert_array_equal(dual, single)
    assert raster_info(str(tmp_path / "dual.tif")).descriptions == ("VV", "VH")


def test_real_single_look_covariance(tmp_path):
    """Sentinel-1 single-look dual-pol covariance (Shanghai): looks estimated at 1, every pixel
    a valid covariance, the ratio of C11 and C22 pure one-look speckle (measured: mean 0.98 /
    0.99, ENL 0.83 / 0.85, lag-1 within 0.02 of 0), and the VV-VH coherence, 1 at every input
    pixel, down to a median of 0.19 (a 7 x 7 boxcar's: 0.18)."""
    noisy = bands_from_matrix(np.load(shared_data("polsar/shanghai_sentinel1_cov.npz"))["cov"])
    path = write_geotiff(str(tmp_path / "shanghai_c2.tif"), noisy)
    report = despeckle_raster(path, str(tmp_path / "out.tif"), DespeckleSettings(layout="c2"))
    output = read_geotiff(str(tmp_path / "out.tif"))
    assert report.looks[0] == pytest.approx(1.0, abs=0.2)
    assert invalid_covariances(output) == 0
    for band in (0, 1):
        ratio = ratio_statistics(noisy[band].astype(np.float64), output[band])
        assert ratio.mean == pytest.approx(1.0, abs=0.06) and 0.7 < ratio.looks < 1.2
        assert max(abs(ratio.rows[0]), abs(ratio.cols[0])) < 0.06
    assert np.median(np.hypot(output[2], output[3]) / np.sqrt(output[0] * output[1])) < 0.3


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout, bands, message", [
    ("c2", (1, 2), "BAND_LAYOUT 'c2' needs 4 bands"),
    ("dual", (1, 2, 3), "BAND_LAYOUT 'dual' needs 2 bands"),
    ("dual", None, "BAND_LAYOUT 'dual' needs 2 bands"),
])
def test_a_band_count_that_does_not_fit_the_layout_is_refused_before_any_output(c2_tif, tmp_path, layout, bands,
                                                                                 message):
    before = set(os.listdir(tmp_path))
    with pytest.raises(SarDespeckleError, match=message):
        despeckle_raster(c2_tif, str(tmp_path / "out.tif"), DespeckleSettings(method="lee", layout=layout, bands=bands))
    assert set(os.listdir(tmp_path)) == before


def test_c2_in_db_is_refused(c2_tif, tmp_path):
    with pytest.raises(SarDespeckleError, match="C2 covariance bands are linear"):
        despeckle_raster(c2_tif, str(tmp_path / "out.tif"), DespeckleSettings(layout="c2", units="dB"))


def test_batch_runner_text_maps_band_layout_to_the_layout():
    from sar_despeckle_plugin.core import parameters as params
    from sar_despeckle_plugin.core.despeckle import parameters as despeckle

    methods = despeckle.available_methods("/nonexistent", print)
    for text, layout in (("0", "single"), ("1", "dual"), ("2", "c2")):
        values = params.values_from_text(despeckle.PARAMETERS, {"BAND_LAYOUT": [text]})
        assert despeckle.settings_from_parameters(values, methods).layout == layout
    with pytest.raises(SarDespeckleError, match="BAND_LAYOUT must be an option index from 0 to 2"):
        despeckle.settings_from_parameters(params.values_from_text(despeckle.PARAMETERS, {"BAND_LAYOUT": ["3"]}),
                                           methods)


# -- as users run it -------------------------------------------------------------------------------


def test_processing_run_with_band_layout_c2(qgis_processing, c2_tif, tmp_path):
    out = str(tmp_path / "processing.tif")
    result = qgis_processing.run("sar_despeckle:despeckle", {
        "INPUT": c2_tif, "BAND_LAYOUT": C2_LAYOUT, "METHOD": 0, "WINDOW": 5, "OUTPUT": out,
    })
    assert result["OUTPUT"] == out
    output = read_geotiff(out)
    np.testing.assert_allclose(output, despeckled(c2_tif, tmp_path, method="boxcar", layout="c2", window=5),
                               rtol=1e-6)
    assert invalid_covariances(output) == 0 and raster_info(out).descriptions == C2_NAMES
    assert_refused_without_output(qgis_processing, "sar_despeckle:despeckle", {
        "INPUT": c2_tif, "BANDS": [1, 2, 3], "BAND_LAYOUT": C2_LAYOUT, "OUTPUT": str(tmp_path / "refused.tif"),
    }, tmp_path, "needs 4 bands")


def test_qgis_process_with_band_layout_c2(qgis_process, c2_tif, tmp_path):
    out = str(tmp_path / "cli.tif")
    done = qgis_process("run", "sar_despeckle:despeckle", "--json", f"--INPUT={c2_tif}", f"--BAND_LAYOUT={C2_LAYOUT}",
                        "--METHOD=1", "--WINDOW=5", f"--OUTPUT={out}")
    assert json.loads(done.stdout[done.stdout.index("{"):])["results"]["OUTPUT"] == out
    assert invalid_covariances(read_geotiff(out)) == 0
    refused = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={c2_tif}", "--BAND_LAYOUT=1",
                           f"--OUTPUT={tmp_path / 'refused.tif'}", check=False)
    assert refused.returncode != 0 and "needs 2 bands" in refused.stdout + refused.stderr
    assert not os.path.exists(tmp_path / "refused.tif")
