"""Build tests/data/decorrelate_then_despeckle.model3 with QgsProcessingModelAlgorithm.

The model is the Speckle2Void-style chain: decorrelate an SLC (sar_despeckle:decorrelate,
with its intensity output), then despeckle that intensity (sar_despeckle:despeckle, Lee 5 x 5,
single look). Inputs: ``slc`` (raster) and ``resample`` (boolean); outputs:
``decorrelate:decorrelated`` and ``despeckle:despeckled``.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/build_decorrelate_model.py
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "decorrelate_then_despeckle.model3")


def build(path: str = OUT) -> str:
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource as Source,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterBoolean,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("decorrelate_then_despeckle", "sar_despeckle_tests")
    model.setHelpContent({
        "ALG_DESC": "Decorrelate an SLC's speckle, then despeckle its intensity with Lee: checks "
                    "that sar_despeckle:decorrelate chains in the graphical modeler.",
    })
    model.addModelParameter(QgsProcessingParameterRasterLayer("slc", "SLC image"),
                            QgsProcessingModelParameter("slc"))
    model.addModelParameter(QgsProcessingParameterBoolean("resample", "Resample", defaultValue=True),
                            QgsProcessingModelParameter("resample"))

    decorrelate = QgsProcessingModelChildAlgorithm("sar_despeckle:decorrelate")
    decorrelate.setChildId("decorrelate")
    decorrelate.setDescription("Decorrelate SLC speckle")
    decorrelate.addParameterSources("INPUT", [Source.fromModelParameter("slc")])
    decorrelate.addParameterSources("RESAMPLE", [Source.fromModelParameter("resample")])
    decorrelate.addParameterSources("BAND_LAYOUT", [Source.fromStaticValue(0)])
    decorrelate.addParameterSources("POINT_TARGET_FACTOR", [Source.fromStaticValue(30.0)])
    decorrelate.addParameterSources("DEVICE", [Source.fromStaticValue(0)])
    decorrelated = QgsProcessingModelOutput("decorrelated", "Decorrelated SLC")
    decorrelated.setChildOutputName("OUTPUT")
    decorrelated.setChildId("decorrelate")
    decorrelate.setModelOutputs({"decorrelated": decorrelated})
    model.addChildAlgorithm(decorrelate)

    despeckle = QgsProcessingModelChildAlgorithm("sar_despeckle:despeckle")
    despeckle.setChildId("despeckle")
    despeckle.setDescription("Despeckle the intensity (Lee)")
    despeckle.addParameterSources("INPUT", [Source.fromChildOutput("decorrelate", "OUTPUT_INTENSITY")])
    despeckle.addParameterSources("METHOD", [Source.fromStaticValue(1)])
    despeckle.addParameterSources("LOOKS", [Source.fromStaticValue(1.0)])
    despeckle.addParameterSources("INPUT_UNITS", [Source.fromStaticValue(0)])
    despeckle.addParameterSources("WINDOW", [Source.fromStaticValue(5)])
    despeckle.addParameterSources("DEVICE", [Source.fromStaticValue(0)])
    despeckled = QgsProcessingModelOutput("despeckled", "Despeckled intensity")
    despeckled.setChildOutputName("OUTPUT")
    despeckled.setChildId("despeckle")
    despeckle.setModelOutputs({"despeckled": despeckled})
    model.addChildAlgorithm(despeckle)
    model.updateDestinationParameters()
    if not model.toFile(path):
        raise RuntimeError(f"could not write {path}")
    return path


def main() -> None:
    sys.path.insert(0, ROOT)
    from sar_despeckle_plugin.processing.headless import start_qgis

    qgis = start_qgis()
    print("Wrote", build())
    qgis.stop()


if __name__ == "__main__":
    main()
