"""The plugin object: registers the Processing provider, and nothing else."""

from qgis.core import QgsApplication

from .processing.provider import SarDespeckleProvider


class SarDespecklePlugin:
    """Adds the ``sar_despeckle`` provider to the Processing registry.

    ``initProcessing`` is what ``qgis_process`` calls (with ``iface`` None); the desktop calls
    ``initGui``, which only delegates to it.
    """

    def __init__(self, iface=None) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = SarDespeckleProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
