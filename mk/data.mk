# The quickstart corpus: real text installed from Debian packages (no other
# network). Until the tokenized default corpora land, quickstart trains
# byte-level on this one file.
QUICKSTART_CORPUS := data/quickstart/corpus.txt

quickstart-data bench-data: $(QUICKSTART_CORPUS)

$(QUICKSTART_CORPUS): mk/quickstart-corpus.sh
	@bash mk/quickstart-corpus.sh $@
