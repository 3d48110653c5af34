"""Builds despeckle_then_change.model3: two dates -> Lee despeckling of each -> change detection.

The model takes two rasters (``before``, ``after``) and their looks, despeckles both with a
5 x 5 Lee filter and runs the omnibus test on the results (looks estimated from the despeckled
images), and outputs the change mask and p-value map. Run from the repository root:

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/data/make_despeckle_then_change.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(HERE, "despeckle_then_change.model3")


def build_model():
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource as Source,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterNumber,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.PyQt.QtCore import QPointF

    from sar_despeckle_plugin.core.choices import CLASSICAL_METHOD_LABELS

    model = QgsProcessingModelAlgorithm("despeckle_then_change", "SAR Despeckle examples")
    for index, (name, label) in enumerate((("before", "Date 1 (before)"), ("after", "Date 2 (after)"))):
        component = QgsProcessingModelParameter(name)
        component.setPosition(QPointF(120 + 260 * index, 40))
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, label), component)
    looks = QgsProcessingModelParameter("looks")
    looks.setPosition(QPointF(640, 40))
    model.addModelParameter(
        QgsProcessingParameterNumber("looks", "Number of looks of the inputs", QgsProcessingParameterNumber.Double,
                                     defaultValue=1.0, minValue=0.1),
        looks,
    )
    lee = list(CLASSICAL_METHOD_LABELS).index("lee")
    for index, date in enumerate(("before", "after")):
        child = QgsProcessingModelChildAlgorithm("sar_despeckle:despeckle")
        child.setChildId(f"despeckle_{date}")
        child.setDescription(f"Despeckle {date} (Lee 5 x 5)")
        child.setPosition(QPointF(120 + 260 * index, 160))
        child.addParameterSources("INPUT", [Source.fromModelParameter(date)])
        child.addParameterSources("LOOKS", [Source.fromModelParameter("looks")])
        child.addParameterSources("INPUT_UNITS", [Source.fromStaticValue(0)])
        child.addParameterSources("METHOD", [Source.fromStaticValue(lee)])
        child.addParameterSources("WINDOW", [Source.fromStaticValue(5)])
        child.addParameterSources("ZEROS_AS_NODATA", [Source.fromStaticValue(True)])
        child.addParameterSources("DEVICE", [Source.fromStaticValue(0)])
        child.addParameterSources("FROST_DAMPING", [Source.fromStaticValue(2.0)])
        model.addChildAlgorithm(child)
    detect = QgsProcessingModelChildAlgorithm("sar_despeckle:change_detection")
    detect.setChildId("change")
    detect.setDescription("Omnibus change detection")
    detect.setPosition(QPointF(250, 290))
    detect.addParameterSources("INPUTS", [Source.fromChildOutput("despeckle_before", "OUTPUT"),
                                          Source.fromChildOutput("despeckle_after", "OUTPUT")])
    detect.addParameterSources("INPUT_UNITS", [Source.fromStaticValue(0)])
    detect.addParameterSources("METHOD", [Source.fromStaticValue(0)])
    detect.addParameterSources("SIGNIFICANCE", [Source.fromStaticValue(0.01)])
    detect.addParameterSources("WINDOW", [Source.fromStaticValue(1)])
    detect.addParameterSources("BAND_LAYOUT", [Source.fromStaticValue(0)])
    detect.addParameterSources("MIN_AREA", [Source.fromStaticValue(0)])
    detect.addParameterSources("NORMALISE", [Source.fromStaticValue(False)])
    detect.addParameterSources("ZEROS_AS_NODATA", [Source.fromStaticValue(True)])
    detect.addParameterSources("DEVICE", [Source.fromStaticValue(0)])
    outputs = {}
    for name, child_output, description in (("change_mask", "CHANGE_MASK", "Change mask"),
                                            ("change_map", "CHANGE_MAP", "Change p-values")):
        output = QgsProcessingModelOutput(name, description)
        output.setChildId("change")
        output.setChildOutputName(child_output)
        outputs[name] = output
    detect.setModelOutputs(outputs)
    model.addChildAlgorithm(detect)
    return model


def main() -> None:
    sys.path.insert(0, ROOT)
    from sar_despeckle_plugin.processing.headless import start_qgis

    qgis = start_qgis()
    model = build_model()
    ok, problems = model.validate()
    if not ok:
        raise SystemExit("invalid model: " + "; ".join(problems))
    if not model.toFile(MODEL):
        raise SystemExit(f"could not write {MODEL}")
    print(f"Wrote {MODEL}")
    qgis.stop()


if __name__ == "__main__":
    main()
