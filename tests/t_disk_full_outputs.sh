#!/usr/bin/env bash
# A disk that fills under a features file (`presight encode`), an evaluation's predictions
# and results (`presight eval`), a report (`presight report`), a vocabulary (`presight data
# tokenizer`), token shards (`presight data ingest`), segment labels (`presight data label`)
# or an image set (`presight data images import`) loses nothing: each command first writes
# its output completely on a disk with room, then runs again on the same disk
# filled to the last few KB. The second run must exit with an error (not a crash) that
# names the file and says the disk is full, and leave every earlier complete output byte
# for byte as it was, with no .tmp left behind. The full disk is a real one: a small tmpfs
# in the test's own mount namespace (unshare -m), as in t_disk_full.
set -euo pipefail
cd "$(dirname "$0")/.."
export PRESIGHT_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin=$PWD/build/presight
py=/usr/bin/python3
[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
unshare -m true 2>/dev/null || { echo "skip: no mount namespaces here (unshare -m needs root)"; exit 77; }
$py -c 'import PIL' 2>/dev/null || { echo "skip: python3-pil missing (make deps)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# Inputs, made outside the small disk: four pictures, a tiny trained model and a task.
$py - "$tmp" <<'PY'
import sys
from PIL import Image
for i in range(4):
    Image.new("RGB", (40 + 8 * i, 32), (60 * i, 255 - 50 * i, 90)).save(f"{sys.argv[1]}/pic{i}.png")
PY
for i in 0 1 2 3; do printf 'pic%d\t%s/pic%d.png\n' $i "$tmp" $i; done >"$tmp/pics.txt"
printf 'encode = { images = "%s/pics.txt"; encoder = "patches"; part_size = 2; };\n' "$tmp" >"$tmp/enc.cfg"
$bin train config/tiny.cfg run.dir="$tmp/run" train.steps=4 train.log_every=4 >"$tmp/train.log" 2>&1 ||
  { cat "$tmp/train.log"; fail "training the model to evaluate"; }
$py - "$tmp" <<'PY'
import json, sys
words = open("tests/fixtures/text/tiny.txt").read().split()
with open(f"{sys.argv[1]}/nextword.jsonl", "w") as f:
    for i in range(6):
        k = 40 + 37 * i
        f.write(json.dumps({"ctx": " ".join(words[k - 8:k]), "choices": [words[k], "the", "of"], "label": 0}) + "\n")
PY
cat >"$tmp/nextword.cfg" <<CFG
name = "nextword";  category = "language";  data = "$tmp/nextword.jsonl";
kind = "multiple_choice";  scorer = "acc";
context = "{ctx}";  choices_from = "choices";  label = "label";  label_kind = "index";
CFG

# One case: make the output with room (step 1), fill the disk to its last KB, run again
# (step 2). Run inside the namespace; the exit codes and listings come back in files.
disk=$tmp/disk
case_script() { # name size command... (room left after the fill: $leave KB; $again: another second command)
  local name=$1 size=$2; shift 2
  cat <<SCRIPT
set -u
mkdir -p "$disk"
mount -t tmpfs -o size=$size tmpfs "$disk"
$* >"$tmp/$name-1.log" 2>&1; echo \$? >"$tmp/$name-1.rc"
(cd "$disk" && find . -type f ! -name fill | sort | xargs -r sha256sum) >"$tmp/$name-before.sums"
head -c \$(( (\$(df --output=avail -k "$disk" | tail -n 1) - ${leave:-2}) * 1024 )) /dev/zero >"$disk/fill" 2>/dev/null
${again:-$*} >"$tmp/$name-2.log" 2>&1; echo \$? >"$tmp/$name-2.rc"
(cd "$disk" && sha256sum --quiet -c "$tmp/$name-before.sums") >"$tmp/$name-check.log" 2>&1; echo \$? >"$tmp/$name-check.rc"
find "$disk" -name '*.tmp' >"$tmp/$name-tmp.ls"
umount "$disk"
SCRIPT
}
check_case() { # name what message-regexp
  local name=$1 what=$2 want=$3 rc
  [ "$(cat "$tmp/$name-1.rc")" -eq 0 ] || { cat "$tmp/$name-1.log"; fail "$what: the run with room failed"; }
  [ -s "$tmp/$name-before.sums" ] || fail "$what: the run with room wrote nothing"
  rc=$(cat "$tmp/$name-2.rc")
  [ "$rc" -ne 0 ] || { cat "$tmp/$name-2.log"; fail "$what: a full disk went unnoticed"; }
  [ "$rc" -lt 128 ] || { cat "$tmp/$name-2.log"; fail "$what: crashed on a full disk (exit $rc)"; }
  grep -Eq "$want" "$tmp/$name-2.log" || { cat "$tmp/$name-2.log"; fail "$what: the error does not name the file and the full disk"; }
  [ "$(cat "$tmp/$name-check.rc")" -eq 0 ] || { cat "$tmp/$name-check.log"; fail "$what: an earlier complete output changed"; }
  [ ! -s "$tmp/$name-tmp.ls" ] || { cat "$tmp/$name-tmp.ls"; fail "$what: .tmp files left behind"; }
  echo "disk full under $what: $(grep -Eo "$want" "$tmp/$name-2.log" | head -n 1); $(wc -l <"$tmp/$name-before.sums") earlier files intact"
}

# Features: the disk full at the first part file, then with room for the parts (about 20 KB
# each) but not for the whole file they are assembled into (about 40 KB). Before the fix a
# full disk at H5Fclose crashed the command at exit (HDF5 closing the broken file again).
# encode skips a set whose file is complete, so the second run encodes another list of the
# same pictures (pics2) into the same folder, beside the complete pics.h5 it must not touch.
cp "$tmp/pics.txt" "$tmp/pics2.txt"
sed 's/pics\.txt/pics2.txt/' "$tmp/enc.cfg" >"$tmp/enc2.cfg"
enc_again="$bin encode $tmp/enc2.cfg encode.out_dir=$disk/features"
again=$enc_again case_script encode 1M "$bin" encode "$tmp/enc.cfg" encode.out_dir="$disk/features" >"$tmp/encode.sh"
unshare -m bash "$tmp/encode.sh"
check_case encode "a features file's first part" "$disk/features/patches/pics2\.parts/part_[0-9_]+\.h5\.tmp: [^\"]*No space left on device"
again=$enc_again leave=120 case_script encode-final 1M "$bin" encode "$tmp/enc.cfg" encode.out_dir="$disk/features" >"$tmp/encode-final.sh"
unshare -m bash "$tmp/encode-final.sh"
check_case encode-final "a whole features file" "$disk/features/patches/pics2\.h5\.tmp: [^\"]*No space left on device"

# An evaluation run again on a full disk (it resumes, every item done, and rewrites its files),
# then `presight eval rescore`, which rewrites the results and predictions of an evaluation.
eval_cmd=("$bin" eval "$tmp/run/config.cfg" eval.tasks="$tmp/nextword.cfg" eval.out="$disk/eval" eval.items_per_step=2)
case_script eval 1M "${eval_cmd[@]}" >"$tmp/eval.sh"
unshare -m bash "$tmp/eval.sh"
check_case eval "an evaluation" "$disk/eval/[^ ]+: [^\"]*No space left on device"
rescore=("$bin" eval rescore "$tmp/rescore/predictions.jsonl" predictions_out="$disk/rescored.jsonl" out="$disk/results.jsonl")
mkdir -p "$tmp/rescore" && cp tests/fixtures/eval/predictions.jsonl "$tmp/rescore/"
case_script rescore 1M "${rescore[@]}" >"$tmp/rescore.sh"
unshare -m bash "$tmp/rescore.sh"
check_case rescore "re-scored results and predictions" "$disk/(results|rescored)\.jsonl\.tmp: [^\"]*No space left on device"

case_script report 2M "$bin" report tests/fixtures/report/study --out "$disk/report" --no-plots >"$tmp/report.sh"
unshare -m bash "$tmp/report.sh"
check_case report "a report" "$disk/report/[^ ]+\.tmp: [^\"]*No space left on device"

# A vocabulary trained again over a complete one (`presight data tokenizer --out`): the disk
# full under the training text it copies beside the output, then with room for that text
# (in 4 KB pages) but not for the vocabulary.
tokenizer="$bin data tokenizer --vocab-size 300 --out $disk/v.tiktoken $PWD/tests/fixtures/tokenizer/train.txt"
case_script tokenizer 1M "$tokenizer" >"$tmp/tokenizer.sh"
unshare -m bash "$tmp/tokenizer.sh"
check_case tokenizer "a vocabulary's training text" "$disk/v\.tiktoken\.text\.tmp: [^\"]*No space left on device"
text_kb=$(( ($(wc -c <tests/fixtures/tokenizer/train.txt) + 4095) / 4096 * 4 ))
leave=$((text_kb + 2)) case_script tokenizer-vocab 1M "$tokenizer" >"$tmp/tokenizer-vocab.sh"
unshare -m bash "$tmp/tokenizer-vocab.sh"
check_case tokenizer-vocab "a vocabulary" "$disk/v\.tiktoken\.tmp: [^\"]*No space left on device"

# Token shards: a second source ingested beside a complete one, the disk full at the shard's
# creation, then with room to create it (32 KB of HDF5 metadata reserved) but not for its
# tokens (about 0.4 MB, reserved before HDF5 writes them, at the commit's flush here).
$bin data tokenizer --vocab-size 300 --out "$tmp/v.tiktoken" tests/fixtures/tokenizer/train.txt >"$tmp/tok.log" 2>&1 ||
  { cat "$tmp/tok.log"; fail "training a tokenizer"; }
$py - "$tmp/corpus" <<'PY'
import os, random, sys
rng = random.Random(3)
words = open("tests/fixtures/text/tiny.txt").read().split()
os.makedirs(sys.argv[1])
for i in range(4):
    with open(f"{sys.argv[1]}/doc{i}.txt", "w") as f:
        f.write(" ".join(rng.choice(words) for _ in range(8000)) + "\n")
PY
ingest() { echo "$bin data ingest --source $1 --input $tmp/corpus --out $disk/s --tokenizer $tmp/v.tiktoken --tokenizer-kind plain --chunk-tokens 1024"; }
again=$(ingest b) case_script ingest 3M $(ingest a) >"$tmp/ingest.sh"
unshare -m bash "$tmp/ingest.sh"
check_case ingest "a shard's creation" "$disk/s/b/[^ ]*shard-[0-9]+\.h5\.tmp: [^\"]*No space left on device"
again=$(ingest b) leave=200 case_script ingest-grow 3M $(ingest a) >"$tmp/ingest-grow.sh"
unshare -m bash "$tmp/ingest-grow.sh"
check_case ingest-grow "a shard's tokens" "$disk/s/b/[^ ]*shard-[0-9]+\.h5\.tmp: (needs [0-9.]+ MB more|cannot reserve)[^\"]*No space left on device"

# Segment labels: labelled once with room, then again (with an import of the same labels) on
# the full disk; the earlier labels.h5 and label_rates.tsv stay as they were.
label="$bin data label --shards $disk/s --segment 256"
again="$label" case_script label 3M "$(ingest a) >/dev/null && $label" >"$tmp/label.sh"
unshare -m bash "$tmp/label.sh"
check_case label "segment labels" "$disk/s/a/labels\.h5\.tmp: [^\"]*No space left on device"

# An image set imported beside a complete one (the pixels, the HDF5 file, its task lines).
$py - "$tmp" <<'PY'
import json, sys
from PIL import Image
for i in range(3):
    Image.new("RGB", (64, 48 + 8 * i), (80 * i, 40, 200 - 60 * i)).save(f"{sys.argv[1]}/img{i}.png")
with open(f"{sys.argv[1]}/llava.json", "w") as f:
    json.dump([{"id": f"q{i}", "image": f"img{i}.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour?"},
               {"from": "gpt", "value": "blue"}]} for i in range(3)], f)
PY
import_set() { echo "$bin data images import --format llava --input $tmp/llava.json --images $tmp --out $disk/images --set $1"; }
again=$(import_set b) case_script images 2M $(import_set a) >"$tmp/images.sh"
unshare -m bash "$tmp/images.sh"
check_case images "an image set" "$disk/images/b\.h5[^ ]*\.tmp: [^\"]*No space left on device"
again=$(import_set b) leave=40 case_script images-h5 2M $(import_set a) >"$tmp/images-h5.sh"
unshare -m bash "$tmp/images-h5.sh"
check_case images-h5 "an image set's HDF5 file" "$disk/images/b\.h5[^ ]*\.tmp: [^\"]*No space left on device"
