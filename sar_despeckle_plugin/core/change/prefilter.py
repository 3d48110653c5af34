"""Speckle handled before the change decision (PREFILTER, on by default).

Two ways, chosen by what the decision needs:

- **Despeckling** (:func:`despeckle_dates`), for the log-ratio and unsupervised methods on
  single-pol and dual-pol intensities: every date goes through ``core.despeckle`` on its own,
  with METHOD automatic (the network whose model card covers the date's looks and speckle
  correlation, else the best classical filter measured for them: ``core.despeckle.choice``),
  at *its own* looks — a 4-look date and a single-look date of one pair get different
  networks or filters, and neither is smoothed with the other's statistics. The decision then
  reads the despeckled dates, whose looks are estimated afresh.
- **An adaptive boxcar** (:func:`adaptive_window`), for the omnibus test (whose statistics need
  untouched Wishart speckle, which a despeckler no longer leaves) and for C2 (whose
  off-diagonal terms no despeckler here reads): the smallest odd window that gives every date at
  least :data:`TARGET_LOOKS` looks once the speckle correlation is accounted for.

The learned detector reads speckled dates (it was trained on them) and takes neither.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from ..feedback import Feedback

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


def despeckle_dates(inputs: Sequence[str], units: str, looks: Sequence[float] | None, zeros_as_nodata: bool,
                    device: str, folder: str, feedback: Feedback) -> list[str]:
    """Despeckle each date of ``inputs`` into ``folder`` (GeoTIFF, same units, grid and nodata)
    with ``core.despeckle``'s automatic choice at the date's own looks (``looks``: the user's,
    one per date, or None to estimate each); returns the despeckled paths in date order."""
    from ..despeckle.pipeline import despeckle_raster
    from ..despeckle.settings import DespeckleSettings

    outputs = []
    for index, path in enumerate(inputs):
        date = index + 1

        def progress(fraction, index=index):
            feedback.progress((index + fraction) / (len(inputs) + 1))

        date_feedback = Feedback(progress=progress, is_cancelled=feedback.is_cancelled,
                                 info=lambda message, date=date: feedback.info(f"Prefilter, date {date}: {message}"),
                                 warn=lambda message, date=date: feedback.warn(f"Prefilter, date {date}: {message}"))
        output = os.path.join(folder, f"despeckled_date{date}.tif")
        despeckle_raster(path, output, DespeckleSettings(
            units=units, looks=looks[index] if looks else None, zeros_as_nodata=zeros_as_nodata, device=device,
        ), date_feedback)
        outputs.append(output)
    return outputs
