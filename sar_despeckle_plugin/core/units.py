"""The one units rule: which units a band holds (intensity, amplitude or dB), how sure we are,
what the log says, and which values the chosen units cannot hold.

Every algorithm calls :func:`decide_units` (detection and its log line) and :func:`check_values`
(refusals, and the warning about noise-floor negatives); nothing else decides units.

The evidence, strongest first:

1. The band description: words such as ``dB``/``_db``/``decibel``, ``amplitude``, ``intensity``,
   ``sigma0``/``beta0``/``gamma0``, ``power``, ``linear``.
2. The values (exact zeros left out: they are fill or floor in every unit):

   * dB of SAR intensity lies in about [-40, +10] dB with many negatives and a near-symmetric
     spread; linear intensity or amplitude is >= 0 with a heavy right tail. So a band is dB when
     at least 20 % of its values are negative and the spread is not right-heavy, or when fewer
     are negative but the values run on through zero and the positive ones are symmetric. The spread is measured by the tail ratio (p99 - p50) / (p50 - p1): about 0.5-0.9
     for dB, 1.4 (20 looks) to 6 (1 look) for intensity and more for real scenes. With fewer
     negatives, dB values also fill the range just above zero as densely as below it, where
     linear data have a gap between their noise-floor negatives and their positive bulk.
   * A few per cent of small negatives (on average under half the positive median) on otherwise
     positive, right-heavy data are the noise floor that thermal-noise removal or cubic
     resampling leave in *linear* data: they are read as 0 (dark data) with a warning.
3. The storage type: integer bands (Byte, UInt16, Int16, ...) of real SAR products are almost
   always amplitude numbers (DN), so integer data without other evidence are taken as amplitude.
4. Otherwise linear float data could be intensity or amplitude: intensity is assumed, with a
   warning naming INPUT_UNITS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import SarDespeckleError

UNITS = ("intensity", "amplitude", "dB")

#: At or above this share of negative values, a band with a dB-like spread is dB.
DB_NEGATIVE_SHARE = 0.20
#: Linear data may hold up to this share of noise-floor negatives (read as 0) ...
NOISE_NEGATIVE_SHARE = 0.10
#: ... when their mean magnitude is below this fraction of the positive values' median.
NOISE_NEGATIVE_DEPTH = 0.5
#: Integer storage types: SAR products keep amplitude DN in them.
INTEGER_TYPES = ("Byte", "Int8", "UInt16", "Int16", "UInt32", "Int32", "UInt64", "Int64")
#: dB values beyond these are not dB of a SAR intensity (1e-15 .. 1e8).
DB_RANGE = (-150.0, 80.0)

_DB_WORDS = ("db", "decibel")
_AMPLITUDE_WORDS = ("amplitude", "amp", "magnitude")
_INTENSITY_WORDS = ("intensity", "sigma0", "beta0", "gamma0", "power", "linear", "sigma_0", "beta_0", "gamma_0")


@dataclass(frozen=True)
class Evidence:
    """What one band says about its units.

    ``units`` is None when the band is linear but could be intensity or amplitude; ``strong``
    is False when the call rests on weak evidence (it is then logged as a warning).
    """

    units: str | None
    reason: str
    strong: bool


@dataclass(frozen=True)
class _Negatives:
    share: float        # of the non-zero values
    depth: float        # mean |negative| / median of the positive values
    tail: float         # (p99 - p50) / (p50 - p1) of the non-zero values
    tail_positive: float  # the same over the positive values
    continuous: bool    # as many values in (0, median |negative|] as below 0: no gap at zero
    plausible_db: bool  # within DB_RANGE


def _tail(values: np.ndarray) -> float:
    if values.size == 0:
        return math.inf
    p1, p50, p99 = np.percentile(values, [1, 50, 99])
    return float((p99 - p50) / max(p50 - p1, 1e-30))


def _negatives(raw: np.ndarray) -> _Negatives:
    values = np.asarray(raw, np.float64)
    values = values[values != 0]
    if values.size == 0:
        return _Negatives(0.0, 0.0, math.inf, math.inf, False, False)
    negative, positive = values[values < 0], values[values > 0]
    depth = continuous = 0.0
    if negative.size:
        depth = float(-negative.mean() / np.median(positive)) if positive.size else math.inf
        continuous = (positive <= np.median(-negative)).sum() >= 0.5 * negative.size
    plausible = DB_RANGE[0] < values.min() and values.max() < DB_RANGE[1]
    return _Negatives(negative.size / values.size, depth, _tail(values), _tail(positive), bool(continuous),
                      bool(plausible))


def _words(description: str) -> list[str]:
    text = description.lower()
    for separator in "_-./,;:()[]":
        text = text.replace(separator, " ")
    return text.split()


def band_evidence(raw: np.ndarray, description: str = "", data_type: str = "") -> Evidence:
    """The units one band holds, judged from its valid raw values, description and storage type."""
    words = _words(description)
    if description:
        quoted = f"its description '{description}'"
        if any(w in _DB_WORDS for w in words) or description.lower().endswith("db"):
            return Evidence("dB", quoted, True)
        if any(w.startswith(a) for w in words for a in _AMPLITUDE_WORDS):
            return Evidence("amplitude", quoted, True)
        if any(w in _INTENSITY_WORDS or w.startswith(("sigma", "beta", "gamma", "intensit")) for w in words):
            return Evidence("intensity", quoted, True)
    if raw.size:
        neg = _negatives(raw)
        if neg.share >= DB_NEGATIVE_SHARE and neg.plausible_db and neg.tail < 4.0:
            return Evidence("dB", f"{neg.share:.0%} of its values are negative", True)
        if 0 < neg.share and neg.plausible_db and neg.continuous and neg.tail_positive < 2.0:
            return Evidence("dB", f"{neg.share:.1%} of its values are negative, continuing a symmetric "
                            "spread through zero as dB values do", neg.share >= 0.05)
        linear = ("its values are >= 0, so linear" if neg.share == 0 else
                  f"its {neg.share:.1%} negative values are small next to its heavy-tailed positive "
                  "values, so linear with a noise floor" if neg.share <= NOISE_NEGATIVE_SHARE else
                  f"{neg.share:.1%} of its values are negative but they do not spread as dB values do")
    else:
        linear = "it has no valid values"
    if data_type in INTEGER_TYPES:
        return Evidence("amplitude", f"{linear}; it is stored as {data_type} integers, as SAR products "
                        "store amplitude numbers (DN)", False)
    return Evidence(None, f"{linear}; without a telling band description intensity and amplitude "
                    "cannot be told apart", False)


def decide_units(declared: str | None, bands: Sequence[tuple[str, np.ndarray, str, str]], feedback,
                 subject: str = "input") -> str:
    """The units of all ``bands`` (``(label, valid raw values, description, data type)``), logged.

    ``declared`` (INPUT_UNITS) wins. Otherwise every band gives its :func:`band_evidence`;
    bands that disagree are refused; a call on weak evidence is a warning that names the reason
    and INPUT_UNITS, a sure one an info line.
    """
    if declared is not None:
        return declared
    evidence = [(label, band_evidence(raw, description, data_type))
                for label, raw, description, data_type in bands]
    decided = {}
    for label, ev in evidence:
        if ev.units is not None:
            decided.setdefault(ev.units, []).append(label)
    if len(decided) > 1:
        detail = "; ".join(f"{units}: {', '.join(where)}" for units, where in sorted(decided.items()))
        raise SarDespeckleError(
            f"The {subject} bands look like different units ({detail}): convert them to the same "
            "units, despeckle them separately with BANDS, or set INPUT_UNITS."
        )
    if decided:
        units = next(iter(decided))
        label, ev = next((label, ev) for label, ev in evidence if ev.units == units)
        if all(e.strong for _, e in evidence if e.units == units):
            feedback.info(f"Input units detected: {units} ({label}: {ev.reason}).")
        else:
            feedback.warn(f"Input units assumed: {units} ({label}: {ev.reason}). The evidence is weak: "
                          "set INPUT_UNITS if this is wrong.")
        return units
    label, ev = evidence[0] if evidence else ("", Evidence(None, "no valid values", False))
    feedback.warn(f"Input units assumed: intensity ({label}: {ev.reason}). Set INPUT_UNITS to "
                  "amplitude if the values are amplitudes.")
    return "intensity"


def check_values(raw: np.ndarray, units: str, band: int, warn=None) -> None:
    """Refuse values that cannot be in ``units``, with a message saying what to do.

    A few small negatives in linear data (the noise floor) are accepted: the conversion to
    intensity reads them as 0, and ``warn`` (when given) says how many.

    Args:
        raw: valid values of the band as stored in the file.
        units: the units the user declared or we detected.
        band: 1-based band number for the message.
        warn: callable taking a warning line, or None.
    """
    if raw.size == 0:
        return
    if units in ("intensity", "amplitude"):
        negative = raw < 0
        if not negative.any():
            return
        neg = _negatives(raw)
        evidence = band_evidence(raw)
        if evidence.units == "dB" and evidence.strong:
            raise SarDespeckleError(
                f"Band {band} holds negative values ({neg.share:.0%} of pixels, median "
                f"{np.median(raw):.1f}): it looks like dB. Set INPUT_UNITS to dB."
            )
        if neg.share <= NOISE_NEGATIVE_SHARE and neg.depth <= NOISE_NEGATIVE_DEPTH:
            if warn is not None:
                warn(f"Band {band}: {int(negative.sum())} pixels ({negative.mean():.1%}) are slightly "
                     f"negative (down to {raw.min():.3g}), as thermal-noise removal or resampling "
                     "leave in linear data: they are read as 0 (dark data, not nodata).")
            return
        raise SarDespeckleError(
            f"Band {band} holds negative values ({negative.mean():.0%} of pixels, minimum "
            f"{raw.min():g}), which a SAR {units} cannot have. Give a calibrated intensity, "
            "amplitude or dB image."
        )
    elif units == "dB" and raw.max() > DB_RANGE[1]:
        raise SarDespeckleError(
            f"Band {band} holds values up to {raw.max():g}, impossible in dB (that would be an "
            "intensity of 1e8): the image looks linear. Set INPUT_UNITS to intensity or amplitude."
        )
