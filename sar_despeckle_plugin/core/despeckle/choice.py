"""METHOD = Automatic: the network whose model card covers the input, else the best classical
filter measured for its looks and speckle correlation (torch-free).

:func:`choose_method` is the one place the decision is made: a pure function of the input's
looks (given, or estimated with :func:`core.speckle.estimate_looks`), its speckle's lag-1
autocorrelation along rows and columns (:func:`core.quality.measure_speckle` on the sample the
run reads anyway) and the model cards on offer. :func:`resolve_automatic` measures those on a
run's sample and turns ``method = "automatic"`` settings into the chosen method's settings.

The rule:

1. A network serves the input when its card's ``looks_range`` holds the looks (widened by
   :data:`core.models.card.LOOKS_TOLERANCE`, 25 %, each way; for correlated speckle whose looks
   were estimated, the looks per pixel, :func:`core.speckle.looks_per_pixel`, between the block
   estimate and the estimate on every second pixel) and it was trained on the same kind
   of speckle: white for white input, correlated (``max_correlation`` above
   :data:`core.models.card.WHITE_CORRELATION`, at least the measured lag-1 autocorrelation on
   both axes less :data:`CORRELATION_MARGIN`) for correlated input. Speckle counts as
   correlated when its own part of the lag-1 autocorrelation (lag 1 less lag 2, which scene
   texture shares: :func:`speckle_correlation`) exceeds :data:`WHITE_CORRELATION`; mildly
   correlated speckle (from :data:`MILD_CORRELATION` to :data:`WHITE_NETWORK_TOLERANCE`) only
   by networks trained on SLC-like correlation (``max_correlation`` at most
   :data:`SLC_CORRELATION`). Among the networks that serve correlated speckle, the closest fit
   (:func:`closest_fit`): one trained on SLC-like correlation, then one that reads the measured
   correlation (``sarcnn_products``), then the others, the weakest trained correlation first;
   among those trained on white speckle, the shipped default (``sarcnn_default``) comes first,
   then the other shipped networks, then the user's, in METHOD order.
2. Else a network trained on white speckle that covers the looks, when the speckle's own lag-1
   autocorrelation is at most :data:`WHITE_NETWORK_TOLERANCE` (mildly correlated speckle, e.g.
   an oversampled SLC: such a network still beats every classical filter there).
3. Otherwise the classical filter (and window) that scored the best PSNR for the nearest
   measured looks in :data:`CLASSICAL_CHOICE`, among the rows of the same kind of speckle
   (white, or correlated when either lag-1 autocorrelation exceeds
   :data:`core.models.card.WHITE_CORRELATION`).

A network chosen for correlated speckle also keeps point targets as measured
(``keep_point_targets``, :mod:`.point_targets`). Correlated speckle means a product as delivered
(an SLC detected on its grid, a GRD): the data on which corner reflectors are measured for
calibration and ships and pylons are detected. A dominant scatterer there is deterministic (it
does not fluctuate like speckle) and a network spreads it over its neighbours (the ALOS PALSAR
corner reflector: 57 % of its HH peak kept through sarcnn_slc, 100 % with point targets kept).
On simulated correlated speckle keeping them costs 0.01-0.34 dB PSNR
(``scripts/bench_multilook.py``); on simulated white speckle 0.3-0.7 dB, because the protocol
speckles the references' one persistent scatterer (marais2's, 23 dB over its surroundings in
the multitemporal mean): there it is left to ``POINT_TARGETS``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import speckle
from ..choices import DEFAULT_NETWORK, SHIPPED_WEIGHTS
from ..errors import SarDespeckleError
from ..models.card import LOOKS_TOLERANCE, WHITE_CORRELATION, ModelCard, read_card, read_model_cards
from ..quality import measure_speckle

#: How far a measured lag-1 autocorrelation may pass a card's ``max_correlation`` (the spread of
#: the measurement on a 512 x 512 image is a few hundredths).
CORRELATION_MARGIN = 0.05
#: A network trained on white speckle still serves speckle whose own lag-1 autocorrelation is
#: up to this, when no network trained on correlated speckle covers the input: on 1-look speckle
#: averaged 2 x 2 in the complex domain (an oversampled SLC: lag-1 0.20 / 0.21) sarcnn_default
#: scores 23.51 dB against 21.39 dB for the best classical filter, Kuan 9 x 9
#: (scripts/bench_classical_choice.py --only oversampled_slc). Stronger correlation (GRD
#: products: 0.45-0.75) is read as structure.
WHITE_NETWORK_TOLERANCE = 0.25
#: A network trained on speckle correlated up to this at lag 1 (an SLC detected on its own grid:
#: 0.2-0.4 from oversampling) also serves mildly correlated speckle, from an own lag-1 part of
#: MILD_CORRELATION: sarcnn_slc scores 25.22 dB on the stripmap_slc preset (lag-1 0.21) where
#: sarcnn_default scores 23.71, and on the Envisat crop (0.23) leaves a ratio whose
#: autocorrelation is within 0.021 of the input's (sarcnn_default: 0.075; scripts/bench_multilook.py).
#: One trained on GRD speckle (0.7-0.9) over-smooths such speckle.
SLC_CORRELATION = 0.5
#: Below this own lag-1 part the white networks keep mildly correlated speckle: the Envisat crop
#: averaged 2 x 2 (0.11, 2.65 looks, outside what sarcnn_slc was trained on) keeps a ratio ENL of
#: 0.93 x its looks through sarcnn_looks, 0.80 x through sarcnn_slc. Change detection's
#: prefilter raises it to WHITE_NETWORK_TOLERANCE (``core.change.prefilter``: small changes).
MILD_CORRELATION = 0.15
#: The METHOD id of the automatic choice.
AUTOMATIC = "automatic"
#: Where CLASSICAL_CHOICE comes from (named in the log).
CHOICE_SCRIPT = "scripts/bench_classical_choice.py"


@dataclass(frozen=True)
class MeasuredBest:
    """The best classical filter measured for one kind of speckle: ``looks`` (as estimated on
    the noisy images), ``correlated`` speckle or white, the filter and window, its PSNR (dB), and
    the runner-up's (another filter at its best window)."""

    speckle: str
    looks: float
    correlated: bool
    method: str
    window: int
    psnr: float
    runner_up: str
    runner_up_psnr: float

    @property
    def runner_up_text(self) -> str:
        method, _, window = self.runner_up.rpartition(" ")
        return f"{method}, window {window}"


#: The best classical filter per kind of speckle (name, looks as estimated, correlated, filter,
#: window, PSNR, runner-up). Measured by ``.venv/bin/python scripts/bench_classical_choice.py``
#: (one speckle draw; build/bench/classical_choice.json; 3-8 minutes on 2 CPU cores, shared): PSNR
#: on amplitude over the held-out rows 300-499 of the three Telecom Paris references, every
#: filter at windows 3-15 fed the estimated looks; the tables are in docs/despeckle.md.
CLASSICAL_CHOICE: tuple[MeasuredBest, ...] = (
    MeasuredBest("white_L1", 1.04, False, "refined_lee", 13, 22.34, "kuan 7", 22.11),
    MeasuredBest("white_L2", 2.00, False, "kuan", 5, 23.85, "refined_lee 11", 23.50),
    MeasuredBest("white_L4", 3.83, False, "frost", 7, 27.06, "kuan 5", 25.79),
    MeasuredBest("white_L8", 7.45, False, "frost", 5, 29.61, "lee 5", 28.09),
    MeasuredBest("oversampled_slc", 1.08, True, "kuan", 9, 21.39, "refined_lee 15", 21.34),
    MeasuredBest("stand_in_2x2", 4.10, True, "frost", 11, 24.94, "lee 9", 24.29),
    MeasuredBest("sentinel1_iw_grdh", 5.08, True, "frost", 13, 24.88, "lee 11", 24.17),
)


@dataclass(frozen=True)
class Choice:
    """What METHOD = Automatic runs: a classical ``method`` and ``window`` (``model_card`` None)
    or the network of ``model_card`` (``method`` its name, ``window`` None), whether the network
    keeps point targets; ``reason`` is the log line that says which and why."""

    method: str
    window: int | None
    model_card: str | None
    reason: str
    keep_point_targets: bool = False


def speckle_correlation(correlation: tuple[float, float] | None,
                        lag2: tuple[float, float] | None = None) -> float:
    """What the speckle itself contributes to the measured lag-1 autocorrelation (the larger
    axis): scene texture correlates over many pixels, so it shows at lag 2 nearly as much as at
    lag 1, while speckle correlation (finite resolution, multilooking, resampling) falls within
    a pixel or two. So the lag-2 value (when positive) is taken off lag 1. Weak multi-look
    speckle over a textured scene thus counts as white, Sentinel-1 GRDH (lag 1 / 2 about
    0.72 / 0.30) as correlated."""
    if correlation is None:
        return 0.0
    lag2 = lag2 or (0.0, 0.0)
    return max(lag1 - max(later, 0.0) for lag1, later in zip(correlation, lag2))


def serves(card: ModelCard, looks: float, correlation: tuple[float, float] | None,
           lag2: tuple[float, float] | None = None, mild_correlation: float = MILD_CORRELATION) -> bool:
    """Whether the network of ``card`` is made for ``looks`` and speckle of lag-1
    ``correlation`` (rows, cols; None: not measured, taken as white; ``lag2``: the lag-2 values,
    see :func:`speckle_correlation`): the looks in its range, and the same kind of speckle — a
    network trained on white speckle for white speckle, one trained on correlated speckle for
    correlated speckle whose lag-1 autocorrelation is at most its ``max_correlation`` (plus
    :data:`CORRELATION_MARGIN`, the measurement's own spread). Mildly correlated speckle (its own
    lag-1 part at most :data:`WHITE_NETWORK_TOLERANCE`) is served only by networks trained on
    SLC-like correlation (``max_correlation`` at most :data:`SLC_CORRELATION`), from
    ``mild_correlation`` on, else left to those trained on white speckle (rule 2): a network
    trained on GRDH-like speckle (lag 1 above 0.5) over-smooths it — on the Envisat crop averaged
    2 x 2 (0.11) its ratio mean was 0.913 and its ratio's lag-1 autocorrelation 0.45 against the
    input's 0.15; sarcnn_looks left 0.989 and 0.18."""
    own = speckle_correlation(correlation, lag2)
    if not card.covers(looks, LOOKS_TOLERANCE):
        return False
    if card.white:
        return own <= WHITE_CORRELATION
    strong_enough = own > WHITE_NETWORK_TOLERANCE or (own > mild_correlation and card.max_correlation <= SLC_CORRELATION)
    return strong_enough and max(correlation) <= card.max_correlation + CORRELATION_MARGIN


def closest_fit(card: ModelCard) -> tuple[int, float]:
    """Sort key among the networks that serve one input (smallest first). White cards keep their
    order (only they serve white speckle). For correlated speckle: networks trained on SLC-like
    correlation (``max_correlation`` at most :data:`SLC_CORRELATION`), the weakest first; then
    those that read the measured correlation (card ``conditioning`` "looks_correlation"); then
    the others, the weakest trained correlation first. A network told the input's correlation
    beats one trained on a product's whenever the input is another product (a 3-look PRI-like
    product: +1.1 dB over sarcnn_grdh, an 8-look GRD +0.9 dB) and leaves real GRDs less of their
    speckle (the Sentinel-1 GRDH crop's ratio mean 0.972 / 0.990 for VV / VH against 0.953 /
    0.965 through sarcnn_grdh), for 0.13-0.43 dB on sarcnn_grdh's own presets
    (scripts/bench_multilook.py, seeds 0-2); SLC-like speckle is another matter (sarcnn_slc:
    0.2-1.1 dB better on its presets, and on a TerraSAR-X crop averaged 2 x 2 a ratio mean of
    0.999 against 0.897)."""
    if card.white:
        return 0, 0.0
    if card.max_correlation <= SLC_CORRELATION:
        return 1, card.max_correlation
    return (2, 0.0) if card.conditioning == "looks_correlation" else (3, card.max_correlation)


def best_classical(looks: float, correlated: bool, table: Sequence[MeasuredBest] = None) -> MeasuredBest:
    """The row of ``table`` (default :data:`CLASSICAL_CHOICE`) of the same kind of speckle whose
    looks are nearest ``looks`` (on a log scale)."""
    table = CLASSICAL_CHOICE if table is None else table
    rows = [row for row in table if row.correlated == correlated] or list(table)
    if not rows:
        raise SarDespeckleError("No classical filter was measured for the automatic choice.")
    return min(rows, key=lambda row: abs(math.log(row.looks / looks)))


def _card_text(card: ModelCard) -> str:
    low, high = card.looks_range
    looks = f"{low:g} look{'s' if low != 1 else ''}" if low == high else f"{low:g}-{high:g} looks"
    speckle_text = "white speckle" if card.white else (
        f"{card.speckle_model} speckle, lag-1 up to {card.max_correlation:g}")
    return f"{card.name}: {looks}, {speckle_text}"


def _point_targets_text(correlated: bool) -> str:
    """The log's sentence on point targets when a network runs (see the module doc)."""
    if not correlated:
        return ""
    return (" The speckle being correlated (an SLC or GRD product as delivered), point targets (more than "
            "20 dB over their surroundings: corner reflectors, ships) are kept as measured, not spread by the "
            "network (POINT_TARGETS).")


def choose_method(looks: float, correlation: tuple[float, float] | None,
                  cards: Sequence[tuple[str, ModelCard]], looks_given: bool = False,
                  table: Sequence[MeasuredBest] = None, lag2: tuple[float, float] | None = None,
                  per_pixel: float | None = None, mild_correlation: float = MILD_CORRELATION) -> Choice:
    """The method for an input of ``looks`` whose speckle has lag-1 autocorrelation
    ``correlation`` = (rows, cols) (None: could not be measured, taken as white; ``lag2``: the
    lag-2 values, see :func:`speckle_correlation`), among the networks of ``cards`` ((path,
    card), in METHOD order) and the classical filters (see the module doc for the rule).
    ``looks_given``: the user gave LOOKS (else they were estimated). ``per_pixel``: the looks
    estimated on every second pixel (:func:`core.speckle.pixel_looks`). When the speckle is
    correlated and LOOKS was not given, the looks per pixel lie between the two estimates (the
    block estimate reads correlated speckle as more looks, the sparse one reads scene texture
    over blocks twice as wide as fewer): cards are compared with
    :func:`core.speckle.looks_per_pixel`, the looks a network conditioned on them reads.
    ``mild_correlation``: the own lag-1 part from which networks trained on SLC-like correlation
    take mildly correlated speckle (:func:`serves`)."""
    source = "given" if looks_given else "estimated"
    correlated = speckle_correlation(correlation, lag2) > WHITE_CORRELATION
    if correlation is None:
        measured = "speckle correlation not measurable (too few homogeneous windows: taken as white)"
    else:
        measured = f"speckle lag-1 correlation {correlation[0]:.2f} / {correlation[1]:.2f} (rows / cols)"
        if not correlated and max(correlation) > WHITE_CORRELATION:
            measured += (f", lag 2 {lag2[0]:.2f} / {lag2[1]:.2f}: scene texture, correlated over many pixels; "
                         "the speckle itself is white")
    card_looks = looks
    if correlated and not looks_given and per_pixel is not None:
        card_looks = speckle.looks_per_pixel(looks, per_pixel)
        source += (f"; {per_pixel:.2f} on every second pixel, so {card_looks:.2f} per pixel, the speckle being "
                   "correlated")
    head = f"METHOD automatic: input {looks:.2f} looks ({source}), {measured}"
    ordered = sorted(cards, key=lambda item: item[1].name != DEFAULT_NETWORK)
    serving = [(path, card) for path, card in ordered if serves(card, card_looks, correlation, lag2, mild_correlation)]
    if serving:
        path, card = min(serving, key=lambda item: closest_fit(item[1]))
        return Choice(card.name, None, path, f"{head}: using network {_card_text(card)}, whose model card "
                      f"covers these looks and this speckle.{_point_targets_text(correlated)}", correlated)
    if speckle_correlation(correlation, lag2) <= WHITE_NETWORK_TOLERANCE:
        for path, card in ordered:
            if card.white and card.covers(looks, LOOKS_TOLERANCE):
                return Choice(card.name, None, path, (
                    f"{head}: using network {_card_text(card)}: no network trained on correlated speckle "
                    f"covers these looks, and one trained on white speckle still beats every classical "
                    f"filter on speckle correlated up to {WHITE_NETWORK_TOLERANCE:g} at lag 1 ({CHOICE_SCRIPT})."
                    f"{_point_targets_text(correlated)}"), correlated)
    best = best_classical(looks, correlated, table)
    networks = "; ".join(_card_text(card) for _, card in ordered) if ordered else "none installed"
    kind = "correlated" if correlated else "white"
    return Choice(best.method, best.window, None, (
        f"{head}: no network's model card covers it ({networks}); using {best.method}, window "
        f"{best.window}, the best classical filter measured for {best.looks:.1f} looks with {kind} speckle "
        f"({best.speckle}: {best.psnr:.2f} dB PSNR against {best.runner_up_psnr:.2f} dB for {best.runner_up_text}; "
        f"{CHOICE_SCRIPT})."
    ))


def candidate_cards(paths: Sequence[str] | None, warn: Callable[[str], None]) -> list[tuple[str, ModelCard]]:
    """(path, card) of the networks the automatic choice may use: ``paths`` (the METHOD list's
    networks, in its order), or the shipped despeckling networks when None. Unreadable cards are
    skipped with a warning."""
    if paths is None:
        return read_model_cards(SHIPPED_WEIGHTS, "intensity", warn)
    cards = []
    for path in paths:
        try:
            card = read_card(path)
        except SarDespeckleError as error:
            warn(f"Skipped for the automatic choice: {error}")
            continue
        if card.input_kind == "intensity":
            cards.append((path, card))
    return cards


def measure_correlation(intensity: Sequence[np.ndarray], valid: Sequence[np.ndarray]):
    """Speckle autocorrelation of a band's sample windows (linear intensity), by
    :func:`core.quality.measure_speckle` on their mosaic: ((lag-1 rows, cols), (lag-2 rows,
    cols)); None when too few homogeneous windows."""
    if len(intensity) > 1 and len({v.shape[1] for v in intensity}) == 1:
        values, ok = np.concatenate(intensity, axis=0), np.concatenate(valid, axis=0)
    else:
        values, ok = intensity[0], valid[0]
    statistics = measure_speckle(np.asarray(values, np.float64), ok & (values > 0), lags=2)
    if statistics is None or not all(math.isfinite(v) for v in statistics.rows + statistics.cols):
        return None
    return (statistics.rows[0], statistics.cols[0]), (statistics.rows[1], statistics.cols[1])


def sample_correlations(samples: Sequence) -> list:
    """:func:`measure_correlation` of each band's sample (linear intensity windows)."""
    return [measure_correlation(sample.values, sample.valid) for sample in samples]


def with_correlation(statistics: Sequence, samples: Sequence, model_card: str | None,
                     correlations: Sequence | None = None) -> list:
    """``statistics`` (one :class:`.settings.BandStatistics` per band) with each band's speckle
    lag-1 autocorrelation (rows, cols) filled in when the network of ``model_card`` reads it
    (card ``conditioning`` "looks_correlation"); else unchanged. ``correlations``: the
    :func:`sample_correlations` of ``samples`` when already measured (None: measured here)."""
    if not model_card or read_card(model_card).conditioning != "looks_correlation":
        return list(statistics)
    correlations = sample_correlations(samples) if correlations is None else correlations
    return [dataclasses.replace(stats, correlation=measured[0] if measured else None)
            for stats, measured in zip(statistics, correlations)]


def resolve_automatic(settings, samples, units: str, looks: Sequence[float], feedback,
                      per_pixel: Sequence[float | None] | None = None, mild_correlation: float = MILD_CORRELATION,
                      correlations: Sequence | None = None):
    """``settings`` (``method`` "automatic", no ``model_card``) -> the settings of the chosen
    method, logging the choice and why. ``looks``: each band's (given or estimated, as the run
    uses them); ``per_pixel``: each band's looks on every second pixel when LOOKS was not given
    (None: measured here); ``mild_correlation``: see :func:`choose_method`; ``correlations``:
    the :func:`sample_correlations` of linear-intensity ``samples`` (None: the correlation is
    measured here on each band's sample). The choice serves the most demanding band (fewest
    looks, strongest correlation)."""
    measured_here, measured_per_pixel = [], []
    sparse_looks = settings.looks is None and per_pixel is None
    for sample in samples if correlations is None or sparse_looks else ():  # else nothing to measure
        intensity = [speckle.to_intensity(v.astype(np.float64), units) for v in sample.values]
        if correlations is None:
            measured_here.append(measure_correlation(intensity, sample.valid))
        if sparse_looks:
            measured_per_pixel.append(speckle.pixel_looks(intensity, [ok & (v > 0) for v, ok in zip(intensity, sample.valid)]))
    per_pixel = [v for v in (measured_per_pixel if per_pixel is None else per_pixel) if v is not None]
    measured = [c for c in (measured_here if correlations is None else correlations) if c is not None]
    # the most demanding band: the strongest lag-1 correlation on each axis, with its lag 2
    strongest = [max(measured, key=lambda c: c[0][axis]) for axis in (0, 1)] if measured else None
    correlation = (strongest[0][0][0], strongest[1][0][1]) if measured else None
    lag2 = (strongest[0][1][0], strongest[1][1][1]) if measured else None
    cards = candidate_cards(settings.networks, feedback.warn)
    choice = choose_method(min(looks), correlation, cards, settings.looks is not None, lag2=lag2,
                           per_pixel=min(per_pixel) if per_pixel else None, mild_correlation=mild_correlation)
    feedback.info(choice.reason)
    settings = dataclasses.replace(settings, networks=None)  # consumed: outputs record the choice
    if choice.model_card:
        return dataclasses.replace(settings, model_card=choice.model_card,
                                   keep_point_targets=settings.keep_point_targets or choice.keep_point_targets)
    return dataclasses.replace(settings, method=choice.method, window=choice.window)

