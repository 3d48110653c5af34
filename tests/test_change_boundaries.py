"""REFINE_BOUNDARIES (``core.change.boundaries``): the half-contrast rule puts back the ring that
a detector reading both sides of an outline leaves out, grows nothing where the outline is right
or where nothing changed, and gives the same mask tile by tile as on the whole image, through the
core and through qgis_process.

Synthetic data: a block of known change (``test_change_defaults.pair``: a textured scene, Gamma
speckle per date, the block brighter at date 2).
"""

import json

import numpy as np
import pytest
import torch
from osgeo import gdal
from scipy import ndimage

from sar_despeckle_plugin.core.change import boundaries
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.change.statistics import log_ratios
from sar_despeckle_plugin.core.feedback import Feedback

from .synthetic import read_geotiff, write_geotiff
from .test_change_defaults import SHAPE, mask_of, pair, truth

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CROSS = ndimage.generate_binary_structure(2, 1)


def outline(region: np.ndarray) -> np.ndarray:
    """The outermost ring of ``region``'s pixels (4-connected)."""
    return region & ~ndimage.binary_erosion(region, CROSS)


def outer_ring(region: np.ndarray) -> np.ndarray:
    """The pixels just outside ``region`` (4-connected)."""
    return ndimage.binary_dilation(region, CROSS) & ~region


def block_evidence(looks: float, contrast_db: float, seed: int) -> torch.Tensor:
    """(1, 1, H, W) standardised log-ratio of two ``looks``-look dates whose block (``truth``)
    brightens by ``contrast_db``: a sharp outline, speckle noise only."""
    rng = np.random.default_rng(seed)
    gain = np.where(truth(), 10 ** (contrast_db / 10), 1.0)
    before = torch.from_numpy(rng.gamma(looks, 1 / looks, SHAPE))[None, None]
    after = torch.from_numpy(gain * rng.gamma(looks, 1 / looks, SHAPE))[None, None]
    n = torch.full((1, 1, 1), float(looks), dtype=torch.float64)
    return log_ratios(before, after, n, n, "single").float()


def refined(mask: np.ndarray, evidence: torch.Tensor) -> np.ndarray:
    valid = torch.ones((1, *SHAPE), dtype=torch.bool)
    return boundaries.refine_boundaries(torch.from_numpy(mask)[None], evidence, valid)[0].numpy()


def test_a_region_one_pixel_short_gets_its_ring_back_and_nothing_beyond():
    t = truth()
    short = ndimage.binary_erosion(t, CROSS)  # what a detector that reads both sides leaves
    mask = refined(short, block_evidence(16, 6.0, seed=1))
    ring = outline(t)
    assert mask[short].all()
    assert mask[ring].mean() > 0.9  # 6 dB at 16 looks: 3.8 noise standard deviations of contrast
    assert mask[outer_ring(t)].mean() < 0.05 and not mask[~ndimage.binary_dilation(t, CROSS)].any()


def test_a_right_outline_and_a_change_free_pair_grow_nothing():
    t = truth()
    right = refined(t, block_evidence(16, 6.0, seed=2))
    assert right[t].all() and right[outer_ring(t)].mean() < 0.05
    none = refined(np.zeros(SHAPE, bool), block_evidence(16, 0.0, seed=3))
    assert not none.any()


def test_both_signs_and_several_channels_are_read_along_the_contrast():
    t = truth()
    short = ndimage.binary_erosion(t, CROSS)
    darker = -block_evidence(16, 6.0, seed=4)  # the block darkens instead
    assert refined(short, darker)[outline(t)].mean() > 0.9
    # a second channel of pure noise neither hides the ring nor adds to the surroundings
    noise = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 1, *SHAPE))).float()
    mask = refined(short, torch.cat([block_evidence(16, 6.0, seed=6), noise], 1))
    assert mask[outline(t)].mean() > 0.8 and mask[outer_ring(t)].mean() < 0.08


def test_the_file_pass_tile_by_tile_equals_the_whole_image(tmp_path, monkeypatch):
    t = truth()
    short = ndimage.binary_erosion(t, CROSS)
    evidence = block_evidence(4, 6.0, seed=7)
    mask = np.where(short, 1, 0).astype(np.uint8)
    mask[:3, :5] = 255  # nodata: neither decided nor read as surroundings
    mask_path = write_geotiff(str(tmp_path / "mask.tif"), mask, nodata=255, data_type=gdal.GDT_Byte)
    evidence_path = write_geotiff(str(tmp_path / "evidence.tif"), evidence[0].numpy())
    monkeypatch.setattr(boundaries, "TILE", 32)  # 96 x 96: nine tiles, outlines across their seams
    changed, valid = boundaries.refine_mask_file(mask_path, evidence_path, 255, str(tmp_path / "scratch.tif"),
                                                 torch.device("cpu"), Feedback())
    result = read_geotiff(mask_path)[0]
    ok = torch.from_numpy(mask != 255)[None]
    expected = boundaries.refine_boundaries(torch.from_numpy(mask == 1)[None] & ok, evidence, ok)[0].numpy()
    np.testing.assert_array_equal(result, np.where(mask == 255, 255, expected))
    assert (changed, valid) == (int(expected.sum()), int((mask != 255).sum()))
    assert expected.sum() > short.sum()


def test_the_pipeline_recovers_the_outline_the_defaults_leave_short(tmp_path):
    """Defaults (unsupervised detector on despeckled dates): the prefilter and the network's
    window shrink the block; refined, its outermost ring comes back, false alarms barely move
    and the first-change dates follow the refined mask."""
    t = truth()
    paths = pair(tmp_path, looks=(4, 4), contrast_db=6.0, seed=9)
    plain, _ = mask_of(paths, tmp_path, ChangeSettings())
    outputs = ChangeOutputs(change_mask=str(tmp_path / "refined.tif"), change_date=str(tmp_path / "date.tif"))
    lines = []
    report = detect_changes(paths, outputs, ChangeSettings(refine_boundaries=True), Feedback(info=lines.append))
    mask, dates = read_geotiff(outputs.change_mask)[0], read_geotiff(outputs.change_date)[0]
    ring = outline(t)
    assert (mask == 1)[ring].mean() > (plain == 1)[ring].mean() + 0.2
    assert (mask == 1)[~t].sum() <= (plain == 1)[~t].sum() + 0.1 * outer_ring(t).sum()
    assert ((mask == 1) >= (plain == 1)).all()
    np.testing.assert_array_equal(dates == 2, mask == 1)
    assert report.changed_fraction == pytest.approx((mask == 1).mean())
    assert any(line.startswith("REFINE_BOUNDARIES") for line in lines)


def test_added_pixels_take_the_date_of_the_pair_that_changed_and_regions_stay_whole(tmp_path):
    """Three dual-pol dates, the block brightens 6 dB at date 3: the unsupervised detector's
    region, refined, keeps date 3 on its new ring (one polygon); and two regions of different
    dates each give theirs to the pixels that join them."""
    rng = np.random.default_rng(10)
    t = truth()
    paths = []
    for index in range(3):
        gain = np.where(t, 4.0, 1.0) if index == 2 else np.ones(SHAPE)
        bands = np.stack([gain * rng.gamma(4, 1 / 4, SHAPE), 0.25 * gain * rng.gamma(4, 1 / 4, SHAPE)])
        paths.append(write_geotiff(str(tmp_path / f"date{index + 1}.tif"), bands.astype(np.float32)))
    outputs = ChangeOutputs(change_mask=str(tmp_path / "mask.tif"), change_date=str(tmp_path / "date.tif"),
                            change_polygons=str(tmp_path / "changes.gpkg"))
    report = detect_changes(paths, outputs, ChangeSettings(layout="dual", method="unsupervised",
                                                           refine_boundaries=True), Feedback(warn=lambda m: None))
    mask, dates = read_geotiff(outputs.change_mask)[0], read_geotiff(outputs.change_date)[0]
    assert (mask == 1)[outline(t)].mean() > 0.9
    assert set(np.unique(dates[mask == 1])) == {3} and report.polygons == 1
    changed = np.zeros(SHAPE, bool)
    changed[10:20, 10:20] = changed[10:20, 21:30] = True  # one column apart
    candidates = np.where(np.arange(SHAPE[1]) < 21, 2, 3)[None].repeat(SHAPE[0], 0)
    added = np.zeros(SHAPE, bool)
    added[20, 12] = added[20, 25] = added[15, 20] = True  # below each; between both (a tie)
    dates = boundaries.neighbour_dates(torch.from_numpy(changed)[None], torch.from_numpy(candidates)[None],
                                       torch.from_numpy(added)[None])[0].numpy()
    assert (dates[20, 12], dates[20, 25], dates[15, 20]) == (2, 3, 2)
    np.testing.assert_array_equal(dates[~added], candidates[~added])


def test_the_pipeline_adds_nothing_to_a_change_free_pair(tmp_path):
    paths = pair(tmp_path, looks=(4, 1), contrast_db=0.0, seed=5)
    plain, _ = mask_of(paths, tmp_path, ChangeSettings())
    mask, report = mask_of(paths, tmp_path, ChangeSettings(refine_boundaries=True))
    np.testing.assert_array_equal(mask, plain)
    assert report.changed_fraction < 0.01


def test_refine_boundaries_through_qgis_process_equals_the_core(qgis_process, tmp_path):
    paths = pair(tmp_path, looks=(4, 4), contrast_db=6.0, seed=9)
    mask = str(tmp_path / "cli_mask.tif")
    done = qgis_process("run", "sar_despeckle:change_detection", "--json", *(f"--INPUTS={p}" for p in paths),
                        "--REFINE_BOUNDARIES=true", f"--CHANGE_MASK={mask}",
                        f"--CHANGE_MAP={tmp_path / 'cli_map.tif'}")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["CHANGE_MASK"] == mask
    reference, _ = mask_of(paths, tmp_path, ChangeSettings(refine_boundaries=True))
    plain, _ = mask_of(paths, tmp_path, ChangeSettings())
    np.testing.assert_array_equal(read_geotiff(mask)[0], reference)
    assert (reference == 1).sum() > (plain == 1).sum()
