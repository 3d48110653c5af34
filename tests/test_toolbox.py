"""The plugin as the Toolbox and the Plugin Manager show it: found by the words users type, with
an icon, tags, a short description and a working help link (issue 18, item 5)."""

import configparser
import os
import re

import pytest

from .conftest import ROOT

PROVIDER = "sar_despeckle"
#: What users type in the Toolbox search, and algorithms it must find.
SEARCHES = {
    "lee": {"despeckle"},
    "frost": {"despeckle"},
    "radar": {"despeckle", "decorrelate", "change_detection"},
    "speckle filter": {"despeckle"},
    "sentinel": {"despeckle", "decorrelate", "change_detection"},
    "slc": {"decorrelate"},
    "change detection": {"change_detection"},
}


def our_algorithms():
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().providerById(PROVIDER).algorithms()


def toolbox_search(text: str) -> set[str]:
    """Algorithm ids QGIS's own Toolbox filter shows for ``text`` (QgsProcessingToolboxProxyModel,
    the model behind the Toolbox's search box)."""
    from qgis.core import QgsApplication
    from qgis.gui import QgsProcessingToolboxProxyModel

    proxy = QgsProcessingToolboxProxyModel(None, QgsApplication.processingRegistry())
    proxy.setFilterString(text)
    found = set()

    def walk(parent):
        for row in range(proxy.rowCount(parent)):
            index = proxy.index(row, 0, parent)
            algorithm = proxy.toolboxModel().algorithmForIndex(proxy.mapToSource(index))
            if algorithm is not None:
                found.add(algorithm.id())
            walk(index)

    walk(proxy.index(-1, -1))
    return found


@pytest.mark.parametrize("text", sorted(SEARCHES))
def test_toolbox_search_finds_the_algorithms(qgis_processing, text):
    found = toolbox_search(text)
    assert {f"{PROVIDER}:{name}" for name in SEARCHES[text]} <= found, found
    assert all(not algorithm.startswith(PROVIDER) for algorithm in toolbox_search("buffer"))


def test_every_algorithm_has_icon_tags_short_description_group_and_help(qgis_processing):
    from qgis.PyQt.QtCore import QUrl

    from sar_despeckle_plugin.processing.base import GROUPS

    algorithms = our_algorithms()
    assert len(algorithms) >= 3
    for algorithm in algorithms:
        assert not algorithm.icon().isNull() and os.path.isfile(algorithm.svgIconPath()), algorithm.id()
        assert {"sar", "radar", "speckle"} <= set(algorithm.tags()), algorithm.id()
        description = algorithm.shortDescription()
        assert 20 < len(description) < 200 and description.endswith("."), description
        assert algorithm.group() in GROUPS.values() and algorithm.groupId() in GROUPS
        url = QUrl(algorithm.helpUrl())
        assert url.isLocalFile() and os.path.isfile(url.toLocalFile()), algorithm.helpUrl()
        with open(url.toLocalFile(), encoding="utf-8") as page:
            assert f'id="{url.fragment()}"' in page.read(), f"no help section for {algorithm.id()}"


def test_provider_has_the_icon(qgis_processing):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById(PROVIDER)
    assert not provider.icon().isNull() and provider.svgIconPath().endswith("icon.svg")


def test_icon_is_an_svg_that_renders(qgis_processing):
    from qgis.PyQt.QtSvg import QSvgRenderer

    from sar_despeckle_plugin.processing.resources import ICON_PATH

    renderer = QSvgRenderer(ICON_PATH)
    assert renderer.isValid() and renderer.defaultSize().width() == 32


def test_help_page_gives_torch_install_steps_per_platform():
    with open(os.path.join(ROOT, "sar_despeckle_plugin", "help", "index.html"), encoding="utf-8") as page:
        text = page.read()
    for platform in ("Debian", "Ubuntu", "Windows", "OSGeo4W", "macOS"):
        assert platform in text
    assert "--break-system-packages" in text  # Debian 12 / Ubuntu 23.04+ pip refuses without it
    assert "QGIS.app/Contents/MacOS/bin/python3 -m pip install" in text
    for href in re.findall(r'href="#([^"]+)"', text):
        assert f'id="{href}"' in text, href


def test_plugin_manager_metadata_has_icon_and_is_not_hidden_as_experimental():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, "sar_despeckle_plugin", "metadata.txt"), encoding="utf-8")
    metadata = parser["general"]
    assert os.path.isfile(os.path.join(ROOT, "sar_despeckle_plugin", metadata["icon"]))
    assert metadata["experimental"] == "False"
    for key in ("homepage", "tracker", "repository"):
        assert metadata[key].startswith("https://"), key
    assert "help page" in metadata["about"], "the zip holds no README: point to the shipped help"
