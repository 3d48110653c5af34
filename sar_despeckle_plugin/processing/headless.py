"""A headless QGIS with Processing and this provider: the one start-up that tests, scripts and
the test-data builders share.

    from sar_despeckle_plugin.processing.headless import start_qgis
    qgis = start_qgis()                   # QgsApplication + Processing + the sar_despeckle provider
    qgis.processing.run("sar_despeckle:despeckle", {...})
    qgis.stop()                           # removes the provider again

``Processing.initialize()`` loads QGIS's own providers only (from QGIS's Python plugins folder,
which a standalone script must put on ``sys.path`` itself); third-party providers are added by
hand, as the plugin's ``initProcessing()`` does inside QGIS. ``QT_QPA_PLATFORM`` defaults to
``offscreen``. Torch is not imported here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

#: QGIS's own Python plugins (``processing`` among them) on Debian.
QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"


@dataclass
class HeadlessQgis:
    """What :func:`start_qgis` started: the application, the ``processing`` module (None when
    Processing was not initialised) and our provider (None when not added)."""

    app: object
    processing: object | None
    provider: object | None

    def stop(self) -> None:
        """Remove our provider from the registry (the application stays up for the process)."""
        if self.provider is not None:
            from qgis.core import QgsApplication

            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None


def start_qgis(processing: bool = True, provider: bool = True) -> HeadlessQgis:
    """Start a headless QgsApplication; with ``processing``, initialise Processing (QGIS's own
    providers); with ``provider``, add the ``sar_despeckle`` provider."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if QGIS_PYTHON_PLUGINS not in sys.path:
        sys.path.append(QGIS_PYTHON_PLUGINS)
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    module = ours = None
    if processing:
        import processing as module
        from processing.core.Processing import Processing

        Processing.initialize()
    if provider:
        from .provider import SarDespeckleProvider

        ours = SarDespeckleProvider()
        QgsApplication.processingRegistry().addProvider(ours)
    return HeadlessQgis(app, module, ours)
