#!/usr/bin/env bash
# make bench: presight's training throughput against PyTorch on the same
# machine, threads and BLAS, and against the best sgemm rate of that BLAS;
# the tokenizer against the npm encoders; ingest; 1 and 2 ranks under ddp
# (and 1 rank x N threads against N ranks x 1 thread: threads_vs_ranks)
# and fsdp with their communication volume; checkpoint write bandwidth.
# Writes bench/results.json and prints a table last.
#
# Environment: PRESIGHT_THREADS (default: all cores); PRESIGHT_SIMD=avx2 with
# OPENBLAS_CORETYPE=Haswell runs presight's kernels and both BLAS users at
# AVX2 width on an AVX-512 machine (an AVX2 proxy; PyTorch then gets
# ATEN_CPU_CAPABILITY=avx2 too); PRESIGHT_BENCH_CORPUS: the text file the
# training benchmarks read (default data/quickstart/corpus.txt, made by
# make bench-data); PRESIGHT_BENCH_OUT: where the JSON goes (default
# bench/results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
threads=${PRESIGHT_THREADS:-$(nproc)}
export PRESIGHT_THREADS=$threads
out=${PRESIGHT_BENCH_OUT:-bench/results.json}
corpus=data.path=${PRESIGHT_BENCH_CORPUS:-data/quickstart/corpus.txt}
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
# The AVX2 proxy: PyTorch's own kernels at AVX2 width too.
if [ "${PRESIGHT_SIMD:-}" = avx2 ]; then torch_env+=(ATEN_CPU_CAPABILITY=avx2); fi

echo "== machine"
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) CPUs;" \
  "flags: $(grep -m1 -ow -E 'sse4_2|avx|avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg); PRESIGHT_SIMD=${PRESIGHT_SIMD:-} OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
load_start=$(cut -d' ' -f1 /proc/loadavg)

echo "== sgemm (the BLAS presight loads)"
build/bench/sgemm_bench config/bench.cfg | tee "$tmp/sgemm.json"
echo "== presight training step, config/bench.cfg"
build/bench/train_bench config/bench.cfg "$corpus" "$@" | tee "$tmp/presight.json"
echo "== PyTorch training step, the same model"
env "${torch_env[@]}" /usr/bin/python3 bench/torch_train.py "$tmp/presight.json" | tee "$tmp/torch.json"

echo "== eval: multiple-choice scoring vs the training forward; decoding with the KV cache vs recompute"
build/bench/eval_bench config/bench.cfg "$corpus" | tee "$tmp/eval.json"

echo "== tokenizer: presight (C) and the npm encoders (node) on the same text, one thread"
build/bench/tokenize_bench build/vocab build/bench/tokenize_mix.txt | tee "$tmp/tok_c.txt"
node datasets/tools/bench_encoders.js build/bench/tokenize_mix.txt | tee "$tmp/tok_js.txt"
echo "== ingest: linux-docs + python-stdlib corpora -> shards, 2 ranks"
start=$(date +%s.%N)
mpirun -np 2 -x PRESIGHT_THREADS=1 build/presight data ingest --source bench --input data/corpora/linux-docs \
  data/corpora/python-stdlib --out "$tmp/shards" --tokenizer build/vocab/bpe-8192.tiktoken --tokenizer-kind plain \
  >"$tmp/ingest.log" 2>&1 || { cat "$tmp/ingest.log"; exit 1; }
end=$(date +%s.%N)
bytes=$(sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' "$tmp/shards/bench/card.json" | head -n 1)
echo "{\"bytes\":$bytes,\"seconds\":$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')}" | tee "$tmp/ingest.json"
echo "== distributed: 1 and 2 ranks (1 thread each), ddp and fsdp, the bench model"
for strategy in ddp fsdp; do
  for np in 1 2; do
    PRESIGHT_THREADS=1 mpirun -np $np build/bench/train_bench config/bench.cfg "$corpus" train.steps=4 \
      train.micro_batch=$((8 / np)) parallel.strategy=$strategy | tee "$tmp/dist-$strategy-$np.json"
  done
done
echo "== threads vs ranks: 1 rank x $threads threads against $threads ranks x 1 thread, the same global batch"
# Issue 18's measure: presight's own threading should keep what MPI ranks keep.
# mpirun binds a lone rank to one core (at most 2 ranks: bind to core), where
# its threads would share that core: --map-by slot:PE=N gives the rank N cores.
PRESIGHT_THREADS=$threads mpirun --map-by "slot:PE=$threads" -np 1 build/bench/train_bench config/bench.cfg "$corpus" \
  train.steps=4 train.micro_batch=$((2 * threads)) | tee "$tmp/tvr-threads.json"
PRESIGHT_THREADS=1 mpirun -np "$threads" build/bench/train_bench config/bench.cfg "$corpus" train.steps=4 \
  train.micro_batch=2 | tee "$tmp/tvr-ranks.json"
echo "== vision encoder: presight MobileNetV2-1.4 vs PyTorch (oneDNN convolutions) vs TF.js, batch 1"
bash bench/encode.sh "$tmp"
echo "== adapt: an align and an sft step against a pretraining step, the bench model"
bash bench/adapt.sh "$tmp"
echo "== checkpoint write vs a plain sequential write of the same bytes, same disk"
mkdir -p build/ckpt-bench
mpirun -np 2 build/tests/tools/ckpt_tool bench 256 build/ckpt-bench 3 | tail -n 1 | tee "$tmp/ckpt.json"
rm -rf build/ckpt-bench

/usr/bin/python3 - "$tmp" "$out" "$load_start" <<'PY'
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
    "sgemm_shapes_gflops": sg["shapes_gflops"],
    "train_flops_vs_sgemm": ps["model_gflops"] / sg["shapes_gflops"],
    "train_flops_vs_sgemm_peak": ps["model_gflops"] / sg["best_gflops"],
    "simd": sg["simd"],
    "load_1min_at_start": float(sys.argv[3]),
    "raw": {"sgemm": sg, "presight": ps, "pytorch": pt},
}

def warm_rates(path, prefix):
    """MB/s 'warm' of the lines starting with prefix (the encoders print one line each)."""
    out = []
    for line in open(path):
        if line.startswith(prefix) and "warm" in line and "4 KiB" not in line:
            out.append(float(line.split("warm")[1].split()[0]))
    return out

c_rate = max(warm_rates(f"{tmp}/tok_c.txt", "presight C cl100k"))
js_rates = warm_rates(f"{tmp}/tok_js.txt", "tiktoken") + warm_rates(f"{tmp}/tok_js.txt", "gpt-tokenizer")
res["tokenize_mb_s"] = c_rate
res["tokenize_best_js_mb_s"] = max(js_rates)
res["tokenize_vs_best_js"] = c_rate / max(js_rates)
ing = json.load(open(f"{tmp}/ingest.json"))
res["ingest_mb_s"] = ing["bytes"] / 1e6 / ing["seconds"]
dist = {f"{st}_{n}": json.load(open(f"{tmp}/dist-{st}-{n}.json")) for st in ("ddp", "fsdp") for n in (1, 2)}
res["distributed"] = {k: {"tokens_per_s": v["tokens_per_s"], "step_s": v["step_s"],
                          "comm_bytes_per_step": v["comm_bytes_per_step"],
                          "comm_theory_per_step": v["comm_theory_per_step"]} for k, v in dist.items()}
res["fsdp_comm_vs_theory"] = dist["fsdp_2"]["comm_bytes_per_step"] / dist["fsdp_2"]["comm_theory_per_step"]
res["ddp_comm_vs_theory"] = dist["ddp_2"]["comm_bytes_per_step"] / dist["ddp_2"]["comm_theory_per_step"]
tvr = {k: json.load(open(f"{tmp}/tvr-{k}.json")) for k in ("threads", "ranks")}
res["threads_vs_ranks"] = tvr["threads"]["tokens_per_s"] / tvr["ranks"]["tokens_per_s"]
res["raw"]["threads_vs_ranks"] = tvr
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
res["cpu_flags"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile") if f in flags]
ck = json.load(open(f"{tmp}/ckpt.json"))
res["ckpt_write_mb_s"] = ck["ckpt_mb_s"]
res["disk_write_mb_s"] = ck["disk_mb_s"]
res["ckpt_write_vs_disk"] = ck["ratio"]
enc = json.load(open(f"{tmp}/encode.json"))
res.update(enc)
ev = json.load(open(f"{tmp}/eval.json"))
res["score_tokens_per_s"] = ev["score_tokens_per_s"]
res["score_vs_forward"] = ev["score_vs_forward"]
res["decode_cache_speedup"] = ev["decode_cache_speedup"]
res["raw"]["eval"] = ev
ad = json.load(open(f"{tmp}/adapt.json"))
res.update(ad)
res["load_1min_at_end"] = float(open("/proc/loadavg").read().split()[0])
json.dump(res, open(out, "w"), indent=2)
print()
print(f"machine: {res['machine']}; flags: {' '.join(res['cpu_flags'])}; BLAS: {res['blas']}; model: {ps['params']/1e6:.1f}M params, {ps['tokens_per_step']:.0f} tokens/step")
print(f"presight kernels: {res['simd']}; load (1 min) {res['load_1min_at_start']:.1f} at start, {res['load_1min_at_end']:.1f} at end")
rows = [
    ("presight train", f"{ps['tokens_per_s']:.0f} tok/s", f"{ps['model_gflops']:.1f} GFLOP/s"),
    ("PyTorch train (same model)", f"{pt['tokens_per_s']:.0f} tok/s", f"{pt['model_gflops']:.1f} GFLOP/s"),
    ("sgemm, the model's GEMM shapes", "", f"{sg['shapes_gflops']:.1f} GFLOP/s"),
    ("sgemm, best square/large", "", f"{sg['best_gflops']:.1f} GFLOP/s"),
    ("train_vs_pytorch", f"{res['train_vs_pytorch']:.2f}x", "target >= 2.2 AVX-512, 1.75 AVX2"),
    ("train_flops_vs_sgemm", f"{res['train_flops_vs_sgemm']:.2f}", f"target >= 0.8; vs peak {res['train_flops_vs_sgemm_peak']:.2f}"),
    ("tokenize (C, cl100k)", f"{c_rate:.1f} MB/s", f"best JS {max(js_rates):.1f} MB/s"),
    ("tokenize_vs_best_js", f"{res['tokenize_vs_best_js']:.2f}x", "target >= 2"),
    ("ingest_mb_s (2 ranks)", f"{res['ingest_mb_s']:.1f} MB/s", "end to end"),
] + [
    (f"{k.replace('_', ' x ')} rank(s)", f"{v['tokens_per_s']:.0f} tok/s", f"{v['step_s']:.2f} s/step")
    for k, v in res["distributed"].items()
] + [
    ("threads_vs_ranks", f"{res['threads_vs_ranks']:.2f}x",
     f"{tvr['threads']['tokens_per_s']:.0f} vs {tvr['ranks']['tokens_per_s']:.0f} tok/s; target >= 1.0"),
    ("fsdp_comm_vs_theory", f"{res['fsdp_comm_vs_theory']:.2f}", "payload / 3 x param bytes"),
    ("ddp_comm_vs_theory", f"{res['ddp_comm_vs_theory']:.2f}", "payload / 2 x param bytes"),
    ("ckpt_write_vs_disk", f"{res['ckpt_write_vs_disk']:.2f}",
     f"{ck['ckpt_mb_s']:.0f} vs {ck['disk_mb_s']:.0f} MB/s; target >= 0.7"),
    ("score_tokens_per_s", f"{ev['score_tokens_per_s']:.0f} tok/s",
     f"train forward {ev['forward_tokens_per_s']:.0f} ({ev['score_vs_forward']:.2f}x)"),
    ("decode_cache_speedup", f"{ev['decode_cache_speedup']:.2f}x",
     f"{ev['decode_cached_tokens_per_s']:.0f} vs {ev['decode_recompute_tokens_per_s']:.0f} tok/s"),
    ("encode_images_per_s", f"{enc['encode_images_per_s']:.1f} img/s", f"PyTorch {enc['encode_pytorch_images_per_s']:.1f}, TF.js {enc['encode_tfjs_images_per_s']:.2f}"),
    ("encode_vs_pytorch", f"{enc['encode_vs_pytorch']:.2f}x", "target >= 1.0 (aim 1.5)"),
    ("encode_conv_vs_sgemm", f"{enc['encode_conv_vs_sgemm']:.2f}", f"GEMM convs {enc['encode_conv_gflops']:.1f} GFLOP/s"),
    ("align_vs_pretrain_step", f"{ad['align_vs_pretrain_step']:.2f}x", f"{ad['adapt_align_tokens_per_s']:.0f} vs {ad['adapt_pretrain_tokens_per_s']:.0f} tok/s"),
    ("sft_vs_pretrain_step", f"{ad['sft_vs_pretrain_step']:.2f}x", f"{ad['adapt_sft_tokens_per_s']:.0f} vs {ad['adapt_pretrain_tokens_per_s']:.0f} tok/s"),
]
w = max(len(r[0]) for r in rows)
print(f"{'measure':<{w}}  {'throughput':>14}  {'rate':>24}")
for r in rows:
    print(f"{r[0]:<{w}}  {r[1]:>14}  {r[2]:>24}")
print(f"(written to {out})")
PY
