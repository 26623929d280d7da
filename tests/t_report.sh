#!/usr/bin/env bash
# presight report on the shipped fixture study (tests/fixtures/report/study: mix0 and mix6,
# two seeds each, scored by `presight eval rescore`): every number in groups.csv, the plot
# CSVs and targets.csv is recomputed here with numpy from the fixture files; every PNG has
# its size and is not blank (a negative control shows the blank check can fail); a results
# row without a value, predictions of another checkpoint, predictions without correct flags,
# and seeds scored on different items are each named, not skipped; a study run with no files
# yet is left out and listed.
# tier: fast (make check)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
py=/usr/bin/python3
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
command -v gnuplot >/dev/null || { echo "skip: gnuplot not installed (make deps)"; exit 77; }
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && echo "kept $tmp" || rm -rf "$tmp"' EXIT
fixture=tests/fixtures/report/study

"$bin" report "$fixture" --out "$tmp/out" > "$tmp/stdout"
cat "$tmp/stdout"
grep -q "report: $tmp/out/report.md" "$tmp/stdout"
! ls "$tmp/out"/*.tmp 2>/dev/null

$py - "$fixture" "$tmp/out" <<'PY'
import csv, glob, json, math, os, sys
import numpy as np
from PIL import Image
fx, out = sys.argv[1], sys.argv[2]
fails = []
def close(what, got, want, tol=1e-6):
    if got is None or want is None or not math.isfinite(got) or abs(got - want) > tol * max(1, abs(want)):
        fails.append(f"{what}: {got} != {want}")

runs = [json.loads(l) for l in open(f"{fx}/results.jsonl")]
CATS = ["General", "Knowledge", "OCR & Chart", "Vision-Centric"]
groups = {}
for r in runs:
    groups.setdefault(r["axes"]["data.mixture"], []).append(r["id"])

def load(rid, name):
    return [json.loads(l) for l in open(f"{fx}/collected/{rid}/{'pretrain' if name == 'metrics' else 'eval'}/{name}.jsonl")]

# Independent values per run: category means from the correct flags, existence by area.
def run_values(rid):
    p = load(rid, "predictions")
    v, items = {}, {}
    for c, cat in enumerate(CATS):
        xs = {q["id"]: q["correct"] for q in p if q["kind"] == "vqa" and q.get("item_category") == cat}
        v[cat], items[cat] = np.mean(list(xs.values())), xs
    v["overall"] = np.mean([v[c] for c in CATS])
    ex = [q for q in p if q["scorer"] == "existence"]
    for name, lo, hi in [("small", 0, 0.3), ("medium", 0.3, 0.6), ("large", 0.6, 1.01)]:
        xs = {q["id"]: q["correct"] for q in ex if lo <= q["area_share"] < hi}
        v[name], items[name] = np.mean(list(xs.values())), xs
    v["exist"] = np.mean([q["correct"] for q in ex])
    items["exist"] = {q["id"]: q["correct"] for q in ex}
    n_all = sum(len(items[c]) for c in CATS)  # overall: items weighted N / (C n_c)
    items["overall"] = {i: x * n_all / (len(CATS) * len(items[c])) for c in CATS for i, x in items[c].items()}
    res = {(r["task"], r["subset"], r["metric"]): r["value"] for r in load(rid, "results")}
    # the eval library's own existence split agrees with this one
    for name in ("small", "medium", "large"):
        close(f"{rid} acc_{name} vs results.jsonl", v[name], res[("images-existence", "", "acc_" + name)], 1e-12)
    v["ppl"] = res[("wikitext", "", "word_perplexity")]
    v["byte_ppl"] = res[("wikitext", "", "byte_perplexity")]  # the same task's, beside it
    v["lang"] = [r["value"] for r in load(rid, "results") if r["task"] == "mean" and r["category"] == "language"][0]
    return v, items

G = {}
for g, ids in groups.items():
    vals = [run_values(i) for i in ids]
    G[g] = {k: np.mean([v[0][k] for v in vals]) for k in vals[0][0]}
    G[g]["items"] = {k: {iid: np.mean([v[1][k][iid] for v in vals]) for iid in vals[0][1][k]} for k in vals[0][1]}
    G[g]["seedvals"] = {k: [v[0][k] for v in vals] for k in vals[0][0]}

rows = {r["group"]: r for r in csv.DictReader(open(f"{out}/groups.csv"))}
col = {"General": "vqa_general", "Knowledge": "vqa_knowledge", "OCR & Chart": "vqa_ocr_chart",
       "Vision-Centric": "vqa_vision_centric", "overall": "vqa_overall", "small": "exist_small",
       "medium": "exist_medium", "large": "exist_large", "exist": "exist_overall", "ppl": "ppl", "byte_ppl": "byte_ppl", "lang": "lang_acc"}
rng = np.random.default_rng(0)
def boot(x, iters=4000):
    x = np.asarray(x)
    m = x[rng.integers(0, len(x), (iters, len(x)))].mean(axis=1)
    return np.quantile(m, 0.025), np.quantile(m, 0.975)
for g in G:
    for k, c in col.items():
        close(f"groups.csv {g} {c}", float(rows[g][c]), G[g][k])
        if len(G[g]["seedvals"][k]) >= 2:
            lo, hi = float(rows[g][c + "_seed_lo"]), float(rows[g][c + "_seed_hi"])
            if not (min(G[g]["seedvals"][k]) - 1e-8 <= lo <= G[g][k] <= hi <= max(G[g]["seedvals"][k]) + 1e-8):
                fails.append(f"{g} {c}: seed interval [{lo}, {hi}] outside the seeds' range")
    # item intervals: bracket the value, width within 30% of numpy's own bootstrap
    for k in CATS + ["small", "medium", "large"]:
        c = col[k]
        lo, hi = float(rows[g][c + "_item_lo"]), float(rows[g][c + "_item_hi"])
        nlo, nhi = boot(list(G[g]["items"][k].values()))
        if not lo <= G[g][k] <= hi: fails.append(f"{g} {c}: {G[g][k]} not in [{lo}, {hi}]")
        if abs((hi - lo) - (nhi - nlo)) > 0.3 * (nhi - nlo) + 1e-9:
            fails.append(f"{g} {c}: interval width {hi - lo:.4f}, numpy's {nhi - nlo:.4f}")

# the weighted items' plain mean is the macro mean
for g in G:
    close(f"{g} overall from weighted items", np.mean(list(G[g]["items"]["overall"].values())), G[g]["overall"], 1e-12)

# the plots' CSVs hold what they plot
for row in csv.DictReader(open(f"{out}/vqa.csv")):
    k = {"overall VQA": "overall"}.get(row["measure"], row["measure"])
    close(f"vqa.csv {row['group']} {k}", float(row["value"]), 100 * G[row["group"]][k])
    close(f"vqa.csv {row['group']} {k} lo", float(row["lo"]), 100 * float(rows[row["group"]][col[k] + "_item_lo"]))
for row in csv.DictReader(open(f"{out}/existence.csv")):
    k = {"overall": "exist"}.get(row["measure"], row["measure"])
    close(f"existence.csv {row['group']} {k}", float(row["value"]), 100 * G[row["group"]][k])
for row in csv.DictReader(open(f"{out}/mix.csv")):
    g = "mix" + row["mix"]
    k = {"overall VQA": "overall"}.get(row["category"], row["category"])
    close(f"mix.csv {g} {k}", float(row["value"]), 100 * G[g][k])
# paired: per item mean over seeds, mix6 - mix0
paired = list(csv.DictReader(open(f"{out}/paired.csv")))
if not paired: fails.append("paired.csv is empty")
md = open(f"{out}/report.md").read()
for row in paired:
    k = {v: k for k, v in col.items()}[row["measure"]]
    a, b = G["mix6"]["items"][k], G["mix0"]["items"][k]
    d = np.array([a[i] - b[i] for i in a])
    close(f"paired {k}", float(row["difference"]), 100 * d.mean())
    lo, hi = float(row["lo"]), float(row["hi"])
    if not lo <= float(row["difference"]) <= hi: fails.append(f"paired {k}: difference outside [{lo}, {hi}]")
    verdict = "mix6 leads mix0" if lo > 0 else "mix6 trails mix0" if hi < 0 else "no clear difference"
    line = [l for l in md.splitlines() if l.startswith(f"| mix6 | ") and f"| {row['n']} | {verdict} |" in l]
    if not line: fails.append(f"report.md: no '{verdict}' row for {k}")
# shares: mix6 is 52.0% reasoning, 14.8% visual (STUDY.md)
close("mix6 reasoning share", float(rows["mix6"]["reasoning_share"]), 0.51964, 1e-9)
close("mix6 visual share", float(rows["mix6"]["visual_share"]), 0.14782, 1e-9)
# the paper's targets beside the groups
t = {(r["mixture"], r["measure"]): r for r in csv.DictReader(open(f"{out}/targets.csv"))}
close("target mix6 overall", float(t[("mix6", "vqa_overall")]["paper"]), 38.64)
close("gap mix0 General", float(t[("mix0", "vqa_general")]["gap"]), 100 * G["mix0"]["General"] - 46.92)
close("gap mix0 ppl", float(t[("mix0", "ppl")]["gap"]), G["mix0"]["ppl"] - 8.72)
# loss curves: every metrics.jsonl row
loss = list(csv.DictReader(open(f"{out}/loss.csv")))
want = [(m["step"], m["loss"]) for r in runs for m in load(r["id"], "metrics")]
if len(loss) != len(want): fails.append(f"loss.csv: {len(loss)} rows, metrics.jsonl {len(want)}")
for row, (s, l) in zip(loss, want):
    if float(row["step"]) != s or abs(float(row["loss"]) - l) > 1e-9: fails.append("loss.csv differs"); break

# PNGs: the size each script asks for, and a real drawing
def drawn(path, size):
    im = Image.open(path).convert("RGB")
    if im.size != size: return f"size {im.size} != {size}"
    a = np.asarray(im).reshape(-1, 3)
    colours = len(np.unique(a, axis=0))
    ink = (a.min(axis=1) < 200).mean()
    if colours < 8 or ink < 0.01: return f"blank: {colours} colours, {ink:.3%} ink"
    return None
sizes = {"shares": (1000, 450), "grid": (800, 600)}
pngs = sorted(glob.glob(f"{out}/*.png"))
names = {os.path.basename(p)[:-4] for p in pngs}
for need in ("vqa", "existence", "paired", "ranking", "mix", "shares", "loss"):
    if need not in names: fails.append(f"{need}.png missing")
    if not os.path.exists(f"{out}/{need}.gp"): fails.append(f"{need}.gp missing")
for p in pngs:
    why = drawn(p, sizes.get(os.path.basename(p)[:-4], (900, 500)))
    if why: fails.append(f"{p}: {why}")
Image.new("RGB", (900, 500), "white").save(f"{out}/blank.png")
if drawn(f"{out}/blank.png", (900, 500)) is None: fails.append("negative control: a blank PNG passed")
print("\n".join(fails) if fails else f"report numbers and {len(pngs)} PNGs check out")
sys.exit(1 if fails else 0)
PY

# A reasoning x visual grid (six runs made from the fixture's first run, a share of its
# VQA answers flipped per cell): shares.csv holds each cell's overall VQA, grid.png is drawn.
$py - "$fixture" "$tmp/grid" <<'PY'
import json, os, shutil, sys
import numpy as np
fx, out = sys.argv[1], sys.argv[2]
first = json.loads(open(f"{fx}/results.jsonl").readline())["id"]
rows = []
for a, r in enumerate((0.5, 0.6, 0.7)):
    for b, v in enumerate((0.1, 0.2)):
        rid = f"grid{a}{b}"
        d = f"{out}/collected/{rid}/eval"
        os.makedirs(d)
        shutil.copy(f"{fx}/collected/{first}/eval/results.jsonl", d)
        rng = np.random.default_rng(10 * a + b)
        with open(f"{d}/predictions.jsonl", "w") as f:
            for line in open(f"{fx}/collected/{first}/eval/predictions.jsonl"):
                p = json.loads(line)
                if p["kind"] == "vqa" and rng.random() < 0.1 * (a + b):
                    p["correct"] = 1.0 - p["correct"]
                f.write(json.dumps(p) + "\n")
        rows.append({"index": len(rows), "id": rid, "axes": {"data.reasoning_share": r, "data.visual_share": v}})
open(f"{out}/results.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in rows))
open(f"{out}/runs.tsv", "w").write("# index\tid\n")
PY
"$bin" report "$tmp/grid" --out "$tmp/grid/report" > /dev/null
$py - "$tmp/grid" <<'PY'
import csv, json, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
CATS = ["General", "Knowledge", "OCR & Chart", "Vision-Centric"]
got = {(float(r["reasoning_share"]), float(r["visual_share"])): float(r["vqa_overall"])
       for r in csv.DictReader(open(f"{d}/report/shares.csv"))}
fails = []
for run in map(json.loads, open(f"{d}/results.jsonl")):
    p = [json.loads(l) for l in open(f"{d}/collected/{run['id']}/eval/predictions.jsonl")]
    want = 100 * np.mean([np.mean([q["correct"] for q in p if q.get("item_category") == c]) for c in CATS])
    key = (100 * run["axes"]["data.reasoning_share"], 100 * run["axes"]["data.visual_share"])
    if abs(got.get(key, -1) - want) > 1e-6: fails.append(f"shares.csv {key}: {got.get(key)} != {want}")
im = np.asarray(Image.open(f"{d}/report/grid.png").convert("RGB"))
if im.shape[:2] != (600, 800): fails.append(f"grid.png is {im.shape}")
if len(np.unique(im.reshape(-1, 3), axis=0)) < 20: fails.append("grid.png: too few colours for a heatmap")
# the two-axis plot: overall VQA against the reasoning share, a line per visual share
ax = list(csv.DictReader(open(f"{d}/report/axes.csv")))
if len(ax) != 6: fails.append(f"axes.csv has {len(ax)} rows")
for r in ax:
    key = (100 * float(r["x"]), 100 * float(r["series"]))
    if abs(float(r["value"]) - got[key]) > 1e-6: fails.append(f"axes.csv {key}: {r['value']} != {got[key]}")
if Image.open(f"{d}/report/axes.png").size != (900, 500): fails.append("axes.png size")
print("\n".join(fails) or "grid: 6 cells in shares.csv and axes.csv, a heatmap and a two-axis plot")
sys.exit(1 if fails else 0)
PY

# a user can redraw a plot from its CSV
(cd "$tmp/out" && gnuplot -e "out='again.png'" vqa.gp && test -s again.png)

# Bad inputs are named.
expect_error() { # what, pattern, dir
    if "$bin" report "$3" --out "$tmp/bad" > /dev/null 2> "$tmp/err"; then echo "FAIL: $1 accepted"; exit 1; fi
    grep -q -- "$2" "$tmp/err" || { echo "FAIL: $1: message lacks '$2':"; cat "$tmp/err"; exit 1; }
    ! test -e "$tmp/bad/report.md" || { echo "FAIL: $1: report.md written anyway"; exit 1; }
    echo "ok: $1: $(cat "$tmp/err")"
}
fresh() { rm -rf "$tmp/s" "$tmp/bad"; cp -r "$fixture" "$tmp/s"; }
first=$(sed -n '1s/.*"id": "\([0-9a-f]*\)".*/\1/p' "$fixture/results.jsonl")
run=$tmp/s/collected/$first/eval

fresh
$py - "$run/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
del rows[2]["value"]
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
expect_error "a results row without a value" "results.jsonl:3: task images-vqa-mc, metric acc: no value" "$tmp/s"

fresh
$py - "$run/predictions.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows[4]["checkpoint_sha256"] = "f" * 64
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
expect_error "predictions of another checkpoint" "predictions.jsonl:5: task images-vqa-mc: checkpoint_sha256 ffff" "$tmp/s"

fresh
$py - "$run/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rows[-1]["checkpoint_sha256"] = "e" * 64
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
expect_error "results of two models in one file" "results of two models in one file" "$tmp/s"

fresh
$py - "$run/predictions.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
del rows[6]["correct"]
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
expect_error "predictions without correct flags" "predictions.jsonl:7: task images-vqa-mc, item v0-6: no 'correct'" "$tmp/s"

fresh
sed -i '1d' "$run/predictions.jsonl"
expect_error "seeds scored on different items" "seeds scored on different items" "$tmp/s"

# a run not run yet (no files at all) is left out and listed, not an error
fresh
rm -r "${run%/eval}"
"$bin" report "$tmp/s" --out "$tmp/partial" --no-plots > "$tmp/partial.log"
grep -q "1 run without results yet (listed in report.md): data.mixture=mix0 train.seed=1 ($first)" "$tmp/partial.log"
grep -q "Not in this report.*data.mixture=mix0 train.seed=1 ($first)" "$tmp/partial/report.md"
grep -q "^mix0,1," "$tmp/partial/groups.csv"

# the loss curve is pretraining's, though an adapt stage (align/) writes a metrics.jsonl too
fresh
mkdir -p "${run%/eval}/align"
echo '{"step":1,"loss":99.5}' > "${run%/eval}/align/metrics.jsonl"
"$bin" report "$tmp/s" --out "$tmp/align" --no-plots > /dev/null
! grep -q ",99.5$" "$tmp/align/loss.csv" || { echo "FAIL: loss.csv took align/metrics.jsonl"; exit 1; }
test "$(grep -c "^0," "$tmp/align/loss.csv")" = 60

# Display: report.md labels both perplexities; in mix.png no two categories' intervals share
# an x at a mix (gnuplot's own table of what it plots: with the offsets removed from mix.gp
# they do, the negative control); a study whose every existence answer is wrong gets a
# readable 0..10 axis with the zeros drawn (markers in the bars' colours), not 0..1.2.
grep -q "| word perplexity | byte perplexity |" "$tmp/out/report.md" || { echo "FAIL: perplexity columns"; exit 1; }
xs_shared() { # gp file: prints how many (mix, x) positions two categories share
  sed -e 's/^set terminal.*/set table "pts.txt"/' -e '/^set output/d' "$1" >"$tmp/out/table.gp"
  (cd "$tmp/out" && rm -f pts.txt && gnuplot table.gp 2>/dev/null)
  awk '/^#/ || NF < 3 || $3 != "i" { next } { x[sprintf("%.4f", $1)]++ }
       END { s = 0; for (k in x) if (x[k] > 1) s++; print s }' "$tmp/out/pts.txt"
}
shared=$(xs_shared "$tmp/out/mix.gp")
[ "$shared" = 0 ] || { echo "FAIL: mix.png: $shared x positions shared by categories"; exit 1; }
sed 's/(\$1 + dx(c))/1/' "$tmp/out/mix.gp" >"$tmp/out/mix_stacked.gp"
[ "$(xs_shared "$tmp/out/mix_stacked.gp")" -gt 0 ] || { echo "FAIL: negative control: stacked intervals not seen"; exit 1; }
fresh
for p in "$tmp"/s/collected/*/eval/predictions.jsonl; do
  $py - "$p" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["task"] == "images-existence": r["correct"] = 0.0
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
done
"$bin" report "$tmp/s" --out "$tmp/zero" > /dev/null
grep -q '^set yrange \[-0.3:10\]' "$tmp/zero/existence.gp" || { echo "FAIL: all-zero existence axis:"; grep yrange "$tmp/zero/existence.gp"; exit 1; }
$py - "$tmp/zero/existence.png" "$tmp/out/existence.png" <<'PY' || exit 1
import sys
import numpy as np
from PIL import Image
def bar_colour_pixels(path):  # pixels of the first two groups' colours (gnuplot's lc 1, lc 2)
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)[:, :760]  # left of the key
    return sum(int((np.abs(a - c).sum(axis=2) < 60).sum()) for c in ((148, 0, 211), (0, 158, 115)))
n = bar_colour_pixels(sys.argv[1])
if n < 100: sys.exit(f"FAIL: all-zero existence.png shows {n} pixels of the groups' colours")
print(f"ok: all-zero existence.png draws its zeros ({n} pixels in the groups' colours)")
PY

# run dirs instead of a study: each dir is a run of its own
"$bin" report "$fixture/collected/$first" --out "$tmp/one" --no-plots > /dev/null
test -f "$tmp/one/report.md" -a -f "$tmp/one/vqa.csv" -a -f "$tmp/one/vqa.gp" -a ! -e "$tmp/one/vqa.png"
echo "PASS: presight report"
