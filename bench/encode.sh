#!/usr/bin/env bash
# bench/encode.sh TMPDIR - the vision encoder part of make bench: presight's
# MobileNetV2-1.4 (im2col + the BLAS presight loads; depthwise its own loop)
# next to the same network in PyTorch (Debian's python3-torch, whose
# convolutions are oneDNN 2.6.3 = Debian's libdnnl, built from the same
# converted weights, same threads) and next to TF.js (the reference, node).
# Forward only, batch 1. Writes TMPDIR/encode.json; needs TMPDIR/sgemm.json
# (bench/run.sh writes it first; run here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$1
threads=${PRESIGHT_THREADS:-$(nproc)}
weights=data/encoders/mobilenet_v2_mid.h5
[ -f "$tmp/sgemm.json" ] || PRESIGHT_THREADS=$threads build/bench/sgemm_bench >"$tmp/sgemm.json"
PRESIGHT_THREADS=$threads build/bench/encode_bench $weights 30 | tee "$tmp/enc_presight.json"
OMP_NUM_THREADS=$threads /usr/bin/python3 bench/torch_encoder.py $weights 30 | tee "$tmp/enc_torch.json"
node datasets/tools/encoder_golden.js data/encoders/npm/node_modules/nsfwjs/dist/models/mobilenet_v2_mid - - --bench 3 \
  2>/dev/null | grep images_per_s | tee "$tmp/enc_tfjs.json"
/usr/bin/python3 - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
p, q, j, s = (json.load(open(f"{t}/{n}.json")) for n in ("enc_presight", "enc_torch", "enc_tfjs", "sgemm"))
res = {
    "encode_images_per_s": p["images_per_s"],
    "encode_pytorch_images_per_s": q["images_per_s"],
    "encode_tfjs_images_per_s": j["images_per_s"],
    "encode_vs_pytorch": p["images_per_s"] / q["images_per_s"],
    "encode_vs_tfjs": p["images_per_s"] / j["images_per_s"],
    "encode_gflops": p["gflops"],
    "encode_conv_gflops": p["conv_gflops"],
    "encode_conv_vs_sgemm": p["conv_gflops"] / s["best_gflops"],
    "encode_depthwise_gflops": p["depthwise_gflops"],
    # oneDNN (inside PyTorch) vs im2col + BLAS: milliseconds per image in the convolutions
    "encode_presight_conv_ms": p["conv_ms"] + p["depthwise_ms"],
    "encode_onednn_conv_ms": q["onednn_conv_ms"],
    "encode_onednn_conv_calls": f'{q["onednn_conv_calls"]} of {q["convs"]}',
    "encode_raw": {"presight": p, "pytorch": q, "tfjs": j},
}
json.dump(res, open(f"{t}/encode.json", "w"), indent=1)
PY
