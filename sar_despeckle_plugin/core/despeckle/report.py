"""The quality report of a despeckling run, for users who have no reference (torch-free).

``sar_despeckle:despeckle`` writes it when asked: ``RATIO`` (the ratio image I / I_hat, one
float32 band per despeckled band) and ``REPORT`` (an HTML page for the Results Viewer, with a
JSON twin and a quick-look PNG beside it, same name). Per band the report gives:

* the looks the run used and the input's looks estimate (:func:`core.speckle.estimate_looks`);
* the input speckle's own looks and autocorrelation at lags 1-2 along rows and columns, on its
  most homogeneous windows (:func:`core.quality.measure_speckle`);
* the ratio image's mean (1 for an unbiased despeckler), ENL (the input's looks when only
  speckle was removed) and autocorrelation at lags 1-2 (the input speckle's own when no
  structure was removed: :func:`core.quality.ratio_statistics`);
* the output's ENL on its most homogeneous windows (how smooth flat areas became);
* edge preservation, EPD-ROA (:func:`edge_preservation`) along both directions;

and for the run: method (model and its checksum), device, time (seconds, and seconds per
megapixel and band).

Memory: nothing here holds a whole scene. :class:`RunSink` receives the tiling engine's
strips (output and input intensity), writes the output and the ratio, and keeps a subsampled
quick-look (at most :data:`PANEL_WIDTH` x :data:`PANEL_HEIGHT` per panel); the statistics are
measured after the pass on the sample windows (:func:`core.speckle.sample_windows`, at most
4 Mpx per band) of the input and of the output read back from its staged file.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Callable, Sequence

import numpy as np

from .. import speckle
from ..errors import SarDespeckleError
from ..html_page import image_paragraph, key_value_table, write_page
from ..pictures import Canvas, save_rgb_png, text_width
from ..quality import HOMOGENEOUS_SHARE, MIN_WINDOWS, measure_speckle, ratio_statistics
from ..quality import WINDOW as QUALITY_WINDOW

#: Nodata value of the RATIO raster (a ratio of intensities is never negative).
RATIO_NODATA = -1.0
#: Side of the square blocks whose averages EPD-ROA compares (pixels).
EPD_SIDE = 3
#: Largest quick-look panel (pixels); the scene is subsampled by one factor to fit.
PANEL_WIDTH, PANEL_HEIGHT = 336, 480
#: Display range of the ratio in the quick-look.
RATIO_RANGE = (0.0, 2.0)
_GAP, _LABEL = 8, 16
_NODATA_COLOUR = (205, 220, 240)


# -- measures ----------------------------------------------------------------------------------


def _block_sums(values: np.ndarray, side: int) -> np.ndarray:
    """Sums of every ``side`` x ``side`` block, indexed by its top-left pixel."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    integral[1:, 1:] = values.astype(np.float64).cumsum(0).cumsum(1)
    return (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
            + integral[:-side, :-side])


def edge_preservation(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray | None = None,
                      side: int = EPD_SIDE) -> dict[str, float]:
    """EPD-ROA, the edge-preservation degree based on the ratio of averages (Feng et al. 2011),
    of the despeckled ``estimate`` against the speckled ``intensity`` (linear, (rows, cols)).

    For each direction, sum over all positions the ratio of the averages of two adjacent
    ``side`` x ``side`` blocks in the output, divided by the same sum in the input:
    ``EPD = sum |A_D1 / A_D2| / sum |A_O1 / A_O2|``. *horizontal*: the blocks lie side by side
    along a row (left / right), *vertical*: one above the other. Feng et al. compare single
    adjacent pixels; the averages (here 3 x 3) keep the measure finite and stable on
    single-look speckle, whose pixel ratios have no finite mean. Only positions where both
    blocks are valid and positive in both images count.

    1 when the output equals the input; below 1 when the output smooths across neighbours. A
    despeckler that kept every edge and removed all speckle scores about (9L - 1) / 9L on flat
    ground (0.89 for 1 look, 0.97 for 4.4 uncorrelated looks: the speckle's own contrast is
    gone), blurring lowers it further; NaN when no position counts.
    """
    ok = (intensity > 0) & (estimate > 0)
    if valid is not None:
        ok &= valid
    results = {}
    full = _block_sums(ok.astype(np.float64), side) == side * side
    sums_in = _block_sums(np.where(ok, intensity, 0.0), side)
    sums_out = _block_sums(np.where(ok, estimate, 0.0), side)
    for name, (a, b) in {
        "horizontal": ((slice(None), slice(None, -side)), (slice(None), slice(side, None))),
        "vertical": ((slice(None, -side), slice(None)), (slice(side, None), slice(None))),
    }.items():
        pair = full[a] & full[b]
        if not pair.any():
            results[name] = float("nan")
            continue
        ratio_in = sums_in[a][pair] / sums_in[b][pair]
        ratio_out = sums_out[a][pair] / sums_out[b][pair]
        results[name] = float(np.abs(ratio_out).sum() / np.abs(ratio_in).sum())
    return results


def output_enl(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray,
               side: int = QUALITY_WINDOW, share: float = HOMOGENEOUS_SHARE) -> float | None:
    """The output's equivalent number of looks on flat ground: the median over the input's
    ``share`` most homogeneous ``side`` x ``side`` windows (lowest coefficient of variation of
    the input, so the output's own smoothness does not choose them) of the output's
    mean² / variance. Infinite for a perfectly flat output; None with too few windows."""
    rows, cols = (intensity.shape[0] // side) * side, (intensity.shape[1] // side) * side

    def blocks(values):
        shape = (rows // side, side, cols // side, side)
        return values[:rows, :cols].reshape(shape).swapaxes(1, 2).reshape(-1, side * side)

    full = blocks(valid & (intensity > 0) & (estimate > 0)).all(axis=1)
    inputs, outputs = blocks(intensity)[full].astype(np.float64), blocks(estimate)[full].astype(np.float64)
    if len(inputs) < MIN_WINDOWS:
        return None
    chosen = np.argsort(inputs.std(axis=1) / inputs.mean(axis=1))[: max(MIN_WINDOWS, round(share * len(inputs)))]
    mean, variance = outputs[chosen].mean(axis=1), outputs[chosen].var(axis=1)
    with np.errstate(divide="ignore"):
        return float(np.median(np.where(variance > 0, mean ** 2 / variance, np.inf)))


def mosaic(windows: Sequence[tuple[int, int, int, int]], arrays: Sequence[np.ndarray],
           valid: Sequence[np.ndarray], gap: int = QUALITY_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Lay sample windows (``(row, col, rows, cols)`` and their 2-D arrays) out on their grid,
    ``gap`` invalid pixels apart, so that measures over the mosaic never pair pixels of two
    windows (``gap`` >= the lags measured) and its 16-pixel homogeneity windows stay aligned.
    Repeated windows count once. Returns (values, valid)."""
    seen: dict[tuple[int, int], int] = {}
    for index, (row, col, _, _) in enumerate(windows):
        seen.setdefault((row, col), index)
    rows = sorted({row for row, _ in seen})
    cols = sorted({col for _, col in seen})
    if len(seen) == 1:
        index = next(iter(seen.values()))
        return arrays[index].astype(np.float64), valid[index].copy()
    height = max(arrays[i].shape[0] for i in seen.values()) + gap
    width = max(arrays[i].shape[1] for i in seen.values()) + gap
    values = np.zeros((len(rows) * height, len(cols) * width))
    mask = np.zeros(values.shape, bool)
    for (row, col), index in seen.items():
        top, left = rows.index(row) * height, cols.index(col) * width
        h, w = arrays[index].shape
        values[top:top + h, left:left + w] = arrays[index]
        mask[top:top + h, left:left + w] = valid[index]
    return values, mask


def _number(value) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def band_quality(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray) -> dict:
    """The report's measures for one band, from the input ``intensity`` and the output
    ``estimate`` (both linear intensity, (rows, cols)) where ``valid`` (both valid)."""
    speckle_in = measure_speckle(intensity, valid)
    ratio = ratio_statistics(intensity, estimate, valid)
    edges = edge_preservation(intensity, estimate, valid)
    return {
        "input_speckle": None if speckle_in is None else {
            "looks": _number(speckle_in.looks),
            "autocorrelation_rows": [_number(v) for v in speckle_in.rows],
            "autocorrelation_cols": [_number(v) for v in speckle_in.cols],
            "windows": speckle_in.windows,
        },
        "ratio": {
            "mean": _number(ratio.mean),
            "enl": _number(ratio.looks),
            "autocorrelation_rows": [_number(v) for v in ratio.rows],
            "autocorrelation_cols": [_number(v) for v in ratio.cols],
            "pixels": int(((intensity > 0) & (estimate > 0) & valid).sum()),
        },
        "output_enl": _number(output_enl(intensity, estimate, valid)),
        "edge_preservation": {name: _number(value) for name, value in edges.items()},
    }


# -- the tiled pass: output, ratio and quick-look together ------------------------------------


def ratio_of(intensity: np.ndarray, estimate: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 ratio ``intensity / estimate`` where ``valid`` and the estimate is positive (and
    the ratio fits float32), :data:`RATIO_NODATA` elsewhere."""
    ok = valid & (estimate > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(ok, intensity / np.where(ok, estimate, 1.0), RATIO_NODATA).astype(np.float32)
    ratio[~np.isfinite(ratio)] = RATIO_NODATA
    return ratio


def quicklook_factor(height: int, width: int) -> int:
    """The subsampling factor that fits a ``height`` x ``width`` scene in one panel."""
    return max(1, math.ceil(width / PANEL_WIDTH), math.ceil(height / PANEL_HEIGHT))


class QuickLook:
    """Subsampled input intensity, output intensity and ratio of the whole scene (one pixel in
    ``factor`` along each axis; NaN = nodata), filled strip by strip."""

    def __init__(self, bands: int, height: int, width: int) -> None:
        self.factor = quicklook_factor(height, width)
        shape = (bands, math.ceil(height / self.factor), math.ceil(width / self.factor))
        self.input, self.output, self.ratio = (np.full(shape, np.nan, np.float32) for _ in range(3))

    def add(self, row: int, intensity: np.ndarray, estimate: np.ndarray, ratio: np.ndarray) -> None:
        """Take the kept pixels of a strip (bands, rows, full width) whose first row is ``row``."""
        first = (-row) % self.factor
        rows = slice(first, intensity.shape[1], self.factor)
        target = slice((row + first) // self.factor, None)
        for store, values in ((self.input, intensity), (self.output, estimate), (self.ratio, ratio)):
            picked = values[:, rows, :: self.factor]
            store[:, target][:, : picked.shape[1]] = picked


class RunSink:
    """The tiling engine's sink when a ratio or a report is asked for: strips of
    (bands + intensity bands, rows, cols) hold the output (in its units, NaN = nodata) then the
    input's linear intensity of the output bands ``intensity_bands`` (0-based; all when None,
    C11 and C22 of C2). Writes the output (through ``finish``, as the plain run does) and the
    ratio of the intensity bands, and fills the quick-look."""

    def __init__(self, writer, finish: Callable[[np.ndarray], np.ndarray], bands: int,
                 to_intensity: Callable[[np.ndarray], np.ndarray], ratio_writer=None,
                 quicklook: QuickLook | None = None, intensity_bands: Sequence[int] | None = None) -> None:
        self.writer, self.finish, self.bands = writer, finish, bands
        self.to_intensity = to_intensity
        self.ratio_writer, self.quicklook = ratio_writer, quicklook
        self.intensity_bands = list(range(bands)) if intensity_bands is None else list(intensity_bands)

    def write(self, values: np.ndarray, row: int, col: int) -> None:
        output, intensity = values[: self.bands], values[self.bands:]
        finished = self.finish(output)
        self.writer.write(finished, row, col)
        output, finished = output[self.intensity_bands], finished[self.intensity_bands]
        valid = ~np.isnan(output) & ~np.isnan(intensity)
        estimate = self.to_intensity(np.where(valid, finished, 0.0).astype(np.float64))
        ratio = ratio_of(np.where(valid, intensity, 0.0).astype(np.float64), estimate, valid)
        if self.ratio_writer is not None:
            self.ratio_writer.write(ratio, row, col)
        if self.quicklook is not None:
            nan = np.float32(np.nan)
            self.quicklook.add(row, np.where(valid, intensity, nan), np.where(valid, estimate, nan),
                               np.where(ratio == RATIO_NODATA, nan, ratio))


# -- the picture -------------------------------------------------------------------------------


def _grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """(3, rows, cols) uint8: ``values`` stretched from ``low`` (black) to ``high`` (white),
    NaN in the nodata colour."""
    span = high - low if high > low else 1.0
    grey = np.clip((values - low) / span * 255.0, 0, 255)
    pixels = np.repeat(np.nan_to_num(grey).astype(np.uint8)[None], 3, axis=0)
    pixels[:, np.isnan(values)] = np.array(_NODATA_COLOUR, np.uint8)[:, None]
    return pixels


def _db(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(values)
    return np.where(np.isfinite(db), db, np.nan)


def _stretch(db: np.ndarray) -> tuple[float, float]:
    finite = db[np.isfinite(db)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [2, 98])
    return float(low), float(high)


def _panels(canvas: Canvas, top: int, trio: Sequence[np.ndarray], titles: Sequence[str]) -> None:
    """Three panels side by side (input, output in dB with the input's stretch; ratio)."""
    db_in, db_out = _db(trio[0]), _db(trio[1])
    low, high = _stretch(db_in)
    pictures = (_grey(db_in, low, high), _grey(db_out, low, high), _grey(trio[2], *RATIO_RANGE))
    left = _GAP
    for picture, title in zip(pictures, titles):
        canvas.text(top + 4, left, title[: max(1, picture.shape[2] // 6)])
        canvas.pixels[:, top + _LABEL: top + _LABEL + picture.shape[1], left: left + picture.shape[2]] = picture
        left += picture.shape[2] + _GAP


def quicklook_png(path: str, quicklook: QuickLook, details: Sequence[Sequence[np.ndarray] | None],
                  names: Sequence[str]) -> None:
    """Write the quick-look: per band a row of input / output / ratio for the whole scene
    (subsampled), and, when subsampled, a row of the same at full resolution on a crop
    (``details``: per band (input, output, ratio) arrays with NaN = nodata, or None)."""
    panel_h, panel_w = quicklook.input.shape[1:]
    detail_h = max((d[0].shape[0] for d in details if d is not None), default=0)
    detail_w = max((d[0].shape[1] for d in details if d is not None), default=0)
    width = 4 * _GAP + 3 * max(panel_w, detail_w, text_width("RATIO I/I_HAT, 0 TO 2"))
    block = _LABEL + panel_h + _GAP + ((_LABEL + detail_h + _GAP) if detail_h else 0)
    canvas = Canvas(len(names) * block + _GAP, width)
    factor = quicklook.factor
    for band, name in enumerate(names):
        top = band * block + _GAP // 2
        scale = f", 1:{factor}" if factor > 1 else ""
        _panels(canvas, top, (quicklook.input[band], quicklook.output[band], quicklook.ratio[band]),
                (f"{name} INPUT, DB{scale}", "OUTPUT, SAME STRETCH", "RATIO I/I_HAT, 0 TO 2"))
        if detail_h and details[band] is not None:
            _panels(canvas, top + _LABEL + panel_h + _GAP, details[band],
                    (f"{name} CROP 1:1", "OUTPUT 1:1", "RATIO 1:1"))
    save_rgb_png(canvas.pixels, path)


def detail_crop(windows: Sequence[tuple[int, int, int, int]], height: int, width: int,
                side: int = 256) -> tuple[int, tuple[slice, slice]]:
    """The sample window nearest the scene's centre, and a crop of it of at most ``side``
    pixels: (window index, (rows, cols) slices within it)."""
    centre = (height / 2, width / 2)
    index = min(range(len(windows)), key=lambda i: (windows[i][0] + windows[i][2] / 2 - centre[0]) ** 2
                + (windows[i][1] + windows[i][3] / 2 - centre[1]) ** 2)
    _, _, rows, cols = windows[index]
    r0, c0 = max(0, (rows - side) // 2), max(0, (cols - side) // 2)
    return index, (slice(r0, r0 + side), slice(c0, c0 + side))


# -- the files ---------------------------------------------------------------------------------


def report_paths(report: str) -> dict[str, str]:
    """The HTML report and the files beside it: its JSON twin and the quick-look PNG."""
    stem = os.path.splitext(report)[0]
    return {"REPORT": report, "REPORT JSON twin": stem + ".json", "REPORT quick-look": stem + ".png"}


def check_extensions(ratio_path: str | None, report_path: str | None) -> None:
    """Refuse a RATIO that is not a GeoTIFF and a REPORT that is not an HTML page (either may
    be None: not asked for)."""
    if ratio_path and os.path.splitext(ratio_path)[1].lower() not in (".tif", ".tiff"):
        raise SarDespeckleError(f"RATIO '{ratio_path}' must be a GeoTIFF (.tif or .tiff).")
    if report_path and os.path.splitext(report_path)[1].lower() not in (".html", ".htm"):
        raise SarDespeckleError(f"REPORT '{report_path}' must be an HTML file (.html); its JSON "
                                "twin and quick-look PNG are written beside it.")


def ratio_writer(ratio_path: str, info, descriptions: Sequence[str], metadata: dict, run):
    """The RATIO GeoTIFF's writer (``core.raster.RasterWriter``, staged in the output set ``run``):
    one float band per intensity band, described ``ratio I/I_hat <band>``, nodata
    :data:`RATIO_NODATA`, on the input's grid (``info``)."""
    from ..raster import RasterWriter

    return RasterWriter(ratio_path, info, len(descriptions), RATIO_NODATA,
                        [f"ratio I/I_hat {description}" for description in descriptions],
                        {**metadata, "units": "ratio",
                         "output": "ratio I / I_hat of linear intensities, whatever the input's units"}, outputs=run)


def write_report_files(report: dict, report_path: str, quicklook: "QuickLook", details, names: Sequence[str],
                       run) -> None:
    """The REPORT page, its JSON twin and its quick-look PNG (:func:`report_paths`), each staged
    in the output set ``run`` (committed with the rasters, or not at all)."""
    from ..outputs import staged_file

    paths = report_paths(report_path)
    with staged_file(paths["REPORT quick-look"], run) as partial:
        quicklook_png(partial, quicklook, details, names)
    with staged_file(paths["REPORT JSON twin"], run) as partial:
        write_json(report, partial)
    with staged_file(report_path, run) as partial:
        write_html(report, partial)


def write_json(report: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=2, allow_nan=False)
        stream.write("\n")


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (list, tuple)):
        return " / ".join(_fmt(v, digits) for v in value)
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def write_html(report: dict, path: str) -> None:
    """A small self-contained page: the run, then per band a table of the measures beside the
    quick-look picture (linked relatively, so the three files move together)."""
    e = html.escape
    run = [
        ("Input", report["input"]), ("Output", report["output"]),
        ("Ratio", report.get("ratio") or "not written"),
        ("Method", report["method"] + (f" (model {report['model']}, sha256 {report['model_sha256']})"
                                       if report.get("model") else "")),
        ("Units", report["units"]), ("Size", f"{report['width']} x {report['height']} px, "
                                              f"{len(report['bands'])} band(s)"),
        *((("Point targets", report["point_targets"]),) if report.get("point_targets") else ()),
        ("Device", report["device"]),
        ("Time", f"{report['seconds']:.1f} s ({report['seconds_per_megapixel']:.3f} s per megapixel "
                 "and band)"),
        ("Measured on", f"{report['sample']['pixels']:,} pixels per band "
                        + ("(the whole image)" if report["sample"]["whole_image"]
                           else f"({report['sample']['windows']} windows spread over the image)")),
        ("Plugin version", report["plugin_version"]),
    ]
    rows = []
    for band in report["bands"]:
        speckle_in = band["input_speckle"] or {}
        ratio = band["ratio"]
        edges = band["edge_preservation"]
        table = [
            ("Looks used / input looks estimate", _fmt(band["looks_used"], 2), _fmt(band["looks_estimated"], 2),
             "the LOOKS the filter ran with / the run's own estimate"),
            ("Ratio mean", _fmt(ratio["mean"]), "1", "below 1: the output is too bright; above: too dark"),
            ("Ratio ENL", _fmt(ratio["enl"], 2), _fmt(band["looks_estimated"], 2),
             "the input's looks when only speckle was removed; lower: structure removed too; "
             "higher: speckle left"),
            ("Autocorrelation along rows, lags 1 / 2", _fmt(ratio["autocorrelation_rows"]),
             _fmt(speckle_in.get("autocorrelation_rows")),
             "ratio / input speckle: above the speckle's own, structure is left in the ratio"),
            ("Autocorrelation along columns, lags 1 / 2", _fmt(ratio["autocorrelation_cols"]),
             _fmt(speckle_in.get("autocorrelation_cols")), "as above, between horizontal neighbours"),
            ("Output ENL (homogeneous areas)", _fmt(band["output_enl"], 1), _fmt(speckle_in.get("looks"), 2),
             "output / input, on their most homogeneous 16 x 16 windows: how much flat areas were smoothed"),
            ("Edge preservation EPD-ROA, horizontal / vertical",
             _fmt([edges["horizontal"], edges["vertical"]]), "1",
             "1: as sharp as the input; a perfect despeckler scores a little below 1, blurring lower"),
        ]
        cells = "".join(
            f"<tr><th>{e(name)}</th><td>{value}</td><td>{reference}</td><td class=n>{e(note)}</td></tr>"
            for name, value, reference, note in table
        )
        rows.append(
            f"<h2>Band {band['band']}{(' ' + e(band['description'])) if band['description'] else ''}</h2>"
            f"<table><tr><th>measure</th><th>this run</th><th>reference</th><th>reading</th></tr>{cells}</table>"
        )
    body = f"""<h1>Despeckling report</h1>
{key_value_table(run)}
<p>No reference needed: the ratio image I / I_hat (in intensity, whatever the input's units)
of a good despeckler is pure speckle, with mean 1, the input's looks and the input speckle's own
autocorrelation, and shows no structure of the scene.</p>
{''.join(rows)}
<h2>Quick-look</h2>
<p>Input and output in dB with the input's 2-98 % stretch, ratio from 0 to 2; pale blue is nodata.</p>
{image_paragraph(report["quicklook"], "input, output and ratio quick-look")}"""
    write_page(path, f"Despeckling report: {os.path.basename(report['output'])}", body)


# -- assembling ---------------------------------------------------------------------------------


def intensity_windows(values: Sequence[np.ndarray], units: str) -> list[np.ndarray]:
    """Raw sample windows in ``units`` as linear intensity (float64)."""
    return [speckle.to_intensity(v.astype(np.float64), units) for v in values]


def band_entry(band: int, description: str, looks_used: float,
               windows: Sequence[tuple[int, int, int, int]], intensity: Sequence[np.ndarray],
               valid_in: Sequence[np.ndarray], estimate: Sequence[np.ndarray],
               valid_out: Sequence[np.ndarray], crop: tuple[int, tuple[slice, slice]] | None = None,
               ) -> tuple[dict, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """One band's report entry from its sample windows (input and output in linear intensity,
    with their validity), and the (input, output, ratio) arrays of the ``crop`` (window index,
    slices) for the quick-look, NaN = nodata."""
    try:
        looks_estimated = speckle.estimate_looks(intensity, valid_in)
    except SarDespeckleError:
        looks_estimated = None
    both = [a & b for a, b in zip(valid_in, valid_out)]
    values_in, valid = mosaic(windows, intensity, both)
    values_out, _ = mosaic(windows, estimate, both)
    entry = {
        "band": band,
        "description": description,
        "looks_used": _number(looks_used),
        "looks_estimated": _number(looks_estimated),
        **band_quality(values_in, values_out, valid),
    }
    detail = None
    if crop is not None:
        index, where = crop
        ok = both[index][where]
        ratio = ratio_of(intensity[index][where], estimate[index][where], ok)
        detail = (np.where(ok, intensity[index][where], np.nan), np.where(ok, estimate[index][where], np.nan),
                  np.where(ratio == RATIO_NODATA, np.nan, ratio))
    return entry, detail


def build_report(*, input_path: str, output_path: str, ratio_path: str | None, report_path: str,
                 method: str, model: str, model_sha256: str, units: str, width: int, height: int,
                 device: str, seconds: float, windows: Sequence[tuple[int, int, int, int]],
                 bands: list[dict], plugin_version: str) -> dict:
    """The report (the JSON twin's content) of a run: the run's facts, then ``bands`` (one
    :func:`band_entry` per despeckled band)."""
    band_megapixels = width * height * len(bands) / 1e6
    unique = {(r, c, h, w) for r, c, h, w in windows}
    return {
        "algorithm": "despeckle",
        "plugin_version": plugin_version,
        "input": input_path,
        "output": output_path,
        "ratio": ratio_path or None,
        "report": report_path,
        "quicklook": report_paths(report_path)["REPORT quick-look"],
        "method": method,
        "model": model or "",
        "model_sha256": model_sha256 or "",
        "units": units,
        "ratio_units": "linear intensity ratio I / I_hat, whatever the input's units",
        "width": width,
        "height": height,
        "device": device,
        "seconds": round(seconds, 3),
        "seconds_per_megapixel": round(seconds / band_megapixels, 4) if band_megapixels else None,
        "sample": {
            "pixels": sum(h * w for _, _, h, w in unique),
            "windows": len(unique),
            "whole_image": len(unique) == 1 and next(iter(unique)) == (0, 0, height, width),
        },
        "edge_preservation_measure": f"EPD-ROA (Feng et al. 2011), ratios of {EPD_SIDE} x {EPD_SIDE} block averages",
        "bands": bands,
    }


def point_targets_text(kept: bool) -> str:
    """What a network run did with point targets, for its report (``point_targets``)."""
    if kept:
        return ("kept as measured: pixels more than 20 dB over their surroundings and their bright 3 x 3 "
                "response (POINT_TARGETS, or METHOD automatic on correlated speckle)")
    return "spread by the network like the rest of the scene (POINT_TARGETS off)"


def summary(entry: dict) -> str:
    """One log line for a band's entry."""
    ratio, speckle_in, edges = entry["ratio"], entry["input_speckle"] or {}, entry["edge_preservation"]
    return (
        f"Band {entry['band']}: ratio mean {_fmt(ratio['mean'])}, ENL {_fmt(ratio['enl'], 2)} (input "
        f"{_fmt(entry['looks_estimated'], 2)} looks), lag-1 autocorrelation rows {_fmt(ratio['autocorrelation_rows'][0])}"
        f" / columns {_fmt(ratio['autocorrelation_cols'][0])} (input speckle "
        f"{_fmt((speckle_in.get('autocorrelation_rows') or [None])[0])} / "
        f"{_fmt((speckle_in.get('autocorrelation_cols') or [None])[0])}), EPD-ROA "
        f"{_fmt(edges['horizontal'])} / {_fmt(edges['vertical'])}."
    )
