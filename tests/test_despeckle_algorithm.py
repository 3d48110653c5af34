"""sar_despeckle:despeckle as users meet it: processing.run, qgis_process, the modeler, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core.choices import CLASSICAL_METHOD_LABELS
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.raster import raster_info

from .conftest import ROOT
from .synthetic import (
    GEOTRANSFORM, assert_refused_without_output, documented_algorithm, piecewise_scene, read_geotiff, speckle, write_geotiff,
)

LEE = list(CLASSICAL_METHOD_LABELS).index("lee")


@pytest.fixture
def speckled_tif(tmp_path):
    """Two-band single-look intensity GeoTIFF with a nodata border and band descriptions."""
    bands = np.stack([speckle(piecewise_scene(80, 96), 1, seed) for seed in (1, 2)])
    bands[:, :, :3] = -1
    return write_geotiff(str(tmp_path / "speckled.tif"), bands, nodata=-1,
                         descriptions=("Intensity_VV", "Intensity_VH"))


def core_reference(path, tmp_path, **settings):
    out = str(tmp_path / "reference.tif")
    despeckle_raster(path, out, DespeckleSettings(**settings))
    return read_geotiff(out)


def test_provider_lists_algorithm_with_help_for_every_parameter(qgis_processing):
    algorithm = documented_algorithm("sar_despeckle:despeckle")
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert {"INPUT", "BANDS", "INPUT_UNITS", "LOOKS", "METHOD", "WINDOW", "DEVICE", "OUTPUT"} <= names
    assert [o.name() for o in algorithm.outputDefinitions()] == ["OUTPUT", "RATIO", "REPORT", "REPORT_JSON"]
    assert algorithm.outputDefinition("REPORT").type() == "outputHtml"  # opens in the Results Viewer


def test_processing_run_matches_core_and_keeps_georeference(qgis_processing, speckled_tif, tmp_path):
    out = str(tmp_path / "out.tif")
    result = qgis_processing.run("sar_despeckle:despeckle", {
        "INPUT": speckled_tif, "METHOD": LEE, "LOOKS": 1.0, "INPUT_UNITS": 0, "WINDOW": 5,
        "OUTPUT": out,
    })
    assert result["OUTPUT"] == out
    info = raster_info(out)
    assert info.geotransform == GEOTRANSFORM and info.crs_wkt
    assert info.descriptions == ("Intensity_VV", "Intensity_VH") and info.nodata == (-1.0, -1.0)
    assert info.metadata["SAR_DESPECKLE_METHOD"] == "lee"
    assert info.metadata["SAR_DESPECKLE_PLUGIN_VERSION"] == "0.1.0"
    output = read_geotiff(out)
    assert (output[:, :, :3] == -1).all() and (output[:, :, 3:] > 0).all()
    expected = core_reference(speckled_tif, tmp_path, method="lee", looks=1.0, units="intensity", window=5)
    np.testing.assert_array_equal(output, expected)


def test_selected_band_and_estimated_looks(qgis_processing, speckled_tif, tmp_path):
    out = str(tmp_path / "vh.tif")
    qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "BANDS": [2], "OUTPUT": out})
    info = raster_info(out)
    assert info.band_count == 1 and info.descriptions == ("Intensity_VH",)
    looks = json.loads(info.metadata["SAR_DESPECKLE_LOOKS"])
    assert looks[0] == pytest.approx(1.0, rel=0.2)


def test_qgis_process_json_run(qgis_process, speckled_tif, tmp_path):
    out = str(tmp_path / "cli.tif")
    done = qgis_process("run", "sar_despeckle:despeckle", "--json", f"--INPUT={speckled_tif}",
                        f"--METHOD={LEE}", "--LOOKS=1", "--INPUT_UNITS=0", "--WINDOW=5", f"--OUTPUT={out}")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["OUTPUT"] == out
    expected = core_reference(speckled_tif, tmp_path, method="lee", looks=1.0, units="intensity", window=5)
    np.testing.assert_array_equal(read_geotiff(out), expected)


def test_qgis_process_reports_bad_input(qgis_process, tmp_path):
    out = tmp_path / "never.tif"
    done = qgis_process("run", "sar_despeckle:despeckle", f"--INPUT={tmp_path / 'missing.tif'}",
                        f"--OUTPUT={out}", check=False)
    assert done.returncode != 0
    assert "does not exist" in done.stdout + done.stderr
    assert not out.exists()


def write_complex(path):
    dataset = gdal.GetDriverByName("GTiff").Create(path, 8, 8, 1, gdal.GDT_CFloat32)
    dataset.GetRasterBand(1).WriteArray(np.ones((8, 8), np.complex64))
    dataset = None
    return path


BAD_INPUTS = {
    "missing file": (lambda d: str(d / "missing.tif"), {}, "does not exist"),
    "not a raster": (lambda d: (d / "notes.txt").write_text("hello") or str(d / "notes.txt"), {}, "raster"),
    "complex raster": (lambda d: write_complex(str(d / "slc.tif")), {}, "complex"),
    "negative intensities": (
        lambda d: write_geotiff(str(d / "neg.tif"), speckle(piecewise_scene(40, 40), 1) - 0.5),
        {"INPUT_UNITS": 0}, "negative values"),
    "dB declared as intensity": (
        lambda d: write_geotiff(str(d / "db.tif"), 10 * np.log10(speckle(piecewise_scene(40, 40), 1) * 0.05)),
        {"INPUT_UNITS": 0}, "looks like dB"),
    "all nodata": (lambda d: write_geotiff(str(d / "empty.tif"), np.full((20, 20), -1, np.float32), nodata=-1),
                   {}, "no valid pixels"),
    "all zero": (lambda d: write_geotiff(str(d / "zero.tif"), np.zeros((20, 20), np.float32)), {}, "ZEROS_AS_NODATA"),
    "1x1 raster": (lambda d: write_geotiff(str(d / "one.tif"), np.ones((1, 1), np.float32)), {}, "1 x 1 pixels"),
    "NaN not declared as nodata": (lambda d: write_geotiff(str(d / "nan.tif"), np.where(
        np.eye(40, dtype=bool), np.nan, speckle(piecewise_scene(40, 40), 1)).astype(np.float32)), {},
        "NaN or infinite values"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(qgis_processing, tmp_path, case):
    make_input, extra, message = BAD_INPUTS[case]
    source = make_input(tmp_path)
    assert_refused_without_output(qgis_processing, "sar_despeckle:despeckle",
                                  {"INPUT": source, "OUTPUT": str(tmp_path / "out.tif"), **extra},
                                  tmp_path, message)


@pytest.mark.parametrize("output, message", [("/proc/sar/out.tif", "does not exist"), ("/proc/out.tif", "Cannot write")])
def test_unwritable_output(qgis_processing, speckled_tif, output, message):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=message):
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "LOOKS": 1, "OUTPUT": output})


def test_even_window_is_refused(qgis_processing, speckled_tif, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=r"Window size, classical filters only \(WINDOW\) must be odd"):
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "WINDOW": 6,
                                                         "OUTPUT": str(tmp_path / "o.tif")})


def test_nan_declared_as_nodata_stays_nodata(qgis_processing, tmp_path):
    image = speckle(piecewise_scene(40, 40), 4)
    image[10:12, 10:12] = np.nan
    source = write_geotiff(str(tmp_path / "nan.tif"), image, nodata=np.nan)
    out = str(tmp_path / "out.tif")
    qgis_processing.run("sar_despeckle:despeckle", {"INPUT": source, "LOOKS": 4, "INPUT_UNITS": 0, "OUTPUT": out})
    output = read_geotiff(out)[0]
    assert np.isnan(raster_info(out).nodata[0])
    assert np.isnan(output[10:12, 10:12]).all() and np.isfinite(output).sum() == 40 * 40 - 4
    assert (output[20:, 20:] > 0).all()


def test_cancel_leaves_no_output(qgis_processing, speckled_tif, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    out = tmp_path / "cancelled.tif"
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": speckled_tif, "LOOKS": 1, "OUTPUT": str(out)},
                            feedback=feedback)
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "partial" in f]


def test_provider_loads_without_torch_and_says_how_to_install(tmp_path, speckled_tif):
    script = f"""
import sys
sys.modules["torch"] = None  # as if torch were not installed
sys.path.insert(0, {ROOT!r})
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingException
from sar_despeckle_plugin.processing.headless import start_qgis
start_qgis(processing=False, provider=False)  # the provider comes from the plugin, as in QGIS
from sar_despeckle_plugin import classFactory
plugin = classFactory(None)
plugin.initProcessing()
algorithm = QgsApplication.processingRegistry().createAlgorithmById("sar_despeckle:despeckle")
assert algorithm is not None
try:
    algorithm.processAlgorithm({{"INPUT": {speckled_tif!r}, "OUTPUT": {str(tmp_path / 'x.tif')!r}}},
                               QgsProcessingContext(), QgsProcessingFeedback())
except QgsProcessingException as error:
    print("MESSAGE:", error.args[0])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert "MESSAGE: PyTorch is not installed" in done.stdout, done.stdout + done.stderr
    assert "pip install torch" in done.stdout
