"""One date of a stack despeckled by itself, as single-date despeckling would: what
``sar_despeckle:despeckle`` with METHOD automatic runs on that date (the choice is
:func:`core.despeckle.choice.resolve_automatic`'s, the despeckler
:func:`core.despeckle.network.network_despeckler` or the classical filter of
:mod:`core.despeckle.pipeline`). The ratio method uses it where no other date tells anything
about the target: inside the target's own change (:func:`.methods.own_region`), so that the
output there is what the single-date default gives. At one look on white speckle the choice is
``sarcnn_default`` (the ratio method's own network is the looks-conditioned ``sarcnn_looks``);
on correlated speckle outside the GRD network's range a classical filter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import speckle
from ..choices import INTENSITY_BANDS
from ..despeckle.choice import AUTOMATIC, resolve_automatic, with_correlation
from ..despeckle.network import network_despeckler
from ..despeckle.pipeline import classical_despeckler
from ..despeckle.settings import BandDespeckler, BandStatistics, DespeckleSettings
from ..models.normalisation import reference_level
from .settings import MultitemporalSettings


def band_statistics(sample: speckle.BandSample, looks: float, looks_given: bool) -> BandStatistics:
    """One date's intensity channel measured on its ``sample`` (linear intensity windows) as
    single-date despeckling measures a band for METHOD automatic: its ``looks``, the median of
    its valid pixels (a network's reference level), their 98th percentile (Lee sigma's
    point-target threshold) and, when the looks were estimated (not ``looks_given``), the looks
    on every second pixel (:func:`core.speckle.pixel_looks`)."""
    values = sample.valid_values()
    return BandStatistics(float(looks), reference_level(values), float(np.percentile(values, 98)),
                          None if looks_given else speckle.pixel_looks(sample.values, sample.valid))


def date_alone(settings: MultitemporalSettings, looks: Sequence[float], covs, valids, targets: Sequence[int],
               device, feedback) -> BandDespeckler:
    """How single-date despeckling (METHOD automatic) would despeckle each date of the stack by
    itself: ``looks`` per date (given or estimated), the sample ``covs`` (per window, linear
    (k, bands, rows, cols)) and ``valids`` (per window, (k, rows, cols)). The choice serves the
    ``targets`` (0-based dates), the most demanding of their intensity channels, as it serves
    the bands of one image; its ``apply(intensity, valid, t * C + c)`` despeckles channel c of
    date t (linear intensity (B, 1, H, W)) with that date's own statistics."""
    channels = INTENSITY_BANDS[settings.layout]
    given = settings.looks is not None
    samples = [[speckle.BandSample([cov[t, band] for cov in covs], [valid[t] for valid in valids])
                for band in channels] for t in range(len(looks))]
    statistics = [band_statistics(sample, looks[t], given) for t, date in enumerate(samples) for sample in date]
    served = [t * len(channels) + c for t in targets for c in range(len(channels))]
    chosen = DespeckleSettings(method=AUTOMATIC, looks=min(looks[t] for t in targets) if given else None,
                               self_ensemble=settings.self_ensemble, device=settings.device)
    feedback.info("Inside a target date's own change no other date tells what it holds: the ratio method "
                  "despeckles the date there alone, as sar_despeckle:despeckle (METHOD automatic) would.")
    chosen = resolve_automatic(chosen, [samples[i // len(channels)][i % len(channels)] for i in served], "intensity",
                               [statistics[i].looks for i in served], feedback,
                               per_pixel=None if given else [statistics[i].pixel_looks for i in served])
    if chosen.model_card:
        statistics = with_correlation(statistics, [sample for date in samples for sample in date], chosen.model_card)
        return network_despeckler(chosen, statistics, device, feedback)
    return classical_despeckler(chosen, statistics)
