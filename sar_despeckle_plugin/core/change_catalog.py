"""Names of the change-detection methods and band layouts, importable without torch.

``sar_despeckle:change_detection`` builds its METHOD and BAND_LAYOUT enums from these before
torch is ever imported; ``core.change.detectors.DETECTORS`` implements every method listed here (a test
checks). Enum indices are part of the scripting interface: new methods are appended, never
inserted.
"""

#: METHOD id -> label, in enum order.
CHANGE_METHOD_LABELS = {
    "omnibus": "Omnibus Wishart likelihood-ratio test (Conradsen 2016; sequential first-change date)",
    "log_ratio_ki_gg": "Log-ratio, Kittler-Illingworth threshold (generalized Gaussian classes)",
    "log_ratio_ki_gamma": "Log-ratio, Kittler-Illingworth threshold (Gamma classes)",
    "log_ratio_otsu": "Log-ratio, Otsu threshold",
    "learned": "Learned detector (CNN with global attention after MTDN; dual-pol, change probability)",
}

DEFAULT_CHANGE_METHOD = "omnibus"
#: The shipped learned detector (card and weights in the plugin's weights folder).
DEFAULT_CHANGE_MODEL = "change_default"

#: BAND_LAYOUT id -> label, in enum order. Bands per date: 1, 2 and 4.
BAND_LAYOUT_LABELS = {
    "single": "Single-pol: one intensity, amplitude or dB band",
    "dual": "Dual-pol intensities: two bands (VV, VH)",
    "c2": "Dual-pol covariance C2: four bands (C11, C22, Re C12, Im C12), linear",
}

#: Number of bands every date must have in each layout.
LAYOUT_BANDS = {"single": 1, "dual": 2, "c2": 4}
