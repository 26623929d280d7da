# The built-in held-out language tasks (README "Running a model"): the WordNet and GCIDE
# documents ingest keeps out of the shards, as rolling-perplexity data, and multiple-choice
# items made from held-out WordNet glosses, held-out bsdgames quiz facts and gbrainy's
# verbal analogies (datasets/tools/heldout_tasks.py; bsdgames and gbrainy are SHA-256
# pinned Debian packages, apt-get download into build/images-cache, not installed).
#
#   make eval-heldout    data/eval-heldout/{heldout-wordnet,heldout-gcide}.jsonl and
#                        {wordnet,quiz,gbrainy}-mc.jsonl for config/tasks/ of the same names

EVAL_HELDOUT_DIR ?= data/eval-heldout

.PHONY: eval-heldout
eval-heldout: $(EVAL_HELDOUT_DIR)/.stamp

$(EVAL_HELDOUT_DIR)/.stamp: datasets/tools/heldout_tasks.py datasets/images/heldout.py datasets/images/sources.py
	@$(PYTHON) datasets/tools/heldout_tasks.py --corpora data/corpora --out $(EVAL_HELDOUT_DIR)
	@touch $@

# t_eval_heldout builds the tasks itself; make test fetches the two packages (2 MB) first.
.PHONY: eval-heldout-sources
eval-heldout-sources:
	@$(PYTHON) datasets/tools/heldout_tasks.py --fetch
test-data: eval-heldout-sources

# The quickstart's language tasks (config/studies/quickstart-full.cfg) are these; they are
# made from the two corpora below and the two packages above.
$(EVAL_HELDOUT_DIR)/.stamp: | $(CORPORA_DIR)/wordnet-visual/.stamp $(CORPORA_DIR)/gcide/.stamp eval-heldout-sources
quickstart-data: eval-heldout
test-data: eval-heldout
