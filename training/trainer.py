"""The training loop shared by every mode: optimisation, validation, checkpoints, resume.

Run folder (``--output``): ``last.pt`` (end of every epoch), ``best.pt`` (best validation so
far: highest PSNR, or lowest loss where no clean reference exists), ``metrics.csv`` /
``metrics.json`` (training loss every ``log_every`` steps, validation every
``validate_every`` epochs), ``config.json`` (the configuration as parsed).

Reproducible: the model is initialised from ``seed`` and every patch is a function of (seed,
epoch, index), so a resumed run continues exactly where the checkpoint left it, even in the
middle of an epoch (after Ctrl-C / SIGTERM, see interrupts.py). Distributed runs split each
epoch's indices between processes (DistributedSampler) and average gradients
(DistributedDataParallel); only the main process validates, logs and writes.

Time budgets (``[train].time_budget_minutes``) become a number of epochs once: at the end of
the first epoch (its validation included) the run measures how long an epoch takes and plans
``min(epochs, max(1, floor(budget / epoch time)))`` epochs (:func:`plan_epochs`). The plan
(``budget_plan`` in the checkpoints, ``planned_epochs`` in metrics.json, and a log line) fixes
the cosine schedule's end and the last epoch: from then on nothing depends on the clock, so the
run and every resume are deterministic given that measured epoch time. What varies from
machine to machine (or with the load) is the planned number of epochs, nothing else -- unless
the machine slows down after planning so much that the budget runs out first: the run then
stops at the budget all the same (validated, checkpointed, ``stopped_by_time_budget`` in
metrics.json), and that stop depends on the clock.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
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
from .interrupts import StopRequests, TrainingInterrupted, ignore_stop_signals, signal_name
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
    epoch_step: int = 0  # optimiser steps done in the epoch under way (stopped mid-epoch)
    running: list = field(default_factory=list)  # training losses since the last logged one
    plan: dict | None = None  # the time budget's plan (see plan_epochs)


def plan_epochs(config: Config, epoch_seconds: float) -> int:
    """The epochs a time budget allows when an epoch takes ``epoch_seconds`` (at least 1, at
    most ``[train].epochs``)."""
    budget = 60 * config.train.time_budget_minutes
    return max(1, min(config.train.epochs, int(budget // max(epoch_seconds, 1e-9))))


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


def learning_rate(config: Config, step: int, total_steps: int, plan_step: int = 0, planned_steps: int = 0) -> float:
    """Learning rate of optimiser step ``step``: linear warm-up, then constant or cosine decay
    over ``total_steps`` (all the configured epochs) -- a function of the step only.

    A time budget's plan (made at step ``plan_step``, ending at ``planned_steps``) bends the
    decay from there on: its progress goes on linearly from where it was at ``plan_step`` to 1
    at ``planned_steps`` (where the plan starts within the warm-up, that is the plain cosine
    decay over ``planned_steps``).
    """
    train = config.train
    warmup = train.warmup_steps
    if step < warmup:
        return train.learning_rate * (step + 1) / warmup
    if train.schedule == "constant":
        return train.learning_rate
    progress = (step - warmup) / max(total_steps - warmup, 1)
    if planned_steps and step >= plan_step:
        start = max(plan_step, warmup)
        at_start = (start - warmup) / max(total_steps - warmup, 1)
        progress = at_start + (1.0 - at_start) * (step - start) / max(planned_steps - start, 1)
    return train.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def initialise_from(model: nn.Module, path: str) -> str:
    """Load the tensors of checkpoint or model card ``path`` whose names and shapes fit ``model``
    (or, when no name fits, one part of a composed network: :func:`_into_part`);
    a convolution with fewer input channels (an unconditioned U-Net's stem, for a network
    conditioned on the looks) fills the first ones, the others start at zero."""
    if path.endswith(".json"):  # a model card, shipped or exported: checked and loaded as the plugin does
        from sar_despeckle_plugin.core.models.weights import load_model

        state = load_model(path).module.state_dict()
    else:
        state = load_checkpoint(path)["model"]
    target = model.state_dict()
    matching = {key: value for key, value in state.items() if key in target} or _into_part(state, target)
    for key, value in list(matching.items()):  # an unconditioned stem into a conditioned one
        want = target[key]
        if (value.dim() == 4 and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]
                and value.shape[1] < want.shape[1]):
            grown = torch.zeros_like(want)  # the extra (noise-level) input channels start at zero
            grown[:, :value.shape[1]] = value
            matching[key] = grown
    wrong = [key for key, value in matching.items() if value.shape != target[key].shape]
    if wrong or not matching:
        raise ConfigError(
            f"[train].init_from: '{path}' does not fit this model ("
            + (f"shapes differ for {', '.join(wrong[:3])}" if wrong else "no parameter names in common")
            + "); use the same widths and convs_per_level."
        )
    model.load_state_dict(matching, strict=False)
    return f"initialised {len(matching)} of {len(target)} tensors from {path}"


def _into_part(state: dict, target: dict) -> dict:
    """``state`` renamed into the one part of a composed network (``MultiTaskNet.despeckler``)
    that holds every one of its tensor names; empty when no part does."""
    for part in sorted({key.split(".", 1)[0] for key in target}):
        renamed = {f"{part}.{key}": value for key, value in state.items()}
        if all(key in target for key in renamed):
            return renamed
    return {}


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
        "epoch_step": state.epoch_step,
        "running_losses": list(state.running),
        "budget_plan": state.plan,
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
    except TrainingInterrupted as stop:
        finished = stop.orderly  # every process stopped at the same step
        raise
    finally:
        processes.stop(finished)


def _train(config, output, resume, log, processes, device, last_path, best_path) -> nn.Module:
    main = processes.is_main
    say = log if main else (lambda message: None)
    commit = git_commit()  # the code this invocation runs
    task = make_task(config)
    for warning in task.warnings():
        say(f"warning: {warning}")
    torch.manual_seed(config.train.seed)
    # channels-last runs the convolutions 1.5-2x faster on CPUs (oneDNN) and on recent GPUs
    model = task.build_model().to(device=device, memory_format=torch.channels_last)
    state = RunState()
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(last_path, device)
        check_resumable(checkpoint["config"], config.raw)
        model.load_state_dict(checkpoint["model"])
        state = RunState(checkpoint["epoch"], checkpoint["step"], checkpoint["seconds"], checkpoint["best"],
                         checkpoint.get("epoch_step", 0), list(checkpoint.get("running_losses", [])),
                         checkpoint.get("budget_plan"))
        within = f", {state.epoch_step} steps into epoch {state.epoch + 1}" if state.epoch_step else ""
        say(f"Resuming {output} after epoch {state.epoch}{within} (step {state.step}).")
    elif config.train.init_from:
        say(initialise_from(model, config.train.init_from))

    steps_per_epoch = config.data.samples_per_epoch // config.train.batch_size
    total_steps = steps_per_epoch * config.train.epochs
    optimizer = torch.optim.AdamW(task.parameter_groups(model), config.train.learning_rate,
                                  weight_decay=config.train.weight_decay)
    amp_dtype = mixed_precision(config.train.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])

    network = model
    if processes.world > 1:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    dataset = task.train_dataset()
    local_batch = config.train.batch_size // processes.world
    sampler = (
        DistributedSampler(dataset, processes.world, processes.rank, shuffle=False, drop_last=True)
        if processes.world > 1 else None
    )

    def epoch_loader(skip_steps: int) -> DataLoader:
        """This process's batches of an epoch, after the first ``skip_steps`` (a resume in the
        middle of an epoch): patches depend on their index only, so skipping costs nothing."""
        indices = list(sampler) if sampler is not None else list(range(len(dataset)))
        return DataLoader(
            dataset, batch_size=local_batch, sampler=indices[skip_steps * local_batch:], drop_last=True,
            num_workers=config.train.workers, pin_memory=device.type == "cuda",
            worker_init_fn=ignore_stop_signals if config.train.workers else None,
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

    def planned_epochs() -> int:
        """The epochs this run trains: all the configured ones, or as many as the budget's plan allows."""
        if budget and state.plan:
            return plan_epochs(config, state.plan["epoch_seconds"])
        return config.train.epochs

    if budget and state.seconds >= budget:
        raise SarDespeckleError(
            f"The run in '{output}' has used its {config.train.time_budget_minutes:g}-minute budget: raise "
            "[train].time_budget_minutes to continue it."
        )
    if budget and state.plan and state.epoch >= planned_epochs() and state.epoch < config.train.epochs:
        raise SarDespeckleError(
            f"The run in '{output}' has trained the {state.epoch} epochs its {config.train.time_budget_minutes:g}-minute "
            f"budget allows (an epoch took {state.plan['epoch_seconds']:.0f} s): raise [train].time_budget_minutes "
            "to continue it."
        )
    start, seconds_before = time.perf_counter(), state.seconds

    def seconds() -> float:
        return seconds_before + time.perf_counter() - start

    def schedule_rate() -> float:
        if budget and state.plan:
            plan_step = state.plan["from_step"]
            return learning_rate(config, state.step, total_steps, plan_step, planned_epochs() * steps_per_epoch)
        return learning_rate(config, state.step, total_steps)

    def save(metrics: dict, validated: bool) -> None:
        if not main:
            return
        if validated and _is_better(metrics, state.best, task.selection):
            state.best = {**metrics, "epoch": state.epoch, "step": state.step}
            save_checkpoint(_checkpoint_record(task, network, optimizer, scaler, state, metrics, device, commit), best_path)
        save_checkpoint(_checkpoint_record(task, network, optimizer, scaler, state, metrics, device, commit), last_path)

    def validate(rate: float) -> dict:
        metrics = task.validate(network, device)
        metrics_log.append({"epoch": state.epoch + (1 if state.epoch_step else 0), "step": state.step,
                            "split": "validation", **metrics, "learning_rate": rate, "seconds": seconds()})
        say("  validation: " + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))
        task.after_validation(os.path.join(output, "watch"), metrics_log.rows[-1]["epoch"], metrics_log.rows)
        return metrics

    stopped = False  # by the time budget
    rate = config.train.learning_rate
    with StopRequests() as stops:
        while state.epoch < planned_epochs():
            epoch = state.epoch
            dataset.set_epoch(epoch)
            skip = state.epoch_step
            bar = ProgressBar(steps_per_epoch, f"epoch {epoch + 1}/{planned_epochs()}", config.train.log_every) if main else None
            model.train()
            interrupted = False
            for index, batch in enumerate(epoch_loader(skip), start=skip):
                batch = {key: _to_device(value, device) for key, value in batch.items()}
                with autocast():
                    loss = task.loss(model, batch)
                if not torch.isfinite(loss):
                    raise SarDespeckleError(
                        f"The training loss became {float(loss)} at step {state.step}: lower "
                        "[train].learning_rate or check the data for extreme values."
                    )
                optimizer.zero_grad(set_to_none=True)
                rate = schedule_rate()
                for group in optimizer.param_groups:
                    group["lr"] = rate * group.get("lr_scale", 1.0)
                scaler.scale(loss).backward()
                if config.train.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                state.step += 1
                state.epoch_step = index + 1
                state.running.append(loss.item())
                if state.step % config.train.log_every == 0:
                    mean = processes.mean(sum(state.running) / len(state.running), device)
                    state.running = []
                    if main:
                        metrics_log.append({
                            "epoch": epoch + 1, "step": state.step, "split": "train", "loss": mean,
                            "learning_rate": rate, "seconds": seconds(),
                        })
                if bar:
                    bar.update(index + 1, loss=state.running[-1] if state.running else loss.item())
                # decisions every process must share: the main process's clock, anyone's signal
                if budget and processes.from_main(seconds(), device) > budget and index + 1 < steps_per_epoch:
                    stopped = True
                    say(f"Time budget of {config.train.time_budget_minutes:g} min reached: stopping after step "
                        f"{state.step}, {index + 1} steps into epoch {epoch + 1}.")
                    break
                if processes.any(stops.requested, device) and index + 1 < steps_per_epoch:
                    interrupted = True
                    break
            if stopped or interrupted:  # in the middle of an epoch: --resume continues from this step
                state.seconds = seconds()
                metrics = validate(rate) if stopped and main else {}
                save(metrics, validated=stopped)
                processes.barrier()
                if stopped:
                    break
                raise _interrupted(stops, state, steps_per_epoch, last_path, main)
            state.epoch, state.epoch_step = epoch + 1, 0
            validated = main and state.epoch % config.train.validate_every == 0
            metrics = validate(rate) if validated else {}
            if budget and not state.plan:
                # the plan: how many epochs fit the budget, from the time this epoch took
                epoch_seconds = processes.from_main(seconds(), device) / state.epoch
                state.plan = {"epoch_seconds": epoch_seconds, "from_step": state.step, "epochs": 0}
                state.plan["epochs"] = planned_epochs()
                say(f"Time budget of {config.train.time_budget_minutes:g} min: an epoch takes {epoch_seconds:.1f} s, "
                    f"so the run trains {state.plan['epochs']} epochs (of {config.train.epochs} configured); "
                    "the learning-rate schedule ends there.")
            if budget and state.epoch < planned_epochs() and processes.from_main(seconds(), device) > budget:
                stopped = True
                say(f"Time budget of {config.train.time_budget_minutes:g} min reached: stopping after epoch {state.epoch}.")
            if main and not validated and (stopped or state.epoch >= planned_epochs()):
                metrics, validated = validate(rate), True  # the last epoch always validates
            state.seconds = seconds()
            save(metrics, validated)
            processes.barrier()
            if stopped:
                break
            if processes.any(stops.requested, device) and state.epoch < planned_epochs():
                raise _interrupted(stops, state, steps_per_epoch, last_path, main)
    if main:
        metrics_log.set_summary(best=state.best, selection=task.selection, steps=state.step, epochs=state.epoch,
                                seconds=state.seconds, stopped_by_time_budget=stopped,
                                planned_epochs=planned_epochs(), budget_plan=state.plan)
        say(f"Done in {state.seconds / 60:.1f} min; best {task.selection}: {state.best.get(task.selection, float('nan')):.4f} "
            f"(epoch {state.best.get('epoch')}); checkpoints in {output}")
    return network


def _interrupted(stops: StopRequests, state: RunState, steps_per_epoch: int, last_path: str,
                 main: bool) -> TrainingInterrupted:
    """The exception that ends a run stopped by a signal, with its one-line message."""
    number = stops.signal_number or signal.SIGINT  # another process got the signal
    if state.epoch_step:
        where = f"after step {state.epoch_step} of {steps_per_epoch} of epoch {state.epoch + 1}"
    else:
        where = f"after epoch {state.epoch}"
    message = (f"interrupted by {signal_name(number)} {where} (step {state.step}): saved {last_path}; "
               "run the same command with --resume to continue.")
    return TrainingInterrupted(message if main else "", 128 + int(number))
