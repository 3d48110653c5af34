"""Small line plots rasterised with numpy and written as PNG through GDAL (no plotting library).

Used for the decorrelation report: the average azimuth and range spectra before and after
whitening, the fitted response and the band edges, one row of panels per channel.
"""

from __future__ import annotations

import numpy as np

from ..pictures import BLACK, BLUE, GREEN, GREY, LIGHT, RED, Canvas, save_rgb_png, text_width

PANEL_W, PANEL_H = 460, 250
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 44, 12, 34, 40
DB_RANGE = 40.0


def _to_db(spectrum: np.ndarray, reference: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(spectrum / reference)


def _panel(canvas: Canvas, top: int, left: int, title: str, data: dict) -> None:
    """One spectrum panel: frequency in cycles/pixel on x, dB on y (0 dB = the before peak)."""
    x0, y0 = left + MARGIN_L, top + MARGIN_T
    w, h = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B
    for db in range(0, int(DB_RANGE) + 1, 10):
        y = y0 + h * db / DB_RANGE
        canvas.line(y, x0, y, x0 + w, LIGHT)
        label = "0" if db == 0 else f"-{db}"
        canvas.text(int(y) - 3, x0 - 6 - text_width(label), label)
    for f in (-0.5, -0.25, 0.0, 0.25, 0.5):
        x = x0 + w * (f + 0.5)
        canvas.line(y0, x, y0 + h, x, LIGHT)
        label = f"{f:g}"
        canvas.text(y0 + h + 5, int(x - text_width(label) / 2), label)
    canvas.text(y0 + h + 17, x0 + w // 2 - text_width("CYCLES/PIXEL") // 2, "CYCLES/PIXEL", GREY)
    canvas.text(top + 6, left + 6, title)
    canvas.line(y0, x0, y0 + h, x0, BLACK)
    canvas.line(y0 + h, x0, y0 + h, x0 + w, BLACK)
    canvas.line(y0, x0, y0, x0 + w, BLACK)
    canvas.line(y0, x0 + w, y0 + h, x0 + w, BLACK)

    def plot(frequency, values, colour, thickness=1, dash=0):
        order = np.argsort(frequency)
        db = np.clip(values[order], -DB_RANGE, 3.0)
        canvas.polyline(y0 + h * (-db / DB_RANGE), x0 + w * (frequency[order] + 0.5), colour, thickness, dash)

    before = np.asarray(data["before"], float)
    reference = float(np.nanmax(before)) if np.isfinite(before).any() else 1.0
    for cut in data["cutoffs"]:
        f = (cut + 0.5) % 1.0 - 0.5
        x = x0 + w * (f + 0.5)
        canvas.line(y0, x, y0 + h, x, GREEN, dash=3)
    plot(np.asarray(data["frequency"]), _to_db(before, reference), BLUE, 2)
    fit = np.asarray(data["fit"], float)
    fit_reference = np.nanmax(fit) if np.isfinite(fit).any() else 1.0
    plot(np.asarray(data["frequency"]), _to_db(fit, fit_reference), GREEN, 1)
    if data.get("after") is not None:
        after = np.asarray(data["after"], float)
        plot(np.asarray(data["after_frequency"]), _to_db(after, float(np.nanmax(after))), RED, 2)


def spectra_png(spectra: list[dict], path: str) -> None:
    """Write the spectra of every channel (a list of {axis name: panel data}) as one PNG:
    a row per channel, azimuth left and range right, and a legend at the bottom."""
    rows = len(spectra)
    legend_h = 24
    canvas = Canvas(rows * PANEL_H + legend_h, 2 * PANEL_W)
    for r, axes in enumerate(spectra):
        for c, (name, data) in enumerate(axes.items()):
            prefix = f"CHANNEL {r + 1} " if rows > 1 else ""
            title = f"{prefix}{name.upper()} SPECTRUM (DB), CENTROID {data['centroid']:+.3f}"
            if data.get("drift"):
                title += f", DERAMPED ({data['drift']:+.4f}/LINE)"
            _panel(canvas, r * PANEL_H, c * PANEL_W, title, data)
    y = rows * PANEL_H + 8
    x = MARGIN_L
    for label, colour in (("BEFORE (POINT TARGETS REPLACED)", BLUE), ("AFTER", RED),
                          ("FITTED RESPONSE", GREEN), ("CUT-OFFS", GREEN)):
        canvas.line(y + 3, x, y + 3, x + 20, colour, 2, dash=3 if label == "CUT-OFFS" else 0)
        canvas.text(y, x + 26, label)
        x += 26 + text_width(label) + 24
    save_rgb_png(canvas.pixels, path)
