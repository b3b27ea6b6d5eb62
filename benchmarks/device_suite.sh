#!/usr/bin/env bash
# The prepared GPU run of benchmarks/device_suite.py (its docstring has the sections and JSON).
#
#   benchmarks/device_suite.sh --fetch_wheels     # here, once: fill the gitignored .whl/
#   benchmarks/device_suite.sh [--out DIR] [--budget_s 480]   # on the GPU machine (carry .whl)
#   benchmarks/device_suite.sh --dry_run --out /tmp/suite     # any machine, tiny shapes, < 2 min
#
# The GPU image has jax, flax, optax, orbax-checkpoint and numpy but not
# ml_collections, which every videogen config imports; the suite imports no
# TensorFlow, TFDS, grain or clu. When ml_collections is missing, its wheel is
# installed from .whl/ into /tmp/videogen-site (no network needed).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
# Pure-Python wheels the suite needs beyond the GPU image (their own needs,
# absl-py and PyYAML, are in the image).
wheels=('ml_collections==1.1.0')

if [[ "${1:-}" == "--fetch_wheels" ]]; then
  "$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation py --platform any -d .whl "${wheels[@]}"
  exit 0
fi

if ! "$python" -c 'import ml_collections' 2>/dev/null; then
  if ! compgen -G '.whl/*.whl' >/dev/null; then
    echo "device_suite.sh: error: ml_collections is not installed and .whl/ holds no wheel;" \
      "run 'benchmarks/device_suite.sh --fetch_wheels' where pip can reach PyPI and carry .whl" >&2
    exit 2
  fi
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/videogen-site .whl/*.whl
  export PYTHONPATH="/tmp/videogen-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$python" benchmarks/device_suite.py "$@"
