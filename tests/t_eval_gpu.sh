#!/usr/bin/env bash
# t_eval_gpu - `presight eval` and `presight generate` on the GPU engine (run.backend =
# "cuda"), here through its CPU emulator build (build/emu/libpresight-cuda.so, selected with
# PRESIGHT_CUDA_ENGINE), against the CPU backend, on a byte-level model presight trained
# (config/tiny.cfg at model.context = 64, 150 steps on tests/fixtures/text/tiny.txt):
#   - multiple choice (the real next words against shuffled ones), LAMBADA-style last words
#     (greedy flags), rolling perplexity and VQA multiple choice (generated answers): the
#     engine chooses the CPU's answers, has its greedy flags and generates its tokens;
#     log-likelihoods within TOL nats per request (bf16 activations against fp32);
#   - they are not the CPU's bits (the engine ran: a negative control for the comparison),
#     and the comparison fails on a log-likelihood moved by 2 TOL (a second one);
#   - batch-invariance on the engine: eval.batch 1 and 4 give byte-identical predictions;
#   - contexts longer than model.context are cut, recorded per item (truncated: true) and
#     counted per task in results.jsonl ("truncated": N), on both backends alike;
#   - presight generate on the engine prints the CPU's continuation; an engine library of
#     the previous ABI is refused by number.
# Exit: 0 pass, 1 fail, 77 skip (the emulated engine is not built).
set -u
cd "$(dirname "$0")/.."
export PRESIGHT_THREADS=1 OMP_NUM_THREADS=1
bin=build/presight
engine=$PWD/build/emu/libpresight-cuda.so
[ -x $bin ] && [ -f "$engine" ] || { echo "SKIP: $bin or $engine not built"; exit 77; }
tmp=build/test-runs/eval_gpu
rm -rf "$tmp"
mkdir -p "$tmp"
fail() { echo "FAIL: $*"; exit 1; }
# Measured on the emulated engine: at most 0.04 nats per request (up to 64 tokens each).
TOL=0.15

$bin train config/tiny.cfg run.dir="$tmp/run" model.context=64 train.steps=150 train.lr=3e-3 train.warmup_steps=10 \
  train.micro_batch=8 train.seq_len=64 train.log_every=150 >"$tmp/train.log" 2>&1 || { tail "$tmp/train.log"; fail train; }

/usr/bin/python3 - "$tmp" <<'PY' || fail "making task data"
import json, random, sys
out = sys.argv[1]
text = open("tests/fixtures/text/tiny.txt").read()
words = text.split()
rng = random.Random(11)
vocab = sorted(set(words))
with open(f"{out}/nextword.jsonl", "w") as f:
    for i in range(6):
        k = 60 + 41 * i
        n = 30 if i < 2 else 5  # the first two are longer than model.context (64 bytes): cut
        ctx, gold = " ".join(words[k - n:k]), words[k]
        opts = [gold] + rng.sample([w for w in vocab if w != gold], 3)
        rng.shuffle(opts)
        f.write(json.dumps({"ctx": ctx, "choices": opts, "label": opts.index(gold)}) + "\n")
paras = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
with open(f"{out}/paras.jsonl", "w") as f:
    f.write(json.dumps({"page": paras[0][:90]}) + "\n")
with open(f"{out}/lastword.jsonl", "w") as f:
    for p in paras[3:6]:
        f.write(json.dumps({"text": " ".join(p.split()[:8])}) + "\n")
with open(f"{out}/vqa.jsonl", "w") as f:
    for line in open(f"{out}/nextword.jsonl").readlines()[2:4]:
        it = json.loads(line)
        f.write(json.dumps({"image": "none", "question": it["ctx"], "choices": it["choices"], "answer_index": it["label"],
                            "category": "General", "answer_type": "multiple_choice"}) + "\n")
PY
cat >"$tmp/nextword.cfg" <<CFG
name = "nextword";  category = "language";  data = "$tmp/nextword.jsonl";
kind = "multiple_choice";  scorer = "acc";
context = "{ctx}";  choices_from = "choices";  label = "label";  label_kind = "index";
CFG
sed "s|^data = .*|data = \"$tmp/paras.jsonl\";|; s|^name = .*|name = \"paras\";|" config/tasks/wikitext.cfg >"$tmp/paras.cfg"
sed "s|^data = .*|data = \"$tmp/lastword.jsonl\";|; s|^name = .*|name = \"lastword\";|" config/tasks/lambada.cfg >"$tmp/lastword.cfg"
sed "s|^data = .*|data = \"$tmp/vqa.jsonl\";|" config/tasks/images-vqa-mc.cfg >"$tmp/vqa.cfg"
tasks="$tmp/nextword.cfg,$tmp/paras.cfg,$tmp/lastword.cfg,$tmp/vqa.cfg"

run() { # out backend [key=value ...]
  local out=$1 backend=$2; shift 2
  PRESIGHT_CUDA_ENGINE=$engine $bin eval "$tmp/run/config.cfg" eval.tasks="$tasks" eval.out="$out" \
    eval.items_per_step=8 eval.max_new_tokens=5 run.backend="\"$backend\"" "$@" >"$out.log" 2>&1 ||
    { tail -20 "$out.log"; fail "eval $out ($backend $*)"; }
}
run "$tmp/cpu" cpu eval.batch=4
run "$tmp/gpu" cuda eval.batch=4
grep -q "on the GPU engine" "$tmp/gpu.log" || fail "the engine's eval does not say it ran on the GPU engine: $(head -3 "$tmp/gpu.log")"
n=$(wc -l <"$tmp/gpu/predictions.jsonl")
[ "$n" -eq 12 ] || fail "expected 12 predictions (6 + 1 + 3 + 2), got $n"

compare() { # cpu-dir gpu-dir tol: same choices, greedy flags, outputs; log-likelihoods within tol
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
A = [json.loads(l) for l in open(f"{a}/predictions.jsonl")]
B = [json.loads(l) for l in open(f"{b}/predictions.jsonl")]
assert len(A) == len(B), "item counts differ"
worst, bits, checked = 0.0, 0, 0
def argmax(v): return max(range(len(v)), key=lambda i: (v[i], -i))
for p, q in zip(A, B):
    assert (p["task"], p["id"]) == (q["task"], q["id"]), "items in another order"
    for key in ("loglikelihoods", "letter_loglikelihoods", "loglikelihood"):
        if key not in p: continue
        x, y = (p[key], q[key]) if key != "loglikelihood" else ([p[key]], [q[key]])
        for u, v in zip(x, y):
            worst = max(worst, abs(u - v)); bits += u != v; checked += 1
        if key != "loglikelihood" and len(x) > 1:
            assert argmax(x) == argmax(y), f"{p['task']} {p['id']}: chose {argmax(y)}, the CPU {argmax(x)}"
    assert p.get("greedy") == q.get("greedy"), f"{p['task']} {p['id']}: greedy flags {q.get('greedy')} vs {p.get('greedy')}"
    assert p.get("output_ids") == q.get("output_ids"), f"{p['task']} {p['id']}: generated {q.get('output_ids')} vs {p.get('output_ids')}"
    assert p.get("truncated") == q.get("truncated"), f"{p['task']} {p['id']}: truncated differs"
    assert p.get("correct") == q.get("correct"), f"{p['task']} {p['id']}: correct differs"
if worst > tol: sys.exit(f"log-likelihoods differ by up to {worst:.3g} nats > {tol}")
print(f"{checked} log-likelihoods within {worst:.2e} nats (tol {tol}), {bits} not bit-identical")
PY
}
out=$(compare "$tmp/cpu" "$tmp/gpu" $TOL) || fail "engine against cpu: $out"
echo "ok: the engine's choices, greedy flags and generated tokens are the CPU's; $out"
bits=$(echo "$out" | sed 's/.*, \([0-9]*\) not bit-identical/\1/')
[ "$bits" -gt 0 ] || fail "negative control: the engine's log-likelihoods are the CPU's bits (did the engine run?)"
# negative control: one log-likelihood moved by 2 TOL must fail the comparison
mkdir -p "$tmp/moved"
/usr/bin/python3 - "$tmp" $TOL <<'PY'
import json, sys
d, tol = sys.argv[1], float(sys.argv[2])
lines = open(f"{d}/gpu/predictions.jsonl").readlines()
p = json.loads(lines[5]); p["loglikelihoods"][0] += 2 * tol
lines[5] = json.dumps(p) + "\n"
open(f"{d}/moved/predictions.jsonl", "w").writelines(lines)
PY
compare "$tmp/cpu" "$tmp/moved" $TOL >/dev/null 2>&1 && fail "negative control: a log-likelihood moved by 2 TOL passed the comparison"
echo "ok: negative controls (not the CPU's bits: $bits; a moved log-likelihood fails the comparison)"

tasks="$tmp/nextword.cfg" run "$tmp/gpu1" cuda eval.batch=1
cmp -s <(grep '"task":"nextword"' "$tmp/gpu/predictions.jsonl") "$tmp/gpu1/predictions.jsonl" ||
  fail "batch-invariance: the engine's predictions with eval.batch 1 differ from eval.batch 4"
echo "ok: the engine's multiple-choice predictions are byte-identical with eval.batch 1 and 4"

for d in cpu gpu; do
  c=$(grep '"task":"nextword"' "$tmp/$d/predictions.jsonl" | grep -c '"truncated":true')
  [ "$c" -eq 2 ] || fail "$d: $c nextword predictions say truncated, expected the 2 long contexts"
  grep '"task":"nextword"' "$tmp/$d/results.jsonl" | grep -q '"truncated":2' || fail "$d: results.jsonl does not count 2 truncated"
  grep '"task":"lastword"' "$tmp/$d/predictions.jsonl" "$tmp/$d/results.jsonl" | grep -q '"truncated"' &&
    fail "$d: lastword's short items count as truncated"
done
echo "ok: 2 contexts cut by model.context, recorded per item and counted in results (both backends)"

prompt=$(/usr/bin/python3 -c "import json; print(json.loads(open('$tmp/vqa.jsonl').readline())['question'])")
g() { PRESIGHT_CUDA_ENGINE=$engine $bin generate "$tmp/run/config.cfg" "prompt=$prompt" eval.max_new_tokens=8 "$@"; }
want=$(g run.backend='"cpu"' 2>"$tmp/gen_cpu.err") || { cat "$tmp/gen_cpu.err"; fail "presight generate on the cpu"; }
got=$(g run.backend='"cuda"' 2>"$tmp/gen_gpu.err") || { cat "$tmp/gen_gpu.err"; fail "presight generate on the engine"; }
grep -q "on the GPU engine" "$tmp/gen_gpu.err" || fail "presight generate does not say it ran on the engine: $(cat "$tmp/gen_gpu.err")"
[ "$got" = "$want" ] || fail "presight generate on the engine said '$got', on the cpu '$want'"
echo "ok: presight generate on the engine prints the CPU's continuation ('$want')"

# An engine library of the previous ABI is refused by number, as presight train refuses it.
abi=$(sed -n 's/^#define GPU_ENGINE_ABI \([0-9]*\).*/\1/p' stages/gpu_engine.h)
printf 'struct api { int abi; };\nstatic const struct api old = {%d};\nconst struct api *presight_gpu_engine(void) { return &old; }\n' \
  $((abi - 1)) >"$tmp/old.c"
cc -shared -fPIC -o "$tmp/libold.so" "$tmp/old.c" || fail "cannot build the stand-in engine"
out=$(PRESIGHT_CUDA_ENGINE=$PWD/$tmp/libold.so $bin eval "$tmp/run/config.cfg" eval.tasks="$tmp/nextword.cfg" \
  eval.out="$tmp/old" run.backend='"cuda"' 2>&1) && fail "presight eval accepted an engine of ABI $((abi - 1))"
echo "$out" | grep -q "is a GPU engine of ABI $((abi - 1)), but this presight needs ABI $abi" ||
  fail "unclear message for an engine of another ABI: $out"
echo "ok: presight eval refuses an engine of ABI $((abi - 1)) by number"
