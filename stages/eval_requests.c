/* eval_requests.c - lm-eval's request construction and multiple-choice scoring (see the
 * header for the rules and where they come from). */
#include "eval_requests.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eval_rolling_windows(size_t n, size_t max_len, size_t context_len, eval_window **out, size_t *n_out,
                         ps_error *err) {
    *out = NULL, *n_out = 0;
    if (context_len < 1 || context_len > max_len)
        return ps_fail(err, "rolling windows: context_len %zu, expected in [1, max_len = %zu]", context_len, max_len);
    if (n == 0) return 0;
    size_t pred_len = max_len - context_len + 1;
    size_t cap = 1 + (n + pred_len - 1) / pred_len;
    eval_window *w = malloc(sizeof *w * cap);
    if (!w) return ps_fail(err, "rolling windows: out of memory");
    size_t first = n < max_len ? n : max_len, count = 0, predicted = first;
    /* ([prefix] + t[:first-1], t[:first]) made disjoint: context [prefix] */
    w[count++] = (eval_window){.prefix = 1, .ctx_begin = 0, .cont_begin = 0, .cont_end = first};
    while (predicted < n) {
        size_t window_pred = n - predicted < pred_len ? n - predicted : pred_len;
        size_t end = predicted + window_pred;
        /* (t[end-max_len-1 : end-1], t[end-window_pred : end]), then the context keeps
         * its first len(a) - (len(b) - 1) tokens */
        w[count++] = (eval_window){.prefix = 0, .ctx_begin = end - max_len - 1, .cont_begin = end - window_pred,
                                   .cont_end = end};
        predicted += window_pred;
    }
    *out = w, *n_out = count;
    return 0;
}

/* The byte length of the UTF-8 character ending at text[len-1] if it is one of Python's
 * whitespace characters, else 0. */
static size_t trailing_space(const unsigned char *s, size_t len) {
    unsigned char c = s[len - 1];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
    if (len >= 2 && s[len - 2] == 0xc2 && (c == 0x85 || c == 0xa0)) return 2;
    if (len >= 3) {
        unsigned a = s[len - 3], b = s[len - 2];
        unsigned cp = ((a & 0x0f) << 12) | ((b & 0x3f) << 6) | (c & 0x3f);
        if ((a & 0xf0) == 0xe0 && (b & 0xc0) == 0x80 && (c & 0xc0) == 0x80 &&
            (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
             cp == 0x205f || cp == 0x3000))
            return 3;
    }
    return 0;
}

size_t eval_rstrip_len(const char *text, size_t len) {
    size_t k;
    while (len && (k = trailing_space((const unsigned char *)text, len))) len -= k;
    return len;
}

static int encode(const tokenizer *tok, const char *text, size_t len, tokenizer_ids *out, ps_error *err) {
    out->n = 0;
    return tokenizer_encode(tok, text, len, 0, out, err);
}

static int push_id(tokenizer_ids *v, uint32_t id, ps_error *err) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        uint32_t *grown = realloc(v->ids, sizeof *grown * cap);
        if (!grown) return ps_fail(err, "out of memory");
        v->ids = grown, v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

int eval_encode_pair(const tokenizer *tok, const char *context, const char *continuation, uint32_t prefix,
                     tokenizer_ids *ctx, tokenizer_ids *cont, int *merged, ps_error *err) {
    if (merged) *merged = 0;
    ctx->n = cont->n = 0;
    if (!*context) {
        if (push_id(ctx, prefix, err)) return -1;
        return encode(tok, continuation, strlen(continuation), cont, err);
    }
    size_t n_ctx = strlen(context), n_cont = strlen(continuation);
    size_t kept = eval_rstrip_len(context, n_ctx);
    /* whole = context[:kept] + context[kept:] + continuation = context + continuation */
    char *whole_text = malloc(n_ctx + n_cont + 1);
    if (!whole_text) return ps_fail(err, "out of memory");
    memcpy(whole_text, context, n_ctx);
    memcpy(whole_text + n_ctx, continuation, n_cont + 1);
    tokenizer_ids whole = {0};
    int rc = encode(tok, whole_text, n_ctx + n_cont, &whole, err);
    if (!rc) rc = encode(tok, context, kept, ctx, err);
    free(whole_text);
    if (!rc) {
        size_t from = ctx->n < whole.n ? ctx->n : whole.n;
        if (merged) *merged = from < ctx->n || memcmp(whole.ids, ctx->ids, sizeof *ctx->ids * from) != 0;
        for (size_t i = from; i < whole.n && !rc; i++) rc = push_id(cont, whole.ids[i], err);
    }
    tokenizer_ids_free(&whole);
    return rc;
}

int eval_request_input(const uint32_t *ctx, size_t n_ctx, const uint32_t *cont, size_t n_cont, size_t max_len,
                       uint32_t *input, size_t *n_input, size_t *first_scored, ps_error *err) {
    if (n_cont == 0) return ps_fail(err, "request: empty continuation");
    if (n_cont > max_len) return ps_fail(err, "request: continuation of %zu tokens exceeds the %zu positions", n_cont, max_len);
    /* (ctx + cont)[-(max_len + 1):][:-1] */
    size_t total = n_ctx + n_cont, keep = total < max_len + 1 ? total : max_len + 1, start = total - keep;
    size_t m = 0;
    for (size_t i = start; i + 1 < total; i++) input[m++] = i < n_ctx ? ctx[i] : cont[i - n_ctx];
    *n_input = m;
    *first_scored = m - n_cont;
    return 0;
}

/* numpy's argmax: the first maximum; a NaN, if any, is the answer at its first place. */
static int argmax(const double *v, int n) {
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(v[i])) return i;
        if (v[i] > v[best]) best = i;
    }
    return best;
}

size_t eval_char_count(const char *text) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) n += (*p & 0xc0) != 0x80;
    return n;
}

eval_mc_result eval_mc_score(const double *ll, const char *const *texts, int n, int gold) {
    eval_mc_result r = {-1, -1, -1, 0, 0, 0};
    if (n < 1) return r;
    double *norm = malloc(sizeof *norm * (size_t)n * 2);
    if (!norm) return r;
    double *by_bytes = norm + n;
    for (int i = 0; i < n; i++) {
        norm[i] = ll[i] / (double)eval_char_count(texts[i]);
        by_bytes[i] = ll[i] / (double)strlen(texts[i]);
    }
    r.pred = argmax(ll, n), r.pred_norm = argmax(norm, n), r.pred_bytes = argmax(by_bytes, n);
    r.acc = r.pred == gold, r.acc_norm = r.pred_norm == gold, r.acc_bytes = r.pred_bytes == gold;
    free(norm);
    return r;
}

size_t eval_word_count(const char *text) {
    /* re.split(r"\s+", s) gives (number of whitespace runs) + 1 pieces */
    size_t len = strlen(text), runs = 0, i = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (i < len) {
        /* the longest whitespace character starting at i */
        size_t k = 0;
        for (size_t try = 1; try <= 3 && i + try <= len && !k; try++)
            if (trailing_space(s + i, try) == try) k = try;
        if (!k) {
            i++;
            continue;
        }
        runs++;
        while (i < len) {
            size_t step = 0;
            for (size_t try = 1; try <= 3 && i + try <= len && !step; try++)
                if (trailing_space(s + i, try) == try) step = try;
            if (!step) break;
            i += step;
        }
    }
    return runs + 1;
}
