"""Despeckling with a trained network: loads the model a card describes and tiles it with
enough overlap (its receptive radius plus a feathered blend) that tiled output matches the
whole-image output.

The network reads linear intensity (B, 1, H, W) normalised on the band's reference level (the
median of its valid pixels over the whole image: ``core.models.normalisation.reference_level``,
computed by the pipeline from its sample of the band) and returns linear intensity.
"""

from __future__ import annotations

import contextlib

import torch

from .. import accelerate
from ..feedback import Feedback
from ..models.progress import layer_progress
from ..models.weights import load_model
from ..tiling import report_within_tile
from . import point_targets
from .settings import BandDespeckler, BandStatistics, DespeckleSettings

#: Feathering width for networks (pixels): tiles overlap by their reach plus this.
NETWORK_BLEND = 8


def network_despeckler(
    settings: DespeckleSettings, statistics: list[BandStatistics], device: torch.device, feedback: Feedback
) -> BandDespeckler:
    """Despeckling with the network of ``settings.model_card`` (checksum-checked, loaded with
    ``weights_only=True``), fed each band's whole-image median as its reference level and, when
    the network is conditioned on the looks (card ``conditioning`` "looks"), each band's looks
    (given or estimated; for a network trained on correlated speckle the looks per pixel,
    :attr:`BandStatistics.looks_per_pixel`) as its noise level, and when it also reads the
    speckle's lag-1 autocorrelation (``looks_correlation``), each band's
    :attr:`BandStatistics.correlation` (white when not measured); warns when a band's looks lie
    outside the card's ``looks_range`` by more than 25 %. With ``settings.keep_point_targets``, point targets are
    kept as measured (:mod:`.point_targets`)."""
    model = load_model(settings.model_card, device, input_kind="intensity")
    card = model.card
    low, high = card.looks_range
    trained = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    looks = [stats.looks if card.white else stats.looks_per_pixel for stats in statistics]
    for band, value in enumerate(looks):
        if not card.covers(value):
            feedback.warn(
                f"Band {band + 1} has {value:.1f} looks but model '{card.name}' was trained "
                f"for {trained}: results may be over- or under-smoothed."
            )
    if model.module.conditioned:
        per_pixel = "" if card.white else (" per pixel (the geometric mean of the block estimate and the estimate on "
                                           "every second pixel: the speckle is correlated)")
        feedback.info(f"Model '{card.name}' is conditioned on the looks: it reads "
                      + ", ".join(f"{value:.2f}" for value in looks) + f" look(s){per_pixel} (band order).")
    correlation = [stats.correlation or (0.0, 0.0) for stats in statistics]
    if model.module.reads_correlation:
        feedback.info(f"Model '{card.name}' also reads the speckle's lag-1 autocorrelation (rows / cols): "
                      + ", ".join(f"{rows:.2f} / {cols:.2f}" for rows, cols in correlation) + " (band order"
                      + ("; not measurable on some band, taken as white" if any(s.correlation is None for s in statistics)
                         else "") + ").")
    precision = accelerate.network_precision(model, looks[0], device, feedback)
    if accelerate.maybe_compile(model.module, device):
        feedback.info(f"Model '{card.name}' is compiled (torch.compile) for the GPU.")

    # Progress within tiles on the CPU, where a tile takes seconds (hooks would break compiled
    # GPU graphs, and a GPU tile takes milliseconds).
    passes = 2 if settings.self_ensemble else 1

    def network(intensity, valid, band):
        progress = (layer_progress(model.module, report_within_tile, passes) if device.type == "cpu"
                    else contextlib.nullcontext())
        with progress, accelerate.autocast(device, precision):
            return model.despeckle(intensity, valid, statistics[band].median, settings.self_ensemble,
                                   looks[band], correlation=correlation[band])

    def apply(intensity, valid, band):
        if not settings.keep_point_targets:
            return network(intensity, valid, band)
        return point_targets.keep_point_targets(lambda values: network(values, valid, band),
                                                intensity, valid, statistics[band].looks)

    align = model.alignment
    reach = model.receptive_radius + (point_targets.REACH if settings.keep_point_targets else 0)
    halo = -(-(reach + NETWORK_BLEND) // align) * align
    return BandDespeckler(apply, halo, NETWORK_BLEND, align, card.name, card.sha256)

