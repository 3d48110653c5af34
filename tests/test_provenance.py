"""The provenance record: one shape for every algorithm's outputs."""

from sar_despeckle_plugin.core.change.settings import ChangeSettings
from sar_despeckle_plugin.core.decorrelation.settings import DecorrelationSettings
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.provenance import output_metadata
from sar_despeckle_plugin.core.version import plugin_version

COMMON = ["algorithm", "method", "model", "model_sha256", "parameters", "units", "plugin_version"]


def test_every_family_gets_the_same_keys():
    records = [
        output_metadata("despeckle", "lee", DespeckleSettings(method="lee", tile=256), "intensity", looks=[4.0]),
        output_metadata("change_detection", "learned", ChangeSettings(tile=128), "intensity",
                        model="change_default", model_sha256="ab" * 32, dates=["a.tif", "b.tif"]),
        output_metadata("decorrelate", "lapini2014", DecorrelationSettings(strip=64), "complex", plans=[]),
    ]
    for record in records:
        assert list(record)[: len(COMMON)] == COMMON
        assert record["plugin_version"] == plugin_version()
        assert "tile" not in record["parameters"] and "strip" not in record["parameters"]
    assert records[0]["model"] == records[0]["model_sha256"] == ""
    assert records[0]["looks"] == [4.0] and records[0]["parameters"]["method"] == "lee"
    assert records[1]["model"] == "change_default" and records[1]["dates"] == ["a.tif", "b.tif"]


def test_parameters_may_be_a_dict():
    record = output_metadata("despeckle", "lee", {"window": 7, "tile": 512}, "dB")
    assert record["parameters"] == {"window": 7} and record["units"] == "dB"
