"""Change detection: the statistics, the thresholds, the file pipeline and sar_despeckle:change_detection.

Synthetic stacks: one reflectivity, independent speckle per date (Gamma for intensities, sums of
complex Gaussian outer products for C2, so exactly Wishart), changes inserted where the answer
is known.
"""

import json
import math
import os

import numpy as np
import pytest
import torch
from osgeo import gdal, ogr, osr

from sar_despeckle_plugin.core.change.detectors import DETECTORS
from sar_despeckle_plugin.core.change.looks import averaging_factor
from sar_despeckle_plugin.core.change.pipeline import detect_changes
from sar_despeckle_plugin.core.change.settings import BLOCKS, ChangeOutputs, ChangeSettings
from sar_despeckle_plugin.core.change.statistics import (
    box_correction, change_dates, log_ratio_index, omnibus_pvalue, sequential_pvalues,
)
from sar_despeckle_plugin.core.change.thresholds import (
    THRESHOLD_METHODS, automatic_threshold, kittler_illingworth_threshold,
)
from sar_despeckle_plugin.core.choices import (
    AUTOMATIC_CHANGE_METHOD, BAND_LAYOUT_LABELS, CHANGE_METHOD_LABELS, LAYOUT_BANDS,
)
from sar_despeckle_plugin.core.errors import SarDespeckleError
from sar_despeckle_plugin.core.feedback import Feedback
from sar_despeckle_plugin.core.raster import raster_info

from .synthetic import (
    GEOTRANSFORM, assert_refused_without_output, documented_algorithm, read_geotiff, set_crs, shift_origin,
    write_geotiff,
)

QUIET = Feedback(warn=lambda message: None)
#: The pixel-level decision on the dates as given (no prefilter, no sieve): what the statistical
#: tests' own checks need.
AS_GIVEN = dict(prefilter=False, min_area=0)
C2_COVARIANCE = np.array([[1.0, 0.3 + 0.2j], [0.3 - 0.2j, 0.25]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def c2_sample(rng, looks, shape, covariance=C2_COVARIANCE):
    """C2 bands (C11, C22, Re C12, Im C12) averaged over ``looks`` complex Gaussian looks."""
    z = (rng.standard_normal((looks, *shape, 2)) + 1j * rng.standard_normal((looks, *shape, 2))) / math.sqrt(2)
    v = z @ np.linalg.cholesky(covariance).T
    c12 = (v[..., 0] * np.conj(v[..., 1])).mean(0)
    return np.stack([(abs(v[..., 0]) ** 2).mean(0), (abs(v[..., 1]) ** 2).mean(0), c12.real, c12.imag])


def date(rng, layout, looks, shape, gain=1.0):
    """One speckled date of a constant scene times ``gain`` (array or number)."""
    if layout == "c2":
        return c2_sample(rng, looks, shape) * gain
    levels = (1.0,) if layout == "single" else (1.0, 0.25)
    return np.stack([level * gain * rng.gamma(looks, 1 / looks, shape) for level in levels])


def stack_of(dates):
    return torch.from_numpy(np.stack(dates))[None]


def looks_of(k, looks):
    return torch.full((1, k, 1, 1), float(looks), dtype=torch.float64)


def test_catalog_lists_exactly_the_detectors():
    assert [m for m in CHANGE_METHOD_LABELS if m != AUTOMATIC_CHANGE_METHOD] == list(DETECTORS)
    assert list(BAND_LAYOUT_LABELS) == list(LAYOUT_BANDS) == list(BLOCKS)


# ---------------------------------------------------------------------------- omnibus test


def test_box_terms_are_the_papers_for_equal_looks():
    """Conradsen et al. 2016: rho = 1 - (2p^2-1)/(6(k-1)p) (k/n - 1/(nk)), omega2 likewise."""
    for layout, p in (("single", 1), ("c2", 2)):
        for k, n in ((2, 1.0), (3, 4.0), (6, 13.0)):
            rho, omega2, f = box_correction(layout, looks_of(k, n)[..., 0, 0])
            paper_rho = 1 - (2 * p * p - 1) / (6 * (k - 1) * p) * (k / n - 1 / (n * k))
            paper_omega2 = (p * p * (p * p - 1) / (24 * paper_rho ** 2) * (k / n ** 2 - 1 / (n * n * k * k))
                            - p * p * (k - 1) / 4 * (1 - 1 / paper_rho) ** 2)
            assert float(rho) == pytest.approx(paper_rho) and float(omega2) == pytest.approx(paper_omega2)
            assert f == p * p * (k - 1)
    # the dual-pol diagonal: two p = 1 blocks, twice the degrees of freedom and omega2
    single = box_correction("single", looks_of(3, 2.0)[..., 0, 0])
    dual = box_correction("dual", looks_of(3, 2.0)[..., 0, 0])
    assert dual[2] == 2 * single[2] and float(dual[1]) == pytest.approx(2 * float(single[1]))


CALIBRATION = [  # (layout, dates k, looks, p-value approximation)
    ("single", 2, 1, "auto"), ("single", 3, 4, "box"), ("single", 5, 1, "auto"), ("single", 4, 4, "auto"),
    ("dual", 3, 1, "auto"), ("dual", 2, 5, "box"),
    ("c2", 2, 4, "box"), ("c2", 3, 2, "auto"), ("c2", 5, 4, "auto"),
]


@pytest.mark.parametrize("layout, k, looks, approximation", CALIBRATION)
def test_omnibus_false_alarm_rate_matches_significance(layout, k, looks, approximation):
    """On unchanged pixels the rate of p < alpha is alpha within 20 % (alpha = 0.01 and 0.05)."""
    rng = np.random.default_rng(k * 10 + looks)
    shape = (200, 200) if layout == "c2" else (260, 260)
    p = omnibus_pvalue(stack_of([date(rng, layout, looks, shape) for _ in range(k)]),
                              looks_of(k, looks), layout, approximation)
    for alpha in (0.01, 0.05):
        assert float((p < alpha).double().mean()) == pytest.approx(alpha, rel=0.2), alpha
    if k > 2:
        sequential = sequential_pvalues(stack_of([date(rng, layout, looks, shape) for _ in range(k)]),
                                               looks_of(k, looks), layout, approximation)
        assert sequential.shape == (1, k - 1, *shape)
        for j in range(k - 1):
            assert float((sequential[:, j] < 0.01).double().mean()) == pytest.approx(0.01, rel=0.25)


def test_box_alone_is_off_at_one_look_which_auto_corrects():
    """Why ``auto`` exists: Box's expansion gives too many false alarms with single-look data."""
    rng = np.random.default_rng(3)
    stack = stack_of([date(rng, "single", 1, (300, 300)) for _ in range(2)])
    box = float((omnibus_pvalue(stack, looks_of(2, 1), "single", "box") < 0.01).double().mean())
    auto = float((omnibus_pvalue(stack, looks_of(2, 1), "single", "auto") < 0.01).double().mean())
    assert box > 0.0118 and auto == pytest.approx(0.01, rel=0.15)


def test_unequal_looks_per_date_stay_calibrated():
    rng = np.random.default_rng(5)
    shape = (260, 260)
    dates = [date(rng, "single", 4, shape), date(rng, "single", 1, shape), date(rng, "single", 2, shape)]
    looks = torch.tensor([4.0, 1.0, 2.0], dtype=torch.float64)[None, :, None, None]
    p = omnibus_pvalue(stack_of(dates), looks, "single")
    assert float((p < 0.01).double().mean()) == pytest.approx(0.01, rel=0.2)


def test_omnibus_detects_changes_and_the_first_change_date():
    """k = 5: A changes before date 3, B before date 5, C before date 2 and back before date 4."""
    rng = np.random.default_rng(8)
    shape = (90, 90)
    gains = [np.ones(shape) for _ in range(5)]
    for t in range(2, 5):
        gains[t][:30, :30] = 8.0          # A: first change date 3
    gains[4][30:60, 30:60] = 1 / 8        # B: date 5
    for t in (1, 2):
        gains[t][60:, 60:] = 8.0          # C: date 2 (and back at date 4)
    truth = np.zeros(shape, int)
    truth[:30, :30], truth[30:60, 30:60], truth[60:, 60:] = 3, 5, 2
    for layout in ("single", "c2"):
        looks = 9
        stack = stack_of([date(rng, layout, looks, shape, g) for g in gains])
        omnibus = omnibus_pvalue(stack, looks_of(5, looks), layout)
        sequential = sequential_pvalues(stack, looks_of(5, looks), layout)
        changed = omnibus < 0.01  # as the omnibus detector and the pipeline decide them
        dates = torch.where(changed, change_dates(sequential, 0.01), 0)
        changed, dates = changed[0].numpy(), dates[0].numpy()
        assert changed[truth > 0].mean() > 0.99
        assert changed[truth == 0].mean() < 0.03
        assert (dates[truth > 0] == truth[truth > 0]).mean() > 0.95
        assert (dates[~changed] == 0).all()


# ---------------------------------------------------------------------------- log-ratio


def test_log_ratio_index_is_standardised_even_with_unequal_looks():
    """Date 1 4-look, date 2 single-look and no change: the signed index has mean 0, variance 1."""
    rng = np.random.default_rng(2)
    shape = (400, 400)
    before = torch.from_numpy(date(rng, "single", 4, shape))[None]
    after = torch.from_numpy(date(rng, "single", 1, shape))[None]
    x = log_ratio_index(before, after, torch.tensor(4.0), torch.tensor(1.0), "single")[0].numpy()
    signed = np.log(after[0, 0].numpy() / before[0, 0].numpy())
    assert (x ** 2).mean() == pytest.approx(1.0, rel=0.03)
    assert abs(np.mean(np.sign(signed - np.median(signed)) * x)) < 0.05
    plain_bias = np.log(after[0, 0].numpy() / before[0, 0].numpy()).mean()
    assert abs(plain_bias) > 0.4  # the trap the debiasing removes


def two_class_sample(rng, n, changed_fraction, noise, signal):
    k = int(n * changed_fraction)
    return np.concatenate([noise(rng, n - k), signal(rng, k)]), np.r_[np.zeros(n - k, bool), np.ones(k, bool)]


def bayes_error(values, truth):
    candidates = np.quantile(values, np.linspace(0.2, 0.999, 800))
    return min(np.mean((values > t) != truth) for t in candidates)


@pytest.mark.parametrize("method", THRESHOLD_METHODS)
def test_thresholds_on_known_mixtures(method):
    """Change index samples with a known answer: the automatic threshold's error is near the best
    threshold's (Otsu only on a balanced mixture, where it is meant to work)."""
    rng = np.random.default_rng(4)
    cases = {
        # x of one channel: |N(0,1)| without change, |N(4, 1.2)| with change, 10 % changed
        "folded gaussian": (lambda r, n: np.abs(r.standard_normal(n)),
                            lambda r, n: np.abs(4 + 1.2 * r.standard_normal(n)), 0.1, 1),
        # x of two channels: chi2_2 root without change, non-central with change, 25 % changed
        "chi": (lambda r, n: np.sqrt(r.chisquare(2, n)),
                lambda r, n: np.sqrt(r.noncentral_chisquare(2, 30, n)), 0.25, 2),
        "balanced": (lambda r, n: np.abs(1 + 0.5 * r.standard_normal(n)),
                     lambda r, n: np.abs(5 + 0.5 * r.standard_normal(n)), 0.5, 1),
    }
    for name, (noise, signal, fraction, channels) in cases.items():
        if method == "otsu" and name != "balanced":
            continue
        values, truth = two_class_sample(rng, 60_000, fraction, noise, signal)
        threshold = automatic_threshold(method, values, channels)
        error = np.mean((values > threshold) != truth)
        assert error < bayes_error(values, truth) + 0.01, (name, threshold, error)


def test_kittler_illingworth_survives_a_spike_at_zero():
    rng = np.random.default_rng(6)
    values = np.concatenate([np.zeros(500), np.abs(rng.standard_normal(50_000)), 5 + rng.standard_normal(5000)])
    for model in ("gg", "gamma"):
        assert 2.0 < kittler_illingworth_threshold(values, model) < 4.5


def test_averaging_factor_measures_speckle_correlation():
    rng = np.random.default_rng(9)
    white = rng.gamma(1, 1, (512, 512))
    correlated = (white[:-1, :-1] + white[1:, :-1] + white[:-1, 1:] + white[1:, 1:]) / 4  # 2 x 2 moving mean
    valid = np.ones((512, 512), bool)
    assert averaging_factor([white], [valid], 1.0, 3) == pytest.approx(1.0, abs=0.1)
    # rho = 1/2 at lags (0, 1) and (1, 0), 1/4 at (1, 1): kappa(3) = 1 + 4 (2/3) / 2 + 4 (4/9) / 4
    expected = 1 + 4 * (2 / 3) * 0.5 + 4 * (4 / 9) * 0.25
    assert averaging_factor([correlated], [valid[:-1, :-1]], 4.0, 3) == pytest.approx(expected, rel=0.1)
    assert averaging_factor([white], [valid], 1.0, 1) == 1.0


# ---------------------------------------------------------------------------- the file pipeline


def write_dates(folder, layout="single", looks=4, gains=(1.0, 1.0), shape=(64, 72), seed=0, units="intensity",
                region=(slice(16, 40), slice(20, 52)), contrast=6.0, **kwargs):
    """GeoTIFF dates; from the second date on, ``region`` is multiplied by ``contrast`` at the
    dates whose ``gains`` entry is not 1."""
    rng = np.random.default_rng(seed)
    paths = []
    for t, gain in enumerate(gains):
        g = np.ones(shape)
        g[region] = contrast if gain != 1.0 else 1.0
        bands = date(rng, layout, looks, shape, g).astype(np.float32)
        if units == "amplitude":
            bands = np.sqrt(bands)
        elif units == "dB":
            bands = 10 * np.log10(bands)
        paths.append(write_geotiff(str(folder / f"date{t + 1}.tif"), bands, **kwargs))
    return paths


def truth_of(shape=(64, 72), region=(slice(16, 40), slice(20, 52))):
    truth = np.zeros(shape, bool)
    truth[region] = True
    return truth


@pytest.mark.parametrize("method, layout", [
    ("omnibus", "single"), ("omnibus", "dual"), ("omnibus", "c2"),
    ("log_ratio_ki_gg", "single"), ("log_ratio_ki_gamma", "dual"), ("log_ratio_otsu", "single"),
])
def test_each_method_finds_an_inserted_change(tmp_path, method, layout):
    paths = write_dates(tmp_path, layout, looks=4, gains=(1.0, 2.0), seed=1)
    outputs = ChangeOutputs(str(tmp_path / "map.tif"), str(tmp_path / "mask.tif"))
    settings = ChangeSettings(method=method, layout=layout, looks=(4.0,), window=3, **AS_GIVEN)
    report = detect_changes(paths, outputs, settings, QUIET)
    mask = read_geotiff(outputs.change_mask)[0]
    p = read_geotiff(outputs.change_map)[0]
    truth = truth_of()
    interior, outside = np.zeros_like(truth), np.ones_like(truth)
    interior[17:39, 21:51] = True  # a 3 x 3 window blurs the region's border by a pixel
    outside[15:41, 19:53] = False
    assert mask[interior].mean() > 0.97
    assert mask[outside].mean() < (0.02 if method == "omnibus" else 0.06)
    assert np.all((p >= 0) & (p <= 1)) and np.median(p[interior]) < 1e-6
    assert report.effective_looks[0] == pytest.approx(4 * 9 / report.averaging_factor)
    assert report.changed_fraction == pytest.approx(mask.mean(), abs=1e-9)


def test_outputs_keep_georeference_nodata_and_record_the_run(tmp_path):
    paths = write_dates(tmp_path, looks=4, gains=(1.0, 2.0, 2.0), seed=2)
    data = read_geotiff(paths[1]).astype(np.float32)
    data[0, 0:4, 0:5] = np.nan   # NaN declared as nodata
    data[0, 60:, 70:] = 0.0      # exact zeros are nodata too
    write_geotiff(paths[1], data, nodata=np.nan)
    outputs = ChangeOutputs(*(str(tmp_path / f"{n}.tif") for n in ("map", "mask", "date")))
    detect_changes(paths, outputs, ChangeSettings(method="omnibus", looks=(4.0,), window=3, **AS_GIVEN), QUIET)
    for path, nodata in ((outputs.change_map, -1.0), (outputs.change_mask, 255), (outputs.change_date, 255)):
        info = raster_info(path)
        assert info.geotransform == GEOTRANSFORM and info.crs_wkt and info.nodata == (nodata,)
        assert (info.width, info.height) == (72, 64)
        values = read_geotiff(path)[0]
        assert (values[0:4, 0:5] == nodata).all() and (values[60:, 70:] == nodata).all()
        assert (values[10:50, 10:60] != nodata).all()
        metadata = info.metadata
        assert metadata["SAR_DESPECKLE_ALGORITHM"] == "change_detection"
        assert metadata["SAR_DESPECKLE_METHOD"] == "omnibus"
        assert json.loads(metadata["SAR_DESPECKLE_LOOKS"]) == [4.0, 4.0, 4.0]
    assert gdal.Open(outputs.change_mask).GetRasterBand(1).DataType == gdal.GDT_Byte
    dates = read_geotiff(outputs.change_date)[0]
    assert (dates[18:38, 22:50] == 2).all()
    assert set(np.unique(dates)) <= {0, 2, 3, 255}


def test_estimated_looks_differ_per_date(tmp_path):
    rng = np.random.default_rng(3)
    paths = [write_geotiff(str(tmp_path / f"d{n}.tif"), date(rng, "single", n, (128, 128)).astype(np.float32))
             for n in (4, 1)]
    report = detect_changes(paths, ChangeOutputs(change_mask=str(tmp_path / "m.tif")),
                            ChangeSettings(method="omnibus", units="intensity", **AS_GIVEN), QUIET)
    assert report.looks[0] == pytest.approx(4, rel=0.25) and report.looks[1] == pytest.approx(1, rel=0.25)
    mask = read_geotiff(str(tmp_path / "m.tif"))[0]
    assert mask.mean() == pytest.approx(0.01, abs=0.008)


def test_amplitude_and_db_inputs_give_the_intensity_answer(tmp_path):
    results = []
    for units in ("intensity", "amplitude", "dB"):
        folder = tmp_path / units
        folder.mkdir()
        paths = write_dates(folder, looks=4, gains=(1.0, 2.0), seed=4, units=units)
        out = str(folder / "map.tif")
        detect_changes(paths, ChangeOutputs(change_map=out), ChangeSettings(method="omnibus", looks=(4.0,), units=units, **AS_GIVEN), QUIET)
        results.append(read_geotiff(out)[0])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-3, atol=1e-6)


def test_min_area_sieve_and_polygons_with_area_and_date(tmp_path):
    paths = write_dates(tmp_path, looks=4, gains=(1.0, 1.0, 2.0), seed=5, shape=(64, 72))
    outputs = ChangeOutputs(str(tmp_path / "map.tif"), str(tmp_path / "mask.tif"), str(tmp_path / "date.tif"),
                            str(tmp_path / "changes.gpkg"))
    report = detect_changes(paths, outputs, ChangeSettings(method="omnibus", looks=(4.0,), window=3, min_area=30), QUIET)
    mask = read_geotiff(outputs.change_mask)[0]
    dates = read_geotiff(outputs.change_date)[0]
    near = np.zeros_like(mask, bool)
    near[12:44, 16:56] = True  # the region, the pixel the 3 x 3 window blurs and what grows from it
    assert mask[~near].sum() == 0 and mask[truth_of()].mean() > 0.98  # isolated false alarms merged away
    assert ((dates > 0) == (mask == 1)).all() and (dates[18:38, 22:50] == 3).mean() > 0.97
    source = ogr.Open(outputs.change_polygons)
    layer = source.GetLayer(0)
    features = list(layer)
    assert len(features) == report.polygons >= 1
    pixel_area = GEOTRANSFORM[1] * -GEOTRANSFORM[5]
    assert sum(f.GetField("area") for f in features) == pytest.approx(mask.sum() * pixel_area)
    dated = {}
    for feature in features:
        dated[feature.GetField("date")] = dated.get(feature.GetField("date"), 0) + feature.GetField("area")
    assert dated[3] == pytest.approx((dates == 3).sum() * pixel_area) and set(dated) <= {2, 3}
    assert layer.GetSpatialRef().IsSame(osr.SpatialReference(wkt=raster_info(paths[0]).crs_wkt))
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no scratch left


def test_cancel_leaves_no_output(tmp_path):
    paths = write_dates(tmp_path, gains=(1.0, 2.0))
    outputs = ChangeOutputs(str(tmp_path / "map.tif"), str(tmp_path / "mask.tif"), None, str(tmp_path / "p.gpkg"))
    before = set(os.listdir(tmp_path))
    with pytest.raises(SarDespeckleError, match="Cancelled"):
        detect_changes(paths, outputs, ChangeSettings(looks=(4.0,)), Feedback(is_cancelled=lambda: True))
    assert set(os.listdir(tmp_path)) == before


# ---------------------------------------------------------------------------- through QGIS


def test_algorithm_has_help_for_every_parameter(qgis_processing):
    algorithm = documented_algorithm("sar_despeckle:change_detection")
    names = {p.name() for p in algorithm.parameterDefinitions()}
    assert {"INPUTS", "INPUT_UNITS", "LOOKS", "METHOD", "SIGNIFICANCE", "BAND_LAYOUT", "WINDOW"} <= names
    assert [o.name() for o in algorithm.outputDefinitions()] == ["CHANGE_MAP", "CHANGE_MASK", "CHANGE_DATE",
                                                                 "CHANGE_POLYGONS"]


def test_processing_run_matches_core(qgis_processing, tmp_path):
    paths = write_dates(tmp_path, layout="dual", looks=4, gains=(1.0, 1.0, 2.0), seed=6,
                        descriptions=("VV", "VH"))
    result = qgis_processing.run("sar_despeckle:change_detection", {
        "INPUTS": paths, "BAND_LAYOUT": 1, "LOOKS_PER_DATE": "4, 4, 4", "INPUT_UNITS": 0, "WINDOW": 3, "METHOD": 0,
        "PREFILTER": False, "MIN_AREA": 0,
        "SIGNIFICANCE": 0.001, "CHANGE_MAP": str(tmp_path / "map.tif"), "CHANGE_MASK": str(tmp_path / "mask.tif"),
        "CHANGE_DATE": str(tmp_path / "date.tif"), "CHANGE_POLYGONS": str(tmp_path / "changes.gpkg"),
    })
    assert set(result) == {"CHANGE_MAP", "CHANGE_MASK", "CHANGE_DATE", "CHANGE_POLYGONS"}
    reference = tmp_path / "reference"
    reference.mkdir()
    detect_changes(paths, ChangeOutputs(str(reference / "map.tif"), str(reference / "mask.tif")),
                   ChangeSettings(method="omnibus", layout="dual", looks=(4.0, 4.0, 4.0), units="intensity",
                                  window=3, significance=0.001, **AS_GIVEN), QUIET)
    np.testing.assert_array_equal(read_geotiff(result["CHANGE_MAP"]), read_geotiff(str(reference / "map.tif")))
    np.testing.assert_array_equal(read_geotiff(result["CHANGE_MASK"]), read_geotiff(str(reference / "mask.tif")))
    assert ogr.Open(result["CHANGE_POLYGONS"]).GetLayer(0).GetFeatureCount() >= 1


def test_qgis_process_json_run(qgis_process, tmp_path):
    paths = write_dates(tmp_path, looks=4, gains=(1.0, 2.0), seed=7)
    mask = str(tmp_path / "cli_mask.tif")
    done = qgis_process("run", "sar_despeckle:change_detection", "--json", *(f"--INPUTS={p}" for p in paths),
                        "--LOOKS=4", "--INPUT_UNITS=0", "--METHOD=0", "--PREFILTER=false", "--MIN_AREA=0",
                        f"--CHANGE_MASK={mask}",
                        f"--CHANGE_MAP={tmp_path / 'cli_map.tif'}")
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["results"]["CHANGE_MASK"] == mask
    reference = str(tmp_path / "reference.tif")
    detect_changes(paths, ChangeOutputs(change_mask=reference),
                   ChangeSettings(method="omnibus", looks=(4.0,), units="intensity", **AS_GIVEN), QUIET)
    np.testing.assert_array_equal(read_geotiff(mask), read_geotiff(reference))


def shifted_grid(folder):
    paths = write_dates(folder, gains=(1.0, 1.0))
    shift_origin(paths[1])
    return paths


def other_crs(folder):
    paths = write_dates(folder, gains=(1.0, 1.0))
    set_crs(paths[1])
    return paths


def other_size(folder):
    paths = write_dates(folder, gains=(1.0,))
    rng = np.random.default_rng(0)
    return paths + [write_geotiff(str(folder / "small.tif"), rng.gamma(4, 0.25, (60, 72)).astype(np.float32))]


def other_layout(folder):
    first = write_dates(folder, gains=(1.0,))
    second = folder / "second"
    second.mkdir()
    return first + write_dates(second, layout="dual", gains=(1.0,))


def swapped_bands(folder):
    first = write_dates(folder, layout="dual", gains=(1.0,), descriptions=("VV", "VH"))
    second = folder / "second"
    second.mkdir()
    return first + write_dates(second, layout="dual", gains=(1.0,), descriptions=("VH", "VV"))


def all_nan(folder, declared=True):
    paths = write_dates(folder, gains=(1.0, 1.0))
    write_geotiff(paths[1], np.full((64, 72), np.nan, np.float32), nodata=np.nan if declared else None)
    return paths


def zeros_everywhere(folder):
    paths = write_dates(folder, gains=(1.0, 1.0))
    write_geotiff(paths[0], np.zeros((64, 72), np.float32))
    return paths


BAD_INPUTS = {
    "one date only": (lambda d: write_dates(d, gains=(1.0,)), {}, "at least two dates"),
    "shifted grid": (shifted_grid, {}, "different grid"),
    "different CRS": (other_crs, {}, "different CRS"),
    "different size": (other_size, {}, "co-registered"),
    "different band counts": (other_layout, {}, "different band layouts"),
    "bands in another order": (swapped_bands, {"BAND_LAYOUT": 1}, "same bands in the same order"),
    "layout does not match": (lambda d: write_dates(d, layout="dual", gains=(1.0, 1.0)), {}, "BAND_LAYOUT"),
    "dB declared as intensity": (lambda d: write_dates(d, gains=(1.0, 1.0), units="dB"), {"INPUT_UNITS": 0},
                                 "looks like dB"),
    "all NaN (nodata) on one date": (all_nan, {}, "No pixel is valid"),
    "NaN not declared as nodata": (lambda d: all_nan(d, declared=False), {}, "NaN or infinite values"),
    "zeros everywhere": (zeros_everywhere, {}, "ZEROS_AS_NODATA"),
    "single-look C2": (lambda d: write_dates(d, layout="c2", looks=1, gains=(1.0, 1.0)),
                       {"BAND_LAYOUT": 2, "LOOKS": 1, "METHOD": 0, "PREFILTER": False},
                       r"Averaging window \(WINDOW\) to 3"),
    "C2 in dB": (lambda d: write_dates(d, layout="c2", gains=(1.0, 1.0)), {"BAND_LAYOUT": 2, "INPUT_UNITS": 2},
                 "must be linear"),
    "missing file": (lambda d: [str(d / "nowhere.tif"), str(d / "nowhere2.tif")], {}, "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(qgis_processing, tmp_path, case):
    make_inputs, extra, message = BAD_INPUTS[case]
    outputs = {"CHANGE_MAP": str(tmp_path / "map.tif"), "CHANGE_MASK": str(tmp_path / "mask.tif"),
               "CHANGE_POLYGONS": str(tmp_path / "changes.gpkg")}
    assert_refused_without_output(qgis_processing, "sar_despeckle:change_detection",
                                  {"INPUTS": make_inputs(tmp_path), **outputs, **extra}, tmp_path, message)
