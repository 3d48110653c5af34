"""QGIS-free core of SAR Despeckle: raster I/O, tiling, filters and models.

Nothing below this package imports ``qgis``: the training package, tests and scripts use it
directly. Modules that need torch import it at their top; the Processing layer imports them
lazily so that a missing torch never breaks provider loading.
"""
