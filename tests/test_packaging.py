"""The plugin as QGIS installs it: metadata and the zip `make package` builds."""

import configparser
import os
import subprocess
import zipfile

from .conftest import ROOT

REQUIRED = ("name", "description", "about", "version", "qgisMinimumVersion", "author", "email",
            "tracker", "repository", "hasProcessingProvider", "license", "tags")


def read_metadata(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser["general"]


def test_metadata_is_complete():
    with open(os.path.join(ROOT, "metadata.txt"), encoding="utf-8") as handle:
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
        metadata = read_metadata(archive.read("sar_despeckle_plugin/metadata.txt").decode())
    assert metadata["name"] == "SAR Despeckle"
    assert "sar_despeckle_plugin/__init__.py" in names and "sar_despeckle_plugin/LICENSE" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(n.startswith("sar_despeckle_plugin/") for n in names)
