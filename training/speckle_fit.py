"""Measuring a speckle model's statistics and fitting a model to those of a user's image.

:func:`measure` reads an image's speckle (looks and lag-1/lag-2 autocorrelation, by the plugin's
own :func:`sar_despeckle_plugin.core.quality.measure_speckle`); :func:`measure_model` reads
what the same estimator sees on draws of a :class:`training.speckle_model.SpeckleModel`;
:func:`fit_speckle_model` searches the model whose draws read like a given measurement
(``python -m training speckle --fit IMAGE``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.card import WHITE_CORRELATION

from .speckle_model import MEASURE_SIDE, AxisResponse, SpeckleModel, axis_statistics


#: Lags (1 .. MEASURED_LAGS) at which :func:`measure` reads the autocorrelation: 1 and 2 for
#: fitting a model, further ones for the blind radius a blind-spot network needs.
MEASURED_LAGS = 4


def measure(intensity: np.ndarray, valid: np.ndarray | None = None, lags: int = MEASURED_LAGS):
    """Looks and autocorrelation at lags 1 .. ``lags`` of an image's speckle (rows, cols linear
    intensity), by :func:`sar_despeckle_plugin.core.quality.measure_speckle`; None when the
    image has too few homogeneous windows."""
    from sar_despeckle_plugin.core.quality import measure_speckle

    return measure_speckle(np.asarray(intensity, np.float64), valid, lags=lags)


def measure_model(model: SpeckleModel, seed: int = 0, images: int = 2, side: int = MEASURE_SIDE) -> dict:
    """The statistics :func:`measure` gives on ``images`` pure-speckle draws of ``model``
    (``side`` x ``side``), averaged: ``looks``, ``rows`` and ``cols`` (lags 1, 2)."""
    rng = np.random.default_rng(seed)
    found = [measure(model.draw((side, side), rng), lags=2) for _ in range(images)]
    return {
        "looks": float(np.mean([s.looks for s in found])),
        "rows": tuple(float(v) for v in np.mean([s.rows for s in found], axis=0)),
        "cols": tuple(float(v) for v in np.mean([s.cols for s in found], axis=0)),
    }


#: Candidates :func:`fit_speckle_model` searches per axis.
FIT_LOOKS = tuple(np.arange(1.0, 8.01, 0.5))
FIT_SPACING = tuple(np.round(np.arange(0.25, 1.501, 0.05), 3))


def _as_target(statistics) -> tuple[float, np.ndarray, np.ndarray]:
    if isinstance(statistics, dict):
        looks, rows, cols = statistics["looks"], statistics["rows"], statistics["cols"]
    else:
        looks, rows, cols = statistics.looks, statistics.rows, statistics.cols
    rows, cols = np.asarray(rows, float)[:2], np.asarray(cols, float)[:2]
    if len(rows) < 2 or len(cols) < 2:
        raise SarDespeckleError("Fitting a speckle model needs the autocorrelation at lags 1 and 2 on both axes.")
    return float(looks), rows, cols


def fit_speckle_model(statistics, base: SpeckleModel | None = None, iterations: int = 4, seed: int = 0,
                      keep_looks: bool = False, log=None) -> SpeckleModel:
    """A speckle model whose measured statistics (:func:`measure_model`) match ``statistics``
    (a :class:`~sar_despeckle_plugin.core.quality.SpeckleStatistics` or a dict with ``looks``,
    ``rows``, ``cols``: autocorrelation at lags 1 and 2, rows and columns).

    White speckle (lag-1 below :data:`WHITE_CORRELATION` on both axes) gives a white model of
    the measured looks. Otherwise the multilook factor and the spacing / resolution ratio of
    each axis are searched (:data:`FIT_LOOKS` x :data:`FIT_SPACING`); the spectral window,
    oversampling, resampling and regrid stages are those of ``base`` (default: Sentinel-1-like
    Hamming 0.75, oversampling 1.2, linear): lag-1, lag-2 and the looks cannot tell them apart
    from the searched ones. The exact statistics of every candidate (:func:`axis_statistics`)
    are corrected for what the project's estimator reads on such speckle (homogeneous windows,
    window means, looks from block statistics) by measuring the best candidate's draws and
    re-fitting, ``iterations`` times. ``keep_looks``: keep ``base``'s multilook factors and
    search the spacings only. Takes a few seconds.
    """
    looks, rows, cols = _as_target(statistics)
    if max(rows[0], cols[0]) < WHITE_CORRELATION:
        return SpeckleModel(looks=round(max(1.0, looks), 2), name="fitted")
    base = base or SpeckleModel(
        looks=None, rows=AxisResponse("hamming", 0.75, 1.2, 1.0, 1.0), cols=AxisResponse("hamming", 0.75, 1.2, 1.0, 1.0))
    tables = {}
    for name in ("rows", "cols"):
        template = getattr(base, name) or AxisResponse("hamming", 0.75, 1.2, 1.0, 1.0)
        regrid = [(r.resampling, getattr(r, name)) for r in base.regrid]
        entries = []
        for n in ((template.looks,) if keep_looks else FIT_LOOKS):
            for spacing in FIT_SPACING:
                axis = dataclasses.replace(template, looks=float(n), spacing=float(spacing))
                v, c = axis_statistics(axis, regrid, base.resampling)
                entries.append((axis, v, c))
        tables[name] = entries
    v_r = np.array([e[1] for e in tables["rows"]])
    v_c = np.array([e[1] for e in tables["cols"]])
    c_r = np.array([e[2] for e in tables["rows"]])
    c_c = np.array([e[2] for e in tables["cols"]])
    bias_rows, bias_cols, looks_ratio = np.zeros(2), np.zeros(2), 1.0
    best_model, best_error = None, math.inf
    for iteration in range(iterations):
        error_r = ((c_r + bias_rows - rows) ** 2).sum(axis=1)
        error_c = ((c_c + bias_cols - cols) ** 2).sum(axis=1)
        predicted = np.log(looks_ratio / (v_r[:, None] * v_c[None, :]))
        total = error_r[:, None] + error_c[None, :] + 0.25 * (predicted - math.log(looks)) ** 2
        i, j = np.unravel_index(np.argmin(total), total.shape)
        model = dataclasses.replace(base, looks=None, rows=tables["rows"][i][0], cols=tables["cols"][j][0],
                                    name="fitted")
        measured = measure_model(model, seed=seed + iteration)
        error = (((np.array(measured["rows"]) - rows) ** 2).sum() + ((np.array(measured["cols"]) - cols) ** 2).sum()
                 + 0.25 * math.log(measured["looks"] / looks) ** 2)
        if log:
            log(f"fit {iteration + 1}: {model.describe()} -> looks {measured['looks']:.2f}, rows "
                f"{measured['rows'][0]:.2f}/{measured['rows'][1]:.2f}, cols {measured['cols'][0]:.2f}/"
                f"{measured['cols'][1]:.2f}")
        if error < best_error:
            best_model, best_error = model, error
        bias_rows = np.array(measured["rows"]) - c_r[i]
        bias_cols = np.array(measured["cols"]) - c_c[j]
        looks_ratio = measured["looks"] * v_r[i] * v_c[j]
    return best_model
