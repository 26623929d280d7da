#!/usr/bin/env bash
# make quickstart's study file end to end on a tiny configuration: the stages and arguments
# of config/studies/quickstart-full.cfg as shipped (pretrain -> encode -> align -> sft ->
# eval -> collect -> report), with only the sizes cut down (the tiny byte-level model of
# config/tiny.cfg for 3 steps, 16 samples per adapt stage, 3 items per task) and two learning
# rates instead of the two mixtures. Checks that every stage finished, that the second run's
# encode found the shared features complete, that the report has the VQA, existence and
# language tables and their PNGs, and that `--vqa letter` scores each item by its letter
# log-likelihoods (recomputed here from predictions.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
command -v gnuplot >/dev/null || { echo "skip: gnuplot not installed (make deps)"; exit 77; }
for f in data/images/small/captions.h5 data/eval-heldout/wordnet-mc.jsonl; do
  [ -e "$f" ] || { echo "skip: $f missing (make test-data)"; exit 77; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRESIGHT_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s#^base = .*#base = \"$PWD/config/tiny.cfg\";#" \
    -e 's#^set  = .*#set  = [ "train.steps=3", "train.warmup_steps=1", "checkpoint.every_steps=3" ];#' \
    -e 's#{ key = "data.mixture"; values = \[ "mix0", "mix6" \]; }#{ key = "train.lr"; values = [ 1e-3, 3e-3 ]; }#' \
    -e 's#adapt.max_samples=256#adapt.max_samples=16#g' \
    -e 's#"eval.limit=40",#"eval.limit=3", "eval.align_k=2",#' \
    config/studies/quickstart-full.cfg >"$tmp/qs.cfg"
[ "$(grep -c 'max_samples=16\|eval.limit=3\|train.steps=3\|train.lr"' "$tmp/qs.cfg")" -eq 5 ] ||
  { echo "FAIL: the sizes of quickstart-full.cfg changed; update this test's edits"; exit 1; }
"$bin" study run "$tmp/qs.cfg" --local --dir "$tmp/study" >"$tmp/run.log" 2>&1 || { tail -n 40 "$tmp/run.log"; echo "FAIL: study run"; exit 1; }
grep -q "2 of 2 runs done" "$tmp/run.log" || { tail -n 20 "$tmp/run.log"; echo "FAIL: not every run done"; exit 1; }
[ "$(cat "$tmp"/study/runs/*/encode/encode.log | grep -c 'is up to date')" -eq 4 ] ||
  { cat "$tmp"/study/runs/*/encode/encode.log; echo "FAIL: the second run did not reuse the 4 features files"; exit 1; }
"$bin" report "$tmp/study" >"$tmp/report.log" 2>&1 || { cat "$tmp/report.log"; echo "FAIL: report"; exit 1; }
"$bin" report "$tmp/study" --vqa letter --out "$tmp/letter" >"$tmp/letter.log" 2>&1 || { cat "$tmp/letter.log"; echo "FAIL: report --vqa letter"; exit 1; }
/usr/bin/python3 - "$tmp/study" "$tmp/letter" <<'PY'
import csv, json, struct, sys
study, letter = sys.argv[1], sys.argv[2]
fails = []
md = open(f"{study}/report/report.md").read()
for want in ("## VQA by category", "## Existence by object size", "## Language and alignment", "![vqa](vqa.png)", "![existence](existence.png)"):
    if want not in md: fails.append(f"report.md lacks {want!r}")
for png in ("vqa", "existence", "loss", "paired"):
    head = open(f"{study}/report/{png}.png", "rb").read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", head[16:24])[0] < 200: fails.append(f"{png}.png is not a plotted PNG")
runs = [json.loads(l) for l in open(f"{study}/results.jsonl")]
groups = {g["group"]: g for g in csv.DictReader(open(f"{letter}/groups.csv"))}
for r in runs:
    name = " ".join(f"{v}" for v in r["axes"].values())
    right = {}
    for l in open(f"{study}/collected/{r['id']}/eval/predictions.jsonl"):
        p = json.loads(l)
        if p.get("kind") != "vqa" or p.get("scorer") == "existence": continue
        ll = p["letter_loglikelihoods"]
        right.setdefault(p["item_category"], []).append(1.0 * (max(range(len(ll)), key=lambda c: (ll[c], -c)) == p["gold"]))
    g = groups.get(name)
    if not g: fails.append(f"no group {name} in groups.csv: {list(groups)}"); continue
    for cat, vals in right.items():
        col = "vqa_" + cat.lower().replace(" & ", "_").replace("-", "_")
        want = sum(vals) / len(vals)
        if col not in g or abs(float(g[col]) - want) > 1e-6: fails.append(f"{name} {cat}: groups.csv {g.get(col)} != {want} (letters)")
print("\n".join(fails) or "quickstart-full (tiny): 2 runs x 5 stages, shared features, report tables, PNGs and letter scores")
sys.exit(1 if fails else 0)
PY
echo "PASS: quickstart-full end to end (tiny)"
