"""METHOD = Automatic (the default): which detector serves the dates (torch-free).

1. Dual-pol dates (intensities or C2) whose looks all lie in the range the learned detector's
   model card was trained on (its training config's ``change.looks``, else its
   ``looks_range``; widened by ``core.models.card.LOOKS_TOLERANCE`` each way): the learned
   detector, trained on labelled Sentinel-1 dual-pol pairs and synthetic changes of 2-10 dB.
   It reads context (what changes look like) as well as backscatter: on the MTDN pairs, whose
   labels mark changes of scattering mechanism that hardly move the backscatter, it is the only
   detector that finds them.
2. Otherwise (single-pol, or looks the card does not cover) :data:`FALLBACK`: the log-ratio
   with Otsu's threshold, which with PREFILTER (each date despeckled at its own looks) and the
   measured minimum mapping unit scored kappa 0.88 / 0.95 / 0.88 on San Francisco, Sulzberger and
   Yellow River (scripts/bench_change.py), and needs neither labels nor a speckle model that
   despeckled dates no longer follow (the omnibus test does).
"""

from __future__ import annotations

from typing import Sequence

from ..models.card import LOOKS_TOLERANCE, ModelCard, read_card

#: What METHOD = Automatic runs where the learned detector does not serve.
FALLBACK = "log_ratio_otsu"


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
        return FALLBACK, (f"METHOD automatic: single-pol dates ({shown} looks): {FALLBACK} (the learned "
                          "detector reads dual-pol pairs).")
    card = read_card(card_path)
    low, high = trained_looks(card)
    if all(low / (1 + LOOKS_TOLERANCE) <= n <= high * (1 + LOOKS_TOLERANCE) for n in looks):
        return "learned", (f"METHOD automatic: dual-pol dates of {shown} looks: the learned detector "
                           f"{card.name}, trained on {low:g}-{high:g} looks.")
    return FALLBACK, (f"METHOD automatic: dual-pol dates of {shown} looks, outside the {low:g}-{high:g} looks "
                      f"the learned detector {card.name} was trained on: {FALLBACK}.")
