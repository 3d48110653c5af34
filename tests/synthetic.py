"""Small synthetic SAR data for tests: scenes, speckle, GeoTIFFs."""

from __future__ import annotations

import numpy as np
from osgeo import gdal, osr

#: Geotransform of every synthetic GeoTIFF: UTM 31N, 20 m pixels.
GEOTRANSFORM = (500000.0, 20.0, 0.0, 4800000.0, 0.0, -20.0)
EPSG = 32631


def piecewise_scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Speckle-free reflectivity (linear intensity, > 0): flat patches, an edge, point targets."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    scene = np.where(cols < width // 2, 1.0, 4.0)
    scene = np.where((rows > height // 2) & (cols > width // 4), 0.25, scene)
    for _ in range(max(1, height * width // 4000)):
        scene[rng.integers(height), rng.integers(width)] = 60.0
    return scene.astype(np.float32)


def speckle(scene: np.ndarray, looks: float, seed: int = 1) -> np.ndarray:
    """Multiply ``scene`` (intensity) by Gamma(L, 1/L) speckle: mean 1, variance 1/L."""
    rng = np.random.default_rng(seed)
    return (scene * rng.gamma(looks, 1.0 / looks, scene.shape)).astype(np.float32)


def write_geotiff(
    path: str,
    bands: np.ndarray,
    nodata: float | None = None,
    descriptions: tuple[str, ...] = (),
    data_type: int = gdal.GDT_Float32,
) -> str:
    """Write ``bands`` (bands, rows, cols) or (rows, cols) as a georeferenced GeoTIFF."""
    bands = bands[None] if bands.ndim == 2 else bands
    count, height, width = bands.shape
    dataset = gdal.GetDriverByName("GTiff").Create(path, width, height, count, data_type)
    dataset.SetGeoTransform(GEOTRANSFORM)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    for index in range(count):
        band = dataset.GetRasterBand(index + 1)
        band.WriteArray(bands[index])
        if nodata is not None:
            band.SetNoDataValue(nodata)
        if index < len(descriptions):
            band.SetDescription(descriptions[index])
    dataset = None
    return path


def shift_origin(path: str, metres: float = 20.0) -> str:
    """Move the GeoTIFF at ``path`` east by ``metres`` (in place): another grid."""
    dataset = gdal.Open(path, gdal.GA_Update)
    origin, *rest = dataset.GetGeoTransform()
    dataset.SetGeoTransform((origin + metres, *rest))
    dataset = None
    return path


def set_crs(path: str, epsg: int = 32632) -> str:
    """Label the GeoTIFF at ``path`` with another CRS (in place), its grid unchanged."""
    dataset = gdal.Open(path, gdal.GA_Update)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    dataset = None
    return path


def read_geotiff(path: str) -> np.ndarray:
    """All bands of ``path`` as (bands, rows, cols) float64."""
    dataset = gdal.Open(path)
    return np.stack(
        [dataset.GetRasterBand(i + 1).ReadAsArray().astype(np.float64) for i in range(dataset.RasterCount)]
    )


def assert_refused_without_output(processing, algorithm: str, parameters: dict, folder, message: str) -> None:
    """Run ``algorithm`` expecting a QgsProcessingException matching ``message``, and check
    that ``folder`` (where the inputs and every output path lie) gained no file.

    A GDAL ``.aux.xml`` that QGIS may leave beside an input it opened is not an output.
    """
    import os

    import pytest
    from qgis.core import QgsProcessingException

    def files() -> set:
        return {f for f in os.listdir(folder) if not f.endswith(".aux.xml")}

    before = files()
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(algorithm, parameters)
    assert files() == before


def documented_algorithm(algorithm_id: str):
    """The registered algorithm ``algorithm_id``, after checking that every parameter has help
    and that the algorithm's help page shows it (needs a started QGIS with our provider)."""
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    assert algorithm is not None, algorithm_id
    for parameter in algorithm.parameterDefinitions():
        assert len(parameter.help()) > 30, parameter.name()
        assert parameter.name() in algorithm.shortHelpString()
    return algorithm
