#!/usr/bin/env bash
# bench/adapt.sh TMP: tokens/s of an align step and of an sft step against a
# pretraining step of the same model (config/bench.cfg) and sequence length,
# all on this machine in the same run. align skips the LLM's weight gradients
# (only the projector trains). Writes TMP/adapt.json.
set -euo pipefail
tmp=$1
bin=build/presight
img=data/images/small
for s in captions text charts scenes; do
  echo "encode = { images = \"$img/$s.h5\"; encoder = \"patches\"; out_dir = \"$tmp/feat\"; };" >"$tmp/enc_$s.cfg"
  $bin encode "$tmp/enc_$s.cfg" >"$tmp/enc_$s.log" 2>&1 || { cat "$tmp/enc_$s.log"; exit 1; }
done
$bin train config/bench.cfg train.steps=6 checkpoint.every_steps=0 data.path=tests/fixtures/text/tiny.txt run.dir="$tmp/pre" >"$tmp/pre.log" 2>&1 ||
  { cat "$tmp/pre.log"; exit 1; }
common=(adapt.init="$tmp/pre" adapt.features="$tmp/feat/patches" adapt.visual_tokens=16 adapt.epochs=1 train.micro_batch=8
        train.seq_len=256 checkpoint.every_steps=0 adapt.max_bad=0.2)
$bin adapt config/adapt/align.cfg "${common[@]}" adapt.data=$img/align.jsonl adapt.batch=48 adapt.max_samples=288 \
  run.dir="$tmp/align" >"$tmp/align.log" 2>&1 || { cat "$tmp/align.log"; exit 1; }
$bin adapt config/adapt/sft.cfg "${common[@]}" adapt.data=$img/instruct.jsonl adapt.batch=16 adapt.max_samples=96 \
  run.dir="$tmp/sft" >"$tmp/sft.log" 2>&1 || { cat "$tmp/sft.log"; exit 1; }
/usr/bin/python3 - "$tmp" <<'PY'
import json, statistics, sys
tmp = sys.argv[1]
def rate(run):  # median tokens/s of the steps after the first (warm-up); padding rows are not tokens
    lines = [json.loads(l) for l in open(f"{tmp}/{run}/metrics.jsonl")]
    return statistics.median((l["tokens"] - p["tokens"]) / max(1e-9, l["elapsed_s"] - p["elapsed_s"])
                             for p, l in zip(lines[1:], lines[2:]))
r = {k: rate(k) for k in ("pre", "align", "sft")}
res = {"adapt_pretrain_tokens_per_s": r["pre"], "adapt_align_tokens_per_s": r["align"], "adapt_sft_tokens_per_s": r["sft"],
       "align_vs_pretrain_step": r["align"] / r["pre"], "sft_vs_pretrain_step": r["sft"] / r["pre"]}
json.dump(res, open(f"{tmp}/adapt.json", "w"))
print(json.dumps(res))
PY
