"""Multitemporal despeckling: the methods, the file pipeline and sar_despeckle:despeckle_multitemporal.

Synthetic stacks: one clean reflectivity (a piecewise scene with point targets), independent
Gamma speckle per date (complex Gaussian looks for C2), and a change inserted in one date where
the answer is known. Errors are mean squared errors of log intensity against the clean scene.
"""

import json
import math
import os

import numpy as np
import pytest
import torch
from osgeo import gdal

from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle.pipeline import despeckle_raster
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.models.card import read_card
from sar_despeckle_plugin.core.multitemporal.methods import (
    GROWTH_WINDOWS, complete_c2, grow, local_means, majority, own_change, own_region, quegan, relaxed_change,
    super_image,
)
from sar_despeckle_plugin.core.multitemporal.pipeline import despeckle_stack
from sar_despeckle_plugin.core.multitemporal.settings import MultitemporalSettings
from sar_despeckle_plugin.core.raster import raster_info

from .conftest import shared_data
from .synthetic import (
    GEOTRANSFORM, assert_refused_without_output, documented_algorithm, piecewise_scene, read_geotiff, set_crs,
    shift_origin, write_geotiff,
)

QUIET = Feedback(warn=lambda message: None)
SHAPE = (64, 64)
#: The change: this region of date 1 is 8 times brighter.
REGION = (slice(12, 32), slice(36, 56))
CONTRAST = 8.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clean_dates(k: int, changed: int | None = 0) -> list[np.ndarray]:
    """The clean reflectivity of each date: one scene, REGION brighter in date ``changed``."""
    scene = piecewise_scene(*SHAPE, seed=3).astype(np.float64)
    dates = []
    for t in range(k):
        date = scene.copy()
        if t == changed:
            date[REGION] *= CONTRAST
        dates.append(date)
    return dates


def write_stack(folder, clean, looks=1, seed=0, units="intensity", **kwargs) -> list[str]:
    """GeoTIFF dates of ``clean`` reflectivities ((rows, cols) or (bands, rows, cols)) with
    independent Gamma speckle, in ``units``."""
    rng = np.random.default_rng(seed)
    paths = []
    for t, reflectivity in enumerate(clean):
        values = reflectivity * rng.gamma(looks, 1 / looks, reflectivity.shape)
        if units == "amplitude":
            values = np.sqrt(values)
        elif units == "dB":
            values = 10 * np.log10(values)
        paths.append(write_geotiff(str(folder / f"date{t + 1}.tif"), values.astype(np.float32), **kwargs))
    return paths


def log_error(estimate, truth, where):
    return float(np.mean((np.log(estimate[where]) - np.log(truth[where])) ** 2))


def region_masks():
    inside, near = np.zeros(SHAPE, bool), np.zeros(SHAPE, bool)
    inside[REGION] = True
    near[REGION[0].start - 4: REGION[0].stop + 4, REGION[1].start - 4: REGION[1].stop + 4] = True
    return inside, ~near


def single_date(path, out):
    """The single-image default (METHOD automatic: the shipped network for 1 look)."""
    despeckle_raster(path, out, DespeckleSettings(method="automatic", looks=1.0, units="intensity"), QUIET)
    return read_geotiff(out)[0]


# ---------------------------------------------------------------------------- the methods


def test_quegan_keeps_a_constant_stack_and_averages_the_ratios():
    intensity = torch.full((1, 3, 1, 9, 9), 2.0)
    valid = torch.ones((1, 3, 9, 9), dtype=torch.bool)
    np.testing.assert_allclose(quegan(intensity, valid, [0, 2], 3).numpy(), 2.0, rtol=1e-6)
    intensity[0, 1, 0, 4, 4] = 11.0  # one bright pixel in date 2: its ratio to the local mean is 11 / 3
    result = quegan(intensity, valid, [0], 3)[0, 0, 0]
    assert result[4, 4] == pytest.approx(2.0 * (1 + 11 / 3 + 1) / 3, rel=1e-5)
    valid[0, 1] = False  # date 2 invalid: it leaves the average, the other dates agree again
    np.testing.assert_allclose(quegan(intensity, valid, [0], 3).numpy(), 2.0, rtol=1e-6)


def test_the_targets_own_change_goes_to_the_ratio_image_not_the_super_image():
    """Noise-free dates of level 2, a square 8 times brighter in date 1 only: date 1's super-image
    there is the other dates' plain mean (no level brought from date 1's noisy local mean); date
    2's brings date 1 to its own level away from the square's outline."""
    intensity = torch.full((1, 3, 1, 24, 24), 2.0)
    intensity[0, 0, 0, 8:16, 8:16] = 16.0
    valid = torch.ones((1, 3, 24, 24), dtype=torch.bool)
    looks = [1.0, 1.0, 1.0]
    means = local_means(intensity, valid, 5)
    own = own_change(means, valid, 0, looks, 5)
    assert own[0, 0, 8:16, 8:16].all() and not own[0, 0, :5].any() and not own[0, 0, :, 19:].any()
    image = super_image(intensity, valid, means, 0, looks, 5, own)
    np.testing.assert_allclose(image[0, 0, 8:16, 8:16].numpy(), 2.0)
    assert float(image[0, 0, 0, 0]) == pytest.approx(2.0)
    own = own_change(means, valid, 1, looks, 5)
    assert not own.any()  # date 2 agrees with date 3
    np.testing.assert_allclose(super_image(intensity, valid, means, 1, looks, 5, own)[0, 0, 10:14, 10:14].numpy(),
                               2.0, rtol=1e-6)
    valid[0, 1:, 8:12] = False  # no other date there: the target stands alone, no change of its own
    means = local_means(intensity, valid, 5)
    own = own_change(means, valid, 0, looks, 5)
    assert not own[0, 0, 8:12].any()
    np.testing.assert_allclose(super_image(intensity, valid, means, 0, looks, 5, own)[0, 0, 8:12, 8:16].numpy(), 16.0)


def test_majority_drops_isolated_pixels_fills_holes_and_keeps_regions():
    mask = torch.zeros((1, 1, 24, 24), dtype=torch.bool)
    mask[0, 0, 2, 2] = True  # an isolated error of the change test
    mask[0, 0, 10:20, 4:20] = True  # a change, reaching nothing else
    mask[0, 0, 13:15, 10:12] = False  # the test's misses inside it
    mask[0, 0, 0:6, 18:24] = True  # a change in the image's corner
    kept = majority(mask, 5)[0, 0]
    assert not kept[2, 2]
    assert kept[12:18, 4:20].all() and kept[10:20, 6:18].all()  # straight edges stay, the hole is filled
    assert int(kept[10:20, 4:20].sum()) == 10 * 16 - 4 * 3  # each corner loses a 3-pixel staircase
    assert kept[0:4, 20:24].all() and int(kept[0:6, 18:24].sum()) == 36 - 3
    assert int(kept.sum()) == 10 * 16 - 4 * 3 + 36 - 3  # nothing added outside


def test_own_region_grows_from_the_strict_test_through_the_relaxed_one_within_its_reach():
    """A change is a region: the pixels that only pass the relaxed test join it where they touch
    the strict test's majority, within GROWTH_WINDOWS windows; relaxed pixels away from any seed
    (the test's chance errors) stay out, and so do the strict test's isolated pixels."""
    window, shape = 3, (1, 1, 40, 120)
    strict, relaxed = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
    strict[..., 10:20, 10:20] = True  # the part of a change that passed at CHANGE_SIGMAS
    strict[..., 35, 5] = True  # an isolated error of the strict test
    relaxed[..., 10:20, 10:100] = True  # the whole change passes the relaxed test
    relaxed[..., 30:38, 60:70] = True  # chance errors of the relaxed test, away from any seed
    region = own_region(strict, relaxed, window)[0, 0]
    end = 20 + GROWTH_WINDOWS * window  # the seeds' edge + the growth
    assert region[11:19, 10:end].all() and not region[:, end:].any()
    assert not region[30:].any() and not region[:9].any() and not region[21:].any()
    assert torch.equal(grow(strict, relaxed, 0), strict)
    naive = strict  # grow works on the seeds' bounding box and stops when nothing is added
    for _ in range(GROWTH_WINDOWS * window):
        naive = strict | (relaxed & (torch.nn.functional.max_pool2d(naive.float(), 3, 1, 1) > 0))
    assert torch.equal(grow(strict, relaxed, GROWTH_WINDOWS * window), naive)
    assert not grow(torch.zeros(shape, dtype=torch.bool), relaxed, 5).any()


def test_relaxed_change_asks_for_every_other_date_and_their_mean():
    """Noise-free one-look dates, 7 x 7 windows: the log-ratio's spread is 0.203 against one
    other date (0.176 against the mean of two): a target 1.3x off its only other date (log 0.26)
    passes the 1-sigma test against it but not the 2-sigma test against the consensus (0.41);
    1.6x (0.47) passes both. Among three dates, a change the target shares with another date is
    none of its own."""
    def relaxed(levels, target=0):
        intensity = torch.tensor(levels, dtype=torch.float32)[None, :, None, None, None].expand(1, -1, 1, 9, 9)
        valid = torch.ones((1, len(levels), 9, 9), dtype=torch.bool)
        return bool(relaxed_change(local_means(intensity, valid, 7), valid, target, [1.0] * len(levels), 7).all())

    assert not relaxed([1.0, 1.3]) and relaxed([1.0, 1.6]) and relaxed([1.6, 1.0])
    assert relaxed([2.0, 1.0, 1.0]) and not relaxed([2.0, 2.0, 1.0])


def test_ratio_method_despeckles_the_date_alone_block_by_block_as_the_whole_tile_would():
    """The date-alone pass runs only on the 128-pixel blocks that hold the target's own change:
    there the same values as single-date despeckling's choice for one look (sarcnn_default, not
    the ratio method's sarcnn_looks) on the whole tile, and nothing changed elsewhere."""
    from sar_despeckle_plugin.core.multitemporal import methods
    from sar_despeckle_plugin.core.multitemporal.alone import date_alone
    from sar_despeckle_plugin.core.multitemporal.pipeline import _network

    model = _network("sarcnn_looks", "intensity", torch.device("cpu"))
    rng = np.random.default_rng(0)
    clean = np.exp(0.3 * rng.standard_normal((200, 300)))
    dates = np.stack([clean * rng.gamma(1.0, 1.0, clean.shape) for _ in range(4)]).astype(np.float32)
    dates[1, 100:160, 40:290] *= 6.0  # across block boundaries
    intensity, valid = torch.from_numpy(dates)[None, :, None], torch.ones((1, 4, 200, 300), dtype=torch.bool)
    alone = date_alone(MultitemporalSettings(looks=(1.0,)), [1.0] * 4, [dates[:, None]],
                       [np.ones(dates.shape, bool)], [1], torch.device("cpu"), QUIET)
    assert alone.name == "sarcnn_default"
    method = methods.Rabasar(model, 4.0, [1.0], [1.0] * 4, 7, False, alone)
    blocked = method(intensity, valid, [1])
    means = local_means(intensity, valid, 7)
    settled = own_region(own_change(means, valid, 1, [1.0] * 4, 7),
                         relaxed_change(means, valid, 1, [1.0] * 4, 7), 7)
    assert settled.sum() > 0.95 * 60 * 250 and not settled[..., :90, :].any()
    whole = alone.apply(intensity[:, 1], valid[:, 1, None], 1)  # channel 0 of date 1
    np.testing.assert_allclose(blocked[0, 0][settled[0]].numpy(), whole[settled].numpy(), rtol=1e-5)
    method._alone = lambda result, *unused: result  # no date-alone pass
    without = method(intensity, valid, [1])
    assert torch.equal(blocked[0, 0][~settled[0]], without[0, 0][~settled[0]])


def test_c2_output_is_a_valid_covariance_with_the_dates_own_coherence():
    rng = np.random.default_rng(0)
    cov = torch.from_numpy(c2_dates(rng, 2, (16, 16), looks=1)).float()[None]  # (1, k, 4, H, W)
    valid = torch.ones((1, 2, 16, 16), dtype=torch.bool)
    intensity = torch.from_numpy(rng.gamma(1.0, 1.0, (1, 2, 2, 16, 16))).float()
    result = complete_c2(cov, valid, [0, 1], intensity, 5)
    c11, c22, re, im = result[0].unbind(1)
    assert torch.equal(c11, intensity[0, :, 0]) and torch.equal(c22, intensity[0, :, 1])
    assert bool((re ** 2 + im ** 2 <= c11 * c22 * (1 + 1e-5)).all())
    phase = torch.atan2(im, re)[:, 4:-4, 4:-4]
    assert float(phase.mean()) == pytest.approx(math.atan2(0.2, 0.3), abs=0.15)


# ---------------------------------------------------------------------------- the file pipeline


@pytest.fixture(scope="module")
def changed_stack(tmp_path_factory):
    """Four 1-look dates, the change in date 1; every method's output and the single-date
    default network's for each date."""
    folder = tmp_path_factory.mktemp("stack")
    clean = clean_dates(4, changed=0)
    paths = write_stack(folder, clean)
    outputs = {}
    for method in ("quegan", "rabasar"):
        outputs[method] = str(folder / f"{method}.tif")
        despeckle_stack(paths, outputs[method], MultitemporalSettings(method=method, looks=(1.0,), units="intensity"),
                        QUIET)
    single = np.stack([single_date(path, str(folder / f"single{t}.tif")) for t, path in enumerate(paths)])
    noisy = np.stack([read_geotiff(path)[0] for path in paths])
    return clean, paths, {m: read_geotiff(p) for m, p in outputs.items()}, single, noisy


def test_rabasar_beats_the_single_date_network_and_quegan_beats_the_date_alone(changed_stack):
    clean, _, outputs, single, noisy = changed_stack
    _, unchanged = region_masks()
    for t in range(4):
        rabasar = log_error(outputs["rabasar"][t], clean[t], unchanged)
        network = log_error(single[t], clean[t], unchanged)
        assert rabasar < 0.85 * network, (t, rabasar, network)
        # Quegan's filter on 4 one-look dates against each date alone and a 7 x 7 boxcar of it
        boxcar = torch.from_numpy(noisy[t])[None, None, None]
        alone = quegan(boxcar, torch.ones(boxcar.shape[:2] + boxcar.shape[-2:], dtype=torch.bool), [0], 7)
        assert log_error(outputs["quegan"][t], clean[t], unchanged) < 0.2 * log_error(noisy[t], clean[t], unchanged)
        assert log_error(outputs["quegan"][t], clean[t], unchanged) < log_error(alone[0, 0, 0].numpy(), clean[t],
                                                                                   unchanged)


def test_a_change_in_one_date_stays_there_and_does_not_ghost(changed_stack):
    clean, _, outputs, single, _ = changed_stack
    inside, _ = region_masks()
    core = np.zeros(SHAPE, bool)
    core[REGION[0].start + 3: REGION[0].stop - 3, REGION[1].start + 3: REGION[1].stop - 3] = True
    for method, output in outputs.items():
        # the changed date keeps its contrast
        level = output[0][core].mean() / clean[0][core].mean()
        assert level == pytest.approx(1.0, abs=0.25 if method == "quegan" else 0.15), method
        for t in (1, 2, 3):
            # the other dates show no trace of it: their mean level inside is the scene's
            ghost = output[t][core].mean() / clean[t][core].mean()
            assert ghost == pytest.approx(1.0, abs=0.2 if method == "quegan" else 0.1), (method, t, ghost)
    for t in (1, 2, 3):  # and the ratio method's error there stays within a little of the single-date network's
        assert log_error(outputs["rabasar"][t], clean[t], inside) < log_error(single[t], clean[t], inside) + 0.015


def test_the_targets_own_change_gets_none_of_the_other_dates_texture(tmp_path):
    """A textured scene, 5 one-look dates, a 40 x 64 block of date 3 turned into a flat surface 6
    times brighter (a new surface: the other dates say nothing about it): the ratio method gives
    there what the network gives on date 3 alone, instead of smearing the other dates' texture
    into it (1.12 times the single-date error there; bringing them to date 3's local level
    scored 2.1 times, their plain mean 3.6 times), and keeps its gain elsewhere (0.37 times)."""
    from scipy.ndimage import gaussian_filter

    scene = np.exp(3.0 * gaussian_filter(np.random.default_rng(11).standard_normal((96, 96)), 2.0))
    inside = np.zeros(scene.shape, bool)
    inside[20:60, 16:80] = True
    clean = [scene.copy() for _ in range(5)]
    clean[2][inside] = 6.0 * scene[inside].mean()
    paths = write_stack(tmp_path, clean)
    out = str(tmp_path / "rabasar.tif")
    despeckle_stack(paths, out, MultitemporalSettings(looks=(1.0,), units="intensity", targets=(3,)), QUIET)
    single = single_date(paths[2], str(tmp_path / "single.tif"))
    result = read_geotiff(out)[0]
    assert log_error(result, clean[2], inside) < 1.2 * log_error(single, clean[2], inside)
    outside = np.ones(scene.shape, bool)
    outside[12:68, 8:88] = False
    assert log_error(result, clean[2], outside) < 0.8 * log_error(single, clean[2], outside)


@pytest.mark.parametrize("dates", [3, 5])
def test_an_own_change_to_another_texture_is_despeckled_as_the_single_date_default_would(tmp_path, dates):
    """A textured scene, one-look dates, a 40 x 64 block of the middle date replaced by another
    texture 3 times brighter (its local mean near the old one's in places, where the strict change
    test misses it): over the block the ratio method gives what single-date despeckling (METHOD
    automatic: sarcnn_default at one look) gives on that date, not the ratio method's own
    network's answer nor the other dates' texture, and keeps its gain elsewhere."""
    from scipy.ndimage import gaussian_filter

    def texture(seed):
        return np.exp(2.0 * gaussian_filter(np.random.default_rng(seed).standard_normal((96, 96)), 2.0))

    inside = np.zeros((96, 96), bool)
    inside[20:60, 16:80] = True
    clean = [texture(11) for _ in range(dates)]
    clean[dates // 2][inside] = 3.0 * texture(12)[inside]
    paths = write_stack(tmp_path, clean, seed=dates)
    out = str(tmp_path / "rabasar.tif")
    despeckle_stack(paths, out, MultitemporalSettings(looks=(1.0,), units="intensity", targets=(dates // 2 + 1,)),
                    QUIET)
    single = single_date(paths[dates // 2], str(tmp_path / "single.tif"))
    result, truth = read_geotiff(out)[0], clean[dates // 2]
    same = np.isclose(result, single, rtol=1e-4)
    # 96-97 %: the scene's 2-pixel texture reads as a little speckle correlation (lag-1 0.01-0.09 on
    # the sample), so the change test counts each local mean as 1.2-1.5 times fewer looks and the
    # region's outline comes in by a pixel in places (above 97 % with each counted as w^2 L looks)
    assert same[inside].mean() > 0.96, same[inside].mean()
    assert log_error(result, truth, inside) < 1.01 * log_error(single, truth, inside)
    outside = np.ones(inside.shape, bool)
    outside[12:68, 8:88] = False
    assert log_error(result, truth, outside) < 0.8 * log_error(single, truth, outside)
    assert same[outside].mean() < 0.01
    metadata = raster_info(out).metadata
    assert metadata["SAR_DESPECKLE_OWN_CHANGE_METHOD"] == "sarcnn_default"
    assert metadata["SAR_DESPECKLE_OWN_CHANGE_SHA256"] == read_card(os.path.join(SHIPPED_WEIGHTS,
                                                                                "sarcnn_default.json")).sha256


def test_ratio_method_runs_tile_by_tile_as_the_whole_image(tmp_path):
    """The own change's region grows over GROWTH_WINDOWS windows and the date-alone pass has its
    own network: tiles of 64 pixels, the change across their corners, give the whole image's output."""
    clean = [np.tile(c, (2, 2))[:96, :112] for c in clean_dates(3, changed=None)]
    clean[1][40:90, 50:100] *= 5.0
    paths = write_stack(tmp_path, clean)
    outputs = []
    for tile in (None, 64):
        outputs.append(str(tmp_path / f"rabasar_{tile}.tif"))
        despeckle_stack(paths, outputs[-1], MultitemporalSettings(looks=(1.0,), units="intensity", targets=(2,),
                                                                   tile=tile), QUIET)
    np.testing.assert_allclose(read_geotiff(outputs[1]), read_geotiff(outputs[0]), rtol=1e-4)


def test_outputs_hold_the_target_dates_bands_in_date_order_with_georeference_and_nodata(tmp_path):
    clean = [np.stack([c, 0.25 * c]) for c in clean_dates(3, changed=1)]
    paths = write_stack(tmp_path, clean, looks=4, descriptions=("VV", "VH"))
    data = read_geotiff(paths[2]).astype(np.float32)
    data[:, 0:4, 0:6] = np.nan  # nodata in date 3 only
    write_geotiff(paths[2], data, nodata=np.nan, descriptions=("VV", "VH"))
    out = str(tmp_path / "out.tif")
    report = despeckle_stack(paths, out, MultitemporalSettings(method="quegan", layout="dual", targets=(3, 1),
                                                               units="intensity"), QUIET)
    info = raster_info(out)
    assert report.targets == (1, 3) and info.band_count == 4
    assert info.descriptions == ("date 1 (date1.tif) VV", "date 1 (date1.tif) VH", "date 3 (date3.tif) VV",
                                 "date 3 (date3.tif) VH")
    assert info.geotransform == GEOTRANSFORM and info.crs_wkt == raster_info(paths[0]).crs_wkt
    assert (info.width, info.height) == (SHAPE[1], SHAPE[0])
    values = read_geotiff(out)
    assert all(math.isnan(v) for v in info.nodata)
    assert np.isnan(values[2:, 0:4, 0:6]).all() and not np.isnan(values[:2]).any()
    assert not np.isnan(values[2:, 8:, 8:]).any()
    assert np.median(values[1] / values[0]) == pytest.approx(0.25, rel=0.1)  # VH stays VH
    metadata = info.metadata
    assert metadata["SAR_DESPECKLE_ALGORITHM"] == "despeckle_multitemporal"
    assert metadata["SAR_DESPECKLE_METHOD"] == "quegan"
    assert json.loads(metadata["SAR_DESPECKLE_TARGETS"]) == [1, 3]
    assert len(json.loads(metadata["SAR_DESPECKLE_LOOKS"])) == 3


@pytest.mark.parametrize("units", ["amplitude", "dB"])
def test_amplitude_and_db_give_the_intensity_answer_in_their_units(tmp_path, units):
    clean = clean_dates(3)
    results = {}
    for kind in ("intensity", units):
        folder = tmp_path / kind
        folder.mkdir()
        paths = write_stack(folder, clean, looks=2, seed=4, units=kind)
        out = str(folder / "out.tif")
        despeckle_stack(paths, out, MultitemporalSettings(method="quegan", looks=(2.0,), units=kind), QUIET)
        results[kind] = read_geotiff(out)
    expected = np.sqrt(results["intensity"]) if units == "amplitude" else 10 * np.log10(results["intensity"])
    np.testing.assert_allclose(results[units], expected, rtol=1e-4, atol=1e-4)


def c2_dates(rng, k, shape, looks, covariance=np.array([[1.0, 0.3 + 0.2j], [0.3 - 0.2j, 0.25]])):
    """(k, 4, rows, cols) C2 bands of ``looks``-look complex Gaussian dates."""
    dates = []
    for _ in range(k):
        z = (rng.standard_normal((looks, *shape, 2)) + 1j * rng.standard_normal((looks, *shape, 2))) / math.sqrt(2)
        v = z @ np.linalg.cholesky(covariance).T
        c12 = (v[..., 0] * np.conj(v[..., 1])).mean(0)
        dates.append(np.stack([(abs(v[..., 0]) ** 2).mean(0), (abs(v[..., 1]) ** 2).mean(0), c12.real, c12.imag]))
    return np.stack(dates)


@pytest.mark.parametrize("method", ["quegan", "rabasar"])
def test_c2_stack_gives_valid_covariances(tmp_path, method):
    rng = np.random.default_rng(5)
    paths = [write_geotiff(str(tmp_path / f"c2_{t}.tif"), date.astype(np.float32))
             for t, date in enumerate(c2_dates(rng, 3, (48, 48), looks=2))]
    out = str(tmp_path / "c2.tif")
    despeckle_stack(paths, out, MultitemporalSettings(method=method, layout="c2", targets=(2,)), QUIET)
    c11, c22, re, im = read_geotiff(out)
    assert (c11 > 0).all() and (c22 > 0).all()
    assert (re ** 2 + im ** 2 <= c11 * c22 * (1 + 1e-5)).all()
    assert np.median(c22 / c11) == pytest.approx(0.25, rel=0.2)
    assert raster_info(out).descriptions == ("date 2 (c2_1.tif) C11", "date 2 (c2_1.tif) C22",
                                             "date 2 (c2_1.tif) Re C12", "date 2 (c2_1.tif) Im C12")


# ---------------------------------------------------------------------------- RATIO and REPORT


def flat_stack_report(folder):
    """Eight dates of one flat reflectivity, 4 looks each; Quegan's filter with a 21 x 21 window
    on dates 2 and 5 with RATIO and REPORT. With local means this steady the output is about the
    temporal mean, J_t = (1/N) sum_i I_i, so the ratio I_t / J_t is N times a Beta(L, (N - 1) L)
    variable: mean 1, ENL (N L + 1) / (N - 1) = 33 / 7, white."""
    paths = write_stack(folder, [np.full((128, 128), 2.0)] * 8, looks=4, seed=1)
    out, ratio, report = (str(folder / name) for name in ("out.tif", "ratio.tif", "report.html"))
    result = despeckle_stack(paths, out, MultitemporalSettings(method="quegan", looks=(4.0,), units="intensity",
                                                               targets=(5, 2), window=21), QUIET, ratio, report)
    return paths, out, ratio, report, result


def test_report_gives_the_known_ratio_statistics_of_each_target_date(tmp_path):
    paths, out, ratio, report, result = flat_stack_report(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in paths] + [
        "out.tif", "ratio.tif", "report.html", "report.json", "report.png"])
    with open(tmp_path / "report.json", encoding="utf-8") as stream:
        written = json.load(stream)
    assert written == json.loads(json.dumps(result.quality))
    assert written["algorithm"] == "despeckle_multitemporal" and written["targets"] == [2, 5]
    assert written["inputs"] == paths and written["method"] == "quegan" and written["device"] == "cpu"
    assert written["seconds"] > 0
    assert [(band["band"], band["date"], band["description"]) for band in written["bands"]] == [
        (1, 2, "date 2 (date2.tif)"), (2, 5, "date 5 (date5.tif)")]
    for band in written["bands"]:
        assert band["looks_used"] == 4.0
        assert band["looks_estimated"] == pytest.approx(4.0, rel=0.12)
        assert band["ratio"]["mean"] == pytest.approx(1.0, abs=0.01)
        assert band["ratio"]["enl"] == pytest.approx(33 / 7, rel=0.05)
        for lags in (band["ratio"]["autocorrelation_rows"], band["ratio"]["autocorrelation_cols"],
                     band["input_speckle"]["autocorrelation_rows"], band["input_speckle"]["autocorrelation_cols"]):
            assert len(lags) == 2 and all(abs(value) < 0.06 for value in lags)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "date 5 (date5.tif)" in page and 'src="report.png"' in page
    # the RATIO raster is each target date's input over its output
    outputs, ratios = read_geotiff(out), read_geotiff(ratio)
    for index, date in enumerate((2, 5)):
        np.testing.assert_allclose(ratios[index], read_geotiff(paths[date - 1])[0] / outputs[index], rtol=1e-5)
    assert raster_info(ratio).descriptions == ("ratio I/I_hat date 2 (date2.tif)", "ratio I/I_hat date 5 (date5.tif)")


def test_report_of_c2_dates_covers_c11_and_c22(tmp_path):
    rng = np.random.default_rng(5)
    paths = [write_geotiff(str(tmp_path / f"c2_{t}.tif"), date.astype(np.float32))
             for t, date in enumerate(c2_dates(rng, 3, (48, 48), looks=2))]
    result = despeckle_stack(paths, str(tmp_path / "c2.tif"), MultitemporalSettings(method="quegan", layout="c2",
                             targets=(2,)), QUIET, str(tmp_path / "ratio.tif"), str(tmp_path / "c2.html"))
    assert [(band["band"], band["description"]) for band in result.quality["bands"]] == [
        (1, "date 2 (c2_1.tif) C11"), (2, "date 2 (c2_1.tif) C22")]
    assert all(band["ratio"]["mean"] == pytest.approx(1.0, abs=0.05) for band in result.quality["bands"])
    assert raster_info(str(tmp_path / "ratio.tif")).band_count == 2


def test_report_that_is_not_html_is_refused_before_any_output(tmp_path):
    paths = write_stack(tmp_path, clean_dates(2))
    before = set(os.listdir(tmp_path))
    with pytest.raises(SarDespeckleError, match="must be an HTML file"):
        despeckle_stack(paths, str(tmp_path / "out.tif"), MultitemporalSettings(method="quegan"), QUIET,
                        report_path=str(tmp_path / "report.txt"))
    assert set(os.listdir(tmp_path)) == before


def test_grid_mismatch_is_refused_before_any_output(tmp_path):
    paths = write_stack(tmp_path, clean_dates(2))
    shift_origin(paths[1])
    before = set(os.listdir(tmp_path))
    with pytest.raises(SarDespeckleError, match="different grid"):
        despeckle_stack(paths, str(tmp_path / "out.tif"), MultitemporalSettings(method="quegan"), QUIET)
    assert set(os.listdir(tmp_path)) == before


def test_cancel_leaves_no_output(tmp_path):
    paths = write_stack(tmp_path, clean_dates(2))
    before = set(os.listdir(tmp_path))
    with pytest.raises(SarDespeckleError, match="Cancelled"):
        despeckle_stack(paths, str(tmp_path / "out.tif"), MultitemporalSettings(method="quegan", looks=(1.0,)),
                        Feedback(is_cancelled=lambda: True), str(tmp_path / "ratio.tif"),
                        str(tmp_path / "report.html"))
    assert set(os.listdir(tmp_path)) == before


def test_real_two_date_dual_pol_patch_keeps_covariances_valid_and_ratio_mean_one(tmp_path):
    from scipy.io import loadmat

    from sar_despeckle_plugin.core.quality import ratio_statistics

    data = loadmat(shared_data("mtdn_patches/1.mat"))["data"].astype(np.float64)
    paths = []
    for date, first in enumerate((0, 7), 1):  # C11, Re C12, Im C12, C22 -> C11, C22, Re C12, Im C12
        bands = np.stack([data[..., first], data[..., first + 3], data[..., first + 1], data[..., first + 2]])
        paths.append(write_geotiff(str(tmp_path / f"patch_{date}.tif"), bands.astype(np.float32)))
    for method in ("quegan", "rabasar"):
        out = str(tmp_path / f"{method}.tif")
        despeckle_stack(paths, out, MultitemporalSettings(method=method, layout="c2"), QUIET)
        result = read_geotiff(out)
        for date in range(2):
            c11, c22, re, im = result[4 * date: 4 * date + 4]
            assert (re ** 2 + im ** 2 <= c11 * c22 * (1 + 1e-5)).all()
            for band, intensity in ((0, c11), (1, c22)):
                statistics = ratio_statistics(read_geotiff(paths[date])[band], intensity)
                assert statistics.mean == pytest.approx(1.0, abs=0.15), (method, date, band)


# ---------------------------------------------------------------------------- through QGIS


def test_algorithm_has_help_for_every_parameter(qgis_processing):
    algorithm = documented_algorithm("sar_despeckle:despeckle_multitemporal")
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert {"INPUTS", "BAND_LAYOUT", "INPUT_UNITS", "LOOKS", "TARGET", "METHOD", "WINDOW", "DEVICE", "OUTPUT"} <= names
    assert {"RATIO", "REPORT"} <= names
    assert [o.name() for o in algorithm.outputDefinitions()] == ["OUTPUT", "RATIO", "REPORT", "REPORT_JSON"]


def test_processing_run_matches_core(qgis_processing, tmp_path):
    paths = write_stack(tmp_path, clean_dates(3), seed=6)
    result = qgis_processing.run("sar_despeckle:despeckle_multitemporal", {
        "INPUTS": paths, "TARGET": "2", "LOOKS": 1, "INPUT_UNITS": 0, "OUTPUT": str(tmp_path / "out.tif"),
    })
    reference = str(tmp_path / "reference.tif")
    despeckle_stack(paths, reference, MultitemporalSettings(looks=(1.0,), units="intensity", targets=(2,)), QUIET)
    np.testing.assert_array_equal(read_geotiff(result["OUTPUT"]), read_geotiff(reference))
    assert raster_info(result["OUTPUT"]).metadata["SAR_DESPECKLE_METHOD"] == "rabasar"  # the default


def test_qgis_process_json_run(qgis_process, tmp_path):
    paths = write_stack(tmp_path, clean_dates(3), seed=7)
    out = str(tmp_path / "cli.tif")
    done = qgis_process("run", "sar_despeckle:despeckle_multitemporal", "--json", *(f"--INPUTS={p}" for p in paths),
                        "--LOOKS=1", "--INPUT_UNITS=0", "--METHOD=0", "--TARGET=1,3", "--WINDOW=5", f"--OUTPUT={out}")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["OUTPUT"] == out
    reference = str(tmp_path / "reference.tif")
    despeckle_stack(paths, reference, MultitemporalSettings(method="quegan", looks=(1.0,), units="intensity",
                                                            targets=(1, 3), window=5), QUIET)
    np.testing.assert_array_equal(read_geotiff(out), read_geotiff(reference))


def test_report_through_processing_run_and_qgis_process(qgis_processing, qgis_process, tmp_path):
    paths = write_stack(tmp_path, [np.full((128, 128), 2.0)] * 8, looks=4, seed=1)
    common = {"INPUTS": paths, "LOOKS": 4, "INPUT_UNITS": 0, "METHOD": 0, "WINDOW": 21, "TARGET": "2, 5"}
    result = qgis_processing.run("sar_despeckle:despeckle_multitemporal", {
        **common, "OUTPUT": str(tmp_path / "out.tif"), "RATIO": str(tmp_path / "ratio.tif"),
        "REPORT": str(tmp_path / "report.html"),
    })
    assert result["REPORT_JSON"] == str(tmp_path / "report.json") and result["RATIO"] == str(tmp_path / "ratio.tif")
    with open(result["REPORT_JSON"], encoding="utf-8") as stream:
        bands = json.load(stream)["bands"]
    assert [band["date"] for band in bands] == [2, 5]
    assert all(band["ratio"]["enl"] == pytest.approx(33 / 7, rel=0.05) for band in bands)
    done = qgis_process("run", "sar_despeckle:despeckle_multitemporal", "--json", *(f"--INPUTS={p}" for p in paths),
                        "--LOOKS=4", "--INPUT_UNITS=0", "--METHOD=0", "--WINDOW=21", "--TARGET=2,5",
                        f"--OUTPUT={tmp_path / 'cli.tif'}", f"--REPORT={tmp_path / 'cli.html'}")
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert results["REPORT"] == str(tmp_path / "cli.html") and results["REPORT_JSON"] == str(tmp_path / "cli.json")
    with open(tmp_path / "cli.json", encoding="utf-8") as stream:
        assert json.load(stream)["bands"] == bands  # the same run, whichever way it is started
    assert not (tmp_path / "cli_ratio.tif").exists() and os.path.exists(tmp_path / "cli.png")


def test_model_chains_stack_to_multitemporal_to_change_detection(qgis_processing, tmp_path):
    """A modeler chain: the stack -> despeckle_multitemporal of date 1 and of date 2 -> change_detection."""
    from qgis.core import (
        QgsProcessing, QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource, QgsProcessingModelOutput, QgsProcessingModelParameter,
        QgsProcessingParameterMultipleLayers,
    )

    from qgis.core import QgsApplication

    def child_algorithm(algorithm: str, child_id: str, sources: dict) -> QgsProcessingModelChildAlgorithm:
        """A child with ``sources`` and every other parameter at its default."""
        child = QgsProcessingModelChildAlgorithm(algorithm)
        child.setChildId(child_id)
        for parameter in QgsApplication.processingRegistry().algorithmById(algorithm).parameterDefinitions():
            if parameter.isDestination():
                continue
            value = sources.get(parameter.name(), parameter.defaultValue())
            value = value if isinstance(value, list) else [
                QgsProcessingModelChildParameterSource.fromStaticValue(value)]
            child.addParameterSources(parameter.name(), value)
        return child

    model = QgsProcessingModelAlgorithm("stack_changes", "tests")
    model.addModelParameter(QgsProcessingParameterMultipleLayers("stack", "Stack", QgsProcessing.TypeRaster),
                            QgsProcessingModelParameter("stack"))
    for target in (1, 2):
        model.addChildAlgorithm(child_algorithm("sar_despeckle:despeckle_multitemporal", f"date{target}", {
            "INPUTS": [QgsProcessingModelChildParameterSource.fromModelParameter("stack")],
            "TARGET": str(target), "METHOD": 0, "LOOKS": 1.0, "INPUT_UNITS": 0,
        }))
    change = child_algorithm("sar_despeckle:change_detection", "change", {
        "INPUTS": [QgsProcessingModelChildParameterSource.fromChildOutput(f"date{t}", "OUTPUT") for t in (1, 2)],
        "INPUT_UNITS": 0, "WINDOW": 5,
    })
    output = QgsProcessingModelOutput("mask")
    output.setChildId("change")
    output.setChildOutputName("CHANGE_MASK")
    change.setModelOutputs({"mask": output})
    model.addChildAlgorithm(change)
    assert model.validate()[0], model.validate()[1]

    paths = write_stack(tmp_path, clean_dates(3, changed=1), seed=8)
    out = str(tmp_path / "mask.tif")
    result = qgis_processing.run(model, {"stack": paths, "change:mask": out})
    assert result["change:mask"] == out
    mask = read_geotiff(out)[0]
    inside, unchanged = region_masks()
    assert mask[inside].mean() > 0.9 and mask[unchanged].mean() < 0.05
    assert raster_info(out).geotransform == GEOTRANSFORM


def other_size(folder):
    paths = write_stack(folder, clean_dates(1))
    rng = np.random.default_rng(0)
    return paths + [write_geotiff(str(folder / "small.tif"), rng.gamma(1, 1, (60, 64)).astype(np.float32))]


def other_layout(folder):
    first = write_stack(folder, clean_dates(1))
    second = folder / "second"
    second.mkdir()
    return first + write_stack(second, [np.stack([c, c]) for c in clean_dates(1)])


def other_crs(folder):
    paths = write_stack(folder, clean_dates(2))
    set_crs(paths[1])
    return paths


def nodata_date(folder):
    paths = write_stack(folder, clean_dates(3))
    write_geotiff(paths[1], np.full(SHAPE, np.nan, np.float32), nodata=np.nan)
    return paths


def mixed_units(folder):
    paths = write_stack(folder, clean_dates(1), looks=4)
    second = folder / "second"
    second.mkdir()
    return paths + write_stack(second, clean_dates(1), looks=4, units="dB")


def complex_date(folder):
    paths = write_stack(folder, clean_dates(1))
    rng = np.random.default_rng(1)
    samples = (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE)).astype(np.complex64)
    return paths + [write_geotiff(str(folder / "slc.tif"), samples, data_type=gdal.GDT_CFloat32)]


BAD_INPUTS = {
    "one date only": (lambda d: write_stack(d, clean_dates(1)), {}, "at least two dates"),
    "different size": (other_size, {}, "co-registered"),
    "different CRS": (other_crs, {}, "different CRS"),
    "different band counts": (other_layout, {}, "different band layouts"),
    "layout does not match": (lambda d: write_stack(d, [np.stack([c, c]) for c in clean_dates(2)]), {},
                              "BAND_LAYOUT"),
    "a date full of nodata": (nodata_date, {}, "Date 2 .* has no valid pixel"),
    "dates in mixed units": (mixed_units, {}, "Date 1 .* the image looks linear"),
    "complex input": (complex_date, {}, "is complex"),
    "target beyond the dates": (lambda d: write_stack(d, clean_dates(2)), {"TARGET": "3"}, r"\(TARGET\) names date 3"),
    "even window": (lambda d: write_stack(d, clean_dates(2)), {"WINDOW": 6}, r"Window \(WINDOW\) must be odd"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(qgis_processing, tmp_path, case):
    make_inputs, extra, message = BAD_INPUTS[case]
    assert_refused_without_output(qgis_processing, "sar_despeckle:despeckle_multitemporal",
                                  {"INPUTS": make_inputs(tmp_path), "OUTPUT": str(tmp_path / "out.tif"), **extra},
                                  tmp_path, message)


def correlated_speckle(shape, seed: int, spread: float = 1.2) -> np.ndarray:
    """Single-look intensity speckle (mean 1) correlated in space as band-limited sensors make
    it: complex circular Gaussian speckle smoothed by a separable Gaussian point spread
    (``spread`` pixels), then |z|^2."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    offsets = np.arange(-4, 5)
    kernel = np.exp(-0.5 * (offsets / spread) ** 2)
    for axis in (0, 1):
        z = np.apply_along_axis(lambda line: np.convolve(line, kernel, mode="same"), axis, z)
    intensity = np.abs(z) ** 2
    return intensity / intensity.mean()


def test_mean_variance_factor_predicts_the_looks_of_local_means_of_correlated_speckle():
    """The looks of 7 x 7 block means of correlated single-look speckle are 49 / factor, the
    factor computed from the autocorrelation measured at lags 1 and 2 (within 20 %); white
    speckle has factor 1."""
    from sar_despeckle_plugin.core.despeckle.choice import measure_correlation
    from sar_despeckle_plugin.core.speckle import mean_variance_factor

    assert mean_variance_factor(None, 7) == 1.0
    assert mean_variance_factor(((0.0, -0.01), (0.0, 0.0)), 7) == 1.0
    intensity = correlated_speckle((700, 700), seed=4)
    correlation = measure_correlation([intensity], [np.ones(intensity.shape, bool)])
    assert correlation[0][0] > 0.4 and correlation[0][1] > 0.4
    factor = mean_variance_factor(correlation, 7)
    means = intensity.reshape(100, 7, 100, 7).mean(axis=(1, 3))
    measured_looks = 1.0 / means.var()
    assert factor > 4.0
    assert measured_looks == pytest.approx(49.0 / factor, rel=0.2)


def test_change_test_counts_correlated_local_means_as_fewer_looks():
    """Three unchanged dates of correlated single-look speckle: counting each 7 x 7 mean as 49
    independent looks marks a large share of the target as a change of its own; the looks
    :func:`pipeline.change_looks` gives (factor measured on the dates) mark almost none."""
    from sar_despeckle_plugin.core.multitemporal.pipeline import change_looks

    shape = (192, 192)
    dates = np.stack([correlated_speckle(shape, seed=10 + t) for t in range(3)])  # (k, rows, cols)
    valid = np.ones(dates.shape, bool)
    settings = MultitemporalSettings(window=7)
    looks = [1.0, 1.0, 1.0]
    counted = change_looks(settings, looks, [dates[:, None]], [valid], QUIET)
    assert all(value < 0.25 for value in counted)
    intensity = torch.from_numpy(dates[None, :, None])  # (B, k, C, H, W)
    means = local_means(intensity, torch.from_numpy(valid[None]), 7)
    naive = own_change(means, torch.from_numpy(valid[None]), 1, looks, 7).float().mean().item()
    corrected = own_change(means, torch.from_numpy(valid[None]), 1, counted, 7).float().mean().item()
    assert naive > 0.01
    assert corrected < 0.002
