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
    image[2, 2] = np.nan
    reader = RasterReader(write_geotiff(str(tmp_path / "a.tif"), image, nodata=-1))
    values, valid = reader.read(-2, 3, 4, 5)
    assert values.shape == valid.shape == (1, 4, 5)
    assert not valid[0, :2].any() and not valid[0, :, 3:].any()
    np.testing.assert_array_equal(values[0, 2:, :3], image[:2, 3:6])
    full, ok = reader.read(0, 0, 5, 6)
    assert not ok[0, 1, 1] and not ok[0, 2, 2] and ok.sum() == 28
    assert full[0, 2, 2] == 0


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
