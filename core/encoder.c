/* encoder.c - builds a vision encoder from its op list and runs it. See encoder.h. */
#include "encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn.h"

enum op_kind { OP_CONV, OP_DWCONV, OP_ADD, OP_POOL, OP_MAXPOOL, OP_AVGPOOL, OP_CONCAT };

#define MAX_CONCAT 8

typedef struct enc_value {
    char name[160];
    int h, w, c;
    float *data;
} enc_value;

typedef struct enc_op {
    enum op_kind kind;
    int out, in, in2;
    int cat[MAX_CONCAT], n_cat; /* concat inputs */
    const float *wt, *bias;
    int kh, kw, sh, sw, same;
    enum cnn_act act;
} enc_op;

struct encoder {
    enc_preprocess prep;
    enc_value *values;
    int n_values;
    enc_op *ops;
    int n_ops;
    enc_block_info *blocks;
    int *block_value;
    int n_blocks;
    float *scratch;
    int patch_grid, patch_sub; /* > 0: the non-learned control */
};

static int find_value(const encoder *e, const char *name) {
    for (int i = 0; i < e->n_values; i++)
        if (!strcmp(e->values[i].name, name)) return i;
    return -1;
}

static int add_value(encoder *e, const char *name, int h, int w, int c) {
    enc_value *v = &e->values[e->n_values];
    snprintf(v->name, sizeof v->name, "%s", name);
    v->h = h, v->w = w, v->c = c;
    v->data = malloc(sizeof(float) * (size_t)h * w * c);
    return v->data ? e->n_values++ : -1;
}

static const enc_weight *find_weight(const enc_weight *ws, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ws[i].name, name)) return &ws[i];
    return NULL;
}

static int parse_act(const char *s, enum cnn_act *act) {
    if (!strcmp(s, "none")) *act = CNN_ACT_NONE;
    else if (!strcmp(s, "relu")) *act = CNN_ACT_RELU;
    else if (!strcmp(s, "relu6")) *act = CNN_ACT_RELU6;
    else return -1;
    return 0;
}

/* conv / dwconv: checks the kernel against the input and adds the output value. */
static int build_conv(encoder *e, enc_op *op, int depthwise, char f[][160], const enc_weight *ws, int nw, int line,
                      ps_error *err) {
    const enc_weight *w = find_weight(ws, nw, f[3]), *b = find_weight(ws, nw, f[4]);
    if (!w || !b) return ps_fail(err, "graph line %d: weight '%s' missing", line, !w ? f[3] : f[4]);
    const enc_value *x = &e->values[op->in];
    int cout = depthwise ? w->shape[2] * w->shape[3] : w->shape[3];
    if (w->ndim != 4 || w->shape[2] != x->c || (depthwise && w->shape[3] != 1) || b->ndim != 1 || b->shape[0] != cout)
        return ps_fail(err, "graph line %d: weight '%s' [%d,%d,%d,%d] does not fit input '%s' with %d channels", line,
                       f[3], w->shape[0], w->shape[1], w->shape[2], w->shape[3], x->name, x->c);
    op->wt = w->data, op->bias = b->data;
    op->kh = w->shape[0], op->kw = w->shape[1];
    op->sh = atoi(f[5]), op->sw = atoi(f[6]);
    op->same = !strcmp(f[7], "SAME");
    if (op->sh < 1 || op->sw < 1 || (!op->same && strcmp(f[7], "VALID")) || parse_act(f[8], &op->act))
        return ps_fail(err, "graph line %d: bad strides, padding '%s' or activation '%s'", line, f[7], f[8]);
    int p;
    int oh = cnn_out_size(x->h, op->kh, op->sh, op->same, &p), ow = cnn_out_size(x->w, op->kw, op->sw, op->same, &p);
    op->kind = depthwise ? OP_DWCONV : OP_CONV;
    return (op->out = add_value(e, f[1], oh, ow, cout)) < 0 ? ps_fail(err, "graph: out of memory") : 0;
}

/* concat OUT A B ...: channels side by side, same grid. */
static int build_concat(encoder *e, enc_op *op, char f[][160], int nf, int line, ps_error *err) {
    if (nf < 4 || nf - 2 > MAX_CONCAT) return ps_fail(err, "graph line %d: concat takes 2 to %d inputs", line, MAX_CONCAT);
    if (find_value(e, f[1]) >= 0) return ps_fail(err, "graph line %d: tensor '%s' defined twice", line, f[1]);
    int c = 0;
    op->kind = OP_CONCAT, op->n_cat = nf - 2;
    for (int i = 0; i < op->n_cat; i++) {
        int v = op->cat[i] = find_value(e, f[2 + i]);
        if (v < 0) return ps_fail(err, "graph line %d: input '%s' unknown", line, f[2 + i]);
        if (e->values[v].h != e->values[op->cat[0]].h || e->values[v].w != e->values[op->cat[0]].w)
            return ps_fail(err, "graph line %d: concat of '%s' with a different grid", line, f[2 + i]);
        c += e->values[v].c;
    }
    op->in = op->cat[0];
    const enc_value *x = &e->values[op->in];
    if ((op->out = add_value(e, f[1], x->h, x->w, c)) < 0) return ps_fail(err, "graph: out of memory");
    e->n_ops++;
    return 0;
}

static int build_line(encoder *e, char f[][160], int nf, const enc_weight *ws, int nw, int line, ps_error *err) {
    if (!strcmp(f[0], "block")) {
        int v = nf == 3 ? find_value(e, f[2]) : -1;
        if (v < 0) return ps_fail(err, "graph line %d: block tensor '%s' unknown", line, nf == 3 ? f[2] : "");
        enc_block_info *b = &e->blocks[e->n_blocks];
        b->name = strdup(f[1]);
        b->h = e->values[v].h, b->w = e->values[v].w, b->c = e->values[v].c;
        e->block_value[e->n_blocks++] = v;
        return 0;
    }
    enc_op *op = &e->ops[e->n_ops];
    if (!strcmp(f[0], "concat")) return build_concat(e, op, f, nf, line, err);
    int want = !strcmp(f[0], "conv") || !strcmp(f[0], "dwconv") ? 9 : !strcmp(f[0], "add") ? 4 : !strcmp(f[0], "pool") ? 3
             : !strcmp(f[0], "maxpool") || !strcmp(f[0], "avgpool") ? 6 : 0;
    if (!want) return ps_fail(err, "graph line %d: unknown op '%s'", line, f[0]);
    if (nf != want) return ps_fail(err, "graph line %d: op '%s' takes %d fields, has %d", line, f[0], want, nf);
    if (find_value(e, f[1]) >= 0) return ps_fail(err, "graph line %d: tensor '%s' defined twice", line, f[1]);
    if ((op->in = find_value(e, f[2])) < 0) return ps_fail(err, "graph line %d: input '%s' unknown", line, f[2]);
    const enc_value *x = &e->values[op->in];
    int rc;
    if (!strcmp(f[0], "add")) {
        op->kind = OP_ADD;
        if ((op->in2 = find_value(e, f[3])) < 0) return ps_fail(err, "graph line %d: input '%s' unknown", line, f[3]);
        const enc_value *y = &e->values[op->in2];
        if (x->h != y->h || x->w != y->w || x->c != y->c)
            return ps_fail(err, "graph line %d: add of '%s' and '%s' with different shapes", line, f[2], f[3]);
        rc = (op->out = add_value(e, f[1], x->h, x->w, x->c)) < 0 ? -1 : 0;
    } else if (!strcmp(f[0], "pool")) {
        op->kind = OP_POOL;
        rc = (op->out = add_value(e, f[1], 1, 1, x->c)) < 0 ? -1 : 0;
    } else if (!strcmp(f[0], "maxpool") || !strcmp(f[0], "avgpool")) {
        op->kind = f[0][0] == 'm' ? OP_MAXPOOL : OP_AVGPOOL;
        op->kh = op->kw = atoi(f[3]), op->sh = op->sw = atoi(f[4]), op->same = !strcmp(f[5], "SAME");
        if (op->kh < 1 || op->sh < 1 || (!op->same && strcmp(f[5], "VALID")) || (!op->same && op->kh > x->h))
            return ps_fail(err, "graph line %d: bad pool size, stride or padding", line);
        int p;
        int oh = cnn_out_size(x->h, op->kh, op->sh, op->same, &p), ow = cnn_out_size(x->w, op->kw, op->sw, op->same, &p);
        rc = (op->out = add_value(e, f[1], oh, ow, x->c)) < 0 ? -1 : 0;
    } else
        return build_conv(e, op, !strcmp(f[0], "dwconv"), f, ws, nw, line, err) ? -1 : (e->n_ops++, 0);
    if (rc) return ps_fail(err, "graph: out of memory");
    e->n_ops++;
    return 0;
}

static encoder *encoder_alloc(int lines, const enc_preprocess *prep) {
    encoder *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->prep = *prep;
    e->values = calloc(lines + 1, sizeof *e->values);
    e->ops = calloc(lines + 1, sizeof *e->ops);
    e->blocks = calloc(lines + 1, sizeof *e->blocks);
    e->block_value = calloc(lines + 1, sizeof *e->block_value);
    if (!e->values || !e->ops || !e->blocks || !e->block_value || add_value(e, "input", prep->size, prep->size, 3) < 0) {
        encoder_free(e);
        return NULL;
    }
    return e;
}

/* The im2col buffer is shared by all convs: the largest one's size. */
static int size_scratch(encoder *e) {
    size_t most = 0;
    for (int i = 0; i < e->n_ops; i++) {
        const enc_op *op = &e->ops[i];
        const enc_value *x = &e->values[op->in];
        if (op->kind != OP_CONV) continue;
        size_t s = cnn_conv_scratch(x->h, x->w, x->c, op->kh, op->kw, op->sh, op->sw, op->same);
        if (s > most) most = s;
    }
    e->scratch = most ? malloc(sizeof(float) * most) : NULL;
    return most && !e->scratch ? -1 : 0;
}

int encoder_build(encoder **out, const char *graph, const enc_weight *weights, int n_weights,
                  const enc_preprocess *prep, ps_error *err) {
    int lines = 1;
    for (const char *p = graph; *p; p++) lines += *p == '\n';
    encoder *e = encoder_alloc(lines, prep);
    if (!e) return ps_fail(err, "encoder: out of memory");
    const char *p = graph;
    for (int line = 1; *p; line++) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[1024], f[10][160];
        int nf = 0;
        if (len >= sizeof buf) len = sizeof buf - 1;
        memcpy(buf, p, len), buf[len] = 0;
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && nf < 10; t = strtok_r(NULL, " ", &save))
            snprintf(f[nf++], sizeof f[0], "%s", t);
        if (nf > 0 && build_line(e, f, nf, weights, n_weights, line, err)) {
            encoder_free(e);
            return -1;
        }
        p = end ? end + 1 : p + len;
    }
    if (e->n_blocks == 0 || size_scratch(e)) {
        int none = e->n_blocks == 0;
        encoder_free(e);
        return ps_fail(err, "graph: %s", none ? "no block outputs" : "out of memory");
    }
    *out = e;
    return 0;
}

int encoder_build_patches(encoder **out, int grid, int sub, const enc_preprocess *prep, ps_error *err) {
    if (grid < 1 || sub < 1 || prep->size % (grid * sub))
        return ps_fail(err, "patches encoder: size %d is not a multiple of grid %d x sub %d", prep->size, grid, sub);
    encoder *e = encoder_alloc(1, prep);
    if (!e) return ps_fail(err, "encoder: out of memory");
    e->patch_grid = grid, e->patch_sub = sub;
    e->blocks[0] = (enc_block_info){strdup("patches"), grid, grid, 3 * sub * sub};
    e->n_blocks = 1;
    *out = e;
    return 0;
}

void encoder_free(encoder *e) {
    if (!e) return;
    for (int i = 0; i < e->n_values; i++) free(e->values[i].data);
    for (int i = 0; i < e->n_blocks; i++) free((char *)e->blocks[i].name);
    free(e->values), free(e->ops), free(e->blocks), free(e->block_value), free(e->scratch), free(e);
}

int encoder_blocks(const encoder *e) { return e->n_blocks; }
const enc_block_info *encoder_block(const encoder *e, int i) { return &e->blocks[i]; }
const enc_preprocess *encoder_prep(const encoder *e) { return &e->prep; }

int encoder_find_block(const encoder *e, const char *name) {
    for (int i = 0; i < e->n_blocks; i++)
        if (!strcmp(e->blocks[i].name, name)) return i;
    return -1;
}

int encoder_pooled_width(const encoder *e) {
    int n = 0;
    for (int i = 0; i < e->n_blocks; i++) n += e->blocks[i].c;
    return n;
}

double encoder_flops(const encoder *e) {
    double f = 0.0;
    for (int i = 0; i < e->n_ops; i++) {
        const enc_op *op = &e->ops[i];
        const enc_value *x = &e->values[op->in], *y = &e->values[op->out];
        if (op->kind == OP_CONV) f += 2.0 * y->h * y->w * y->c * op->kh * op->kw * x->c;
        if (op->kind == OP_DWCONV) f += 2.0 * y->h * y->w * y->c * op->kh * op->kw;
    }
    return f;
}

int encoder_preprocess(const enc_preprocess *p, const uint8_t *rgb, int h, int w, float *input, ps_error *err) {
    if (h < 1 || w < 1) return ps_fail(err, "image of size %dx%d", h, w);
    int side = p->pad_square ? (h > w ? h : w) : 0;
    int ih = side ? side : h, iw = side ? side : w, top = side ? (side - h) / 2 : 0, left = side ? (side - w) / 2 : 0;
    float *x = malloc(sizeof(float) * (size_t)ih * iw * 3);
    if (!x) return ps_fail(err, "image of %dx%d: out of memory", ih, iw);
    float pad = (float)(p->pad_color / 255.0);
    for (size_t i = 0; i < (size_t)ih * iw * 3; i++) x[i] = pad;
    for (int r = 0; r < h; r++)
        for (int q = 0; q < w * 3; q++) x[((size_t)(r + top) * iw + left) * 3 + q] = (float)(rgb[(size_t)r * w * 3 + q] / 255.0);
    if (ih == p->size && iw == p->size) /* nsfwjs resizes only when the size differs */
        memcpy(input, x, sizeof(float) * (size_t)ih * iw * 3);
    else
        cnn_resize_bilinear(x, ih, iw, 3, p->size, p->size, 1, input);
    free(x);
    for (size_t i = 0; i < (size_t)p->size * p->size * 3; i++) {
        float m = (float)((double)input[i] * p->norm_mul);
        input[i] = (float)((double)m - p->norm_sub);
    }
    return 0;
}

static void forward_patches(encoder *e, const float *input, float *grid) {
    int g = e->patch_grid, s = e->patch_sub, cell = e->prep.size / (g * s), size = e->prep.size;
    for (int ty = 0; ty < g * s; ty++)
        for (int tx = 0; tx < g * s; tx++) {
            double acc[3] = {0, 0, 0};
            for (int y = ty * cell; y < (ty + 1) * cell; y++)
                for (int x = tx * cell; x < (tx + 1) * cell; x++)
                    for (int ch = 0; ch < 3; ch++) acc[ch] += input[((size_t)y * size + x) * 3 + ch];
            int token = (ty / s) * g + tx / s, slot = (ty % s) * s + tx % s;
            for (int ch = 0; ch < 3; ch++) grid[(size_t)token * 3 * s * s + slot * 3 + ch] = (float)(acc[ch] / (cell * cell));
        }
}

static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void concat(encoder *e, const enc_op *op, enc_value *y) {
    size_t n = (size_t)y->h * y->w;
#pragma omp parallel for schedule(static)
    for (size_t p = 0; p < n; p++) {
        float *out = y->data + p * y->c;
        for (int i = 0; i < op->n_cat; i++) {
            const enc_value *x = &e->values[op->cat[i]];
            memcpy(out, x->data + p * x->c, sizeof(float) * x->c);
            out += x->c;
        }
    }
}

static void run_op(encoder *e, const enc_op *op) {
    const enc_value *x = &e->values[op->in];
    enc_value *y = &e->values[op->out];
    if (op->kind == OP_CONV)
        cnn_conv2d(x->data, x->h, x->w, x->c, op->wt, op->bias, op->kh, op->kw, y->c, op->sh, op->sw, op->same,
                   op->act, y->data, e->scratch);
    else if (op->kind == OP_DWCONV)
        cnn_depthwise(x->data, x->h, x->w, x->c, op->wt, op->bias, op->kh, op->kw, op->sh, op->sw, op->same, op->act,
                      y->data);
    else if (op->kind == OP_ADD)
        cnn_add(x->data, e->values[op->in2].data, (size_t)x->h * x->w * x->c, y->data);
    else if (op->kind == OP_MAXPOOL)
        cnn_maxpool(x->data, x->h, x->w, x->c, op->kh, op->sh, op->same, y->data);
    else if (op->kind == OP_AVGPOOL)
        cnn_avgpool(x->data, x->h, x->w, x->c, op->kh, op->sh, op->same, y->data);
    else if (op->kind == OP_CONCAT)
        concat(e, op, y);
    else
        cnn_global_mean(x->data, x->h, x->w, x->c, y->data);
}

void encoder_profile(encoder *e, const float *input, enc_profile *p) {
    memset(p, 0, sizeof *p);
    if (e->patch_grid) return;
    memcpy(e->values[0].data, input, sizeof(float) * (size_t)e->prep.size * e->prep.size * 3);
    for (int i = 0; i < e->n_ops; i++) {
        const enc_op *op = &e->ops[i];
        const enc_value *x = &e->values[op->in], *y = &e->values[op->out];
        double t0 = wall_s();
        run_op(e, op);
        double dt = wall_s() - t0;
        double f = 2.0 * y->h * y->w * y->c * op->kh * op->kw * (op->kind == OP_CONV ? x->c : 1);
        if (op->kind == OP_CONV) p->conv_s += dt, p->conv_flops += f;
        else if (op->kind == OP_DWCONV) p->depthwise_s += dt, p->depthwise_flops += f;
        else p->other_s += dt;
    }
}

int encoder_forward(encoder *e, const float *input, int grid_block, float *grid, float *pooled) {
    if (e->patch_grid) {
        const enc_block_info *b = &e->blocks[0];
        float *tmp = grid ? grid : malloc(sizeof(float) * (size_t)b->h * b->w * b->c);
        if (!tmp) return -1;
        forward_patches(e, input, tmp);
        if (pooled) cnn_global_mean(tmp, b->h, b->w, b->c, pooled);
        if (!grid) free(tmp);
        return 0;
    }
    memcpy(e->values[0].data, input, sizeof(float) * (size_t)e->prep.size * e->prep.size * 3);
    for (int i = 0; i < e->n_ops; i++) run_op(e, &e->ops[i]);
    size_t off = 0;
    for (int b = 0; b < e->n_blocks; b++) {
        const enc_value *v = &e->values[e->block_value[b]];
        if (pooled) cnn_global_mean(v->data, v->h, v->w, v->c, pooled + off);
        if (grid && b == grid_block) memcpy(grid, v->data, sizeof(float) * (size_t)v->h * v->w * v->c);
        off += v->c;
    }
    return 0;
}
