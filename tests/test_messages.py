"""Messages and help as the dialog's user reads them: parameters named by their labels (ids in
parentheses), a help that starts with what a newcomer should choose (issue 18, item 6)."""

import re

import pytest

from sar_despeckle_plugin.processing.messages import labelled, short_label

from .synthetic import piecewise_scene, speckle, write_geotiff


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
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, warning):
            self.warnings.append(warning)

    flat = write_geotiff(str(tmp_path / "flat.tif"), speckle(piecewise_scene(48, 48), 4.0) * 0 + 0.5)
    feedback = Recorder()
    qgis_processing.run("sar_despeckle:despeckle", {"INPUT": flat, "METHOD": 1, "LOOKS": 4,
                                                    "OUTPUT": str(tmp_path / "o.tif")}, feedback=feedback)
    units = [w for w in feedback.warnings if "INPUT_UNITS" in w]
    assert units and all("Input units (INPUT_UNITS)" in w for w in units), feedback.warnings


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
