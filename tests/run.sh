#!/usr/bin/env bash
# Runs the tests: the Criterion binaries build/tests/test_* and f64_*, then
# the scripted tests tests/t_*.sh (exit 0 pass, 77 skip, anything else fail).
#
#   bash tests/run.sh                 every test (make test)
#   bash tests/run.sh --fast          the fast tier (make check): every unit
#                                     test and the scripted tests marked
#                                     "# tier: fast" (under a minute, built),
#                                     with PRESIGHT_TEST_TIER=fast: a unit test
#                                     may run a smaller case (tests/test_util.h)
#   bash tests/run.sh NAME...         only these (test_plan, t_train_cli, ...)
#
# Each test runs under a time limit, PRESIGHT_TEST_TIMEOUT seconds (default
# 900; a scripted test may ask for more with a "# timeout: N" line); a test
# that runs out is killed and reported as TIMEOUT, naming it. Prints one
# closing line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=${PRESIGHT_THREADS:-2}
# OpenMP threads that wait sleep instead of spinning: on a busy machine a spinning thread
# burns the core its partner needs (test_decode, 2 threads at load 26: 37 s of CPU and
# 435 s wall spinning, 1.3 s and 4 s passive); on a quiet one it costs a wake-up per
# parallel region. A caller's own setting wins.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
limit=${PRESIGHT_TEST_TIMEOUT:-900}
passed=0 failed=0 skipped=0 failures=()
log_dir=build/test-logs
mkdir -p "$log_dir"

fast=0 names=()
for arg in "$@"; do
  case $arg in
    --fast) fast=1; export PRESIGHT_TEST_TIER=fast ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) names+=("$arg") ;;
  esac
done

wanted() { # name: whether the arguments select it
  [ ${#names[@]} -eq 0 ] && return 0
  local n
  for n in "${names[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

run_one() { # name seconds command...
  local name=$1 seconds=$2; shift 2
  local start=$SECONDS log="$log_dir/$name.log"
  timeout -k 10 "$seconds" "$@" >"$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); printf '  PASS  %-40s %4ss\n' "$name" "$took"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); printf '  SKIP  %-40s %s\n' "$name" "$(tail -n 1 "$log")"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    failed=$((failed + 1)); failures+=("$name")
    printf '  TIMEOUT %-38s ran out of its %ss (log: %s)\n' "$name" "$seconds" "$log"
    tail -n 10 "$log" | sed 's/^/        /'
  else
    failed=$((failed + 1)); failures+=("$name"); printf '  FAIL  %-40s %4ss (log: %s)\n' "$name" "$took" "$log"
    tail -n 25 "$log" | sed 's/^/        /'
  fi
}

found=()
echo "== unit tests (Criterion)"
for t in build/tests/test_* build/tests/f64_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  case $t in *.d) continue ;; esac
  name=$(basename "$t")
  wanted "$name" || continue
  found+=("$name")
  run_one "$name" "$limit" "$t" --jobs 1
done
echo "== scripted tests"
for t in tests/t_*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .sh)
  wanted "$name" || continue
  [ $fast -eq 1 ] && ! grep -q '^# tier: fast' "$t" && continue
  found+=("$name")
  seconds=$(sed -n 's/^# timeout: \([0-9]*\).*/\1/p' "$t" | head -n 1)
  run_one "$name" "${seconds:-$limit}" bash "$t"
done
for n in "${names[@]}"; do
  printf '%s\n' "${found[@]}" | grep -qx "$n" || { echo "  no test named $n (unit tests are built by make tests-build)"; failed=$((failed + 1)); failures+=("$n"); }
done
echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
