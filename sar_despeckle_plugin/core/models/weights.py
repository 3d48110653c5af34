"""Saving networks with their model cards, and loading them safely.

A model is two files in one folder: ``NAME.pt`` (a plain ``state_dict``, loadable with
``torch.load(..., weights_only=True)``) and ``NAME.json`` (the card, see the torch-free
``core.models.card``). Loading checks the card is one of ours, then the weights' sha256 against
the card, and only then reads the weights with ``weights_only=True``; anything else is refused
with a :class:`SarDespeckleError` that says why.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import SarDespeckleError
from .base import DespecklingNet
from .card import MODEL_NAME, ModelCard, read_card
from .complexity import macs_per_pixel, parameter_count
from .normalisation import normalisation_kind
from .registry import ARCHITECTURES, build_model


@dataclass
class LoadedModel:
    """A checked, loaded network ready to despeckle tiles.

    Attributes:
        card: its model card.
        module: the network, in eval mode on the device it was loaded to.
    """

    card: ModelCard
    module: DespecklingNet

    @property
    def receptive_radius(self) -> int:
        """Reach in pixels: give tiles at least this much halo."""
        return self.module.receptive_radius

    @property
    def alignment(self) -> int:
        """Tile origins that are multiples of this see the whole image's pooling grid, so the
        tiled result equals the whole-image one (choose tile and halo as multiples of it)."""
        return self.module.alignment

    def despeckle(self, intensity: torch.Tensor, valid: torch.Tensor, fill_value,
                  self_ensemble: bool = False, looks: float | None = None,
                  auxiliary: torch.Tensor | None = None, auxiliary_looks: float | None = None,
                  correlation: tuple[float, float] | None = None) -> torch.Tensor:
        """Despeckle a batch of tiles.

        Args:
            intensity: linear intensity (B, 1, H, W), float32, on the module's device.
            valid: bool (B, 1, H, W); invalid pixels (nodata, outside the image) are replaced
                by ``fill_value`` before the network, so nodata never enters it.
            fill_value: one linear intensity for the whole image (float or 0-d tensor): the
                median of its valid pixels. It is also the reference level the network's
                log input is centred on, so it must not change from tile to tile.
            self_ensemble: also despeckle the left-right mirror of the tiles and return the
                geometric mean of the two estimates (the average of their logs): a little
                less error for twice the time.
            looks: the image's equivalent number of looks (given or estimated), read by
                conditioned networks (card ``conditioning`` "looks") as their noise level;
                the others ignore it (None: the card's looks).
            auxiliary, auxiliary_looks: networks of input kind ``stack`` only: the auxiliary
                image (linear intensity (B, 1, H, W), filled like ``intensity`` where not
                ``valid``) and its looks (see ``core.models.log_residual``).
            correlation: the lag-1 autocorrelation of the image's speckle (rows, cols), read
                by correlation-conditioned networks (card ``conditioning``
                "looks_correlation"; None: white speckle); the others ignore it.
        Returns:
            Estimated reflectivity, linear intensity (B, 1, H, W) float32 (meaningless where
            ``valid`` is False).
        """
        fill = torch.as_tensor(fill_value, dtype=intensity.dtype, device=intensity.device)
        if not (torch.isfinite(fill) and fill > 0):
            raise SarDespeckleError(f"fill_value must be a positive intensity; got {float(fill)}.")
        inputs = torch.where(valid, intensity, fill).contiguous(memory_format=torch.channels_last)
        other = None if auxiliary is None else torch.where(valid, auxiliary, fill)

        def run(images: torch.Tensor, auxiliary_images: torch.Tensor | None) -> torch.Tensor:
            if getattr(self.module, "reads_correlation", False):
                return self.module.despeckle(images, fill, looks, correlation=correlation).float()
            if auxiliary_images is None:
                return self.module.despeckle(images, fill, looks).float()
            return self.module.despeckle(images, fill, looks, auxiliary=auxiliary_images,
                                         auxiliary_looks=auxiliary_looks).float()

        with torch.no_grad():
            estimate = run(inputs, other)
            if self_ensemble:
                estimate = torch.exp(0.5 * (estimate.log() + self._mirrored_estimate(run, inputs, other, fill).log()))
            return estimate.contiguous()

    def _mirrored_estimate(self, run, inputs: torch.Tensor, other: torch.Tensor | None, fill: torch.Tensor) -> torch.Tensor:
        """The estimate (by ``run``) of the left-right mirrored tiles (and auxiliary images),
        mirrored back. Their width is first padded (with ``fill``) to a multiple of
        ``alignment``, so that the mirrored tile sees the pooling grid of the unmirrored one and
        tiles still add up to the whole image."""
        width = inputs.shape[-1]

        def mirrored(images: torch.Tensor | None) -> torch.Tensor | None:
            if images is None:
                return None
            return F.pad(images, (0, -width % self.alignment), value=float(fill)).flip(-1)

        return run(mirrored(inputs), mirrored(other)).flip(-1)[..., :width]


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(module: DespecklingNet, card: ModelCard, folder: str) -> str:
    """Write ``card.name``.pt (state_dict) and ``card.name``.json into ``folder``.

    The architecture, hyper-parameters, looks, normalisation, receptive radius, MACs per
    pixel, parameter count, weights file name, sha256 and ``conditioning`` are taken from
    ``module`` and the written file, overriding whatever ``card`` held; an unconditioned
    network's ``looks_range`` is its looks. Returns the card's path.
    """
    if not MODEL_NAME.match(card.name):
        raise SarDespeckleError(
            f"Model name {card.name!r} is not usable as a file name: use letters, digits, '_', '.', '-'."
        )
    if ARCHITECTURES.get(module.architecture) is not type(module):
        raise SarDespeckleError(f"{type(module).__name__} is not a registered architecture.")
    os.makedirs(folder, exist_ok=True)
    weights_path = os.path.join(folder, card.name + ".pt")
    state = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    torch.save(state, weights_path)
    card = dataclasses.replace(
        card,
        architecture=module.architecture,
        hyperparameters=module.hyperparameters,
        input_kind=module.input_kind,
        looks=module.looks,
        normalisation=module.normalisation,
        receptive_radius=module.receptive_radius,
        sha256=sha256_of(weights_path),
        weights_file=os.path.basename(weights_path),
        macs_per_pixel=macs_per_pixel(module),
        parameters=parameter_count(module),
        conditioning=("looks_correlation" if getattr(module, "reads_correlation", False)
                      else "looks" if getattr(module, "conditioned", False) else "none"),
        looks_range=(list(card.looks_range) if getattr(module, "conditioned", False)
                     else [module.looks, module.looks]),
    )
    card_path = os.path.join(folder, card.name + ".json")
    with open(card_path, "w", encoding="utf-8") as handle:
        handle.write(card.to_json())
    return card_path


#: What each card input kind is for, in refusals.
INPUT_KIND_USES = {"intensity": "a despeckling network", "dual_pol_pair": "a change detector (two dual-pol dates)",
                   "single_pol_pair": "a change detector (two single-pol dates)",
                   "date_pair": "a multi-task despeckling and change network (two dates)"}


def load_model(card_path: str, device: torch.device | str = "cpu", input_kind: str | None = None) -> LoadedModel:
    """Check and load the model whose card is ``card_path`` onto ``device``.

    Refuses (SarDespeckleError): cards that are not ours, networks reading another
    ``input_kind`` than the one asked for (when given), unknown architectures or input
    normalisations (``core.models.normalisation``), weights
    files outside the card's folder, checksum mismatches (checked before the weights are
    read), files ``torch.load(weights_only=True)`` rejects, and weights that do not fit the
    architecture. Each weights file is checked and read once per process while it is unchanged
    (:func:`_checked_network`); every call returns a network of its own.
    """
    card = read_card(card_path)
    if input_kind is not None and card.input_kind != input_kind:
        raise SarDespeckleError(
            f"Model '{card.name}' is {INPUT_KIND_USES.get(card.input_kind, card.input_kind)}, but "
            f"{INPUT_KIND_USES.get(input_kind, input_kind)} is needed here: choose another model card."
        )
    if card.architecture not in ARCHITECTURES:
        raise SarDespeckleError(
            f"Model '{card.name}' needs architecture '{card.architecture}', which this plugin "
            f"does not have ({', '.join(ARCHITECTURES)}). Update the plugin."
        )
    normalisation_kind(card.normalisation)
    name = card.weights_file
    if not name or os.path.basename(name) != name or name in (".", ".."):
        raise SarDespeckleError(
            f"Model card '{card_path}' names weights file {name!r}; it must be a plain file "
            "name in the card's folder."
        )
    weights_path = os.path.join(os.path.dirname(os.path.abspath(card_path)), name)
    if not os.path.isfile(weights_path):
        raise SarDespeckleError(f"Weights file '{weights_path}' of model '{card.name}' is missing.")
    module = copy.deepcopy(_checked_network(card, weights_path))
    return LoadedModel(card, module.to(device=device, memory_format=torch.channels_last))


#: Networks checked and read in this process: (weights file, its size, modification time and
#: inode, the card's sha256, architecture and hyper-parameters) -> the network on the CPU, in
#: eval mode. Another run of the same model (in the QGIS window, on a batch worker) copies it
#: instead of hashing and reading the file again; a rewritten file or card is checked anew.
_CHECKED_NETWORKS: dict[tuple, DespecklingNet] = {}


def _checked_network(card: ModelCard, weights_path: str) -> DespecklingNet:
    """The network of ``card`` holding the weights at ``weights_path`` (CPU, eval mode), after
    the checksum check; from :data:`_CHECKED_NETWORKS` when this file was read before. Callers
    copy it: it is shared."""
    status = os.stat(weights_path)
    key = (os.path.abspath(weights_path), status.st_size, status.st_mtime_ns, status.st_ino, card.sha256,
           card.architecture, json.dumps(card.hyperparameters, sort_keys=True))
    if key not in _CHECKED_NETWORKS:
        _CHECKED_NETWORKS[key] = _read_checked_network(card, weights_path)
    return _CHECKED_NETWORKS[key]


def _read_checked_network(card: ModelCard, weights_path: str) -> DespecklingNet:
    """Check the weights file against ``card``'s sha256, then read it (``weights_only``) into
    the card's architecture: the network on the CPU, in eval mode."""
    actual = sha256_of(weights_path)
    if actual != card.sha256:
        raise SarDespeckleError(
            f"Weights file '{weights_path}' does not match its model card (sha256 {actual[:12]}... "
            f"instead of {card.sha256[:12]}...): it was modified or corrupted. Refusing to load "
            "it; export or download the model again."
        )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise SarDespeckleError(
            f"Cannot load weights '{weights_path}' safely ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Only plain state_dicts are accepted."
        ) from None
    try:
        module = build_model(card.architecture, **card.hyperparameters)
        if not isinstance(state, dict):
            raise TypeError("the weights file holds no state_dict")
        module.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as error:
        raise SarDespeckleError(
            f"Weights '{weights_path}' do not fit architecture '{card.architecture}' with "
            f"{card.hyperparameters}: {str(error).splitlines()[0]}"
        ) from None
    return module.to(memory_format=torch.channels_last).eval()
