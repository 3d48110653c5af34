"""Shared fixtures: the repository on sys.path, a headless QGIS application when asked for."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def shared_data(relative: str) -> str:
    """Path of a real-data file under ../shared/data, or skip the test when it is absent."""
    path = os.path.join(DATA, relative)
    if not os.path.exists(path):
        pytest.skip(f"real data {relative} not present")
    return path
