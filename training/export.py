"""``python -m training export``: a checkpoint -> weights + model card for the plugin."""

from __future__ import annotations

import os

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import WHITE_CORRELATION, ModelCard
from sar_despeckle_plugin.core.models.registry import build_model
from sar_despeckle_plugin.core.models.weights import save_model

from .checkpoints import load_checkpoint


METRIC_DEFINITIONS = {
    "despeckle": "PSNR (dB) / SSIM on amplitude, peak = 99th percentile of the reference; "
                 "psnr_input = the noisy input's PSNR; loss = the training loss",
    "change": "kappa, F1, overall accuracy (oa), false/missed alarms of the mask at probability 0.5 "
              "over all validation pixels; loss = the training loss (BCE + soft Dice)",
    "multitask": "change branch: kappa, F1, overall accuracy (oa), false/missed alarms at probability 0.5 over "
                 "all validation pixels; psnr / psnr_single / psnr_input: PSNR (dB) on amplitude of both dates "
                 "fused / of the despeckling branch alone / of the input, one-look synthetic pairs with a known "
                 "change; loss = the training loss (BCE + soft Dice + masked Noise2Noise)",
}


def card_metrics(checkpoint: dict) -> dict:
    """The validation metrics of the checkpoint, with what they were measured on."""
    data = checkpoint["data"]
    metrics = {key: value for key, value in checkpoint["metrics"].items()}
    return {
        **metrics,
        "measured_on": "validation: " + "; ".join(data["validation"]),
        "definition": METRIC_DEFINITIONS.get(checkpoint["mode"], METRIC_DEFINITIONS["despeckle"]),
        "epoch": checkpoint["epoch"],
        "step": checkpoint["step"],
    }


def speckle_fields(config: dict, trained_on: dict | None = None) -> dict:
    """The card's ``looks_range``, ``max_correlation`` and ``speckle_model`` from the training
    config's ``[data]`` speckle model: the ENL its draws span, the largest lag-1 autocorrelation
    (either axis, at either end of the looks range; white speckle: the white threshold) and its
    preset name. ``save_model`` keeps ``looks_range`` for conditioned networks only.

    A self-supervised run on real images (``trained_on``: the checkpoint's data record, with the
    ``real_speckle`` the blind-spot task measured) was trained for their speckle: the largest
    lag-1 autocorrelation among them counts too, and with no clean source the speckle model is
    ``real``."""
    import dataclasses

    from .speckle_model import SpeckleMixture, looks_interval, model_from_config, true_statistics

    data = config.get("data", {})
    model = model_from_config(data.get("speckle", ""), data.get("looks", 1.0), "looks" in data)
    low, high = looks_interval(model)
    if model.white:
        correlation = WHITE_CORRELATION
    else:
        components = model.components if isinstance(model, SpeckleMixture) else (model,)
        ends = [end for m in components
                for end in ([m] if m.looks is None else [dataclasses.replace(m, looks=v) for v in m.looks_range])]
        correlation = max(max(true_statistics(m)["rows"][0], true_statistics(m)["cols"][0]) for m in ends)
        correlation = round(max(correlation, WHITE_CORRELATION), 3)
    name = "white" if model.white else (model.name or "custom")
    real = (trained_on or {}).get("real_speckle") or []
    if real:
        correlation = round(max([correlation] + [max(r["rows"][0], r["cols"][0]) for r in real]), 3)
        name = f"{name} + real" if trained_on.get("clean_sources", True) else "real"
    return {"looks_range": [round(low, 3), round(high, 3)], "max_correlation": correlation, "speckle_model": name}


def check_writable(folder: str, name: str, overwrite: bool) -> None:
    """Refuse to replace a model ``name`` in ``folder`` unless ``overwrite``, and a folder that
    cannot be created or written, before anything is written."""
    existing = [p for p in (os.path.join(folder, name + ext) for ext in (".json", ".pt")) if os.path.exists(p)]
    if existing and not overwrite:
        raise SarDespeckleError(
            f"'{existing[0]}' already exists: choose another --name, or pass --overwrite to replace that model."
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise SarDespeckleError(f"Cannot create the folder '{folder}' ({error.strerror}): choose another --to.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SarDespeckleError(f"Cannot write into '{folder}' (permission denied): choose another --to.")


def export(checkpoint_path: str, name: str, folder: str, description: str = "", overwrite: bool = False) -> str:
    """Write ``name``.pt and ``name``.json into ``folder``; returns the card's path. A model of
    that name already there is replaced only when ``overwrite`` is true."""
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint["mode"] == "contrastive":
        raise SarDespeckleError(
            f"'{checkpoint_path}' is a contrastive pre-training (an encoder, not a despeckler): "
            "fine-tune it with [train].init_from in a supervised config, then export that run."
        )
    check_writable(folder, name, overwrite)
    module = build_model(checkpoint["architecture"], **checkpoint["hyperparameters"])
    module.load_state_dict(checkpoint["model"])
    config = checkpoint["config"]
    card = ModelCard(
        name=name,
        architecture=checkpoint["architecture"],
        hyperparameters=checkpoint["hyperparameters"],
        description=description or config.get("description", ""),
        training={
            "data": checkpoint["data"],
            "config": config,
            "config_name": checkpoint["config_name"],
            "commit": checkpoint["commit"],
            "seconds": round(checkpoint["seconds"], 1),
            "device": checkpoint["device"],
            "checkpoint": os.path.basename(checkpoint_path),
        },
        metrics=card_metrics(checkpoint),
        **(speckle_fields(config, checkpoint["data"]) if checkpoint["mode"] != "change" else {}),
    )
    try:
        return save_model(module, card, folder)
    except OSError as error:
        raise SarDespeckleError(f"Cannot write the model into '{folder}' ({error.strerror or error}): choose another --to.") from None
