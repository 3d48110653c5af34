#!/usr/bin/env bash
# The check to run on a lent GPU (docs/gpu.md): the CUDA test subset, then every algorithm timed
# file to file on a full-size GRD-like raster and one training step (scripts/device_check.py),
# a Markdown table at the end; under 8 minutes on an H100. On a CPU, or with --small, it runs at
# a small size. Arguments go to scripts/device_check.py (--small, --out DIR, --budget SECONDS).
# Python: $PYTHON, else the project's .venv, else python3 (with torch, GDAL's bindings, pytest).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export QT_QPA_PLATFORM=offscreen
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.cuda.is_available())" || exit 2

echo "== CUDA test subset (skipped without a GPU)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_accelerate.py
tests=$?

echo "== timings"
"$PY" scripts/device_check.py "$@"
timings=$?
exit $(( tests || timings ))
