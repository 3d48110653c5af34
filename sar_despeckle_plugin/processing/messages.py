"""Messages as the dialog's user reads them: parameters named by their labels.

The core speaks in parameter ids (``WINDOW``, ``BAND_LAYOUT``), which is what qgis_process and
batch users type; the dialog shows labels. :func:`labelled` writes each id of an algorithm's
parameters as its label followed by the id: "Window size (WINDOW) must be odd".
"""

from __future__ import annotations

import re


def short_label(description: str) -> str:
    """A parameter's label less a trailing parenthesised note: 'Window size (pixels, odd)' ->
    'Window size'."""
    return re.sub(r"\s*\([^()]*\)$", "", description)


def labelled(message: str, definitions) -> str:
    """``message`` with every id of ``definitions`` (parameter definitions) written 'Label (ID)';
    quoted text (file paths, values) and ids already in parentheses are left as they are."""
    labels = {d.name(): short_label(d.description()) for d in definitions}
    if not message or not labels:
        return message
    ids = "|".join(re.escape(name) for name in sorted(labels, key=len, reverse=True))
    pattern = re.compile(rf"'[^']*'|(?<![(\w/\\])\b({ids})\b(?![\w/\\)])")

    def replace(match: re.Match) -> str:
        name = match.group(1)
        return f"{labels[name]} ({name})" if name else match.group(0)

    return pattern.sub(replace, message)
