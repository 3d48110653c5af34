"""The model-input contract: one reference level, as the card names it, for plugin and training."""

import json
import os

import numpy as np
import pytest

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.models.normalisation import MEDIAN_LOG, normalisation_kind, reference_level


def test_shipped_cards_name_the_median_log_contract():
    for name in ("sarcnn_default.json", "change_default.json"):
        with open(os.path.join(SHIPPED_WEIGHTS, name), encoding="utf-8") as handle:
            card = json.load(handle)
        assert normalisation_kind(card["normalisation"]) == MEDIAN_LOG  # no kind recorded: the default


def test_unknown_kind_is_refused():
    with pytest.raises(SarDespeckleError, match="normalisation 'zscore'"):
        reference_level(np.ones(4), {"kind": "zscore"})


def test_reference_level_is_the_median_with_a_fallback():
    values = np.array([1.0, 2.0, 3.0, 10.0], np.float32)
    assert reference_level(values) == 2.5
    assert reference_level(np.array([0.0, 0.0, 0.0, 4.0])) == 1.0  # median 0: the mean
    assert reference_level(np.zeros(3)) == 1.0
    per_channel = reference_level(np.arange(12.0).reshape(2, 2, 3) + 1, axis=-1)
    assert per_channel.shape == (2, 2) and per_channel[1, 1] == 11.0


def test_jitter_draws_as_the_training_datasets_did():
    """Patch levels: median times exp(U(-j, j)), one draw per level, the same stream as before."""
    noisy = np.random.default_rng(1).gamma(1.0, 1.0, (1, 16, 16)).astype(np.float32)
    rng, old = np.random.default_rng(7), np.random.default_rng(7)
    expected = float(np.median(noisy)) * float(np.exp(old.uniform(-0.5, 0.5)))
    assert reference_level(noisy, jitter=0.5, rng=rng) == expected
    pair = np.random.default_rng(2).gamma(1.0, 1.0, (5, 8, 8)).astype(np.float32)
    rng, old = np.random.default_rng(3), np.random.default_rng(3)
    levels = np.median(pair[:4].reshape(2, 2, -1), axis=-1)
    expected = (levels * np.exp(old.uniform(-0.3, 0.3, levels.shape))).astype(np.float32)
    got = reference_level(pair[:4].reshape(2, 2, -1), axis=-1, jitter=0.3, rng=rng).astype(np.float32)
    np.testing.assert_array_equal(got, expected)
