#!/usr/bin/env bash
# t_eval_heldout - the built-in held-out language tasks (datasets/tools/heldout_tasks.py,
# config/tasks/{heldout-wordnet,heldout-gcide,wordnet-mc}.cfg):
#   - every document and item comes from the held-out partition by the C rule
#     (datasets/heldout.c through build/tests/tools/heldout_keys), and every held-out
#     WordNet document is there (none lost, none added);
#   - the multiple-choice items are well formed (4 distinct choices, the gold one the
#     synset's first lemma) and deterministic (two builds are byte-identical);
#   - presight eval runs the shipped task files on them.
# Skips (77) without the default corpora (make corpora).
set -u
cd "$(dirname "$0")/.."
export PRESIGHT_THREADS=1 OMP_NUM_THREADS=1
bin=build/presight
tmp=build/test-runs/eval_heldout
fail() { echo "FAIL: $*"; exit 1; }
[ -s data/corpora/wordnet-visual/part-00000.jsonl.gz ] && [ -s data/corpora/gcide/part-00000.jsonl.gz ] \
  || { echo "skip: data/corpora lacks wordnet-visual or gcide (make corpora)"; exit 77; }
rm -rf "$tmp"
mkdir -p "$tmp"
tool=datasets/tools/heldout_tasks.py
/usr/bin/python3 $tool --out "$tmp/a" --mc-items 60 >"$tmp/a.log" 2>&1 || { cat "$tmp/a.log"; fail "heldout_tasks"; }
/usr/bin/python3 $tool --out "$tmp/b" --mc-items 60 >"$tmp/b.log" 2>&1 || fail "heldout_tasks (again)"
for f in heldout-wordnet heldout-gcide wordnet-mc; do cmp -s "$tmp/a/$f.jsonl" "$tmp/b/$f.jsonl" || fail "$f.jsonl differs between two builds"; done
# the C rule on every id, and on every WordNet document of the corpus
cat "$tmp"/a/*.jsonl | /usr/bin/python3 -c 'import json,sys; [print(json.loads(l)["id"]) for l in sys.stdin]' | sort -u >"$tmp/ids"
build/tests/tools/heldout_keys <"$tmp/ids" | awk '$2 != 1 {print; bad=1} END {exit bad}' >"$tmp/not-held" \
  || { head -3 "$tmp/not-held"; fail "ids outside the held-out partition"; }
zcat data/corpora/wordnet-visual/part-*.jsonl.gz | /usr/bin/python3 -c 'import json,sys; [print(json.loads(l)["id"]) for l in sys.stdin]' \
  | build/tests/tools/heldout_keys | awk '$2 == 1 {print $3}' | sort >"$tmp/wn-held"
/usr/bin/python3 -c 'import json,sys; [print(json.loads(l)["id"]) for l in open(sys.argv[1])]' "$tmp/a/heldout-wordnet.jsonl" | sort >"$tmp/wn-got"
cmp -s "$tmp/wn-held" "$tmp/wn-got" || fail "heldout-wordnet.jsonl is not exactly the held-out WordNet documents"
/usr/bin/python3 - "$tmp/a/wordnet-mc.jsonl" "$tmp/a/heldout-wordnet.jsonl" <<'PY' || fail "malformed multiple-choice items"
import json, sys
docs = {d["id"]: d["text"] for d in map(json.loads, open(sys.argv[2]))}
items = [json.loads(l) for l in open(sys.argv[1])]
assert len(items) >= 50, len(items)
for it in items:
    assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4, it
    assert docs[it["id"]].startswith(it["choices"][it["label"]]), it
print(f"{len(items)} items, {len(docs)} held-out WordNet documents")
PY
$bin train config/tiny.cfg run.dir="$tmp/run" train.steps=10 >"$tmp/train.log" 2>&1 || fail train
for f in wordnet-mc heldout-wordnet heldout-gcide; do
  sed "s|^data = .*|data = \"$tmp/a/$f.jsonl\";|" config/tasks/$f.cfg >"$tmp/$f.cfg"
done
$bin eval "$tmp/run/config.cfg" eval.tasks="$tmp/wordnet-mc.cfg,$tmp/heldout-wordnet.cfg,$tmp/heldout-gcide.cfg" \
  eval.limit=20 eval.out="$tmp/eval" >"$tmp/eval.log" 2>&1 || { tail "$tmp/eval.log"; fail "presight eval on the held-out tasks"; }
for t in wordnet-mc heldout-wordnet heldout-gcide; do grep -q "\"task\":\"$t\"" "$tmp/eval/results.jsonl" || fail "no results for $t"; done
echo "PASS"
