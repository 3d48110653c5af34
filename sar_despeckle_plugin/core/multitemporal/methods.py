"""The multitemporal methods, on torch tensors.

Every method reads the intensity channels of a stack of k dates, LINEAR INTENSITY float32
(B, k, C, H, W) (C = 1 single-pol; 2 for VV, VH or C11, C22) with each date's validity
(B, k, H, W), and returns the despeckled intensities of the target dates (B, T, C, H, W), in
the order of ``targets`` (0-based date indices). Invalid pixels never enter a statistic.

* :func:`quegan`: Quegan and Yu's multitemporal filter (IEEE TGRS 39(11), 2001; SNAP's
  "Multi-temporal Speckle Filter"): J_t = <I_t> * (1/N) sum_i I_i / <I_i>, with <.> the local
  mean over a WINDOW x WINDOW box and the sum over the N dates valid at the pixel. Each ratio
  I_i / <I_i> is speckle times the texture within the window, so a change confined to one date
  stays in that date; only the window around the change's outline is mixed.
* :class:`Rabasar`: the ratio method after Zhao, Deledalle, Denis, Maitre, Nicolas and Tupin
  (RABASAR, IEEE TGRS 57(10), 2019). The super-image S_t = (1/N) sum_i I_i (the temporal
  arithmetic mean, about N x L looks where nothing changed) is despeckled by the project's
  looks-conditioned network (``core.models``, the shipped ``sarcnn_looks``) into S_hat_t; the
  target date's ratio I_t / S_hat_t, which is speckle of the date's looks wherever the date
  agrees with the mean and holds the date's own changes elsewhere, is despeckled by the same
  network at the date's looks, and multiplied back: J_t = S_hat_t * ratio_hat_t.
  One departure from the paper, against ghosts: the plain mean of dates that differ mixes
  their levels and has far fewer looks than N x L there, and what the network leaves of that
  speckle stays in every target date. So the super-image is made for each target date: where
  the log-ratio of another date's local mean to the target's (WINDOW box) passes
  :data:`CHANGE_SIGMAS` standard deviations (sqrt(psi1(w^2 L_i) + psi1(w^2 L_t))), that date
  enters the mean brought to the target's local level, I_i <I_t> / <I_i> (as in Quegan's
  filter), and as itself elsewhere. Where the target differs from every other date
  (:func:`own_change`: a change of its own), no other date tells what the target holds: its
  super-image there is the plain mean of the other dates (no date brought to the level of the
  target's noisy local mean), and over the change's region (:func:`own_region`: the test's
  pixels that hold the :func:`majority` of their window, grown through the pixels where the
  target differs from every other date by :data:`RELAXED_SIGMAS` standard deviations and from
  their mean by :data:`CONSENSUS_SIGMAS`, outlined by the majority again) the output is the target despeckled alone, as single-date despeckling
  (METHOD automatic) would despeckle it: its network (``sarcnn_default`` for one-look white
  speckle) or classical filter, fed the date's own reference level and looks (a third pass, on
  the 128-pixel blocks that hold such pixels; :mod:`.alone` makes the choice). Bringing the
  other dates to the target's level inside its change put the noise of its 7 x 7 local mean
  (one look: 14 %) and the box's mixed levels into the change, and the other dates' texture into
  a change that replaced it (5 one-look dates, a flat 6x change: 20.11 dB against 23.05 for the
  single-date network; see docs/multitemporal.md). The strict test alone caught a quarter of a
  2x change at 5 one-look dates and missed the parts of a new texture whose local mean matches
  the old one's; there the ratio image holds the old texture, and the output lost 0.3-0.6 dB to
  the single-date default.
* :func:`complete_c2`: the C2 output of either method. The intensities C11, C22 are filtered as
  above; the cross term keeps the date's own VV/VH coherence, estimated over the same window:
  C12_t = gamma_t * sqrt(C11_hat C22_hat), gamma_t = <C12_t> / sqrt(<C11_t> <C22_t>). A box sum
  of positive semi-definite matrices is positive semi-definite, so |gamma_t| <= 1 and the
  output is a valid covariance (C11, C22 >= 0, |C12|^2 <= C11 C22) at every pixel.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..covariance import valid_covariance
from ..despeckle.settings import BandDespeckler
from ..models.weights import LoadedModel
from ..stack import box_sum


def local_means(intensity: torch.Tensor, valid: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of each date's valid pixels in a ``window`` box, (B, k, C, H, W); 0 where the box
    holds none."""
    weight = valid[:, :, None].to(intensity.dtype)
    count = box_sum(weight, window)
    return box_sum(intensity * weight, window) / count.clamp_min(1)


def quegan(intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int], window: int) -> torch.Tensor:
    """Quegan's filter (see the module doc): (B, k, C, H, W) -> (B, T, C, H, W)."""
    mean = local_means(intensity, valid, window)
    use = valid[:, :, None] & (mean > 0)
    ratio = torch.where(use, intensity / mean.clamp_min(torch.finfo(mean.dtype).tiny), torch.zeros_like(mean))
    average = ratio.sum(1) / use.sum(1).clamp_min(1)
    return mean[:, list(targets)] * average[:, None]


def ratio_level(looks: float) -> float:
    """Median of Gamma(L, 1/L) speckle (Wilson-Hilferty): the reference level of a ratio image,
    which is speckle of mean 1 where nothing changed."""
    return (1.0 - 1.0 / (9.0 * looks)) ** 3


#: Another date enters the target's super-image brought to the target's local level where the
#: log-ratio of their local means passes this many standard deviations (see the module doc).
CHANGE_SIGMAS = 3.0


def polygamma_one(looks: float) -> float:
    """psi1(L): the variance of the log of an L-look intensity over its mean."""
    return float(torch.special.polygamma(1, torch.tensor(float(looks), dtype=torch.float64)))


def differs(means: torch.Tensor, target: int, looks: Sequence[float], window: int,
            sigmas: float = CHANGE_SIGMAS) -> torch.Tensor:
    """Where each date's local mean (``means`` (B, k, C, H, W) over ``window`` boxes) differs
    from the ``target``'s by more than ``sigmas`` standard deviations of their log-ratio,
    sqrt(psi1(w^2 L_i) + psi1(w^2 L_t)) (``looks`` per date): (B, k, C, H, W) bool."""
    tiny = torch.finfo(means.dtype).tiny
    spread = torch.tensor([
        math.sqrt(polygamma_one(window * window * value) + polygamma_one(window * window * looks[target]))
        for value in looks
    ], dtype=means.dtype, device=means.device)[None, :, None, None, None]
    return (means.clamp_min(tiny) / means[:, target: target + 1].clamp_min(tiny)).log().abs() > sigmas * spread


def compensated_mean(intensity: torch.Tensor, valid: torch.Tensor, means: torch.Tensor, target: int,
                     looks: Sequence[float], window: int, with_target: bool = True) -> torch.Tensor:
    """The temporal mean (B, C, H, W) of the dates valid at each pixel (all of them, or all but
    the ``target`` when not ``with_target``), the dates whose local mean ``means``
    (B, k, C, H, W) :func:`differs` from the target's brought to its level (see the module doc);
    ``looks`` per date."""
    tiny = torch.finfo(means.dtype).tiny
    reference, level = means[:, target: target + 1].clamp_min(tiny), means.clamp_min(tiny)
    dates = torch.where(differs(means, target, looks, window), intensity * reference / level, intensity)
    weight = valid[:, :, None].to(intensity.dtype)
    if not with_target:
        weight = torch.cat([weight[:, :target], torch.zeros_like(weight[:, target: target + 1]),
                            weight[:, target + 1:]], 1)
    return (dates * weight).sum(1) / weight.sum(1).clamp_min(1)


def own_change(means: torch.Tensor, valid: torch.Tensor, target: int, looks: Sequence[float],
               window: int, sigmas: float = CHANGE_SIGMAS) -> torch.Tensor:
    """Where the ``target``'s local mean :func:`differs` (by ``sigmas``) from that of every
    other date valid there (and one is): a change of the target's own, (B, C, H, W) bool."""
    others = valid[:, :, None].clone()
    others[:, target] = False
    return (differs(means, target, looks, window, sigmas) | ~others).all(1) & others.any(1)


#: The target's own change grows from the pixels that pass :data:`CHANGE_SIGMAS` into those where
#: it differs from every other date by this many standard deviations (:func:`relaxed_change`)...
RELAXED_SIGMAS = 1.0
#: ... and from the mean of the other dates by this many (the consensus: :func:`relaxed_change`).
CONSENSUS_SIGMAS = 2.0
#: How far (in windows) the own change's region grows from the pixels that pass the strict test.
GROWTH_WINDOWS = 4


def majority(mask: torch.Tensor, window: int) -> torch.Tensor:
    """Where ``mask`` (..., H, W) bool holds at least half of the ``window`` box around the
    pixel (the part of the box inside the image), whatever the pixel itself: drops isolated
    pixels (the change test's errors on unchanged one-look stacks are blobs of 1 pixel in the
    median, 10 at most with 3 dates), fills holes under half the box and keeps a region's
    straight edges, its corners but for a few pixels."""
    share = box_sum(mask.float(), window) / box_sum(torch.ones_like(mask, dtype=torch.float32), window)
    return share >= 0.5


def grow(seeds: torch.Tensor, allowed: torch.Tensor, steps: int) -> torch.Tensor:
    """``seeds`` (B, C, H, W) bool grown ``steps`` times by one pixel (3 x 3 neighbours) into
    ``allowed`` (same shape): the pixels of ``allowed`` joined to a seed within ``steps`` pixels
    (hysteresis thresholding with a bounded reach, so that tiles see what the whole image would).
    Only the seeds' bounding box widened by the reach is worked on, until a step adds nothing."""
    rows, cols = seeds.flatten(0, 1).any(0).nonzero(as_tuple=True)
    if rows.numel() == 0:
        return seeds
    margin = steps + 1  # the 3 x 3 neighbours of every pixel the growth can reach
    box = (..., slice(max(int(rows.min()) - margin, 0), int(rows.max()) + margin + 1),
           slice(max(int(cols.min()) - margin, 0), int(cols.max()) + margin + 1))
    region, inside, start = seeds.clone(), allowed[box], seeds[box]
    grown = start
    for _ in range(steps):
        step = start | (inside & (F.max_pool2d(grown.float(), 3, 1, 1) > 0))
        if torch.equal(step, grown):
            break
        grown = step
    region[box] = grown
    return region


def relaxed_change(means: torch.Tensor, valid: torch.Tensor, target: int, looks: Sequence[float],
                   window: int) -> torch.Tensor:
    """Where the ``target`` may belong to a change of its own, the ground :func:`own_region`
    grows on, (B, C, H, W) bool: its local mean (``means`` (B, k, C, H, W) over ``window``
    boxes; ``looks`` per date) :func:`differs` from every other date's valid there by
    :data:`RELAXED_SIGMAS`, and from the mean of their local means by :data:`CONSENSUS_SIGMAS`
    standard deviations of that log-ratio, sqrt(psi1(w^2 L_t) + psi1(w^2 sum_i L_i)) over the
    other dates (all of them: where some are invalid the test is a little looser). With one other
    date the first test alone passes a third of unchanged pixels by chance: on unchanged
    one-look 2-date stacks 0.18 % of the pixels ended in a region, 0.045 % with both, and on
    the MTDN pairs, before ``looks`` counted their correlated local means as fewer looks
    (``Rabasar``'s ``change_looks``), 35 % against 14 %."""
    weight = valid[:, :, None].to(means.dtype).clone()
    weight[:, target] = 0
    others = (means * weight).sum(1) / weight.sum(1).clamp_min(1)
    w2 = window * window
    spread = math.sqrt(polygamma_one(w2 * looks[target])
                       + polygamma_one(w2 * sum(value for date, value in enumerate(looks) if date != target)))
    tiny = torch.finfo(means.dtype).tiny
    apart = (others.clamp_min(tiny) / means[:, target].clamp_min(tiny)).log().abs() > CONSENSUS_SIGMAS * spread
    return own_change(means, valid, target, looks, window, RELAXED_SIGMAS) & apart


def own_region(own: torch.Tensor, relaxed: torch.Tensor, window: int) -> torch.Tensor:
    """The region (B, C, H, W) bool of the target's own change: the :func:`majority` of its
    strict test ``own`` (:func:`own_change` at :data:`CHANGE_SIGMAS`), grown
    :data:`GROWTH_WINDOWS` windows through ``relaxed`` (:func:`relaxed_change`), outlined by the
    majority again. A change is a region: its pixels whose local mean the change left near the
    other dates' (a 2x change at one look, the parts of a new texture as bright as the old) join
    the pixels that passed, and no pixel away from them does (on unchanged one-look stacks 0.05 %
    of the pixels with 2 dates, 0.01 % with 3 or 5)."""
    return majority(grow(majority(own, window), relaxed, GROWTH_WINDOWS * window), window)


def region_reach(window: int) -> int:
    """Pixels of context :func:`own_region` reads around a pixel: the local means', both
    majorities' half windows and the growth."""
    return 3 * (window // 2) + GROWTH_WINDOWS * window


def super_image(intensity: torch.Tensor, valid: torch.Tensor, means: torch.Tensor, target: int,
                looks: Sequence[float], window: int, own: torch.Tensor) -> torch.Tensor:
    """The ratio method's super-image (B, C, H, W) for the ``target`` (see the module doc): the
    :func:`compensated_mean` of the dates, except inside the target's :func:`own_change`
    ``own``, where it is the plain mean of the other dates (no date brought to the level of the
    target's noisy local mean)."""
    weight = valid[:, :, None].to(intensity.dtype).clone()
    weight[:, target] = 0
    others = (intensity * weight).sum(1) / weight.sum(1).clamp_min(1)
    return torch.where(own, others, compensated_mean(intensity, valid, means, target, looks, window))


#: Side of the blocks in which the ratio method despeckles the target alone (pixels): only the
#: blocks that hold pixels of the target's own change are run, each with the despeckler's reach.
ALONE_BLOCK = 128  # a multiple of the networks' alignment


class Rabasar:
    """The ratio method (see the module doc) with the network ``model``.

    Args:
        model: a checked, loaded despeckling network conditioned on the looks.
        super_looks: the looks the super-image is despeckled with (about the sum of the dates'
            looks, within the network's range).
        super_levels: per intensity channel, the reference level (median) of the super-image.
        looks: per date, its looks (its ratio is despeckled with them, kept within the
            network's range; the change tests' spread unless ``change_looks`` is given).
        window: side of the local means of the change test.
        self_ensemble: also despeckle the mirrored images (geometric mean of both estimates).
        alone: how single-date despeckling despeckles a target date by itself
            (:func:`.alone.date_alone`), used over the target's own change: its ``apply`` takes
            the band index ``t * C + c`` for channel c of date t.
        change_looks: per date, the looks the change tests count per pixel of a local mean
            (``looks`` over :func:`core.speckle.mean_variance_factor` where the speckle is
            correlated); None: ``looks`` (white speckle).
    """

    def __init__(self, model: LoadedModel, super_looks: float, super_levels: Sequence[float],
                 looks: Sequence[float], window: int, self_ensemble: bool, alone: BandDespeckler,
                 change_looks: Sequence[float] | None = None) -> None:
        self.model = model
        self.alone = alone
        self.super_looks = super_looks
        self.super_levels = list(super_levels)
        self.looks = list(looks)
        self.change_looks = list(looks if change_looks is None else change_looks)
        self.window = window
        self.self_ensemble = self_ensemble
        low, high = model.card.looks_range
        self.network_looks = [float(min(max(value, low), high)) for value in looks]

    def _network(self, intensity: torch.Tensor, valid: torch.Tensor, level: float, looks: float) -> torch.Tensor:
        """The network on (B, C, H, W) linear intensity, every channel alike."""
        shape = intensity.shape
        return self.model.despeckle(
            intensity.reshape(-1, 1, *shape[-2:]), valid.expand(shape).reshape(-1, 1, *shape[-2:]),
            level, self.self_ensemble, looks,
        ).reshape(shape)

    def _alone(self, result: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, where: torch.Tensor,
               date: int) -> torch.Tensor:
        """``result`` (B, C, H, W) with the ``target`` date (B, C, H, W linear intensity;
        validity (B, 1, H, W)), date number ``date`` (0-based), despeckled alone by
        :attr:`alone` ``where`` (B, C, H, W): it runs on the :data:`ALONE_BLOCK` blocks that hold
        such pixels, each with its halo around it (within the tile, which has the tiling
        engine's halo), the origin on its alignment so that the block sees what the whole tile
        would."""
        reach, alignment = self.alone.halo, self.alone.alignment
        channels = target.shape[1]
        height, width = where.shape[-2:]
        anywhere = where.flatten(0, 1).any(0)
        for top in range(0, height, ALONE_BLOCK):
            for left in range(0, width, ALONE_BLOCK):
                bottom, right = min(top + ALONE_BLOCK, height), min(left + ALONE_BLOCK, width)
                if not anywhere[top:bottom, left:right].any():
                    continue
                rows = slice(max((top - reach) // alignment * alignment, 0), min(bottom + reach, height))
                cols = slice(max((left - reach) // alignment * alignment, 0), min(right + reach, width))
                alone = torch.cat([
                    self.alone.apply(target[:, c: c + 1, rows, cols], valid[:, :, rows, cols], date * channels + c)
                    for c in range(channels)
                ], 1)[..., top - rows.start: bottom - rows.start, left - cols.start: right - cols.start]
                result[..., top:bottom, left:right] = torch.where(
                    where[..., top:bottom, left:right], alone, result[..., top:bottom, left:right])
        return result

    def __call__(self, intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """(B, k, C, H, W) -> (B, T, C, H, W)."""
        means = local_means(intensity, valid, self.window)
        outputs = []
        for t in targets:
            date_valid = valid[:, t, None]
            own = own_change(means, valid, t, self.change_looks, self.window)
            mean = super_image(intensity, valid, means, t, self.change_looks, self.window, own)
            estimate = torch.cat([
                self._network(mean[:, c: c + 1], date_valid, level, self.super_looks)
                for c, level in enumerate(self.super_levels)
            ], 1)
            ratio = intensity[:, t] / estimate  # the network's output is > 0
            looks = self.network_looks[t]
            result = estimate * self._network(ratio, date_valid, ratio_level(looks), looks)
            # the date alone, where no other date tells anything about it
            relaxed = relaxed_change(means, valid, t, self.change_looks, self.window)
            outputs.append(self._alone(result, intensity[:, t], date_valid, own_region(own, relaxed, self.window), t))
        return torch.stack(outputs, 1)


class LearnedStack:
    """A multitemporal network (card input kind ``stack``: ``python -m training`` in mode
    ``multitemporal``, after MTPI-Net): each target date despeckled with its auxiliary image, the
    other dates' mean, those that changed brought to the target's local level
    (:func:`compensated_mean` without the target); where no other date is valid the target
    itself stands in.

    Args:
        model: the checked, loaded network.
        levels: per intensity channel, the reference level (one for the whole image).
        looks: per date, its looks (the target's and the auxiliary image's noise levels).
        window: side of the local means of the change test.
        self_ensemble: also despeckle the mirrored images (geometric mean of both estimates).
        change_looks: per date, the looks the change test counts per pixel of a local mean (see
            :class:`Rabasar`); None: ``looks``.
    """

    def __init__(self, model: LoadedModel, levels: Sequence[float], looks: Sequence[float], window: int,
                 self_ensemble: bool, change_looks: Sequence[float] | None = None) -> None:
        self.model = model
        self.levels = list(levels)
        self.looks = list(looks)
        self.change_looks = list(looks if change_looks is None else change_looks)
        self.window = window
        self.self_ensemble = self_ensemble

    def __call__(self, intensity: torch.Tensor, valid: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """(B, k, C, H, W) -> (B, T, C, H, W)."""
        means = local_means(intensity, valid, self.window)
        outputs = []
        for t in targets:
            others = torch.cat([valid[:, :t], valid[:, t + 1:]], 1).any(1, keepdim=True)  # (B, 1, H, W)
            auxiliary = compensated_mean(intensity, valid, means, t, self.change_looks, self.window, with_target=False)
            auxiliary = torch.where(others, auxiliary, intensity[:, t])
            auxiliary_looks = sum(self.looks) - self.looks[t]
            outputs.append(torch.cat([
                self.model.despeckle(intensity[:, t, c: c + 1], valid[:, t, None], level, self.self_ensemble,
                                     self.looks[t], auxiliary[:, c: c + 1], auxiliary_looks)
                for c, level in enumerate(self.levels)
            ], 1))
        return torch.stack(outputs, 1)


def complete_c2(cov: torch.Tensor, valid: torch.Tensor, targets: Sequence[int], intensity: torch.Tensor,
                window: int) -> torch.Tensor:
    """The C2 bands of the target dates (B, T, 4, H, W) from their despeckled C11, C22
    ``intensity`` (B, T, 2, H, W) and each date's own coherence over a ``window`` box of the
    input ``cov`` (B, k, 4, H, W) (see the module doc)."""
    chosen = cov[:, list(targets)]
    weight = valid[:, list(targets), None].to(cov.dtype)
    c11, c22, re, im = valid_covariance(box_sum(chosen * weight, window).unbind(2))  # against rounding
    norm = (c11 * c22).sqrt()
    amplitude = (intensity[:, :, 0] * intensity[:, :, 1]).clamp_min(0).sqrt()
    scale = torch.where(norm > 0, amplitude / norm.clamp_min(1e-30), torch.zeros_like(norm))  # |gamma| <= 1
    return torch.stack([intensity[:, :, 0], intensity[:, :, 1], re * scale, im * scale], 2)
