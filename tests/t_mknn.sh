#!/usr/bin/env bash
# core/mknn.c against a numpy computation written from the Platonic-representation
# definition (tests/reference/mknn_reference.py): prepared features, every layer pair's
# score, the maximum and where it is, on random heavy-tailed and structured features.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=build/tests/tools/mknn_tool
[ -x "$tool" ] || { echo "skip: $tool not built (make tests-build)"; exit 77; }
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "skip: python3-numpy missing (make deps)"; exit 77; }
OMP_NUM_THREADS=${PRESIGHT_THREADS:-2} /usr/bin/python3 tests/reference/mknn_reference.py "$tool"
