"""Small RGB pictures drawn with numpy and written as PNG through GDAL (no plotting library).

Shared by the reports that come with a run: the decorrelation spectra
(:mod:`core.decorrelation.plots`) and the despeckling quick-looks (:mod:`core.despeckle.report`).
:class:`Canvas` draws points, lines and upper-case bitmap text on a (3, rows, cols) uint8 image;
:func:`save_rgb_png` writes one.
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
    "_": ("00000", "00000", "00000", "00000", "00000", "00000", "11111"),
    "%": ("11001", "11010", "00010", "00100", "01000", "01011", "10011"),
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
