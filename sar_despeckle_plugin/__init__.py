"""SAR Despeckle QGIS plugin: entry point QGIS calls when it loads the plugin."""


def classFactory(iface):
    """Return the plugin object; ``iface`` is None under qgis_process and in tests."""
    from .plugin import SarDespecklePlugin

    return SarDespecklePlugin(iface)
