#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS BINARY... - runs each libFuzzer target for SECONDS on
# its seed corpus (tests/fuzz/seeds.sh) plus what earlier campaigns kept in
# build/fuzz/corpus/<target>; a crash, leak, timeout or failed check is saved
# under build/fuzz/findings/<target>/ and makes the run fail. Prints one line per
# target: executions, coverage, corpus size, result. FUZZ_SEEDS_READY=1: the seeds are
# already written (tests/fuzz/campaign.sh writes them once for all its targets);
# FUZZ_TIMEOUT: seconds of wall time one input may take before it counts as a hang (10);
# FUZZ_JOBS: targets run at once (1).
set -u
cd "$(dirname "$0")/../.."
seconds=$1; shift
root=build/fuzz
[ "${FUZZ_SEEDS_READY:-0}" = 1 ] || bash tests/fuzz/seeds.sh "$root/seeds" || exit 1
# One thread: a target needs none, and an OpenMP team with a starved thread (a busy
# machine, SCHED_IDLE) waits in sched_yield past -timeout on an input that takes 0.4 s of CPU.
export OMP_NUM_THREADS=1 PRESIGHT_THREADS=1
# One target: its row (target, executions, coverage, corpus, result) into $root/logs/NAME.result,
# and what it found under it; exit 1 when it found something.
run_target() { # binary
  local bin=$1 name corpus findings log rc execs cov units result
  name=$(basename "$bin")
  corpus="$root/corpus/$name" findings="$root/findings/$name" log="$root/logs/$name.log"
  mkdir -p "$corpus" "$findings" "$root/logs"
  # -timeout: one input that takes longer is a hang; -rss_limit_mb: a reader that balloons is a
  # finding, and so is one allocation of 256 MB for one input (a few bytes declaring a huge size).
  LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0" \
  "$bin" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 \
    -artifact_prefix="$findings/" "$corpus" "$root/seeds/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  units=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="FOUND (see $log)"; fi
  { printf '%-24s %10s %8s %8s  %s\n' "$name" "${execs:-?}" "${cov:-?}" "$units" "$result"
    [ $rc -eq 0 ] || grep -m 3 -E 'ERROR|fuzz check failed|SUMMARY' "$log" | sed 's/^/    /'; } >"$root/logs/$name.result"
  [ $rc -eq 0 ]
}

# FUZZ_JOBS targets at a time (1): each is one thread, so on N cores N of them take the time
# of one (t_fuzz runs them two at a time on 2 cores).
jobs=${FUZZ_JOBS:-1}
failed=0 running=0
for bin in "$@"; do
  if [ "$running" -ge "$jobs" ]; then wait -n || failed=1; running=$((running - 1)); fi
  run_target "$bin" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
printf '%-24s %10s %8s %8s  %s\n' target executions coverage corpus result
for bin in "$@"; do cat "$root/logs/$(basename "$bin").result"; done
exit $failed
