#!/usr/bin/env bash
# tests/fuzz/seeds.sh DIR - writes each fuzz target's seed corpus into DIR/<target>/
# from the project's real files and the tests' malformed cases (they are
# copied, so a campaign never edits the repository).
set -euo pipefail
out=$1
seed() { # target files...
  local dir="$out/$1"; shift
  mkdir -p "$dir"
  local f
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "$dir/$(echo "$f" | tr '/' '_')"; done
  return 0
}
# Text: the tokenizer fixtures cut into small pieces (libFuzzer prefers inputs of a few KB).
mkdir -p "$out/fuzz_tokenizer_encode"
split -b 2048 -a 3 tests/fixtures/tokenizer/train.txt "$out/fuzz_tokenizer_encode/train-"
head -c 4096 tests/fixtures/tokenizer/special.tsv >"$out/fuzz_tokenizer_encode/special"
# Vocabulary files: the head of the 8192-token one (its 256 single bytes come first) and the whole
# when it exists; without `make test-data` only the head of nothing, so an empty seed.
mkdir -p "$out/fuzz_tokenizer_file"
vocab=build/vocab/bpe-8192.tiktoken
[ -f "$vocab" ] && { head -n 300 "$vocab" >"$out/fuzz_tokenizer_file/bpe-300"; head -n 256 "$vocab" >"$out/fuzz_tokenizer_file/bpe-256"; }
: >"$out/fuzz_tokenizer_file/empty"
seed fuzz_config config/*.cfg config/model/*.cfg config/mixtures/*.cfg tests/fixtures/config/*.cfg
printf 'model = { dim = 64; };\n--overrides\ntrain.steps=3\nmodel.layers=1\n' >"$out/fuzz_config/with-overrides"
seed fuzz_study config/studies/*.cfg
# Structure-aware HDF5 targets read their input as a recipe (tests/fuzz/fuzz_h5.h): bytes of 0x80
# ask for the expected types and good values, 0x00 for everything absent, 0xff for the odd cases.
for t in fuzz_shard fuzz_features fuzz_image_set; do
  mkdir -p "$out/$t"
  for b in 000 200 377 100; do head -c 4096 /dev/zero | tr '\0' "\\$b" >"$out/$t/bytes-$b"; done
done
# Pictures: the real PNG and JPEG files the encoder tests use (data/encoders/), small ones first.
mkdir -p "$out/fuzz_image_decode"
find data/encoders tests/fixtures -type f \( -name '*.png' -o -name '*.jpg' -o -name '*.jpeg' \) -size -64k 2>/dev/null |
  sort | head -n 40 | while read -r f; do cp -f "$f" "$out/fuzz_image_decode/$(echo "$f" | tr '/' '_')"; done
# Task lines: the first lines of the image sets' task data and format samples of the benchmarks.
mkdir -p "$out/fuzz_task_line"
for f in data/images/vqa.jsonl data/images/existence.jsonl; do
  [ -f "$f" ] && head -n 20 "$f" | split -l 1 -a 3 - "$out/fuzz_task_line/$(basename "$f" .jsonl)-"
done
printf '%s\n' '{"goal": "To open a jar,", "sol1": "twist the lid.", "sol2": "eat the lid.", "label": 0}' >"$out/fuzz_task_line/piqa"
printf '%s\n' '{"ctx": "A man sits", "endings": ["a", "b", "c", "d"], "label": "2", "activity_label": "x"}' >"$out/fuzz_task_line/hellaswag"
printf '%s\n' '{"sentence": "The cup fell off the _ because it was tilted.", "option1": "table", "option2": "cup", "answer": "1"}' >"$out/fuzz_task_line/winogrande"
# Readers whose seeds are small files kept in the repository (tests/fuzz/seeds/<target>/): real
# lines of each format, the malformed cases, and every minimised input that found a bug.
for d in tests/fuzz/seeds/fuzz_*/; do
  t=$(basename "$d")
  mkdir -p "$out/$t"
  cp -f "$d"* "$out/$t/"
done
