#!/usr/bin/env bash
# The image sets (datasets/images/): the small default subset that make
# test-data builds is re-read with the reader's checks; a tiny build twice
# from one seed gives identical bytes, another seed other bytes; training and
# evaluation share no picture file, background file, pixel hash or
# composition while sharing the object categories; the existence splits are
# filled and each share is the answer's visible mask over the image; the
# held-out partition agrees between C and Python and is respected by the
# shards (ingest), the instructions and the evaluation items; the importer
# reports bad lines and missing images as file:line, counts them and fails
# past its threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
tool="$py datasets/images/images.py"
small=${PRESIGHT_IMAGES_SMALL:-data/images/small}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$py" -c 'import h5py, PIL, matplotlib' 2>/dev/null || fail "$py lacks h5py, PIL or matplotlib (make deps)"
[ -f "$small/.stamp" ] || fail "$small is not built (make images-small)"

# --- the small set re-read; presight data images runs the same builder ------
build/presight data images check "$small" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log"; fail "check $small"; }

# --- determinism: the tiny profile twice, and a negative control ------------
$tool build --profile tiny --seed 7 --out "$tmp/a" >/dev/null
$tool build --profile tiny --seed 7 --out "$tmp/b" >/dev/null
$tool build --profile tiny --seed 8 --out "$tmp/c" >/dev/null
sums() { (cd "$1" && sha256sum ./*.h5 ./*.jsonl ./*.json); }
diff <(sums "$tmp/a") <(sums "$tmp/b") >/dev/null || fail "one seed, two builds, different bytes"
[ "$(sums "$tmp/a" | grep scenes.h5)" != "$(sums "$tmp/c" | grep scenes.h5)" ] || fail "seed 8 built seed 7's scenes"
out=$($tool build --profile tiny --seed 7 --out "$tmp/a")
grep -q "is current" <<<"$out" || fail "a current build was not a no-op: $out"

# --- separation, splits, partition (Python reads the files back) ------------
"$py" - "$small" <<'PY' || fail "separation / splits / partition"
import hashlib, json, os, sys
sys.path.insert(0, "datasets/images")
import numpy as np
import heldout, store
d = sys.argv[1]
sets = {s: store.SetReader(os.path.join(d, s + ".h5")) for s in ("captions", "scenes", "text", "charts")}
recs = {s: store.read_jsonl(os.path.join(d, s + ".jsonl")) for s in sets}

def files_of(s, r):
    if s == "scenes":
        return {o["file"] for o in r["objects"]} | {r["background_file"]}
    if s == "text":
        return {r["key"]} | ({r["background_file"]} if r["background_file"] else set())
    if s == "charts":
        return {r["key"]}
    return {r["file"]}

for s, rs in recs.items():
    by = {"train": set(), "eval": set()}
    px = {"train": set(), "eval": set()}
    for r in rs:
        by[r["split"]] |= files_of(s, r)
        img = sets[s].image(r["image"])
        h = store.pixel_hash(np.asarray(img))
        if "pixel_sha256" in r:  # the record's hash is the stored pixels'
            assert h == r["pixel_sha256"], (s, r["id"])
        px[r["split"]].add(h)
    shared = by["train"] & by["eval"]
    assert not shared, (s, sorted(shared)[:5])
    assert not px["train"] & px["eval"], (s, "a picture in both roles")
    assert len(by["eval"]) > 0 and len(by["train"]) > 0, s
# categories shared: each has training and evaluation files, disjoint, and
# every scene object comes from its role's files
summary = json.load(open(os.path.join(d, "summary.json")))
pools = summary["categories"]
for c, p in pools.items():
    assert p["train"] and p["eval"] and not set(p["train"]) & set(p["eval"]), c
assert not set(summary["backgrounds"]["train"]) & set(summary["backgrounds"]["eval"])
cat = {"train": set(), "eval": set()}
for r in recs["scenes"]:
    cat[r["split"]] |= {o["category"] for o in r["objects"]}
    for o in r["objects"]:
        assert o["file"] in pools[o["category"]][r["split"]], (r["id"], o["file"])
    assert r["background_file"].split(":/", 1)[1] in summary["backgrounds"][r["split"]], r["id"]
assert len(cat["eval"] & cat["train"]) >= 0.8 * len(cat["eval"]) and len(cat["eval"]) >= 20, (
    len(cat["eval"]), cat["eval"] - cat["train"])
# a negative control: the check above does find a shared file when there is one
bad = [dict(recs["scenes"][0], split="eval")] + [r for r in recs["scenes"] if r["split"] == "train"][:1]
bad[1] = dict(bad[1], objects=bad[0]["objects"])
assert files_of("scenes", bad[0]) & files_of("scenes", bad[1])

# existence: splits filled, share = the answer's visible mask pixels / image pixels
ex = store.read_jsonl(os.path.join(d, "existence.jsonl"))
scenes = {r["id"]: r for r in recs["scenes"]}
n = {"small": 0, "medium": 0, "large": 0}
for e in ex:
    sc = scenes[e["image"]]
    ans = sc["objects"][0]
    assert e["answer"] == ans["category"] and e["choices"][e["answer_index"]] == e["answer"]
    assert abs(e["area_share"] - ans["pixels"] / float(sc["size"] ** 2)) < 1e-6
    lo, hi = {"small": (0, .3), "medium": (.3, .6), "large": (.6, 1.0001)}[e["split"]]
    assert lo <= e["area_share"] < hi, e
    present = {o["category"] for o in sc["objects"]}
    assert len(set(e["choices"]) & present) == 1 and len(e["choices"]) == 4, e
    n[e["split"]] += 1
assert min(n.values()) >= 30, n
# the visible masks partition: no two objects claim a pixel, so shares add up to at most 1
for sc in recs["scenes"]:
    assert sum(o["area_share"] for o in sc["objects"]) <= 1.0 + 1e-6

# the held-out partition
vqa = store.read_jsonl(os.path.join(d, "vqa.jsonl"))
cats = {}
for q in vqa:
    cats[q["category"]] = cats.get(q["category"], 0) + 1
    if q["category"] == "Knowledge":
        assert heldout.heldout(q["key"]), q
assert set(cats) == {"General", "Knowledge", "OCR & Chart", "Vision-Centric"}, cats
assert min(cats.values()) >= 40, cats
ins = store.read_jsonl(os.path.join(d, "instruct.jsonl"))
lang = [x for x in ins if "image" not in x]
for x in ins:
    if x.get("key"):
        assert not heldout.heldout(x["key"]), x["key"]
    c = x["conversations"]
    assert c[0]["from"] == "human" and c[1]["from"] == "gpt"
    assert ("image" in x) == c[0]["value"].startswith("<image>\n"), x["id"]
share = len(lang) / float(len(ins))
assert 0.3 <= share <= 0.45, share
print("ok", n, cats, "language share %.2f" % share)
PY

# --- C and Python agree on the partition; ingest keeps held-out ids out -----
{ for i in $(seq 1 300); do echo "wn:n:$((1000000 + i * 7919))"; echo "gcide:word$i"; echo "brown:x$i"; done
  echo "country:Algeria"; echo "fact:elements:He"; echo "nocolon"; echo "wn:"; } >"$tmp/keys"
build/tests/tools/heldout_keys <"$tmp/keys" >"$tmp/c.txt"
"$py" datasets/images/heldout.py <"$tmp/keys" >"$tmp/p.txt"
diff "$tmp/c.txt" "$tmp/p.txt" >/dev/null || fail "heldout.c and heldout.py disagree: $(diff "$tmp/c.txt" "$tmp/p.txt" | head -3)"
held=$(awk '$2 == 1' "$tmp/c.txt" | wc -l)
[ "$held" -gt 40 ] && [ "$held" -lt 200 ] || fail "$held of 906 keys held out"
awk '$3 ~ /^brown:/ && $2 == 1' "$tmp/c.txt" | grep -q . && fail "a brown: document was held out"
awk 'NR <= 900 {printf "{\"id\": \"%s\", \"text\": \"document %d of the partition test\"}\n", $3, NR}' \
  "$tmp/c.txt" >"$tmp/docs.jsonl"
want=$(awk 'NR <= 900 && $2 == 1' "$tmp/c.txt" | wc -l)
build/presight data tokenizer --vocab-size 300 --out "$tmp/v.tiktoken" tests/fixtures/tokenizer/train.txt >/dev/null
build/presight data ingest --source part --input "$tmp/docs.jsonl" --out "$tmp/s" --tokenizer "$tmp/v.tiktoken" \
  --tokenizer-kind plain >"$tmp/ingest.log" 2>&1 || { cat "$tmp/ingest.log"; fail "ingest"; }
"$py" - "$tmp/s/part/card.json" "$want" <<'PY' || fail "ingest's held-out count"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["issues"]["heldout_documents"] == int(sys.argv[2]), (c["issues"], sys.argv[2])
assert c["documents"] == 900 - int(sys.argv[2]), c["documents"]
PY
# the shards in data/ were built with it, where they exist
for s in wordnet-visual gcide; do
  card=data/shards/$s/card.json
  [ -f "$card" ] || continue
  grep -q '"heldout_documents":[1-9]' "$card" || fail "$card: built without the held-out partition (make shards)"
done

# --- import: LLaVA and benchmark files with errors --------------------------
mkdir -p "$tmp/imgs"
"$py" - "$tmp/imgs" <<'PY'
import sys
from PIL import Image
Image.new("RGB", (20, 10), (200, 10, 10)).save(sys.argv[1] + "/red.png")
Image.new("RGB", (8, 12), (10, 10, 200)).save(sys.argv[1] + "/blue.jpg", quality=95)
open(sys.argv[1] + "/broken.png", "wb").write(b"\x89PNG\r\n\x1a\nnot really")
Image.new("RGB", (4, 4)).save(sys.argv[1] + "/pic.gif")
PY
cat >"$tmp/llava.jsonl" <<'JSONL'
{"id": "a", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "red"}]}
{"id": "b", "image": "gone.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "x"}]}
{"id": "c", "conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi"}]}
{"id": "d", "image": "blue.jpg", "conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "blue"}]}
{"id": "e", "image": "broken.png", "conversations"
{"id": "f", "image": "broken.png", "conversations": [{"from": "human", "value": "<image>\nA?"}, {"from": "gpt", "value": "b"}]}
{"id": "g", "image": "red.png", "conversations": [{"from": "robot", "value": "<image>"}]}
{"id": "h", "image": "pic.gif", "conversations": [{"from": "human", "value": "<image>\nA?"}, {"from": "gpt", "value": "b"}]}
{"id": "a", "image": "red.png", "conversations": [{"from": "human", "value": "<image>\nAgain?"}, {"from": "gpt", "value": "red"}]}
JSONL
$tool import --format llava --input "$tmp/llava.jsonl" --images "$tmp/imgs" --out "$tmp/imp" --set mine \
  --max-bad 10 >"$tmp/imp.log" 2>&1 || { cat "$tmp/imp.log"; fail "llava import"; }
for want in "llava.jsonl:2: image $tmp/imgs/gone.png is missing" "llava.jsonl:5: not valid JSON" \
            "llava.jsonl:6: image $tmp/imgs/broken.png is unreadable" "llava.jsonl:7: conversations[0]" \
            "llava.jsonl:8: image $tmp/imgs/pic.gif is unreadable (GIF image" "llava.jsonl:9: duplicate id" \
            "9 lines, 3 imported, 6 bad"; do
  grep -qF "$want" "$tmp/imp.log" || { cat "$tmp/imp.log"; fail "not reported: $want"; }
done
"$py" - "$tmp/imp" <<'PY' || fail "imported set"
import sys
sys.path.insert(0, "datasets/images")
import store
r = store.SetReader(sys.argv[1] + "/mine.h5")
items = store.read_jsonl(sys.argv[1] + "/mine.jsonl")
assert [i["id"] for i in items] == ["a", "c", "d"], items
assert r.image(items[0]["image"]).shape == (10, 20, 3) and tuple(r.image(items[0]["image"])[0, 0]) == (200, 10, 10)
assert r.image(items[2]["image"]).shape == (12, 8, 3) and "image" not in items[1]
PY
# past the threshold: fails, and the earlier set stays
if $tool import --format llava --input "$tmp/llava.jsonl" --images "$tmp/imgs" --out "$tmp/imp" --set mine \
  --max-bad 0.2 >"$tmp/imp2.log" 2>&1; then fail "an import with 6 of 9 bad lines passed --max-bad 0.2"; fi
grep -qF "failed: more bad lines than --max-bad" "$tmp/imp2.log" || fail "$(cat "$tmp/imp2.log")"
[ -f "$tmp/imp/mine.h5" ] || fail "a failed import removed the earlier set"
cat >"$tmp/bench.jsonl" <<'JSONL'
{"id": 1, "image": "red.png", "question": "Colour?", "choices": ["red", "blue"], "answer": "red", "category": "General", "answer_type": "multiple_choice"}
{"id": 2, "image": "blue.jpg", "question": "Colour?", "choices": null, "answer": "blue", "category": "General", "answer_type": "short_answer"}
{"id": 3, "image": "red.png", "question": "Q", "choices": ["x", "y"], "answer": "z", "category": "General", "answer_type": "multiple_choice"}
{"id": 4, "image": "red.png", "question": "Q", "choices": ["x", "y"], "answer": "B", "category": "Trivia", "answer_type": "multiple_choice"}
{"id": 5, "image": "red.png", "question": "Q", "answer": "B", "category": "General"}
[1, 2]
JSONL
$tool import --format bench --input "$tmp/bench.jsonl" --images "$tmp/imgs" --out "$tmp/imp" --set bench \
  --max-bad 4 >"$tmp/b.log" 2>&1 || { cat "$tmp/b.log"; fail "bench import"; }
for want in "bench.jsonl:3: answer 'z' is neither" "bench.jsonl:4: category 'Trivia'" "bench.jsonl:5: no answer_type" \
            "bench.jsonl:6: not a JSON object" "6 lines, 2 imported, 4 bad"; do
  grep -qF "$want" "$tmp/b.log" || { cat "$tmp/b.log"; fail "not reported: $want"; }
done
echo "t_images: ok"
