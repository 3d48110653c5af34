"""Connected regions of a change mask, with GDAL: minimum-area sieve and polygons with areas.

Rasters here are the uint8 mask (1 changed, 0 unchanged, ``nodata`` elsewhere) and date rasters
that the change pipeline writes; everything streams through GDAL, so nothing holds a whole scene.
Regions are 4-connected throughout (8-connected polygons may touch themselves at corners, which
makes invalid geometries).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import Cancelled, SarDespeckleError
from ..outputs import OutputSet, partial_path
from ..raster import gdal_errors_as_exceptions

#: Vector formats we write, by file extension.
VECTOR_DRIVERS = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON", ".json": "GeoJSON"}
#: Formats written to a temporary file and renamed on success (single-file formats).
ATOMIC = {"GPKG", "GeoJSON"}
#: Rows per strip when scanning rasters.
STRIP_ROWS = 512


def vector_driver(path: str) -> str:
    """The OGR driver for ``path`` from its extension, or a clear error."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in VECTOR_DRIVERS:
        raise SarDespeckleError(
            f"Polygon output '{path}' must be a GeoPackage (.gpkg), a Shapefile (.shp) or GeoJSON "
            "(.geojson)."
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SarDespeckleError(f"Output folder '{folder}' does not exist: create it first.")
    return VECTOR_DRIVERS[extension]


def remove_vector(path: str) -> None:
    """Delete a vector output and its side files (Shapefile parts), if present."""
    if not path or not os.path.exists(path):
        return
    driver = ogr.GetDriverByName(vector_driver(path))
    if driver.DeleteDataSource(path) != 0 and os.path.exists(path):
        os.remove(path)


def _strips(height: int):
    for row in range(0, height, STRIP_ROWS):
        yield row, min(STRIP_ROWS, height - row)


def sieve_in_place(mask_path: str, min_pixels: int, nodata: int) -> tuple[int, int]:
    """Merge 4-connected regions (changed or not) smaller than ``min_pixels`` into their
    largest neighbour (gdal.SieveFilter); nodata pixels stay as they are.

    Returns (changed pixels, valid pixels) after the sieve.
    """
    with gdal_errors_as_exceptions():
        dataset = gdal.Open(mask_path, gdal.GA_Update)
        band = dataset.GetRasterBand(1)
        gdal.SieveFilter(band, band.GetMaskBand(), band, int(min_pixels), 4)
        band.FlushCache()
        changed = valid = 0
        for row, rows in _strips(dataset.RasterYSize):
            block = band.ReadAsArray(0, row, dataset.RasterXSize, rows)
            changed += int((block == 1).sum())
            valid += int((block != nodata).sum())
        dataset = None
    return changed, valid


def finalise_dates(date_path: str, mask_path: str, nodata: int) -> None:
    """Keep the candidate first-change dates only where the (sieved) mask says changed."""
    with gdal_errors_as_exceptions():
        dates = gdal.Open(date_path, gdal.GA_Update)
        mask = gdal.Open(mask_path)
        date_band, mask_band = dates.GetRasterBand(1), mask.GetRasterBand(1)
        for row, rows in _strips(dates.RasterYSize):
            m = mask_band.ReadAsArray(0, row, mask.RasterXSize, rows)
            d = date_band.ReadAsArray(0, row, dates.RasterXSize, rows)
            date_band.WriteArray(np.where(m == nodata, nodata, np.where(m == 1, d, 0)).astype(np.uint8), 0, row)
        dates = mask = None


def _changed_only_vrt(mask_path: str, nodata: int) -> gdal.Dataset:
    """A virtual band that is 1 on changed pixels and 0 elsewhere (a LUT over the mask)."""
    mask = gdal.Open(mask_path)
    width, height = mask.RasterXSize, mask.RasterYSize
    mask = None
    xml = f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <VRTRasterBand dataType="Byte" band="1">
    <ComplexSource>
      <SourceFilename relativeToVRT="0">{mask_path}</SourceFilename>
      <SourceBand>1</SourceBand>
      <LUT>0:0,1:1,2:0,{nodata}:0</LUT>
    </ComplexSource>
  </VRTRasterBand>
</VRTDataset>"""
    return gdal.Open(xml)


def _area_transform(srs: osr.SpatialReference | None, dataset: gdal.Dataset):
    """For geographic CRSs, a transform to a Lambert azimuthal equal-area projection centred on
    the scene (areas in m^2); None for projected CRSs, whose own units are used."""
    if srs is None or not srs.IsGeographic():
        return None
    gt = dataset.GetGeoTransform()
    lon = gt[0] + gt[1] * dataset.RasterXSize / 2 + gt[2] * dataset.RasterYSize / 2
    lat = gt[3] + gt[4] * dataset.RasterXSize / 2 + gt[5] * dataset.RasterYSize / 2
    target = osr.SpatialReference()
    target.SetLAEA(lat, lon, 0, 0)
    target.SetWellKnownGeogCS("WGS84")
    source = srs.Clone()
    for item in (source, target):
        item.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(source, target)


def polygonize_changes(
    mask_path: str,
    out_path: str,
    date_path: str | None,
    nodata: int,
    run: OutputSet,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Polygons of the changed regions of ``mask_path`` with their ``area`` (and first change
    ``date`` when ``date_path`` is given: regions are then split by date).

    ``area`` is in square CRS units (m^2 for metric projections); for geographic CRSs it is
    computed in m^2 in a local equal-area projection. Returns the number of polygons.
    """
    driver_name = vector_driver(out_path)
    driver = ogr.GetDriverByName(driver_name)
    layer_name = os.path.splitext(os.path.basename(out_path))[0] or "changes"
    if driver_name in ATOMIC:  # staged in ``run``, committed with the rasters
        target = partial_path(out_path)
    else:  # a Shapefile's several files are written in place

        remove_vector(out_path)
        target = out_path
    try:
        with gdal_errors_as_exceptions():
            mask = gdal.Open(mask_path)
            wkt = mask.GetProjection()
            srs = osr.SpatialReference(wkt=wkt) if wkt else None
            changed = _changed_only_vrt(mask_path, nodata)
            dates = gdal.Open(date_path) if date_path else None
            source_band = dates.GetRasterBand(1) if dates else changed.GetRasterBand(1)
            output = driver.CreateDataSource(target)
            layer = output.CreateLayer(layer_name, srs, ogr.wkbPolygon)
            if dates:
                layer.CreateField(ogr.FieldDefn("date", ogr.OFTInteger))
            area_field = ogr.FieldDefn("area", ogr.OFTReal)
            layer.CreateField(area_field)

            def progress(_fraction, _message, _data):
                return 0 if is_cancelled() else 1

            try:
                gdal.Polygonize(source_band, changed.GetRasterBand(1), layer, 0 if dates else -1, [],
                                callback=progress)
            except RuntimeError:
                if is_cancelled():
                    raise Cancelled() from None
                raise
            transform = _area_transform(srs, mask)
            count = 0
            layer.StartTransaction()
            layer.ResetReading()
            for feature in layer:
                geometry = feature.GetGeometryRef()
                if transform is not None:
                    geometry = geometry.Clone()
                    geometry.Transform(transform)
                feature.SetField("area", geometry.GetArea())
                layer.SetFeature(feature)
                count += 1
            layer.CommitTransaction()
            output = layer = None
            mask = changed = dates = None
        if target != out_path:
            run.stage(target, out_path)
        return count
    except BaseException:
        if target != out_path and os.path.exists(target):
            os.remove(target)
        raise
