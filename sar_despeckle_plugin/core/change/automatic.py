"""METHOD = Automatic (the default): which detector serves the dates (torch-free).

1. Dual-pol dates (intensities or C2) whose looks all lie in the range the learned detector's
   model card was trained on (its training config's ``change.looks``, else its
   ``looks_range``; widened by ``core.models.card.LOOKS_TOLERANCE`` each way): the learned
   detector, trained on labelled Sentinel-1 dual-pol pairs and synthetic changes of 2-10 dB.
   It reads context (what changes look like) as well as backscatter: on the MTDN pairs, whose
   labels mark changes of scattering mechanism that hardly move the backscatter, it is the only
   detector that finds them.
2. Otherwise (single-pol, or looks the card does not cover) :data:`FALLBACK`: the unsupervised
   detector on dates PREFILTER despeckled (each at its own looks), which needs neither labels nor
   a speckle model that despeckled dates no longer follow (the omnibus test does). It starts from
   the log-ratio + Otsu pre-classification and decides the pixels that one is unsure of from what
   the image's clear cases look like: with the measured minimum mapping unit it scored kappa
   0.913 / 0.957 / 0.923 on San Francisco, Sulzberger and Yellow River against 0.883 / 0.950 /
   0.883 for log-ratio + Otsu on the same despeckled dates, and 0.869 against 0.825 on San
   Francisco read from its 8-bit files (scripts/bench_change.py).

Single-pol pairs have a learned detector too (the shipped ``change_single``, METHOD learned), but
METHOD automatic does not choose it: trained on synthetic changes in white Gamma speckle, it
finds 97 % of a 9 dB change between a 4-look and a single-look synthetic date, yet on the
benchmark pairs (processed 8-bit products, whose speckle is correlated, clipped and far from
Gamma) it scored kappa 0.052 / 0.814 / 0.584 (San Francisco / Sulzberger / Yellow River, with
6-72 % false alarms) against 0.913 / 0.957 / 0.923 for the unsupervised detector, which learns
from the image itself (scripts/bench_change.py).
"""

from __future__ import annotations

from typing import Sequence

from ..models.card import LOOKS_TOLERANCE, ModelCard, read_card

#: What METHOD = Automatic runs where the learned detector does not serve.
FALLBACK = "unsupervised"


def trained_looks(card: ModelCard) -> tuple[float, float]:
    """The looks a change detector was trained on: (lowest, highest)."""
    change = card.training.get("config", {}).get("change", {}) if isinstance(card.training, dict) else {}
    looks = change.get("looks") if isinstance(change, dict) else None
    if isinstance(looks, list) and len(looks) == 2 and all(isinstance(v, (int, float)) for v in looks):
        return float(looks[0]), float(looks[1])
    return float(card.looks_range[0]), float(card.looks_range[1])


def choose_change_method(layout: str, looks: Sequence[float], card_path: str) -> tuple[str, str]:
    """(METHOD id, the log line saying why) for dates of ``layout`` and ``looks`` (one per date)."""
    shown = ", ".join(f"{n:.2f}" for n in looks)
    if layout == "single":
        return FALLBACK, (f"METHOD automatic: single-pol dates ({shown} looks): {FALLBACK} (it learns from "
                          "the image itself; the single-pol learned detector, METHOD learned, scored below it on "
                          "real single-pol pairs).")
    card = read_card(card_path)
    low, high = trained_looks(card)
    if all(low / (1 + LOOKS_TOLERANCE) <= n <= high * (1 + LOOKS_TOLERANCE) for n in looks):
        return "learned", (f"METHOD automatic: dual-pol dates of {shown} looks: the learned detector "
                           f"{card.name}, trained on {low:g}-{high:g} looks.")
    return FALLBACK, (f"METHOD automatic: dual-pol dates of {shown} looks, outside the {low:g}-{high:g} looks "
                      f"the learned detector {card.name} was trained on: {FALLBACK}.")
