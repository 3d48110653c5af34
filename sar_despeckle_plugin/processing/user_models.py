"""The user models folder: the provider's Processing setting that holds it (Settings > Options >
Processing > Providers) and its default."""

import os

from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import QgsApplication

#: Processing setting holding the folder of the user's own model cards.
MODELS_FOLDER_SETTING = "SAR_DESPECKLE_MODELS_FOLDER"


def default_models_folder() -> str:
    """Outside the plugin folder, which QGIS deletes when it updates the plugin."""
    return os.path.join(QgsApplication.qgisSettingsDirPath(), "sar_despeckle", "models")


def user_models_folder() -> str:
    """The user models folder from the Processing settings (its default when unset)."""
    return ProcessingConfig.getSetting(MODELS_FOLDER_SETTING) or default_models_folder()
