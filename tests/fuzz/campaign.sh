#!/usr/bin/env bash
# tests/fuzz/campaign.sh SECONDS [TARGET...] - a campaign: every fuzz target (or the named ones,
# fuzz_shard ...) at once, one process each, for SECONDS, continuing from build/fuzz/corpus/.
# Each process runs under SCHED_IDLE (chrt -i 0) and nice 19, so that on a shared machine it
# gets only the cycles nobody else wants; such a process can wait many seconds for a core,
# so an input counts as a hang after FUZZ_TIMEOUT (300) s of wall time, not 10 (a 0.04 s
# input of fuzz_task_line once waited 11 s at load 26). Prints tests/fuzz/run.sh's table, one row a target,
# when all are done; build/fuzz/logs/<target>.log has each one's libFuzzer output meanwhile.
set -u
cd "$(dirname "$0")/../.."
seconds=$1; shift
bins=()
if [ $# -gt 0 ]; then for t in "$@"; do bins+=("build/fuzz/$t"); done; else bins=(build/fuzz/fuzz_*); fi
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "$b: not built (make fuzz-build)"; exit 1; }; done
bash tests/fuzz/seeds.sh build/fuzz/seeds || exit 1
mkdir -p build/fuzz/logs
idle=(nice -n 19)
chrt -i 0 true 2>/dev/null && idle=(chrt -i 0 nice -n 19)
pids=()
for b in "${bins[@]}"; do
  FUZZ_SEEDS_READY=1 FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-300} "${idle[@]}" bash tests/fuzz/run.sh "$seconds" "$b" >"build/fuzz/logs/$(basename "$b").row" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
printf '%-24s %10s %8s %8s  %s\n' target executions coverage corpus result
for b in "${bins[@]}"; do tail -n +2 "build/fuzz/logs/$(basename "$b").row"; done
exit $failed
