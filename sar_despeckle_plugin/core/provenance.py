"""The provenance record every output raster carries in its metadata.

One shape for every algorithm, so a user (or a script) reads the same keys whatever made the
file: :func:`core.raster.RasterWriter` stores each item as ``SAR_DESPECKLE_<KEY>`` (strings as
they are, anything else as JSON).

=================  ===========================================================================
``algorithm``      the algorithm id (``despeckle``, ``decorrelate``, ``change_detection``)
``method``         the method id, or the network's name for a despeckling network
``model``          the model card's name when a network made it, else ""
``model_sha256``   the sha256 of the network's weights (as its card records), else ""
``parameters``     the settings of the run (JSON), less those that change only memory use
``units``          the output's units (intensity, amplitude, dB, complex)
``plugin_version`` the plugin version (metadata.txt)
=================  ===========================================================================

Algorithms add their own items after these (looks, dates, gains, plans, ...).
"""

from __future__ import annotations

import dataclasses

from .version import plugin_version

#: Settings fields that set how a run is cut into pieces (memory use), never its result: not
#: recorded among the parameters.
RUN_ONLY_FIELDS = ("tile", "strip")


def output_metadata(algorithm: str, method: str, settings, units: str, *, model: str = "",
                    model_sha256: str = "", **extra) -> dict:
    """The metadata record of an output of ``algorithm`` (see the module doc).

    ``settings``: the family's settings dataclass (or a dict of parameters); ``extra``: the
    algorithm's own items, recorded after the common ones.
    """
    parameters = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    return {
        "algorithm": algorithm,
        "method": method,
        "model": model or "",
        "model_sha256": model_sha256 or "",
        "parameters": {key: value for key, value in parameters.items() if key not in RUN_ONLY_FIELDS},
        "units": units,
        "plugin_version": plugin_version(),
        **extra,
    }
