"""The tiling engine: exactness with halos, feathered blending, progress, cancel."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sar_despeckle_plugin.core.errors import Cancelled
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.tiling import TilingOptions, feather_profile, run_tiled


class ArraySource:
    """An in-memory image read by padded windows, like RasterReader."""

    def __init__(self, image: np.ndarray, valid: np.ndarray | None = None):
        self.image = image.astype(np.float32)
        self.valid = np.ones(image.shape, bool) if valid is None else valid
        self.bands, self.height, self.width = image.shape
        self.reads = 0

    def read(self, row, col, height, width):
        self.reads += 1
        values = np.zeros((self.bands, height, width), np.float32)
        valid = np.zeros(values.shape, bool)
        r0, r1 = max(row, 0), min(row + height, self.height)
        c0, c1 = max(col, 0), min(col + width, self.width)
        inner = (slice(None), slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        ok = self.valid[:, r0:r1, c0:c1]
        values[inner] = np.where(ok, self.image[:, r0:r1, c0:c1], 0)
        valid[inner] = ok
        return values, valid


class ArraySink:
    def __init__(self, bands, height, width):
        self.image = np.full((bands, height, width), np.nan, np.float32)
        self.writes = []

    def write(self, values, row, col):
        self.writes.append((row, values.shape[1]))
        self.image[:, row: row + values.shape[1], col: col + values.shape[2]] = values


def masked_mean(values: torch.Tensor, valid: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the valid pixels of a (2r+1)^2 window: reach ``radius``."""
    size = 2 * radius + 1
    weight = valid.float()
    total = F.avg_pool2d(values * weight, size, 1, radius, count_include_pad=True)
    count = F.avg_pool2d(weight, size, 1, radius, count_include_pad=True)
    return total / count.clamp_min(1e-12)


def run(image, options, process, valid=None, feedback=None):
    source = ArraySource(image, valid)
    sink = ArraySink(image.shape[0], image.shape[1], image.shape[2])
    run_tiled(source, sink, process, options, image.shape[0], feedback=feedback)
    return sink


@pytest.mark.parametrize("tile", [7, 16, 64])
def test_cropped_tiles_equal_whole_image(tile):
    rng = np.random.default_rng(0)
    image = rng.gamma(1.0, 1.0, (2, 37, 53)).astype(np.float32)
    valid = rng.random(image.shape) > 0.1
    radius = 3
    def process(v, ok):
        return masked_mean(v, ok, radius)
    tiled = run(image, TilingOptions(tile=tile, halo=radius, batch_size=3), process, valid).image
    whole_values = torch.from_numpy(np.where(valid, image, 0))[None]
    whole = masked_mean(whole_values, torch.from_numpy(valid)[None], radius)[0].numpy()
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-6)


def test_halo_too_small_is_detectably_different():
    """The comparison above can fail: with a short halo, tile borders differ."""
    image = np.random.default_rng(1).gamma(1.0, 1.0, (1, 40, 40)).astype(np.float32)
    def process(v, ok):
        return masked_mean(v, ok, 3)
    short = run(image, TilingOptions(tile=10, halo=1), process).image
    exact = run(image, TilingOptions(tile=10, halo=3), process).image
    assert np.abs(short - exact).max() > 1e-3


def test_feather_profiles_sum_to_one():
    length, tile, blend = 50, 12, 4
    total = np.zeros(length)
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        profile = feather_profile(start, stop, blend, length)
        lo = max(start - blend, 0)
        total[lo: lo + profile.size] += profile
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_feathered_identity_is_exact_and_offsets_blend_without_seams():
    image = np.random.default_rng(2).random((1, 45, 61)).astype(np.float32)
    options = TilingOptions(tile=16, halo=6, blend=4, batch_size=2)
    identity = run(image, options, lambda v, ok: v.clone()).image
    np.testing.assert_allclose(identity, image, atol=1e-6)

    # Each tile adds its own constant: blending must turn the steps into ramps of slope
    # at most (step / (2 * blend)) per pixel across every tile boundary.
    calls = iter(range(10_000))

    def offset(values, valid):
        return torch.stack([torch.zeros_like(v) + next(calls) % 2 for v in values])

    flat = np.zeros((1, 45, 61), np.float32)
    blended = run(flat, options, offset).image[0]
    assert np.abs(np.diff(blended, axis=1)).max() <= 1 / (2 * options.blend) + 1e-6
    assert blended.min() >= 0 and blended.max() <= 1


def test_progress_reaches_one_and_writes_cover_image_once():
    image = np.ones((1, 50, 30), np.float32)
    seen = []
    sink = run(image, TilingOptions(tile=16, halo=2, blend=2), lambda v, ok: v.clone(),
               feedback=Feedback(progress=seen.append))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    rows = sorted(sink.writes)
    assert rows[0][0] == 0 and sum(n for _, n in rows) == 50
    assert all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:]))


def test_cancel_stops_before_processing_more_tiles():
    image = np.ones((1, 64, 64), np.float32)
    processed = []

    def process(values, valid):
        processed.append(values.shape[0])
        return values.clone()

    with pytest.raises(Cancelled):
        run(image, TilingOptions(tile=16, halo=2), process,
            feedback=Feedback(is_cancelled=lambda: len(processed) >= 3))
    assert len(processed) == 3


def test_bad_options_are_refused():
    with pytest.raises(ValueError):
        TilingOptions(tile=16, halo=2, blend=3)
    with pytest.raises(ValueError):
        TilingOptions(tile=0)


def test_long_runs_are_announced_after_the_first_tiles():
    from sar_despeckle_plugin.core.feedback import Feedback
    from sar_despeckle_plugin.core.tiling import _announce_duration

    infos, warnings = [], []
    feedback = Feedback(info=infos.append, warn=warnings.append)
    _announce_duration(feedback, 2.0, 4, 100)  # 50 s in all: not worth a message
    assert infos == warnings == []
    _announce_duration(feedback, 30.0, 4, 100)  # 12.5 minutes
    assert infos == ["Expected duration about 12 min (100 tiles; measured on the first 4)."]
    _announce_duration(feedback, 10.0, 1, 3000)  # 8 h 20 min
    assert warnings and warnings[0].startswith("Expected duration about 8 h 20 min")


def test_small_images_are_one_tile_of_their_own_size():
    from sar_despeckle_plugin.core.tiling import fit_tile_to_image

    assert fit_tile_to_image(1024, 256, 200, 16) == 256
    assert fit_tile_to_image(1024, 250, 100, 64) == 256
    assert fit_tile_to_image(512, 4000, 3000, 16) == 512
