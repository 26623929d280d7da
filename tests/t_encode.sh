#!/usr/bin/env bash
# presight encode end to end, on real pictures (scikit-image's, from make test-data):
#  - 1 rank and 2 ranks (mpirun) write identical features files;
#  - SIGTERM mid-job: the current part is finished, exit 75; the rerun resumes
#    (keeps the finished parts) and writes the same file as an uninterrupted run;
#  - a truncated JPEG is reported by name, counted, NaN with /valid = 0;
#  - an image HDF5 (the image-sets layout) gives the same rows as the picture files;
#  - the patch-average control encoder writes its own grid;
#  - a foreign features file written with h5py (the README's lines) passes
#    --check, and a damaged one fails naming each problem.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PRESIGHT_THREADS=1
PY=/usr/bin/python3
pics=$PWD/data/encoders/skimage/usr/lib/python3/dist-packages/skimage/data
[ -f data/encoders/mobilenet_v2_mid.h5 ] && [ -d "$pics" ] || { echo "skip: encoder data missing (make test-data)"; exit 77; }
$PY -c 'import h5py' 2>/dev/null || { echo "skip: python3-h5py missing (make deps)"; exit 77; }
bin=build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for f in chelsea coffee camera logo horse green_palette palette_color; do printf '%s\t%s\n' "$f" "$pics/$f.png"; done >"$tmp/pics.txt"
printf 'rocket\t%s\nbroken\t%s\n' "$pics/rocket.jpg" "$pics/truncated.jpg" >>"$tmp/pics.txt"
cat >"$tmp/enc.cfg" <<CFG
encode = { images = "$tmp/pics.txt"; part_size = 2; };
CFG
run() { # out_dir [encode.key=value ...]
  local out=$1; shift
  $bin encode "$tmp/enc.cfg" encode.out_dir="$out" "$@" >"$out.log" 2>&1
}

run "$tmp/one" || { cat "$tmp/one.log"; fail "1-rank run"; }
grep -q "skipping image 'broken'.*truncated.jpg.*corrupt JPEG" "$tmp/one.log" || fail "broken picture not reported by name"
grep -q "9 images, 1 failed" "$tmp/one.log" || fail "failure not counted"
grep -q "images/s.*ETA" "$tmp/one.log" || fail "no progress line"
[ ! -e "$tmp/one/mobilenet_v2_mid/pics.parts" ] || fail "parts left behind"
one=$tmp/one/mobilenet_v2_mid/pics.h5
$PY - "$one" <<'PY' || fail "layout"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1])
assert f["features"].shape == (9, 49, 1792) and f["features"].dtype == np.float16, f["features"]
assert f["features"].chunks == (1, 49, 1792)
assert list(f["ids"].asstr()[:])[-1] == "broken" and list(f["valid"][:]) == [1] * 8 + [0]
assert np.isnan(f["features"][8]).all() and not np.isnan(f["features"][:8]).any()
assert len(f["pooled"]) == 19 and f["pooled/Conv_1"].shape == (9, 1792)
for k in ("encoder", "weights_sha256", "layer", "grid_h", "grid_w", "preprocessing", "set"): assert k in f.attrs, k
PY

mpirun -np 2 $bin encode "$tmp/enc.cfg" encode.out_dir="$tmp/two" >"$tmp/two.log" 2>&1 || { cat "$tmp/two.log"; fail "2-rank run"; }
$PY tests/tools/features_compare.py "$one" "$tmp/two/mobilenet_v2_mid/pics.h5" || fail "1 and 2 ranks differ"

# Stop after the first part is on disk: exit 75, then resume.
$bin encode "$tmp/enc.cfg" encode.out_dir="$tmp/resume" encode.part_size=1 >"$tmp/resume.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  ls "$tmp/resume/mobilenet_v2_mid/pics.parts/"part_*.h5 >/dev/null 2>&1 && break
  sleep 0.1
done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc -eq 75 ] || { cat "$tmp/resume.log"; fail "SIGTERM: exit $rc, expected 75"; }
kept=$(ls "$tmp/resume/mobilenet_v2_mid/pics.parts/" | grep -c '^part_.*\.h5$' || true)
[ "$kept" -ge 1 ] && [ "$kept" -lt 9 ] || fail "after SIGTERM $kept parts kept"
run "$tmp/resume" encode.part_size=1 || { cat "$tmp/resume.log"; fail "resumed run"; }
grep -q "($kept already done)" "$tmp/resume.log" || { cat "$tmp/resume.log"; fail "resume did not keep the $kept parts"; }
$PY tests/tools/features_compare.py "$one" "$tmp/resume/mobilenet_v2_mid/pics.h5" || fail "resumed run (parts of 1) differs"

# The image-sets layout: rocket.jpg's pixels (libjpeg's djpeg) and a PNG's, stored in an image HDF5.
djpeg -ppm "$pics/rocket.jpg" >"$tmp/rocket.ppm"
$PY - "$tmp/rocket.ppm" "$tmp/set.h5" <<'PY'
import sys, h5py, numpy as np
raw = open(sys.argv[1], "rb").read()
_, w, h, _, px = raw.split(maxsplit=4)
img = np.frombuffer(px, np.uint8).reshape(int(h), int(w), 3)
imgs = [img, img[::2, ::3].copy()]
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("pixels", data=np.concatenate([i.ravel() for i in imgs]))
    f.create_dataset("offsets", data=np.cumsum([0] + [i.size for i in imgs[:-1]]).astype(np.uint64))
    f.create_dataset("shapes", data=np.array([i.shape for i in imgs], np.int32))
    f.create_dataset("ids", data=["rocket", "rocket_small"], dtype=h5py.string_dtype())
    f.create_dataset("source", data=["python3-skimage:rocket.jpg", "generated:rocket[::2, ::3]"], dtype=h5py.string_dtype())
    f.attrs.update(format="presight-images", format_version=1, set="settest", seed=np.int64(1))
PY
$bin encode "$tmp/enc.cfg" encode.images="$tmp/set.h5" encode.out_dir="$tmp/h5" encode.float16=false >"$tmp/h5.log" 2>&1 || { cat "$tmp/h5.log"; fail "image HDF5 run"; }
$bin encode "$tmp/enc.cfg" encode.out_dir="$tmp/f32" encode.float16=false >"$tmp/f32.log" 2>&1 || fail "float32 run"
$PY - "$tmp/h5/mobilenet_v2_mid/settest.h5" "$tmp/f32/mobilenet_v2_mid/pics.h5" <<'PY' || fail "image HDF5 rows differ from the picture files"
import sys, h5py, numpy as np
a, b = (h5py.File(p) for p in sys.argv[1:])
assert a["features"].dtype == np.float32 and a.attrs["set"] == "settest"
assert np.array_equal(a["features"][0], b["features"][7])     # rocket: same pixels, same features
assert not np.allclose(a["features"][1], a["features"][0])
PY

# The non-learned control: 7x7 patches of 4x4 RGB cells.
$bin encode "$tmp/enc.cfg" encode.encoder=patches encode.out_dir="$tmp/patches" >"$tmp/patches.log" 2>&1 || { cat "$tmp/patches.log"; fail "patches"; }
$PY -c "
import h5py, sys; f = h5py.File('$tmp/patches/patches/pics.h5')
assert f['features'].shape == (9, 49, 48) and f.attrs['layer'] == 'patches', f['features'].shape" || fail "patches layout"

# A features file from another tool (README lines), then a damaged one.
$PY - "$tmp/foreign.h5" "$tmp/damaged.h5" <<'PY'
import sys, h5py, numpy as np
ids = ["chelsea", "coffee", "camera", "logo", "horse", "green_palette", "palette_color", "rocket", "broken"]
feats = np.random.default_rng(0).standard_normal((len(ids), 256, 1024)).astype(np.float16)  # e.g. DINOv2 16x16 patches
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("features", data=feats, chunks=(1, 256, 1024))
    f.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    f.attrs.update(format="presight-features", format_version=1, encoder="dinov2_vitl14", layer="last", grid_h=16, grid_w=16)
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("features", data=feats.astype(np.int16))
    f.create_dataset("ids", data=ids[:-2] + ["rocket", "rocket"], dtype=h5py.string_dtype())
    f.attrs.update(format="presight-features", format_version=1, grid_h=16, grid_w=15)
PY
$bin encode --check "$tmp/foreign.h5" "$tmp/pics.txt" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log"; fail "foreign file refused"; }
grep -q "ok: 9 images.*dinov2_vitl14.*grid 16x16, width 1024, float16" "$tmp/check.log" || fail "foreign summary"
if $bin encode --check "$tmp/damaged.h5" "$tmp/pics.txt" >"$tmp/bad.log" 2>&1; then fail "damaged file accepted"; fi
for want in "attribute encoder missing" "attribute layer missing" "float16 or float32" "tokens, grid_h x grid_w = 240" \
            "'rocket' appears twice" "image set id 'broken' not in /ids"; do
  grep -q "$want" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "damaged file: '$want' not named"; }
done
# A missing weights file or an altered model package is named, with what to run.
if $bin encode "$tmp/enc.cfg" encode.weights="$tmp/none.h5" encode.out_dir="$tmp/x" >"$tmp/miss.log" 2>&1; then fail "missing weights accepted"; fi
grep -q "make encoder-data.*none.h5: cannot open" "$tmp/miss.log" || { cat "$tmp/miss.log"; fail "missing weights: no hint"; }
model=data/encoders/npm/node_modules/nsfwjs/dist/models/mobilenet_v2_mid
mkdir -p "$tmp/model" && cp "$model"/*.js "$tmp/model/" && printf '\n' >>"$tmp/model/group1-shard2of2.min.js"
sha=$(sed -n 's/^ENC_MNV2_SHA *:= *//p' mk/encoders.mk)
bash datasets/tools/encoder_check.sh "$model" "$sha" || fail "the installed model fails its own SHA-256"
if bash datasets/tools/encoder_check.sh "$tmp/model" "$sha" 2>"$tmp/alt.log"; then fail "altered model accepted"; fi
grep -q "expected $sha.*make encoder-data" "$tmp/alt.log" || { cat "$tmp/alt.log"; fail "altered model: no hint"; }
echo "t_encode: ok"
