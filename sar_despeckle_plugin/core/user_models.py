"""Where user-trained models live by default, computed without QGIS (no ``qgis`` import).

QGIS deletes a plugin's folder when it updates the plugin, so models a user trains belong in
a folder of their own: ``<QGIS settings folder>/sar_despeckle/models``. The QGIS settings folder
is the active profile's folder, which QGIS resolves as follows (``QgsUserProfileManager``): the
folder named by the ``QGIS_CUSTOM_CONFIG_PATH`` environment variable when it is set, otherwise
the platform's application-data folder for QGIS 3, then ``profiles/default``:

* Linux and other Unixes: ``~/.local/share/QGIS/QGIS3/profiles/default`` (``$XDG_DATA_HOME``
  replaces ``~/.local/share`` when set);
* Windows: ``%APPDATA%\\QGIS\\QGIS3\\profiles\\default``;
* macOS: ``~/Library/Application Support/QGIS/QGIS3/profiles/default``.

Inside QGIS, ``QgsApplication.qgisSettingsDirPath()`` gives the active profile (which may not be
``default``): pass it as ``settings_folder``. ``python -m training export`` writes here by
default, so the plugin finds the model in its default user models folder.
"""

from __future__ import annotations

import os
import sys

#: Below the QGIS settings folder.
MODELS_SUBFOLDER = os.path.join("sar_despeckle", "models")


def qgis_settings_folder(platform: str | None = None, environ: dict | None = None) -> str:
    """The default QGIS 3 profile's folder, as QGIS computes it (see the module's docstring)."""
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    custom = environ.get("QGIS_CUSTOM_CONFIG_PATH")
    if custom:
        base = custom
    elif platform.startswith("win"):
        appdata = environ.get("APPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Roaming")
        base = os.path.join(appdata, "QGIS", "QGIS3")
    elif platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support", "QGIS", "QGIS3")
    else:
        data_home = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
        base = os.path.join(data_home, "QGIS", "QGIS3")
    return os.path.join(base, "profiles", "default")


def default_models_folder(settings_folder: str | None = None) -> str:
    """``<settings_folder>/sar_despeckle/models``; ``settings_folder`` defaults to
    :func:`qgis_settings_folder` (inside QGIS pass ``QgsApplication.qgisSettingsDirPath()``)."""
    return os.path.join(settings_folder or qgis_settings_folder(), MODELS_SUBFOLDER)


def ensure_models_folder(folder: str) -> str | None:
    """Create ``folder`` (and its parents) when it is absent; None when it exists afterwards,
    else one line saying why it could not be created (e.g. a read-only home): callers carry on
    without it, as a missing folder simply holds no models."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        return f"Cannot create the user models folder '{folder}': {error.strerror or error}."
    return None
