#!/usr/bin/env bash
# Each fuzz target (mk/fuzz.mk, tests/fuzz/) for a few seconds on its seeds:
# catches a target that no longer builds and a reader that crashes, leaks or
# hangs on the first mutations. Campaigns are `make fuzz FUZZ_SECONDS=...`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "skip: clang not installed (make deps)"; exit 77; }
bins=(build/fuzz/fuzz_*)
[ -x "${bins[0]}" ] || { echo "fuzz targets not built (make fuzz-build)"; exit 1; }
# Two at a time on two cores (one thread each): the same seconds of a core for every target in
# half the wall time.
cores=$(nproc 2>/dev/null || echo 1)
FUZZ_JOBS=$((cores < 2 ? 1 : 2)) bash tests/fuzz/run.sh "${PRESIGHT_FUZZ_SECONDS:-3}" "${bins[@]}"

# Negative control: a leak planted in our own code must still be found through the suppressions.
log=build/fuzz/logs/planted-leak.log
if PRESIGHT_FUZZ_PLANTED_LEAK=1 LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp" \
  build/fuzz/fuzz_tokenizer_file -runs=20 -artifact_prefix=build/fuzz/logs/planted- build/fuzz/seeds/fuzz_tokenizer_file >"$log" 2>&1; then
  echo "the planted leak was not caught (see $log)"; exit 1
fi
grep -q "LeakSanitizer: detected memory leaks" "$log" || { echo "planted leak: no LeakSanitizer report ($log)"; exit 1; }
echo "planted leak caught"
