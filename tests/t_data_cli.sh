#!/usr/bin/env bash
# presight data end to end: a tokenizer trained on a fixture; ingest of the
# ingest fixtures against the golden documents (read back with h5py); a rerun
# does nothing; a killed ingest (mid-shard, by a test hook, and by a timer)
# resumes to byte-identical shards; mpirun -np 2 ingests the same documents;
# segment labels (h5py layout, rates, export and import); data mix shares;
# and a few training steps on shards and on a mixture.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/presight
py=/usr/bin/python3
fx=tests/fixtures/ingest
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$py" -c 'import h5py' 2>/dev/null || fail "$py has no h5py (apt-get install python3-h5py)"

# --- a tokenizer, trained on the tokenizer fixture ----------------------------
$bin data tokenizer --vocab-size 400 --out "$tmp/v.tiktoken" tests/fixtures/tokenizer/train.txt >"$tmp/tok.log" \
  || { cat "$tmp/tok.log"; fail "data tokenizer"; }
grep -q "400 tokens" "$tmp/tok.log" || fail "tokenizer size: $(cat "$tmp/tok.log")"
tok=(--tokenizer "$tmp/v.tiktoken" --tokenizer-kind plain)

# --- the fixtures: golden documents, issues reported with file:line ------------
inputs=("$fx/text" "$fx/docs.jsonl" "$fx/more.jsonl.gz" "$fx/story.txt.gz" "$fx/corrupt.jsonl.gz" "$fx/missing.txt")
$bin data ingest --source fx --input "${inputs[@]}" --out "$tmp/s" "${tok[@]}" --max-doc-bytes 1000 >"$tmp/i.log" 2>&1 \
  || { cat "$tmp/i.log"; fail "ingest of the fixtures"; }
for want in "docs.jsonl:6: malformed JSONL line (not valid JSON" "docs.jsonl:4: empty document" \
            "latin1.txt:1: invalid UTF-8 (4 sequences)" "missing.txt: cannot open" "blob.bin: binary file" \
            "corrupt.jsonl.gz:7: read error"; do
  grep -qF "$want" "$tmp/i.log" || { cat "$tmp/i.log"; fail "not reported: $want"; }
done
"$py" - "$tmp/s/fx/card.json" <<'PY' || fail "card counts"
import json, sys
c = json.load(open(sys.argv[1]))
want = {"empty_documents": 3, "malformed_lines": 5, "unreadable_files": 2, "binary_files": 1,
        "invalid_utf8_documents": 2, "invalid_utf8_sequences": 6, "split_documents": 2,
        "heldout_documents": 0}
assert c["issues"] == want, c["issues"]
assert c["documents"] == 21 and c["files"] == 12 and c["licence"].startswith("not stated"), c
PY
"$py" $fx/check_shards.py "$tmp/s/fx" "$tmp/v.tiktoken" golden $fx/expected.tsv || fail "golden documents"
before=$(md5sum "$tmp/s/fx/"*.h5 "$tmp/s/fx/card.json")
$bin data ingest --source fx --input "${inputs[@]}" --out "$tmp/s" "${tok[@]}" --max-doc-bytes 1000 >"$tmp/i2.log" 2>&1
grep -q "already ingested" "$tmp/i2.log" || { cat "$tmp/i2.log"; fail "a rerun ingested again"; }
[ "$before" = "$(md5sum "$tmp/s/fx/"*.h5 "$tmp/s/fx/card.json")" ] || fail "a rerun changed the shards"
if $bin data ingest --source fx --input "$fx/text" --out "$tmp/s" "${tok[@]}" >"$tmp/i3.log" 2>&1; then
  fail "other inputs over a finished ingest were accepted"
fi
grep -q "other inputs" "$tmp/i3.log" || { cat "$tmp/i3.log"; fail "no message for other inputs"; }

# --- a corpus of many files for kills and ranks -------------------------------
"$py" - "$tmp/corpus" <<'PY'
import gzip, json, os, random, sys
root = sys.argv[1]; rng = random.Random(5)
words = "the a whale ship sea red round table code int return proof theorem of on in under cat".split()
os.makedirs(root + "/txt/deep")
for i in range(40):
    d = root + ("/txt/deep" if i % 3 else "/txt")
    with open("%s/f%02d.txt" % (d, i), "w") as f:
        f.write(" ".join(rng.choice(words) for _ in range(rng.randrange(50, 400))) + "\n")
for k in range(2):
    with gzip.open("%s/part-%d.jsonl.gz" % (root, k), "wt") as f:
        for i in range(150):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randrange(10, 120)))}) + "\n")
PY
run_ingest() { $bin data ingest --source c --input "$tmp/corpus" --out "$1" "${tok[@]}" --shard-tokens 3000; }
run_ingest "$tmp/full" >/dev/null 2>&1 || fail "uninterrupted ingest"
n_shards=$(ls "$tmp/full/c"/shard-*.h5 | wc -l)
[ "$n_shards" -ge 5 ] || fail "expected several shards, got $n_shards"
same_as_full() { # dir what
  for f in "$tmp/full/c"/shard-*.h5 "$tmp/full/c/card.json"; do
    cmp -s "$f" "$1/c/$(basename "$f")" || fail "$2: $(basename "$f") differs from the uninterrupted ingest"
  done
  [ "$(ls "$1/c" | grep -c 'shard-.*\.h5$')" -eq "$n_shards" ] || fail "$2: shard count differs"
  ls "$1/c" | grep -q '\.tmp$' && fail "$2: a .tmp file is left" || true
}

# killed (SIGKILL from inside, in the middle of a shard), twice, then finished
set +e
PRESIGHT_INGEST_KILL_AFTER=77 run_ingest "$tmp/k" >/dev/null 2>&1; rc1=$?
PRESIGHT_INGEST_KILL_AFTER=90 run_ingest "$tmp/k" >/dev/null 2>&1; rc2=$?
set -e
[ $rc1 -eq 137 ] && [ $rc2 -eq 137 ] || fail "the kill hook did not kill ($rc1, $rc2)"
[ -e "$tmp/k/c/card.json" ] && fail "a killed ingest wrote its card"
ls "$tmp/k/c"/shard-*.h5 >/dev/null 2>&1 || fail "no shard was committed before the kill"
run_ingest "$tmp/k" >"$tmp/k.log" 2>&1 || { cat "$tmp/k.log"; fail "resume"; }
same_as_full "$tmp/k" "kill and resume"

# killed from outside by a timer, wherever it was, then finished
( timeout -s KILL 0.3 $bin data ingest --source c --input "$tmp/corpus" --out "$tmp/t" "${tok[@]}" \
  --shard-tokens 3000 --threads 1 --batch-bytes 2k >/dev/null 2>&1 || true ) 2>/dev/null
run_ingest "$tmp/t" >/dev/null 2>&1 || fail "resume after a timed kill"
same_as_full "$tmp/t" "timed kill and resume"

# two ranks: each its own files and shards; the same documents
mpirun -np 2 $bin data ingest --source c --input "$tmp/corpus" --out "$tmp/m" "${tok[@]}" --shard-tokens 3000 \
  >"$tmp/m.log" 2>&1 || { cat "$tmp/m.log"; fail "mpirun -np 2 ingest"; }
grep -q '"ranks":2' "$tmp/m/c/card.json" || fail "card does not say 2 ranks"
cmp <("$py" $fx/check_shards.py "$tmp/full/c" "$tmp/v.tiktoken" hashes) \
    <("$py" $fx/check_shards.py "$tmp/m/c" "$tmp/v.tiktoken" hashes) || fail "2 ranks ingested other documents"
# two ranks killed (one kills itself, mpirun takes the other), resumed by two
# ranks (one rank is refused): the same shards as the uninterrupted 2-rank run
set +e
PRESIGHT_INGEST_KILL_AFTER=50 mpirun -np 2 $bin data ingest --source c --input "$tmp/corpus" --out "$tmp/mk" "${tok[@]}" \
  --shard-tokens 3000 >/dev/null 2>&1
rc=$?
run_ingest "$tmp/mk" >"$tmp/mk1.log" 2>&1
rc1=$?
set -e
[ $rc -ne 0 ] || fail "the 2-rank kill did not stop mpirun"
[ $rc1 -ne 0 ] && grep -q "with 2 ranks" "$tmp/mk1.log" || { cat "$tmp/mk1.log"; fail "1 rank resumed a 2-rank ingest"; }
mpirun -np 2 $bin data ingest --source c --input "$tmp/corpus" --out "$tmp/mk" "${tok[@]}" --shard-tokens 3000 \
  >"$tmp/mk.log" 2>&1 || { cat "$tmp/mk.log"; fail "2-rank resume"; }
for f in "$tmp/m/c"/shard-*.h5 "$tmp/m/c/card.json"; do
  cmp -s "$f" "$tmp/mk/c/$(basename "$f")" || fail "2-rank kill and resume: $(basename "$f") differs"
done

# --- labels ---------------------------------------------------------------------
$bin data label --shards "$tmp/full" --segment 256 >"$tmp/l.log" 2>&1 || { cat "$tmp/l.log"; fail "data label"; }
grep -q "relationship\|rel " "$tmp/l.log" && grep -q "^c " "$tmp/l.log" || { cat "$tmp/l.log"; fail "no rates table"; }
head -1 "$tmp/full/label_rates.tsv" | grep -q "^source.segments.code.math.science.reasoning.concept" || fail "tsv header"
"$py" - "$tmp/full" <<'PY' || fail "labels.h5 layout"
import h5py, json, math, sys
root = sys.argv[1]
card = json.load(open(root + "/c/card.json"))
f = h5py.File(root + "/c/labels.h5", "r")
assert f.attrs["segment"] == 256 and f.attrs["labels"].startswith("code,math,science,concept"), dict(f.attrs)
for s in card["shards"]:
    m = f[s["file"]][:]
    assert m.dtype == "uint8" and len(m) == math.ceil(s["tokens"] / 256), (s, m.shape)
    assert (m & 0x80).all() and not (m & 0x40).any()
PY
$bin data label --shards "$tmp/full" --segment 256 --export "$tmp/seg.jsonl" >/dev/null 2>&1 || fail "export"
"$py" - "$tmp/seg.jsonl" "$tmp/imp.jsonl" <<'PY' || fail "export content"
import json, sys
out = open(sys.argv[2], "w")
n = 0
for line in open(sys.argv[1]):
    s = json.loads(line)
    assert s["source"] in ("c", "fx") and s["text"], s
    if s["source"] != "c": continue
    labels = ["code reasoning"] if s["segment"] % 2 == 0 else []
    out.write(json.dumps({"source": "c", "shard": s["shard"], "segment": s["segment"], "labels": labels}) + "\n")
    n += 1
out.write('{"source": "c", "shard": "shard-99999.h5", "segment": 0, "labels": []}\n')
assert n > 10
PY
$bin data label --shards "$tmp/full" --segment 256 --import "$tmp/imp.jsonl" >"$tmp/imp.log" 2>&1 \
  || { cat "$tmp/imp.log"; fail "import"; }
grep -q "no such shard" "$tmp/imp.log" || fail "a bad import line was not reported"
awk -F'\t' '$1 == "c" { exit !($3 > 45 && $3 < 55 && $5 == 0) }' "$tmp/full/label_rates.tsv" \
  || { cat "$tmp/full/label_rates.tsv"; fail "imported rates"; }

# --- mix and training ----------------------------------------------------------
mkdir -p "$tmp/mixtures"
printf 'name = "two";\nweights = { c = 0.7; fx = 0.3; };\n' >"$tmp/mixtures/two.cfg"
ln -s "$tmp/s/fx" "$tmp/full/fx"
$bin data mix config/tiny.cfg data.kind=mixture data.path="$tmp/full" data.mixture="$tmp/mixtures/two.cfg" \
  >"$tmp/mix.log" 2>&1 || { cat "$tmp/mix.log"; fail "data mix"; }
awk '/largest/ { exit !($5 < 0.5) }' "$tmp/mix.log" || { cat "$tmp/mix.log"; fail "shares off by 0.5 points or more"; }
grep -q "^c .*70.000" "$tmp/mix.log" || { cat "$tmp/mix.log"; fail "weights not shown"; }
$bin train config/tiny.cfg data.kind=shards data.path="$tmp/full/c" train.steps=3 run.dir="$tmp/run1" \
  >"$tmp/train1.log" 2>&1 || { cat "$tmp/train1.log"; fail "training on shards"; }
$bin train config/tiny.cfg data.kind=mixture data.path="$tmp/full" data.mixture="$tmp/mixtures/two.cfg" \
  data.tokenizer="$tmp/v.tiktoken" train.steps=3 run.dir="$tmp/run2" >"$tmp/train2.log" 2>&1 \
  || { cat "$tmp/train2.log"; fail "training on a mixture"; }
[ "$(wc -l <"$tmp/run2/metrics.jsonl")" -eq 3 ] || fail "mixture run: metrics"
if $bin train config/tiny.cfg data.kind=mixture data.path="$tmp/full" data.mixture="$tmp/mixtures/two.cfg" \
  data.tokenizer=build/presight train.steps=1 run.dir="$tmp/run3" >"$tmp/train3.log" 2>&1; then
  fail "a run with the wrong data.tokenizer started"
fi
grep -q "data.tokenizer" "$tmp/train3.log" || { cat "$tmp/train3.log"; fail "wrong tokenizer not named"; }
echo "ok"
