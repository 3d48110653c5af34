"""Small line plots rasterised with numpy and written as PNG through GDAL (no plotting library).

Used for the decorrelation report: the average azimuth and range spectra before and after
whitening, the fitted response and the band edges, one row of panels per channel.
"""

from __future__ import annotations

import numpy as np
from osgeo import gdal

# 5 x 7 bitmap font: the characters the labels use.
_FONT = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11110", "00001", "00001", "01110", "00001", "00001", "11110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "+": ("00000", "00100", "00100", "11111", "00100", "00100", "00000"),
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    ",": ("00000", "00000", "00000", "00000", "01100", "00100", "01000"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    "/": ("00001", "00010", "00010", "00100", "01000", "01000", "10000"),
    "(": ("00010", "00100", "01000", "01000", "01000", "00100", "00010"),
    ")": ("01000", "00100", "00010", "00010", "00010", "00100", "01000"),
    "=": ("00000", "00000", "11111", "00000", "11111", "00000", "00000"),
    " ": ("00000",) * 7,
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "B": ("11110", "10001", "10001", "11110", "10001", "10001", "11110"),
    "C": ("01110", "10001", "10000", "10000", "10000", "10001", "01110"),
    "D": ("11110", "10001", "10001", "10001", "10001", "10001", "11110"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "G": ("01110", "10001", "10000", "10111", "10001", "10001", "01111"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "J": ("00111", "00010", "00010", "00010", "00010", "10010", "01100"),
    "K": ("10001", "10010", "10100", "11000", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "N": ("10001", "10001", "11001", "10101", "10011", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "Q": ("01110", "10001", "10001", "10001", "10101", "10010", "01101"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "V": ("10001", "10001", "10001", "10001", "10001", "01010", "00100"),
    "W": ("10001", "10001", "10001", "10101", "10101", "10101", "01010"),
    "X": ("10001", "10001", "01010", "00100", "01010", "10001", "10001"),
    "Y": ("10001", "10001", "01010", "00100", "00100", "00100", "00100"),
    "Z": ("11111", "00001", "00010", "00100", "01000", "10000", "11111"),
}

BLACK = (0, 0, 0)
GREY = (170, 170, 170)
LIGHT = (225, 225, 225)
BLUE = (31, 90, 180)
RED = (210, 50, 30)
GREEN = (30, 150, 60)


class Canvas:
    """An RGB image (3, rows, cols) of uint8 to draw on."""

    def __init__(self, height: int, width: int) -> None:
        self.pixels = np.full((3, height, width), 255, np.uint8)

    def point(self, rows: np.ndarray, cols: np.ndarray, colour, thickness: int = 1) -> None:
        rows = np.asarray(rows).round().astype(int)
        cols = np.asarray(cols).round().astype(int)
        for dr in range(thickness):
            for dc in range(thickness):
                r, c = rows + dr - thickness // 2, cols + dc - thickness // 2
                keep = (r >= 0) & (r < self.pixels.shape[1]) & (c >= 0) & (c < self.pixels.shape[2])
                for channel in range(3):
                    self.pixels[channel, r[keep], c[keep]] = colour[channel]

    def line(self, r0: float, c0: float, r1: float, c1: float, colour, thickness: int = 1,
             dash: int = 0) -> None:
        steps = int(max(abs(r1 - r0), abs(c1 - c0))) + 1
        t = np.linspace(0.0, 1.0, steps + 1)
        if dash:
            t = t[(np.arange(t.size) // dash) % 2 == 0]
        self.point(r0 + (r1 - r0) * t, c0 + (c1 - c0) * t, colour, thickness)

    def polyline(self, rows: np.ndarray, cols: np.ndarray, colour, thickness: int = 1, dash: int = 0) -> None:
        """Connect consecutive finite points; NaN breaks the line."""
        for i in range(len(rows) - 1):
            if np.isfinite([rows[i], rows[i + 1], cols[i], cols[i + 1]]).all():
                self.line(rows[i], cols[i], rows[i + 1], cols[i + 1], colour, thickness, dash)

    def text(self, row: int, col: int, text: str, colour=BLACK, scale: int = 1) -> None:
        """Write ``text`` (upper-cased; unknown characters as spaces) with its top left at (row, col)."""
        for index, char in enumerate(text.upper()):
            glyph = _FONT.get(char, _FONT[" "])
            for r, bits in enumerate(glyph):
                for c, bit in enumerate(bits):
                    if bit == "1":
                        top, left = row + r * scale, col + (index * 6 + c) * scale
                        self.pixels[:, top:top + scale, left:left + scale] = np.array(colour, np.uint8)[:, None, None]


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * 6 * scale


def save_rgb_png(pixels: np.ndarray, path: str) -> None:
    """Write a (3, rows, cols) uint8 array as a PNG."""
    memory = gdal.GetDriverByName("MEM").Create("", pixels.shape[2], pixels.shape[1], 3, gdal.GDT_Byte)
    for channel in range(3):
        memory.GetRasterBand(channel + 1).WriteArray(pixels[channel])
    gdal.GetDriverByName("PNG").CreateCopy(path, memory)
    memory = None
    gdal.Unlink(path + ".aux.xml")


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
