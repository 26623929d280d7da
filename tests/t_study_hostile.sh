#!/usr/bin/env bash
# Values that reach a batch script or a shell cannot run anything: a study whose
# axis value and stage argument hold quotes, $( ), backticks, ';' and spaces
# runs through the very batch script SLURM would run (`study run --local`), the
# job receives them literally (it trains on the file so named), and nothing
# they name runs. Tabs and line breaks, and
# words for #SBATCH lines with other characters, are refused with file:line
# before anything is written.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/presight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
work=$tmp/work
mkdir -p "$work"
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; } # a libconfig string literal's inside

# A data file whose name would run commands if any shell evaluated it.
hostile="$tmp/a b 'q' \"dq\" \$(touch PWNED1) \`touch PWNED2\` ;touch PWNED3;.txt"
cp tests/fixtures/text/tiny.txt "$hostile"
{
  echo 'name = "hostile";'
  echo "base = \"$PWD/config/tiny.cfg\";"
  echo "dir = \"$tmp/study\";"
  echo 'set = [ "train.steps=3", "train.log_every=1" ];'
  echo "axes = ( { key = \"data.path\"; values = [ \"$(esc "$hostile")\" ]; } );"
  echo 'stages = ('
  echo '  { name = "pretrain"; command = "train"; resources = { nodes = 1; ranks_per_node = 1; }; },'
  echo '  { name = "again"; command = "train"; depends_on = "pretrain";'
  echo "    args = [ \"{config}\", \"run.dir={dir}\", \"data.path=$(esc "$hostile")\" ];"
  echo '    resources = { nodes = 1; ranks_per_node = 1; }; }'
  echo ');'
} >"$tmp/hostile.cfg"
(cd "$work" && $bin study plan "$tmp/hostile.cfg" >"$tmp/plan.log" 2>&1) || { cat "$tmp/plan.log"; fail "plan"; }
(cd "$work" && $bin study run "$tmp/hostile.cfg" --local >"$tmp/run.log" 2>&1) ||
  { cat "$tmp/run.log" "$tmp"/study/logs/*; fail "run"; }
found=$(find "$tmp" "$PWD" -maxdepth 5 -name 'PWNED*' 2>/dev/null || true)
[ -z "$found" ] || fail "a value ran as a command: $found"
grep -qF "data: $hostile (7000 bytes" "$tmp"/study/logs/pretrain-* ||
  { cat "$tmp"/study/logs/pretrain-*; fail "the axis value did not arrive literally"; }
grep -qF "data: $hostile (7000 bytes" "$tmp"/study/logs/again-* ||
  { cat "$tmp"/study/logs/again-*; fail "the argument did not arrive literally"; }

refused() { # what, axis values, resources, expected message
  {
    echo 'name = "bad";'
    echo "base = \"$PWD/config/tiny.cfg\";"
    echo "dir = \"$tmp/bad\";"
    echo "axes = ( { key = \"data.path\"; values = [ $2 ]; } );"
    echo "stages = ( { name = \"pretrain\"; command = \"train\"; resources = { nodes = 1; $3 }; } );"
  } >"$tmp/bad.cfg"
  if $bin study plan "$tmp/bad.cfg" >"$tmp/bad.log" 2>&1; then fail "$1: accepted"; fi
  grep -qF "$4" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "$1: wrong message"; }
  grep -q "bad.cfg:[0-9]" "$tmp/bad.log" || { cat "$tmp/bad.log"; fail "$1: no file:line"; }
  [ ! -e "$tmp/bad" ] || fail "$1: files written before the refusal"
}
refused "line break in a value" '"x\ny"' '' "tabs and line breaks are not allowed"
refused "tab in a value" '"x\ty"' '' "tabs and line breaks are not allowed"
refused "line break in an sbatch option" '"x"' 'extra = [ "--exclusive\ntouch PWNED6" ];' "tabs and line breaks are not allowed"
refused "command in a partition" '"x"' 'partition = "gpu$(touch)";' "'\$' is not allowed"
refused "backtick in an account" '"x"' 'account = "a`id`";' "'\`' is not allowed"
refused "space in a qos" '"x"' 'qos = "normal high";' "' ' is not allowed"
echo "hostile values: passed literally through the batch script, or refused with file:line"
