"""Complex sources (rasters with complex bands or I/Q pairs, arrays) and sinks (arrays, temporary
rasters) that the estimation and whitening passes read and write, layout (channels, rows, cols).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from osgeo import gdal

from ..errors import SarDespeckleError
from ..raster import RasterReader, raster_info
from .settings import LAYOUTS


class ComplexSource:
    """Complex channels of a raster: complex bands, or I/Q pairs of real bands.

    ``read`` returns complex64 (channels, rows, cols) and validity, with the reader's padding
    semantics (outside the image: 0, invalid); exact zeros are invalid with ``zeros_as_nodata``.
    """

    def __init__(self, path: str, layout: str = "auto", zeros_as_nodata: bool = True) -> None:
        info = raster_info(path)
        complex_bands = [gdal.DataTypeIsComplex(gdal.GetDataTypeByName(t)) for t in info.data_types]
        types = ", ".join(sorted(set(info.data_types)))
        if any(complex_bands) and not all(complex_bands):
            raise SarDespeckleError(
                f"'{path}' mixes complex and real bands ({types}): give only the complex bands "
                "(for example with GDAL Translate and -b)."
            )
        if layout in ("auto", "complex"):
            if not all(complex_bands):
                hint = (" It has an even number of bands: if they hold I and Q (real and "
                        "imaginary parts), set the band layout to I/Q pairs."
                        if info.band_count % 2 == 0 else "")
                raise SarDespeckleError(
                    f"'{path}' is real-valued ({types}, {info.band_count} band(s)), but "
                    f"decorrelation needs complex SLC data (CInt16, CFloat32, ...).{hint}"
                )
            layout = "complex"
        elif layout == "iq":
            if all(complex_bands):
                raise SarDespeckleError(
                    f"'{path}' has complex bands ({types}): set the band layout to complex bands, "
                    "not I/Q pairs."
                )
            if info.band_count % 2:
                raise SarDespeckleError(
                    f"The I/Q band layout needs an even number of bands (I, Q, I, Q, ...), but "
                    f"'{path}' has {info.band_count}. Give the I and Q bands of each channel."
                )
        else:
            raise SarDespeckleError(f"Unknown band layout {layout!r}; expected one of {LAYOUTS}.")
        self.info = info
        self.layout = layout
        self.zeros_as_nodata = zeros_as_nodata
        self.reader = RasterReader(path, complex_values=(layout == "complex"))
        self.channels = info.band_count if layout == "complex" else info.band_count // 2
        self.height, self.width = info.height, info.width

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        values, valid = self.reader.read(row, col, height, width)
        if self.layout == "iq":
            values = (values[0::2] + 1j * values[1::2]).astype(np.complex64)
            valid = valid[0::2] & valid[1::2]
        if self.zeros_as_nodata:
            valid &= values != 0
        return np.where(valid, values, 0).astype(np.complex64), valid

    def descriptions(self) -> list[str]:
        return list(self.info.descriptions)

    def nodata(self) -> float | None:
        return self.info.nodata[0]


class ArraySource:
    """The ComplexSource interface over complex arrays in memory (channels, rows, cols)."""

    layout = "complex"

    def __init__(self, values: np.ndarray, valid: np.ndarray | None = None,
                 zeros_as_nodata: bool = True) -> None:
        values = np.asarray(values)
        if values.ndim == 2:
            values = values[None]
        if values.ndim != 3 or not np.iscomplexobj(values):
            raise SarDespeckleError("Give a complex array of layout (rows, cols) or (channels, rows, cols).")
        ok = np.ones(values.shape, bool) if valid is None else np.broadcast_to(valid, values.shape).copy()
        if not np.isfinite(values[ok]).all():
            raise SarDespeckleError("The complex array holds NaN or infinite values where it is "
                                    "valid: mark them invalid with ``valid``.")
        if zeros_as_nodata:
            ok &= values != 0
        self.values = np.where(ok, values, 0).astype(np.complex64)
        self.valid = ok
        self.channels, self.height, self.width = values.shape

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return _padded_read(self.values, self.valid, row, col, height, width)


def _padded_read(values: np.ndarray, valid: np.ndarray | None, row: int, col: int, height: int,
                 width: int) -> tuple[np.ndarray, np.ndarray]:
    """A window of (channels, rows, cols) arrays; outside them: 0 and invalid."""
    channels, rows, cols = values.shape
    out = np.zeros((channels, height, width), np.complex64)
    ok = np.zeros(out.shape, bool)
    r0, r1 = max(row, 0), min(row + height, rows)
    c0, c1 = max(col, 0), min(col + width, cols)
    if r0 < r1 and c0 < c1:
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = values[:, r0:r1, c0:c1]
        ok[:, r0 - row:r1 - row, c0 - col:c1 - col] = True if valid is None else valid[:, r0:r1, c0:c1]
    return out, ok


class ArraySink:
    """Collects written complex blocks into an in-memory array."""

    def __init__(self, channels: int, height: int, width: int) -> None:
        self.values = np.zeros((channels, height, width), np.complex64)

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        self.values[:, row:row + values.shape[1], col:col + values.shape[2]] = values

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return _padded_read(self.values, None, row, col, height, width)


class RasterStore:
    """A temporary complex GeoTIFF for the intermediate result of large images."""

    def __init__(self, folder: str, channels: int, height: int, width: int) -> None:
        handle, self.path = tempfile.mkstemp(prefix=".decorrelate.", suffix=".partial.tif", dir=folder)
        os.close(handle)
        options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]
        self.dataset = gdal.GetDriverByName("GTiff").Create(
            self.path, width, height, channels, gdal.GDT_CFloat32, options
        )
        if self.dataset is None:
            raise SarDespeckleError(f"Cannot create the temporary file '{self.path}': is the disk full?")

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        for index in range(values.shape[0]):
            if self.dataset.GetRasterBand(index + 1).WriteArray(values[index], col, row) != 0:
                raise SarDespeckleError(f"Writing the temporary file '{self.path}' failed: is the disk full?")

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        block = np.stack([
            self.dataset.GetRasterBand(i + 1).ReadAsArray(col, row, width, height)
            for i in range(self.dataset.RasterCount)
        ]).astype(np.complex64)
        return block, np.ones(block.shape, bool)

    def close(self) -> None:
        self.dataset = None
        for leftover in (self.path, self.path + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)
