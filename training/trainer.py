"""The training loop shared by every mode: optimisation, validation, checkpoints, resume.

Run folder (``--output``): ``last.pt`` (end of every epoch), ``best.pt`` (best validation so
far: highest PSNR, or lowest loss where no clean reference exists), ``metrics.csv`` /
``metrics.json`` (training loss every ``log_every`` steps, validation every
``validate_every`` epochs), ``config.json`` (the configuration as parsed).

Reproducible: the model is initialised from ``seed`` and every patch is a function of (seed,
epoch, index), so a resumed run continues exactly where the checkpoint left it. Distributed
runs split each epoch's indices between processes (DistributedSampler) and average gradients
(DistributedDataParallel); only the main process validates, logs and writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from sar_despeckle_plugin.core.errors import SarDespeckleError

from .checkpoints import git_commit, load_checkpoint, save_checkpoint
from .config import Config, ConfigError
from .distributed import Processes
from .progress import MetricsLog, ProgressBar
from .tasks import Task, make_task

#: [train] keys that may change when a run is resumed (they do not change what is learnt).
RESUMABLE_CHANGES = {"epochs", "time_budget_minutes", "log_every", "validate_every", "workers", "threads", "device"}


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    step: int = 0
    seconds: float = 0.0
    best: dict = field(default_factory=dict)


def choose_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("[train].device is cuda but torch sees no GPU; use auto or cpu.")
    if name != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def mixed_precision(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: full precision). ``auto`` is bf16 (fp16 where unsupported) on CUDA."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("[train].amp = fp16 needs CUDA; use bf16 or off on the CPU.")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def learning_rate(config: Config, step: int, total_steps: int, seconds: float) -> float:
    """Learning rate of optimiser step ``step``: linear warm-up, then constant or cosine decay.

    The decay's progress is the larger of the share of planned steps done and, when a time
    budget is set, the share of the budget spent: on a busy machine the schedule still ends at
    the budget (and the run is then the same as a planned one only if the steps end first).
    """
    train = config.train
    if step < train.warmup_steps:
        return train.learning_rate * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return train.learning_rate
    progress = (step - train.warmup_steps) / max(total_steps - train.warmup_steps, 1)
    if train.time_budget_minutes:
        progress = max(progress, seconds / (60 * train.time_budget_minutes))
    return train.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def initialise_from(model: nn.Module, path: str) -> str:
    """Load the tensors of checkpoint ``path`` whose names and shapes fit ``model``."""
    state = load_checkpoint(path)["model"]
    target = model.state_dict()
    matching = {key: value for key, value in state.items() if key in target}
    wrong = [key for key, value in matching.items() if value.shape != target[key].shape]
    if wrong or not matching:
        raise ConfigError(
            f"[train].init_from: '{path}' does not fit this model ("
            + (f"shapes differ for {', '.join(wrong[:3])}" if wrong else "no parameter names in common")
            + "); use the same widths and convs_per_level."
        )
    model.load_state_dict(matching, strict=False)
    return f"initialised {len(matching)} of {len(target)} tensors from {path}"


def check_resumable(saved: dict, current: dict) -> None:
    """Refuse to resume with a configuration that changes what is learnt."""
    differences = []
    for section in sorted(set(saved) | set(current)):
        before, after = saved.get(section), current.get(section)
        if section == "train" and isinstance(before, dict) and isinstance(after, dict):
            keys = (set(before) | set(after)) - RESUMABLE_CHANGES
            differences += [f"train.{k}" for k in sorted(keys) if before.get(k) != after.get(k)]
        elif before != after:
            differences.append(section)
    if differences:
        raise ConfigError(
            f"Cannot resume: the config differs from the checkpoint's in {', '.join(differences)}. "
            f"Only [train] {', '.join(sorted(RESUMABLE_CHANGES))} may change; start a new run "
            "in another --output otherwise."
        )


def _checkpoint_record(task: Task, model: nn.Module, optimizer, scaler, state: RunState,
                       metrics: dict, device: torch.device, commit: str) -> dict:
    config = task.config
    return {
        "mode": config.train.mode,
        "architecture": config.model.architecture,
        "hyperparameters": dict(getattr(task.despeckler(model), "hyperparameters", config.model.hyperparameters)),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "seconds": state.seconds,
        "metrics": metrics,
        "best": state.best,
        "selection": task.selection,
        "config": config.raw,
        "config_folder": config.folder,
        "config_name": config.name,
        "data": task.data_description(),
        "commit": commit,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
    }


def _to_device(value: torch.Tensor, device: torch.device) -> torch.Tensor:
    value = value.to(device, non_blocking=True)
    return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value


#: Validation metrics that pick ``best.pt`` by their highest value (others: lowest).
HIGHER_IS_BETTER = ("psnr", "kappa")


def _is_better(metrics: dict, best: dict, selection: str) -> bool:
    if not best:
        return True
    if selection in HIGHER_IS_BETTER:
        return metrics[selection] > best[selection]
    return metrics[selection] < best[selection]


def train(config: Config, output: str, resume: bool = False, log=print) -> nn.Module:
    """Train as ``config`` says into the run folder ``output``; returns the trained model
    (unwrapped, on its device). ``resume`` continues from ``output``/last.pt."""
    processes = Processes.from_environment()
    device = choose_device(config.train.device, processes.local_rank)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if config.train.batch_size % processes.world:
        raise ConfigError(
            f"[train].batch_size ({config.train.batch_size}) must be a multiple of the number of "
            f"processes ({processes.world})."
        )
    last_path, best_path = os.path.join(output, "last.pt"), os.path.join(output, "best.pt")
    if resume and not os.path.isfile(last_path):
        raise SarDespeckleError(f"Nothing to resume: '{last_path}' does not exist.")
    if not resume and os.path.exists(last_path):
        raise SarDespeckleError(
            f"'{output}' already holds a run: pass --resume to continue it, or choose another --output."
        )
    processes.start(device)
    finished = False
    try:
        network = _train(config, output, resume, log, processes, device, last_path, best_path)
        finished = True
        return network
    finally:
        processes.stop(finished)


def _train(config, output, resume, log, processes, device, last_path, best_path) -> nn.Module:
    main = processes.is_main
    say = log if main else (lambda message: None)
    commit = git_commit()  # the code this invocation runs
    task = make_task(config)
    torch.manual_seed(config.train.seed)
    # channels-last runs the convolutions 1.5-2x faster on CPUs (oneDNN) and on recent GPUs
    model = task.build_model().to(device=device, memory_format=torch.channels_last)
    state = RunState()
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(last_path, device)
        check_resumable(checkpoint["config"], config.raw)
        model.load_state_dict(checkpoint["model"])
        state = RunState(checkpoint["epoch"], checkpoint["step"], checkpoint["seconds"], checkpoint["best"])
        say(f"Resuming {output} after epoch {state.epoch} (step {state.step}).")
    elif config.train.init_from:
        say(initialise_from(model, config.train.init_from))

    steps_per_epoch = config.data.samples_per_epoch // config.train.batch_size
    total_steps = steps_per_epoch * config.train.epochs
    optimizer = torch.optim.AdamW(model.parameters(), config.train.learning_rate, weight_decay=config.train.weight_decay)
    amp_dtype = mixed_precision(config.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])

    network = model
    if processes.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    dataset = task.train_dataset()
    sampler = (
        DistributedSampler(dataset, processes.world, processes.rank, shuffle=False, drop_last=True)
        if processes.world > 1 else None
    )
    loader = DataLoader(
        dataset, batch_size=config.train.batch_size // processes.world, sampler=sampler, drop_last=True,
        num_workers=config.train.workers, pin_memory=device.type == "cuda",
    )
    metrics_log = None
    if main:
        os.makedirs(output, exist_ok=True)
        metrics_log = MetricsLog(output, state.step if resume else None)
        with open(os.path.join(output, "config.json"), "w", encoding="utf-8") as handle:
            json.dump({"name": config.name, "folder": config.folder, "config": config.raw}, handle, indent=1)
        say(
            f"{config.name}: {config.train.mode} training of {config.model.architecture} on {device.type}"
            f"{f' x {processes.world} processes' if processes.world > 1 else ''}, "
            f"{config.train.epochs} epochs x {steps_per_epoch} steps of {config.train.batch_size} patches "
            f"{config.data.patch}x{config.data.patch}; run folder {output}"
        )
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    )
    budget = config.train.time_budget_minutes * 60
    if budget and state.seconds >= budget:
        raise SarDespeckleError(
            f"The run in '{output}' has used its {config.train.time_budget_minutes:g}-minute budget: raise "
            "[train].time_budget_minutes to continue it."
        )
    start, seconds_before = time.perf_counter(), state.seconds

    def seconds() -> float:
        return seconds_before + time.perf_counter() - start

    stopped = False
    rate = config.train.learning_rate
    for epoch in range(state.epoch, config.train.epochs):
        dataset.set_epoch(epoch)
        bar = ProgressBar(steps_per_epoch, f"epoch {epoch + 1}/{config.train.epochs}", config.train.log_every) if main else None
        running = []
        model.train()
        for index, batch in enumerate(loader):
            batch = {key: _to_device(value, device) for key, value in batch.items()}
            with autocast():
                loss = task.loss(model, batch)
            if not torch.isfinite(loss):
                raise SarDespeckleError(
                    f"The training loss became {float(loss)} at step {state.step}: lower "
                    "[train].learning_rate or check the data for extreme values."
                )
            optimizer.zero_grad(set_to_none=True)
            # the main process's clock, so that every process takes the same decisions
            elapsed = processes.from_main(seconds(), device) if budget else 0.0
            rate = learning_rate(config, state.step, total_steps, elapsed)
            for group in optimizer.param_groups:
                group["lr"] = rate
            scaler.scale(loss).backward()
            if config.train.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            state.step += 1
            running.append(loss.item())
            if state.step % config.train.log_every == 0:
                mean = processes.mean(sum(running) / len(running), device)
                running = []
                if main:
                    metrics_log.append({
                        "epoch": epoch + 1, "step": state.step, "split": "train", "loss": mean,
                        "learning_rate": rate, "seconds": seconds(),
                    })
            if bar:
                bar.update(index + 1, loss=running[-1] if running else loss.item())
            if budget and elapsed > budget:
                stopped = True
                say(f"Time budget of {config.train.time_budget_minutes:g} min reached: stopping after step {state.step}.")
                break
        state.epoch = epoch + 1
        state.seconds = seconds()
        last_epoch = stopped or state.epoch == config.train.epochs
        if main and (last_epoch or state.epoch % config.train.validate_every == 0):
            metrics = task.validate(network, device)
            metrics_log.append({"epoch": state.epoch, "step": state.step, "split": "validation", **metrics,
                                "learning_rate": rate, "seconds": state.seconds})
            say("  validation: " + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))
            if _is_better(metrics, state.best, task.selection):
                state.best = {**metrics, "epoch": state.epoch, "step": state.step}
                save_checkpoint(_checkpoint_record(task, network, optimizer, scaler, state, metrics, device, commit), best_path)
            save_checkpoint(_checkpoint_record(task, network, optimizer, scaler, state, metrics, device, commit), last_path)
        elif main:
            save_checkpoint(_checkpoint_record(task, network, optimizer, scaler, state, {}, device, commit), last_path)
        processes.barrier()
        if stopped:
            break
    if main:
        metrics_log.set_summary(best=state.best, selection=task.selection, steps=state.step, epochs=state.epoch,
                                seconds=state.seconds, stopped_by_time_budget=stopped)
        say(f"Done in {state.seconds / 60:.1f} min; best {task.selection}: {state.best.get(task.selection, float('nan')):.4f} "
            f"(epoch {state.best.get('epoch')}); checkpoints in {output}")
    return network
