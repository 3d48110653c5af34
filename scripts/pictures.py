"""PNG quick-looks for the demo and benchmarks, written with GDAL (no plotting library)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal


def db_stretch(intensity: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear intensity -> uint8 grey levels, ``low`` and ``high`` dB mapped to 0 and 255."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(intensity)
    scaled = (np.nan_to_num(db, nan=low, neginf=low) - low) / (high - low)
    return (255 * np.clip(scaled, 0, 1)).astype(np.uint8)


def db_limits(intensity: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles of the valid (positive) intensities, in dB."""
    valid = intensity[np.isfinite(intensity) & (intensity > 0)]
    return tuple(10 * np.log10(np.percentile(valid, [2, 98])))


def mosaic(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Grey images of equal size arranged in a grid with white gaps."""
    height, width = rows[0][0].shape
    out = np.full((len(rows) * (height + gap) - gap, len(rows[0]) * (width + gap) - gap), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            out[r * (height + gap): r * (height + gap) + height, c * (width + gap): c * (width + gap) + width] = image
    return out


def save_png(grey: np.ndarray, path: str) -> None:
    """Write a uint8 (rows, cols) array as a PNG."""
    memory = gdal.GetDriverByName("MEM").Create("", grey.shape[1], grey.shape[0], 1, gdal.GDT_Byte)
    memory.GetRasterBand(1).WriteArray(grey)
    gdal.GetDriverByName("PNG").CreateCopy(path, memory)
    aux = path + ".aux.xml"
    memory = None
    gdal.Unlink(aux)


def before_after_png(before: np.ndarray, after: np.ndarray, path: str) -> None:
    """One row per band: the input and the despeckled image, both (bands, rows, cols)
    linear intensity, each band stretched with the input's 2-98 % dB range."""
    rows = []
    for noisy, clean in zip(before, after):
        low, high = db_limits(noisy)
        rows.append([db_stretch(noisy, low, high), db_stretch(clean, low, high)])
    save_png(mosaic(rows), path)
