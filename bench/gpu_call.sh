#!/bin/sh
# The one GPU call (docs/performance.md, "The one GPU call"): on a lent machine with torch but no
# diffusers and no network, install the carried pure-Python wheels, then run bench/gpu.py offline
# under a deadline that leaves the report written before the call's limit.
#
#   here, once:  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                    --implementation cp --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1
#   the call:    sh bench/gpu_call.sh [bench/gpu.py arguments]   (carry: .whl; OUT: report folder)
#
# Variables: PYTHON (python3), WHEELS (.whl), SITE (/tmp/site), OUT (bench-gpu), DEADLINE_S (480).
set -eu
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
HF_HUB_OFFLINE=1
PYTHONUNBUFFERED=1
export PYTHONPATH HF_HUB_OFFLINE PYTHONUNBUFFERED
exec "$PYTHON" -m bench.gpu --out "${OUT:-bench-gpu}" --deadline-s "${DEADLINE_S:-480}" "$@"
