"""The quality report of a multitemporal despeckling run (``REPORT``), for users who have no
reference: the despeckle quality report (:mod:`core.despeckle.report`, whose building blocks
this module reuses) for every target date and intensity band (the single-pol band; VV and VH;
C11 and C22 of C2).

Per target date and band: the looks the run used for the date and the date's own looks
estimate; the input speckle's looks and autocorrelation at lags 1-2 (rows, columns) on its most
homogeneous windows; the ratio image I_t / J_t's mean (1 when unbiased), ENL (the date's looks
when only speckle was removed) and autocorrelation at lags 1-2 (the input speckle's own when no
structure is left in the ratio); the output's ENL on homogeneous windows and EPD-ROA. For the
run: the dates, the targets, the method (network and checksum), the looks the super-image was
despeckled with, device and time. The quick-look has one row of input / output / ratio per
target date and band.

Everything is in linear intensity whatever the input's units. The measures are taken after the
tiled pass on the stack's sample windows (:data:`settings.SAMPLE_PIXELS` pixels per band, read
again), the output read back from its staged file; the quick-look comes from the pass
(:class:`core.despeckle.report.QuickLook`).
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import torch

from .. import speckle, stack
from ..choices import INTENSITY_BANDS, LAYOUT_BANDS
from ..despeckle import report as quality_report
from ..outputs import OutputSet
from ..raster import RasterReader
from ..version import plugin_version
from .settings import BAND_NAMES, SAMPLE_PIXELS


def intensity_bands(layout: str, targets: int) -> list[int]:
    """The 0-based output bands that hold intensities: per target date, in date order, its
    single-pol band, its VV and VH, or its C11 and C22."""
    bands = LAYOUT_BANDS[layout]
    return [date * bands + channel for date in range(targets) for channel in INTENSITY_BANDS[layout]]


def _input_windows(stack_reader, windows, layout: str, units: str, floors, targets: Sequence[int]):
    """Per target date and intensity channel, the linear intensity of the sample ``windows``
    and the date's validity there: ``{(t, channel): (intensities, valids)}``."""
    found = {(t, c): ([], []) for t in targets for c in INTENSITY_BANDS[layout]}
    for window in windows:
        values, valid = stack_reader.read(*window)
        cov, date_valid = stack.linear_dates(torch.from_numpy(values)[None], torch.from_numpy(valid)[None],
                                             layout, units, floors)
        for (t, c), (intensities, valids) in found.items():
            intensities.append(cov[0, t, c].double().numpy())
            valids.append(date_valid[0, t].numpy())
    return found


def write_report(*, inputs: Sequence[str], output_path: str, ratio_path: str | None, report_path: str,
                 run: OutputSet, stack_reader, layout: str, units: str, floors, targets: Sequence[int],
                 looks: Sequence[float], method: str, model: str, model_sha256: str, super_looks: float | None,
                 device: str, descriptions: Sequence[str], quicklook: quality_report.QuickLook, start: float,
                 feedback) -> dict:
    """Measure the run and stage the report's HTML, JSON twin and quick-look PNG in ``run``
    (committed with the output). ``targets`` are 0-based; ``looks`` per date; ``descriptions``
    the output's band descriptions; ``start`` the run's ``time.perf_counter()``. Returns the
    report (the JSON twin's content)."""
    height, width = stack_reader.height, stack_reader.width
    windows = speckle.sample_windows(height, width, SAMPLE_PIXELS)
    inputs_of = _input_windows(stack_reader, windows, layout, units, floors, targets)
    staged = RasterReader(run.staged_path(output_path))
    read_back = [staged.read(*window) for window in windows]
    del staged
    crop = quality_report.detail_crop(windows, height, width) if quicklook.factor > 1 else None
    entries, details, names = [], [], []
    for band in intensity_bands(layout, len(targets)):
        date, channel = targets[band // LAYOUT_BANDS[layout]], band % LAYOUT_BANDS[layout]
        intensity, valid_in = inputs_of[(date, channel)]
        estimate = quality_report.intensity_windows([values[band] for values, _ in read_back], units)
        entry, detail = quality_report.band_entry(
            band + 1, descriptions[band], looks[date], windows, intensity, valid_in,
            estimate, [valid[band] for _, valid in read_back], crop,
        )
        entry["date"] = date + 1
        entries.append(entry)
        details.append(detail)
        names.append(f"DATE {date + 1} {BAND_NAMES[layout][channel]}".strip())
        feedback.info(f"Date {date + 1}: " + quality_report.summary(entry))
    report = quality_report.build_report(
        input_path="; ".join(inputs), output_path=os.path.abspath(output_path),
        ratio_path=os.path.abspath(ratio_path) if ratio_path else None, report_path=os.path.abspath(report_path),
        method=method, model=model, model_sha256=model_sha256, units=units, width=width, height=height,
        device=device, seconds=time.perf_counter() - start, windows=windows, bands=entries,
        plugin_version=plugin_version(),
    )
    report.update(algorithm="despeckle_multitemporal", inputs=list(inputs), layout=layout,
                  targets=[t + 1 for t in targets], looks=list(looks), super_looks=super_looks)
    quality_report.write_report_files(report, report_path, quicklook, details, names, run)
    return report
