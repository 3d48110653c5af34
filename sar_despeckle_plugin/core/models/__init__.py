"""Networks and their model cards: the single definition that the plugin and the training
package both import. No ``qgis`` import here, and this ``__init__`` imports nothing, so the
torch-free ``card`` module loads without torch.

Modules:

* ``card``: the model card (JSON beside each weights file), reading and listing cards; torch-free.
* ``weights``: saving a network with its card and loading it safely (checksum first,
  ``torch.load(..., weights_only=True)``): ``save_model``, ``load_model``, ``LoadedModel``.
* ``registry``: ``ARCHITECTURES`` (card ``architecture`` -> class) and ``build_model``.
* ``base``: ``DespecklingNet``, what every despeckling network implements.
* ``logdomain``: the normalised log-intensity domain the networks read.
* ``complexity``: parameter count, MACs per pixel, measured reach.

Despeckling architectures (read linear intensity, layout (B, 1, H, W)):

* ``log_residual`` (``LogResidualUNet``): supervised, log-domain residual U-Net after SAR-CNN.
* ``blind_spot`` (``BlindSpotNet``): self-supervised blind-spot network with an inverse-Gamma
  prior after Speckle2Void.

Change detection (reads two dates of dual-pol intensity, (B, 2, H, W) each):

* ``change_net`` (``ChangeNet``, architecture ``change_attention``): siamese dilated CNN with
  global attention after MTDN's change branch.
"""
