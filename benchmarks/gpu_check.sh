#!/usr/bin/env bash
# #18: the GPU check (benchmarks/gpu_check.py says what it measures). Writes OUT/gpu_check.json.
#   bash benchmarks/gpu_check.sh --out DIR              on a machine with a CUDA GPU (<= 8 min on one)
#   bash benchmarks/gpu_check.sh --cpu-dry-run --out DIR  the same code on CPU at tiny sizes (the suite runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [[ " $* " != *" --cpu-dry-run "* ]]; then
  # What the check needs: raygan with its test extras (pytest runs the gpu tests). Installed only
  # when missing, so a machine without a registry runs a prepared environment as it is.
  if ! "$PY" -c "import raygan, ray, optuna, pytest, pytest_timeout" 2>/dev/null; then
    "$PY" -m pip install -q -e ".[test]"
  fi
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
exec "$PY" benchmarks/gpu_check.py "$@"
