"""Despeckling one date: classical filters and networks, file to file.

Speckle model: intensity I = R * S with S ~ Gamma(L, 1/L) (mean 1, variance 1/L). Every method
works on LINEAR INTENSITY, float32, laid out (B, C, H, W) (the tiling engine's windows; the
pipeline hands each band to the method as (B, 1, H, W)) with a ``valid`` mask of the same
shape; the pipeline converts amplitude and dB to intensity and back, so the output keeps the
input's units. Bands are despeckled independently, except C2 covariance (BAND_LAYOUT c2), whose
four intensities are despeckled and recombined into a valid covariance (``layouts``).

Modules, in the order a run uses them: ``settings`` (what is asked, the per-band statistics and
the interface of a method, the report, their checks; torch-free), ``layouts`` (the bands of each
BAND_LAYOUT as the channels a method filters, and back), ``filters`` (the classical
filters: boxcar, Lee, refined Lee, improved Lee sigma, Frost, Gamma-MAP, Kuan), ``network``
(despeckling with a trained network from its model card), ``pipeline`` (whole runs:
``despeckle_raster``, what ``sar_despeckle:despeckle`` runs). This ``__init__`` imports nothing,
so ``core.despeckle.settings`` loads without torch.
"""
