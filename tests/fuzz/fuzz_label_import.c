/* fuzz_label_import - an external tagger's labels JSONL (`presight data label
 * --import`, datasets/labels.h), one {"source", "shard", "segment", "labels"}
 * object a line, imported into a shards folder of two sources made at start
 * (card.json only: the importer reads no tokens). Every line is imported or
 * skipped and counted; the run either succeeds, writing labels.h5 into the
 * sources the file names and nowhere else, or fails with a message. A
 * source that would be a path ("../outside") must not reach the folder next
 * to the shards root, which holds a card.json of its own to be written to. */
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_input.h"
#include "labels.h"

static char base[128], root[160], outside[192];

static void write_card(const char *dir, const char *name, const char *shards) {
    mkdir(dir, 0700);
    char path[512];
    snprintf(path, sizeof path, "%s/card.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fprintf(f,
            "{\"source\": \"%s\", \"documents\": 3, \"bytes\": 900, \"tokenizer\": {\"kind\": \"plain\", "
            "\"sha256\": \"%064d\", \"vocab_size\": 8192, \"eot_id\": 8189}, \"shards\": [%s]}\n",
            name, 0, shards);
    fclose(f);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}
static void remove_base(void) { nftw(base, remove_one, 8, FTW_DEPTH | FTW_PHYS); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(base, sizeof base, "/dev/shm/presight-fuzz-labels-%d", (int)getpid());
    snprintf(root, sizeof root, "%s/shards", base);
    snprintf(outside, sizeof outside, "%s/outside", base);
    mkdir(base, 0700);
    mkdir(root, 0700);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/sotu", root);
    write_card(dir, "sotu",
               "{\"file\": \"shard-00000.h5\", \"documents\": 2, \"tokens\": 2500, \"bytes\": 600},"
               "{\"file\": \"shard-00001.h5\", \"documents\": 1, \"tokens\": 1, \"bytes\": 300}");
    snprintf(dir, sizeof dir, "%s/empty", root);
    write_card(dir, "empty", "{\"file\": \"shard-00000.h5\", \"documents\": 0, \"tokens\": 0, \"bytes\": 0}");
    atexit(remove_base);
    write_card(outside, "outside", "{\"file\": \"shard-00000.h5\", \"documents\": 1, \"tokens\": 10, \"bytes\": 9}");
    return 0;
}

static void remove_outputs(void) {
    const char *files[] = {"sotu/labels.h5", "empty/labels.h5", "label_rates.tsv"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", root, files[i]);
        unlink(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file in;
    if (fuzz_file_open(&in, data, size)) return 0;
    remove_outputs(); /* each input starts from the same folder: label_rates.tsv is merged */
    label_options o;
    memset(&o, 0, sizeof o);
    o.shards_dir = root;
    o.segment = size % 7 == 0 ? 1 : 1024; /* 1: a segment per token, the largest masks */
    o.import_path = in.path;
    o.threads = 1;
    label_rates *rates = NULL;
    int n = 0;
    ps_error err = {0};
    int rc = labels_run(&o, &rates, &n, &err);
    if (rc) FUZZ_CHECK(err.msg[0], "the import failed without a message");
    else FUZZ_CHECK(n >= 0 && n <= 2, "%d sources of rates from a root of two", n);
    for (int i = 0; rc == 0 && i < n; i++) {
        FUZZ_CHECK(!strcmp(rates[i].source, "sotu") || !strcmp(rates[i].source, "empty"), "rates of source '%s'",
                   rates[i].source);
        for (int k = 0; k < LABEL_COUNT; k++)
            FUZZ_CHECK(rates[i].count[k] <= rates[i].segments, "%s: %llu of %llu segments labelled %s", rates[i].source,
                       (unsigned long long)rates[i].count[k], (unsigned long long)rates[i].segments, label_name(k));
    }
    char path[512];
    snprintf(path, sizeof path, "%s/labels.h5", outside);
    FUZZ_CHECK(access(path, F_OK) != 0, "an import line wrote %s, outside the shards folder", path);
    free(rates);
    fuzz_file_close(&in);
    return 0;
}
