"""The user models folder: the provider's Processing setting that holds it (Settings > Options >
Processing > Providers) and its default; the plugin's warnings about model cards."""

import os
import sys

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import Qgis, QgsApplication, QgsMessageLog

from ..core import user_models
from ..core.errors import SarDespeckleError
from ..core.models.card import read_card

#: Processing setting holding the folder of the user's own model cards.
MODELS_FOLDER_SETTING = "SAR_DESPECKLE_MODELS_FOLDER"
#: Message log tab of the plugin's warnings.
LOG_TAG = "SAR Despeckle"

_warned: set[str] = set()


def default_models_folder() -> str:
    """Outside the plugin folder, which QGIS deletes when it updates the plugin."""
    return user_models.default_models_folder(QgsApplication.qgisSettingsDirPath())


def user_models_folder() -> str:
    """The user models folder from the Processing settings (its default when unset)."""
    return ProcessingConfig.getSetting(MODELS_FOLDER_SETTING) or default_models_folder()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning in the SAR Despeckle message log tab, once per session
    (algorithms list the cards each time QGIS creates one); outside the QGIS window
    (qgis_process, scripts), where nobody sees that log, also on stderr."""
    if message in _warned:
        return
    _warned.add(message)
    QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Warning)
    application = QgsApplication.instance()
    if application is None or application.platform() != "desktop":
        print(f"Warning ({LOG_TAG}): {message}", file=sys.stderr)


def model_card_problem(path: str) -> str | None:
    """One line saying why the card given as MODEL cannot be read, or None (also when empty)."""
    if not path:
        return None
    try:
        read_card(path)
    except SarDespeckleError as error:
        return str(error)
    return None


def create_default_models_folder() -> None:
    """Create the default user models folder so the setting's default names a folder that exists
    (the Options dialog refuses OK otherwise); a failure (read-only home) is only logged."""
    problem = user_models.ensure_models_folder(default_models_folder())
    if problem:
        warn_once(problem + " User-trained models cannot be listed until it exists or another "
                  "folder is set in Settings > Options > Processing > Providers > SAR Despeckle.")


def _check_models_folder(value) -> None:
    """The setting's validator: empty (the default), the default folder even when it could not be
    created, or an existing folder."""
    if not value or os.path.normpath(str(value)) == os.path.normpath(default_models_folder()):
        return
    if not os.path.isdir(value):
        raise ValueError(f"User models folder '{value}' does not exist: create it, or clear the "
                         "field to use the default folder.")


def models_folder_setting(group: str) -> Setting:
    """The Processing setting of the user models folder, in ``group`` (the provider's name)."""
    return Setting(
        group, MODELS_FOLDER_SETTING, "User models folder (model cards, .json)",
        default_models_folder(), valuetype=Setting.FOLDER, validator=_check_models_folder,
    )
