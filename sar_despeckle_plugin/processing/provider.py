"""The ``sar_despeckle`` Processing provider."""

from qgis.core import QgsProcessingProvider

from .despeckle_algorithm import DespeckleAlgorithm


class SarDespeckleProvider(QgsProcessingProvider):
    """Provider id ``sar_despeckle``; writes GeoTIFF rasters only."""

    def id(self) -> str:
        return "sar_despeckle"

    def name(self) -> str:
        return "SAR Despeckle"

    def longName(self) -> str:  # noqa: N802 (QGIS's name)
        return "SAR Despeckle: speckle filtering, SLC decorrelation and change detection"

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        self.addAlgorithm(DespeckleAlgorithm())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS's name)
        return ["tif"]
