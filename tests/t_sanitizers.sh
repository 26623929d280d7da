#!/usr/bin/env bash
# The unit tests and a short scripted run (train, stop on a signal, resume, on
# 1 and 2 ranks) under AddressSanitizer + UndefinedBehaviorSanitizer with
# LeakSanitizer on (mk/sanitize.mk builds build/san/). Any report fails the
# test; the suppressions (tests/sanitizers/lsan.supp) name third-party
# libraries only, and a leak planted in presight's own allocations must still
# be reported.
set -euo pipefail
cd "$(dirname "$0")/.."
san=build/san
[ -x "$san/presight" ] || { echo "sanitizer build missing (make sanitize-build)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# fast_unwind_on_malloc=0: libc's asprintf has no frame pointers, and the fast
# unwinder loses the Open MPI frame above it that the suppressions match.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:verify_asan_link_order=0:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0
# Open MPI unloads its components at MPI_Finalize; keep them mapped so their leaks have names.
export LD_PRELOAD=$PWD/$san/no_dlclose.so
reports() { grep -lE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$@" 2>/dev/null || true; }

# The unit tests' fast tier (tests/test_util.h): the same code on smaller cases (test_encoder:
# four pictures of each network, one of each PNG kind, instead of 26 and 20). What the
# sanitizers look for is in the code paths, which these cover; the numbers are checked
# whole by the plain build in make test. It took most of this test's time.
export PRESIGHT_TEST_TIER=fast
for t in "$san"/tests/test_*; do
  [ -x "$t" ] || continue
  case $t in *.d) continue ;; esac
  name=$(basename "$t")
  "$t" --jobs 1 >"$tmp/$name.log" 2>&1 || { tail -n 40 "$tmp/$name.log"; fail "$name under the sanitizers"; }
  [ -z "$(reports "$tmp/$name.log")" ] || { grep -B2 -A25 -E "Sanitizer|runtime error" "$tmp/$name.log" | head -60; fail "$name: sanitizer report"; }
done
echo "unit tests: clean under ASan + UBSan + LSan"

# Train, stop on a signal (a checkpoint, exit 75), resume to the end: SIGTERM to
# one process, then SIGUSR1 through mpirun (which forwards it) to 2 ranks.
for ranks in 1 2; do
  dir=$tmp/run$ranks log=$tmp/run$ranks.log sig=TERM launch=()
  [ "$ranks" -gt 1 ] && sig=USR1 launch=(mpirun -np "$ranks" -x LD_PRELOAD -x ASAN_OPTIONS -x LSAN_OPTIONS -x UBSAN_OPTIONS)
  cmd=("${launch[@]}" "$san/presight" train config/tiny.cfg run.dir="$dir" train.steps=60 checkpoint.every_steps=10 train.log_every=10)
  "${cmd[@]}" >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do [ -e "$dir/metrics.jsonl" ] && [ "$(wc -l <"$dir/metrics.jsonl")" -ge 15 ] && break; sleep 0.05; done
  kill -s "$sig" "$pid" 2>/dev/null || true
  set +e; wait "$pid"; rc=$?; set -e
  [ "$rc" -eq 75 ] || { tail -n 40 "$log"; fail "$ranks rank(s): SIG$sig gave exit $rc, not 75"; }
  "${cmd[@]}" >>"$log" 2>&1 || { tail -n 40 "$log"; fail "$ranks rank(s): resume"; }
  grep -q "resum" "$log" || { tail -n 20 "$log"; fail "$ranks rank(s): did not resume"; }
  [ -s "$dir/final.json" ] || fail "$ranks rank(s): no final.json"
  [ -z "$(reports "$log")" ] || { grep -B2 -A25 -E "Sanitizer|runtime error" "$log" | head -60; fail "$ranks rank(s): sanitizer report"; }
done
echo "train, signal, resume on 1 and 2 ranks: clean"

# Negative control: presight's own leak must not hide behind the suppressions.
if "$san/tests/planted_leak" >"$tmp/planted.log" 2>&1; then fail "the planted leak was not reported"; fi
grep -q "in model_layout_init" "$tmp/planted.log" || { cat "$tmp/planted.log"; fail "the planted leak's report does not name presight's allocation"; }
echo "planted leak in model_layout_init: reported"
