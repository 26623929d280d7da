#!/usr/bin/env bash
# t_torch_reference - presight against PyTorch, a reference no one here wrote.
#
# For each config in tests/fixtures/reference/*.cfg: build/tests/tools/ref_dump
# runs one forward, backward and AdamW step and writes weights, tokens, logits,
# loss, gradients and the stepped weights to HDF5; tests/reference/
# torch_reference.py rebuilds the model in PyTorch (Meta's llama/model.py
# structure), loads the same weights and checks logits, loss, every gradient
# and the AdamW step to a relative error of 1e-4 (see its docstring for the
# metric). Then a negative control: the reference with deliberately wrong
# RoPE layout, GQA head mapping and norm weight decay must FAIL, so a pass
# above means something. Then the model contract (ref_contract, torch_reference.py
# --contract): projector, image rows, packed samples, frozen decoder,
# log-probabilities, hidden states, KV-cache decoding, with its own negative
# controls.
#
# Exit: 0 all pass, 1 any failure, 77 skip (only when /usr/bin/python3 cannot
# import torch, h5py or numpy).
set -u
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
DUMP=${REF_DUMP:-build/tests/tools/ref_dump}  # REF_DUMP: another build of the tool
REF=tests/reference/torch_reference.py
OUT=build/test-runs/torch_reference

if [ ! -x "$PY" ]; then
  echo "skip: $PY not found (the PyTorch reference needs Debian's python3 with python3-torch and python3-h5py)"
  exit 77
fi
if ! why=$("$PY" -c 'import torch, h5py, numpy' 2>&1); then
  echo "skip: $PY cannot import torch, h5py and numpy (apt-get install python3-torch python3-h5py): $(echo "$why" | tail -n 1)"
  exit 77
fi
if [ ! -x "$DUMP" ]; then
  echo "FAIL: $DUMP is not built (make tests-build)"
  exit 1
fi

mkdir -p "$OUT"
export PRESIGHT_THREADS=${PRESIGHT_THREADS:-2}
failed=() summary=()
for cfg in tests/fixtures/reference/*.cfg; do
  name=$(basename "$cfg" .cfg)
  h5="$OUT/$name.h5"
  echo "=== $name"
  rm -f "$h5"
  if ! "$DUMP" "$cfg" "$h5"; then
    echo "FAIL: $DUMP $cfg $h5 exited non-zero"
    failed+=("$name (ref_dump)")
    continue
  fi
  log="$OUT/$name.log"
  "$PY" "$REF" "$h5" >"$log" 2>&1
  rc=$?
  cat "$log"
  summary+=("$(printf '%-20s %s' "$name" "$(grep -E '^  (logits/loss|grad|update) ' "$log" | awk '{print $1"="$3}' | tr '\n' ' ')")")
  [ $rc -eq 0 ] || failed+=("$name")
done

# Negative control on the first config: each mutation of the reference must be caught.
ctl=tests/fixtures/reference/tiny_gqa_untied.cfg
h5="$OUT/tiny_gqa_untied.h5"
if [ -f "$ctl" ] && [ -f "$h5" ]; then
  echo "=== negative control ($ctl)"
  for mutation in rope_half gqa_modulo decay_norms; do
    "$PY" "$REF" "$h5" --quiet --mutate "$mutation" >"$OUT/mutate_$mutation.log" 2>&1
    rc=$?
    if [ $rc -eq 1 ]; then
      echo "  ok: --mutate $mutation is detected: $(grep '^FAIL' "$OUT/mutate_$mutation.log")"
    else
      echo "  FAIL: the reference with --mutate $mutation exited $rc instead of 1: the check is not sensitive to it"
      tail -n 5 "$OUT/mutate_$mutation.log" | sed 's/^/    /'
      failed+=("negative control $mutation")
    fi
  done
fi

# The model contract (issue 10): image rows from a projector into a frozen
# decoder, packed samples with their own positions, padding, per-row
# log-probabilities, pooled hidden states and KV-cache greedy decoding.
CONTRACT=${REF_CONTRACT:-build/tests/tools/ref_contract}
for name in tiny_gqa_untied small_mha_tied; do
  cfg=tests/fixtures/reference/$name.cfg
  h5="$OUT/contract_$name.h5"
  echo "=== contract $name"
  rm -f "$h5"
  if ! "$CONTRACT" "$cfg" "$h5"; then
    failed+=("contract $name (ref_contract)")
    continue
  fi
  "$PY" "$REF" --contract "$h5" >"$OUT/contract_$name.log" 2>&1
  rc=$?
  cat "$OUT/contract_$name.log"
  [ $rc -eq 0 ] || failed+=("contract $name")
done
h5="$OUT/contract_tiny_gqa_untied.h5"
if [ -f "$h5" ]; then
  echo "=== negative control (contract)"
  for mutation in positions_global no_sample_mask gelu_tanh cache_stale; do
    "$PY" "$REF" --contract "$h5" --mutate "$mutation" >"$OUT/contract_mutate_$mutation.log" 2>&1
    rc=$?
    if [ $rc -eq 1 ]; then
      echo "  ok: --contract --mutate $mutation is detected: $(grep '^FAIL' "$OUT/contract_mutate_$mutation.log" | cut -c1-160)"
    else
      echo "  FAIL: --contract --mutate $mutation exited $rc instead of 1: the check is not sensitive to it"
      failed+=("contract negative control $mutation")
    fi
  done
fi

echo
echo "worst normwise relative error per config (presight vs torch float64):"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: ${failed[*]}"
  exit 1
fi
echo "PASS: all configs agree with PyTorch"
exit 0
