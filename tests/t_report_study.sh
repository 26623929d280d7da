#!/usr/bin/env bash
# The study path end to end on a tiny configuration: `presight study run --local` (4 tiny
# pretraining runs), collect (which copies each run's metrics.jsonl into STUDY/collected/),
# report; then the report is rebuilt from a copy of the study dir without its runs/ (what
# collect copied is enough), and its loss table and loss.csv hold every run's metrics.
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
command -v gnuplot >/dev/null || { echo "skip: gnuplot not installed (make deps)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRESIGHT_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" study run config/studies/report-tiny.cfg --local --dir "$tmp/study" > "$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; exit 1; }
grep -q "4 of 4 runs done" "$tmp/run.log"
grep -q "copied 4 results/predictions/metrics files" "$tmp/run.log" || { cat "$tmp/run.log"; exit 1; }
cp -r "$tmp/study" "$tmp/elsewhere"
rm -rf "$tmp/elsewhere/runs"
"$bin" report "$tmp/elsewhere" > "$tmp/report.log"
cat "$tmp/report.log"
grep -q "plot:   $tmp/elsewhere/report/loss.png" "$tmp/report.log"
/usr/bin/python3 - "$tmp/study" "$tmp/elsewhere/report" <<'PY'
import csv, json, sys
study, out = sys.argv[1], sys.argv[2]
runs = [json.loads(l) for l in open(f"{study}/results.jsonl")]
rows = list(csv.DictReader(open(f"{out}/loss.csv")))
fails = []
for r in runs:
    want = [json.loads(l) for l in open(f"{study}/runs/{r['id']}/pretrain/metrics.jsonl")]
    name = " ".join(f"{k}={v}" for k, v in r["axes"].items())
    got = [x for x in rows if x["run"] == name]
    if len(got) != len(want) or any(float(x["step"]) != m["step"] or abs(float(x["loss"]) - m["loss"]) > 1e-9 * m["loss"]
                                    for x, m in zip(got, want)):
        fails.append(f"loss.csv rows of {name} differ from its metrics.jsonl")
md = open(f"{out}/report.md").read()
if md.count("| 40 |") != 4: fails.append("report.md: the loss table does not list 4 runs of 40 steps")
groups = list(csv.DictReader(open(f"{out}/groups.csv")))
if sorted(g["group"] for g in groups) != ["0.001", "0.003"] or any(g["seeds"] != "2" for g in groups):
    fails.append(f"groups: {[(g['group'], g['seeds']) for g in groups]}")
print("\n".join(fails) or "study -> collect -> report: loss curves of 4 runs in 2 groups")
sys.exit(1 if fails else 0)
PY
echo "PASS: study run -> collect -> report"
