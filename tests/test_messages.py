"""Messages and help as the dialog's user reads them: parameters named by their labels (ids in
parentheses), a help that starts with what a newcomer should choose (issue 18, item 6)."""

import re

import pytest

from sar_despeckle_plugin.processing.messages import labelled, short_label

from .synthetic import piecewise_scene, speckle, write_geotiff
from .test_units_and_zeros import run_logged


class Definition:
    """The two methods of a QgsProcessingParameterDefinition that labelling reads."""

    def __init__(self, name, description):
        self._name, self._description = name, description

    def name(self):
        return self._name

    def description(self):
        return self._description


DEFINITIONS = [Definition("WINDOW", "Window size (pixels, odd)"), Definition("ESTIMATION_WINDOW", "Estimation window"),
               Definition("INPUT", "Input SAR raster"), Definition("INPUTS", "SAR dates")]


@pytest.mark.parametrize("message, expected", [
    ("WINDOW must be odd; got 6.", "Window size (WINDOW) must be odd; got 6."),
    ("Set ESTIMATION_WINDOW to 0.", "Set Estimation window (ESTIMATION_WINDOW) to 0."),
    ("INPUTS has 3 dates, INPUT one.", "SAR dates (INPUTS) has 3 dates, Input SAR raster (INPUT) one."),
    ("Input raster '/data/INPUT/WINDOW.tif' does not exist.", "Input raster '/data/INPUT/WINDOW.tif' does not exist."),
    ("Window size (WINDOW) must be odd.", "Window size (WINDOW) must be odd."),
    ("", ""),
])
def test_ids_become_labels_with_the_id_after(message, expected):
    assert labelled(message, DEFINITIONS) == expected


def test_short_label_drops_a_trailing_note_only():
    assert short_label("Window size (pixels, odd)") == "Window size"
    assert short_label("Number of looks (ENL), all dates") == "Number of looks (ENL), all dates"


def test_refusals_and_core_errors_name_parameters_by_label(qgis_processing, tmp_path):
    from qgis.core import QgsProcessingException

    source = write_geotiff(str(tmp_path / "in.tif"), speckle(piecewise_scene(48, 48), 1.0))
    with pytest.raises(QgsProcessingException, match=r"Window size, classical filters only \(WINDOW\) must be odd"):
        qgis_processing.run("sar_despeckle:despeckle", {"INPUT": source, "WINDOW": 4, "OUTPUT": str(tmp_path / "o.tif")})
    # an error of the core (raised inside the run) goes through the same labels
    dual = [write_geotiff(str(tmp_path / f"dual{t}.tif"), speckle(piecewise_scene(2, 48 * 48), 4.0, t).reshape(2, 48, 48))
            for t in (1, 2)]
    with pytest.raises(QgsProcessingException, match=r"but Band layout of each date \(BAND_LAYOUT\) 'single'"):
        qgis_processing.run("sar_despeckle:change_detection", {"INPUTS": dual, "CHANGE_MASK": str(tmp_path / "m.tif")})


def test_warnings_name_parameters_by_label(qgis_processing, tmp_path):
    flat = write_geotiff(str(tmp_path / "flat.tif"), speckle(piecewise_scene(48, 48), 4.0) * 0 + 0.5)
    _, log = run_logged(qgis_processing, "sar_despeckle:despeckle",
                        {"INPUT": flat, "METHOD": 1, "LOOKS": 4, "OUTPUT": str(tmp_path / "o.tif")})
    units = [line for line in log.splitlines() if "INPUT_UNITS" in line]
    assert units and all("Input units (INPUT_UNITS)" in line for line in units), log


def test_help_starts_with_what_a_newcomer_should_choose(qgis_processing):
    from qgis.core import QgsApplication

    for name in ("despeckle", "decorrelate", "change_detection"):
        algorithm = QgsApplication.processingRegistry().algorithmById(f"sar_despeckle:{name}")
        paragraphs = re.findall(r"<p>(.*?)</p>", algorithm.shortHelpString())
        assert len(paragraphs) == 2 and "New to it?" in paragraphs[0] and "keep the" in paragraphs[0], name
        assert "New to it?" not in paragraphs[1] and len(paragraphs[1]) > 200, name  # the expert detail follows
    despeckle = QgsApplication.processingRegistry().algorithmById("sar_despeckle:despeckle")
    window = despeckle.parameterDefinition("WINDOW")
    assert "classical filters only" in window.description() and "Networks ignore it" in window.help()


def test_complex_input_hint_gives_a_gdal_command_that_works(tmp_path):
    """The hint once suggested QGIS 3.22's Raster Calculator, which gives NaN on complex bands."""
    import shlex
    import subprocess

    import numpy as np
    from osgeo import gdal

    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
    from sar_despeckle_plugin.core.errors import SarDespeckleError

    from .synthetic import read_geotiff

    rng = np.random.default_rng(0)
    z = (rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))).astype(np.complex64)
    slc = write_geotiff(str(tmp_path / "slc.tif"), z, data_type=gdal.GDT_CFloat32)
    with pytest.raises(SarDespeckleError) as refused:
        despeckle_raster(slc, str(tmp_path / "out.tif"))
    message = str(refused.value)
    assert "sar_despeckle:decorrelate" in message and "Raster Calculator gives NaN" in message
    command = re.search(r"(gdal_calc\.py .*?--type=Float32)", message).group(1)
    arguments = [argument.replace("slc.tif", slc).replace("intensity.tif", str(tmp_path / "intensity.tif"))
                 for argument in shlex.split(command)]
    subprocess.run(arguments, check=True, capture_output=True, cwd=tmp_path)
    np.testing.assert_allclose(read_geotiff(str(tmp_path / "intensity.tif"))[0], np.abs(z) ** 2, rtol=1e-5)


def test_missing_torch_message_gives_steps_for_each_platform(qgis_processing):
    from sar_despeckle_plugin.processing.base import TORCH_MISSING

    for step in ("Debian, Ubuntu", "--break-system-packages", "OSGeo4W Shell", "python -m pip install torch",
                 "QGIS.app/Contents/MacOS/bin/python3", "help page"):
        assert step in TORCH_MISSING, step
    assert "README" not in TORCH_MISSING  # the zip holds no README
