"""Training checkpoints (``last.pt``, ``best.pt``): writing atomically, reading safely.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, read back with
``torch.load(..., weights_only=True)``:

``format``, ``version``, ``mode``, ``architecture``, ``hyperparameters``, ``model`` (state
dict), ``optimizer``, ``scaler`` (state dicts), ``epoch`` (epochs completed),
``step``, ``seconds`` (training wall time so far), ``metrics`` (this epoch's validation),
``best`` (validation metrics of best.pt), ``config`` (the TOML content), ``config_folder``,
``data`` (description of the training data), ``commit``, ``device``; since version 2
``epoch_step`` (optimiser steps done in the epoch after ``epoch``: non-zero when the run
stopped in the middle of an epoch, on a signal or its time budget), ``running_losses`` (the
training losses since the last logged one) and ``budget_plan`` (None, or ``epoch_seconds``,
``from_step``, ``epochs``: how a time budget became a number of epochs, see trainer.py).
"""

from __future__ import annotations

import os
import subprocess

import torch

from sar_despeckle_plugin.core.errors import SarDespeckleError

CHECKPOINT_FORMAT = "sar_despeckle_training_checkpoint"
CHECKPOINT_VERSION = 2


def save_checkpoint(record: dict, path: str) -> None:
    """Write ``record`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    temporary = path + ".partial"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **record}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint of ours with ``weights_only=True``; anything else is refused."""
    if not os.path.isfile(path):
        raise SarDespeckleError(f"Checkpoint '{path}' does not exist.")
    try:
        record = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise SarDespeckleError(
            f"'{path}' is not a readable training checkpoint ({type(error).__name__}); only "
            "files written by `python -m training train` are accepted."
        ) from None
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise SarDespeckleError(f"'{path}' is not a training checkpoint of SAR Despeckle.")
    if record.get("version", 0) > CHECKPOINT_VERSION:
        raise SarDespeckleError(f"'{path}' was written by a newer training package; update it.")
    return record


def git_commit() -> str:
    """The repository's commit (``-dirty`` when tracked files changed), or ``unknown``."""
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")
