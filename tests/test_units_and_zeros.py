"""One units rule (core/units.py) and the border-fill zero rule (core/speckle.py), as users reach
them through processing.run, plus core-level checks of the rules themselves."""

import json

import numpy as np
import pytest
from osgeo import gdal

from tests.conftest import shared_data
from tests.synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff
from sar_despeckle_plugin.core import speckle as core_speckle
from sar_despeckle_plugin.core import units
from sar_despeckle_plugin.core.raster import RasterReader, raster_info


def run_logged(processing, algorithm, parameters):
    """processing.run with a feedback that keeps every info and warning line."""
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, info):
            self.lines.append(info)

        def pushWarning(self, warning):
            self.lines.append(warning)

    feedback = Recorder()
    result = processing.run(algorithm, parameters, feedback=feedback)
    return result, "\n".join(feedback.lines)


def metadata(path, key):
    value = raster_info(path).metadata["SAR_DESPECKLE_" + key]
    return json.loads(value) if value[:1] in "[{" else value


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

def test_linear_intensity_with_noise_floor_negatives_is_intensity(qgis_processing, tmp_path):
    looks = 4
    image = speckle(piecewise_scene(128, 128), looks, seed=5)
    negative = np.random.default_rng(7).random(image.shape) < 0.03
    image[negative] = -0.01
    source = write_geotiff(str(tmp_path / "noisy.tif"), image)
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle", {"INPUT": source, "OUTPUT": out})
    assert metadata(out, "UNITS") == "intensity"
    assert abs(metadata(out, "LOOKS")[0] - looks) < 0.3 * looks
    assert "Input units assumed: intensity" in log and "noise floor" in log and "INPUT_UNITS" in log
    assert f"{int(negative.sum())} pixels ({negative.mean():.1%}) are slightly negative" in log
    output = read_geotiff(out)[0]
    flat = piecewise_scene(128, 128) == 0.25  # the 0.25 patch, without the scene's point targets
    assert np.isfinite(output[negative]).all() and (output[negative] > 0).all()
    cv_in = image[flat].std() / image[flat].mean()
    cv_out = output[flat].std() / output[flat].mean()
    assert cv_out < 0.6 * cv_in  # despeckled, not returned as it came


def test_noise_floor_negatives_accepted_when_intensity_is_declared():
    values = np.random.default_rng(0).gamma(4, 0.025, 10_000)
    values[:300] = -0.01
    warnings = []
    units.check_values(values, "intensity", 1, warnings.append)
    assert "300 pixels (3.0%) are slightly negative" in warnings[0]


def test_real_db_is_still_detected(qgis_processing, tmp_path):
    db = 10 * np.log10(speckle(piecewise_scene(96, 96), 4) * 0.05)
    source = write_geotiff(str(tmp_path / "db.tif"), db.astype(np.float32))
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle", {"INPUT": source, "OUTPUT": out})
    assert metadata(out, "UNITS") == "dB"
    assert "Input units detected: dB (band 1: 100% of its values are negative)" in log


@pytest.mark.parametrize("scale, expected", [(1.0, "dB"), (3.0, "dB"), (10.0, "dB")])
def test_bright_db_with_few_negatives_is_db(scale, expected):
    db = 10 * np.log10(speckle(piecewise_scene(100, 100) * scale, 4))
    assert units.band_evidence(db.ravel()).units == expected


@pytest.mark.parametrize("looks", [1, 4, 20])
def test_linear_with_few_small_negatives_is_linear(looks):
    values = np.random.default_rng(looks).gamma(looks, 0.1 / looks, 10_000)
    values[:300] = -0.01
    assert units.band_evidence(values).units is None


@pytest.mark.parametrize("description, expected", [
    ("sigma0_VV_db", "dB"), ("Sigma0_VV_dB", "dB"), ("Amplitude_VH", "amplitude"),
    ("Intensity_VV", "intensity"), ("sigma0_VV_linear", "intensity"), ("", None)])
def test_band_descriptions(description, expected):
    assert units.band_evidence(np.array([0.1, 0.3]), description).units == expected


def test_uint16_amplitude_dn_is_amplitude_with_a_log_line(qgis_processing, tmp_path):
    amplitude = np.sqrt(speckle(piecewise_scene(96, 96), 2)) * 100
    source = write_geotiff(str(tmp_path / "dn.tif"), np.round(amplitude).astype(np.float32),
                           data_type=gdal.GDT_UInt16)
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle", {"INPUT": source, "OUTPUT": out})
    assert metadata(out, "UNITS") == "amplitude"
    assert "Input units assumed: amplitude" in log and "UInt16 integers" in log and "INPUT_UNITS" in log


def test_declared_units_win(qgis_processing, tmp_path):
    amplitude = np.sqrt(speckle(piecewise_scene(64, 64), 2)) * 100
    source = write_geotiff(str(tmp_path / "dn.tif"), np.round(amplitude).astype(np.float32),
                           data_type=gdal.GDT_UInt16)
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle",
                        {"INPUT": source, "INPUT_UNITS": 0, "OUTPUT": out})
    assert metadata(out, "UNITS") == "intensity" and "Input units" not in log


# ---------------------------------------------------------------------------------------------
# Exact zeros
# ---------------------------------------------------------------------------------------------

def scene_with_zeros(height=96, width=96):
    """Speckled intensity with a 10-column zero border (a swath edge), isolated zeros and a
    2 x 2 zero patch inside."""
    image = speckle(piecewise_scene(height, width), 4)
    image[:, :10] = 0
    inside = [(30, 30), (50, 70), (80, 20)]
    for r, c in inside:
        image[r, c] = 0
    image[60:62, 40:42] = 0
    return image, inside


def test_isolated_zeros_stay_data_and_a_zero_border_is_nodata(qgis_processing, tmp_path):
    image, inside = scene_with_zeros()
    source = write_geotiff(str(tmp_path / "zeros.tif"), image)
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle", {"INPUT": source, "OUTPUT": out})
    output = read_geotiff(out)[0]
    nodata = raster_info(out).nodata[0]
    assert nodata == 0
    assert (output[:, :10] == nodata).all()  # the border
    for r, c in inside + [(60, 40), (61, 41)]:
        assert np.isfinite(output[r, c]) and output[r, c] != nodata
    assert (output[:, 10:] != nodata).all()
    assert "Band 1: 960 exact-zero pixels (10.4%) form the border fill" in log
    assert "count as nodata; 7 exact-zero pixels (<0.1%) are kept as data (isolated zeros" in log


def test_zeros_as_nodata_off_keeps_every_zero(qgis_processing, tmp_path):
    image, _ = scene_with_zeros()
    source = write_geotiff(str(tmp_path / "zeros.tif"), image)
    out = str(tmp_path / "out.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle",
                        {"INPUT": source, "ZEROS_AS_NODATA": False, "OUTPUT": out})
    assert np.isfinite(read_geotiff(out)[0]).all()
    assert "967 exact-zero pixels (10.5%) are kept as data (ZEROS_AS_NODATA is off)" in log


def test_fill_mask_rule():
    values = np.ones((40, 80), np.float32)
    values[:, :3] = 0                   # narrow border: column runs reach the image edge
    values[20, 10:50] = 0               # a long run inside: fill
    values[5, 20:25] = 0                # a short run inside: data
    values[30, 60] = 0                  # isolated: data
    values[10, 70] = 0                  # next to a nodata pixel: fill
    valid = np.ones(values.shape, bool)
    valid[10, 71] = False
    fill = core_speckle.fill_mask(values, valid)
    assert fill[:, :3].all() and fill[20, 10:50].all() and fill[10, 70]
    assert not fill[5, 20:25].any() and not fill[30, 60]
    assert fill.sum() == 40 * 3 + 40 + 1


def test_fill_mask_is_the_same_tile_by_tile(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.gamma(2, 1.0, (150, 170)).astype(np.float32)
    values[rng.random(values.shape) < 0.02] = 0
    for _ in range(30):  # runs of every length, some crossing tile borders
        r, c, n = rng.integers(150), rng.integers(170), rng.integers(2, 60)
        if rng.random() < 0.5:
            values[r, c: c + n] = 0
        else:
            values[r: r + n, c] = 0
    path = write_geotiff(str(tmp_path / "z.tif"), values)
    whole = core_speckle.fill_mask(values, np.ones(values.shape, bool))
    reader = core_speckle.ZeroFillReader(RasterReader(path), [True])
    for row in range(0, 150, 37):
        for col in range(0, 170, 41):
            _, valid, fill = reader.read_fill(row, col, 37, 41)
            inner = (slice(row, min(row + 37, 150)), slice(col, min(col + 41, 170)))
            h, w = whole[inner].shape
            np.testing.assert_array_equal(fill[0, :h, :w], whole[inner])
            assert not (valid[0, :h, :w] & whole[inner]).any()


def two_dates(folder, data_type, zero_region):
    """Two co-registered amplitude dates with a dark area stored as exact 0 touching the edge
    and a change in the middle."""
    rng = np.random.default_rng(0)
    scene = np.full((64, 72), 2500.0)
    paths = []
    for t in range(2):
        reflectivity = scene.copy()
        if t:
            reflectivity[16:40, 30:52] *= 8
        amplitude = np.sqrt(reflectivity * rng.gamma(4, 0.25, scene.shape)) / (4 if data_type == gdal.GDT_Byte else 1)
        amplitude[zero_region] = 0
        path = str(folder / f"date{t + 1}.tif")
        write_geotiff(path, np.clip(np.round(amplitude), 0, 255 if data_type == gdal.GDT_Byte else 65535)
                      .astype(np.float32), data_type=data_type)
        paths.append(path)
    return paths


@pytest.mark.parametrize("data_type, fill", [(gdal.GDT_Byte, False), (gdal.GDT_Float32, True)])
def test_change_detection_dark_zeros(qgis_processing, tmp_path, data_type, fill):
    """8-bit: zero is the darkest grey level (data, dark water); float: zero fill touching the
    edge is nodata. Either way the log says how many pixels and why."""
    sea = (slice(None), slice(0, 20))
    paths = two_dates(tmp_path, data_type, sea)
    mask = str(tmp_path / "mask.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:change_detection",
                        {"INPUTS": paths, "CHANGE_MASK": mask, "INPUT_UNITS": 1})
    result = read_geotiff(mask)[0]
    if fill:
        assert (result[sea] == 255).all() and (result[:, 20:] != 255).all()
        assert "Date 1 band 1: 1,280 exact-zero pixels (27.8%) form the border fill" in log
    else:
        assert (result != 255).all()
        assert (result[sea] == 0).all()  # dark on both dates: no change
        assert "Date 1 band 1: 1,280 exact-zero pixels (27.8%) are kept as data (zero is the darkest" in log
    assert result[20:36, 34:48].mean() > 3 * result[:, 56:].mean()  # the change is found


def test_change_detection_all_zero_hint_names_zeros_as_nodata(qgis_processing, tmp_path):
    from qgis.core import QgsProcessingException

    paths = two_dates(tmp_path, gdal.GDT_Float32, (slice(None), slice(None)))
    with pytest.raises(QgsProcessingException, match="ZEROS_AS_NODATA"):
        qgis_processing.run("sar_despeckle:change_detection",
                            {"INPUTS": paths, "CHANGE_MASK": str(tmp_path / "m.tif")})


# ---------------------------------------------------------------------------------------------
# Real data (skipped when ../shared/data is absent)
# ---------------------------------------------------------------------------------------------

def test_real_8bit_pair_keeps_its_dark_sea(qgis_processing, tmp_path):
    first = shared_data("change_detection/san_1.bmp")
    second = shared_data("change_detection/san_2.bmp")
    mask = str(tmp_path / "mask.tif")
    _, log = run_logged(qgis_processing, "sar_despeckle:change_detection",
                        {"INPUTS": [first, second], "CHANGE_MASK": mask})
    assert (read_geotiff(mask)[0] != 255).all()  # nothing silently dropped
    assert "are kept as data (zero is the darkest grey level of Byte data" in log
    assert "Input units assumed: amplitude" in log


def test_real_linear_grd_is_intensity():
    path = shared_data("grd/s1_grdh_spain_vegabaja_20190917_vv.tif")
    reader = RasterReader(path)
    sample = core_speckle.read_sample(reader)[0]
    evidence = units.band_evidence(sample.valid_values(), reader.info.descriptions[0], reader.info.data_types[0])
    assert evidence.units == "intensity" and evidence.strong
    assert units.band_evidence(sample.valid_values()).units is None  # the values alone: linear
