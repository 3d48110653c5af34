"""Headless training of the SAR Despeckle networks (no QGIS needed).

``python -m training prepare|train|evaluate|export|profile`` -- see ``cli.py`` and
``configs/``. The networks themselves live in ``sar_despeckle_plugin.core.models``, the single
definition the plugin loads.
"""
