"""Build the example graphical models the plugin ships (sar_despeckle_plugin/models/*.model3).

The models are written from code, with QgsProcessingModelAlgorithm, so that they always match
the algorithms' current parameters: every child gets a value for each of its algorithm's
parameters (the algorithm's own default unless the workflow sets or wires it), so a parameter
added to an algorithm later reaches the models by rerunning this script, and
tests/test_example_models.py fails until it is rerun.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/build_models.py [--out FOLDER]

The provider lists the shipped models in its *Example workflows* group.
"""

from __future__ import annotations

import argparse
import os
import sys
from xml.etree import ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MODELS_DIR = os.path.join(ROOT, "sar_despeckle_plugin", "models")


def child(model, algorithm_id: str, child_id: str, description: str, position: tuple[float, float],
          sources: dict, outputs: dict | None = None):
    """Add a child running ``algorithm_id``: ``sources`` maps parameter names to model
    parameter names (str, wired), (child id, output) pairs (wired to another step), lists of
    those, or static values; every other non-destination parameter gets the algorithm's
    default. ``outputs`` maps the child's outputs to the model outputs they become (name:
    description)."""
    from qgis.core import (
        QgsApplication,
        QgsProcessingDestinationParameter,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource as Source,
        QgsProcessingModelOutput,
    )
    from qgis.PyQt.QtCore import QPointF

    def source(value):
        if isinstance(value, str) and value in model.parameterComponents():
            return Source.fromModelParameter(value)
        if isinstance(value, tuple):
            return Source.fromChildOutput(*value)
        return Source.fromStaticValue(value)

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    if algorithm is None:
        raise RuntimeError(f"{algorithm_id} is not in the Processing registry")
    step = QgsProcessingModelChildAlgorithm(algorithm_id)
    step.setChildId(child_id)
    step.setDescription(description)
    step.setPosition(QPointF(*position))
    for parameter in algorithm.parameterDefinitions():
        name = parameter.name()
        if name in sources:
            values = sources[name] if isinstance(sources[name], list) else [sources[name]]
            step.addParameterSources(name, [source(value) for value in values])
        elif not isinstance(parameter, QgsProcessingDestinationParameter) and parameter.defaultValue() is not None:
            step.addParameterSources(name, [Source.fromStaticValue(parameter.defaultValue())])
    unknown = set(sources) - {p.name() for p in algorithm.parameterDefinitions()}
    if unknown:
        raise RuntimeError(f"{algorithm_id} has no parameter {sorted(unknown)}")
    model_outputs = {}
    for index, (child_output, (name, label)) in enumerate((outputs or {}).items()):
        output = QgsProcessingModelOutput(name, label)
        output.setChildId(child_id)
        output.setChildOutputName(child_output)
        output.setPosition(QPointF(position[0] + 200, position[1] + 60 * (index + 1)))
        model_outputs[name] = output
    step.setModelOutputs(model_outputs)
    model.addChildAlgorithm(step)


def new_model(title: str, description: str, inputs: list):
    """A model named ``title`` (what the modeler shows; the provider lists it under its file
    name as id) in the Example workflows group, with the inputs ``inputs`` (parameter
    definitions) along the top of the canvas."""
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingModelParameter
    from qgis.PyQt.QtCore import QPointF

    from sar_despeckle_plugin.processing.base import GROUPS

    model = QgsProcessingModelAlgorithm(title, GROUPS["example_workflows"], "example_workflows")
    model.setHelpContent({"ALG_DESC": description, "ALG_CREATOR": "SAR Despeckle",
                          "ALG_HELP_CREATOR": "SAR Despeckle"})
    for index, parameter in enumerate(inputs):
        component = QgsProcessingModelParameter(parameter.name())
        component.setPosition(QPointF(120 + 260 * index, 60))
        model.addModelParameter(parameter, component)
    return model


def slc_to_despeckled_intensity():
    """SLC -> decorrelate (its intensity) -> despeckle."""
    from qgis.core import QgsProcessingParameterBoolean, QgsProcessingParameterRasterLayer

    model = new_model(
        "SLC to despeckled intensity",
        "From a single-look complex (SLC) image to a despeckled intensity image. The speckle is "
        "first made spatially white (Decorrelate SLC speckle), then its intensity is despeckled "
        "with the method Automatic chooses.",
        [QgsProcessingParameterRasterLayer("slc", "SLC image (complex bands)"),
         QgsProcessingParameterBoolean("resample", "Resample to remove oversampling", defaultValue=False)],
    )
    child(model, "sar_despeckle:decorrelate", "decorrelate", "Decorrelate SLC speckle", (120, 200),
          {"INPUT": "slc", "RESAMPLE": "resample"},
          {"OUTPUT": ("decorrelated_slc", "Decorrelated SLC")})
    child(model, "sar_despeckle:despeckle", "despeckle", "Despeckle the intensity", (120, 360),
          {"INPUT": ("decorrelate", "OUTPUT_INTENSITY")},
          {"OUTPUT": ("despeckled_intensity", "Despeckled intensity")})
    return model


def despeckle_then_change():
    """Two dates -> despeckle each -> change detection."""
    from qgis.core import QgsProcessingParameterRasterLayer

    from sar_despeckle_plugin.core.choices import CHANGE_METHOD_LABELS

    model = new_model(
        "Despeckle two dates, then detect changes",
        "Despeckles two co-registered single-pol dates, then maps what changed between them: a "
        "change mask and a change map. Despeckling uses the method Automatic chooses; changes come "
        "from the log-ratio of the despeckled dates, thresholded by Otsu's method. The omnibus test suits raw dates (its statistics assume "
        "untouched speckle); on despeckled dates the log-ratio threshold is the fitting method.",
        [QgsProcessingParameterRasterLayer("before", "Date 1 (before)"),
         QgsProcessingParameterRasterLayer("after", "Date 2 (after)")],
    )
    for index, date in enumerate(("before", "after")):
        child(model, "sar_despeckle:despeckle", f"despeckle_{date}", f"Despeckle date {index + 1}",
              (120 + 260 * index, 200), {"INPUT": date})
    otsu = list(CHANGE_METHOD_LABELS).index("log_ratio_otsu")
    child(model, "sar_despeckle:change_detection", "change", "Detect changes (log-ratio, Otsu)", (250, 360),
          {"INPUTS": [("despeckle_before", "OUTPUT"), ("despeckle_after", "OUTPUT")], "METHOD": otsu,
           "PREFILTER": False},  # the dates are despeckled already
          {"CHANGE_MASK": ("change_mask", "Change mask"), "CHANGE_MAP": ("change_map", "Change map")})
    return model


def despeckle_and_check_ratio():
    """Despeckle -> QGIS's raster statistics of the ratio image (the model writes the ratio to a
    temporary file because the statistics step reads it)."""
    from qgis.core import QgsProcessingParameterRasterLayer

    model = new_model(
        "Despeckle and check the ratio image",
        "Despeckles a SAR image and measures the ratio image (input / output) with QGIS's Raster "
        "layer statistics: a good despeckler leaves pure speckle there, of mean 1 and no visible "
        "structure.",
        [QgsProcessingParameterRasterLayer("sar_image", "SAR image (intensity, amplitude or dB)")],
    )
    child(model, "sar_despeckle:despeckle", "despeckle", "Despeckle", (120, 200),
          {"INPUT": "sar_image"}, {"OUTPUT": ("despeckled", "Despeckled")})
    child(model, "native:rasterlayerstatistics", "ratio_statistics", "Statistics of the ratio image",
          (120, 380), {"INPUT": ("despeckle", "RATIO"), "BAND": 1},
          {"OUTPUT_HTML_FILE": ("ratio_statistics", "Ratio image statistics")})
    return model


#: The shipped models: file name -> builder.
MODELS = {
    "slc_to_despeckled_intensity.model3": slc_to_despeckled_intensity,
    "despeckle_then_change.model3": despeckle_then_change,
    "despeckle_and_check_ratio.model3": despeckle_and_check_ratio,
}


def sort_attributes(path: str) -> None:
    """Rewrite the model file with each element's attributes in name order: Qt writes them in an
    order that changes from one process to the next, and a shipped file should change only
    when its model does."""
    tree = ElementTree.parse(path)
    for element in tree.iter():
        element.attrib = dict(sorted(element.attrib.items()))
    ElementTree.indent(tree, "  ")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("<!DOCTYPE model>\n")
        tree.write(handle, encoding="unicode")
        handle.write("\n")


def build_all(folder: str = MODELS_DIR) -> list[str]:
    """Write every model of :data:`MODELS` into ``folder``; the Processing registry must hold the
    sar_despeckle provider and QGIS's native one."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for file_name, build in MODELS.items():
        model = build()
        model.updateDestinationParameters()
        path = os.path.join(folder, file_name)
        if not model.toFile(path):
            raise RuntimeError(f"could not write {path}")
        sort_attributes(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=MODELS_DIR, help="folder to write the .model3 files into")
    args = parser.parse_args()
    from sar_despeckle_plugin.processing.headless import start_qgis

    qgis = start_qgis()
    for path in build_all(args.out):
        print("Wrote", path)
    qgis.stop()


if __name__ == "__main__":
    main()
