#!/usr/bin/env bash
# Every shipped study file (config/studies/*.cfg with a top-level `name`) plans with full
# validation (`presight study plan`: every run's config resolved, every stage known), and
# the stage arguments name only files that exist and keys that `presight` knows: a
# config/... path that is missing, or an `adapt.`/`eval.`/`encode.`/`train.` key that is
# not in `presight adapt --help` / `presight encode --help`, fails it. A planted typo in a
# copy of a study file must fail the same check (negative control).
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ "$bin" adapt --help; "$bin" encode --help; } | awk '{print $1}' | grep -E '^[a-z_]+\.[a-z_0-9]+$' | sort -u >"$tmp/keys"
[ "$(wc -l <"$tmp/keys")" -gt 50 ] || { echo "FAIL: could not read the key list from --help"; exit 1; }

# check FILE: the stage arguments' files and keys.
check() {
  /usr/bin/python3 - "$1" "$tmp/keys" <<'PY'
import os, re, sys
path, keys = sys.argv[1], set(open(sys.argv[2]).read().split())
text = re.sub(r"#[^\n]*", "", open(path).read())
bad = []
for m in re.finditer(r'"([^"]*)"', text):
    s = m.group(1)
    for part in s.split(","):
        f = part.split("=", 1)[-1]
        if re.fullmatch(r"config/[\w./-]+\.cfg", f) and not os.path.exists(f):
            bad.append(f"missing file {f}")
    k = re.fullmatch(r"((?:adapt|eval|encode|train|run|checkpoint)\.\w+)=.*", s)
    if k and k.group(1) not in keys:
        bad.append(f"unknown key {k.group(1)}")
for b in bad: print(f"{path}: {b}")
sys.exit(1 if bad else 0)
PY
}

n=0
for f in config/studies/*.cfg; do
  grep -q '^name *=' "$f" || continue  # included pieces (cluster.cfg, stages-*.cfg, bundles)
  "$bin" study plan "$f" --dir "$tmp/$(basename "$f" .cfg)" >"$tmp/plan.log" 2>&1 ||
    { cat "$tmp/plan.log"; echo "FAIL: study plan $f"; exit 1; }
  check "$f" || { echo "FAIL: $f"; exit 1; }
  n=$((n + 1))
done
for f in config/studies/stages-*.cfg; do check "$f" || { echo "FAIL: $f"; exit 1; }; done
[ $n -ge 10 ] || { echo "FAIL: only $n study files found"; exit 1; }

# Negative controls: a misspelt key and a missing task file in a copy must fail.
sed 's/adapt.max_samples=/adapt.max_sample=/' config/studies/quickstart-full.cfg >"$tmp/typo.cfg"
check "$tmp/typo.cfg" >/dev/null && { echo "FAIL: a misspelt key passed"; exit 1; }
sed 's#config/tasks/quickstart/existence-small.cfg#config/tasks/quickstart/existance.cfg#' config/studies/quickstart-full.cfg >"$tmp/typo.cfg"
check "$tmp/typo.cfg" >/dev/null && { echo "FAIL: a missing task file passed"; exit 1; }
echo "PASS: $n study files plan and name only known keys and existing files"
