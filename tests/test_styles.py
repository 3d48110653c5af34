"""Outputs as the QGIS window shows them: each algorithm's layer post-processor names the loaded
layers after input and method and gives them a renderer that suits SAR (issue 18, item 1).

Runs go through ``processing.runAndLoadResults``, the path of the desktop's dialogs (results
loaded into the project by ``handleAlgorithmResults``, which calls the post-processors).
"""

import numpy as np
import pytest
from osgeo import gdal

from .slc_data import Axis, synthetic_slc
from .synthetic import piecewise_scene, read_geotiff, speckle, write_geotiff

LEE = 1  # METHOD index of Lee


@pytest.fixture
def run_and_load(qgis_processing):
    """Run an algorithm as the desktop does; returns the project's layers by name."""
    from qgis.core import QgsProject

    project = QgsProject.instance()

    def run(algorithm: str, parameters: dict) -> dict:
        project.removeAllMapLayers()
        qgis_processing.runAndLoadResults(algorithm, parameters)
        return {layer.name(): layer for layer in project.mapLayers().values()}

    yield run
    project.removeAllMapLayers()


def percentiles(path: str, band: int = 1) -> np.ndarray:
    values = read_geotiff(path)[band - 1]
    dataset = gdal.Open(path)
    nodata = dataset.GetRasterBand(band).GetNoDataValue()
    return np.percentile(values[np.isfinite(values) & (values != nodata)], [2, 98])


def stretch(enhancement) -> tuple[float, float]:
    return enhancement.minimumValue(), enhancement.maximumValue()


@pytest.mark.parametrize("units", ["intensity", "amplitude", "dB"])
def test_despeckled_single_band_is_grey_over_its_2_to_98_percentiles(run_and_load, tmp_path, units):
    intensity = speckle(piecewise_scene(96, 96), 1.0)
    values = {"intensity": intensity, "amplitude": np.sqrt(intensity), "dB": 10 * np.log10(intensity)}[units]
    source = write_geotiff(str(tmp_path / "shanghai_s1.tif"), values)
    output, ratio = str(tmp_path / "out.tif"), str(tmp_path / "ratio.tif")
    layers = run_and_load("sar_despeckle:despeckle", {
        "INPUT": source, "METHOD": LEE, "INPUT_UNITS": ["intensity", "amplitude", "dB"].index(units),
        "OUTPUT": output, "RATIO": ratio,
    })
    assert set(layers) == {"shanghai_s1 — lee", "shanghai_s1 — lee ratio"}

    renderer = layers["shanghai_s1 — lee"].renderer()
    assert renderer.type() == "singlebandgray" and renderer.grayBand() == 1
    low, high = stretch(renderer.contrastEnhancement())
    np.testing.assert_allclose((low, high), percentiles(output), rtol=1e-5)
    if units == "intensity":  # a min/max stretch would show the scene black under point targets
        assert high < 0.2 * np.nanmax(read_geotiff(output))

    renderer = layers["shanghai_s1 — lee ratio"].renderer()
    assert renderer.type() == "singlebandgray"
    low, high = stretch(renderer.contrastEnhancement())
    assert low < 1 < high and (low + high) / 2 == pytest.approx(1.0)


def test_dual_pol_output_is_a_vv_vh_composite_each_band_stretched(run_and_load, tmp_path):
    scene = piecewise_scene(96, 96)
    bands = np.stack([speckle(scene, 1.0, seed=1), speckle(0.2 * scene, 1.0, seed=2)])
    source = write_geotiff(str(tmp_path / "s1_vv_vh.tif"), bands, descriptions=("VV", "VH"))
    output = str(tmp_path / "out.tif")
    layers = run_and_load("sar_despeckle:despeckle", {"INPUT": source, "METHOD": LEE, "OUTPUT": output})
    renderer = layers["s1_vv_vh — lee"].renderer()
    assert renderer.type() == "multibandcolor"
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 1)
    np.testing.assert_allclose(stretch(renderer.redContrastEnhancement()), percentiles(output, 1), rtol=1e-5)
    np.testing.assert_allclose(stretch(renderer.greenContrastEnhancement()), percentiles(output, 2), rtol=1e-5)
    np.testing.assert_allclose(stretch(renderer.blueContrastEnhancement()), percentiles(output, 1), rtol=1e-5)


def three_dates(folder) -> list[str]:
    """Single-pol 4-look dates: a block brightens at date 2, another at date 3."""
    rng = np.random.default_rng(0)
    scene = np.ones((64, 72), np.float32)
    paths = []
    for t in range(3):
        reflectivity = scene.copy()
        if t >= 1:
            reflectivity[8:28, 8:40] = 8.0
        if t >= 2:
            reflectivity[36:60, 40:68] = 8.0
        values = reflectivity * rng.gamma(4.0, 0.25, scene.shape)
        paths.append(write_geotiff(str(folder / f"date{t + 1}.tif"), values.astype(np.float32)))
    return paths


def palette(renderer) -> dict:
    return {c.value: (c.color.getRgb(), c.label) for c in renderer.classes()}


def test_change_outputs_mask_p_value_dates_and_polygons(run_and_load, tmp_path):
    from sar_despeckle_plugin.processing import styles

    outputs = {name: str(tmp_path / f"{name.lower()}.{'gpkg' if name == 'CHANGE_POLYGONS' else 'tif'}")
               for name in ("CHANGE_MAP", "CHANGE_MASK", "CHANGE_DATE", "CHANGE_POLYGONS")}
    layers = run_and_load("sar_despeckle:change_detection",
                          {"INPUTS": three_dates(tmp_path), "LOOKS": 4, "METHOD": 0, "PREFILTER": False, **outputs})
    prefix = "date1 … date3 — omnibus "
    assert set(layers) == {prefix + what for what in
                           ("change p-value", "change mask", "first change date", "change polygons")}

    mask = layers[prefix + "change mask"]
    assert mask.renderer().type() == "paletted"
    classes = palette(mask.renderer())
    assert classes[0][0][3] == 0, "unchanged must be transparent"
    assert classes[1][0] == styles.CHANGED.getRgb()
    assert classes[255][0] == styles.NODATA_GREY.getRgb() and classes[255][0] != classes[1][0]
    assert not mask.dataProvider().useSourceNoDataValue(1), "nodata must be drawn as its own class"

    dates = palette(layers[prefix + "first change date"].renderer())
    assert sorted(dates) == [0, 2, 3, 255] and dates[0][0][3] == 0
    assert len({dates[2][0], dates[3][0], dates[255][0]}) == 3

    shader = layers[prefix + "change p-value"].renderer()
    assert shader.type() == "singlebandpseudocolor"
    function = shader.shader().rasterShaderFunction()
    assert function.colorRampType() == function.Discrete
    items = function.colorRampItemList()
    assert [item.value for item in items] == [0.001, 0.01, 0.05, 1.0]
    assert items[-1].color.alpha() == 0 and all(item.color.alpha() == 255 for item in items[:-1])

    polygons = layers[prefix + "change polygons"]
    symbol = polygons.renderer().symbol()
    assert polygons.renderer().type() == "singleSymbol"
    assert symbol.symbolLayer(0).strokeColor().getRgb()[:3] == styles.CHANGED.getRgb()[:3]
    assert 0 < symbol.symbolLayer(0).fillColor().alpha() < 255


def test_learned_change_probability_on_a_colour_ramp(run_and_load, tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for t in range(2):
        reflectivity = np.ones((2, 64, 64), np.float32)
        reflectivity[1] *= 0.2
        if t:
            reflectivity[:, 16:48, 16:48] *= 10
        values = reflectivity * rng.gamma(4.0, 0.25, reflectivity.shape)
        paths.append(write_geotiff(str(tmp_path / f"pair{t + 1}.tif"), values.astype(np.float32)))
    layers = run_and_load("sar_despeckle:change_detection", {
        "INPUTS": paths, "BAND_LAYOUT": 1, "METHOD": 4, "CHANGE_MAP": str(tmp_path / "p.tif"),
        "CHANGE_MASK": None,
    })
    renderer = layers["pair1 … pair2 — learned change probability"].renderer()
    function = renderer.shader().rasterShaderFunction()
    assert function.colorRampType() == function.Interpolated
    items = function.colorRampItemList()
    assert [item.value for item in items] == [0.0, 0.5, 1.0]
    assert items[0].color.blue() > items[0].color.red() and items[-1].color.red() > items[-1].color.blue()


def test_decorrelated_intensity_is_grey_and_named_after_the_slc(run_and_load, tmp_path):
    z = synthetic_slc(128, 128, Axis(), Axis(), seed=5)
    source = write_geotiff(str(tmp_path / "tsx_slc.tif"), z, data_type=gdal.GDT_CFloat32)
    intensity = str(tmp_path / "intensity.tif")
    layers = run_and_load("sar_despeckle:decorrelate", {
        "INPUT": source, "OUTPUT": str(tmp_path / "white.tif"), "OUTPUT_INTENSITY": intensity,
        "REPORT": str(tmp_path / "report.json"),
    })
    assert {"tsx_slc — decorrelated", "tsx_slc — decorrelated intensity"} <= set(layers)
    renderer = layers["tsx_slc — decorrelated intensity"].renderer()
    assert renderer.type() == "singlebandgray"
    np.testing.assert_allclose(stretch(renderer.contrastEnhancement()), percentiles(intensity), rtol=1e-5)

