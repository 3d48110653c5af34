"""The plugin as QGIS installs it: metadata and the zip `make package` builds."""

import configparser
import os
import subprocess
import zipfile

import pytest

from .conftest import ROOT

# The top-level metadata.txt is the source of truth (DESIGN.md); the plugin folder, which QGIS
# loads from a checkout (QGIS_PLUGINPATH) and `make package` zips as it is, holds a byte-identical
# regular file (no symlink: checkouts without symlinks must work).
SOURCE_METADATA = os.path.join(ROOT, "metadata.txt")
METADATA = os.path.join(ROOT, "sar_despeckle_plugin", "metadata.txt")
REQUIRED = ("name", "description", "about", "version", "qgisMinimumVersion", "author", "email",
            "tracker", "repository", "hasProcessingProvider", "license", "tags")


def read_metadata(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser["general"]


def test_metadata_is_complete():
    with open(METADATA, encoding="utf-8") as handle:
        metadata = read_metadata(handle.read())
    for key in REQUIRED:
        assert metadata.get(key, "").strip(), key
    assert metadata["qgisMinimumVersion"] == "3.22"
    assert metadata["hasProcessingProvider"] == "yes"


def test_package_zip_holds_plugin_with_metadata_and_no_caches(tmp_path):
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "package", f"BUILD={build}"], cwd=ROOT, check=True, capture_output=True)
    with zipfile.ZipFile(build / "sar_despeckle_plugin.zip") as archive:
        names = archive.namelist()
        zipped_metadata = archive.read("sar_despeckle_plugin/metadata.txt")
    with open(METADATA, "rb") as handle:
        assert zipped_metadata == handle.read()
    metadata = read_metadata(zipped_metadata.decode())
    assert metadata["name"] == "SAR Despeckle"
    assert "sar_despeckle_plugin/__init__.py" in names and "sar_despeckle_plugin/LICENSE" in names
    for shipped in ("icon.svg", "help/index.html", "models/despeckle_then_change.model3",
                    "models/slc_to_despeckled_intensity.model3", "models/despeckle_and_check_ratio.model3"):
        assert f"sar_despeckle_plugin/{shipped}" in names, shipped
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(n.startswith("sar_despeckle_plugin/") for n in names)


def test_plugin_metadata_is_a_regular_copy_of_the_top_level_file():
    assert os.path.isfile(METADATA) and not os.path.islink(METADATA)
    with open(SOURCE_METADATA, "rb") as source, open(METADATA, "rb") as plugin:
        assert plugin.read() == source.read(), "copy metadata.txt into sar_despeckle_plugin/"


def test_repository_tracks_no_symlinks():
    """A checkout without symlinks (Windows, some zip exports) must hold the same plugin."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, check=True, capture_output=True, text=True)
    links = [line.split("\t", 1)[1] for line in listing.stdout.splitlines() if line.startswith("120000 ")]
    assert not links, f"symlinks in the repository: {links}"
