"""SAR Despeckle QGIS plugin: entry point QGIS calls when it loads the plugin.

Importing the package (the plugin, ``core`` from scripts and ``training``, the batch runner) also
sets OpenMP's wait policy to passive unless the user chose one: PyTorch's threads otherwise spin
at every barrier, and when another program holds a core (a QGIS desktop is never idle) a spinning
thread waits for a descheduled one: a 7 x 7 Lee filter on two threads ran 20 times slower with
one competing process (scripts/bench_busy.py). It must be set before torch is first imported,
which the plugin does lazily.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def classFactory(iface):
    """Return the plugin object; ``iface`` is None under qgis_process and in tests."""
    from .plugin import SarDespecklePlugin

    return SarDespecklePlugin(iface)
