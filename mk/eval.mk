# The built-in held-out language tasks (README "Running a model"): the WordNet and GCIDE
# documents ingest keeps out of the shards, as rolling-perplexity data, and multiple-choice
# items made from held-out WordNet glosses (datasets/tools/heldout_tasks.py).
#
#   make eval-heldout    data/eval-heldout/{heldout-wordnet,heldout-gcide,wordnet-mc}.jsonl
#                        for config/tasks/{heldout-wordnet,heldout-gcide,wordnet-mc}.cfg

EVAL_HELDOUT_DIR ?= data/eval-heldout

.PHONY: eval-heldout
eval-heldout: $(EVAL_HELDOUT_DIR)/.stamp

$(EVAL_HELDOUT_DIR)/.stamp: datasets/tools/heldout_tasks.py datasets/images/heldout.py
	@$(PYTHON) datasets/tools/heldout_tasks.py --corpora data/corpora --out $(EVAL_HELDOUT_DIR)
	@touch $@

# The quickstart's language tasks (config/studies/quickstart-full.cfg) are these; they are
# made from the two corpora below.
$(EVAL_HELDOUT_DIR)/.stamp: | $(CORPORA_DIR)/wordnet-visual/.stamp $(CORPORA_DIR)/gcide/.stamp
quickstart-data: eval-heldout
test-data: eval-heldout
