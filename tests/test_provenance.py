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


def test_a_network_run_records_the_network_not_the_ignored_method(tmp_path):
    """A model card overrides METHOD: the output names the network in both places (issue 18)."""
    import json

    from osgeo import gdal

    from sar_despeckle_plugin.core.choices import DEFAULT_NETWORK, SHIPPED_WEIGHTS
    from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster

    from .synthetic import piecewise_scene, speckle, write_geotiff

    source = write_geotiff(str(tmp_path / "in.tif"), speckle(piecewise_scene(48, 48), 1.0))
    card = f"{SHIPPED_WEIGHTS}/{DEFAULT_NETWORK}.json"
    output = str(tmp_path / "out.tif")
    despeckle_raster(source, output, DespeckleSettings(method="refined_lee", model_card=card, looks=1.0,
                                                       self_ensemble=False))
    dataset = gdal.Open(output)
    assert dataset.GetMetadataItem("SAR_DESPECKLE_METHOD") == DEFAULT_NETWORK
    assert json.loads(dataset.GetMetadataItem("SAR_DESPECKLE_PARAMETERS"))["method"] == DEFAULT_NETWORK
