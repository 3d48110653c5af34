"""The plugin version, read from metadata.txt (the single source of truth)."""

import configparser
import os

_METADATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "metadata.txt")


def plugin_version() -> str:
    """Version string from the plugin's metadata.txt, or "unknown" if it cannot be read."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(_METADATA, encoding="utf-8")
    return parser.get("general", "version", fallback="unknown")
