#!/usr/bin/env bash
# presight adapt end to end on the image sets' test subset (data/images/small),
# with a tiny byte-level LLM pretrained here (seconds) and the `patches`
# encoder's features (encoded here):
#  - align: the LLM bit-identical to the init after align (h5py, tensor by
#    tensor), the projector new then trained, final.json, model.h5 = LLM + projector;
#  - on held-out captions the aligned model's loss with each caption's own
#    picture beats, by 0.01 nats per caption token, the loss with the pictures
#    shuffled across captions (3 permutations): the caption text alone
#    ("The flag of ...") cannot do that;
#  - 1, 2 (ddp, zero1) and 3 (fsdp) ranks agree (final loss, weights);
#  - kill -9 mid-run, then resume: weights bit-identical to an uninterrupted run;
#    SIGTERM exits 75; a changed init is refused on resume;
#  - sft from the align run on instructions (visual + language-only): the
#    projector loaded, every unit trains; blind withholds the pictures;
#  - broken samples (bad template, answer cut away) are counted and named,
#    and past adapt.max_bad the stage fails with their ids;
#  - eval of the sft model on images-small-vqa-mc + images-small-existence (a few items per category
#    and size) sees the pictures: byte-identical predictions for eval.batch 8/1 and 1/3
#    ranks; another picture's features (ids permuted, eval.features) change every item's
#    letter log-likelihoods; the pretrained LLM and the blind pass stay text-only; PyTorch
#    (tests/reference/eval_mm_check.py) recomputes the letter log-likelihoods and answers;
#    presight generate image=ID repeats eval's answer for one item;
#  - (the GPU engine's path, run.backend = cuda: tests/t_gpu_adapt.sh)
# Settings of this test (its own): LLM 2 layers x 64, pretrained 150 steps of
# 8 x 128 bytes; align 8 epochs over 419 captions, adapt.batch 8, 16 visual
# tokens, seq_len 128, micro_batch 4.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
PY=/usr/bin/python3
img=data/images/small
[ -f $img/align.jsonl ] && [ -f $img/captions.h5 ] || { echo "skip: image sets missing (make images-small)"; exit 77; }
$PY -c 'import h5py, numpy' 2>/dev/null || { echo "skip: python3-h5py missing (make deps)"; exit 77; }
bin=build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
start=$(date +%s)

# Features of the four sets with the non-learned patches encoder.
for s in captions text charts scenes; do
  echo "encode = { images = \"$img/$s.h5\"; encoder = \"patches\"; out_dir = \"$tmp/feat\"; };" >"$tmp/enc_$s.cfg"
  $bin encode "$tmp/enc_$s.cfg" >"$tmp/enc_$s.log" 2>&1 || { cat "$tmp/enc_$s.log"; fail "encode $s"; }
done
feat=$tmp/feat/patches

# Captions: a seeded split into training and held-out lines, the held-out
# ones also with their pictures shuffled across captions; the LLM's text.
$PY - "$img/align.jsonl" "$tmp" <<'PY'
import json, random, sys
lines = open(sys.argv[1]).readlines()
random.Random(1).shuffle(lines)
tmp = sys.argv[2]
open(f"{tmp}/train.jsonl", "w").writelines(lines[:-80])
open(f"{tmp}/held.jsonl", "w").writelines(lines[-80:])
open(f"{tmp}/captions.txt", "w").write("".join(json.loads(l)["caption"] + "\n" for l in lines[:-80]) * 10)
held = [json.loads(l) for l in lines[-80:]]
for seed in (2, 3, 4):
    p = list(range(len(held)))
    random.Random(seed).shuffle(p)
    with open(f"{tmp}/shuf{seed}.jsonl", "w") as f:
        for i, x in enumerate(held):
            y = dict(x, image=held[p[i]]["image"], image_set=held[p[i]]["image_set"])
            f.write(json.dumps(y) + "\n")
PY

cp config/model/tiny.cfg "$tmp/tiny_model.cfg"
cat >"$tmp/pre.cfg" <<CFG
@include "tiny_model.cfg"
train = { micro_batch = 8; seq_len = 128; steps = 150; warmup_steps = 5; lr = 3e-3; min_lr = 3e-4; log_every = 50; seed = 7; };
data = { kind = "text"; path = "$tmp/captions.txt"; };
checkpoint = { every_steps = 0; every_minutes = 0; };
run = { dir = "$tmp/pre"; };
CFG
$bin train "$tmp/pre.cfg" >"$tmp/pre.log" 2>&1 || { cat "$tmp/pre.log"; fail "pretraining the tiny LLM"; }

cat >"$tmp/align.cfg" <<CFG
adapt = { stage = "align"; init = "$tmp/pre"; features = "$feat"; data = "$tmp/train.jsonl";
          visual_tokens = 16; batch = 8; epochs = 8; warmup_ratio = 0.06; };
train = { micro_batch = 4; seq_len = 128; lr = 1e-2; min_lr = 0; log_every = 100; seed = 7; weight_decay = 0; };
checkpoint = { every_steps = 50; every_minutes = 0; };
run = { dir = "$tmp/align"; };
CFG
adapt() { # log-name [key=value ...]
  local name=$1; shift
  $bin adapt "$tmp/align.cfg" "$@" >"$tmp/$name.log" 2>&1
}

# --- align
adapt align || { cat "$tmp/align.log"; fail "align"; }
grep -q "4 new (mm_projector" "$tmp/align.log" || fail "the projector was not reported new"
grep -q "checked: every LLM tensor is bit-identical" "$tmp/align.log" || fail "no frozen-LLM check"
$PY - "$tmp/pre/model.h5" "$tmp/align/model.h5" "$tmp/align/final.json" <<'PY' || fail "align's model"
import sys, json, h5py, numpy as np
pre, ali = h5py.File(sys.argv[1])["model"], h5py.File(sys.argv[2])["model"]
for k in pre:
    assert np.array_equal(pre[k][()].view(np.uint32), ali[k][()].view(np.uint32)), f"{k} changed during align"
proj = [k for k in ali if k.startswith("mm_projector.")]
assert sorted(proj) == ["mm_projector.0.bias", "mm_projector.0.weight", "mm_projector.2.bias", "mm_projector.2.weight"], proj
assert ali["mm_projector.0.weight"].shape == (64, 48), ali["mm_projector.0.weight"].shape
assert np.abs(ali["mm_projector.0.bias"][()]).max() > 0, "the projector did not train"
f = json.load(open(sys.argv[3]))
assert f["stage"] == "align" and f["llm_unchanged"] is True and f["init_projector"] == "new", f
assert f["steps"] == 8 * 53, f["steps"]  # 419 captions, megabatches of 8 (52 full + 1 of 3), 8 epochs
PY
# Negative control of the check above: sft changes the LLM (see below).

# --- presight export of the aligned model in LLaVA's layout, read back as LLaVA reads it:
# PyTorch's build_vision_projector on the exported projector gives presight's projected
# features of the same 32 feature rows, the Llama tensors equal the pretrained model's
# Llama export, and the tokenizer files (byte-level vocabulary, chat template) read back
# by @lenml/tokenizers agree with tiktoken and chat_template.c (ReLU for GELU must fail).
$bin export "$tmp/align/config.cfg" out="$tmp/llava" >"$tmp/export.log" 2>&1 || { cat "$tmp/export.log"; fail "presight export (LLaVA)"; }
$bin export "$tmp/pre/config.cfg" out="$tmp/llama" >>"$tmp/export.log" 2>&1 || { cat "$tmp/export.log"; fail "presight export (Llama)"; }
for r in 0 1; do build/tests/tools/features_tokens "$feat/captions.h5" $r 16 "$tmp/feat$r.f32" || fail "features_tokens"; done
cat "$tmp/feat0.f32" "$tmp/feat1.f32" >"$tmp/feats.f32"
build/tests/tools/project_tool "$tmp/align" "$tmp/feats.f32" 32 "$tmp/proj.f32" >/dev/null || fail "project_tool"
if $PY -c 'import torch' 2>/dev/null; then
  $PY tests/reference/llava_projector_check.py "$tmp/llava" "$tmp/feats.f32" 32 "$tmp/proj.f32" --llama "$tmp/llama" ||
    fail "the LLaVA export's projector or Llama tensors disagree (or ReLU for GELU agrees)"
else
  echo "note: /usr/bin/python3 lacks torch: the LLaVA projector check is skipped"
fi
if [ -d build/npm/node_modules/@lenml/tokenizers ]; then
  build/tests/tools/hf_tokenizer chat "$tmp/llava/tokenizer.tiktoken" plain <tests/fixtures/chat_conversations.jsonl >"$tmp/chat.ids"
  node tests/reference/hf_tokenizer_check.js "$tmp/llava" "$tmp/llava/tokenizer.tiktoken" plain \
    --chat tests/fixtures/chat_conversations.jsonl "$tmp/chat.ids" || fail "the LLaVA export's tokenizer files"
  node tests/reference/hf_tokenizer_check.js "$tmp/llama" "$tmp/llama/tokenizer.tiktoken" plain || fail "the Llama export's tokenizer files"
fi
# lm-eval's prefix is the BOS when there is one: a pretrained export has none (its EOS is
# presight's prefix); the adapted one has the chat template's.
$PY - "$tmp/llama" "$tmp/llava" <<'PY' || fail "bos/eos of the exports"
import json, sys
pre, ada = (json.load(open(d + "/tokenizer_config.json")) for d in sys.argv[1:])
assert pre["bos_token"] is None and pre["eos_token"] == "<|end_of_text|>" and "chat_template" not in pre, pre
assert ada["bos_token"] == "<|begin_of_text|>" and ada["eos_token"] == "<|end_of_text|>" and ada["chat_template"], ada
PY
if $bin export "$tmp/align/config.cfg" eval.checkpoint="$tmp/pre/model.h5" out="$tmp/llava-bad" >"$tmp/export-bad.log" 2>&1; then
  fail "an adapted config over weights without a projector was exported"
fi
grep -q "model.h5: has no projector" "$tmp/export-bad.log" || { cat "$tmp/export-bad.log"; fail "the refusal does not name the file"; }
[ -z "$(ls -A "$tmp/llava-bad")" ] || fail "a refused export left files"
echo "ok: LLaVA export: projector = PyTorch's, Llama tensors = the Llama export's, tokenizer files read back; weights without a projector refused"

# --- held-out captions: true pictures against shuffled ones (the first step's loss is before any update)
heldout_loss() { # jsonl name
  rm -rf "$tmp/ev_$2"
  adapt "ev_$2" adapt.init="$tmp/align" adapt.data="$1" adapt.batch=80 adapt.epochs=1 run.dir="$tmp/ev_$2" ||
    { cat "$tmp/ev_$2.log"; fail "held-out loss $2"; }
  $PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["loss"])' "$tmp/ev_$2/metrics.jsonl"
}
true_loss=$(heldout_loss "$tmp/held.jsonl" true)
for seed in 2 3 4; do
  s=$(heldout_loss "$tmp/shuf$seed.jsonl" shuf$seed)
  echo "held-out captions: loss $true_loss with their pictures, $s with pictures shuffled (permutation $seed)"
  $PY -c "import sys; sys.exit(0 if $true_loss + 0.01 < $s else 1)" ||
    fail "true features ($true_loss) do not beat shuffled ($s) by 0.01 nats per token"
done

# --- ranks agree (short runs)
short=(adapt.epochs=1 adapt.max_samples=100 adapt.batch=16 checkpoint.every_steps=0)
for spec in "1 ddp" "2 ddp" "2 zero1" "3 fsdp"; do
  set -- $spec
  rm -rf "$tmp/r$1$2"
  mpirun -np "$1" $bin adapt "$tmp/align.cfg" "${short[@]}" parallel.strategy="$2" run.dir="$tmp/r$1$2" \
    >"$tmp/r$1$2.log" 2>&1 || { cat "$tmp/r$1$2.log"; fail "$1 ranks $2"; }
done
$PY - "$tmp" <<'PY' || fail "1/2/3 ranks disagree"
import sys, json, h5py, numpy as np
tmp = sys.argv[1]
runs = ["r1ddp", "r2ddp", "r2zero1", "r3fsdp"]
loss = {r: json.load(open(f"{tmp}/{r}/final.json"))["final_loss"] for r in runs}
w = {r: h5py.File(f"{tmp}/{r}/model.h5")["model"] for r in runs}
for r in runs[1:]:
    assert abs(loss[r] - loss["r1ddp"]) < 1e-5 * abs(loss["r1ddp"]), (r, loss)
    for k in w["r1ddp"]:
        a, b = w["r1ddp"][k][()], w[r][k][()]
        assert np.abs(a - b).max() <= 1e-4 * max(1e-3, np.abs(a).max()), (r, k, np.abs(a - b).max())
print("ranks agree:", loss)
PY

# --- kill -9 and resume: bit-identical to the uninterrupted run (same world size)
res=(adapt.epochs=2 checkpoint.every_steps=10)
adapt straight "${res[@]}" run.dir="$tmp/straight" || { cat "$tmp/straight.log"; fail "uninterrupted run"; }
$bin adapt "$tmp/align.cfg" "${res[@]}" run.dir="$tmp/killed" >"$tmp/killed.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  ls "$tmp/killed/checkpoints/"step_00000020.h5 >/dev/null 2>&1 && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ ! -f "$tmp/killed/final.json" ] || echo "note: the run finished before kill -9 (machine fast); resume still checked"
adapt resumed "${res[@]}" run.dir="$tmp/killed" || { cat "$tmp/resumed.log"; fail "resume after kill -9"; }
$PY - "$tmp/straight/model.h5" "$tmp/killed/model.h5" <<'PY' || fail "resume is not bit-identical"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1])["model"], h5py.File(sys.argv[2])["model"]
for k in a:
    assert np.array_equal(a[k][()].view(np.uint32), b[k][()].view(np.uint32)), k
PY

# SIGTERM: checkpoint and exit 75; then a changed init is refused.
$bin adapt "$tmp/align.cfg" adapt.epochs=30 checkpoint.every_steps=0 run.dir="$tmp/term" >"$tmp/term.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "^step" "$tmp/term.log" 2>/dev/null && break; sleep 0.05; done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || { cat "$tmp/term.log"; fail "SIGTERM exited $rc, not 75"; }
ls "$tmp/term/checkpoints/"step_*.h5 >/dev/null || fail "no checkpoint on SIGTERM"
cp -r "$tmp/pre" "$tmp/pre_saved"
sed -i 's/seed = 7;/seed = 8;/' "$tmp/pre.cfg"
rm -rf "$tmp/pre"
$bin train "$tmp/pre.cfg" >"$tmp/pre2.log" 2>&1 || fail "second pretraining"
rc=0; adapt term2 adapt.epochs=30 checkpoint.every_steps=0 run.dir="$tmp/term" || rc=$?
[ $rc -ne 0 ] && grep -q "adapt.init_sha256" "$tmp/term2.log" || { cat "$tmp/term2.log"; fail "a changed init was not refused"; }
rm -rf "$tmp/pre" && mv "$tmp/pre_saved" "$tmp/pre"

# --- sft from align, on instructions (the first 120 lines: visual and language-only)
sft=(adapt.stage=sft adapt.init="$tmp/align" adapt.data=$img/instruct.jsonl adapt.max_samples=120 adapt.batch=16
     adapt.epochs=1 train.seq_len=256 train.lr=1e-3 adapt.max_bad=0.05)
adapt sft "${sft[@]}" run.dir="$tmp/sft" || { cat "$tmp/sft.log"; fail "sft"; }
$PY - "$tmp/align/model.h5" "$tmp/sft/model.h5" "$tmp/sft/final.json" <<'PY' || fail "sft's model"
import sys, json, h5py, numpy as np
a, s = h5py.File(sys.argv[1])["model"], h5py.File(sys.argv[2])["model"]
changed = [k for k in a if not np.array_equal(a[k][()], s[k][()])]
assert len(changed) == len(a), f"sft left {set(a) - set(changed)} unchanged"
f = json.load(open(sys.argv[3]))
assert f["init_projector"] == "loaded" and f["trainable_params"] == f["params"] and 0 < f["visual_samples"] < f["samples"], f
PY
# blind: the pictures withheld (no visual rows), the LLM trains.
adapt blind adapt.stage=blind "${sft[@]:1}" run.dir="$tmp/blind" || { cat "$tmp/blind.log"; fail "blind"; }
grep -q "(0 with a picture" "$tmp/blind.log" || fail "blind spliced pictures"

# --- eval with pictures: the sft model on images-small-vqa-mc and -existence (3 items per
# category and per size), its answers and option-letter log-likelihoods from the pictures
$PY - "$img" "$tmp" <<'PY'
import json, sys, collections
img, tmp = sys.argv[1:3]
def subset(name, key, per):
    seen, out = collections.Counter(), []
    for l in open(f"{img}/{name}.jsonl"):
        x = json.loads(l)
        if x.get("answer_type") == "multiple_choice" and seen[x[key]] < per:
            seen[x[key]] += 1; out.append(l)
    open(f"{tmp}/{name}_sub.jsonl", "w").writelines(out)
    return seen
print("eval items:", subset("vqa", "category", 3), subset("existence", "split", 3))
PY
for t in vqa-mc existence; do # the shipped small-set task files, on the subsets
  d=$([ $t = vqa-mc ] && echo vqa || echo existence)
  sed "s|^data = .*|data = \"$tmp/${d}_sub.jsonl\";|" config/tasks/images-small-$t.cfg >"$tmp/images-small-$t.cfg"
done
# every picture of those task files is in the small sets' features (what the quickstart encodes)
$PY - "$img" "$feat" <<'PY' || fail "a picture of the small-set VQA tasks is not in the small sets' features"
import glob, json, sys, h5py
ids = set()
for p in glob.glob(sys.argv[2] + "/*.h5"):
    ids |= set(h5py.File(p, "r")["ids"].asstr()[:])
missing = [x["image"] for n in ("vqa", "existence") for x in map(json.loads, open(f"{sys.argv[1]}/{n}.jsonl")) if x["image"] not in ids]
assert not missing, missing[:5]
PY
evtasks=(eval.tasks="$tmp/images-small-vqa-mc.cfg,$tmp/images-small-existence.cfg" eval.max_new_tokens=4)
evalrun() { # name np config [key=value ...]
  local name=$1 np=$2 cfg=$3; shift 3
  mpirun -np "$np" $bin eval "$cfg" "${evtasks[@]}" eval.out="$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 ||
    { cat "$tmp/$name.log"; fail "eval $name"; }
}
evalrun ev_b8 1 "$tmp/sft/config.cfg" eval.batch=8
grep -q "image input: an adapted model (adapt.stage sft): encoder patches, 16 visual tokens" "$tmp/ev_b8.log" ||
  { cat "$tmp/ev_b8.log"; fail "eval did not report the image input"; }
evalrun ev_b1 1 "$tmp/sft/config.cfg" eval.batch=1 eval.items_per_step=5
evalrun ev_r3 3 "$tmp/sft/config.cfg" eval.batch=3
for r in ev_b1 ev_r3; do
  cmp -s "$tmp/ev_b8/predictions.jsonl" "$tmp/$r/predictions.jsonl" || fail "predictions with pictures differ ($r vs batch 8, 1 rank)"
  cmp -s "$tmp/ev_b8/results.jsonl" "$tmp/$r/results.jsonl" || fail "results with pictures differ ($r vs batch 8, 1 rank)"
done
# presight generate asks the first item's question about its picture alone: eval's answer
q=$($PY -c 'import json, sys
r = json.loads(open(sys.argv[1]).readline())
print(r["question"] + "\n" + "".join(f"{chr(65 + i)}. {c}\n" for i, c in enumerate(r["choices"])) +
      "Answer with the option\x27s letter from the given choices directly.", end="")' "$tmp/vqa_sub.jsonl")
got=$($bin generate "$tmp/sft/config.cfg" "prompt=$q" image="$(head -1 "$tmp/vqa_sub.jsonl" | $PY -c 'import json,sys; print(json.load(sys.stdin)["image"])')" \
  eval.max_new_tokens=4 2>"$tmp/gen.log") || { cat "$tmp/gen.log"; fail "generate with a picture"; }
want=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["output"])' "$tmp/ev_b8/predictions.jsonl")
[ "$got" = "$want" ] || fail "generate with the picture says '$got', eval answered '$want'"
rc=0; $bin generate "$tmp/pre/config.cfg" prompt=x image=flag:x.png >/dev/null 2>"$tmp/gen2.log" || rc=$?
[ $rc -eq 2 ] && grep -q "not an adapted model" "$tmp/gen2.log" || fail "generate image= on a pretrained model was not refused"
# negative control: every picture's features swapped for another's (ids permuted within each file)
mkdir -p "$tmp/perm" && cp "$feat"/*.h5 "$tmp/perm/"
evalrun ev_perm 1 "$tmp/sft/config.cfg" eval.features="$tmp/perm"  # before the swap: the same as ev_b8
cmp -s "$tmp/ev_b8/predictions.jsonl" "$tmp/ev_perm/predictions.jsonl" || fail "eval.features with the same files changed the predictions"
$PY - "$tmp/perm" <<'PY'
import glob, sys, h5py
for p in glob.glob(sys.argv[1] + "/*.h5"):
    with h5py.File(p, "r+") as f:
        ids = f["ids"][()]
        f["ids"][...] = list(ids[1:]) + [ids[0]]  # a cyclic shift: every row another picture's
PY
rm -rf "$tmp/ev_perm"
evalrun ev_perm 1 "$tmp/sft/config.cfg" eval.features="$tmp/perm"
# an unfinished evaluation does not resume with other pictures
cp -r "$tmp/ev_b8" "$tmp/ev_mix" && rm "$tmp/ev_mix/final.json"
rc=0; $bin eval "$tmp/sft/config.cfg" "${evtasks[@]}" eval.out="$tmp/ev_mix" eval.features="$tmp/perm" >"$tmp/ev_mix.log" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "eval.features" "$tmp/ev_mix.log" || { cat "$tmp/ev_mix.log"; fail "a resume with other features was not refused"; }
# the pretrained LLM and the blind pass answer from the text; the records say so
evalrun ev_text 1 "$tmp/pre/config.cfg"
evalrun ev_blind 1 "$tmp/blind/config.cfg"
grep -q "image input: none" "$tmp/ev_text.log" || fail "the pretrained model claims image input"
$PY - "$tmp" <<'PY' || fail "eval with pictures"
import json, sys
tmp = sys.argv[1]
load = lambda p: [json.loads(l) for l in open(p)]
pred, perm, text, blind = (load(f"{tmp}/{r}/predictions.jsonl") for r in ("ev_b8", "ev_perm", "ev_text", "ev_blind"))
res = load(f"{tmp}/ev_b8/results.jsonl")
assert len(pred) == 21 and all(p["image_input"] is True and p["encoder"] == "patches" for p in pred), pred[0]
assert all(p["visual_tokens"] == 16 and 0 < p["image_at"] < len(p["context_ids"]) for p in pred)
assert all(p["image_input"] is False and "image_at" not in p for p in text + blind)
# the negative control: another picture changes every item's letter log-likelihoods
same = [p["id"] for p, q in zip(pred, perm) if p["letter_loglikelihoods"] == q["letter_loglikelihoods"]]
assert not same, f"letter log-likelihoods unchanged by another picture: {same}"
moved = max(abs(a - b) for p, q in zip(pred, perm) for a, b in zip(p["letter_loglikelihoods"], q["letter_loglikelihoods"]))
# the text-only prompt is another prompt: the picture's rows and the chat template
assert all(p["context_ids"] != t["context_ids"] for p, t in zip(pred, text))
rows = {(r["task"], r["subset"], r["metric"]): r for r in res}
for c in ("Knowledge", "General", "OCR & Chart", "Vision-Centric"):
    assert rows[("images-small-vqa-mc", c, "acc")]["n"] == 3, (c, [k for k in rows if k[0] == "images-small-vqa-mc"])
for m in ("acc_small", "acc_medium", "acc_large"):
    assert rows[("images-small-existence", "", m)]["n"] == 3, m
assert rows[("images-small-existence", "", "acc")]["n"] == 9 and ("images-small-existence", "", "acc_macro") in rows
assert ("mean", "", "acc") in rows and all(r["image_input"] is True for r in res if r["task"] != "mean" or "image_input" in r)
print(f"eval with pictures: {len(pred)} items; another picture moves the letter log-likelihoods by up to {moved:.3f}; "
      f"acc vqa {rows[('images-small-vqa-mc', '', 'acc')]['value']:.3f}, letter-ll {rows[('images-small-vqa-mc', '', 'acc_letter_ll')]['value']:.3f}, "
      f"existence {rows[('images-small-existence', '', 'acc')]['value']:.3f}")
PY

# PyTorch recomputes the letter log-likelihoods and greedy answers from the data lines and
# the features (the prompt rebuilt on its own); three mutations must fail.
if $PY -c 'import torch' 2>/dev/null; then
  hp="vocab=512,dim=64,layers=2,heads=4,kv_heads=2,ffn_dim=128,context=256,rope_theta=500000,norm_eps=1e-5,tied_head=0"
  $PY tests/reference/eval_mm_check.py "$tmp/sft/model.h5" "$tmp/ev_b8/predictions.jsonl" "$feat" --controls \
    --data "$tmp/vqa_sub.jsonl,$tmp/existence_sub.jsonl" --hp "$hp,in_dim=48,visual_tokens=16" >"$tmp/ref_eval.log" 2>&1 ||
    { cat "$tmp/ref_eval.log"; fail "eval with pictures vs PyTorch"; }
  grep -m1 "items with pictures" "$tmp/ref_eval.log"; tail -1 "$tmp/ref_eval.log"
fi

# --- PyTorch reference for one align and one sft micro-batch (the stage's dump)
if $PY -c 'import torch' 2>/dev/null; then
  ref=tests/reference/adapt_reference.py
  PRESIGHT_ADAPT_DUMP=$tmp/align_step.h5 adapt dump_align adapt.batch=12 adapt.epochs=1 adapt.max_samples=48 \
    train.micro_batch=1 adapt.visual_tokens=4 run.dir="$tmp/dump_align" || { cat "$tmp/dump_align.log"; fail "align dump"; }
  PRESIGHT_ADAPT_DUMP=$tmp/sft_step.h5 adapt dump_sft "${sft[@]}" adapt.max_samples=40 adapt.batch=4 run.dir="$tmp/dump_sft" ||
    { cat "$tmp/dump_sft.log"; fail "sft dump"; }
  $PY $ref "$tmp/align_step.h5" "$tmp/train.jsonl" "$feat" >"$tmp/ref_align.log" 2>&1 || { cat "$tmp/ref_align.log"; fail "align step vs PyTorch"; }
  $PY $ref "$tmp/sft_step.h5" $img/instruct.jsonl "$feat" >"$tmp/ref_sft.log" 2>&1 || { cat "$tmp/ref_sft.log"; fail "sft step vs PyTorch"; }
  tail -1 "$tmp/ref_align.log"; tail -1 "$tmp/ref_sft.log"
  for m in no_shift no_sample_mask mean_per_batch; do # negative controls (align has no prompt text)
    rc=0; $PY $ref "$tmp/align_step.h5" "$tmp/train.jsonl" "$feat" --mutate $m >"$tmp/ref_$m.log" 2>&1 || rc=$?
    [ $rc -eq 1 ] || { cat "$tmp/ref_$m.log"; fail "the reference does not detect --mutate $m"; }
  done
  for m in no_shift train_prompts; do
    rc=0; $PY $ref "$tmp/sft_step.h5" $img/instruct.jsonl "$feat" --mutate $m >"$tmp/ref_sft_$m.log" 2>&1 || rc=$?
    [ $rc -eq 1 ] || { cat "$tmp/ref_sft_$m.log"; fail "the reference does not detect --mutate $m (sft)"; }
  done
else
  echo "note: no PyTorch (python3-torch): the reference step check is skipped"
fi

# --- broken samples: counted, named; past adapt.max_bad the stage fails with the ids
$PY - "$img/instruct.jsonl" "$tmp/broken.jsonl" <<'PY'
import json, sys
lines = open(sys.argv[1]).readlines()[:50]
bad = json.loads(lines[3]); bad["id"] = "bad:template"; bad["conversations"].reverse()
lines[3] = json.dumps(bad) + "\n"
long = json.loads(lines[7]); long["id"] = "bad:truncated"; long["conversations"][0]["value"] += " why?" * 80
lines[7] = json.dumps(long) + "\n"
lines[9] = "{not json\n"
open(sys.argv[2], "w").writelines(lines)
PY
rc=0; adapt broken "${sft[@]}" adapt.data="$tmp/broken.jsonl" adapt.max_bad=0.01 run.dir="$tmp/broken" || rc=$?
[ $rc -ne 0 ] || fail "3 bad samples of 50 passed adapt.max_bad = 0.01"
for id in "bad:template: chat template" "bad:truncated: its answer is cut away" "line 10: not a JSON"; do
  grep -q "$id" "$tmp/broken.log" || { cat "$tmp/broken.log"; fail "bad sample '$id' not named"; }
done
[ ! -e "$tmp/broken" ] || fail "a refused stage left a run directory"
adapt broken2 "${sft[@]}" adapt.data="$tmp/broken.jsonl" adapt.max_bad=0.2 run.dir="$tmp/broken2" ||
  { cat "$tmp/broken2.log"; fail "bad samples under adapt.max_bad = 0.2"; }
$PY - "$tmp/broken2/final.json" <<'PY' || fail "bad samples not reported in final.json"
import json, sys
f = json.load(open(sys.argv[1]))
assert f["bad_samples"] >= 3 and f["samples"] + f["bad_samples"] == 50, f
for id in ("bad:template", "bad:truncated", "line 10"):
    assert any(b.startswith(id) for b in f["bad_ids"]), (id, f["bad_ids"])
PY

echo "PASS: t_adapt ($(($(date +%s) - start))s)"
