# Data the top-level targets need.
#  - quickstart: the default corpora, tokenized into shards with presight's
#    own 8192-token vocabulary, and their segment labels (mk/corpora.mk,
#    mk/shards.mk; each cached after the first run).
#  - bench: one real text file for the byte-level benchmark model (fortunes
#    and a slice of the Python standard library, from Debian packages).
BENCH_CORPUS := data/quickstart/corpus.txt

quickstart-data: shards shards-labels
bench-data: $(BENCH_CORPUS) shards-vocab

$(BENCH_CORPUS): mk/quickstart-corpus.sh
	@bash mk/quickstart-corpus.sh $@
