#!/usr/bin/env bash
# The default-corpora tooling (datasets/corpora, mk/corpora.mk) on two cheap
# real sources, python-stdlib and fortunes (Debian packages that make deps
# installs), and on a fixture folder with invalid UTF-8, a duplicate, an
# empty file, CRLF and NUL: every JSONL line parses and has a non-empty text,
# the cards' counts match the data, parts split at --part-bytes, a second run
# is a no-op (through make too), a killed build is cleaned up and rebuilt to
# the same bytes. Exit 0 pass, 1 fail, 77 skip (a package cannot be had).
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
py=/usr/bin/python3
tool="$py datasets/corpora/corpora.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ -x "$py" ] || skip "no $py"
for p in libpython3.11-stdlib fortunes fortunes-min; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  [ "$(id -u)" -eq 0 ] || skip "Debian package $p is missing and this is not root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
    || skip "cannot install Debian package $p"
done

# An independent reading of a source folder: every line, the card's sums.
verify() { # folder
  "$py" - "$1" <<'PY' || fail "verify $1"
import gzip, json, os, sys
d = sys.argv[1]
card = json.load(open(os.path.join(d, "card.json")))
parts = sorted(f for f in os.listdir(d) if f.startswith("part-"))
assert parts == [p["file"] for p in card["parts"]], (parts, card["parts"])
assert all(f.endswith(".jsonl.gz") for f in parts)
docs = nbytes = 0
ids = set()
for f in parts:
    with gzip.open(os.path.join(d, f), "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            o = json.loads(line)
            assert set(o) == {"text", "id"}, (f, n, set(o))
            assert isinstance(o["text"], str) and o["text"].strip(), (f, n, "empty text")
            assert o["id"] not in ids, (f, n, "repeated id")
            ids.add(o["id"])
            docs += 1
            nbytes += len(o["text"].encode("utf-8"))
assert docs == card["documents"] and nbytes == card["bytes"], (docs, nbytes, card["documents"], card["bytes"])
for k in ("source", "kind", "documents", "bytes", "origin", "licence", "notes"):
    assert k in card, k
assert card["kind"] in ("academic", "arts", "biology", "code", "computer science", "economics",
    "encyclopedia", "food", "law", "literature", "mathematics", "medicine", "philosophy",
    "politics", "q-a forum", "web-crawl"), card["kind"]
print(f"{d}: {docs} documents, {nbytes} bytes, {len(parts)} part(s)")
PY
  $tool check "$1" >/dev/null || fail "corpora.py check $1"
}

# What a no-op must leave alone: every data file, by inode and mtime.
snapshot() { (cd "$1" && find . -type f ! -name .stamp ! -name '.*.lock' -printf '%p %i %T@\n' | sort); }
sums() { (cd "$1" && find . -name 'part-*' -o -name card.json | sort | xargs sha256sum); }

# --- the fixture: what the writer must count and clean
fix=$tmp/fix
mkdir -p "$fix"
printf 'hello world\n' >"$fix/a.txt"
printf 'caf\xe9 and \xff\xfe bytes\n' >"$fix/b.txt"            # 1 document, 3 invalid sequences
printf 'hello world\n' >"$fix/c.txt"                             # duplicate of a
printf ' \n\t\n' >"$fix/d.txt"                                   # empty
printf 'line one\r\nline\000 two\r\n' >"$fix/e.txt"              # CRLF and NUL
for i in 1 2 3 4 5 6; do head -c 900 /usr/share/common-licenses/GPL-3 | sed "s/^/$i /" >"$fix/f$i.txt"; done
tsv=$tmp/sources.tsv
printf 'name\tkind\tfit\tdefault\tfetch\textract\tlicence\tnotes\n' >"$tsv"
printf 'fixture\tliterature\tdirect\tyes\tdir:%s\tfiles pkg=fix include=*.txt\tCC0-1.0\ttest fixture\n' "$fix" >>"$tsv"
$tool build --out "$tmp/out" --tsv "$tsv" --part-bytes 2500 fixture >"$tmp/fix.log" 2>&1 || { cat "$tmp/fix.log"; fail "fixture build"; }
verify "$tmp/out/fixture"
"$py" - "$tmp/out/fixture" <<'PY' || fail "fixture counts"
import gzip, json, os, sys
d = sys.argv[1]
c = json.load(open(os.path.join(d, "card.json")))
assert c["documents"] == 9, c["documents"]                         # a b e f1..f6
assert c["dropped"]["duplicate"] == 1 and c["dropped"]["empty"] == 1, c["dropped"]
assert c["invalid_utf8"] == {"documents": 1, "sequences_replaced": 3}, c["invalid_utf8"]
assert len(c["parts"]) >= 3 and all(p["jsonl_bytes"] <= 2500 for p in c["parts"]), c["parts"]
docs = {}
for p in c["parts"]:
    for line in gzip.open(os.path.join(d, p["file"]), "rt", encoding="utf-8"):
        o = json.loads(line)
        docs[o["id"]] = o["text"]
assert docs["b.txt"] == "caf\ufffd and \ufffd\ufffd bytes\n", repr(docs["b.txt"])
assert docs["e.txt"] == "line one\nline two\n", repr(docs["e.txt"])
PY

# --- two real sources, several parts each for python-stdlib
out=$tmp/out
$tool build --out "$out" --part-bytes 3000000 python-stdlib fortunes >"$tmp/b1.log" 2>&1 || { cat "$tmp/b1.log"; fail "first build"; }
grep -q "python-stdlib: extracting" "$tmp/b1.log" || fail "python-stdlib was not built"
for s in python-stdlib fortunes; do verify "$out/$s"; done
[ "$("$py" -c "import json; print(len(json.load(open('$out/python-stdlib/card.json'))['parts']))")" -ge 2 ] \
  || fail "python-stdlib should need several 3 MB parts"
before=$(snapshot "$out"); sums1=$(sums "$out")

# --- a second run is a no-op
$tool build --out "$out" --part-bytes 3000000 python-stdlib fortunes >"$tmp/b2.log" 2>&1 || { cat "$tmp/b2.log"; fail "second build"; }
[ "$(grep -c ': up to date' "$tmp/b2.log")" -eq 2 ] || { cat "$tmp/b2.log"; fail "second run was not a no-op"; }
grep -q extracting "$tmp/b2.log" && fail "second run extracted again"
[ "$before" = "$(snapshot "$out")" ] || fail "second run touched the data"

# --- a killed build: leftovers are removed, only that source is rebuilt, same bytes
mkdir -p "$out/fortunes.tmp-build" && echo junk >"$out/fortunes.tmp-build/part-00000.jsonl.gz"
rm "$out/fortunes/.stamp"
$tool build --out "$out" --part-bytes 3000000 python-stdlib fortunes >"$tmp/b3.log" 2>&1 || { cat "$tmp/b3.log"; fail "resumed build"; }
grep -q "python-stdlib: up to date" "$tmp/b3.log" || fail "python-stdlib should have been kept"
grep -q "fortunes: extracting" "$tmp/b3.log" || fail "fortunes should have been rebuilt"
[ ! -e "$out/fortunes.tmp-build" ] || fail "a killed build's folder was left"
[ "$sums1" = "$(sums "$out")" ] || fail "a rebuild gave different bytes"

# --- through make: builds, then a no-op
mk=(make -s --no-print-directory corpora CORPORA_DIR="$tmp/mk" CORPORA_SOURCES="python-stdlib fortunes")
"${mk[@]}" >"$tmp/m1.log" 2>&1 || { cat "$tmp/m1.log"; fail "make corpora"; }
grep -q "^python-stdlib " "$tmp/m1.log" && grep -q "^total " "$tmp/m1.log" || { cat "$tmp/m1.log"; fail "no summary table"; }
for s in python-stdlib fortunes; do verify "$tmp/mk/$s"; done
before=$(snapshot "$tmp/mk")
"${mk[@]}" >"$tmp/m2.log" 2>&1 || { cat "$tmp/m2.log"; fail "make corpora, second run"; }
grep -qE 'extracting|up to date' "$tmp/m2.log" && { cat "$tmp/m2.log"; fail "make ran the builder again"; }
[ "$before" = "$(snapshot "$tmp/mk")" ] || fail "the second make touched the data"
echo "PASS: corpora"
