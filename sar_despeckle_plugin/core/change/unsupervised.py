"""METHOD = unsupervised: a small network trained on the pair itself, from confident
pseudo-labels of a log-ratio pre-classification, then applied to every pixel (the idea of
PCANet / CWNN / DDNet-style unsupervised SAR change detection; our own implementation).

For each pair of consecutive dates:

1. **Pre-classification** (:func:`pseudo_labels`): the standardised log-ratio index x
   (``statistics.log_ratio_index``) is split at its Otsu threshold T (on the whole image's
   sample; never below the noise floor SIGNIFICANCE sets, ``thresholds.noise_floor``). A pixel is a *confident* changed (unchanged) example when it is over (under) T and
   so are at least :data:`AGREEMENT` of the valid pixels of its :data:`NEIGHBOURHOOD`-pixel
   square: isolated speckle peaks and the edges of changes, where the pre-classification is
   unsure, are left out.
2. **Training** (:func:`train_pair`): :class:`PairNet` (three 3 x 3 convolutions, the middle one
   dilated, 16 features; about 5 k multiply-accumulates per pixel, receptive radius 4) reads,
   per intensity channel, the signed standardised log-ratio (divided by its robust spread about
   zero on the sample, zero staying no change), and learns the confident labels with binary
   cross-entropy on random crops of the sample windows, :data:`STEPS` Adam steps, seeded (the
   same image gives the same map). Each class's examples are weighted by how many pixels of
   the pre-classification they stand for (pre-classified / confident): the confident set keeps
   fewer changed pixels (small regions, edges) than unchanged ones, and unweighted it would
   teach the network a prior against change.
3. **Application**: the network's sigmoid is the change probability of every pixel (CHANGE_MAP);
   changed where it passes 0.5.

It learns from the image's own clear cases what change looks like there (the log-ratio's
spatial pattern: how strong and how wide a change is against the speckle left) and so decides
the unsure pixels better than the threshold that labelled it. The evidence of change between two
dates is their ratio, so that is all it reads, and its map does not depend on the scene's
levels: given the pair's mean log level as well, the network learned a prior of that one pair
(which backscatter levels changed there) and applied it to unsure pixels by their level (without
it, kappa 0.895 -> 0.923 on Yellow River, 0.944 -> 0.957 on Sulzberger, 0.915 -> 0.913 on San
Francisco, 0.897 -> 0.869 on San Francisco read from its 8-bit files, whose outlines move out;
synthetic changes towards the scene's median level found more fully; docs/change_detection.md).
With PREFILTER on (the default) it sees despeckled dates. Layouts: (B, k, C, H, W) stacks as
every detector; features (B, channels, H, W).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..choices import INTENSITY_BANDS
from .detectors import ChangeDetector, Stack, first_pair_over, pair_thresholds
from .statistics import log_ratio_index, log_ratios

#: Side of the square whose pre-classification must agree with a pixel's for a confident label.
NEIGHBOURHOOD = 5
#: Share of that square's valid pixels that must fall on the pixel's side of the threshold.
AGREEMENT = 0.8
#: Features of the network's hidden layers.
WIDTH = 16
#: Adam steps, crops per step and crop side (pixels) of the training on the pair.
STEPS = 300
BATCH = 16
CROP = 40
LEARNING_RATE = 0.01
#: Fewest confident examples of each class needed to train (else the pre-classification stands).
MIN_EXAMPLES = 50


class PairNet(nn.Module):
    """(B, channels, H, W) log-ratio features -> (B, 1, H, W) change logits; receptive radius 4."""

    radius = 4

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, WIDTH, 3, padding=1), nn.ReLU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(),
            nn.Conv2d(WIDTH, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def pseudo_labels(index: torch.Tensor, valid: torch.Tensor, threshold: float,
                  neighbourhood: int = NEIGHBOURHOOD, agreement: float = AGREEMENT) -> torch.Tensor:
    """Confident labels of the pre-classification ``index > threshold``: (B, H, W) int8, 1
    changed, 0 unchanged, -1 unsure or invalid (see the module doc)."""
    over = ((index > threshold) & valid).double()[:, None]
    counted = valid.double()[:, None]
    pool = nn.functional.avg_pool2d
    pad = neighbourhood // 2
    share_over = pool(over, neighbourhood, 1, pad, count_include_pad=True)
    share_valid = pool(counted, neighbourhood, 1, pad, count_include_pad=True).clamp_min(1e-9)
    fraction = (share_over / share_valid)[:, 0]
    labels = torch.full(index.shape, -1, dtype=torch.int8, device=index.device)
    labels[(fraction >= agreement) & (index > threshold) & valid] = 1
    labels[(fraction <= 1 - agreement) & (index <= threshold) & valid] = 0
    return labels


class UnsupervisedDetector(ChangeDetector):
    """A :class:`PairNet` per pair of consecutive dates, trained in ``fit`` on the sample."""

    name = "unsupervised"
    halo = PairNet.radius
    map_kind = "change probability (unsupervised detector trained on the pair)"

    def __init__(self, significance: float = 0.01) -> None:
        self.significance = significance
        self.nets: list[PairNet] = []
        self.scales: list[torch.Tensor] = []  # per pair: (channels,) robust spread of the log-ratios
        self.summary: list[dict] = []

    @staticmethod
    def raw_features(stack: Stack, j: int) -> torch.Tensor:
        """(B, channels, H, W) float64: the signed standardised log-ratios of dates j - 1, j per
        intensity channel (``statistics.log_ratios``); 0 where invalid."""
        ratios = log_ratios(stack.cov[:, j - 1], stack.cov[:, j], stack.looks[:, j - 1], stack.looks[:, j],
                            stack.layout)
        return torch.where(stack.valid[:, None], ratios, torch.zeros_like(ratios))

    def features(self, stack: Stack, j: int) -> torch.Tensor:
        """Features (float32) of pair j for the network trained on it: the log-ratios over their
        spread on the sample."""
        return (self.raw_features(stack, j) / self.scales[j - 1][None, :, None, None]).float()

    def fit(self, samples, feedback):
        start = time.perf_counter()
        channels = len(INTENSITY_BANDS[samples[0].layout])
        self.nets, self.scales, self.summary = [], [], []
        thresholds = pair_thresholds(samples, "otsu", self.significance)
        for j in range(1, samples[0].cov.shape[1]):
            indices = [log_ratio_index(s.cov[:, j - 1], s.cov[:, j], s.looks[:, j - 1], s.looks[:, j], s.layout)
                       for s in samples]
            threshold = thresholds[j - 1][0]
            labels = [pseudo_labels(x, s.valid, threshold) for x, s in zip(indices, samples)]
            raw = [self.raw_features(s, j) for s in samples]
            values = torch.cat([f.movedim(1, -1)[s.valid] for f, s in zip(raw, samples)])  # (pixels, channels)
            scale = 1.4826 * values.abs().median(0).values.clamp_min(1e-6)  # about 0: no change stays 0
            self.scales.append(scale)
            features = [(f / scale[None, :, None, None]).float() for f in raw]
            changed = sum(int((lab == 1).sum()) for lab in labels)
            unchanged = sum(int((lab == 0).sum()) for lab in labels)
            over = sum(int(((x > threshold) & s.valid).sum()) for x, s in zip(indices, samples))
            under = sum(int(s.valid.sum()) for s in samples) - over
            trainable = min(changed, unchanged) >= MIN_EXAMPLES
            weights = (under / max(unchanged, 1), over / max(changed, 1))
            net, loss = train_pair(features, labels, channels, weights) if trainable else (None, float("nan"))
            self.nets.append(net)
            self.summary.append({"pair": j, "threshold": threshold, "confident_changed": changed,
                                 "confident_unchanged": unchanged, "loss": loss})
            feedback.info(
                f"Unsupervised detector, dates {j}-{j + 1}: Otsu threshold {threshold:.3f} on the standardised "
                f"log-ratio; confident pseudo-labels {changed} changed, {unchanged} unchanged pixels"
                + (f"; trained {STEPS} steps, loss {loss:.3f}." if net is not None else
                   f"; fewer than {MIN_EXAMPLES} of a class: the pre-classification is the map.")
            )
        feedback.info(f"Unsupervised detector trained in {time.perf_counter() - start:.1f} s.")

    def detect(self, stack):
        probabilities = []
        with torch.no_grad():
            for j in range(1, stack.cov.shape[1]):
                net = self.nets[j - 1]
                if net is None:
                    index = log_ratio_index(stack.cov[:, j - 1], stack.cov[:, j], stack.looks[:, j - 1],
                                            stack.looks[:, j], stack.layout)
                    probabilities.append((index > self.summary[j - 1]["threshold"]).float())
                    continue
                net = net.to(stack.cov.device)
                probabilities.append(torch.sigmoid(net(self.features(stack, j)))[:, 0])
        return first_pair_over(probabilities)

    def record(self):
        return {"pairs": self.summary, "steps": STEPS, "significance": self.significance}


def train_pair(features: list[torch.Tensor], labels: list[torch.Tensor], channels: int,
               weights: tuple[float, float] = (1.0, 1.0)) -> tuple[PairNet, float]:
    """A :class:`PairNet` fitted to the confident ``labels`` (list of (B, H, W), -1 ignored) of the
    sample windows' ``features`` (list of (B, channels, H, W)), each example weighted by its
    class's ``weights`` (unchanged, changed); returns it (in eval mode) and its last loss.
    Seeded: the same sample gives the same network. On the CPU it trains on one torch thread:
    its batches are too small for a thread pool, which only spins (a 512 x 512 dual-pol pair:
    5.9 s on one thread, 36.6 s on two busy cores)."""
    threads = torch.get_num_threads()
    if features[0].device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train(features, labels, channels, weights)
    finally:
        torch.set_num_threads(threads)


def _train(features, labels, channels, weights) -> tuple[PairNet, float]:
    """The optimisation of :func:`train_pair`."""
    device = features[0].device
    crops = [(w, b) for w, f in enumerate(features) for b in range(f.shape[0])]
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = PairNet(channels).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, STEPS)
    loss_value = float("nan")
    for _ in range(STEPS):
        batch_x, batch_y = [], []
        for _ in range(BATCH):
            window, item = crops[int(torch.randint(len(crops), (1,), generator=generator))]
            f, lab = features[window][item], labels[window][item]
            side_y, side_x = min(CROP, f.shape[-2]), min(CROP, f.shape[-1])
            y = int(torch.randint(f.shape[-2] - side_y + 1, (1,), generator=generator))
            x = int(torch.randint(f.shape[-1] - side_x + 1, (1,), generator=generator))
            batch_x.append(f[:, y: y + side_y, x: x + side_x])
            batch_y.append(lab[y: y + side_y, x: x + side_x])
        if len({tuple(x.shape) for x in batch_x}) > 1:  # windows smaller than CROP: one at a time
            batch_x, batch_y = batch_x[:1], batch_y[:1]
        inputs, targets = torch.stack(batch_x), torch.stack(batch_y)
        known = targets >= 0
        if not bool(known.any()):
            continue
        logits = net(inputs)[:, 0]
        target = targets[known].float()
        weight = torch.where(target > 0, weights[1], weights[0]) / (weights[0] + weights[1])
        loss = nn.functional.binary_cross_entropy_with_logits(logits[known], target, weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        loss_value = float(loss.detach())
    return net.eval(), loss_value
