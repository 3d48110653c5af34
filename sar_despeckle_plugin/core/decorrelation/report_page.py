"""The decorrelation report as a page for QGIS's Results Viewer: the run, per channel the
estimated spectra and the neighbour correlation before and after, and the spectra picture. The
JSON report beside it holds everything (the fitted responses too)."""

from __future__ import annotations

import html
import os

from ..html_page import image_paragraph, key_value_table, write_page
from .settings import AXES


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _channel(channel: dict) -> str:
    """One channel: a table with a column per axis."""
    before, after = channel["correlation_before"], channel["correlation_after"] or {}
    axes = channel["axes"]

    def row(name: str, values) -> str:
        return f"<tr><th>{html.escape(name)}</th>{''.join(f'<td>{v}</td>' for v in values)}</tr>"

    rows = [
        row("Centroid (cycles / pixel)", [_number(axes[a]["centroid"]) for a in AXES]),
        row("Bandwidth (fraction of the sampling rate)", [_number(axes[a]["bandwidth"]) for a in AXES]),
        row("Cut-offs (cycles / pixel)", [" / ".join(_number(c) for c in axes[a]["cutoffs"]) for a in AXES]),
    ]
    for lag in (1, 2):
        rows.append(row(f"|lag-{lag}| correlation, before → after", [
            f"{_number(before[a][f'lag{lag}'])} → {_number(after.get(a, {}).get(f'lag{lag}'))}" for a in AXES]))
    header = "".join(f"<th>{a} ({'rows' if a == 'azimuth' else 'columns'})</th>" for a in AXES)
    return (f"<h2>Channel {channel['channel']}</h2>"
            f"<p>{channel['point_targets']:,} point targets (intensity at least "
            f"{_number(channel['point_target_threshold'], 4)}, the factor times the median intensity) "
            f"set aside for the estimate.</p>"
            f"<table><tr><th>measure</th>{header}</tr>{''.join(rows)}</table>")


def write_html(report: dict, path: str) -> None:
    """Write the page of ``report`` (the dict :func:`pipeline.decorrelate_raster` returns)."""
    height, width = report["input_size"]
    out_height, out_width = report["output_size"]
    run = [
        ("Input", report["input"]), ("Output", report["output"]),
        ("Intensity output", report.get("intensity_output") or "not written"),
        ("Size", f"{width} x {height} px -> {out_width} x {out_height} px"),
        ("Resampled", "yes" if report["resampled"] else "no"),
        ("Point targets restored", "yes" if report["point_targets_restored"] else "no (resampled)"),
        ("Device", report["device"]), ("Time", f"{report['seconds']:.1f} s"),
        ("Plugin version", report["plugin_version"]),
    ]
    body = (
        "<h1>Speckle decorrelation report</h1>" + key_value_table(run)
        + "<p>Success is a |lag-1| correlation near 0 along both axes after whitening. Without "
        "Resample, the empty part of an oversampled spectrum keeps some correlation (|lag-1| about "
        "0.2-0.4); Resample removes it too.</p>"
        + "".join(_channel(channel) for channel in report["channels"])
    )
    if report.get("spectra_png"):
        body += ("<h2>Spectra</h2><p>Average azimuth and range spectra before and after, with the "
                 "fitted response and the cut-offs.</p>"
                 + image_paragraph(report["spectra_png"], "azimuth and range spectra"))
    write_page(path, f"Decorrelation report: {os.path.basename(report['output'])}", body)
