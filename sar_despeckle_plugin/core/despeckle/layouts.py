"""How each BAND_LAYOUT (``core.choices.BAND_LAYOUT_LABELS``) turns the bands read from the input
into the CHANNELS a despeckler filters, linear intensity each on its own, and the despeckled
channels back into output bands.

* ``single`` (any number of bands) and ``dual`` (two bands, VV and VH): each band is a channel,
  converted from the input's units to linear intensity and back, valid where the band is.
* ``c2`` (four bands C11, C22, Re C12, Im C12, linear): the channels are the four intensities
  |Svv|^2, |Svh|^2, |Svv + Svh|^2, |Svv + j Svh|^2 (:func:`core.covariance.intensities_from_c2`,
  with the derivation), each an L-look speckled intensity. C2 is recovered exactly from their
  estimates and made a valid covariance (:func:`core.covariance.valid_covariance`: C11, C22 >= 0,
  C12 shrunk where |C12|^2 > C11 C22), so every output pixel is a covariance matrix. A pixel is
  valid where all four bands are; the zero rule applies to C11 and C22 only (Re and Im C12 are
  zero in fact wherever VV and VH are uncorrelated).

Arrays: raw windows (B, bands, H, W) in the input's units -> channels (B, C, H, W) linear
intensity (torch); samples as lists of (rows, cols) windows (numpy).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import speckle
from ..choices import INTENSITY_BANDS
from ..covariance import c2_from_intensities, intensities_from_c2, valid_covariance

#: The channels of the C2 layout, as the log names them.
C2_CHANNELS = ("|Svv|^2 (C11)", "|Svh|^2 (C22)", "|Svv + Svh|^2", "|Svv + j Svh|^2")


def intensity_bands(layout: str, count: int) -> tuple[int, ...]:
    """0-based indices of the selected bands that hold intensities (the zero rule, the value
    checks, RATIO and REPORT apply to them): every band but C2's Re and Im C12."""
    return INTENSITY_BANDS["c2"] if layout == "c2" else tuple(range(count))


def channel_names(layout: str, bands) -> list[str]:
    """What the log calls each channel: 'Band N' (1-based input band numbers ``bands``), or
    :data:`C2_CHANNELS`."""
    return list(C2_CHANNELS) if layout == "c2" else [f"Band {band}" for band in bands]


def channel_samples(layout: str, samples, units: str) -> list[speckle.BandSample]:
    """The sample of each channel (linear intensity, float64) from the bands' ``samples``
    (:class:`core.speckle.BandSample` in ``units``)."""
    if layout != "c2":
        return [speckle.BandSample([speckle.to_intensity(v.astype(np.float64), units) for v in s.values],
                                   s.valid, s.fill) for s in samples]
    windows = len(samples[0].values)
    valid = [np.logical_and.reduce([s.valid[w] for s in samples]) for w in range(windows)]
    per_window = [intensities_from_c2([s.values[w].astype(np.float64) for s in samples]) for w in range(windows)]
    return [speckle.BandSample([np.maximum(channels[c], 0) for channels in per_window], valid)
            for c in range(len(C2_CHANNELS))]


def to_channels(layout: str, values: torch.Tensor, valid: torch.Tensor, units: str):
    """Raw (B, bands, H, W) in ``units`` and its validity -> the channels (B, C, H, W) linear
    intensity (0 where invalid) and their validity."""
    if layout == "c2":
        valid = valid.all(1, keepdim=True).expand(-1, len(C2_CHANNELS), -1, -1)
        intensity = torch.stack(intensities_from_c2(values.unbind(1)), 1).clamp_min(0)
    else:
        intensity = speckle.to_intensity(values, units)
    return torch.where(valid, intensity, torch.zeros_like(intensity)), valid


def from_channels(layout: str, estimate: torch.Tensor, units: str) -> torch.Tensor:
    """Despeckled channels (B, C, H, W) linear intensity -> output bands in ``units`` (C2: a
    valid covariance at every pixel)."""
    estimate = estimate.clamp_min(0)
    if layout == "c2":
        return torch.stack(valid_covariance(c2_from_intensities(estimate.unbind(1))), 1)
    return speckle.from_intensity(estimate, units)
