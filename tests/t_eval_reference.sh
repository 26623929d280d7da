#!/usr/bin/env bash
# The model-free scoring rules of `presight eval` against transcriptions of the published
# Python the anchors run (lm-evaluation-harness rolling windows, word counts and
# acc/acc_norm; EvalAI's answer processor; ChartQA's relaxed match; MME's yes/no parser):
# tests/reference/eval_reference.py, each with a negative control.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=build/tests/tools/eval_tool
[ -x "$tool" ] || { echo "skip: $tool not built (make tests-build)"; exit 77; }
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "skip: python3-numpy missing (make deps)"; exit 77; }
/usr/bin/python3 tests/reference/eval_reference.py "$tool"
