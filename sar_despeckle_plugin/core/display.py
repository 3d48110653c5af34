"""Display ranges of output rasters: what a stretch for SAR images should span.

A linear min/max stretch shows a despeckled intensity image almost entirely black (a few point
targets reach 1e7 while the scene sits near 0.1), so outputs are shown stretched between
percentiles of their valid pixels, read on a decimated grid so that a whole Sentinel-1 scene
costs one small read. QGIS-free: ``processing.styles`` turns these ranges into renderers.
"""

from __future__ import annotations

import numpy as np

from .raster import open_raster

#: Longest side of the decimated grid the percentiles are measured on (pixels).
SAMPLE_SIDE = 1024


def valid_sample(path: str, band: int, max_side: int = SAMPLE_SIDE) -> np.ndarray:
    """The finite, non-nodata values of ``band`` (1-based) of ``path``, read on a grid of at most
    ``max_side`` pixels along the longer side (nearest neighbour: values are never averaged)."""
    dataset = open_raster(path)
    raster_band = dataset.GetRasterBand(band)
    width, height = dataset.RasterXSize, dataset.RasterYSize
    scale = min(1.0, max_side / max(width, height))
    values = raster_band.ReadAsArray(
        buf_xsize=max(1, round(width * scale)), buf_ysize=max(1, round(height * scale))
    ).astype(np.float64)
    valid = np.isfinite(values)
    nodata = raster_band.GetNoDataValue()
    if nodata is not None:
        valid &= values != nodata
    return values[valid]


def percentile_range(path: str, band: int, low: float = 2.0, high: float = 98.0) -> tuple[float, float] | None:
    """The ``low`` and ``high`` percentiles of the valid pixels of ``band``; None when it has
    none. A constant band gets a range of width 1 around its value, so a stretch stays defined."""
    values = valid_sample(path, band)
    if values.size == 0:
        return None
    minimum, maximum = (float(v) for v in np.percentile(values, [low, high]))
    if maximum <= minimum:
        return minimum - 0.5, minimum + 0.5
    return minimum, maximum


def centred_range(path: str, band: int, centre: float = 1.0, coverage: float = 96.0) -> tuple[float, float] | None:
    """A range symmetric about ``centre`` holding ``coverage`` percent of the valid pixels (the
    ratio image I / I_hat, whose mean is 1: grey at 1, darker below, brighter above); None when
    the band has no valid pixel."""
    values = valid_sample(path, band)
    if values.size == 0:
        return None
    half = float(np.percentile(np.abs(values - centre), coverage)) or 0.5
    return centre - half, centre + half
