"""The example graphical models shipped in ``models/`` (built by scripts/build_models.py), listed
by the provider in its *Example workflows* group.

Each model keeps its title as display name (what the modeler shows) and takes its file name as
id, so ids stay lowercase without spaces (``sar_despeckle:despeckle_then_change``).
"""

from __future__ import annotations

import glob
import os

from qgis.core import QgsProcessingModelAlgorithm

from . import resources
from .base import COMMON_TAGS, GROUPS, first_sentence
from .user_models import warn_once

MODELS_DIR = os.path.join(resources.PLUGIN_DIR, "models")


class ExampleModel(QgsProcessingModelAlgorithm):
    """A shipped ``.model3`` file as an algorithm of the provider."""

    def __init__(self, path: str) -> None:
        super().__init__()
        if not self.fromFile(path):
            raise ValueError(f"cannot read the model {path}")
        self.setSourceFilePath(path)
        self.path = path

    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def displayName(self) -> str:
        return super().name()

    def createInstance(self):
        return ExampleModel(self.path)

    def group(self) -> str:
        return GROUPS["example_workflows"]

    def groupId(self) -> str:
        return "example_workflows"

    def shortDescription(self) -> str:
        return first_sentence(self.helpContent().get("ALG_DESC", ""))

    def tags(self) -> list[str]:
        return [*COMMON_TAGS, "example", "workflow", "model"]

    def icon(self):
        return resources.icon()

    def svgIconPath(self) -> str:
        return resources.ICON_PATH

    def helpUrl(self) -> str:
        return resources.help_url("workflows")


def example_models(folder: str = MODELS_DIR) -> list[ExampleModel]:
    """The models in ``folder`` (the shipped ones), by file name; one that cannot be read is left
    out with a warning, never breaking the provider's loading."""
    models = []
    for path in sorted(glob.glob(os.path.join(folder, "*.model3"))):
        try:
            models.append(ExampleModel(path))
        except ValueError as error:
            warn_once(f"{error}: the example workflow is left out. Reinstall the plugin.")
    return models
