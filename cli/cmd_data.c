/* cmd_data.c - presight data SUBCOMMAND: ingest, tokenizer, label, mix.
 *
 * Thin wrappers: options in, one library call, a summary out. Exit codes as
 * everywhere: 0 ok, 1 failed, 2 bad usage. */
#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bpe_train.h"
#include "comm.h"
#include "commands.h"
#include "config.h"
#include "ingest.h"
#include "labels.h"
#include "mixture.h"

/* ---- option parsing ------------------------------------------------------ */

/* "123", "64k", "16M", "2G"/"2B", "1T" (powers of 1000 for tokens, of 1024 for
 * bytes, as the caller says). */
static int parse_count(const char *opt, const char *text, int binary, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    double unit = 1, k = binary ? 1024.0 : 1000.0;
    switch (*end) {
    case 'k': case 'K': unit = k; end++; break;
    case 'M': unit = k * k; end++; break;
    case 'G': case 'B': unit = k * k * k; end++; break;
    case 'T': unit = k * k * k * k; end++; break;
    default: break;
    }
    if (errno || end == text || *end || v < 0 || v * unit > 1.8e19) {
        fprintf(stderr, "presight data: %s '%s' is not a count (e.g. 1000, 64k, 16M, 2G)\n", opt, text);
        return -1;
    }
    *out = (uint64_t)(v * unit + 0.5);
    return 0;
}

typedef struct args {
    int argc, i;
    char **argv;
    const char *cmd;
} args;

/* The value of option argv[i] (consumed), or NULL with a message. */
static const char *value_of(args *a) {
    if (a->i + 1 >= a->argc || (a->argv[a->i + 1][0] == '-' && a->argv[a->i + 1][1] == '-')) {
        fprintf(stderr, "presight data %s: %s needs a value\n", a->cmd, a->argv[a->i]);
        return NULL;
    }
    return a->argv[++a->i];
}

static int unknown_option(args *a) {
    fprintf(stderr, "presight data %s: unknown option '%s' (see presight data %s --help)\n", a->cmd, a->argv[a->i],
            a->cmd);
    return 2;
}

/* ---- ingest ---------------------------------------------------------------- */

static void ingest_help(FILE *out) {
    fprintf(out,
            "usage: presight data ingest --source NAME --input PATH... --out DIR --tokenizer FILE\n"
            "                            [--tokenizer-kind plain|llama3|cl100k] [--text-field text]\n"
            "                            [--shard-tokens 256M] [--max-doc-bytes 16M] [--threads N]\n"
            "                            [--licence TEXT] [--origin TEXT]\n\n"
            "Tokenizes a source into DIR/NAME/shard-00000.h5 ... and DIR/NAME/card.json.\n"
            "Inputs: files and folders (recursive, name order), .jsonl/.ndjson/.json (one document a line,\n"
            "the text in --text-field), any other file is text (one document), each optionally .gz.\n"
            "Run under mpirun to split the files over ranks. Killed, it resumes when run again with the\n"
            "same arguments; run again after it finished, it does nothing. Bad input is counted, reported\n"
            "as path:line and skipped. Inputs from data/corpora/NAME lend the card their origin and licence.\n"
            "  --shard-tokens N    commit a shard at the first document end past N tokens\n"
            "  --max-doc-bytes N   text files longer than N are cut (at paragraph ends) into documents\n"
            "  --threads N         tokenizer threads per rank (default: cores / ranks on the node)\n"
            "  --max-reports N     issue lines printed per rank (100; the card counts them all)\n"
            "  --licence, --origin the card's licence and origin when the inputs are not a default corpus\n");
}

static int ingest_parse(args *a, ingest_options *o, const char **inputs) {
    uint64_t v;
    for (a->i = 1; a->i < a->argc; a->i++) {
        const char *opt = a->argv[a->i], *val = NULL;
        if (!strcmp(opt, "--input")) {
            while (a->i + 1 < a->argc && strncmp(a->argv[a->i + 1], "--", 2) != 0) inputs[o->n_inputs++] = a->argv[++a->i];
            continue;
        }
        int known = !strcmp(opt, "--source") || !strcmp(opt, "--out") || !strcmp(opt, "--tokenizer") ||
                    !strcmp(opt, "--tokenizer-kind") || !strcmp(opt, "--text-field") ||
                    !strcmp(opt, "--shard-tokens") || !strcmp(opt, "--max-doc-bytes") || !strcmp(opt, "--threads") ||
                    !strcmp(opt, "--licence") || !strcmp(opt, "--origin") || !strcmp(opt, "--chunk-tokens") ||
                    !strcmp(opt, "--batch-bytes") || !strcmp(opt, "--max-reports");
        if (!known) return unknown_option(a);
        if (!(val = value_of(a))) return 2;
        if (!strcmp(opt, "--source")) o->source = val;
        else if (!strcmp(opt, "--out")) o->out_dir = val;
        else if (!strcmp(opt, "--tokenizer")) o->tokenizer_path = val;
        else if (!strcmp(opt, "--tokenizer-kind")) o->tokenizer_kind = val;
        else if (!strcmp(opt, "--text-field")) o->text_field = val;
        else if (!strcmp(opt, "--licence")) o->licence = val;
        else if (!strcmp(opt, "--origin")) o->origin = val;
        else if (parse_count(opt, val, strstr(opt, "bytes") != NULL, &v)) return 2;
        else if (!strcmp(opt, "--shard-tokens")) o->shard_tokens = v;
        else if (!strcmp(opt, "--max-doc-bytes")) o->max_doc_bytes = (size_t)v;
        else if (!strcmp(opt, "--batch-bytes")) o->batch_bytes = (size_t)v;
        else if (!strcmp(opt, "--chunk-tokens")) o->chunk_tokens = (size_t)v;
        else if (!strcmp(opt, "--max-reports")) o->max_reports = (int)v;
        else o->threads = (int)v;
    }
    if (!o->source || !o->out_dir || !o->n_inputs || !o->tokenizer_path) {
        fprintf(stderr, "presight data ingest: --source, --input, --out and --tokenizer are needed\n\n");
        ingest_help(stderr);
        return 2;
    }
    return 0;
}

static void ingest_summary(const ingest_options *o, const ingest_result *r) {
    const ingest_counts *c = &r->counts;
    if (r->already_complete) {
        printf("%s: already ingested (%s/%s/card.json): %llu documents, %llu tokens, %llu shards\n", o->source,
               o->out_dir, o->source, (unsigned long long)c->documents, (unsigned long long)c->tokens,
               (unsigned long long)r->shards);
        return;
    }
    printf("%s: %llu files, %llu documents, %.2f MB of text -> %llu tokens in %llu shards (%s/%s); "
           "this run: %.2f MB in %.1f s, %.1f MB/s\n",
           o->source, (unsigned long long)r->files, (unsigned long long)c->documents, c->bytes / 1e6,
           (unsigned long long)c->tokens, (unsigned long long)r->shards, o->out_dir, o->source, r->bytes_now / 1e6,
           r->seconds, r->bytes_now / 1e6 / (r->seconds > 1e-9 ? r->seconds : 1e-9));
    printf("%s: skipped: %llu unreadable files, %llu binary files, %llu malformed lines, %llu empty documents; "
           "%llu documents with invalid UTF-8 (%llu sequences, tokenized as bytes); %llu extra documents from "
           "long files; %llu held-out documents (evaluation material)\n",
           o->source, (unsigned long long)c->unreadable_files, (unsigned long long)c->binary_files,
           (unsigned long long)c->malformed_lines, (unsigned long long)c->empty_documents,
           (unsigned long long)c->invalid_utf8_documents, (unsigned long long)c->invalid_utf8_sequences,
           (unsigned long long)c->split_documents, (unsigned long long)c->heldout_documents);
}

static int data_ingest(int argc, char **argv) {
    if (wants_help(argc, argv)) return ingest_help(stdout), 0;
    ingest_options o;
    ingest_options_default(&o);
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    args a = {argc, 1, argv, "ingest"};
    o.inputs = inputs;
    int rc = inputs ? ingest_parse(&a, &o, inputs) : 1;
    comm *world = NULL;
    ps_error err = {{0}};
    if (rc == 0 && comm_world(&world, &argc, &argv, &err)) {
        fprintf(stderr, "presight data ingest: %s\n", err.msg);
        rc = 1;
    }
    if (rc == 0) {
        ingest_result res;
        if (ingest_run(&o, world, &res, &err)) {
            fprintf(stderr, "presight data ingest (rank %d): %s\n", comm_rank(world), err.msg);
            rc = 1;
        } else if (comm_rank(world) == 0) {
            ingest_summary(&o, &res);
        }
    }
    if (world) {
        comm_free(world);
        comm_shutdown();
    }
    free(inputs);
    return rc;
}

/* ---- tokenizer ------------------------------------------------------------- */

static void tokenizer_help(FILE *out) {
    fprintf(out,
            "usage: presight data tokenizer --vocab-size N --out FILE [--max-bytes N] [--text-field text] INPUTS...\n\n"
            "Trains a byte-level BPE vocabulary (datasets/bpe_train.h) and writes FILE (.tiktoken; load it\n"
            "with --tokenizer-kind plain: N ordinary tokens, then 4 specials, so a model needs N + 4 rows).\n"
            "INPUTS are read as ingest reads them (files, folders, JSONL, .gz); --max-bytes caps the text,\n"
            "shared equally between the inputs so that every source counts (e.g. 4M per corpus).\n");
}

/* Writes up to budget bytes of the documents of one input into out, one
 * document after another with a newline between. */
static int extract_input(const char *input, const char *field, uint64_t budget, FILE *out, const char *out_path,
                         uint64_t *written, ps_error *err) {
    char **files = NULL;
    uint64_t *sizes = NULL;
    int n = ingest_list_files(&input, 1, &files, &sizes, err);
    if (n < 0) return -1;
    ingest_counts counts = {0};
    int reports = 20;
    uint64_t used = 0;
    for (int i = 0; i < n && used < budget; i++) {
        doc_reader *r = NULL;
        if (doc_reader_open(&r, files[i], field, 16u << 20, 0, 0, &counts, stderr, &reports)) {
            ingest_free_files(files, sizes, n);
            return ps_fail(err, "out of memory");
        }
        ingest_doc d;
        while (used < budget && doc_reader_next(r, &d)) {
            size_t take = d.len < budget - used ? d.len : (size_t)(budget - used);
            errno = 0;
            if (fwrite(d.text, 1, take, out) != take || fputc('\n', out) == EOF) {
                int why = errno ? errno : EIO;
                doc_reader_close(r);
                ingest_free_files(files, sizes, n);
                return ps_fail(err, "%s: writing the training text failed: %s", out_path, strerror(why));
            }
            used += take + 1;
        }
        doc_reader_close(r);
    }
    ingest_free_files(files, sizes, n);
    *written += used;
    return 0;
}

static int data_tokenizer(int argc, char **argv) {
    if (wants_help(argc, argv)) return tokenizer_help(stdout), 0;
    uint64_t vocab = 0, max_bytes = 0;
    const char *out = NULL, *field = "text";
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n_inputs = 0;
    args a = {argc, 1, argv, "tokenizer"};
    for (a.i = 1; a.i < argc; a.i++) {
        const char *opt = argv[a.i], *val;
        if (strncmp(opt, "--", 2) != 0) {
            inputs[n_inputs++] = opt;
            continue;
        }
        if (strcmp(opt, "--vocab-size") && strcmp(opt, "--out") && strcmp(opt, "--max-bytes") &&
            strcmp(opt, "--text-field"))
            return free(inputs), unknown_option(&a);
        if (!(val = value_of(&a))) return free(inputs), 2;
        if (!strcmp(opt, "--out")) out = val;
        else if (!strcmp(opt, "--text-field")) field = val;
        else if (parse_count(opt, val, !strcmp(opt, "--max-bytes"), !strcmp(opt, "--vocab-size") ? &vocab : &max_bytes))
            return free(inputs), 2;
    }
    if (!vocab || !out || !n_inputs) {
        fprintf(stderr, "presight data tokenizer: --vocab-size, --out and at least one input are needed\n\n");
        tokenizer_help(stderr);
        return free(inputs), 2;
    }
    /* bpe_train reads plain text files: the inputs are first extracted into
     * one, next to the output, then removed. */
    char text_path[4200];
    snprintf(text_path, sizeof text_path, "%s.text.tmp", out);
    FILE *text = fopen(text_path, "w");
    ps_error err = {{0}};
    uint64_t per_input = max_bytes ? max_bytes / (uint64_t)n_inputs : UINT64_MAX, written = 0;
    int rc = text ? 0 : ps_fail(&err, "%s: cannot create: %s", text_path, strerror(errno));
    for (int i = 0; rc == 0 && i < n_inputs; i++)
        rc = extract_input(inputs[i], field, per_input, text, text_path, &written, &err);
    errno = 0;
    if (text && fclose(text) != 0 && rc == 0) rc = ps_fail(&err, "%s: write failed: %s", text_path, strerror(errno));
    bpe_train_stats st = {0};
    const char *files[1] = {text_path};
    if (rc == 0) rc = bpe_train(files, 1, (size_t)vocab, 0, out, &st, &err);
    unlink(text_path);
    free(inputs);
    if (rc) {
        fprintf(stderr, "presight data tokenizer: %s\n", err.msg);
        return 1;
    }
    printf("%s: %zu tokens (+4 specials: model.vocab >= %zu) from %.1f MB of text (%zu distinct pieces); "
           "count %.1f s, merge %.1f s\n",
           out, st.tokens, st.tokens + 4, st.bytes_read / 1e6, st.unique_pieces, st.count_seconds, st.merge_seconds);
    return 0;
}

/* ---- label ------------------------------------------------------------------- */

static void label_help(FILE *out) {
    fprintf(out,
            "usage: presight data label --shards DIR [--segment 1024] [--source NAME ...] [--tokenizer FILE]\n"
            "                           [--threads N] [--lexicon DIR]\n"
            "       presight data label --shards DIR --export FILE.jsonl [--source NAME ...]\n"
            "       presight data label --shards DIR --import FILE.jsonl\n\n"
            "Tags every --segment tokens of each source under DIR (all, or the --source ones) with the\n"
            "study's labels: reasoning (code, math, science) and visual (concept, attribute, relationship),\n"
            "multi-label or none, by the built-in lexicon tagger. Writes DIR/NAME/labels.h5 (a uint8 bitmask\n"
            "per segment: bit 0 code .. bit 5 relationship, bit 7 tagged) and DIR/label_rates.tsv, and prints\n"
            "the rates like the study's table.\n"
            "--export writes every segment's text, {\"source\",\"shard\",\"segment\",\"text\"} a line, for an\n"
            "external tagger (an LLM on a cluster); --import reads its answers back,\n"
            "{\"source\",\"shard\",\"segment\",\"labels\":[\"code\",\"visual concept\",...]} a line, in place of\n"
            "the built-in tagger (segments it leaves out stay untagged and out of the rates).\n");
}

static int data_label(int argc, char **argv) {
    if (wants_help(argc, argv)) return label_help(stdout), 0;
    label_options o;
    memset(&o, 0, sizeof o);
    o.segment = 1024;
    o.log = stderr;
    const char **sources = calloc((size_t)argc, sizeof *sources);
    args a = {argc, 1, argv, "label"};
    uint64_t v;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *opt = argv[a.i], *val;
        if (!strcmp(opt, "--source")) {
            while (a.i + 1 < argc && strncmp(argv[a.i + 1], "--", 2) != 0) sources[o.n_sources++] = argv[++a.i];
            continue;
        }
        if (strcmp(opt, "--shards") && strcmp(opt, "--segment") && strcmp(opt, "--tokenizer") &&
            strcmp(opt, "--threads") && strcmp(opt, "--lexicon") && strcmp(opt, "--import") && strcmp(opt, "--export"))
            return free(sources), unknown_option(&a);
        if (!(val = value_of(&a))) return free(sources), 2;
        if (!strcmp(opt, "--shards")) o.shards_dir = val;
        else if (!strcmp(opt, "--tokenizer")) o.tokenizer_path = val;
        else if (!strcmp(opt, "--lexicon")) o.lexicon_dir = val;
        else if (!strcmp(opt, "--import")) o.import_path = val;
        else if (!strcmp(opt, "--export")) o.export_path = val;
        else if (parse_count(opt, val, 0, &v)) return free(sources), 2;
        else if (!strcmp(opt, "--segment")) o.segment = (int)v;
        else o.threads = (int)v;
    }
    o.sources = sources;
    if (!o.shards_dir || (o.import_path && o.export_path)) {
        fprintf(stderr, "presight data label: --shards is needed (and --import and --export do not go together)\n\n");
        label_help(stderr);
        return free(sources), 2;
    }
    label_rates *rates = NULL;
    int n = 0;
    ps_error err = {{0}};
    int rc = labels_run(&o, &rates, &n, &err);
    free(sources);
    if (rc) {
        fprintf(stderr, "presight data label: %s\n", err.msg);
        return 1;
    }
    if (o.export_path) {
        printf("%s: the segments of %d source%s\n", o.export_path, n, n == 1 ? "" : "s");
    } else {
        printf("segment labels (percent of %d-token segments; %s)\n", o.segment,
               o.import_path ? o.import_path : "built-in lexicon tagger");
        label_rates_print(stdout, rates, n);
        printf("written: %s/NAME/labels.h5, %s/label_rates.tsv\n", o.shards_dir, o.shards_dir);
    }
    free(rates);
    return 0;
}

/* ---- mix ----------------------------------------------------------------------- */

static void mix_help(FILE *out) {
    fprintf(out,
            "usage: presight data mix CONFIG [key=value ...] [--sequences 1000000]\n\n"
            "Resolves the data.* keys of CONFIG (kind \"mixture\" or \"shards\": data.path, data.mixture,\n"
            "data.weights, data.reasoning_share, data.visual_share) and draws the source of N sequences as\n"
            "training would (train.seed), reading no tokens: prints each source's weight, its realised share,\n"
            "its tokens and label rates, then the mixture's reasoning and visual shares computed as the study\n"
            "does (weights x label rates, from DIR/label_rates.tsv).\n"
            "  --read N   also read N sequences of train.seq_len + 1 tokens (the trainer's reads, 8 at a time)\n"
            "             and print the read speed in tokens/s\n");
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads n sequences as the trainer does, micro-batches of 8, and times it. */
static int time_reads(dataset *ds, uint64_t n, int seq_len, ps_error *err) {
    const int batch = 8;
    int *buf = malloc((size_t)batch * (seq_len + 1) * sizeof *buf);
    if (!buf) return ps_fail(err, "out of memory");
    double t0 = seconds_now();
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i += batch) rc = ds->ops->read(ds, i, batch, seq_len, buf, err);
    double dt = seconds_now() - t0;
    free(buf);
    if (rc == 0)
        printf("read %llu sequences of %d tokens in %.2f s: %.0f sequences/s, %.1fM tokens/s\n",
               (unsigned long long)n, seq_len + 1, dt, n / dt, n * (seq_len + 1.0) / dt / 1e6);
    return rc;
}

static void print_mix(const dataset *ds, const uint64_t *counts, uint64_t n) {
    const mixture_plan *p = mixture_plan_of(ds);
    printf("mixture %s (%s): %d sources under %s, %llu sequences drawn\n", p->name, p->file[0] ? p->file : "one source",
           p->n_sources, p->root, (unsigned long long)n);
    printf("%-16s %-13s %8s %8s %8s %12s", "source", "kind", "base%", "weight%", "drawn%", "tokens");
    if (p->have_rates) printf(" %9s %7s", "reasoning", "visual");
    printf("\n");
    double max_dev = 0;
    for (int i = 0; i < p->n_sources; i++) {
        double drawn = n ? 100.0 * (double)counts[i] / (double)n : 0, dev = fabs(drawn - 100 * p->weight[i]);
        if (dev > max_dev) max_dev = dev;
        printf("%-16s %-13s %8.3f %8.3f %8.3f %12llu", p->source[i], p->component[i], 100 * p->base[i],
               100 * p->weight[i], drawn, (unsigned long long)p->tokens[i]);
        if (p->have_rates) printf(" %9.1f %7.1f", label_rate_reasoning(&p->rates[i]), label_rate_visual(&p->rates[i]));
        printf("\n");
    }
    printf("largest |drawn - weight|: %.3f percentage points\n", max_dev);
    if (!p->have_rates) {
        printf("reasoning / visual shares: no label rates for every source (run presight data label --shards %s)\n",
               p->root);
        return;
    }
    double base_r, base_v, drawn_r = 0, drawn_v = 0;
    mixture_category_shares(p, p->base, &base_r, &base_v);
    for (int i = 0; i < p->n_sources && n; i++) {
        drawn_r += (double)counts[i] / (double)n * label_rate_reasoning(&p->rates[i]) / 100;
        drawn_v += (double)counts[i] / (double)n * label_rate_visual(&p->rates[i]) / 100;
    }
    printf("reasoning share: %.1f%% (file weights %.1f%%, drawn %.1f%%)\n", 100 * p->achieved_reasoning, 100 * base_r,
           100 * drawn_r);
    printf("visual share:    %.1f%% (file weights %.1f%%, drawn %.1f%%)\n", 100 * p->achieved_visual, 100 * base_v,
           100 * drawn_v);
    if (p->solved)
        printf("category targets: reasoning %s, visual %s: %s\n",
               p->target_reasoning >= 0 ? "set" : "unset", p->target_visual >= 0 ? "set" : "unset",
               p->feasible ? "reached" : "NOT reachable with these sources; the nearest reachable shares are used");
}

static int data_mix(int argc, char **argv) {
    if (wants_help(argc, argv)) return mix_help(stdout), 0;
    uint64_t n = 1000000, reads = 0;
    char **overrides = calloc((size_t)argc, sizeof *overrides);
    const char *config = NULL;
    int n_over = 0;
    args a = {argc, 1, argv, "mix"};
    for (a.i = 1; a.i < argc; a.i++) {
        const char *val;
        if (!strcmp(argv[a.i], "--sequences") || !strcmp(argv[a.i], "--read")) {
            int is_read = !strcmp(argv[a.i], "--read");
            if (!(val = value_of(&a)) || parse_count(argv[a.i - 1], val, 0, is_read ? &reads : &n))
                return free(overrides), 2;
        } else if (!strncmp(argv[a.i], "--", 2)) {
            return free(overrides), unknown_option(&a);
        } else if (!config) {
            config = argv[a.i];
        } else {
            overrides[n_over++] = argv[a.i];
        }
    }
    if (!config) {
        mix_help(stderr);
        return free(overrides), 2;
    }
    run_config cfg;
    ps_error err = {{0}};
    if (config_load_model(&cfg, config, n_over, overrides, &err)) {
        fprintf(stderr, "presight data mix: %s\n", err.msg);
        return free(overrides), 2;
    }
    free(overrides);
    if (strcmp(cfg.data.kind, "mixture") && strcmp(cfg.data.kind, "shards")) {
        fprintf(stderr, "presight data mix: data.kind = \"%s\": set data.kind = \"mixture\" (or \"shards\")\n",
                cfg.data.kind);
        return 2;
    }
    dataset *ds = NULL;
    if (mixture_dataset_open(&ds, &cfg, &err)) {
        fprintf(stderr, "presight data mix: %s\n", err.msg);
        return 1;
    }
    uint64_t *counts = calloc((size_t)mixture_n_sources(ds), sizeof *counts);
    mixture_count_sources(ds, 0, n, counts);
    print_mix(ds, counts, n);
    free(counts);
    int rc = reads ? time_reads(ds, reads, cfg.train.seq_len, &err) : 0;
    if (rc) fprintf(stderr, "presight data mix: %s\n", err.msg);
    dataset_close(ds);
    return rc ? 1 : 0;
}

/* ---- dispatch -------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommands[] = {
    {"ingest", data_ingest, "tokenize a source (files, folders, JSONL, .gz) into HDF5 shards with a data card"},
    {"tokenizer", data_tokenizer, "train a byte-level BPE vocabulary (.tiktoken) on some text"},
    {"label", data_label, "tag every segment of the shards: reasoning (code, math, science), visual (concept, ...)"},
    {"mix", data_mix, "realised source shares, reasoning and visual shares of a mixture config"},
    {"images", data_images, "the default image sets (captions, scenes, text, charts) and their tasks; import"},
};

static void data_help(FILE *out) {
    fprintf(out, "usage: presight data SUBCOMMAND [--help] ...\n\nsubcommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\nThe shard layout, mixtures and label files: datasets/README.md.\n");
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        data_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++)
        if (!strcmp(argv[1], subcommands[i].name)) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "presight data: unknown subcommand '%s'\n\n", argv[1]);
    data_help(stderr);
    return 2;
}
