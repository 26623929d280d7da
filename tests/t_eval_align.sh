#!/usr/bin/env bash
# t_eval_align - presight eval's alignment (eval.align): the tiny byte-level model's caption
# features against the patches encoder's features of the small captions set
# (presight encode), mutual 20-NN; PyTorch (Meta's model, float64, each caption alone) and
# the numpy definition (tests/reference/mknn_reference.py) recompute the score
# (tests/reference/eval_align_check.py); pairing the captions with the wrong pictures must
# fail (negative control). Skips (77) without data/images/small (make images-small).
set -u
cd "$(dirname "$0")/.."
export PRESIGHT_THREADS=1 OMP_NUM_THREADS=1
bin=build/presight
tmp=build/test-runs/eval_align
fail() { echo "FAIL: $*"; exit 1; }
set_dir=data/images/small
[ -s $set_dir/captions.h5 ] && [ -s $set_dir/captions.jsonl ] || { echo "skip: no $set_dir/captions.h5 (make images-small)"; exit 77; }
/usr/bin/python3 -c 'import torch, h5py, numpy' 2>/dev/null || { echo "skip: /usr/bin/python3 lacks torch/h5py/numpy"; exit 77; }
rm -rf "$tmp"
mkdir -p "$tmp"
printf 'encode = { encoder = "patches"; images = "%s/captions.h5"; };\n' "$set_dir" >"$tmp/enc.cfg"
$bin encode "$tmp/enc.cfg" encode.out_dir="$tmp/features" >"$tmp/encode.log" 2>&1 || { tail "$tmp/encode.log"; fail "presight encode"; }
feat=$tmp/features/patches/captions.h5
$bin train config/tiny.cfg run.dir="$tmp/run" train.steps=30 train.lr=3e-3 >"$tmp/train.log" 2>&1 || fail train
$bin eval "$tmp/run/config.cfg" eval.align="$feat" eval.align_captions=$set_dir/captions.jsonl eval.limit=200 \
  eval.out="$tmp/eval" >"$tmp/eval.log" 2>&1 || { tail "$tmp/eval.log"; fail "presight eval eval.align"; }
grep -q '"task":"alignment","category":"alignment","scorer":"mknn","subset":"patches","metric":"mknn_k20"' "$tmp/eval/results.jsonl" \
  || { cat "$tmp/eval/results.jsonl"; fail "no alignment row for the patches encoder"; }
grep "alignment with" "$tmp/eval.log"
hp="vocab=512,dim=64,layers=2,heads=4,kv_heads=2,ffn_dim=128,context=256,rope_theta=500000,norm_eps=1e-5,tied_head=0"
ref=tests/reference/eval_align_check.py
/usr/bin/python3 $ref "$tmp/run/model.h5" $set_dir/captions.jsonl "$feat" "$tmp/eval/results.jsonl" --hp "$hp" --limit 200 \
  >"$tmp/ref.log" 2>&1 || { cat "$tmp/ref.log"; fail "the reference disagrees"; }
head -n 1 "$tmp/ref.log"
if /usr/bin/python3 $ref "$tmp/run/model.h5" $set_dir/captions.jsonl "$feat" "$tmp/eval/results.jsonl" --hp "$hp" --limit 200 \
  --mutate shuffle >"$tmp/neg.log" 2>&1; then
  cat "$tmp/neg.log"; fail "negative control: misaligned captions gave the same score"
fi
echo "PASS"
