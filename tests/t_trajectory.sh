#!/usr/bin/env bash
# t_trajectory - pretraining losses against a committed 20-step trajectory.
#
# tests/fixtures/trajectory/tiny_20.jsonl holds the losses and gradient norms
# of `presight train config/tiny.cfg` as recorded before the model contract of
# issue 10. Refactors of the model and the trainer must reproduce them: every
# loss within 1e-6 relative (the issue's bar); the script also says whether the
# run is bit-identical. Negative control: the same comparison against a run
# with a 0.1% different learning rate must fail, so a pass means something.
set -u
cd "$(dirname "$0")/.."
bin=build/presight
fixture=tests/fixtures/trajectory/tiny_20.jsonl
out=build/test-runs/trajectory
PY=/usr/bin/python3
[ -x "$bin" ] || { echo "FAIL: $bin is not built"; exit 1; }
[ -x "$PY" ] || { echo "skip: $PY not found"; exit 77; }
rm -rf "$out" && mkdir -p "$out"

compare() { # metrics.jsonl -> exit 0 within 1e-6 relative
  "$PY" - "$fixture" "$1" <<'PYEOF'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1])]
got = [json.loads(l) for l in open(sys.argv[2])]
if len(got) != len(ref):
    print(f"FAIL: {len(got)} steps, the fixture has {len(ref)}"); sys.exit(1)
worst, exact = 0.0, True
for r, g in zip(ref, got):
    rel = abs(g["loss"] - r["loss"]) / abs(r["loss"])
    exact = exact and g["loss"] == r["loss"] and g["grad_norm"] == r["grad_norm"]
    if rel > worst: worst, at = rel, r["step"]
if worst > 1e-6:
    print(f"FAIL: loss differs by {worst:.3e} relative at step {at} (tolerance 1e-6)"); sys.exit(1)
print("bit-identical" if exact else f"within tolerance: worst relative loss difference {worst:.3e} (not bit-identical)")
PYEOF
}

"$bin" train config/tiny.cfg run.dir="$out/run" >"$out/run.log" 2>&1 || { cat "$out/run.log"; echo "FAIL: train"; exit 1; }
compare "$out/run/metrics.jsonl" || exit 1

"$bin" train config/tiny.cfg run.dir="$out/control" train.lr=1.001e-3 >"$out/control.log" 2>&1 ||
  { cat "$out/control.log"; echo "FAIL: train (control)"; exit 1; }
if compare "$out/control/metrics.jsonl" >/dev/null; then
  echo "FAIL: negative control: a 0.1% different learning rate passed the comparison"
  exit 1
fi
echo "ok: negative control (lr 1.001e-3) is detected"
echo "PASS: 20 steps of config/tiny.cfg reproduce $fixture"
