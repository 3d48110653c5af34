"""core.raster: windows beyond the edge, georeference kept, atomic writes."""

import os

import numpy as np
import pytest
from osgeo import gdal

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.raster import RasterReader, RasterWriter, raster_info

from .synthetic import EPSG, GEOTRANSFORM, write_geotiff


def test_windows_beyond_the_edge_are_padded_invalid(tmp_path):
    image = np.arange(30, dtype=np.float32).reshape(5, 6)
    image[1, 1] = -1
    image[2, 2] = -1
    reader = RasterReader(write_geotiff(str(tmp_path / "a.tif"), image, nodata=-1))
    values, valid = reader.read(-2, 3, 4, 5)
    assert values.shape == valid.shape == (1, 4, 5)
    assert not valid[0, :2].any() and not valid[0, :, 3:].any()
    np.testing.assert_array_equal(values[0, 2:, :3], image[:2, 3:6])
    full, ok = reader.read(0, 0, 5, 6)
    assert not ok[0, 1, 1] and not ok[0, 2, 2] and ok.sum() == 28
    assert full[0, 2, 2] == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_nodata_only_when_nan_is_the_nodata_value(tmp_path, bad):
    image = np.arange(30, dtype=np.float32).reshape(5, 6)
    image[3, 4] = bad
    declared = RasterReader(write_geotiff(str(tmp_path / "declared.tif"), image, nodata=np.nan))
    values, valid = declared.read(0, 0, 5, 6)
    assert valid.sum() == 29 and not valid[0, 3, 4] and values[0, 3, 4] == 0
    undeclared = RasterReader(write_geotiff(str(tmp_path / "undeclared.tif"), image, nodata=-1))
    undeclared.read(0, 0, 3, 6)  # the window without it reads
    with pytest.raises(SarDespeckleError, match="NaN or infinite values .first at row 3, column 4."):
        undeclared.read(0, 0, 5, 6)


def test_writer_keeps_georeference_nodata_descriptions_and_metadata(tmp_path):
    source = write_geotiff(str(tmp_path / "in.tif"), np.ones((2, 8, 9), np.float32),
                           nodata=-99, descriptions=("VV", "VH"))
    info = raster_info(source)
    out = str(tmp_path / "out.tif")
    with RasterWriter(out, info, 2, -99.0, info.descriptions, {"method": "lee", "looks": [1.5, 2]}) as w:
        w.write(np.full((2, 8, 9), 3.0, np.float32), 0, 0)
    written = raster_info(out)
    assert written.geotransform == GEOTRANSFORM
    assert f'"EPSG","{EPSG}"' in written.crs_wkt
    assert written.nodata == (-99.0, -99.0) and written.descriptions == ("VV", "VH")
    assert written.metadata["SAR_DESPECKLE_METHOD"] == "lee"
    assert written.metadata["SAR_DESPECKLE_LOOKS"] == "[1.5, 2]"
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "out.tif"]
    dataset = gdal.Open(out)
    band = dataset.GetRasterBand(1)
    assert band.GetBlockSize() == [512, 512]
    np.testing.assert_array_equal(band.ReadAsArray(), 3.0)


def test_failed_write_leaves_nothing(tmp_path):
    source = write_geotiff(str(tmp_path / "in.tif"), np.ones((4, 4), np.float32))
    out = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with RasterWriter(str(out), raster_info(source), 1, None, [], {}) as writer:
            writer.write(np.ones((1, 2, 4), np.float32), 0, 0)
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


def test_existing_output_survives_a_failed_run(tmp_path):
    source = write_geotiff(str(tmp_path / "in.tif"), np.ones((4, 4), np.float32))
    out = tmp_path / "out.tif"
    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with RasterWriter(str(out), raster_info(source), 1, None, [], {}):
            raise RuntimeError("boom")
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "out.tif"]


@pytest.mark.parametrize("path, message", [
    ("/nonexistent-folder/out.tif", "does not exist"),
    ("/proc/out.tif", "Cannot write"),
    ("relative.png", "must be a GeoTIFF"),
])
def test_unwritable_outputs_are_refused(tmp_path, path, message):
    source = write_geotiff(str(tmp_path / "in.tif"), np.ones((4, 4), np.float32))
    with pytest.raises(SarDespeckleError, match=message):
        with RasterWriter(path, raster_info(source), 1, None, [], {}):
            pass


def test_unreadable_inputs_are_refused(tmp_path):
    with pytest.raises(SarDespeckleError, match="does not exist"):
        raster_info(str(tmp_path / "missing.tif"))
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    with pytest.raises(SarDespeckleError, match="not a raster"):
        raster_info(str(text))
    with pytest.raises(SarDespeckleError, match="Band 3 does not exist"):
        RasterReader(write_geotiff(str(tmp_path / "in.tif"), np.ones((4, 4), np.float32)), [3])


def write_complex_geotiff(path, values, data_type=gdal.GDT_CFloat32, nodata=None):
    dataset = gdal.GetDriverByName("GTiff").Create(path, values.shape[-1], values.shape[-2], 1, data_type)
    dataset.SetGeoTransform(GEOTRANSFORM)
    dataset.GetRasterBand(1).WriteArray(values)
    if nodata is not None:
        dataset.GetRasterBand(1).SetNoDataValue(nodata)
    dataset = None
    return path


def test_complex_bands_read_as_complex64_with_validity(tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.normal(size=(6, 7)) + 1j * rng.normal(size=(6, 7))).astype(np.complex64)
    image[1, 1] = -5 + 0j
    image[2, 2] = image[3, 3] = -5 + 1j
    reader = RasterReader(write_complex_geotiff(str(tmp_path / "c.tif"), image, nodata=-5),
                          complex_values=True)
    values, valid = reader.read(-1, 0, 8, 7)
    assert values.dtype == np.complex64 and values.shape == valid.shape == (1, 8, 7)
    assert not valid[0, 0].any() and not valid[0, 7].any()
    expected_valid = np.ones((6, 7), bool)
    expected_valid[[1, 2, 3], [1, 2, 3]] = False
    np.testing.assert_array_equal(valid[0, 1:7], expected_valid)
    np.testing.assert_array_equal(values[0, 1:7][expected_valid], image[expected_valid])
    assert (values[0][~valid[0]] == 0).all()
    real, _ = RasterReader(str(tmp_path / "c.tif")).read(0, 0, 6, 7)
    assert real.dtype == np.float32
    np.testing.assert_array_equal(real[0][expected_valid], image.real[expected_valid])


def test_cint16_and_real_bands_read_as_complex(tmp_path):
    image = (np.arange(20).reshape(4, 5) - 7j * np.arange(20).reshape(4, 5)).astype(np.complex64)
    path = write_complex_geotiff(str(tmp_path / "ci16.tif"), image, gdal.GDT_CInt16)
    assert raster_info(path).data_types == ("CInt16",) and raster_info(path).is_complex
    values, valid = RasterReader(path, complex_values=True).read(0, 0, 4, 5)
    np.testing.assert_array_equal(values[0], image)
    assert valid.all()
    real = RasterReader(write_geotiff(str(tmp_path / "r.tif"), np.ones((3, 3), np.float32)),
                        complex_values=True).read(0, 0, 3, 3)[0]
    assert real.dtype == np.complex64 and (real == 1 + 0j).all()


def test_writer_writes_complex_and_keeps_gcps(tmp_path):
    source = str(tmp_path / "gcp.tif")
    dataset = gdal.GetDriverByName("GTiff").Create(source, 9, 8, 1, gdal.GDT_CInt16)
    gcps = [gdal.GCP(10.0 + i, 45.0 + i, 0.0, 4.0 * i, 3.0 * i) for i in range(3)]
    dataset.SetGCPs(gcps, 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]')
    dataset = None
    info = raster_info(source)
    assert len(info.gcps) == 3 and not info.geotransform and "WGS" in info.gcp_projection
    out = str(tmp_path / "out.tif")
    values = (np.arange(72).reshape(1, 8, 9) * (0.5 - 0.25j)).astype(np.complex64)
    with RasterWriter(out, info, 1, None, ["HH"], {"algorithm": "decorrelate"},
                      data_type=gdal.GDT_CFloat32) as writer:
        writer.write(values, 0, 0)
    written = raster_info(out)
    assert written.data_types == ("CFloat32",) and written.descriptions == ("HH",)
    assert [(g.GCPPixel, g.GCPLine, g.GCPX) for g in written.gcps] == [(g.GCPPixel, g.GCPLine, g.GCPX) for g in gcps]
    dataset = gdal.Open(out)
    np.testing.assert_array_equal(dataset.GetRasterBand(1).ReadAsArray(), values[0])
