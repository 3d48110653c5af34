"""The ``sar_despeckle`` Processing provider and its settings."""

from processing.core.ProcessingConfig import ProcessingConfig
from qgis.core import QgsApplication, QgsProcessingProvider

from . import resources
from .change_detection_algorithm import ChangeDetectionAlgorithm
from .decorrelate_algorithm import DecorrelateAlgorithm
from .despeckle_algorithm import DespeckleAlgorithm
from .example_models import example_models
from .multitemporal_algorithm import MultitemporalAlgorithm
from .user_models import MODELS_FOLDER_SETTING, create_default_models_folder, models_folder_setting


class SarDespeckleProvider(QgsProcessingProvider):
    """Provider id ``sar_despeckle``; writes GeoTIFF rasters only."""

    def id(self) -> str:
        return "sar_despeckle"

    def name(self) -> str:
        return "SAR Despeckle"

    def icon(self):
        return resources.icon()

    def svgIconPath(self) -> str:
        return resources.ICON_PATH

    def longName(self) -> str:
        return "SAR Despeckle: speckle filtering, SLC decorrelation and change detection"

    def load(self) -> bool:
        create_default_models_folder()
        ProcessingConfig.addSetting(models_folder_setting(self.name()))
        ProcessingConfig.readSettings()
        QgsApplication.processingRegistry().providerAdded.connect(self._registered)
        return True

    def _registered(self, provider_id: str) -> None:
        """Once the registry holds this provider, list the algorithms: the example models find
        their steps (our own algorithms) only then, so listing them in ``load`` too would build
        every algorithm twice at each start-up."""
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._registered)
            self.refreshAlgorithms()

    def unload(self) -> None:
        ProcessingConfig.removeSetting(MODELS_FOLDER_SETTING)

    def loadAlgorithms(self) -> None:
        self.addAlgorithm(DespeckleAlgorithm())
        self.addAlgorithm(DecorrelateAlgorithm())
        self.addAlgorithm(ChangeDetectionAlgorithm())
        self.addAlgorithm(MultitemporalAlgorithm())
        for model in example_models():
            self.addAlgorithm(model)

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]
