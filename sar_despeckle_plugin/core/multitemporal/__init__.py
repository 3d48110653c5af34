"""Multitemporal despeckling: a stack of co-registered dates despeckles each target date far
more than one image allows, without smearing changes between dates.

``pipeline.despeckle_stack`` is what ``sar_despeckle:despeckle_multitemporal`` runs; scripts,
tests and the benchmark call it directly. Layouts are (bands, rows, cols) for numpy and
(batch, dates, channels, rows, cols) for the torch stacks the methods see; every method works
on LINEAR INTENSITY, the pipeline converts amplitude and dB and back.

**Data model** (as in ``core.change``): every date is single-pol intensity, dual-pol
intensities VV, VH, or the dual-pol covariance C2 (C11, C22, Re C12, Im C12, linear), read
through :mod:`core.stack` (one grid, one band layout, units and looks per date). Speckle is
multiplicative, I = R * S with S ~ Gamma(L, 1/L), independent between dates.

**Methods** (:mod:`.methods`): Quegan's filter (local mean times the stack's average ratio), a
RABASAR-style ratio method (the temporal mean despeckled by the shipped looks-conditioned
network, each date's ratio to it despeckled, multiplied back) and a learned multitemporal
network (after MTPI-Net: the target date and the other dates' change-compensated mean in, the
target's reflectivity out; trained by ``python -m training`` in mode ``multitemporal``). Dual-pol intensities are
filtered channel by channel; for C2, C11 and C22 are filtered and the cross term keeps each
date's own coherence, so the output is a valid covariance matrix at every pixel.

Modules, in the order a run uses them: ``settings`` (what is asked, the report, their checks,
the output's band names; torch-free), ``methods`` (the filters on tensors), ``pipeline``
(whole runs). This ``__init__`` imports nothing, so ``core.multitemporal.settings`` loads
without torch.
"""
