#!/usr/bin/env bash
# make quickstart: the default corpora and image sets (built by `make
# quickstart-data`, cached) -> the realised shares of mix6 -> the whole study
# in miniature, mix0 vs mix6, each  pretrain -> encode -> align -> sft ->
# eval  one after another on this machine (config/studies/quickstart-full.cfg),
# every stage's progress line shown live (-v) -> the collected table ->
# `presight report` (report.md, CSV, PNG; the summary table and the paths
# printed last). A rerun resumes or skips finished stages; `rm -rf
# runs/quickstart-full` starts afresh. QUICKSTART_STUDY=config/studies/
# quickstart.cfg runs the older pretraining-only mini-study.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
bin=build/presight
echo "== the mixture: mix6 over the default corpora (realised shares of 100k sequences)"
$bin data mix config/quickstart.cfg --sequences 100000
echo
study=${QUICKSTART_STUDY:-config/studies/quickstart-full.cfg}
study_dir=$(sed -n 's/^dir *= *"\(.*\)";.*/\1/p' "$study")
echo "== the mini-study: mix0 vs mix6 ($study): pretrain -> encode -> align -> sft -> eval per run"
$bin study run "$study" --local -v "$@"
echo
echo "== the loss of each run (uniform guess over 8192 ids: $(awk 'BEGIN{printf "%.2f", log(8192)}'))"
while IFS=$'\t' read -r index id dir overrides; do
  case "$index" in ''|\#*|index) continue ;; esac
  m="$study_dir/$dir/pretrain/metrics.jsonl"
  [ -f "$m" ] || continue
  loss() { sed -n "${1}p" "$m" | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
  printf '  %-14s %-28s step 1: %.3f  step %d: %.3f  step %d: %.3f\n' "$id" "$overrides" "$(loss 1)" \
    "$(( $(wc -l <"$m") / 2 ))" "$(loss $(( $(wc -l <"$m") / 2 )))" "$(wc -l <"$m")" "$(loss '$')"
done <"$study_dir/runs.tsv"
echo
echo "== the report (VQA and existence scored as the paper does: the generated answer, parsed)"
$bin report "$study_dir" --out "$study_dir/report"
echo
echo "== the same, each item scored by its option letters' log-likelihoods (a model this small"
echo "   rarely answers in words; lm-eval's way of asking it)"
$bin report "$study_dir" --vqa letter --out "$study_dir/report-letter"
