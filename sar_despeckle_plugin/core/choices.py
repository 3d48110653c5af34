"""The choices every enum parameter offers, importable without torch.

The Processing layer builds its METHOD, DEVICE, BAND_LAYOUT and RESAMPLE_MODE enums from these
before torch is ever imported; the core modules that implement the choices take their ids from
here or are checked against them by the tests (``core.despeckle.filters.CLASSICAL_METHODS``,
``core.change.detectors.DETECTORS``). Enum indices are part of the scripting interface
(``qgis_process`` and the modeler store the index): new choices are appended, never inserted.
"""

import os

# ------------------------------------------------------------------------------------------
# Shared

#: Choices of the DEVICE parameter.
DEVICES = ("auto", "cpu", "cuda")
#: Folder of the networks shipped with the plugin (model cards and weights).
SHIPPED_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

# ------------------------------------------------------------------------------------------
# sar_despeckle:despeckle

#: METHOD id -> label of the classical filters, in enum order (the shipped networks, then the
#: user's, follow them in the enum).
CLASSICAL_METHOD_LABELS = {
    "boxcar": "Boxcar (moving average)",
    "lee": "Lee (MMSE, 1980)",
    "refined_lee": "Refined Lee (edge-aligned windows, 1981)",
    "lee_sigma": "Improved Lee sigma (point targets kept, 2009)",
    "frost": "Frost (exponential kernel)",
    "gamma_map": "Gamma-MAP (Lopes 1990)",
    "kuan": "Kuan (LMMSE)",
}

#: Name of the shipped network that METHOD = Automatic tries first.
DEFAULT_NETWORK = "sarcnn_default"
#: METHOD id and label of the automatic choice: the option right after the classical filters
#: (index 7), the default; the networks follow it (``core.despeckle.choice``).
AUTOMATIC_METHOD = "automatic"
AUTOMATIC_METHOD_LABEL = "Automatic: the network whose card fits the input, else the best classical filter for its looks"
#: What ``DespeckleSettings`` runs when no method is given: the algorithm's default too.
DEFAULT_METHOD = AUTOMATIC_METHOD

# ------------------------------------------------------------------------------------------
# sar_despeckle:change_detection

#: METHOD id -> label, in enum order.
CHANGE_METHOD_LABELS = {
    "omnibus": "Omnibus Wishart likelihood-ratio test (Conradsen 2016; sequential first-change date)",
    "log_ratio_ki_gg": "Log-ratio, Kittler-Illingworth threshold (generalized Gaussian classes)",
    "log_ratio_ki_gamma": "Log-ratio, Kittler-Illingworth threshold (Gamma classes)",
    "log_ratio_otsu": "Log-ratio, Otsu threshold",
    "learned": "Learned detector (CNN with global attention after MTDN; a model for dual-pol and one for "
               "single-pol dates; change probability)",
    "unsupervised": "Unsupervised learned detector: a small CNN trained on the pair itself from confident "
                    "log-ratio pseudo-labels (change probability)",
    "automatic": "Automatic: the learned detector where its card fits (dual-pol), else the unsupervised "
                 "detector on despeckled dates",
}

#: METHOD = Automatic (``core.change.automatic``): the default.
AUTOMATIC_CHANGE_METHOD = "automatic"
DEFAULT_CHANGE_METHOD = AUTOMATIC_CHANGE_METHOD
#: The shipped learned detectors (cards and weights in the plugin's weights folder): dual-pol
#: (intensities and C2) and single-pol.
DEFAULT_CHANGE_MODEL = "change_default"
SINGLE_POL_CHANGE_MODEL = "change_single"

#: BAND_LAYOUT id -> label, in enum order. Bands per date: 1, 2 and 4.
BAND_LAYOUT_LABELS = {
    "single": "Single-pol: one intensity, amplitude or dB band",
    "dual": "Dual-pol intensities: two bands (VV, VH)",
    "c2": "Dual-pol covariance C2: four bands (C11, C22, Re C12, Im C12), linear",
}

#: Number of bands every date must have in each layout.
LAYOUT_BANDS = {"single": 1, "dual": 2, "c2": 4}
#: Indices of the intensity (diagonal) bands of each layout.
INTENSITY_BANDS = {"single": (0,), "dual": (0, 1), "c2": (0, 1)}

# ------------------------------------------------------------------------------------------
# sar_despeckle:despeckle_multitemporal

#: METHOD id -> label, in enum order.
MULTITEMPORAL_METHOD_LABELS = {
    "quegan": "Quegan's multitemporal filter (local mean x the stack's average ratio; as SNAP's)",
    "rabasar": "RABASAR-style ratio: temporal mean despeckled by the network, each date's ratio to it "
               "despeckled, multiplied back",
    "learned": "Learned multitemporal network (Noise2Noise across dates with change masking, after MTPI-Net)",
    "multitask": "Multi-task despeckling + change network, two dates only (after MTDN)",
}
#: The default METHOD: it scored best in scripts/bench_multitemporal.py (docs/multitemporal.md).
DEFAULT_MULTITEMPORAL_METHOD = "rabasar"
#: The network RABASAR despeckles the super-image and the ratios with: it covers 1-16 looks.
MULTITEMPORAL_NETWORK = "sarcnn_looks"
#: The shipped multitemporal network METHOD learned runs (card input kind ``stack``).
MULTITEMPORAL_STACK_NETWORK = "sarcnn_stack"
#: The shipped multi-task network METHOD multitask runs (card input kind ``date_pair``).
MULTITEMPORAL_MULTITASK_NETWORK = "mtdn_multitask"

# ------------------------------------------------------------------------------------------
# sar_despeckle:decorrelate

#: BAND_LAYOUT id -> label, in enum order.
DECORRELATION_LAYOUT_LABELS = {
    "auto": "Automatic (complex bands)",
    "complex": "Complex bands (CInt16, CFloat32, ...): one channel each",
    "iq": "I/Q band pairs (I, Q, I, Q, ...): one channel per pair",
}

#: RESAMPLE_MODE id -> label, in enum order.
RESAMPLE_MODE_LABELS = {
    "spectral": "Spectral: crop the spectrum to the band (N x bandwidth samples)",
    "integer": "Integer: keep every d-th sample, d = round(1 / bandwidth)",
}
