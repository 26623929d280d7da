/* test_mixture.c - the sampler over shards, mixture files and the
 * category-share solver.
 *
 * Sources are synthetic: shards written with shard_writer and a card by
 * hand, token ids that say which source and which stream position they
 * are, so that every window can be checked. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dataset.h"
#include "mixture.h"
#include "rng.h"
#include "shards.h"

#define EOT 0xffffffu
#define VOCAB (1u << 24)
/* id of stream position p of source s (positions of end-of-text excluded) */
#define ID(s, p) (((uint32_t)(s) << 20) | ((uint32_t)(p) & 0xfffffu))

static char root[256];

static void write_card(const char *dir, const char *name, int n_shards, const uint64_t *tokens, const uint64_t *docs) {
    char path[600];
    snprintf(path, sizeof path, "%s/card.json", dir);
    FILE *f = fopen(path, "w");
    uint64_t t = 0, d = 0;
    fprintf(f, "{\"source\": \"%s\", \"tokenizer\": {\"sha256\": \"%064d\", \"kind\": \"plain\", \"vocab_size\": %u, "
               "\"eot_id\": %u}, \"shards\": [",
            name, 0, VOCAB, EOT);
    for (int i = 0; i < n_shards; i++) {
        fprintf(f, "%s{\"file\": \"shard-%05d.h5\", \"tokens\": %llu, \"documents\": %llu, \"bytes\": 0}", i ? "," : "",
                i, (unsigned long long)tokens[i], (unsigned long long)docs[i]);
        t += tokens[i], d += docs[i];
    }
    fprintf(f, "], \"documents\": %llu, \"tokens\": %llu, \"bytes\": 0}\n", (unsigned long long)d,
            (unsigned long long)t);
    fclose(f);
}

/* A source of n_shards shards of docs_per_shard documents of doc_len ids
 * each; ids count up through the source (the end-of-text ids between them
 * are the writer's). */
static void make_source(int s, const char *name, int n_shards, int docs_per_shard, int doc_len) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0777);
    shard_meta meta = {{0}, {0}, "plain", VOCAB, EOT};
    snprintf(meta.source, sizeof meta.source, "%s", name);
    memset(meta.tokenizer_sha256, '0', 64);
    uint64_t tokens[8], docs[8];
    uint32_t *ids = malloc((size_t)doc_len * sizeof *ids);
    uint64_t pos = 0;
    ps_error err;
    for (int i = 0; i < n_shards; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/shard-%05d.h5", dir, i);
        shard_writer *w;
        cr_assert_eq(shard_writer_create(&w, path, &meta, 64, &err), 0, "%s", err.msg);
        for (int d = 0; d < docs_per_shard; d++) {
            for (int k = 0; k < doc_len; k++) ids[k] = ID(s, pos++);
            pos++; /* the end-of-text takes a stream position too */
            cr_assert_eq(shard_writer_append(w, ids, (size_t)doc_len, 0, &err), 0, "%s", err.msg);
        }
        tokens[i] = shard_writer_tokens(w);
        docs[i] = shard_writer_documents(w);
        cr_assert_eq(shard_writer_commit(w, &err), 0, "%s", err.msg);
    }
    free(ids);
    write_card(dir, name, n_shards, tokens, docs);
}

static void setup_sources(void) {
    snprintf(root, sizeof root, "/tmp/presight-mixture-XXXXXX");
    cr_assert(mkdtemp(root));
    make_source(0, "alpha", 3, 20, 90); /* 3 shards: windows cross shard boundaries */
    make_source(1, "beta", 1, 50, 40);
    make_source(2, "gamma", 2, 10, 300);
    make_source(3, "delta", 1, 5, 200);
    char path[600];
    snprintf(path, sizeof path, "%s/test.cfg", root);
    FILE *f = fopen(path, "w");
    fprintf(f, "name = \"test\";\nkinds = { pair = { sources = { beta = 2.0; gamma = 1.0; }; }; };\n"
               "weights = { alpha = 0.5; pair = 0.45; delta = 0.05; };\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/label_rates.tsv", root);
    f = fopen(path, "w");
    fprintf(f, "source\tsegments\tcode\tmath\tscience\treasoning\tconcept\tattribute\trelationship\tvisual\n"
               "alpha\t1000\t90\t0\t0\t90\t5\t0\t0\t5\n"
               "beta\t1000\t0\t0\t0\t0\t60\t0\t0\t60\n"
               "gamma\t1000\t0\t0\t10\t10\t10\t0\t0\t10\n"
               "delta\t1000\t0\t50\t50\t50\t0\t0\t0\t0\n");
    fclose(f);
}

static void teardown_sources(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    cr_assert_eq(system(cmd), 0);
}

static void mixture_config(run_config *cfg, const char *mixture, uint64_t seed) {
    config_defaults(cfg);
    snprintf(cfg->data.kind, sizeof cfg->data.kind, "mixture");
    snprintf(cfg->data.path, sizeof cfg->data.path, "%s", root);
    snprintf(cfg->data.mixture, sizeof cfg->data.mixture, "%s/%s", root, mixture);
    cfg->train.seed = (int64_t)seed;
    cfg->train.seq_len = 100; /* opening checks every source holds one sequence */
}

/* Every window is one source's stream, contiguous: ids count up by one
 * (the end-of-text between documents takes a position). */
static void check_window(const int *w, int len) {
    int src = -1;
    uint32_t prev = 0;
    for (int j = 0; j < len; j++) {
        uint32_t id = (uint32_t)w[j];
        if (id == EOT) {
            prev++;
            continue;
        }
        if (src < 0) src = (int)(id >> 20), prev = id;
        else {
            cr_assert_eq((int)(id >> 20), src, "a window mixes sources");
            cr_assert_eq(id, prev + 1, "a window is not contiguous at %d", j);
            prev = id;
        }
    }
}

TestSuite(mixture, .init = setup_sources, .fini = teardown_sources);

Test(mixture, plan_from_a_file_with_kinds) {
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 1);
    mixture_plan *p = malloc(sizeof *p);
    ps_error err;
    cr_assert_eq(mixture_plan_load(p, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(p->n_sources, 4);
    cr_assert_str_eq(p->source[1], "beta");
    cr_assert_str_eq(p->component[1], "pair");
    cr_assert_float_eq(p->weight[0], 0.5, 1e-12);
    cr_assert_float_eq(p->weight[1], 0.30, 1e-12); /* 0.45 x 2/3 */
    cr_assert_float_eq(p->weight[2], 0.15, 1e-12);
    cr_assert(p->have_rates);
    cr_assert_float_eq(p->achieved_reasoning, 0.5 * 0.9 + 0.15 * 0.1 + 0.05 * 0.5, 1e-9);
    free(p);
}

Test(mixture, shares_within_half_a_point_over_a_million) {
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 42);
    dataset *ds;
    ps_error err;
    cr_assert_eq(mixture_dataset_open(&ds, &cfg, &err), 0, "%s", err.msg);
    const mixture_plan *p = mixture_plan_of(ds);
    uint64_t counts[4];
    mixture_count_sources(ds, 0, 1000000, counts);
    for (int i = 0; i < 4; i++) {
        double share = counts[i] / 1e6;
        cr_assert(fabs(share - p->weight[i]) < 0.005, "%s: drawn %.4f, weight %.4f", p->source[i], share, p->weight[i]);
    }
    dataset_close(ds);
}

Test(mixture, deterministic_and_independent_of_batching) {
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 7);
    dataset *a, *b;
    ps_error err;
    cr_assert_eq(mixture_dataset_open(&a, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(mixture_dataset_open(&b, &cfg, &err), 0, "%s", err.msg);
    const int T = 100, N = 64;
    int *all = malloc((size_t)N * (T + 1) * sizeof *all), *one = malloc((size_t)(T + 1) * sizeof *one);
    cr_assert_eq(a->ops->read(a, 1000, N, T, all, &err), 0, "%s", err.msg);
    /* the same sequences one by one, in reverse, from another handle */
    for (int i = N - 1; i >= 0; i--) {
        cr_assert_eq(b->ops->read(b, 1000 + (uint64_t)i, 1, T, one, &err), 0, "%s", err.msg);
        cr_assert(!memcmp(one, all + (size_t)i * (T + 1), (size_t)(T + 1) * sizeof *one), "sequence %d differs", i);
        check_window(one, T + 1);
    }
    /* another seed gives other data */
    run_config other;
    mixture_config(&other, "test.cfg", 8);
    dataset *c;
    cr_assert_eq(mixture_dataset_open(&c, &other, &err), 0, "%s", err.msg);
    int *alt = malloc((size_t)N * (T + 1) * sizeof *alt);
    cr_assert_eq(c->ops->read(c, 1000, N, T, alt, &err), 0, "%s", err.msg);
    cr_assert(memcmp(all, alt, (size_t)N * (T + 1) * sizeof *all) != 0);
    free(all), free(one), free(alt);
    dataset_close(a), dataset_close(b), dataset_close(c);
}

Test(mixture, windows_cross_shard_boundaries) {
    /* alpha has 3 shards of 1820 tokens: long windows must span them. */
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 3);
    snprintf(cfg.data.kind, sizeof cfg.data.kind, "shards");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s/alpha", root);
    dataset *ds;
    ps_error err;
    cr_assert_eq(mixture_dataset_open(&ds, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(ds->vocab_size, (int)VOCAB);
    const int T = 2000;
    int *w = malloc((size_t)(T + 1) * 8 * sizeof *w);
    cr_assert_eq(ds->ops->read(ds, 0, 8, T, w, &err), 0, "%s", err.msg);
    for (int i = 0; i < 8; i++) check_window(w + (size_t)i * (T + 1), T + 1);
    /* a window longer than the source is an error naming it (so is one
     * of train.seq_len at open) */
    cr_assert_neq(ds->ops->read(ds, 0, 1, 10000, w, &err), 0);
    cr_assert(strstr(err.msg, "alpha"), "%s", err.msg);
    free(w);
    dataset_close(ds);
}

Test(mixture, inline_weights_and_errors) {
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 1);
    snprintf(cfg.data.weights, sizeof cfg.data.weights, "alpha:1, delta : 3");
    mixture_plan *p = malloc(sizeof *p);
    ps_error err;
    cr_assert_eq(mixture_plan_load(p, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(p->n_sources, 2);
    cr_assert_float_eq(p->weight[1], 0.75, 1e-12);
    snprintf(cfg.data.weights, sizeof cfg.data.weights, "alpha:1,nosuch:1");
    cr_assert_neq(mixture_plan_load(p, &cfg, &err), 0);
    cr_assert(strstr(err.msg, "nosuch"), "%s", err.msg);
    snprintf(cfg.data.weights, sizeof cfg.data.weights, "alpha=1");
    cr_assert_neq(mixture_plan_load(p, &cfg, &err), 0);
    cr_assert(strstr(err.msg, "data.weights"), "%s", err.msg);
    /* an unknown setting in a mixture file names the file and line */
    char path[600];
    snprintf(path, sizeof path, "%s/bad.cfg", root);
    FILE *f = fopen(path, "w");
    fprintf(f, "name = \"bad\";\nwieghts = { alpha = 1.0; };\n");
    fclose(f);
    mixture_config(&cfg, "bad.cfg", 1);
    cr_assert_neq(mixture_plan_load(p, &cfg, &err), 0);
    cr_assert(strstr(err.msg, "bad.cfg:2") && strstr(err.msg, "wieghts"), "%s", err.msg);
    free(p);
}

Test(mixture, every_source_under_the_root) {
    char path[600];
    snprintf(path, sizeof path, "%s/all.cfg", root);
    FILE *f = fopen(path, "w");
    fprintf(f, "kinds = { all = { sources = \"*\"; }; };\nweights = { all = 1.0; };\n");
    fclose(f);
    run_config cfg;
    mixture_config(&cfg, "all.cfg", 1);
    mixture_plan *p = malloc(sizeof *p);
    ps_error err;
    cr_assert_eq(mixture_plan_load(p, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(p->n_sources, 4);
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) total += p->tokens[i];
    for (int i = 0; i < 4; i++) cr_assert_float_eq(p->weight[i], (double)p->tokens[i] / (double)total, 1e-12);
    free(p);
}

Test(mixture, category_targets_from_the_rates) {
    run_config cfg;
    mixture_config(&cfg, "test.cfg", 1);
    cfg.data.reasoning_share = 0.6;
    cfg.data.visual_share = 0.15;
    mixture_plan *p = malloc(sizeof *p);
    ps_error err;
    cr_assert_eq(mixture_plan_load(p, &cfg, &err), 0, "%s", err.msg);
    cr_assert(p->solved && p->feasible);
    cr_assert_float_eq(p->achieved_reasoning, 0.6, 1e-9);
    cr_assert_float_eq(p->achieved_visual, 0.15, 1e-9);
    free(p);
}

/* ---- the solver alone ---------------------------------------------------- */

static void check_simplex(const double *w, const double *base, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        cr_assert(w[i] >= 0 && (base[i] > 0 || w[i] == 0), "w[%d] = %g", i, w[i]);
        sum += w[i];
    }
    cr_assert_float_eq(sum, 1.0, 1e-12);
}

Test(solver, feasible_target_keeps_the_rest_in_proportion) {
    /* sources 3 and 4 have the same rates: their ratio (1:3) must survive */
    double base[5] = {0.2, 0.2, 0.2, 0.1, 0.3}, a[5] = {0.9, 0.1, 0.5, 0.3, 0.3}, b[5] = {0.05, 0.6, 0.2, 0.1, 0.1};
    double w[5];
    category_solution sol;
    ps_error err;
    cr_assert_eq(category_solve(5, base, a, b, 0.6, 0.2, w, &sol, &err), 0, "%s", err.msg);
    cr_assert(sol.feasible);
    check_simplex(w, base, 5);
    cr_assert_float_eq(sol.reasoning, 0.6, 1e-9);
    cr_assert_float_eq(sol.visual, 0.2, 1e-9);
    cr_assert_float_eq(w[4] / w[3], 3.0, 1e-9);
    /* KL optimality: log(w / base) is affine in the rates */
    double l1, l2, c0;
    /* solve for (c0, l1, l2) from sources 0, 1, 2 and check 3 */
    double m[3][4];
    for (int i = 0; i < 3; i++) m[i][0] = 1, m[i][1] = a[i], m[i][2] = b[i], m[i][3] = log(w[i] / base[i]);
    for (int c = 0; c < 3; c++)
        for (int r = 0; r < 3; r++)
            if (r != c) {
                double f = m[r][c] / m[c][c];
                for (int k = 0; k < 4; k++) m[r][k] -= f * m[c][k];
            }
    c0 = m[0][3] / m[0][0], l1 = m[1][3] / m[1][1], l2 = m[2][3] / m[2][2];
    cr_assert_float_eq(log(w[3] / base[3]), c0 + l1 * a[3] + l2 * b[3], 1e-7);
}

Test(solver, one_target_only) {
    double base[3] = {0.5, 0.3, 0.2}, a[3] = {0.0, 0.5, 1.0}, b[3] = {0.9, 0.1, 0.0}, w[3];
    category_solution sol;
    ps_error err;
    cr_assert_eq(category_solve(3, base, a, b, 0.75, -1, w, &sol, &err), 0, "%s", err.msg);
    cr_assert(sol.feasible);
    check_simplex(w, base, 3);
    cr_assert_float_eq(sol.reasoning, 0.75, 1e-9);
}

Test(solver, unreachable_target_gives_the_nearest) {
    double base[4] = {0.25, 0.25, 0.25, 0.25}, a[4] = {0.1, 0.9, 0.5, 0.4}, b[4] = {0.1, 0.2, 0.6, 0.3}, w[4];
    category_solution sol;
    ps_error err;
    cr_assert_eq(category_solve(4, base, a, b, 0.95, 0.9, w, &sol, &err), 0, "%s", err.msg);
    cr_assert(!sol.feasible);
    check_simplex(w, base, 4);
    /* no mixture gets closer: brute force over the simplex */
    double best = (sol.reasoning - 0.95) * (sol.reasoning - 0.95) + (sol.visual - 0.9) * (sol.visual - 0.9);
    uint64_t key = rng_key(1, "solver-test");
    for (int t = 0; t < 200000; t++) {
        double x[4], s = 0, r = 0, v = 0;
        for (int i = 0; i < 4; i++) s += x[i] = -log(rng_uniform(key, (uint64_t)(4 * t + i)) + 1e-300);
        for (int i = 0; i < 4; i++) r += x[i] / s * a[i], v += x[i] / s * b[i];
        double d = (r - 0.95) * (r - 0.95) + (v - 0.9) * (v - 0.9);
        cr_assert(d >= best - 1e-9, "sample %d is closer (%g < %g)", t, d, best);
    }
    /* the nearest point is on the edge between sources 1 and 2 */
    cr_assert(w[0] < 1e-9 && w[3] < 1e-9, "w = %g %g %g %g", w[0], w[1], w[2], w[3]);
}

Test(solver, zero_base_stays_zero) {
    double base[3] = {0.5, 0.0, 0.5}, a[3] = {0.2, 1.0, 0.4}, b[3] = {0.0, 0.0, 0.0}, w[3];
    category_solution sol;
    ps_error err;
    cr_assert_eq(category_solve(3, base, a, b, 0.9, -1, w, &sol, &err), 0, "%s", err.msg);
    cr_assert_eq(w[1], 0.0);
    cr_assert(!sol.feasible);
    cr_assert_float_eq(sol.reasoning, 0.4, 1e-9);
}
