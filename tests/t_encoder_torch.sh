#!/usr/bin/env bash
# PyTorch as a second reference for the encoder path (skipped without
# python3-torch):
#  - bench/torch_encoder.py's MobileNetV2 (built from presight's weights file,
#    preprocessing with F.interpolate(align_corners=True)) reproduces the
#    TF.js golden grid of chelsea: a check that the benchmark's peer computes
#    the same network;
#  - reading features back at 576 visual tokens (Cambrian's) equals
#    F.interpolate(bilinear, align_corners=False) of the stored 7x7 grid.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
pics=data/encoders/skimage/usr/lib/python3/dist-packages/skimage/data
$PY -c 'import torch, h5py, PIL' 2>/dev/null || { echo "skip: python3-torch, -h5py or -pil missing (make deps)"; exit 77; }
[ -f data/encoders/mobilenet_v2_mid.h5 ] || { echo "skip: encoder data missing (make test-data)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PRESIGHT_THREADS=2 OMP_NUM_THREADS=2
printf 'chelsea\t%s\n' "$PWD/$pics/chelsea.png" >"$tmp/one.txt"
echo "encode = { images = \"$tmp/one.txt\"; out_dir = \"$tmp\"; float16 = false; };" >"$tmp/enc.cfg"
build/presight encode "$tmp/enc.cfg" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
build/tests/tools/features_tokens "$tmp/mobilenet_v2_mid/one.h5" 0 576 "$tmp/t576.f32"
$PY - "$pics/chelsea.png" "$tmp" <<'PY'
import sys, numpy as np, torch, torch.nn.functional as F, h5py
from PIL import Image
sys.argv = ["torch_encoder.py", "data/encoders/mobilenet_v2_mid.h5"] + sys.argv[1:]
exec(open("bench/torch_encoder.py").read().replace("\nmain()\n", "\n"))
ops, size = load(sys.argv[1])
img = np.array(Image.open(sys.argv[2]).convert("RGB"))
x = torch.from_numpy((img / 255.0).astype(np.float32)).permute(2, 0, 1)[None]
x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True) * 2 - 1
with torch.no_grad():
    t = forward(ops, x)["MobilenetV2/Conv_1/Relu6"][0].permute(1, 2, 0).numpy()
g = np.fromfile("tests/fixtures/encoders/mobilenet_v2_mid/grid_chelsea_Conv_1.f32", "<f4").reshape(7, 7, 1792)
rel = np.linalg.norm(t - g) / np.linalg.norm(g)
print(f"PyTorch port vs TF.js golden grid: rel {rel:.2e}")
assert rel <= 1e-4, rel
grid = torch.from_numpy(h5py.File(f"{sys.argv[3]}/mobilenet_v2_mid/one.h5")["features"][0]).reshape(1, 7, 7, -1).permute(0, 3, 1, 2)
want = F.interpolate(grid, size=(24, 24), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).reshape(576, -1).numpy()
got = np.fromfile(f"{sys.argv[3]}/t576.f32", "<f4").reshape(576, -1)
err = np.abs(got - want).max() / np.abs(want).max()
print(f"576-token resize vs F.interpolate: max rel {err:.2e}")
assert err <= 1e-6, err
PY
echo "t_encoder_torch: ok"
