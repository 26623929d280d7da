#!/usr/bin/env bash
# make bench: presight's training throughput against PyTorch on the same
# machine, threads and BLAS, and against the best sgemm rate of that BLAS.
# Writes bench/results.json and prints a table last.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
threads=${PRESIGHT_THREADS:-$(nproc)}
export PRESIGHT_THREADS=$threads
out=bench/results.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Give PyTorch the BLAS presight picks: torch calls libblas.so.3, which is
# Debian's OpenBLAS; with the same OPENBLAS_CORETYPE it runs the same kernel.
# With PRESIGHT_BLAS=blis, torch gets BLIS's libblas.so.3 instead.
torch_env=(OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads")
case "${PRESIGHT_BLAS:-openblas}" in
  blis) torch_env+=(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/blis-openmp) ;;
  *) if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then torch_env+=(OPENBLAS_CORETYPE=SkylakeX); fi ;;
esac

echo "== sgemm (the BLAS presight loads)"
build/bench/sgemm_bench | tee "$tmp/sgemm.json"
echo "== presight training step, config/bench.cfg"
build/bench/train_bench config/bench.cfg "$@" | tee "$tmp/presight.json"
echo "== PyTorch training step, the same model"
env "${torch_env[@]}" /usr/bin/python3 bench/torch_train.py "$tmp/presight.json" | tee "$tmp/torch.json"

/usr/bin/python3 - "$tmp" "$out" <<'PY'
import json, sys, platform
tmp, out = sys.argv[1], sys.argv[2]
sg = json.load(open(f"{tmp}/sgemm.json"))
ps = json.load(open(f"{tmp}/presight.json"))
pt = json.load(open(f"{tmp}/torch.json"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
res = {
    "machine": f"{cpu}, {ps['threads']} threads",
    "blas": sg["blas"],
    "sgemm_best_gflops": sg["best_gflops"],
    "presight_tokens_per_s": ps["tokens_per_s"],
    "presight_model_gflops": ps["model_gflops"],
    "pytorch_tokens_per_s": pt["tokens_per_s"],
    "pytorch_model_gflops": pt["model_gflops"],
    "params": ps["params"],
    "train_vs_pytorch": ps["tokens_per_s"] / pt["tokens_per_s"],
    "train_flops_vs_sgemm": ps["model_gflops"] / sg["best_gflops"],
    "raw": {"sgemm": sg, "presight": ps, "pytorch": pt},
}
json.dump(res, open(out, "w"), indent=2)
print()
print(f"machine: {res['machine']}; BLAS: {res['blas']}; model: {ps['params']/1e6:.1f}M params, {ps['tokens_per_step']:.0f} tokens/step")
rows = [
    ("presight train", f"{ps['tokens_per_s']:.0f} tok/s", f"{ps['model_gflops']:.1f} GFLOP/s"),
    ("PyTorch train (same model)", f"{pt['tokens_per_s']:.0f} tok/s", f"{pt['model_gflops']:.1f} GFLOP/s"),
    ("best sgemm", "", f"{sg['best_gflops']:.1f} GFLOP/s"),
    ("train_vs_pytorch", f"{res['train_vs_pytorch']:.2f}x", "target >= 1.0 (aim 1.5)"),
    ("train_flops_vs_sgemm", f"{res['train_flops_vs_sgemm']:.2f}", "target >= 0.5"),
]
w = max(len(r[0]) for r in rows)
print(f"{'measure':<{w}}  {'throughput':>14}  {'rate':>24}")
for r in rows:
    print(f"{r[0]:<{w}}  {r[1]:>14}  {r[2]:>24}")
print(f"(written to {out})")
PY
