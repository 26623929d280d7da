# Tokenized shards, segment labels and mixtures (stages/ingest.c, labels.c,
# mixture.c): the JSON library they use, and the targets that turn the
# default corpora (mk/corpora.mk) into shards.
#
#   make shards            every default corpus -> $(SHARDS_DIR)/<source>/ (cached per source)
#   make shards-labels     segment labels + $(SHARDS_DIR)/label_rates.tsv
#   make shards-vocab      the trained BPE vocabulary the shards use ($(SHARDS_VOCAB))
#
# SHARDS_TOKENIZER / SHARDS_TOKENIZER_KIND choose another vocabulary (e.g.
# build/vocab/llama3.tiktoken llama3); SHARDS_NP > 1 ingests with mpirun.

# JSON (JSONL inputs, cards, manifests, label imports): json-c (libjson-c-dev).

# The lexicons are compiled into the binary (.incbin in datasets/labels.c).
LEXICON_FILES := $(wildcard datasets/lexicon/*.txt)
$(BUILD)/datasets/labels.o: $(LEXICON_FILES)

SHARDS_DIR            ?= data/shards
SHARDS_VOCAB          ?= $(BUILD)/vocab/bpe-8192.tiktoken
SHARDS_TOKENIZER      ?= $(SHARDS_VOCAB)
SHARDS_TOKENIZER_KIND ?= plain
SHARDS_NP             ?= 1
SHARDS_SOURCES        ?= $(CORPORA_SOURCES)
SHARDS_CARDS           = $(SHARDS_SOURCES:%=$(SHARDS_DIR)/%/card.json)
SHARDS_LAUNCH          = $(if $(filter-out 1,$(SHARDS_NP)),mpirun -np $(SHARDS_NP) --oversubscribe)

.PHONY: shards shards-labels shards-vocab
shards: $(SHARDS_CARDS)
shards-labels: $(SHARDS_DIR)/label_rates.tsv
shards-vocab: $(SHARDS_VOCAB)

# 8188 ordinary tokens + 4 specials = 8192 embedding rows, trained on
# SHARDS_VOCAB_BYTES of text shared equally between the default corpora (2 MB
# each for 21), so that the small ones count.
SHARDS_VOCAB_BYTES ?= 42M
$(SHARDS_VOCAB): $(CORPORA_STAMPS) | $(BIN)
	@mkdir -p $(dir $@)
	$(BIN) data tokenizer --vocab-size 8188 --max-bytes $(SHARDS_VOCAB_BYTES) --out $@ \
	  $(CORPORA_SOURCES:%=$(CORPORA_DIR)/%)

# A source is ingested again when its corpus or the vocabulary changes (the
# old shards go first); an ingest that was killed resumes.
$(SHARDS_DIR)/%/card.json: $(CORPORA_DIR)/%/.stamp $(SHARDS_TOKENIZER) | $(BIN)
	@if [ -f $@ ]; then rm -rf $(SHARDS_DIR)/$*; fi
	$(SHARDS_LAUNCH) $(BIN) data ingest --source $* --input $(CORPORA_DIR)/$* --out $(SHARDS_DIR) \
	  --tokenizer $(SHARDS_TOKENIZER) --tokenizer-kind $(SHARDS_TOKENIZER_KIND)

# The sources whose document ids fall in the held-out partition's namespaces
# (wn:, gcide:; datasets/heldout.c): a change of the rule ingests them again.
SHARDS_HELDOUT_SOURCES := wordnet-visual gcide
$(SHARDS_HELDOUT_SOURCES:%=$(SHARDS_DIR)/%/card.json): datasets/heldout.c

$(SHARDS_DIR)/label_rates.tsv: $(SHARDS_CARDS) $(LEXICON_FILES) | $(BIN)
	$(BIN) data label --shards $(SHARDS_DIR)

# A machine that built the shards before the held-out rule (or under an older
# one) gets them ingested again by `make test` too: t_images checks them.
test-data: $(wildcard $(SHARDS_HELDOUT_SOURCES:%=$(SHARDS_DIR)/%/card.json))
