# The default corpora: real text from Debian packages and npm only, one
# folder per source under data/corpora/ (JSONL parts, gzip, and card.json).
# Every source is a row of datasets/corpora/sources.tsv; see
# datasets/corpora/README.md.
#
#   make corpora                        build the default set, then a summary
#   make corpora CORPORA_SOURCES="a b"  build these rows only (opt-in ones too)
#   make corpora-summary                the table, from the cards
#   make corpora-clean                  remove data/corpora and the fetch caches
#
# Each source has a stamp, $(CORPORA_DIR)/<source>/.stamp, written last and
# committed with the data by a folder rename: a source that is up to date is
# not touched, and a build that was killed starts again at the sources that
# have no stamp. `make -j` builds sources side by side (apt and npm fetches
# take locks). CORPORA_PART_BYTES sets the JSONL size of a part (50 MB).

CORPORA_DIR     ?= data/corpora
CORPORA_TABLE   := datasets/corpora/sources.tsv
CORPORA_PYTHON  ?= /usr/bin/python3
CORPORA_TOOL     = $(CORPORA_PYTHON) datasets/corpora/corpora.py --out $(CORPORA_DIR) \
                   $(if $(CORPORA_PART_BYTES),--part-bytes $(CORPORA_PART_BYTES))
CORPORA_CODE    := $(CORPORA_TABLE) datasets/corpora/corpora.py datasets/corpora/extract.py
# The default column of the table (read by awk: cheap at every make run).
CORPORA_SOURCES ?= $(shell awk -F'\t' '$$1 !~ /^\#/ && $$1 != "name" && $$4 == "yes" {print $$1}' $(CORPORA_TABLE))
CORPORA_STAMPS   = $(CORPORA_SOURCES:%=$(CORPORA_DIR)/%/.stamp)

.PHONY: corpora corpora-summary corpora-clean
corpora: $(CORPORA_STAMPS)
	@$(CORPORA_TOOL) summary $(CORPORA_SOURCES)

# The tool itself checks the row's build key and only touches the stamp when
# the data is current (an edit to another row, say).
$(CORPORA_DIR)/%/.stamp: $(CORPORA_CODE)
	@$(CORPORA_TOOL) build $*

corpora-summary:
	@$(CORPORA_TOOL) summary $(CORPORA_SOURCES)

corpora-clean:
	@$(CORPORA_TOOL) clean

# t_eval_heldout builds the held-out language tasks from these two (a few MB
# from apt, seconds): a fresh machine's `make test` fetches them.
test-data: $(CORPORA_DIR)/wordnet-visual/.stamp $(CORPORA_DIR)/gcide/.stamp
