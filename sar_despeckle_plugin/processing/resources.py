"""The plugin's own files that the Toolbox shows: its icon and its help page."""

from __future__ import annotations

import os

from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The icon of the provider, its algorithms and the Plugin Manager entry (metadata ``icon``).
ICON_PATH = os.path.join(PLUGIN_DIR, "icon.svg")
#: The help page shipped in the plugin: which algorithm to choose, PyTorch install steps, routes
#: for complex input; one section per algorithm, anchored by its name.
HELP_PAGE = os.path.join(PLUGIN_DIR, "help", "index.html")


def icon() -> QIcon:
    """The plugin icon."""
    return QIcon(ICON_PATH)


def help_url(section: str = "") -> str:
    """A file URL of the help page, at ``section`` (an anchor) when given."""
    url = QUrl.fromLocalFile(HELP_PAGE)
    if section:
        url.setFragment(section)
    return url.toString()
