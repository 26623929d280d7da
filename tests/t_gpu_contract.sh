#!/usr/bin/env bash
# The GPU engine on the model contract (core/model.h), on the CPU emulator
# build (cuda/emu/, AddressSanitizer + UBSan): build/engine_check_emu
# (cuda/check/engine_check.cu) runs the engine's forward_batch / train_batch
# on a packed batch (two samples per sequence, embedding rows, padding,
# positions restarting per sample) and a plain causal one, with the embedding
# and the first block frozen, under ddp, zero1 and fsdp (tied head), against core/model.c on the
# CPU backend: loss, per-row log-probs, pooled hidden states, d loss / d
# embeds, the trainable units' gradients, frozen units untouched; a negative
# control (the sample ids dropped) must differ; greedy decoding with the KV
# cache on a trained model (tokens, logits; per-row lengths as the negative
# control) and a trainable projector (outputs, gradients). Then presight must
# refuse an engine library of another ABI, naming both numbers. Needs only the host compiler.
# Exit: 0 pass, 1 fail.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
make --no-print-directory build/engine_check_emu >"$log" 2>&1 || { cat "$log"; echo "FAIL: build of the engine check"; exit 1; }
ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 PRESIGHT_THREADS=1 ./build/engine_check_emu >"$log" 2>&1
rc=$?
grep -E '^  (ok|FAIL)|^[a-z]+:$' "$log" | grep -c ok | sed 's/^/checks passed: /'
if [ $rc -ne 0 ]; then
  grep -E 'FAIL|ERROR|emu:|runtime error' "$log" | head -n 40
  tail -n 20 "$log"
  echo "FAIL: engine contract check exited $rc"
  exit 1
fi
tail -n 1 "$log"

# The loader checks the engine's ABI number: a library of another one is
# refused with both numbers (a stand-in engine of the previous ABI, built here).
[ -x build/presight ] || { echo "build/presight not built: the ABI check is not run"; exit 0; }
abi=$(sed -n 's/^#define GPU_ENGINE_ABI \([0-9]*\).*/\1/p' stages/gpu_engine.h)
old=$((abi - 1))
tmp=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$tmp"' EXIT
printf 'struct api { int abi; };\nstatic const struct api old = {%d};\nconst struct api *presight_gpu_engine(void) { return &old; }\n' \
  "$old" >"$tmp/old.c"
cc -shared -fPIC -o "$tmp/libold.so" "$tmp/old.c" || { echo "FAIL: cannot build the stand-in engine"; exit 1; }
out=$(PRESIGHT_CUDA_ENGINE=$tmp/libold.so ./build/presight train config/tiny.cfg run.dir="$tmp/run" run.backend='"cuda"' \
  train.steps=1 2>&1) && { echo "FAIL: an engine of ABI $old was accepted: $out"; exit 1; }
echo "$out" | grep -q "is a GPU engine of ABI $old, but this presight needs ABI $abi" ||
  { echo "FAIL: unclear message for an engine of another ABI: $out"; exit 1; }
echo "engine of another ABI: $(echo "$out" | grep -o "is a GPU engine of ABI $old.*" | head -1)"
