"""MuLoG + BM3D on single-channel intensities, run as a comparison only (never shipped).

Runs inside the separate comparison venv that `make bench` creates (``build/venv-compare``,
with PyPI's ``mulog`` and ``bm3d``), so their numpy and dependencies never touch the plugin's
environment. Reads an .npz of noisy intensities (arrays ``image_0``, ``image_1``, ...),
writes an .npz of the estimates (same keys, linear intensity) and the seconds each took.

    build/venv-compare/bin/python scripts/mulog_compare.py IN.npz OUT.npz --looks 1
"""

import argparse
import time

import numpy as np
from mulog import PREDEFINED_GAUSSIAN_DENOISER_NAMES_TO_DENOISER, PredefinedGaussianDenoiserNames, run_mulog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("--looks", type=float, default=1.0)
    args = parser.parse_args()
    denoiser = PREDEFINED_GAUSSIAN_DENOISER_NAMES_TO_DENOISER[PredefinedGaussianDenoiserNames.BM3D]
    results = {}
    with np.load(args.inputs) as inputs:
        for key in inputs.files:
            start = time.perf_counter()
            estimate = run_mulog(inputs[key].astype(np.float64), args.looks, denoiser)
            results[key] = np.real(np.squeeze(estimate)).astype(np.float32)
            results[f"{key}_seconds"] = np.float64(time.perf_counter() - start)
    np.savez(args.outputs, **results)


if __name__ == "__main__":
    main()
