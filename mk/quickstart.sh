#!/usr/bin/env bash
# make quickstart: the default corpora (built, tokenized and labelled by
# `make quickstart-data`, cached) -> the realised shares of mix6 -> a
# two-run mini-study, mix0 vs mix6, trained one after another on this
# machine -> the collected table. A rerun resumes or skips finished runs;
# `rm -rf runs/quickstart-study` starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
bin=build/presight
echo "== the mixture: mix6 over the default corpora (realised shares of 100k sequences)"
$bin data mix config/quickstart.cfg --sequences 100000
echo
echo "== the mini-study: mix0 vs mix6"
$bin study run config/studies/quickstart.cfg --local "$@"
echo
echo "== the loss of each run (uniform guess over 8192 ids: $(awk 'BEGIN{printf "%.2f", log(8192)}'))"
while IFS=$'\t' read -r index id dir overrides; do
  case "$index" in ''|\#*|index) continue ;; esac
  m="runs/quickstart-study/$dir/pretrain/metrics.jsonl"
  [ -f "$m" ] || continue
  loss() { sed -n "${1}p" "$m" | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
  printf '  %-14s %-28s step 1: %.3f  step %d: %.3f  step %d: %.3f\n' "$id" "$overrides" "$(loss 1)" \
    "$(( $(wc -l <"$m") / 2 ))" "$(loss $(( $(wc -l <"$m") / 2 )))" "$(wc -l <"$m")" "$(loss '$')"
done <runs/quickstart-study/runs.tsv
