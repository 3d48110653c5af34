"""Speckle handled before the change decision (PREFILTER, on by default).

Two ways, chosen by what the decision needs:

- **Despeckling** (:func:`despeckle_dates`), for the log-ratio and unsupervised methods on
  single-pol and dual-pol intensities: ``core.despeckle``'s automatic choice
  (``core.despeckle.choice``: the network whose model card covers the looks and speckle
  correlation, else the best classical filter measured for them) is made once, for the most
  demanding date (fewest looks, strongest speckle correlation), as it is for the most demanding
  band of one image; then every date goes through that despeckler on its own, at *its own*
  looks — a 4-look and a single-look date of one pair are each filtered for their speckle, and
  neither with the other's statistics. One despeckler for all dates matters: two different ones
  (say Frost 13 x 13 and a network) leave different resolutions and biases, which the log-ratio
  reads as change along every edge. The decision then reads the despeckled dates. Mildly
  correlated speckle (own lag-1 part up to ``WHITE_NETWORK_TOLERANCE``, 0.25) goes to a network
  trained on white speckle, not to one trained on SLC-like correlation (which single-date
  despeckling prefers from 0.15 on): the latter reads structures of a pixel or two as speckle and
  erases small changes with it. On Yellow River (own lag-1 0.22 / 0.16 on the two dates) it missed
  855 changed pixels against 637 (kappa 0.898 against 0.919, ``scripts/bench_change.py``), though
  its ratio images were whiter; the detector's own spatial context absorbs the speckle the white
  network leaves.
- **An adaptive boxcar** (:func:`adaptive_window`), for the omnibus test (whose statistics need
  untouched Wishart speckle, which a despeckler no longer leaves) and for C2 (whose
  off-diagonal terms no despeckler here reads): the smallest odd window that gives every date at
  least :data:`TARGET_LOOKS` looks once the speckle correlation is accounted for.

The learned detector reads speckled dates (it was trained on them) and takes neither.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

from .. import speckle
from ..feedback import Feedback
from ..raster import RasterReader

#: Looks the adaptive window aims at: what a 3 x 3 boxcar gives single-look white speckle; there
#: the omnibus test detects a 5 dB change in 99 % of the pixels (scripts/bench_change.py).
TARGET_LOOKS = 9.0
#: The largest adaptive window (pixels): beyond it the map's outlines blur more than speckle costs.
MAX_WINDOW = 7
#: The methods that decide on despeckled dates when PREFILTER is on (single-pol and dual-pol).
DESPECKLED_METHODS = ("log_ratio_ki_gg", "log_ratio_ki_gamma", "log_ratio_otsu", "unsupervised")


def adaptive_window(looks: Sequence[float], kappa: Callable[[int], float]) -> int:
    """The smallest odd window (up to MAX_WINDOW) whose boxcar gives every date TARGET_LOOKS
    looks: min(looks) * window^2 / kappa(window) >= TARGET_LOOKS, ``kappa`` measuring how much
    less than window^2 the correlated speckle gains (``looks.averaging_factor``)."""
    window = 1
    while window < MAX_WINDOW and min(looks) * window ** 2 / kappa(window) < TARGET_LOOKS:
        window += 2
    return window


def despeckle_dates(inputs: Sequence[str], units: str, looks: Sequence[float], given: bool, zeros_as_nodata: bool,
                    device: str, folder: str, feedback: Feedback) -> list[str]:
    """Despeckle each date of ``inputs`` into ``folder`` (GeoTIFF, same units, grid and nodata)
    with the despeckler ``core.despeckle``'s automatic choice makes for the most demanding date,
    at each date's own looks (``looks``: one per date; ``given``: the user's, else estimated and
    estimated again per band by the despeckling); returns the despeckled paths in date order."""
    from ..despeckle.choice import WHITE_NETWORK_TOLERANCE, resolve_automatic
    from ..despeckle.pipeline import despeckle_raster
    from ..despeckle.settings import DespeckleSettings

    samples, band_looks = [], []
    for path, date_looks in zip(inputs, looks):
        reader = RasterReader(path)
        reader = speckle.ZeroFillReader(reader, speckle.zero_rule(
            zeros_as_nodata, [reader.info.data_types[b - 1] for b in reader.bands]))
        for sample in speckle.read_sample(reader):
            samples.append(sample)
            band_looks.append(date_looks)
    asked = DespeckleSettings(units=units, looks=looks[0] if given else None, zeros_as_nodata=zeros_as_nodata,
                              device=device)
    chosen = resolve_automatic(asked, samples, units, band_looks, Feedback(
        info=lambda message: feedback.info(f"Prefilter, for every date: {message}"), warn=feedback.warn),
        mild_correlation=WHITE_NETWORK_TOLERANCE)
    outputs = []
    for index, path in enumerate(inputs):
        date = index + 1

        def progress(fraction, index=index):
            feedback.progress((index + fraction) / (len(inputs) + 1))

        date_feedback = Feedback(progress=progress, is_cancelled=feedback.is_cancelled,
                                 info=lambda message, date=date: feedback.info(f"Prefilter, date {date}: {message}"),
                                 warn=lambda message, date=date: feedback.warn(f"Prefilter, date {date}: {message}"))
        output = os.path.join(folder, f"despeckled_date{date}.tif")
        despeckle_raster(path, output, dataclasses.replace(chosen, looks=looks[index] if given else None),
                         date_feedback)
        outputs.append(output)
    return outputs
