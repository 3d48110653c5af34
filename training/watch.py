"""What a despeckling run shows of itself on real images, which have no reference.

A validation loss says little about real data: a blind-spot model 25 % too bright on real
Envisat data gave no hint in it. So every validation also despeckles the *real* validation
images (``[data].validation`` sources without a clean reference: ``single_look`` images or
``prepare`` files) and measures what the plugin's quality report measures
(:func:`core.despeckle.report.band_quality`): the ratio I / I_hat's mean (1 when unbiased), its
ENL as a share of the input's looks (1 when all the speckle and only the speckle went), and its
autocorrelation at lags 1-2 beside the input speckle's own (equal when no structure is left in
the ratio). Averaged over the real images, they join the validation row of ``metrics.json``
(``real_ratio_mean``, ``real_ratio_enl_share``, ``real_ratio_autocorrelation_gap``); each
validation also writes a quick-look per image (input | output | ratio, as the report draws them)
to ``RUN/watch/`` and redraws ``RUN/watch/history.png``, the three measures over the run.

Images wider than :data:`WATCH_SIDE` are cropped to their centre, so watching costs a few
hundred milliseconds per validation on a CPU; images smaller than :data:`MIN_SIDE` (``prepare``
patches) are not watched. Supervised runs take real images in ``[data].validation`` for this
alone (they cannot score them).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from sar_despeckle_plugin.core import speckle
from sar_despeckle_plugin.core.despeckle.choice import measure_correlation
from sar_despeckle_plugin.core.despeckle.report import QuickLook, band_quality, quicklook_png, ratio_of
from sar_despeckle_plugin.core.pictures import BLUE, GREEN, GREY, RED, Canvas, save_rgb_png

#: Largest side (pixels) of the real images watched; larger ones are cropped to their centre.
WATCH_SIDE = 512
#: Smallest side (pixels) of a real image worth watching (``prepare`` patches are smaller).
MIN_SIDE = 64
#: The measures added to a validation row, and their targets (drawn as dashed lines).
MEASURES = {"real_ratio_mean": 1.0, "real_ratio_enl_share": 1.0, "real_ratio_autocorrelation_gap": 0.0}


def centre_crop(image: torch.Tensor, side: int = WATCH_SIDE) -> torch.Tensor:
    """The central ``side`` x ``side`` part of (B, C, H, W) (the whole image when smaller)."""
    height, width = image.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[..., top: top + side, left: left + side]


class RealImageWatch:
    """No-reference measures and quick-looks of a despeckling network on real images.

    Args:
        examples: the real validation images: (name, linear intensity (1, 1, H, W), reference
            level) triples; their looks are estimated once (the ENL share's denominator, and what
            networks conditioned on the looks read).
        per_pixel: the network is trained on correlated speckle, so a conditioned one reads the
            looks per pixel, as the plugin feeds it (``core.speckle.looks_per_pixel``).
    """

    def __init__(self, examples: list[tuple[str, torch.Tensor, float]], per_pixel: bool = False) -> None:
        self.examples = [(name, centre_crop(noisy), reference) for name, noisy, reference in examples
                         if min(noisy.shape[-2:]) >= MIN_SIDE]
        images = [([noisy[0, 0].double().numpy()], [noisy[0, 0].numpy() > 0]) for _, noisy, _ in self.examples]
        self.looks = [speckle.estimate_looks(*image) for image in images]
        self.network_looks = ([speckle.looks_per_pixel(looks, speckle.pixel_looks(*image))
                               for looks, image in zip(self.looks, images)] if per_pixel else self.looks)
        self.images = images
        self._correlation: list | None = None
        self.estimates: list[np.ndarray] = []

    def __bool__(self) -> bool:
        return bool(self.examples)

    def correlation(self) -> list:
        """Each image's speckle lag-1 autocorrelation (rows, cols; None where not measurable), as
        a run measures it: what a correlation-conditioned network reads. Measured once, when
        such a network is first watched."""
        if self._correlation is None:
            measured = [measure_correlation(*image) for image in self.images]
            self._correlation = [found[0] if found else None for found in measured]
        return self._correlation

    def measure(self, model, device: torch.device) -> dict:
        """Despeckle each image (model in eval mode, no gradients) and return the measures of
        :data:`MEASURES` averaged over the images."""
        rows = {key: [] for key in MEASURES}
        self.estimates = []
        reads_correlation = getattr(model, "reads_correlation", False)
        correlations = self.correlation() if reads_correlation else [None] * len(self.examples)
        for (_, noisy, reference), looks, network_looks, correlation in zip(
                self.examples, self.looks, self.network_looks, correlations):
            conditioned = getattr(model, "conditioned", False)
            extra = {"correlation": correlation} if reads_correlation else {}
            estimate = model.despeckle(noisy.to(device), torch.tensor([reference], device=device),
                                       network_looks if conditioned else None, **extra)[0, 0].double().cpu().numpy()
            intensity = noisy[0, 0].double().numpy()
            self.estimates.append(estimate)
            quality = band_quality(intensity, estimate, intensity > 0)
            ratio, source = quality["ratio"], quality["input_speckle"]
            rows["real_ratio_mean"].append(ratio["mean"])
            rows["real_ratio_enl_share"].append(ratio["enl"] / looks if ratio["enl"] is not None else None)
            if source is not None:
                gaps = [abs(r - s) for r, s in zip(ratio["autocorrelation_rows"] + ratio["autocorrelation_cols"],
                                                   source["autocorrelation_rows"] + source["autocorrelation_cols"])
                        if r is not None and s is not None]
                rows["real_ratio_autocorrelation_gap"].append(max(gaps) if gaps else None)
        return {key: float(np.mean([v for v in values if v is not None]))
                for key, values in rows.items() if any(v is not None for v in values)}

    def draw(self, folder: str, epoch: int, history: list[dict]) -> None:
        """Quick-looks of the last :meth:`measure` (``folder/<image>_epoch<E>.png``) and the
        measures of every validation row in ``history`` (``folder/history.png``)."""
        os.makedirs(folder, exist_ok=True)
        for (name, noisy, _), estimate in zip(self.examples, self.estimates):
            intensity = noisy[0, 0].double().numpy()
            quicklook = QuickLook(1, *intensity.shape)
            valid = intensity > 0
            quicklook.add(0, np.where(valid, intensity, np.nan)[None], np.where(valid, estimate, np.nan)[None],
                          np.where(valid, ratio_of(intensity, estimate, valid), np.nan)[None])
            stem = "".join(c if c.isalnum() else "_" for c in name.split(",")[0])[:40]
            quicklook_png(os.path.join(folder, f"{stem}_epoch{epoch:03d}.png"), quicklook, [None], [f"EPOCH {epoch}"])
        history_png([row for row in history if "real_ratio_mean" in row], os.path.join(folder, "history.png"))


def history_png(rows: list[dict], path: str, height: int = 120, width: int = 360) -> None:
    """One panel per measure of :data:`MEASURES` against the epoch, its target dashed."""
    margin, gap = 30, 20
    canvas = Canvas(len(MEASURES) * (height + gap) + gap, width + 2 * margin)
    epochs = np.array([row["epoch"] for row in rows], float)
    first, last = (epochs.min(), epochs.max()) if len(epochs) else (0.0, 1.0)
    span = last - first if last > first else 1.0
    for index, ((key, target), colour) in enumerate(zip(MEASURES.items(), (BLUE, RED, GREEN))):
        top = gap + index * (height + gap)
        values = np.array([row.get(key, math.nan) for row in rows], float)
        finite = values[np.isfinite(values)]
        low = min([target, *finite]) if finite.size else target - 1
        high = max([target, *finite]) if finite.size else target + 1
        low, high = (low - 0.1, high + 0.1) if high - low < 0.2 else (low, high)

        def row_of(value, top=top, low=low, high=high):
            return top + height - (np.asarray(value) - low) / (high - low) * height

        canvas.line(top, margin, top + height, margin, GREY)
        canvas.line(top + height, margin, top + height, margin + width, GREY)
        canvas.line(row_of(target), margin, row_of(target), margin + width, GREY, dash=4)
        columns = margin + (epochs - first) / span * width
        canvas.polyline(row_of(values), columns, colour, thickness=2)
        canvas.point(row_of(values), columns, colour, thickness=4)
        canvas.text(top - 12, margin, f"{key.replace('real_', '').replace('_', ' ')}: {low:.2f} to {high:.2f}")
    canvas.text(canvas.pixels.shape[1] - 12, margin, f"epoch {first:.0f} to {last:.0f}")
    save_rgb_png(canvas.pixels, path)
