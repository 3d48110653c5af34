"""Despeckling with a trained network: loads the model a card describes and tiles it with
enough overlap (its receptive radius plus a feathered blend) that tiled output matches the
whole-image output.

The network reads linear intensity (B, 1, H, W) normalised on the band's reference level (the
median of its valid pixels over the whole image: ``core.models.normalisation.reference_level``,
computed by the pipeline from its sample of the band) and returns linear intensity.
"""

from __future__ import annotations

import torch

from ..feedback import Feedback
from ..models.weights import load_model
from .settings import BandDespeckler, BandStatistics, DespeckleSettings

#: Feathering width for networks (pixels): tiles overlap by their reach plus this.
NETWORK_BLEND = 8


def network_despeckler(
    settings: DespeckleSettings, statistics: list[BandStatistics], device: torch.device, feedback: Feedback
) -> BandDespeckler:
    """Despeckling with the network of ``settings.model_card`` (checksum-checked, loaded with
    ``weights_only=True``), fed each band's whole-image median as its reference level; warns when
    a band's looks differ from the ones the network was trained for by more than 25 %."""
    model = load_model(settings.model_card, device, input_kind="intensity")
    card = model.card
    for band, stats in enumerate(statistics):
        if abs(stats.looks - card.looks) > 0.25 * card.looks:
            feedback.warn(
                f"Band {band + 1} has {stats.looks:.1f} looks but model '{card.name}' was trained "
                f"for {card.looks:g}: results may be over- or under-smoothed."
            )

    def apply(intensity, valid, band):
        return model.despeckle(intensity, valid, statistics[band].median, settings.self_ensemble)

    align = model.alignment
    halo = -(-(model.receptive_radius + NETWORK_BLEND) // align) * align
    return BandDespeckler(apply, halo, NETWORK_BLEND, align, card.name, card.sha256)
