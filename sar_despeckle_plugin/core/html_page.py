"""The small self-contained HTML pages that reports write for QGIS's Results Viewer: one look
for all of them, pictures linked by file name so a page and its picture move together."""

from __future__ import annotations

import html
import os
from typing import Iterable
from urllib.parse import quote

STYLE = """body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; vertical-align: top; }
td.n { color: #555; font-size: 90%; }"""


def key_value_table(rows: Iterable[tuple[str, object]]) -> str:
    """A two-column table of (name, value) rows, both escaped."""
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(value))}</td></tr>"
                    for name, value in rows)
    return f"<table>{cells}</table>"


def image_paragraph(path: str, alt: str) -> str:
    """An image paragraph linking ``path`` by its file name (the page lies beside it)."""
    return f'<p><img src="{quote(os.path.basename(path))}" alt="{html.escape(alt)}"></p>'


def write_page(path: str, title: str, body: str) -> None:
    """Write a page titled ``title`` (escaped; also its heading) around ``body`` (HTML)."""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
{STYLE}
</style></head><body>
{body}
</body></html>
"""
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(page)
