/* test_ingest.c - the pieces of ingest on their own: listing inputs, the
 * document reader on the fixtures of tests/fixtures/ingest (JSONL, text,
 * gzip, bad lines, empty documents, invalid UTF-8, a truncated gzip),
 * resuming the reader at an offset, cutting long text where the tokenizer
 * would cut anyway, and the shard writer and reader.
 * (The whole command, kills, resumes and MPI: tests/t_data_cli.sh.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "bpe_train.h"
#include "ingest.h"
#include "shards.h"
#include "tokenizer.h"

#define FIX "tests/fixtures/ingest/"

static void to_repo_root(void) { test_chdir_to_repo_root(FIX "docs.jsonl"); }

typedef struct docs {
    char *text[64];
    size_t len[64];
    uint64_t line[64], end_offset[64], end_line[64];
    int n;
} docs;

static void read_all(const char *path, size_t max_doc, uint64_t offset, uint64_t line, docs *out, ingest_counts *c) {
    doc_reader *r;
    int reports = 0;
    memset(out, 0, sizeof *out);
    cr_assert_eq(doc_reader_open(&r, path, "text", max_doc, offset, line, c, NULL, &reports), 0);
    ingest_doc d;
    while (doc_reader_next(r, &d)) {
        cr_assert(out->n < 64);
        out->text[out->n] = strndup(d.text, d.len);
        out->len[out->n] = d.len;
        out->line[out->n] = d.line;
        out->end_offset[out->n] = d.end_offset;
        out->end_line[out->n] = d.end_line;
        out->n++;
    }
    doc_reader_close(r);
}

static void free_docs(docs *d) {
    for (int i = 0; i < d->n; i++) free(d->text[i]);
}

Test(ingest, lists_files_in_name_order_without_hidden_ones) {
    to_repo_root();
    const char *inputs[] = {FIX "text/", FIX "docs.jsonl"};
    char **files;
    uint64_t *sizes;
    ps_error err;
    int n = ingest_list_files(inputs, 2, &files, &sizes, &err);
    const char *want[] = {FIX "text/alpha.txt", FIX "text/blob.bin", FIX "text/empty.txt", FIX "text/latin1.txt",
                          FIX "text/long.txt",  FIX "text/sub/beta.md", FIX "text/sub/gamma.c", FIX "docs.jsonl"};
    cr_assert_eq(n, 8, "%d files", n);
    for (int i = 0; i < n; i++) cr_assert_str_eq(files[i], want[i]);
    cr_assert_eq(sizes[0], 118);
    ingest_free_files(files, sizes, n);
    cr_assert(ingest_is_jsonl("a/b.jsonl.gz") && ingest_is_jsonl("x.ndjson") && !ingest_is_jsonl("x.txt.gz"));
}

Test(ingest, jsonl_documents_and_every_kind_of_bad_line) {
    to_repo_root();
    docs d;
    ingest_counts c = {0};
    read_all(FIX "docs.jsonl", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(d.n, 4);
    cr_assert_str_eq(d.text[0], "First JSONL document.");
    cr_assert_str_eq(d.text[1], "Second with unicode: caf\xc3\xa9 \xf0\x9f\x98\x80 and a tab\t.");
    cr_assert_str_eq(d.text[2], "raw invalid \xff\xfe bytes in a string");
    cr_assert_str_eq(d.text[3], "Last line without a newline");
    cr_assert_eq(d.line[0], 1);
    cr_assert_eq(d.line[2], 11);
    cr_assert_eq(d.line[3], 12);
    cr_assert_eq(c.malformed_lines, 5); /* no field, not JSON, not a string, not an object, junk after */
    cr_assert_eq(c.empty_documents, 2);
    cr_assert_eq(c.invalid_utf8_documents, 1);
    cr_assert_eq(c.invalid_utf8_sequences, 2);
    /* resuming after the second document gives the rest, same lines */
    docs rest;
    ingest_counts c2 = {0};
    read_all(FIX "docs.jsonl", 1 << 20, d.end_offset[1], d.end_line[1], &rest, &c2);
    cr_assert_eq(rest.n, 2);
    cr_assert_str_eq(rest.text[0], d.text[2]);
    cr_assert_eq(rest.line[1], 12);
    free_docs(&d);
    free_docs(&rest);
}

Test(ingest, gzip_text_and_a_truncated_stream) {
    to_repo_root();
    docs d;
    ingest_counts c = {0};
    read_all(FIX "story.txt.gz", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(d.n, 1);
    cr_assert_str_eq(d.text[0], "Once upon a time, in a compressed file, there was a story.\n");
    free_docs(&d);
    read_all(FIX "corrupt.jsonl.gz", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(d.n, 6, "%d documents before the damage", d.n);
    cr_assert_eq(c.unreadable_files, 1);
    cr_assert_eq(c.malformed_lines, 0, "the cut-off last line is not parsed");
    free_docs(&d);
    read_all(FIX "text/blob.bin", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(d.n, 0);
    cr_assert_eq(c.binary_files, 1);
    read_all(FIX "no-such-file.txt", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(c.unreadable_files, 2);
    read_all(FIX "text/latin1.txt", 1 << 20, 0, 0, &d, &c);
    cr_assert_eq(d.n, 1);
    cr_assert_eq(c.invalid_utf8_sequences, 4);
    free_docs(&d);
}

/* Long text is cut at a paragraph end before a letter, and the pieces
 * tokenize to exactly the tokens of the whole. */
Test(ingest, long_text_is_cut_where_the_tokenizer_cuts) {
    to_repo_root();
    docs d;
    ingest_counts c = {0};
    read_all(FIX "text/long.txt", 1000, 0, 0, &d, &c);
    cr_assert_eq(d.n, 3);
    cr_assert_eq(c.split_documents, 2);
    FILE *f = fopen(FIX "text/long.txt", "rb");
    char whole[4096];
    size_t n = fread(whole, 1, sizeof whole, f);
    fclose(f);
    size_t at = 0;
    for (int i = 0; i < d.n; i++) {
        cr_assert(d.len[i] <= 1000);
        cr_assert(!memcmp(whole + at, d.text[i], d.len[i]));
        if (i + 1 < d.n) cr_assert(d.text[i][d.len[i] - 1] == '\n' && d.text[i][d.len[i] - 2] == '\n');
        at += d.len[i];
    }
    cr_assert_eq(at, n);
    char vocab[] = "/tmp/presight-ingest-vocab-XXXXXX";
    int fd = mkstemp(vocab);
    close(fd);
    const char *train[] = {"tests/fixtures/tokenizer/train.txt"};
    ps_error err;
    cr_assert_eq(bpe_train(train, 1, 300, 0, vocab, NULL, &err), 0, "%s", err.msg);
    tokenizer *tok;
    cr_assert_eq(tokenizer_load(&tok, vocab, TOKENIZER_PLAIN, &err), 0, "%s", err.msg);
    unlink(vocab);
    tokenizer_ids all = {0}, parts = {0};
    cr_assert_eq(tokenizer_encode(tok, whole, n, 0, &all, &err), 0);
    for (int i = 0; i < d.n; i++) cr_assert_eq(tokenizer_encode(tok, d.text[i], d.len[i], 0, &parts, &err), 0);
    cr_assert_eq(all.n, parts.n);
    cr_assert(!memcmp(all.ids, parts.ids, all.n * sizeof *all.ids));
    tokenizer_ids_free(&all);
    tokenizer_ids_free(&parts);
    tokenizer_free(tok);
    free_docs(&d);
}

Test(ingest, shard_round_trip) {
    char dir[] = "/tmp/presight-shard-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/shard-00000.h5", dir);
    shard_meta meta = {"demo", {0}, "plain", 1000, 999};
    memset(meta.tokenizer_sha256, 'a', 64);
    shard_writer *w;
    ps_error err;
    cr_assert_eq(shard_writer_create(&w, path, &meta, 16, &err), 0, "%s", err.msg);
    uint32_t doc[100];
    for (int i = 0; i < 100; i++) doc[i] = (uint32_t)i;
    for (int d = 1; d <= 5; d++) cr_assert_eq(shard_writer_append(w, doc, (size_t)d * 10, (uint64_t)d, &err), 0);
    cr_assert(access(path, F_OK) != 0, "the shard is visible before commit");
    cr_assert_eq(shard_writer_commit(w, &err), 0, "%s", err.msg);
    shard_file *f;
    cr_assert_eq(shard_file_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(shard_file_tokens(f), 150 + 5);
    cr_assert_eq(shard_file_documents(f), 5);
    cr_assert_str_eq(shard_file_meta(f)->source, "demo");
    cr_assert_eq(shard_file_meta(f)->eot_id, 999);
    uint64_t off[6];
    cr_assert_eq(shard_file_read_offsets(f, 0, 6, off, &err), 0);
    cr_assert(off[0] == 0 && off[1] == 11 && off[2] == 32 && off[5] == 155);
    uint32_t t[12];
    cr_assert_eq(shard_file_read(f, 9, 12, t, &err), 0);
    cr_assert(t[0] == 9 && t[1] == 999 && t[2] == 0 && t[11] == 9);
    cr_assert_neq(shard_file_read(f, 150, 10, t, &err), 0);
    shard_file_close(f);
    /* an aborted shard leaves nothing */
    snprintf(path, sizeof path, "%s/shard-00001.h5", dir);
    cr_assert_eq(shard_writer_create(&w, path, &meta, 0, &err), 0);
    shard_writer_abort(w);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(access(tmp, F_OK) != 0 && access(path, F_OK) != 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
