#!/usr/bin/env bash
# The GPU kit on a GPU machine, as it is: scripts/gpu_check.py does the work (see its --help).
#   bash scripts/gpu_check.sh --out /tmp/gpu-check --bundle /somewhere/gpu_check.tar.gz
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
