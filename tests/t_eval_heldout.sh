#!/usr/bin/env bash
# t_eval_heldout - the built-in held-out language tasks (datasets/tools/heldout_tasks.py,
# config/tasks/{heldout-wordnet,heldout-gcide,wordnet-mc,quiz-mc,gbrainy-mc}.cfg):
#   - every document and WordNet or quiz item comes from the held-out partition by the C
#     rule (datasets/heldout.c through build/tests/tools/heldout_keys), and every held-out
#     WordNet document and quiz fact is there (none lost, none added); gbrainy is neither a
#     default corpus nor in the instruction data (data/images/small/instruct.jsonl);
#   - the multiple-choice items are well formed (4 distinct choices, the gold one the
#     synset's first lemma, the quiz fact's answer, gbrainy's correct answer, each read
#     here from the source) and deterministic (two builds are byte-identical); a corrupted
#     copy fails the same check (negative control);
#   - presight eval runs the shipped task files on them.
# Skips (77) without the default corpora (make corpora); make test fetches them and the two
# packages (bsdgames, gbrainy: make eval-heldout-sources).
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
for f in heldout-wordnet heldout-gcide wordnet-mc quiz-mc gbrainy-mc; do cmp -s "$tmp/a/$f.jsonl" "$tmp/b/$f.jsonl" || fail "$f.jsonl differs between two builds"; done
# the C rule on every id, and on every WordNet document of the corpus
cat "$tmp"/a/{heldout-wordnet,heldout-gcide,wordnet-mc,quiz-mc}.jsonl | /usr/bin/python3 -c 'import json,sys; [print(json.loads(l)["id"]) for l in sys.stdin]' | sort -u >"$tmp/ids"
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
# quiz: exactly the quiz facts (as the instruction data keys them) the C rule holds out
(cd datasets/images && /usr/bin/python3 -c 'import images, sources
for k, q, a in images.quiz_facts(sources.fetch("bsdgames")): print(k)') >"$tmp/quiz-all" || fail "quiz facts"
build/tests/tools/heldout_keys <"$tmp/quiz-all" | awk '$2 == 1 {print substr($0, index($0, $3))}' | sort >"$tmp/quiz-held"
/usr/bin/python3 -c 'import json,sys; [print(json.loads(l)["id"]) for l in open(sys.argv[1])]' "$tmp/a/quiz-mc.jsonl" | sort >"$tmp/quiz-got"
cmp -s "$tmp/quiz-held" "$tmp/quiz-got" || { diff "$tmp/quiz-held" "$tmp/quiz-got" | head -5; fail "quiz-mc.jsonl is not exactly the held-out quiz facts"; }
! grep -q gbrainy datasets/corpora/sources.tsv || fail "gbrainy is a pretraining corpus: its items need the partition"
if [ -f data/images/small/instruct.jsonl ]; then
  ! grep -qi "is to .* as \|does not belong in this group" data/images/small/instruct.jsonl || fail "gbrainy-like questions in the instruction data"
fi
# each gold answer read back from the packages' own files
cat >"$tmp/gold.py" <<'PY'
import json, os, sys, xml.etree.ElementTree as ET
sys.path[:0] = ["datasets/images", "datasets/tools"]
import images, sources, heldout_tasks  # noqa: F401 (heldout_tasks pins gbrainy)
quiz, gb = sys.argv[1], sys.argv[2]
facts = {k: a for k, q, a in images.quiz_facts(sources.fetch("bsdgames"))}
xml = ET.parse(os.path.join(sources.fetch("gbrainy"), "usr/share/games/gbrainy/verbal_analogies.xml")).getroot()
gold = {}
for k, a in enumerate(xml.findall("analogy")):
    ok = [x.text.strip() for x in a.findall("_answer") if x.get("correct") == "yes"]
    gold["gbrainy:analogy:%03d" % k] = ok[0].split("|")[0].strip()
n = {}
for path, truth in ((quiz, facts), (gb, gold)):
    items = [json.loads(l) for l in open(path)]
    for it in items:
        c = it["choices"]
        assert len(c) == 4 and len({x.lower() for x in c}) == 4, it
        assert 0 <= it["label"] < 4 and c[it["label"]] == truth[it["id"]], it
    n[os.path.basename(path)] = len(items)
assert n["gbrainy-mc.jsonl"] == len(gold) == 106, n
assert n["quiz-mc.jsonl"] >= 50, n
print(n)
PY
/usr/bin/python3 "$tmp/gold.py" "$tmp/a/quiz-mc.jsonl" "$tmp/a/gbrainy-mc.jsonl" || fail "malformed quiz or gbrainy items"
sed '3s/"label": \([0-9]\)/"label": 9\1/' "$tmp/a/quiz-mc.jsonl" >"$tmp/quiz-bad.jsonl"
/usr/bin/python3 - "$tmp/a/gbrainy-mc.jsonl" >"$tmp/gb-bad.jsonl" <<'PY'
import json, sys
for k, l in enumerate(open(sys.argv[1])):
    it = json.loads(l)
    if k == 5:
        it["label"] = (it["label"] + 1) % 4
    print(json.dumps(it))
PY
for bad in "$tmp/quiz-bad.jsonl $tmp/a/gbrainy-mc.jsonl" "$tmp/a/quiz-mc.jsonl $tmp/gb-bad.jsonl"; do
  /usr/bin/python3 "$tmp/gold.py" $bad >/dev/null 2>&1 && fail "negative control: a wrong label passed ($bad)"
done
echo "ok: quiz and gbrainy items held out, well formed; wrong labels are caught"
$bin train config/tiny.cfg run.dir="$tmp/run" train.steps=10 >"$tmp/train.log" 2>&1 || fail train
for f in wordnet-mc quiz-mc gbrainy-mc heldout-wordnet heldout-gcide; do
  sed "s|^data = .*|data = \"$tmp/a/$f.jsonl\";|" config/tasks/$f.cfg >"$tmp/$f.cfg"
done
$bin eval "$tmp/run/config.cfg" eval.tasks="$tmp/wordnet-mc.cfg,$tmp/quiz-mc.cfg,$tmp/gbrainy-mc.cfg,$tmp/heldout-wordnet.cfg,$tmp/heldout-gcide.cfg" \
  eval.limit=20 eval.out="$tmp/eval" >"$tmp/eval.log" 2>&1 || { tail "$tmp/eval.log"; fail "presight eval on the held-out tasks"; }
for t in wordnet-mc quiz-mc gbrainy-mc heldout-wordnet heldout-gcide; do grep -q "\"task\":\"$t\"" "$tmp/eval/results.jsonl" || fail "no results for $t"; done
echo "PASS"
