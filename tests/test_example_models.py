"""The example graphical models the plugin ships (sar_despeckle_plugin/models/, built by
scripts/build_models.py): up to date with the algorithms, valid in QGIS, listed by the provider
and running headless, in Python and in qgis_process (issue 18, item 3)."""

import glob
import importlib.util
import os
import sys

import numpy as np
import pytest

from .conftest import ROOT
from .slc_data import Axis, synthetic_slc
from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff

MODELS_DIR = os.path.join(ROOT, "sar_despeckle_plugin", "models")
SHIPPED = sorted(os.path.basename(path) for path in glob.glob(os.path.join(MODELS_DIR, "*.model3")))


@pytest.fixture(scope="module")
def build_models():
    path = os.path.join(ROOT, "scripts", "build_models.py")
    spec = importlib.util.spec_from_file_location("build_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_models_are_what_the_script_builds_now(qgis_processing, build_models, tmp_path):
    """A parameter added to an algorithm must reach the models: rerun `make models`."""
    built = build_models.build_all(str(tmp_path))
    assert sorted(os.path.basename(path) for path in built) == SHIPPED == sorted(build_models.MODELS)
    for path in built:
        with open(path, "rb") as fresh, open(os.path.join(MODELS_DIR, os.path.basename(path)), "rb") as shipped:
            assert fresh.read() == shipped.read(), f"{os.path.basename(path)} is stale: run `make models`"


def provider_models():
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    return [registry.createAlgorithmById(f"sar_despeckle:{os.path.splitext(name)[0]}") for name in SHIPPED]


def test_provider_lists_every_model_valid_in_example_workflows(qgis_processing):
    from qgis.core import QgsApplication

    listed = {algorithm.id(): algorithm for algorithm in
              QgsApplication.processingRegistry().providerById("sar_despeckle").algorithms()}
    for model in provider_models():
        assert model is not None and model.id() in listed
        assert model.group() == "Example workflows" and " " not in model.id() and model.id().islower()
        assert model.displayName() != model.name()  # a title for the Toolbox, the file name as id
        for instance in (model, listed[model.id()]):  # the registry's own instance too (qgis_process help)
            assert instance.validate() == (True, []), model.id()
            assert instance.outputDefinitions(), model.id()


def test_a_damaged_model_file_is_left_out_with_a_warning(qgis_processing, tmp_path, capsys):
    from sar_despeckle_plugin.processing.example_models import example_models

    with open(os.path.join(MODELS_DIR, "despeckle_then_change.model3"), "rb") as shipped:
        (tmp_path / "good.model3").write_bytes(shipped.read())
    (tmp_path / "broken.model3").write_text("<!DOCTYPE model>\n<Option type=")
    models = example_models(str(tmp_path))
    assert [model.name() for model in models] == ["good"]
    assert "broken.model3" in capsys.readouterr().err


def test_every_child_sets_each_parameter_of_its_algorithm(qgis_processing):
    """What made the old models open red: parameters added to an algorithm after the model."""
    from qgis.core import QgsProcessingDestinationParameter

    for model in provider_models():
        for child_id, child in model.childAlgorithms().items():
            algorithm = child.algorithm()
            for parameter in algorithm.parameterDefinitions():
                if isinstance(parameter, QgsProcessingDestinationParameter) or parameter.defaultValue() is None:
                    continue
                assert parameter.name() in child.parameterSources(), (model.id(), child_id, parameter.name())


def intensity_tif(path, seed=1, shape=(64, 72)):
    return write_geotiff(str(path), speckle(piecewise_scene(*shape), 1.0, seed))


def test_despeckle_and_check_ratio_runs(qgis_processing, tmp_path):
    from qgis.core import QgsProcessingContext

    source = intensity_tif(tmp_path / "scene.tif")
    parameters = {"sar_image": source, "despeckle:despeckled": str(tmp_path / "clean.tif"),
                  "ratio_statistics:ratio_statistics": str(tmp_path / "ratio.html")}
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("sar_despeckle:despeckle_and_check_ratio")
    assert algorithm.checkParameterValues(parameters, QgsProcessingContext()) == (True, "")
    result = qgis_processing.run("sar_despeckle:despeckle_and_check_ratio", parameters)
    clean = read_geotiff(result["despeckle:despeckled"])
    assert clean.shape == (1, 64, 72) and np.std(clean) < np.std(read_geotiff(source))
    with open(result["ratio_statistics:ratio_statistics"], encoding="utf-8") as page:
        assert "Mean value" in page.read()


def test_despeckle_then_change_finds_the_inserted_change(qgis_processing, tmp_path):
    rng = np.random.default_rng(3)
    scene = np.ones((64, 72), np.float32)
    changed = scene.copy()
    changed[16:40, 20:52] = 10.0
    paths = [write_geotiff(str(tmp_path / f"date{t}.tif"), (values * rng.gamma(1.0, 1.0, values.shape)).astype(np.float32))
             for t, values in enumerate((scene, changed), start=1)]
    mask = str(tmp_path / "mask.tif")
    result = qgis_processing.run("sar_despeckle:despeckle_then_change", {
        "before": paths[0], "after": paths[1], "change:change_mask": mask,
        "change:change_map": str(tmp_path / "map.tif"),
    })
    values = read_geotiff(result["change:change_mask"])[0]
    truth = np.zeros(values.shape, bool)
    truth[16:40, 20:52] = True
    assert values[truth].mean() > 0.95 and values[~truth].mean() < 0.01


def test_slc_to_despeckled_intensity_runs(qgis_processing, tmp_path):
    from osgeo import gdal

    from sar_despeckle_plugin.core.raster import raster_info

    source = write_geotiff(str(tmp_path / "slc.tif"), synthetic_slc(128, 160, Axis(), Axis(), seed=2),
                           data_type=gdal.GDT_CFloat32)
    result = qgis_processing.run("sar_despeckle:slc_to_despeckled_intensity", {
        "slc": source, "resample": True, "decorrelate:decorrelated_slc": str(tmp_path / "white.tif"),
        "despeckle:despeckled_intensity": str(tmp_path / "clean.tif"),
    })
    slc, clean = (raster_info(result[name]) for name in
                  ("decorrelate:decorrelated_slc", "despeckle:despeckled_intensity"))
    assert slc.data_types == ("CFloat32",) and clean.data_types == ("Float32",)
    assert (clean.height, clean.width) == (slc.height, slc.width) and slc.width < 160  # resampled


@pytest.mark.parametrize("how", ["provider id", "model file"])
def test_qgis_process_runs_a_model(qgis_process, tmp_path, how):
    source = intensity_tif(tmp_path / "scene.tif")
    out = tmp_path / "clean.tif"
    model = ("sar_despeckle:despeckle_and_check_ratio" if how == "provider id"
             else os.path.join(MODELS_DIR, "despeckle_and_check_ratio.model3"))
    qgis_process("run", model, f"--sar_image={source}", f"--despeckle:despeckled={out}",
                 f"--ratio_statistics:ratio_statistics={tmp_path / 'r.html'}")
    assert read_geotiff(str(out)).shape == (1, 64, 72)
