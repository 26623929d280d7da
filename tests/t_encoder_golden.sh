#!/usr/bin/env bash
# t_encoder_golden.sh - the committed encoder goldens still hold: TF.js
# recomputes one picture (chelsea) today and must give the committed vectors
# (make encoder-golden-check; a few seconds in node). Needs make test-data.
set -u
cd "$(dirname "$0")/.."
[ -d data/encoders/npm/node_modules/nsfwjs ] || { echo "skip: data/encoders/npm missing (make test-data)"; exit 77; }
make --no-print-directory encoder-golden-check 2>&1 | grep -v '^====\|^Hi, looks like\|^$'
exit "${PIPESTATUS[0]}"
