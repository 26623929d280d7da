/* eval_score.c - a task's predictions to results (rules in eval_score.h). */
#include "eval_score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eval_aggregate.h"
#include "eval_answer.h"
#include "eval_requests.h"
#include "stats.h"

void eval_score_opts_default(eval_score_opts *o) {
    o->tiers = EVAL_TIERS_ALL;
    o->relaxed_tolerance = 0.05;
    o->bootstrap_iters = 1000;
    o->seed = 1234;
    o->mme_pairs_only = 1;
}

typedef struct scoring {
    eval_prediction *p;
    size_t n;
    const eval_score_opts *o;
    eval_result **results;
    size_t *n_results;
    ps_error *err;
    double *score; /* per item, n */
} scoring;

static void tiers_text(unsigned tiers, char out[8]) {
    int k = 0;
    for (int t = 0; t < 3; t++)
        if (tiers & (1u << t)) out[k++] = (char)('1' + t);
    out[k] = 0;
}

static int add_result(scoring *S, const char *subset, const char *metric, double value, double stderr_, size_t n,
                      size_t failures) {
    eval_result *grown = realloc(*S->results, sizeof *grown * (*S->n_results + 1));
    if (!grown) return ps_fail(S->err, "out of memory");
    *S->results = grown;
    eval_result *r = &grown[(*S->n_results)++];
    memset(r, 0, sizeof *r);
    snprintf(r->task, sizeof r->task, "%s", S->p[0].task);
    snprintf(r->category, sizeof r->category, "%s", S->p[0].category ? S->p[0].category : "");
    snprintf(r->subset, sizeof r->subset, "%s", subset ? subset : "");
    snprintf(r->scorer, sizeof r->scorer, "%s", S->p[0].scorer ? S->p[0].scorer : "");
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    r->value = value, r->stderr_ = stderr_, r->n = n, r->parse_failures = failures;
    for (size_t i = 0; i < S->n && !(subset && *subset); i++) r->truncated += S->p[i].truncated != 0; /* the task's rows */
    snprintf(r->parser, sizeof r->parser, "%s", EVAL_PARSER_VERSION);
    tiers_text(S->o->tiers, r->tiers);
    r->prov = S->p[0].prov;
    return 0;
}

static int add_mean(scoring *S, const char *subset, const char *metric, const double *x, size_t n, size_t failures) {
    return add_result(S, subset, metric, stats_mean(x, n), stats_stderr(x, n), n, failures);
}

static int item_fail(scoring *S, const eval_prediction *p, const char *what) {
    return ps_fail(S->err, "task %s, item %s: %s", p->task, p->id, what);
}

/* ---------------------------------------------------------------- language */

static int score_multiple_choice(scoring *S) {
    double *acc_norm = malloc(sizeof *acc_norm * S->n);
    if (!acc_norm) return ps_fail(S->err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < S->n && !rc; i++) {
        eval_prediction *p = &S->p[i];
        if (p->n_choices < 1 || p->n_loglikelihoods != p->n_choices || p->gold < 0 || p->gold >= p->n_choices) {
            rc = item_fail(S, p, "needs one log-likelihood per choice and a gold index among them");
            break;
        }
        eval_mc_result m = eval_mc_score(p->loglikelihoods, (const char *const *)p->choices, p->n_choices, p->gold);
        p->parsed = m.pred, p->tier = 0, p->correct = m.acc;
        S->score[i] = m.acc, acc_norm[i] = m.acc_norm;
    }
    if (!rc) rc = add_mean(S, NULL, "acc", S->score, S->n, 0);
    if (!rc) rc = add_mean(S, NULL, "acc_norm", acc_norm, S->n, 0);
    free(acc_norm);
    return rc;
}

static int add_perplexity(scoring *S, const char *metric, const double *ll, const double *w, double transform_log2) {
    double ppl = stats_weighted_perplexity(ll, w, S->n), se;
    if (stats_weighted_perplexity_stderr(ll, w, S->n, S->o->bootstrap_iters, S->o->seed, &se, S->err)) return -1;
    if (transform_log2) /* bits per byte = log2(byte perplexity); stderr by the delta method */
        return add_result(S, NULL, metric, log2(ppl), se / (ppl * log(2.0)), S->n, 0);
    return add_result(S, NULL, metric, ppl, se, S->n, 0);
}

static int score_lambada(scoring *S) {
    double *ll = malloc(sizeof *ll * S->n * 2);
    if (!ll) return ps_fail(S->err, "out of memory");
    double *ones = ll + S->n;
    int rc = 0;
    for (size_t i = 0; i < S->n && !rc; i++) {
        eval_prediction *p = &S->p[i];
        if (p->n_loglikelihoods != 1 || !p->greedy) rc = item_fail(S, p, "needs one log-likelihood and its greedy flag");
        else ll[i] = p->loglikelihoods[0], ones[i] = 1, S->score[i] = p->correct = p->greedy[0];
    }
    if (!rc) rc = add_perplexity(S, "perplexity", ll, ones, 0);
    if (!rc) rc = add_mean(S, NULL, "acc", S->score, S->n, 0);
    free(ll);
    return rc;
}

static int score_rolling(scoring *S) {
    double *v = malloc(sizeof *v * S->n * 4);
    if (!v) return ps_fail(S->err, "out of memory");
    double *ll = v, *words = v + S->n, *bytes = v + 2 * S->n, *tokens = v + 3 * S->n;
    int rc = 0;
    for (size_t i = 0; i < S->n && !rc; i++) {
        eval_prediction *p = &S->p[i];
        if (!isfinite(p->loglikelihood) || p->words < 0 || p->bytes < 0 || p->tokens < 0)
            rc = item_fail(S, p, "needs loglikelihood, words, bytes and tokens");
        else ll[i] = p->loglikelihood, words[i] = (double)p->words, bytes[i] = (double)p->bytes, tokens[i] = (double)p->tokens;
    }
    if (!rc) rc = add_perplexity(S, "word_perplexity", ll, words, 0);
    if (!rc) rc = add_perplexity(S, "byte_perplexity", ll, bytes, 0);
    if (!rc) rc = add_perplexity(S, "bits_per_byte", ll, bytes, 1);
    if (!rc) rc = add_perplexity(S, "token_perplexity", ll, tokens, 0);
    free(v);
    return rc;
}

/* ---------------------------------------------------------------------- VQA */

static int need_output(scoring *S, const eval_prediction *p) {
    return p->output ? 0 : item_fail(S, p, "has no generated output");
}

/* Parses every output against its choices; scores 1/0; returns the unparsed count. */
static int parse_choices(scoring *S, size_t *failures) {
    *failures = 0;
    for (size_t i = 0; i < S->n; i++) {
        eval_prediction *p = &S->p[i];
        if (need_output(S, p)) return -1;
        if (p->n_choices < 1 || p->n_choices > 26 || p->gold < 0 || p->gold >= p->n_choices)
            return item_fail(S, p, "needs 1-26 choices and a gold index among them");
        eval_parsed got = eval_parse_choice(p->output, (const char *const *)p->choices, p->n_choices, S->o->tiers);
        p->parsed = got.choice, p->tier = got.tier;
        p->correct = S->score[i] = got.choice == p->gold;
        *failures += got.choice < 0;
    }
    return 0;
}

/* Per item_category means of S->score (items without a category are left out). */
static int add_by_item_category(scoring *S, const char *metric) {
    size_t m = 0;
    const char **keys = malloc(sizeof *keys * S->n);
    double *values = malloc(sizeof *values * S->n);
    if (!keys || !values) {
        free(keys), free(values);
        return ps_fail(S->err, "out of memory");
    }
    for (size_t i = 0; i < S->n; i++)
        if (S->p[i].item_category) keys[m] = S->p[i].item_category, values[m++] = S->score[i];
    int rc = 0;
    if (m) {
        eval_groups g;
        rc = eval_group_means(keys, values, m, &g, S->err);
        for (size_t k = 0; !rc && k < g.n; k++) rc = add_result(S, g.groups[k].key, metric, g.groups[k].mean, g.groups[k].stderr_, g.groups[k].n, 0);
        if (!rc) eval_groups_free(&g);
    }
    free(keys), free(values);
    return rc;
}

static int score_letter_loglikelihoods(scoring *S) {
    double *hit = malloc(sizeof *hit * S->n);
    if (!hit) return ps_fail(S->err, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < S->n; i++) {
        eval_prediction *p = &S->p[i];
        if (p->n_letter_loglikelihoods != p->n_choices) continue;
        int best = 0;
        for (int c = 1; c < p->n_choices; c++)
            if (p->letter_loglikelihoods[c] > p->letter_loglikelihoods[best]) best = c;
        hit[m++] = best == p->gold;
    }
    int rc = m ? add_mean(S, NULL, "acc_letter_ll", hit, m, 0) : 0;
    free(hit);
    return rc;
}

static int score_choice(scoring *S) {
    size_t failures;
    if (parse_choices(S, &failures)) return -1;
    if (add_mean(S, NULL, "acc", S->score, S->n, failures)) return -1;
    if (add_by_item_category(S, "acc")) return -1;
    return score_letter_loglikelihoods(S);
}

static int score_short(scoring *S, const char *scorer) {
    for (size_t i = 0; i < S->n; i++) {
        eval_prediction *p = &S->p[i];
        if (need_output(S, p)) return -1;
        if (p->n_answers < 1) return item_fail(S, p, "has no answers");
        double s = 0;
        if (!strcmp(scorer, "vqa")) {
            s = eval_vqa_accuracy(p->output, (const char *const *)p->answers, p->n_answers);
        } else {
            for (int a = 0; a < p->n_answers && !s; a++)
                s = !strcmp(scorer, "exact") ? eval_exact_match(p->output, p->answers[a])
                                             : eval_relaxed_match(p->output, p->answers[a], S->o->relaxed_tolerance);
        }
        p->correct = S->score[i] = s;
        p->parsed = -1, p->tier = 0;
    }
    if (add_mean(S, NULL, "acc", S->score, S->n, 0)) return -1;
    return add_by_item_category(S, "acc");
}

static int score_mme(scoring *S) {
    size_t failures = 0;
    for (size_t i = 0; i < S->n; i++) {
        eval_prediction *p = &S->p[i];
        if (need_output(S, p)) return -1;
        /* the ground truth through the same normalisation, as lmms-eval does */
        int truth = p->n_answers >= 1 ? eval_parse_yes_no(p->answers[0]) : -1;
        if (truth < 0) return item_fail(S, p, "MME needs answers[0] to be yes or no");
        if (!p->group) return item_fail(S, p, "MME needs the image as its group");
        int label = eval_parse_yes_no(p->output);
        p->parsed = label, p->tier = 0;
        p->correct = S->score[i] = label == truth;
        failures += label < 0;
    }
    /* categories in order of first appearance */
    const char **group = malloc(sizeof *group * S->n);
    double *correct = malloc(sizeof *correct * S->n);
    char *done = calloc(S->n, 1);
    int rc = group && correct && done ? 0 : ps_fail(S->err, "out of memory");
    double total = 0;
    for (size_t i = 0; i < S->n && !rc; i++) {
        if (done[i]) continue;
        const char *cat = S->p[i].item_category ? S->p[i].item_category : "";
        size_t m = 0;
        for (size_t j = i; j < S->n; j++) {
            const char *cj = S->p[j].item_category ? S->p[j].item_category : "";
            if (!done[j] && !strcmp(cj, cat)) done[j] = 1, group[m] = S->p[j].group, correct[m++] = S->score[j];
        }
        eval_mme mme;
        rc = eval_mme_category(group, correct, m, S->o->mme_pairs_only, &mme, S->err);
        if (rc) rc = ps_wrap(S->err, "task %s, category %s", S->p[0].task, cat);
        if (!rc) rc = add_result(S, cat, "acc", mme.acc, NAN, mme.questions, 0);
        if (!rc) rc = add_result(S, cat, "acc_plus", mme.acc_plus, NAN, mme.images, 0);
        if (!rc) rc = add_result(S, cat, "score", mme.score, NAN, mme.images, 0);
        total += mme.score;
    }
    free(group), free(correct), free(done);
    if (!rc) rc = add_result(S, NULL, "score", total, NAN, S->n, failures);
    return rc;
}

static int score_mmbench(scoring *S) {
    size_t failures;
    if (parse_choices(S, &failures)) return -1;
    const char **group = malloc(sizeof *group * S->n);
    if (!group) return ps_fail(S->err, "out of memory");
    for (size_t i = 0; i < S->n; i++) {
        group[i] = S->p[i].group;
        if (!group[i]) {
            free(group);
            return item_fail(S, &S->p[i], "MMBench needs its circular group");
        }
    }
    eval_circular c;
    int rc = eval_mmbench_circular(group, S->score, S->n, &c, S->err);
    if (!rc) rc = add_result(S, NULL, "acc", c.acc, c.stderr_, c.groups, failures);
    if (!rc) rc = add_mean(S, NULL, "acc_vanilla", S->score, S->n, failures);
    free(group);
    return rc;
}

static int score_existence(scoring *S) {
    size_t failures;
    if (parse_choices(S, &failures)) return -1;
    double *share = malloc(sizeof *share * S->n);
    if (!share) return ps_fail(S->err, "out of memory");
    for (size_t i = 0; i < S->n; i++) share[i] = S->p[i].area_share;
    eval_by_size b;
    int rc = eval_existence_by_size(share, S->score, S->n, &b, S->err);
    free(share);
    if (rc) return ps_wrap(S->err, "task %s", S->p[0].task);
    const char *names[] = {"acc_small", "acc_medium", "acc_large"};
    for (int s = 0; s < EVAL_N_SIZES && !rc; s++) rc = add_result(S, NULL, names[s], b.acc[s], b.stderr_[s], b.n[s], 0);
    if (!rc) rc = add_result(S, NULL, "acc", b.weighted, b.weighted_stderr, S->n, failures);
    if (!rc) rc = add_result(S, NULL, "acc_macro", b.macro, NAN, S->n, failures);
    return rc;
}

int eval_score_task(eval_prediction *preds, size_t n, const eval_score_opts *o, eval_result **results,
                    size_t *n_results, ps_error *err) {
    if (!n) return ps_fail(err, "scoring: no predictions");
    const char *kind = preds[0].kind, *scorer = preds[0].scorer;
    if (!kind || !scorer) return ps_fail(err, "task %s: predictions lack kind or scorer", preds[0].task);
    for (size_t i = 1; i < n; i++)
        if (!preds[i].kind || !preds[i].scorer || strcmp(preds[i].kind, kind) || strcmp(preds[i].scorer, scorer))
            return ps_fail(err, "task %s, item %s: kind/scorer differ from the task's first item", preds[i].task, preds[i].id);
    scoring S = {preds, n, o, results, n_results, err, malloc(sizeof(double) * n)};
    if (!S.score) return ps_fail(err, "out of memory");
    int rc;
    if (!strcmp(kind, "multiple_choice") || !strcmp(kind, "partial")) rc = score_multiple_choice(&S);
    else if (!strcmp(kind, "loglikelihood")) rc = score_lambada(&S);
    else if (!strcmp(kind, "rolling")) rc = score_rolling(&S);
    else if (strcmp(kind, "vqa")) rc = ps_fail(err, "task %s: unknown kind '%s'", preds[0].task, kind);
    else if (!strcmp(scorer, "choice")) rc = score_choice(&S);
    else if (!strcmp(scorer, "exact") || !strcmp(scorer, "relaxed") || !strcmp(scorer, "vqa")) rc = score_short(&S, scorer);
    else if (!strcmp(scorer, "mme")) rc = score_mme(&S);
    else if (!strcmp(scorer, "mmbench")) rc = score_mmbench(&S);
    else if (!strcmp(scorer, "existence")) rc = score_existence(&S);
    else rc = ps_fail(err, "task %s: unknown scorer '%s'", preds[0].task, scorer);
    free(S.score);
    return rc;
}

int eval_score_all(eval_prediction *preds, size_t n, const eval_score_opts *o, eval_result **results,
                   size_t *n_results, ps_error *err) {
    /* stable partition by task, tasks in order of first appearance */
    eval_prediction *sorted = malloc(sizeof *sorted * (n ? n : 1));
    size_t *from = malloc(sizeof *from * (n ? n : 1));
    char *taken = calloc(n ? n : 1, 1);
    if (!sorted || !from || !taken) {
        free(sorted), free(from), free(taken);
        return ps_fail(err, "out of memory");
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (taken[i]) continue;
        size_t m = 0;
        for (size_t j = i; j < n; j++)
            if (!taken[j] && !strcmp(preds[j].task, preds[i].task)) taken[j] = 1, from[m] = j, sorted[m++] = preds[j];
        rc = eval_score_task(sorted, m, o, results, n_results, err);
        for (size_t k = 0; k < m; k++) preds[from[k]] = sorted[k]; /* scores written back */
    }
    free(sorted), free(from), free(taken);
    return rc;
}

/* Whether a result row is a task's headline accuracy that the means take in. */
static int headline(const eval_result *r) {
    return !r->subset[0] && !strcmp(r->metric, "acc") && strcmp(r->scorer, "lambada") && strcmp(r->scorer, "mme") &&
           strcmp(r->task, EVAL_SUMMARY_TASK);
}

static int add_summary_row(eval_result **out, size_t *n_out, const char *category, double sum, double var, size_t k,
                           const eval_result *like, ps_error *err) {
    eval_result *grown = realloc(*out, sizeof *grown * (*n_out + 1));
    if (!grown) return ps_fail(err, "out of memory");
    *out = grown;
    eval_result *r = &grown[(*n_out)++];
    memset(r, 0, sizeof *r);
    snprintf(r->task, sizeof r->task, "%s", EVAL_SUMMARY_TASK);
    snprintf(r->category, sizeof r->category, "%s", category);
    snprintf(r->metric, sizeof r->metric, "acc");
    r->value = sum / (double)k;
    r->stderr_ = sqrt(var) / (double)k;
    r->n = k;
    snprintf(r->parser, sizeof r->parser, "%s", like->parser);
    snprintf(r->tiers, sizeof r->tiers, "%s", like->tiers);
    r->prov = like->prov;
    return 0;
}

int eval_summarize(const eval_result *r, size_t n, eval_result **out, size_t *n_out, ps_error *err) {
    double all_sum = 0, all_var = 0;
    size_t all_k = 0;
    const eval_result *first = NULL;
    char *done = calloc(n ? n : 1, 1);
    if (!done) return ps_fail(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (done[i] || !headline(&r[i])) continue;
        double sum = 0, var = 0;
        size_t k = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && headline(&r[j]) && !strcmp(r[j].category, r[i].category)) {
                done[j] = 1;
                sum += r[j].value, k++;
                var += isfinite(r[j].stderr_) ? r[j].stderr_ * r[j].stderr_ : 0;
            }
        rc = add_summary_row(out, n_out, r[i].category, sum, var, k, &r[i], err);
        all_sum += sum, all_var += var, all_k += k;
        if (!first) first = &r[i];
    }
    if (!rc && all_k) rc = add_summary_row(out, n_out, "overall", all_sum, all_var, all_k, first, err);
    free(done);
    return rc;
}
