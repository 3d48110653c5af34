"""The QGIS-free parameter descriptions (core.<family>.parameters) match what each Processing
algorithm declares, and map values to the same settings for the Toolbox and the batch runner."""

import pytest

from sar_despeckle_plugin.core import parameters as params
from sar_despeckle_plugin.core.change import parameters as change
from sar_despeckle_plugin.core.decorrelation import parameters as decorrelation
from sar_despeckle_plugin.core.despeckle import parameters as despeckle
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.multitemporal import parameters as multitemporal

FAMILIES = {
    "despeckle": despeckle.PARAMETERS,
    "decorrelate": decorrelation.PARAMETERS,
    "change_detection": change.PARAMETERS,
    "despeckle_multitemporal": multitemporal.PARAMETERS,
}


def declared_kind(definition) -> str:
    """The ``core.parameters`` kind of a QGIS parameter definition."""
    from qgis.core import QgsProcessingDestinationParameter, QgsProcessingParameterNumber

    if isinstance(definition, QgsProcessingDestinationParameter):
        return "destination"
    if definition.type() == "number":
        return "integer" if definition.dataType() == QgsProcessingParameterNumber.Integer else "number"
    return {"raster": "raster", "multilayer": "rasters", "enum": "enum", "boolean": "boolean",
            "string": "string", "file": "file", "band": "bands"}[definition.type()]


@pytest.mark.parametrize("algorithm", sorted(FAMILIES))
def test_descriptions_match_the_declared_parameters(qgis_processing, algorithm):
    from qgis.core import QgsApplication

    declared = QgsApplication.processingRegistry().algorithmById(f"sar_despeckle:{algorithm}").parameterDefinitions()
    specs = FAMILIES[algorithm]
    assert [d.name() for d in declared] == [s.name for s in specs]
    for definition, spec in zip(declared, specs):
        assert declared_kind(definition) == spec.kind, spec.name
        if spec.kind == "destination":
            assert definition.createByDefault() == spec.default, spec.name
        elif spec.kind not in params.INPUT_KINDS:
            default = definition.defaultValue()
            expected = spec.default if spec.kind != "bands" else None
            assert (default in ("", None) and expected in ("", None)) or default == expected, spec.name
        if spec.kind == "enum" and spec.options:
            assert len(definition.options()) == len(spec.options), spec.name


def test_text_values_as_for_qgis_process():
    values = params.values_from_text(despeckle.PARAMETERS, {
        "METHOD": ["1"], "LOOKS": ["4.4"], "SELF_ENSEMBLE": ["true"], "POINT_TARGETS": ["0"],
        "BANDS": ["1,2", "3"], "RATIO": ["yes"],
    })
    assert values["METHOD"] == 1 and values["LOOKS"] == 4.4 and values["BANDS"] == (1, 2, 3)
    assert values["SELF_ENSEMBLE"] is True and values["POINT_TARGETS"] is False and values["RATIO"] is True
    assert values["WINDOW"] == 7 and values["INPUT_UNITS"] is None and values["REPORT"] is False
    settings = despeckle.settings_from_parameters(values, despeckle.available_methods("/nonexistent", print))
    assert (settings.method, settings.looks, settings.bands, settings.device) == ("lee", 4.4, (1, 2, 3), "auto")


@pytest.mark.parametrize("given, message", [
    ({"WINDOWS": ["5"]}, "Unknown parameter WINDOWS; this algorithm takes BANDS, BAND_LAYOUT, INPUT_UNITS"),
    ({"WINDOW": ["five"]}, "WINDOW must be a whole number; got 'five'"),
    ({"SELF_ENSEMBLE": ["maybe"]}, "SELF_ENSEMBLE must be true or false"),
    ({"INPUT": ["a.tif"]}, "INPUT is the input: give the rasters with --inputs"),
    ({"WINDOW": ["5", "7"]}, "WINDOW is given 2 times"),
])
def test_bad_text_values_are_refused_by_name(given, message):
    with pytest.raises(SarDespeckleError, match=message):
        params.values_from_text(despeckle.PARAMETERS, given)


def test_enum_indices_are_checked():
    values = params.values_from_text(change.PARAMETERS, {"BAND_LAYOUT": ["3"]})
    with pytest.raises(SarDespeckleError, match="BAND_LAYOUT must be an option index from 0 to 2"):
        change.settings_from_parameters(values)
    values = params.values_from_text(despeckle.PARAMETERS, {"METHOD": ["99"]})
    with pytest.raises(SarDespeckleError, match="METHOD must be an option index"):
        despeckle.settings_from_parameters(values, despeckle.available_methods("/nonexistent", print))


def test_change_looks_per_date_override_looks():
    values = params.values_from_text(change.PARAMETERS, {"LOOKS": ["4"], "LOOKS_PER_DATE": ["4, 1"]})
    assert change.settings_from_parameters(values).looks == (4.0, 1.0)
    values = params.values_from_text(change.PARAMETERS, {"LOOKS": ["4"]})
    assert change.settings_from_parameters(values).looks == (4.0,)
    with pytest.raises(SarDespeckleError, match="LOOKS_PER_DATE must be numbers"):
        change.parse_looks("4, x")


def test_multitemporal_targets():
    values = params.values_from_text(multitemporal.PARAMETERS, {"TARGET": ["1, 3"], "METHOD": ["0"]})
    settings = multitemporal.settings_from_parameters(values)
    assert settings.targets == (1, 3) and settings.method == "quegan"
    with pytest.raises(SarDespeckleError, match="TARGET must hold date positions from 1 on"):
        multitemporal.parse_targets("0")
