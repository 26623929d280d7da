#!/usr/bin/env bash
# A disk that fills during a checkpoint loses nothing: the write is refused
# before any data goes out (the checkpoint's blocks are reserved first), the
# error names the file and the cause, the job exits instead of crashing, the
# previous checkpoint stays whole, and once there is room the run resumes from
# it and follows the trajectory of a run that never stopped; a disk that fills
# under metrics.jsonl stops the run with the reason. The full disk is a
# real one: a small tmpfs in the test's own mount namespace (unshare -m).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
unshare -m true 2>/dev/null || { echo "skip: no mount namespaces here (unshare -m needs root)"; exit 77; }

args=(config/tiny.cfg train.steps=20 checkpoint.every_steps=5 checkpoint.keep=2)
$bin train "${args[@]}" run.dir="$tmp/ref" >"$tmp/ref.log" 2>&1 || { cat "$tmp/ref.log"; fail "reference run"; }

# The tiny model's checkpoint takes about 1.7 MB of a 3 MB disk: the first fits, the second does not.
cat >"$tmp/full.sh" <<SCRIPT
set -u
mkdir -p "$tmp/disk"
mount -t tmpfs -o size=3M tmpfs "$tmp/disk"
$bin train ${args[*]} run.dir="$tmp/disk/run" >"$tmp/full.log" 2>&1
echo \$? >"$tmp/full.rc"
ls "$tmp/disk/run/checkpoints" >"$tmp/full.ls"
mount -o remount,size=64M "$tmp/disk"       # room again: the same run resumes
$bin train ${args[*]} run.dir="$tmp/disk/run" >"$tmp/resume.log" 2>&1
echo \$? >"$tmp/resume.rc"
cp "$tmp/disk/run/metrics.jsonl" "$tmp/resumed.jsonl"
umount "$tmp/disk"
SCRIPT
unshare -m bash "$tmp/full.sh"

rc=$(cat "$tmp/full.rc")
[ "$rc" -ne 0 ] || { cat "$tmp/full.log"; fail "a full disk went unnoticed"; }
[ "$rc" -lt 128 ] || { cat "$tmp/full.log"; fail "crashed on a full disk (exit $rc)"; }
grep -q "step_00000010.h5.tmp: cannot reserve .*No space left on device" "$tmp/full.log" ||
  { cat "$tmp/full.log"; fail "the error does not name the file and the cause"; }
[ "$(cat "$tmp/full.ls")" = "step_00000005.h5" ] || { cat "$tmp/full.ls"; fail "checkpoints after the failure"; }
[ "$(cat "$tmp/resume.rc")" -eq 0 ] || { cat "$tmp/resume.log"; fail "the run does not resume once there is room"; }
grep -q "resum" "$tmp/resume.log" || { cat "$tmp/resume.log"; fail "the second run did not resume"; }
losses() { sed 's/.*"loss":\([^,]*\).*/\1/' "$1"; }
cmp <(losses "$tmp/ref/metrics.jsonl") <(losses "$tmp/resumed.jsonl") || fail "the resumed trajectory differs"
echo "disk full at step 10: refused and named, step 5 kept, resumed bit-identically"

# A disk that fills under metrics.jsonl stops the run with the reason instead of training on
# with a record full of holes; with room again the run completes, its record whole.
margs=(config/tiny.cfg train.steps=200 checkpoint.every_steps=0 train.log_every=100)
$bin train "${margs[@]}" run.dir="$tmp/mref" >"$tmp/mref.log" 2>&1 || { cat "$tmp/mref.log"; fail "metrics reference run"; }
cat >"$tmp/metrics.sh" <<SCRIPT
set -u
mkdir -p "$tmp/mdisk"
mount -t tmpfs -o size=16k tmpfs "$tmp/mdisk"     # config.cfg and about 60 metrics lines fit
$bin train ${margs[*]} run.dir="$tmp/mdisk/run" >"$tmp/mfull.log" 2>&1
echo \$? >"$tmp/mfull.rc"
mount -o remount,size=64M "$tmp/mdisk"
$bin train ${margs[*]} run.dir="$tmp/mdisk/run" >"$tmp/mresume.log" 2>&1
echo \$? >"$tmp/mresume.rc"
cp "$tmp/mdisk/run/metrics.jsonl" "$tmp/mresumed.jsonl"
umount "$tmp/mdisk"
SCRIPT
unshare -m bash "$tmp/metrics.sh"
rc=$(cat "$tmp/mfull.rc")
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || { cat "$tmp/mfull.log"; fail "a full disk under metrics.jsonl: exit $rc"; }
grep -q "metrics.jsonl: writing step [0-9]* failed: No space left on device" "$tmp/mfull.log" ||
  { cat "$tmp/mfull.log"; fail "the metrics failure is not named"; }
[ "$(cat "$tmp/mresume.rc")" -eq 0 ] || { cat "$tmp/mresume.log"; fail "no completion once there is room"; }
cmp <(losses "$tmp/mref/metrics.jsonl") <(losses "$tmp/mresumed.jsonl") || fail "the completed run's metrics differ"
echo "disk full under metrics.jsonl: stopped and named; completed once there is room, record whole"
