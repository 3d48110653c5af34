"""How outputs look when QGIS loads them: a layer post-processor names each output after its
input and the method that ran, and gives it a renderer that suits what it holds.

=======================  ======================================================================
backscatter              intensity, amplitude or dB: grey, stretched over the 2nd-98th
                         percentiles of the valid pixels; two bands (VV, VH) as the false-colour
                         composite red VV, green VH, blue VV, each band stretched on its own
ratio                    the ratio image I / I_hat: grey centred on 1
change mask              changed red, unchanged transparent, nodata (255) grey
p-value                  the omnibus test's p-value of 'no change' in significance classes
probability              the learned detector's probability of change on a blue-red ramp
first change date        one colour per date (paletted), unchanged transparent, nodata grey
change polygons          red outline, light red fill
=======================  ======================================================================

Usage, in ``processAlgorithm``: ``style_on_load(context, path, name, backscatter)``. QGIS keeps
no reference to a Python post-processor, so this module does (one per output path) until the
next run writing the same path replaces it.
"""

from __future__ import annotations

import functools
from typing import Callable

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsFillSymbol,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
)
from qgis.PyQt.QtGui import QColor

from ..core.display import centred_range, percentile_range
from ..core.raster import METADATA_PREFIX, open_raster

#: Changed pixels, polygons and the most significant class.
CHANGED = QColor(227, 26, 28)
#: Nodata of the uint8 change rasters (drawn, unlike float nodata, so a user sees the holes).
NODATA_GREY = QColor(150, 150, 150, 160)
TRANSPARENT = QColor(0, 0, 0, 0)
#: Change mask / first change date value of nodata pixels.
MASK_NODATA = 255
#: One colour per change date (ColorBrewer Set1 less red, then cycled).
DATE_COLOURS = ("#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf")
#: p-value classes: (upper bound, colour, label); larger p-values are transparent.
P_VALUE_CLASSES = (
    (0.001, QColor(128, 0, 38), "p <= 0.001"),
    (0.01, CHANGED, "0.001 < p <= 0.01"),
    (0.05, QColor(253, 141, 60), "0.01 < p <= 0.05"),
    (1.0, TRANSPARENT, "p > 0.05 (no significant change)"),
)

#: A function styling a loaded layer; None leaves QGIS's own renderer (complex SLC outputs).
Style = Callable[[object], None] | None
_post_processors: dict[str, QgsProcessingLayerPostProcessorInterface] = {}


class OutputStyle(QgsProcessingLayerPostProcessorInterface):
    """Names a loaded output layer and applies ``style`` (a function of the layer) to it."""

    def __init__(self, name: str, style: Style) -> None:
        super().__init__()
        self.name = name
        self.style = style

    def postProcessLayer(self, layer, context, feedback) -> None:
        layer.setName(self.name)
        if self.style is not None:
            self.style(layer)
        layer.triggerRepaint()
        layer.emitStyleChanged()


def style_on_load(context, path: str, name: str, style: Style) -> None:
    """Have the output at ``path`` named ``name`` and styled by ``style`` when QGIS loads it
    (nothing happens where it is not loaded: qgis_process, scripts, models' inner steps)."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    processor = OutputStyle(name, style)
    _post_processors[path] = processor
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(processor)


def recorded_method(path: str, fallback: str) -> str:
    """The method (or network) an output records having run, else ``fallback``."""
    return open_raster(path).GetMetadataItem(METADATA_PREFIX + "METHOD") or fallback


def layer_name(source: str, method: str, what: str = "") -> str:
    """'shanghai_s1 — sarcnn_default', or with ``what``: 'shanghai_s1 — sarcnn_default ratio'."""
    return f"{source} — {method}" + (f" {what}" if what else "")


# raster styles ---------------------------------------------------------------------------------

def _stretch(layer, band: int, value_range: tuple[float, float] | None) -> QgsContrastEnhancement:
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    if value_range is not None:
        enhancement.setMinimumValue(value_range[0])
        enhancement.setMaximumValue(value_range[1])
    return enhancement


def _grey(layer, value_range: tuple[float, float] | None) -> None:
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    renderer.setContrastEnhancement(_stretch(layer, 1, value_range))
    layer.setRenderer(renderer)


def backscatter(layer) -> None:
    """Intensity, amplitude or dB: grey 2-98 % (one band, or three and more), or the VV / VH
    composite red band 1, green band 2, blue band 1 (two bands)."""
    path = layer.source()
    if layer.bandCount() != 2:
        _grey(layer, percentile_range(path, 1))
        return
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 1)
    first, second = percentile_range(path, 1), percentile_range(path, 2)
    renderer.setRedContrastEnhancement(_stretch(layer, 1, first))
    renderer.setGreenContrastEnhancement(_stretch(layer, 2, second))
    renderer.setBlueContrastEnhancement(_stretch(layer, 1, first))  # the renderer owns each one
    layer.setRenderer(renderer)


def ratio(layer) -> None:
    """The ratio image: grey symmetric about 1 over 96 % of the valid pixels."""
    _grey(layer, centred_range(layer.source(), 1))


def _paletted(layer, classes: list[tuple[int, QColor, str]]) -> None:
    """Classes (value, colour, label) of band 1; its nodata value is drawn as a class too."""
    layer.dataProvider().setUseSourceNoDataValue(1, False)
    renderer = QgsPalettedRasterRenderer(
        layer.dataProvider(), 1,
        [QgsPalettedRasterRenderer.Class(value, colour, label) for value, colour, label in classes],
    )
    layer.setRenderer(renderer)


def change_mask(layer) -> None:
    """1 changed (red), 0 unchanged (transparent), 255 nodata (grey)."""
    _paletted(layer, [(0, TRANSPARENT, "Unchanged"), (1, CHANGED, "Changed"),
                      (MASK_NODATA, NODATA_GREY, "No data")])


def first_change_date(dates: int):
    """The style of a first-change-date raster of ``dates`` dates (values 2..dates)."""
    return functools.partial(_first_change_date, dates=dates)


def _first_change_date(layer, dates: int) -> None:
    classes = [(0, TRANSPARENT, "Unchanged")]
    classes += [(date, QColor(DATE_COLOURS[(date - 2) % len(DATE_COLOURS)]), f"First changed by date {date}")
                for date in range(2, dates + 1)]
    _paletted(layer, classes + [(MASK_NODATA, NODATA_GREY, "No data")])


def _pseudocolour(layer, ramp_type, items: list[tuple[float, QColor, str]]) -> None:
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(ramp_type)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, c, label) for v, c, label in items])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)


def p_value(layer) -> None:
    """The p-value of 'no change' in the classes :data:`P_VALUE_CLASSES`."""
    _pseudocolour(layer, QgsColorRampShader.Discrete, list(P_VALUE_CLASSES))


def probability(layer) -> None:
    """The probability of change, 0 blue through 0.5 pale yellow to 1 red."""
    _pseudocolour(layer, QgsColorRampShader.Interpolated, [
        (0.0, QColor(44, 123, 182), "0 (unchanged)"),
        (0.5, QColor(255, 255, 191), "0.5"),
        (1.0, CHANGED, "1 (changed)"),
    ])


def change_polygons(layer) -> None:
    """Changed regions: red outline over a light red fill."""
    symbol = QgsFillSymbol.createSimple({
        "color": f"{CHANGED.red()},{CHANGED.green()},{CHANGED.blue()},70",
        "outline_color": CHANGED.name(), "outline_width": "0.4",
    })
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
