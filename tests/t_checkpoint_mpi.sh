#!/usr/bin/env bash
# t_checkpoint_mpi - checkpoints written by N ranks load on M ranks.
#
# build/tests/tools/ckpt_tool fills each rank's slices with a deterministic
# value(group, tensor, index) and writes a checkpoint collectively; reading
# checks every element bitwise, that nothing past a slice was touched, the
# /state fields and the config text (see the tool's header).
#   * two models with awkward unit sizes: "uneven" (units of 370, 470, 470 and
#     380 elements: slices end mid-row and mid-tensor for 2, 3 and 4 ranks) and
#     "tiny" (a 6-element last unit: with 4 ranks rank 3's slice is padding only);
#   * written with N = 1, 2, 3, 4 ranks, each file read with M = 1, 2, 3, 4 ranks
#     (all 16 pairs per model);
#   * hybrid-like views: 2 and 4 ranks as two replica groups, the second with
#     writer = 0, written and read back that way and read by plain layouts;
#   * fallback under MPI: the newest checkpoint truncated, 3 ranks load the previous;
#   * every file read by h5py (tests/reference/check_checkpoint.py, Debian's
#     /usr/bin/python3): layout, shapes, dtypes, /state, the checksum recomputed
#     with numpy and every value recomputed from the tool's formula.
# Exit: 0 pass, 1 fail, 77 skip (no mpirun). The h5py part is skipped, with a
# note, when /usr/bin/python3 lacks h5py or numpy.
set -u
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=${PRESIGHT_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

TOOL=build/tests/tools/ckpt_tool
PY=/usr/bin/python3
OUT=build/test-runs/checkpoint_mpi
if ! command -v mpirun >/dev/null; then
  echo "skip: mpirun not found (apt-get install openmpi-bin)"
  exit 77
fi
if [ ! -x "$TOOL" ]; then
  echo "FAIL: $TOOL is not built (make tests-build)"
  exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"
failed=()
run() { # label, then mpirun arguments
  local label=$1; shift
  local log="$OUT/$(echo "$label" | tr ' /=' '___').log"
  if mpirun "$@" >"$log" 2>&1; then
    echo "  ok    $label$(grep -q '^ok ' "$log" && echo " ($(grep -c '^ok ' "$log") files checked)")"
  else
    echo "  FAIL  $label (log: $log)"
    sed 's/^/        /' "$log" | tail -n 15
    failed+=("$label")
  fi
}

start=$SECONDS
echo "== write with N ranks"
for model in uneven tiny; do
  for n in 1 2 3 4; do
    run "$model write N=$n" -np $n "$TOOL" write $model "$OUT/$model/n$n" $((100 + n))
  done
done
run "uneven write N=2 hybrid (1 writer + 1 replica)" -np 2 "$TOOL" write uneven "$OUT/uneven/h2" 202 --hybrid
run "tiny write N=4 hybrid (2 writers + 2 replicas)" -np 4 "$TOOL" write tiny "$OUT/tiny/h4" 204 --hybrid

log="$OUT/all_writers.log"
if mpirun -np 4 "$TOOL" write tiny "$OUT/all_writers" 300 --all-writers >"$log" 2>&1; then
  echo "  FAIL  replicas marked writer = 1 (each element written twice) were not refused"
  failed+=("all-writers")
elif grep -q "exactly one writer rank" "$log" && ! ls "$OUT"/all_writers/step_* >/dev/null 2>&1; then
  echo "  ok    replicas marked writer = 1 are refused: $(grep -o 'the slices of the ranks.*elements, the model has [0-9]*' "$log" | head -n 1)"
else
  echo "  FAIL  --all-writers failed for another reason, or left a file:"
  tail -n 5 "$log" | sed 's/^/        /'
  failed+=("all-writers")
fi

echo "== read with M ranks (every file, so every (N, M) pair)"
for model in uneven tiny; do
  for m in 1 2 3 4; do
    run "$model read M=$m" -np $m "$TOOL" read $model "$OUT"/$model/*/step_*.h5
  done
done
run "uneven read M=2 hybrid" -np 2 "$TOOL" read uneven --hybrid "$OUT"/uneven/*/step_*.h5
run "tiny read M=4 hybrid" -np 4 "$TOOL" read tiny --hybrid "$OUT"/tiny/*/step_*.h5

echo "== fallback on 3 ranks: the newest checkpoint is truncated"
fb="$OUT/fallback"
mkdir -p "$fb"
cp "$OUT/uneven/n2/step_00000102.h5" "$OUT/uneven/n4/step_00000104.h5" "$fb/"
truncate -s 4096 "$fb/step_00000104.h5"
run "uneven latest M=3 after truncation" -np 3 "$TOOL" latest uneven "$fb"
log="$OUT/uneven_latest_M_3_after_truncation.log"
if ! grep -q "step_00000104.h5 is unusable" "$log" || ! grep -q "^loaded $fb/step_00000102.h5" "$log"; then
  echo "  FAIL  the truncated step 104 was not reported, or step 102 not loaded:"
  sed 's/^/        /' "$log"
  failed+=("fallback")
fi

echo "== h5py reads every file"
if ! why=$("$PY" -c 'import h5py, numpy' 2>&1); then
  echo "  note: skipped, $PY cannot import h5py and numpy (apt-get install python3-h5py): $(echo "$why" | tail -n 1)"
else
  if "$PY" tests/reference/check_checkpoint.py "$OUT"/uneven/*/step_*.h5 --values ckpt_tool \
       --vocab 37 --dim 10 --layers 2 --heads 5 --kv-heads 1 --ffn 7 >"$OUT/h5py_uneven.log" 2>&1 &&
     "$PY" tests/reference/check_checkpoint.py "$OUT"/tiny/*/step_*.h5 --values ckpt_tool --tied \
       --vocab 11 --dim 6 --layers 1 --heads 3 --kv-heads 3 --ffn 5 >"$OUT/h5py_tiny.log" 2>&1; then
    echo "  ok    $(cat "$OUT"/h5py_*.log | grep -c '^ok ') files read by h5py; layout of one:"
    awk '/\/state:/ { on = 1 } NR <= 4 || on { print } /checksum .* matches/ { exit }' "$OUT/h5py_tiny.log" |
      sed 's/^/        /'
  else
    echo "  FAIL  h5py check (logs: $OUT/h5py_*.log)"
    grep -h FAIL "$OUT"/h5py_*.log | head -n 20 | sed 's/^/        /'
    failed+=("h5py")
  fi

  # Order independence: every file of a model, whoever wrote it, has one checksum.
  for model in uneven tiny; do
    sums=$(grep -ho 'checksum [0-9a-f]* matches' "$OUT/h5py_$model.log" | sort -u | wc -l)
    if [ "$sums" -eq 1 ]; then
      echo "  ok    $model: one checksum for all $(grep -c '^ok ' "$OUT/h5py_$model.log") files (N = 1-4, hybrid)"
    else
      echo "  FAIL  $model: $sums different checksums over files holding the same values"
      failed+=("checksum order independence")
    fi
  done

  # Negative control: one byte of /optim/v/output.weight flipped (found with h5py)
  # must fail the checksum summed over 3 ranks.
  bad="$OUT/corrupt/step_00000103.h5"
  mkdir -p "$OUT/corrupt"
  cp "$OUT/uneven/n3/step_00000103.h5" "$bad"
  "$PY" - "$bad" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    at = f["/optim/v/output.weight"].id.get_offset() + 4 * 200 + 2
with open(sys.argv[1], "r+b") as fp:
    fp.seek(at)
    b = fp.read(1)
    fp.seek(at)
    fp.write(bytes([b[0] ^ 0x04]))
PYEOF
  log="$OUT/corrupt.log"
  if mpirun -np 3 "$TOOL" read uneven "$bad" >"$log" 2>&1; then
    echo "  FAIL  a flipped byte in $bad was not detected"
    failed+=("negative control")
  elif grep -q "checksum mismatch.*corrupt" "$log"; then
    echo "  ok    negative control: $(grep -o 'checksum mismatch.*' "$log" | head -n 1)"
  else
    echo "  FAIL  the flipped byte failed the read, but not as a checksum mismatch:"
    sed 's/^/        /' "$log" | tail -n 5
    failed+=("negative control")
  fi
fi

echo
echo "took $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAIL: ${failed[*]}"
  exit 1
fi
echo "PASS: checkpoints move between 1-4 ranks, replicas and h5py"
exit 0
