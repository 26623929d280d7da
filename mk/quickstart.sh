#!/usr/bin/env bash
# make quickstart: trains the quickstart model (about 10M parameters) for a
# few minutes on 2 CPU cores and shows the loss falling. The previous
# quickstart run, if any, is kept as runs/quickstart.previous.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
run=runs/quickstart
if [ -d "$run" ]; then rm -rf "$run.previous"; mv "$run" "$run.previous"; fi
build/presight train config/quickstart.cfg run.dir="$run" "$@"
first=$(head -n 1 "$run/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
last=$(tail -n 1 "$run/metrics.jsonl" | sed 's/.*"loss":\([0-9.]*\).*/\1/')
echo
echo "quickstart: loss $first at step 1 -> $last at the end (uniform guess over 260 byte ids: $(awk 'BEGIN{printf "%.3f", log(260)}'))"
echo "run directory: $run (config.cfg, metrics.jsonl, model.h5, final.json)"
