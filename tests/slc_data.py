"""Complex SLC data for the decorrelation tests and benchmark: synthetic speckle with a known
separable transfer function, and loaders for the real crops in ../shared/data/slc (which
return None when the file is absent; nothing is copied into the repository)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLC_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "slc")


@dataclass(frozen=True)
class Axis:
    """A separable system response along one axis: a weighting window over a band of
    ``bandwidth`` (fraction of the sampling rate, i.e. 1 / oversampling) centred at
    ``centroid`` (cycles/pixel), zero outside; ``beta`` is Kaiser's parameter."""

    window: str = "hamming"
    bandwidth: float = 1 / 1.4
    centroid: float = 0.0
    beta: float = 4.0

    def amplitude(self, f: np.ndarray) -> np.ndarray:
        """|H(f)| at frequencies ``f`` (cycles/pixel), periodic."""
        x = 2 * ((f - self.centroid + 0.5) % 1.0 - 0.5) / self.bandwidth
        inside = np.abs(x) <= 1
        if self.window == "hamming":
            weight = 0.54 + 0.46 * np.cos(np.pi * x)
        elif self.window == "kaiser":
            weight = np.i0(self.beta * np.sqrt(np.clip(1 - x ** 2, 0, 1))) / np.i0(self.beta)
        else:
            raise ValueError(self.window)
        return np.where(inside, weight, 0.0)


def synthetic_slc(height: int, width: int, azimuth: Axis, range_: Axis, seed: int = 0,
                  drift: float = 0.0) -> np.ndarray:
    """Single-look complex speckle (unit mean intensity, complex64) whose spectrum is
    |H_azimuth(fa)|^2 |H_range(fr)|^2: white circular Gaussian noise filtered by the separable
    response. ``drift`` (cycles/pixel per line) makes the azimuth centroid sweep linearly along
    the rows, as TOPS spectra do (a chirp in azimuth)."""
    rng = np.random.default_rng(seed)
    white = rng.normal(size=(height, width)) + 1j * rng.normal(size=(height, width))
    spectrum = np.fft.fft2(white)
    spectrum *= azimuth.amplitude(np.fft.fftfreq(height))[:, None]
    spectrum *= range_.amplitude(np.fft.fftfreq(width))[None, :]
    z = np.fft.ifft2(spectrum)
    if drift:
        u = np.arange(height) - (height - 1) / 2
        z *= np.exp(1j * np.pi * drift * u ** 2)[:, None]
    return (z / np.sqrt(np.mean(np.abs(z) ** 2))).astype(np.complex64)


def response_error(plan_summary: dict, axis: Axis, n: int = 1024) -> float:
    """Relative RMS error, over the true band, between the estimated amplitude response of a
    report's axis summary and the true one (both scaled to unit RMS there)."""
    from sar_despeckle_plugin.core.decorrelation.spectra import response_at

    f = np.fft.fftfreq(n)
    true = axis.amplitude(f)
    band = true > 0
    x = 2 * ((f - plan_summary["centroid"] + 0.5) % 1.0 - 0.5) / plan_summary["bandwidth"]
    estimated = response_at(x, plan_summary["response_chebyshev"], plan_summary["response_fit_limit"])
    true, estimated = true[band], estimated[band]
    true = true / np.sqrt(np.mean(true ** 2))
    estimated = estimated / np.sqrt(np.mean(estimated ** 2))
    return float(np.sqrt(np.mean((estimated - true) ** 2)))


def _path(name: str) -> str | None:
    path = os.path.join(SLC_DATA, name)
    return path if os.path.exists(path) else None


def terrasarx() -> np.ndarray | None:
    """TerraSAR-X crop (256 x 256): rows azimuth, columns range."""
    path = _path("terrasarx_slc_crop.npy")
    if path is None:
        return None
    values = np.load(path)
    return (values[..., 0] + 1j * values[..., 1]).astype(np.complex64)


def hdf5_subdataset(name: str, dataset: str = "/science/LSAR/SLC/swaths/frequencyA/HH") -> str | None:
    """GDAL name of an SLC dataset in one of the HDF5 files (read by GDAL's HDF5 driver, so
    no h5py is needed)."""
    path = _path(name)
    return None if path is None else f'HDF5:"{path}":/{dataset}'


def read_hdf5(name: str) -> np.ndarray | None:
    source = hdf5_subdataset(name)
    if source is None:
        return None
    dataset = gdal.Open(source)
    return dataset.GetRasterBand(1).ReadAsArray().astype(np.complex64)


def envisat() -> np.ndarray | None:
    """Envisat ASAR HH crop (500 x 500); its first three columns are zero (nodata)."""
    return read_hdf5("envisat.h5")


def winnipeg() -> np.ndarray | None:
    """UAVSAR L-band crop (250 x 250): a dark (noise-level) area above fields."""
    return read_hdf5("winnipeg.h5")


#: The largest Sentinel-1 IW TOPS chip (157 x 157, VV I/Q) and its sea area: the rows above
#: the ship and its azimuth sidelobes (the ship and its range sidelobes cross rows 60-105).
TOPS_CHIP = ("opensarship/S1A_IW_SLC__1SSV_20150217T204257_20150217T204324_004668_005C34_2DC9/"
             "Patch/Cargo_x29087_y5288.tif")
TOPS_SEA_ROWS = slice(0, 56)


def tops_chip() -> np.ndarray | None:
    path = _path(TOPS_CHIP)
    if path is None:
        return None
    values = gdal.Open(path).ReadAsArray()
    return (values[-2] + 1j * values[-1]).astype(np.complex64)


def tops_sea() -> np.ndarray | None:
    chip = tops_chip()
    return None if chip is None else np.ascontiguousarray(chip[TOPS_SEA_ROWS])


def envisat_metadata() -> dict | None:
    """The Envisat product's own numbers: PRF, Doppler centroid over the crop (mean, min,
    max), processed azimuth and range bandwidths, range sampling rate, along-track pixel
    spacing on the ground (m)."""
    path = _path("envisat.h5")
    if path is None:
        return None
    root = gdal.OpenEx(path, gdal.OF_MULTIDIM_RASTER).GetRootGroup()

    def read(name):
        return root.OpenMDArrayFromFullname("/science/LSAR/SLC/" + name).ReadAsArray()

    doppler = read("metadata/processingInformation/parameters/frequencyA/dopplerCentroid")
    times = read("metadata/processingInformation/parameters/zeroDopplerTime")
    ranges = read("metadata/processingInformation/parameters/slantRange")
    crop_times = read("swaths/zeroDopplerTime")
    crop_ranges = read("swaths/frequencyA/slantRange")
    rows = (times >= crop_times.min() - 1) & (times <= crop_times.max() + 1)
    cols = (ranges >= crop_ranges.min() - 100) & (ranges <= crop_ranges.max() + 100)
    grid = doppler[np.ix_(rows, cols)]
    spacing = float(read("swaths/frequencyA/slantRangeSpacing"))
    return {
        "prf_hz": float(read("swaths/frequencyA/nominalAcquisitionPRF")),
        "line_rate_hz": 1.0 / float(read("swaths/zeroDopplerTimeSpacing")),
        "doppler_centroid_hz": float(grid.mean()),
        "doppler_centroid_range_hz": [float(grid.min()), float(grid.max())],
        "processed_azimuth_bandwidth_hz": float(read("swaths/frequencyA/processedAzimuthBandwidth")),
        "processed_range_bandwidth_hz": float(read("swaths/frequencyA/processedRangeBandwidth")),
        "range_sampling_rate_hz": 299_792_458.0 / (2 * spacing),
        "along_track_spacing_m": float(read("swaths/frequencyA/sceneCenterAlongTrackSpacing")),
    }
