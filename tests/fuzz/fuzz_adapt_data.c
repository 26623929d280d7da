/* fuzz_adapt_data - an adaptation stage's LLaVA JSONL (adapt.data, stages/
 * adapt_data.h): {"id", "image", "image_set", "conversations": [{"from",
 * "value"}, ...]} lines, loaded one of three ways (by the input's length:
 * align's plain template, sft's chat template, blind's chat template with
 * the pictures withheld) against a
 * features folder made at start: set "coco" with pictures img-0..img-3
 * (img-3 failed to encode, /valid = 0). Each load either fails with a
 * message, or every good sample's tokens are inside the vocabulary, its
 * picture (if any) a valid row of its set, every step of two epochs' order
 * names each sample once per epoch, and its features read. */
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapt_data.h"
#include "fuzz_input.h"

#define WIDTH 3
#define VOCAB 260
static char dir[128];
static chat_template tpl;

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}
static void remove_dir(void) { nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS); }

static void make_features(void) {
    features_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.encoder, sizeof m.encoder, "fuzz");
    snprintf(m.layer, sizeof m.layer, "block_1");
    snprintf(m.set, sizeof m.set, "coco");
    snprintf(m.weights_sha256, sizeof m.weights_sha256, "%064d", 0);
    m.grid_h = m.grid_w = 2;
    m.width = WIDTH;
    char *ids[] = {"img-0", "img-1", "img-2", "img-3"};
    char path[256];
    snprintf(path, sizeof path, "%s/coco.h5", dir);
    features_writer *w;
    ps_error err = {0};
    float grid[4 * WIDTH];
    int rc = features_create(&w, path, &m, ids, 4, &err);
    for (int i = 0; rc == 0 && i < 4; i++) {
        for (int k = 0; k < 4 * WIDTH; k++) grid[k] = (float)(i + k);
        rc = features_write_row(w, i, i == 3 ? NULL : grid, NULL, &err);
    }
    if (rc || features_close(w, 1, 1, &err)) {
        fprintf(stderr, "fuzz_adapt_data: %s\n", err.msg);
        exit(1);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "/dev/shm/presight-fuzz-adapt-%d", (int)getpid());
    mkdir(dir, 0700);
    atexit(remove_dir);
    make_features();
    ps_error err = {0};
    if (chat_template_init(&tpl, NULL, VOCAB, &err)) {
        fprintf(stderr, "fuzz_adapt_data: %s\n", err.msg);
        exit(1);
    }
    return 0;
}

static void check_loaded(adapt_data *d) {
    for (int i = 0; i < d->n; i++) {
        const adapt_sample *s = &d->s[i];
        FUZZ_CHECK(s->id && s->tok.n > 0 && s->tok.n_train > 0, "sample %d: %d ids, %d trained", i, s->tok.n,
                   s->tok.n_train);
        for (int k = 0; k < s->tok.n; k++)
            FUZZ_CHECK(s->tok.ids[k] >= 0 && s->tok.ids[k] < VOCAB, "sample %s: id %d", s->id, s->tok.ids[k]);
        if (s->set >= 0) {
            FUZZ_CHECK(s->set < d->n_sets && s->row >= 0 && s->row < 3, "sample %s: set %d row %d", s->id, s->set, s->row);
            FUZZ_CHECK(s->tok.image_at >= 0 && s->tok.image_at <= s->tok.n, "sample %s: picture at %d", s->id,
                       s->tok.image_at);
            float out[4 * WIDTH];
            ps_error err = {0};
            FUZZ_CHECK(adapt_data_features(d, i, 4, out, &err) == 0, "sample %s: %s", s->id, err.msg);
            for (int k = 0; k < 4 * WIDTH; k++) FUZZ_CHECK(isfinite(out[k]), "sample %s: features not finite", s->id);
        }
    }
    int64_t steps = adapt_total_steps(d, 2);
    int *seen = calloc((size_t)d->n, sizeof *seen);
    if (!seen) return;
    for (int64_t step = 0; step < steps; step++) {
        const int *first = NULL;
        int n = 0;
        ps_error err = {0};
        FUZZ_CHECK(adapt_order_step(d, step, &first, &n, &err) == 0, "step %lld: %s", (long long)step, err.msg);
        FUZZ_CHECK(n >= 1 && n <= d->batch * 2, "step %lld: %d samples of batch %d", (long long)step, n, d->batch);
        for (int k = 0; k < n; k++) {
            FUZZ_CHECK(first[k] >= 0 && first[k] < d->n, "step %lld: sample %d of %d", (long long)step, first[k], d->n);
            seen[first[k]]++;
        }
    }
    for (int i = 0; i < d->n; i++) FUZZ_CHECK(seen[i] == 2, "sample %d seen %d times in 2 epochs", i, seen[i]);
    free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file in;
    if (fuzz_file_open(&in, data, size)) return 0;
    run_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.adapt.data, sizeof cfg.adapt.data, "%s", in.path);
    snprintf(cfg.adapt.features, sizeof cfg.adapt.features, "%s", dir);
    cfg.adapt.visual_tokens = 4;
    cfg.adapt.batch = 2;
    cfg.adapt.max_bad = size / 3 % 4 == 0 ? 0 : 1; /* 0: one bad line fails the load, naming it */
    cfg.train.seq_len = 48;
    cfg.train.seed = 7;
    const struct {
        chat_style style;
        int blind;
    } ways[] = {{CHAT_PLAIN, 0}, {CHAT_CHAT, 0}, {CHAT_CHAT, 1}};
    for (size_t w = size % 3; w == size % 3; w++) { /* one way per input: a third of the time each */
        adapt_data d;
        ps_error err = {0};
        if (adapt_data_load(&d, &cfg, &tpl, ways[w].style, ways[w].blind, &err) == 0) {
            FUZZ_CHECK(d.n >= 1 && d.n + d.n_bad == d.lines, "%d good + %d bad of %lld lines", d.n, d.n_bad,
                       (long long)d.lines);
            if (ways[w].blind) FUZZ_CHECK(d.visual == 0, "blind, but %d samples with a picture", d.visual);
            check_loaded(&d);
            adapt_data_free(&d);
        } else {
            FUZZ_CHECK(err.msg[0], "refused without a message");
        }
    }
    fuzz_file_close(&in);
    return 0;
}
