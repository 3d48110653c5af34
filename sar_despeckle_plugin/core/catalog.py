"""Names of methods, devices and model folders, importable without torch.

The Processing layer builds its METHOD enum from this list before torch is ever imported;
``core.despeckle.filters.CLASSICAL_METHODS`` must list the same ids in the same order (a test checks).
"""

import os

CLASSICAL_METHOD_LABELS = {
    "boxcar": "Boxcar (moving average)",
    "lee": "Lee (MMSE, 1980)",
    "refined_lee": "Refined Lee (edge-aligned windows, 1981)",
    "lee_sigma": "Improved Lee sigma (point targets kept, 2009)",
    "frost": "Frost (exponential kernel)",
    "gamma_map": "Gamma-MAP (Lopes 1990)",
    "kuan": "Kuan (LMMSE)",
}

DEFAULT_METHOD = "refined_lee"

#: Folder of the networks shipped with the plugin (model cards and weights).
SHIPPED_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
#: Name of the shipped network that is the default METHOD when its card is present.
DEFAULT_NETWORK = "sarcnn_default"

#: Choices of the DEVICE parameter.
DEVICES = ("auto", "cpu", "cuda")
