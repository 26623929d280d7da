#!/usr/bin/env bash
# t_eval_every - the held-out loss while pretraining (eval.every, eval.heldout):
#   - it appears every eval.every steps and at the last, in metrics.jsonl ("heldout_loss")
#     and on the progress line, and falls as the model learns;
#   - it does not touch training: the per-step losses equal a run without it, bit for bit,
#     on one rank and on two FSDP ranks (whose held-out loss equals the single rank's);
#   - a task that is not rolling is refused, naming the key.
set -u
cd "$(dirname "$0")/.."
export PRESIGHT_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
bin=build/presight
tmp=build/test-runs/eval_every
rm -rf "$tmp"
mkdir -p "$tmp"
fail() { echo "FAIL: $*"; exit 1; }
/usr/bin/python3 - "$tmp" <<'PY' || fail "making the held-out documents"
import json, sys
text = open("tests/fixtures/text/tiny.txt").read()
with open(f"{sys.argv[1]}/docs.jsonl", "w") as f:
    for p in [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40][-6:]:
        f.write(json.dumps({"page": p}) + "\n")
PY
sed "s|^data = .*|data = \"$tmp/docs.jsonl\";|" config/tasks/wikitext.cfg >"$tmp/heldout.cfg"
common=(train.steps=20 train.micro_batch=4 train.lr=3e-3)
ev=(eval.every=5 eval.heldout="$tmp/heldout.cfg" eval.batches=2)
$bin train config/tiny.cfg run.dir="$tmp/plain" "${common[@]}" >"$tmp/plain.log" 2>&1 || fail "plain run"
$bin train config/tiny.cfg run.dir="$tmp/every" "${common[@]}" "${ev[@]}" >"$tmp/every.log" 2>&1 || { tail "$tmp/every.log"; fail "eval.every run"; }
mpirun -np 2 $bin train config/tiny.cfg run.dir="$tmp/fsdp" "${common[@]}" train.micro_batch=2 parallel.strategy=fsdp "${ev[@]}" eval.batches=2 \
  >"$tmp/fsdp.log" 2>&1 || { tail "$tmp/fsdp.log"; fail "fsdp eval.every run"; }
losses() { sed 's/.*"loss":\([^,]*\),.*/\1/' "$1/metrics.jsonl"; }
cmp -s <(losses "$tmp/plain") <(losses "$tmp/every") || fail "eval.every changed the training losses"
held() { grep -o '"heldout_loss":[^,]*' "$1/metrics.jsonl" | cut -d: -f2; }
[ "$(held "$tmp/every" | wc -l)" -eq 4 ] || fail "expected held-out losses at steps 5, 10, 15, 20"
grep -q '"step":5,.*"heldout_loss"' "$tmp/every/metrics.jsonl" || fail "no held-out loss at step 5"
grep -q "held-out [0-9]" "$tmp/every.log" || fail "no held-out loss on the progress line"
first=$(held "$tmp/every" | head -1) last=$(held "$tmp/every" | tail -1)
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$last') < float('$first') else 1)" || fail "held-out loss did not fall ($first -> $last)"
# Two FSDP ranks train on the same global batches (2 x 2 = 4): the held-out numbers agree
# with one rank's to float32 reduction-order noise.
/usr/bin/python3 - <(held "$tmp/every") <(held "$tmp/fsdp") <<'PY' || fail "FSDP held-out losses differ from one rank's"
import sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) == 4, (a, b)
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"held-out losses {a[0]:.4f} -> {a[-1]:.4f}; 2 FSDP ranks differ by {worst:.2e} at most")
sys.exit(0 if worst < 1e-4 else 1)
PY
# Negative control: a multiple-choice task is not a set of documents.
if $bin train config/tiny.cfg run.dir="$tmp/bad" "${common[@]}" eval.every=5 eval.heldout=config/tasks/piqa.cfg >"$tmp/bad.log" 2>&1; then
  fail "a multiple-choice eval.heldout was accepted"
fi
grep -q "eval.heldout.*rolling" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "the refusal does not name eval.heldout"; }
echo "PASS"
