#!/usr/bin/env bash
# presight train end to end: the loss falls, the run directory holds what it
# should, the same config and seed give bit-identical losses, a complete run
# is never written over, and bad configs stop before any work.
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

$bin train config/tiny.cfg run.dir="$tmp/a" train.steps=30 >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; fail "train a"; }
$bin train config/tiny.cfg run.dir="$tmp/b" train.steps=30 >"$tmp/b.log" 2>&1 || { cat "$tmp/b.log"; fail "train b"; }
for f in config.cfg metrics.jsonl model.h5 final.json checkpoints/step_00000030.h5; do [ -s "$tmp/a/$f" ] || fail "missing $f"; done
[ "$(wc -l <"$tmp/a/metrics.jsonl")" -eq 30 ] || fail "metrics.jsonl should have 30 lines"
grep -q 'tok/s' "$tmp/a.log" && grep -q 'ETA' "$tmp/a.log" || fail "no progress line"

losses() { sed 's/.*"loss":\([^,]*\).*/\1/' "$1"; }
cmp <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/b/metrics.jsonl") || fail "same seed, different losses"
first=$(losses "$tmp/a/metrics.jsonl" | head -n 1); last=$(losses "$tmp/a/metrics.jsonl" | tail -n 1)
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 0.5) }' || fail "loss did not fall: $first -> $last"

$bin train config/tiny.cfg run.dir="$tmp/c" train.steps=3 train.seed=7 >/dev/null 2>&1 || fail "train c"
cmp -s <(losses "$tmp/a/metrics.jsonl" | head -n 3) <(losses "$tmp/c/metrics.jsonl") && fail "another seed, same losses"

# The resolved config loads again and describes the same run.
$bin train "$tmp/a/config.cfg" run.dir="$tmp/d" >/dev/null 2>&1 || fail "resolved config does not load"
cmp <(losses "$tmp/a/metrics.jsonl") <(losses "$tmp/d/metrics.jsonl") || fail "resolved config trains differently"

# A complete run is not trained again, and never written over.
before=$(md5sum "$tmp/a/model.h5" "$tmp/a/metrics.jsonl")
$bin train config/tiny.cfg run.dir="$tmp/a" train.steps=30 >"$tmp/e.log" 2>&1 || fail "re-running a complete run failed"
grep -q "complete run" "$tmp/e.log" || { cat "$tmp/e.log"; fail "no message for a complete run"; }
if $bin train config/tiny.cfg run.dir="$tmp/a" train.steps=31 >"$tmp/e.log" 2>&1; then fail "trained into another run"; fi
grep -q "train.steps = 31 (was 30)" "$tmp/e.log" || { cat "$tmp/e.log"; fail "the difference is not named"; }
[ "$before" = "$(md5sum "$tmp/a/model.h5" "$tmp/a/metrics.jsonl")" ] || fail "a complete run changed"

# Bad input stops before any work, exit code 2, message names the key.
set +e
$bin train config/tiny.cfg model.dimm=4 run.dir="$tmp/f" >"$tmp/f.log" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || fail "unknown key: exit $rc"
grep -q "model.dimm" "$tmp/f.log" || fail "unknown key not named"
[ ! -e "$tmp/f" ] || fail "a run directory was created for a bad config"

# run.threads reaches the BLAS and OpenMP.
$bin train config/tiny.cfg run.threads=1 train.steps=1 run.dir="$tmp/t1" >"$tmp/t1.log" 2>&1 || fail "run.threads=1"
grep -q "1 thread" "$tmp/t1.log" || { cat "$tmp/t1.log"; fail "run.threads=1 was not applied"; }

# run.backend = "cuda" where the trainer cannot use a GPU stops plainly, before any work.
if $bin train config/tiny.cfg run.backend=cuda run.dir="$tmp/g" >"$tmp/g.log" 2>&1; then fail "run.backend=cuda trained"; fi
grep -q 'run.backend = "cuda"' "$tmp/g.log" || { cat "$tmp/g.log"; fail "no clear message for run.backend=cuda"; }
[ ! -e "$tmp/g" ] || fail "a run directory was created for run.backend=cuda"

# The weights file is readable by h5py at full shapes.
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
  /usr/bin/python3 - "$tmp/a/model.h5" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
m = f["model"]
assert m["tok_embeddings.weight"].shape == (512, 64), m["tok_embeddings.weight"].shape
assert m["layers.1.attention.wk.weight"].shape == (32, 64)
assert m["norm.weight"].shape == (64,)
text = f["state"].attrs["config"]
text = text.decode() if isinstance(text, bytes) else text
assert "train" in text and "model" in text
assert int(f["state"].attrs["step"]) == 30
PY
fi
echo "ok"
