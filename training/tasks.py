"""The three training modes: what they train, their loss, and how they are validated.

* ``supervised``: log-domain residual learning on synthetic speckle over clean references;
  loss = mean squared error between the network's normalised log estimate and the clean
  normalised log reflectivity (SAR-CNN's loss).
* ``blind_spot``: self-supervised; loss = negative log-likelihood of each noisy pixel under
  the inverse-Gamma prior the network predicts from its neighbours (Speckle2Void).
* ``contrastive``: speckle-aware contrastive pre-training of the U-Net encoder (after CL-SAR,
  Fang et al. 2024): two views of one area -- independent speckle draws over one clean patch,
  or two dates of one real area -- must map to nearby embeddings and away from the other
  patches of the batch (InfoNCE). Fine-tune afterwards with ``init_from``.
* ``multitemporal``: Noise2Noise across dates after MTPI-Net (:mod:`training.stack_data`): a
  log-residual U-Net with an auxiliary channel reads a target date and the other dates'
  change-compensated mean, and learns another date's intensity where it agrees with the target.
* ``multitask``: despeckling and change detection of two dates after MTDN
  (:class:`MultiTaskNet`, :mod:`training.multitask_data`): the change branch's loss as in
  ``change``; the despeckling branch learns Noise2Noise across the two dates, counted only where
  the label says unchanged and weighted by the change branch's probability that nothing changed.
* ``change``: the change detector (:class:`ChangeNet`, dual-pol or single-pol by its
  ``channels``) on labelled pairs and on synthetic changes inserted into speckled pairs;
  loss = binary cross-entropy + soft Dice
  (changes are a minority class); validated by Cohen's kappa at probability 0.5.

Despeckling batches hold (B, 1, P, P) linear intensities and (B,) reference levels (see
data.py); change batches two (B, C, P, P) dates of C intensity channels, their (B, C) reference
levels and (B, 1, P, P) labels (see change_data.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sar_despeckle_plugin.core.models.base import DespecklingNet
from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.base import pad_to_multiple
from sar_despeckle_plugin.core.models.blind_spot import alpha_from_output, marginal_nll
from sar_despeckle_plugin.core.models.log_residual import UNetEncoder
from sar_despeckle_plugin.core.models.logdomain import intensity_to_log, normalise_log
from sar_despeckle_plugin.core.models.multitask import MultiTaskNet

from .change_data import ChangePatches, validation_pairs
from .config import Config
from .data import TrainingPatches, blind_spot_warning, speckle_model_of, speckle_statistics, validation_images
from .multitask_data import MultitaskPatches, validation_examples
from .metrics import change_scores, psnr_amplitude, ssim_amplitude
from .scenes import POINT_SCATTERER_LN
from .sources import load_sources
from .speckle_fit import MEASURED_LAGS
from .speckle_model import true_statistics
from .stack_data import CHANGE_PROBABILITY, CONTRAST, DATES, StackPatches, validation_stacks
from .watch import RealImageWatch


def _he_initialise(module: nn.Module) -> None:
    """He initialisation (std sqrt(2 / fan-in), zero bias) of every convolution in ``module``. torch's default shrinks the signal about sixfold in power per ReLU layer: the
    supervised U-Net trains better from that (measured: 24.1 against 22.5 dB in 15 min), but
    the pooled features of a deep encoder then start so small and alike that InfoNCE stays at
    chance level."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


class ContrastiveNet(nn.Module):
    """A log-residual U-Net's encoder plus a projection head: (B, 1, H, W) normalised log
    intensity -> (B, D) unit embeddings (global average of the coarsest features, then a
    2-layer MLP with batch normalisation, as in SimCLR: at initialisation the pooled features
    of a deep ReLU encoder are tiny and alike, and without it every embedding starts equal).
    The encoder starts from He initialisation for the same reason.

    Its ``encoder.*`` parameters have the names they have in :class:`LogResidualUNet`, so a
    supervised run's ``init_from`` picks them up.
    """

    def __init__(self, widths, convs_per_level: int, projection_width: int) -> None:
        super().__init__()
        self.alignment = 2 ** (len(widths) - 1)
        self.encoder = UNetEncoder(widths, convs_per_level)
        self.projection = nn.Sequential(
            nn.BatchNorm1d(widths[-1]), nn.Linear(widths[-1], projection_width), nn.BatchNorm1d(projection_width),
            nn.ReLU(inplace=True), nn.Linear(projection_width, projection_width),
        )
        _he_initialise(self.encoder)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = self.encoder(pad_to_multiple(z, self.alignment))[-1]
        return F.normalize(self.projection(features.mean(dim=(2, 3))), dim=1)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of unit embeddings (B, D): row i of ``a`` and of ``b`` are positives,
    every other row of the other view a negative."""
    logits = a @ b.T / temperature
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class Task:
    """Base: data, model and validation of one mode. ``selection`` is the validation metric
    that picks ``best.pt`` (``psnr``: higher is better; ``loss``: lower)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        mode = config.train.mode
        self.train_sets = load_sources(config.data.train, mode, "train")
        self.validation_sets = load_sources(config.data.validation, mode, "validation")

    @property
    def reads_correlation(self) -> bool:
        """Whether the model trained reads the speckle's correlation (``condition_channels`` 3), as
        ``DespecklingNet.reads_correlation`` says of a built one."""
        return self.config.model.hyperparameters.get("condition_channels", 0) > 1

    def train_dataset(self) -> TrainingPatches:
        return TrainingPatches(
            self.config.train.mode, self.train_sets, self.config.data, self.config.train.seed,
            self.config.contrastive.real_fraction, correlation=self.reads_correlation,
        )

    def build_model(self) -> nn.Module:
        return build_model(self.config.model.architecture, **self.config.model.hyperparameters)

    def warnings(self) -> list[str]:
        """Lines the run should print before training (data that does not suit the mode)."""
        return []

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """The optimiser's parameter groups; a group's ``lr_scale`` multiplies the scheduled
        learning rate (1 when absent). One group of every parameter by default."""
        return [{"params": list(model.parameters())}]

    def despeckler(self, model: nn.Module) -> DespecklingNet | None:
        """The network to export, or None when the mode trains none (contrastive)."""
        return model

    @property
    def selection(self) -> str:
        return "loss"

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def validate(self, model: nn.Module, device: torch.device) -> dict:
        raise NotImplementedError

    def after_validation(self, folder: str, epoch: int, history: list[dict]) -> None:
        """Pictures of the last validation into ``folder`` (``history``: the metrics rows so
        far); nothing by default."""

    def data_description(self) -> dict:
        data = self.config.data
        model = speckle_model_of(data)
        if model.white and not isinstance(model.looks, tuple):
            speckle = f"Gamma({data.looks:g}, 1/{data.looks:g}) drawn on the fly over clean sources"
        else:
            speckle = f"{model.describe()} drawn on the fly over clean sources"
        if data.point_scatterers:
            low, high = (math.exp(v) for v in POINT_SCATTERER_LN)
            speckle += (f", plus unspeckled single-pixel point scatterers ({low:.0f}-{high:.0f} x the "
                        f"reflectivity) on {data.point_scatterers:.3%} of the training pixels")
        return {
            "mode": self.config.train.mode,
            "train": [s.description for s in self.train_sets],
            "validation": [s.description for s in self.validation_sets],
            "speckle": speckle,
        }


class DespeckleTask(Task):
    """Shared by supervised and blind-spot: validation on whole images; real ones (no clean
    reference) are also watched (:mod:`training.watch`)."""

    #: Whether the loss needs no clean reference (then real validation images count in it).
    learns_without_reference = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        model = speckle_model_of(config.data)
        looks = model.looks if model.white and not isinstance(model.looks, tuple) else model
        self.examples = validation_images(self.validation_sets, looks, config.train.seed, self.reads_correlation)
        self.watch = RealImageWatch([(e.name, e.noisy, e.reference) for e in self.examples if e.clean is None],
                                    per_pixel=not model.white)

    @property
    def selection(self) -> str:
        return "psnr" if any(e.clean is not None for e in self.examples) else "loss"

    def example_loss(self, model: DespecklingNet, noisy, clean, reference, looks=None, correlation=None) -> torch.Tensor:
        batch = {"noisy": noisy, "clean": clean, "reference": reference}
        if looks is not None:
            batch["looks"] = torch.tensor([looks], device=noisy.device)
        if correlation is not None:
            batch["correlation"] = torch.tensor([correlation], device=noisy.device)
        return self.loss(model, batch)

    def validate(self, model: DespecklingNet, device: torch.device) -> dict:
        totals = {"loss": [], "psnr": [], "ssim": [], "psnr_input": []}
        model.eval()
        with torch.no_grad():
            for example in self.examples:
                noisy = example.noisy.to(device)
                reference = torch.tensor([example.reference], device=device)
                clean = example.clean.to(device) if example.clean is not None else None
                looks = example.looks if getattr(model, "conditioned", False) else None
                correlation = example.correlation if getattr(model, "reads_correlation", False) else None
                if clean is not None or self.learns_without_reference:
                    totals["loss"].append(float(self.example_loss(model, noisy, clean, reference, looks, correlation)))
                if clean is not None:
                    extra = {"correlation": correlation} if correlation is not None else {}
                    estimate = model.despeckle(noisy, reference, looks, **extra)
                    totals["psnr"].append(psnr_amplitude(estimate, clean))
                    totals["ssim"].append(ssim_amplitude(estimate, clean))
                    totals["psnr_input"].append(psnr_amplitude(noisy, clean))
            real = self.watch.measure(model, device) if self.watch else {}
        model.train()
        return {**{key: sum(values) / len(values) for key, values in totals.items() if values}, **real}

    def after_validation(self, folder: str, epoch: int, history: list[dict]) -> None:
        if self.watch:
            self.watch.draw(folder, epoch, history)


class SupervisedTask(DespeckleTask):
    learns_without_reference = False

    @property
    def selection(self) -> str:
        return "psnr"

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Conditioned networks (``condition_channels`` 1 or 3) read each patch's ``looks`` as
        their noise level and are debiased with it; correlation-conditioned ones (3) also read
        its ``correlation``."""
        net = getattr(model, "module", model)
        looks = batch.get("looks") if net.conditioned else None
        z = net.normalise(batch["noisy"], batch["reference"], looks)
        target = intensity_to_log(batch["clean"], batch["reference"], net.log_scale)
        if net.reads_correlation:
            output = model(z, looks, correlation=batch["correlation"])
        else:
            output = model(z, looks) if looks is not None else model(z)
        return F.mse_loss(output.float(), target)


class BlindSpotTask(DespeckleTask):
    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        net = getattr(model, "module", model)
        reference = batch["reference"].reshape(-1, 1, 1, 1)
        output = model(net.normalise(batch["noisy"], reference)).float()
        prior_mean = torch.exp(output[:, :1] * net.log_scale)  # relative to the reference
        alpha = alpha_from_output(output[:, 1:])
        return marginal_nll(batch["noisy"] / reference, prior_mean, alpha, net.looks).mean()

    def data_description(self) -> dict:
        """Also the speckle statistics of the real training images (measured or declared: looks,
        autocorrelation at lags 1-4), which the model card's speckle fields then state."""
        record = super().data_description()
        record["supervision"] = "none: the loss sees noisy intensities only (clean sources get synthetic speckle first)"
        real = [(s.description, speckle_statistics(s)) for s in self.train_sets if s.kind != "clean"]
        record["real_speckle"] = [{"source": description, **{key: statistics[key] for key in ("looks", "rows", "cols")}}
                                  for description, statistics in real if statistics]
        record["clean_sources"] = any(s.kind == "clean" for s in self.train_sets)
        if real and not record["clean_sources"]:
            record["speckle"] = "the real speckle of the training images (statistics in real_speckle)"
        return record

    def warnings(self) -> list[str]:
        lines = []
        radius = int(self.config.model.hyperparameters.get("blind_radius", 0))
        for image_set in self.train_sets:
            if image_set.kind != "clean":
                line = blind_spot_warning(image_set.description, speckle_statistics(image_set), radius)
                if line:
                    lines.append(line)
        model = speckle_model_of(self.config.data)
        if not model.white and any(s.kind == "clean" for s in self.train_sets):
            stats = true_statistics(model, lags=MEASURED_LAGS)
            line = blind_spot_warning(f"[data].speckle ({model.describe()}) on the clean sources",
                                      {"rows": stats["rows"], "cols": stats["cols"], "how": "the model's exact"}, radius)
            if line:
                lines.append(line)
        return lines


class ContrastiveTask(Task):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        #: the normalisation of the log-residual model being pre-trained
        self.normalise = build_model("log_residual", **config.model.hyperparameters).normalise
        batch = config.train.batch_size
        patches = TrainingPatches(
            "contrastive", self.validation_sets, config.data, config.train.seed + 1,
            config.contrastive.real_fraction, length=4 * batch, jitter=0.0,
        )
        items = [patches[i] for i in range(len(patches))]
        self.batches = [
            {key: torch.stack([item[key] for item in items[i: i + batch]]) for key in items[0]}
            for i in range(0, len(items), batch)
        ]

    def build_model(self) -> nn.Module:
        hyperparameters = build_model("log_residual", **self.config.model.hyperparameters).hyperparameters
        return ContrastiveNet(
            hyperparameters["widths"], hyperparameters["convs_per_level"], self.config.contrastive.projection_width
        )

    def despeckler(self, model: nn.Module) -> None:
        return None

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        z = torch.cat([
            self.normalise(batch["view_a"], batch["reference_a"]),
            self.normalise(batch["view_b"], batch["reference_b"]),
        ])
        embeddings = model(z).float()
        a, b = embeddings.split(len(batch["view_a"]))
        return info_nce(a, b, self.config.contrastive.temperature)

    def validate(self, model: nn.Module, device: torch.device) -> dict:
        model.eval()
        with torch.no_grad():
            losses = [
                float(self.loss(model, {k: v.to(device) for k, v in batch.items()}))
                for batch in self.batches
            ]
        model.train()
        return {"loss": sum(losses) / len(losses), "chance_loss": math.log(self.config.train.batch_size)}


def soft_dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of sigmoid(logits) against a 0/1 label, over the whole batch."""
    probability = torch.sigmoid(logits)
    overlap = (probability * label).sum()
    return 1 - (2 * overlap + 1) / (probability.sum() + label.sum() + 1)


class ChangeTask(Task):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        #: intensity channels per date the network reads: 2 dual-pol (VV, VH), 1 single-pol
        self.channels = int(config.model.hyperparameters.get("channels", 2))
        self.examples = validation_pairs(self.validation_sets, config.change, config.train.seed, self.channels)

    def train_dataset(self) -> ChangePatches:
        return ChangePatches(self.train_sets, self.config.data, self.config.change, self.config.train.seed,
                             channels=self.channels)

    @property
    def selection(self) -> str:
        return "kappa"

    def logits(self, model: nn.Module, batch: dict) -> torch.Tensor:
        net = getattr(model, "module", model)
        return model(net.normalise(batch["first"], batch["reference_first"]),
                     net.normalise(batch["second"], batch["reference_second"])).float()

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return change_loss(self.logits(model, batch), batch["label"], self.config.change.dice_weight)

    def validate(self, model: nn.Module, device: torch.device) -> dict:
        model.eval()
        losses, predicted, truth = [], [], []
        with torch.no_grad():
            for pair in self.examples:
                batch = {key: value.to(device) for key, value in pair.example.items()}
                losses.append(float(self.loss(model, batch)))
                predicted.append((self.logits(model, batch) > 0).cpu().numpy().ravel())
                truth.append(batch["label"].cpu().numpy().ravel() > 0.5)
        model.train()
        scores = change_scores(np.concatenate(predicted), np.concatenate(truth))
        return {"loss": sum(losses) / len(losses), **scores}

    def data_description(self) -> dict:
        change = self.config.change
        return {
            "mode": "change",
            "train": [s.description for s in self.train_sets],
            "validation": [s.description for s in self.validation_sets],
            "synthetic_changes": (
                f"on clean sources: blobs changed by {change.contrast_db[0]:g}-{change.contrast_db[1]:g} dB, "
                f"{change.looks[0]:g}-{change.looks[1]:g} looks per date, +/-{change.gain_db:g} dB calibration "
                f"offsets; labelled pairs make {100 * change.real_fraction:g} % of patches when both are given"
            ),
            "input": ("single-pol: one intensity per date (dual-pol labelled pairs as their VV or VH)"
                      if self.channels == 1 else "dual-pol: VV and VH intensity per date"),
        }


class MultitemporalTask(Task):
    """Noise2Noise across dates after MTPI-Net (:mod:`training.stack_data`): the network reads a
    target date and the auxiliary image of the other dates, and learns another date's debiased
    log intensity where that date agrees with the target (change masking)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        low, high = speckle_model_of(config.data).looks_range
        self.examples = validation_stacks(self.validation_sets, math.sqrt(low * high), config.train.seed)

    def train_dataset(self) -> StackPatches:
        return StackPatches(self.train_sets, self.config.data, self.config.train.seed)

    @property
    def selection(self) -> str:
        return "psnr" if self.examples else "loss"

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """Masked mean squared error, in the normalised log domain, between the estimate of the
        target and the other date's debiased log intensity."""
        net = getattr(model, "module", model)
        reference, looks = batch["reference"], batch["looks"]
        auxiliary = normalise_log(batch["auxiliary"], reference, batch["auxiliary_looks"], net.log_scale)
        output = model(net.normalise(batch["target"], reference, looks), looks, auxiliary, batch["auxiliary_looks"])
        error = (output.float() - normalise_log(batch["other"], reference, looks, net.log_scale)) ** 2
        return (error * batch["mask"]).sum() / batch["mask"].sum().clamp_min(1)

    def validate(self, model: nn.Module, device: torch.device) -> dict:
        scores = {"psnr": [], "psnr_input": []}
        model.eval()
        with torch.no_grad():
            for example in self.examples:
                target, clean = example["target"].to(device), example["clean"].to(device)
                estimate = model.despeckle(target, example["reference"], example["looks"],
                                           example["auxiliary"].to(device), example["auxiliary_looks"])
                scores["psnr"].append(psnr_amplitude(estimate, clean))
                scores["psnr_input"].append(psnr_amplitude(target, clean))
        model.train()
        return {key: sum(values) / len(values) for key, values in scores.items() if values}

    def data_description(self) -> dict:
        return {**super().data_description(), "stacks": (
            f"{DATES[0]}-{DATES[1]} dates per stack, independent speckle per date, a change (x 1/{CONTRAST:g} to "
            f"x {CONTRAST:g}) in each date with probability {CHANGE_PROBABILITY:g}; Noise2Noise target: another date, "
            "masked where it differs from the target")}


def change_loss(logits: torch.Tensor, label: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """Binary cross-entropy + ``dice_weight`` x soft Dice of change logits against a 0/1 label."""
    return F.binary_cross_entropy_with_logits(logits, label) + dice_weight * soft_dice_loss(logits, label)


def masked_noise2noise(estimates: torch.Tensor, z: torch.Tensor, unchanged: torch.Tensor) -> torch.Tensor:
    """Mean squared error, in the normalised log domain, between each date's estimate
    (B, 2, C, H, W) and the OTHER date's debiased log intensity ``z`` (B, 2, C, H, W), weighted
    per pixel by ``unchanged`` (B, 1, H, W) in [0, 1]: a change is not learned as noise."""
    weight = unchanged[:, None].expand_as(estimates)
    return ((estimates - z.flip(1)) ** 2 * weight).sum() / weight.sum().clamp_min(1)


class MultitaskTask(Task):
    """Despeckling + change detection of two dates after MTDN (see the module doc). The weight
    of the despeckling loss, ``(1 - label) * (1 - p)`` with p the change branch's probability
    (and 0 on the pairs whose ``noise2noise`` is 0: :mod:`training.multitask_data`),
    is detached from the change branch: otherwise that branch would learn to fire everywhere to
    silence the despeckling loss. Validated on the loss, Cohen's kappa of the change branch at
    probability 0.5, and on the clean sources the PSNR of both dates fused (``psnr``) and of
    the despeckling branch alone (``psnr_single``), one-look pairs with a known change."""

    #: Looks of the synthetic validation pairs (the benchmarks' one-look case).
    validation_looks = 1.0
    #: Learning-rate scale of the despeckling branch when it starts from a card (``init_from``;
    #: from scratch it learns at the full rate): a supervised card is fine-tuned gently by
    #: Noise2Noise's noisy one-look targets while the new change branch learns at the full rate.
    despeckler_lr_scale = 0.1

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.channels = int(config.model.hyperparameters.get("channels", 1))
        self.looks_range = speckle_model_of(config.data).looks_range
        self.examples = validation_examples(self.validation_sets, config.change, config.train.seed,
                                            self.validation_looks, self.looks_range, self.channels)

    def train_dataset(self) -> MultitaskPatches:
        return MultitaskPatches(self.train_sets, self.config.data, self.config.change, self.config.train.seed,
                                self.looks_range, channels=self.channels)

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        scale = self.despeckler_lr_scale if self.config.train.init_from else 1.0
        return [{"params": list(model.despeckler.parameters()), "lr_scale": scale},
                {"params": list(model.change.parameters())}]

    def outputs(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The despeckler's inputs ``z`` and estimates (B, 2, C, H, W) and the change logits (B, 1, H, W)."""
        net: MultiTaskNet = getattr(model, "module", model)
        first, second, references, looks = batch["first"], batch["second"], batch["references"], batch["looks"]
        z = net.normalise_logs(first, second, references, looks)
        estimates, logits = model(z, *net.change_inputs(first, second, references), looks)
        return z, estimates.float(), logits.float()

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        z, estimates, logits = self.outputs(model, batch)
        unchanged = (1 - batch["label"]) * (1 - torch.sigmoid(logits).detach()) * batch["noise2noise"].reshape(-1, 1, 1, 1)
        return (change_loss(logits, batch["label"], self.config.change.dice_weight)
                + masked_noise2noise(estimates, z, unchanged))

    def validate(self, model: nn.Module, device: torch.device) -> dict:
        net: MultiTaskNet = getattr(model, "module", model)
        scores = {"loss": [], "psnr": [], "psnr_single": [], "psnr_input": []}
        predicted, truth = [], []
        model.eval()
        with torch.no_grad():
            for example in self.examples:
                batch = {key: value.to(device) for key, value in example.items() if torch.is_tensor(value)}
                scores["loss"].append(float(self.loss(model, batch)))
                z, estimates, logits = self.outputs(model, batch)
                predicted.append((logits > 0).cpu().numpy().ravel())
                truth.append(batch["label"].cpu().numpy().ravel() > 0.5)
                if "clean" in batch:
                    fused = net.despeckle_pair(batch["first"], batch["second"], batch["references"], batch["looks"])[0]
                    noisy = torch.stack([batch["first"], batch["second"]], 1)
                    for key, images in (("psnr", fused), ("psnr_input", noisy),
                                        ("psnr_single", net.to_intensity(estimates, batch["references"]))):
                        scores[key] += [psnr_amplitude(images[0, d, c], batch["clean"][0, d, c])
                                        for d in range(2) for c in range(images.shape[2])]
        model.train()
        averages = {key: sum(values) / len(values) for key, values in scores.items() if values}
        return {**averages, **change_scores(np.concatenate(predicted), np.concatenate(truth))}

    def data_description(self) -> dict:
        change = self.config.change
        low, high = self.looks_range
        return {
            "mode": "multitask",
            "train": [s.description for s in self.train_sets],
            "validation": [s.description for s in self.validation_sets],
            "pairs": (
                f"two dates; on clean sources independent white speckle of one L per pair (log-uniform in "
                f"{low:g}-{high:g}) and changes of {change.contrast_db[0]:g}-{change.contrast_db[1]:g} dB, "
                f"+/-{change.gain_db:g} dB calibration offsets; labelled pairs make {100 * change.real_fraction:g} % "
                "of patches when both are given (looks estimated per crop)"
            ),
            "supervision": ("change branch: the labels; despeckling branch: Noise2Noise across the two dates, "
                            "where the label says unchanged, weighted by 1 - the change branch's probability"),
        }


TASKS = {"supervised": SupervisedTask, "blind_spot": BlindSpotTask, "contrastive": ContrastiveTask,
         "change": ChangeTask, "multitemporal": MultitemporalTask, "multitask": MultitaskTask}


def make_task(config: Config) -> Task:
    return TASKS[config.train.mode](config)
