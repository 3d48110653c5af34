"""Speckle statistics shared by every algorithm: units, validity, equivalent number of looks.

Conventions: *intensity* is power (|z|^2, sigma0 linear), *amplitude* its square root, *dB*
``10 log10(intensity)``. All filters and networks work on linear intensity; inputs are
converted on the way in and outputs back to the input's units on the way out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import SarDespeckleError

UNITS = ("intensity", "amplitude", "dB")

#: Side of the square blocks whose local statistics the looks estimator uses (pixels).
LOOKS_BLOCK = 7


def to_intensity(values, units: str):
    """Convert ``values`` (numpy array or torch tensor) given in ``units`` to linear intensity."""
    if units == "intensity":
        return values
    if units == "amplitude":
        return values * values
    if units == "dB":
        return 10.0 ** (values / 10.0)
    raise ValueError(f"unknown units {units!r}; expected one of {UNITS}")


def from_intensity(intensity, units: str):
    """Convert linear ``intensity`` (numpy array or torch tensor) to ``units``."""
    if units == "intensity":
        return intensity
    if units == "amplitude":
        return intensity ** 0.5
    if units == "dB":
        return 10.0 * (intensity.log10() if hasattr(intensity, "log10") else np.log10(intensity))
    raise ValueError(f"unknown units {units!r}; expected one of {UNITS}")


def intensity_validity(intensity, valid, zeros_as_nodata: bool):
    """Valid pixels of a linear intensity array: finite, and non-zero when zeros are nodata.

    Sentinel-1 marks swath borders with exact zeros, usually untagged; they must never enter
    statistics or network inputs.
    """
    if zeros_as_nodata:
        return valid & (intensity > 0)
    return valid


@dataclass(frozen=True)
class BandSample:
    """Raw values of one band drawn from evenly spread windows, with their validity.

    ``values`` and ``valid`` are lists of 2-D arrays (rows, cols), one per window.
    """

    values: list[np.ndarray]
    valid: list[np.ndarray]

    def valid_values(self) -> np.ndarray:
        return np.concatenate([v[ok] for v, ok in zip(self.values, self.valid)])


def sample_windows(height: int, width: int, max_pixels: int = 4_000_000, side: int = 256):
    """Windows ``(row, col, rows, cols)`` covering the image, or evenly spread when it is big."""
    if height * width <= max_pixels:
        return [(0, 0, height, width)]
    per_axis = max(1, int(math.sqrt(max_pixels / side ** 2)))
    rows = np.linspace(0, max(height - side, 0), per_axis).astype(int)
    cols = np.linspace(0, max(width - side, 0), per_axis).astype(int)
    return [(int(r), int(c), min(side, height), min(side, width)) for r in rows for c in cols]


def read_sample(reader, max_pixels: int = 4_000_000) -> list[BandSample]:
    """One :class:`BandSample` per band of ``reader`` (a core.raster.RasterReader)."""
    windows = [reader.read(*w) for w in sample_windows(reader.height, reader.width, max_pixels)]
    return [
        BandSample([values[b] for values, _ in windows], [valid[b] for _, valid in windows])
        for b in range(len(reader.bands))
    ]


def detect_units(raw: np.ndarray, description: str = "") -> str | None:
    """Guess the units of a band from its valid raw values and its description.

    Returns ``None`` when the data leaves it ambiguous (non-negative data without a telling
    band description could be intensity or amplitude).
    """
    text = description.lower()
    if "db" in text.replace("_", " ").split() or text.endswith("_db") or "decibel" in text:
        return "dB"
    if raw.size and raw.min() < 0:
        return "dB"
    if "amplitude" in text or text.startswith("amp"):
        return "amplitude"
    if any(word in text for word in ("intensity", "sigma0", "beta0", "gamma0", "power")):
        return "intensity"
    return None


def check_values(raw: np.ndarray, units: str, band: int) -> None:
    """Refuse values that cannot be in ``units``, with a message saying what to do.

    Args:
        raw: valid values of the band as stored in the file.
        units: the units the user declared or we detected.
        band: 1-based band number for the message.
    """
    if raw.size == 0:
        return
    if units in ("intensity", "amplitude"):
        negative = raw < 0
        if negative.any():
            share = negative.mean()
            if share > 0.05 and -60 < np.median(raw) < 30 and raw.max() < 60:
                raise SarDespeckleError(
                    f"Band {band} holds negative values ({share:.0%} of pixels, median "
                    f"{np.median(raw):.1f}): it looks like dB. Set INPUT_UNITS to dB."
                )
            raise SarDespeckleError(
                f"Band {band} holds negative values (minimum {raw.min():g}), which a SAR "
                f"{units} cannot have. Give a calibrated intensity, amplitude or dB image."
            )
    elif units == "dB" and raw.max() > 80:
        raise SarDespeckleError(
            f"Band {band} holds values up to {raw.max():g}, impossible in dB (that would be an "
            "intensity of 1e8): the image looks linear. Set INPUT_UNITS to intensity or amplitude."
        )


def estimate_looks(intensity: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> float:
    """Equivalent number of looks of linear intensity, robust to heterogeneous scenes.

    Speckle alone gives every homogeneous block the same coefficient of variation, 1/sqrt(L);
    texture and edges only add to it. So we take the *mode* of the distribution of block
    coefficients of variation (non-overlapping LOOKS_BLOCK x LOOKS_BLOCK blocks, fully valid
    ones only), which heterogeneous blocks spread to the right without moving, and correct the
    small-sample bias of the block estimates.

    Args:
        intensity: 2-D linear-intensity windows (rows, cols).
        valid: matching validity masks.
    Returns:
        The estimated ENL, at least 1: fully developed speckle has a coefficient of variation of
        at most 1 in intensity; anything above that is texture, not fewer looks.
    """
    b = LOOKS_BLOCK
    cvs = []
    for values, ok in zip(intensity, valid):
        rows, cols = (values.shape[0] // b) * b, (values.shape[1] // b) * b
        if rows == 0 or cols == 0:
            continue
        blocks = values[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2)
        full = ok[:rows, :cols].reshape(rows // b, b, cols // b, b).swapaxes(1, 2).all(axis=(2, 3))
        blocks = blocks[full].reshape(-1, b * b).astype(np.float64)
        mean = blocks.mean(axis=1)
        keep = mean > 0
        cvs.append(blocks[keep].std(axis=1, ddof=1) / mean[keep])
    cv = np.concatenate(cvs) if cvs else np.empty(0)
    if cv.size < 20:
        raise SarDespeckleError(
            "Too few valid pixels to estimate the number of looks: give LOOKS explicitly."
        )
    log_cv = np.log(cv[cv > 0])
    histogram, edges = np.histogram(log_cv, bins=np.linspace(-4.0, 2.0, 241))
    smooth = np.convolve(histogram, np.hanning(15), mode="same")
    peak = np.argmax(smooth)
    window = slice(max(peak - 3, 0), peak + 4)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mode_cv = math.exp(np.average(centres[window], weights=smooth[window] + 1e-12))
    return max(1.0, 1.0 / mode_cv ** 2)
