#!/usr/bin/env bash
# Runs every test: the Criterion binaries build/tests/test_* and f64_*, then
# the scripted tests tests/t_*.sh (exit 0 pass, 77 skip, anything else fail).
# Prints one closing line "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=${PRESIGHT_THREADS:-2}
passed=0 failed=0 skipped=0 failures=()
log_dir=build/test-logs
mkdir -p "$log_dir"

run_one() { # name command...
  local name=$1; shift
  local start=$SECONDS log="$log_dir/$name.log"
  "$@" >"$log" 2>&1
  local rc=$?
  local took=$((SECONDS - start))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); printf '  PASS  %-40s %4ss\n' "$name" "$took"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); printf '  SKIP  %-40s %s\n' "$name" "$(tail -n 1 "$log")"
  else
    failed=$((failed + 1)); failures+=("$name"); printf '  FAIL  %-40s %4ss (log: %s)\n' "$name" "$took" "$log"
    tail -n 25 "$log" | sed 's/^/        /'
  fi
}

echo "== unit tests (Criterion)"
for t in build/tests/test_* build/tests/f64_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t" --jobs 1
done
echo "== scripted tests"
for t in tests/t_*.sh; do
  [ -f "$t" ] || continue
  run_one "$(basename "$t" .sh)" bash "$t"
done
echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
