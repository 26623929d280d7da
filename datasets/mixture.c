/* mixture.c - mixture files, the category-share solver and the sampler over
 * ingested sources (see mixture.h). */
#include "mixture.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"
#include "sha256.h"

/* ------------------------------------------------------------ mixture files */

typedef struct weight_entry {
    char name[SHARD_NAME_MAX];
    double weight;
} weight_entry;

typedef struct mixture_file {
    config_t cfg;
    weight_entry w[MIXTURE_MAX_SOURCES];
    int n;
    config_setting_t *kinds; /* the "kinds" group, or NULL */
} mixture_file;

static int is_file(const char *path) { return access(path, R_OK) == 0; }

/* data.mixture: a path (has '/' or ends in .cfg), or a name looked up as
 * mixtures/NAME.cfg beside the run config, then config/mixtures/NAME.cfg
 * from the working directory. */
static int find_mixture(const char *name, const char *config_source, char *out, size_t size, ps_error *err) {
    size_t n = strlen(name);
    if (strchr(name, '/') || (n > 4 && strcmp(name + n - 4, ".cfg") == 0)) {
        snprintf(out, size, "%s", name);
        if (is_file(out)) return 0;
        return ps_fail(err, "data.mixture = \"%s\": no such file", name);
    }
    char dir[CONFIG_STR_MAX];
    snprintf(dir, sizeof dir, "%s", config_source);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    if ((size_t)snprintf(out, size, "%s/mixtures/%s.cfg", dir, name) < size && config_source[0] && is_file(out))
        return 0;
    if ((size_t)snprintf(out, size, "config/mixtures/%s.cfg", name) < size && is_file(out)) return 0;
    return ps_fail(err,
                   "data.mixture = \"%s\": neither %s/mixtures/%s.cfg nor config/mixtures/%s.cfg exists (names: "
                   "mix0..mix10, pooled, a kind such as code, or a source such as moby-dick)",
                   name, dir, name, name);
}

static int add_weight(weight_entry *w, int *n, const char *name, double value, const char *where, ps_error *err) {
    if (!(value >= 0) || !isfinite(value)) return ps_fail(err, "%s: weight of %s must be >= 0 (got %g)", where, name, value);
    for (int i = 0; i < *n; i++)
        if (!strcmp(w[i].name, name)) return ps_fail(err, "%s: %s is weighed twice", where, name);
    if (*n == MIXTURE_MAX_SOURCES) return ps_fail(err, "%s: more than %d weights", where, MIXTURE_MAX_SOURCES);
    snprintf(w[*n].name, SHARD_NAME_MAX, "%s", name);
    w[(*n)++].weight = value;
    return 0;
}

static double number_of(const config_setting_t *s, int *ok) {
    int t = config_setting_type(s);
    *ok = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
    return t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s) : (double)config_setting_get_int64(s);
}

static int read_weights(mixture_file *m, const char *path, ps_error *err) {
    config_setting_t *g = config_lookup(&m->cfg, "weights");
    if (!g || !config_setting_is_group(g))
        return ps_fail(err, "%s: needs a group weights = { kind_or_source = weight; ... };", path);
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        int ok;
        double v = number_of(s, &ok);
        char where[CONFIG_STR_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", path, config_setting_source_line(s));
        if (!ok) return ps_fail(err, "%s: weights.%s must be a number", where, config_setting_name(s));
        if (add_weight(m->w, &m->n, config_setting_name(s), v, where, err)) return -1;
    }
    return 0;
}

/* Every top-level setting must be one the format knows. */
static int check_keys(mixture_file *m, const char *path, ps_error *err) {
    config_setting_t *root = config_root_setting(&m->cfg);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *k = config_setting_name(s);
        if (strcmp(k, "name") && strcmp(k, "description") && strcmp(k, "weights") && strcmp(k, "kinds"))
            return ps_fail(err, "%s:%d: unknown setting '%s' (a mixture file has name, description, weights, kinds)",
                           path, config_setting_source_line(s), k);
    }
    return 0;
}

static int mixture_file_read(mixture_file *m, const char *path, int need_weights, ps_error *err) {
    memset(m, 0, sizeof *m);
    config_init(&m->cfg);
    char dir[CONFIG_STR_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    config_set_include_dir(&m->cfg, slash ? dir : ".");
    if (!config_read_file(&m->cfg, path)) {
        int rc = config_error_type(&m->cfg) == CONFIG_ERR_FILE_IO
                     ? ps_fail(err, "%s: cannot read the mixture file", path)
                     : ps_fail(err, "%s:%d: %s", config_error_file(&m->cfg) ? config_error_file(&m->cfg) : path,
                               config_error_line(&m->cfg), config_error_text(&m->cfg));
        config_destroy(&m->cfg);
        return rc;
    }
    m->kinds = config_lookup(&m->cfg, "kinds");
    if (check_keys(m, path, err) || (need_weights && read_weights(m, path, err))) {
        config_destroy(&m->cfg);
        return -1;
    }
    return 0;
}

/* "code:0.35, web:0.40" -> entries (replacing the file's). */
static int parse_inline_weights(const char *text, weight_entry *w, int *n, ps_error *err) {
    *n = 0;
    char buf[CONFIG_STR_MAX];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ') item++;
        char *colon = strchr(item, ':'), *end;
        if (!colon) return ps_fail(err, "data.weights: '%s' is not name:weight (e.g. \"code:0.35,web:0.40\")", item);
        *colon = 0;
        char *name_end = colon;
        while (name_end > item && name_end[-1] == ' ') *--name_end = 0;
        errno = 0;
        double v = strtod(colon + 1, &end);
        while (*end == ' ') end++;
        if (errno || end == colon + 1 || *end) return ps_fail(err, "data.weights: the weight of %s is not a number", item);
        if (add_weight(w, n, item, v, "data.weights", err)) return -1;
    }
    if (*n == 0) return ps_fail(err, "data.weights is empty");
    return 0;
}

/* ------------------------------------------------------------ expanding kinds */

static int read_card_tokens(const char *root, const char *source, uint64_t *tokens, ps_error *err) {
    char dir[2 * CONFIG_STR_MAX];
    snprintf(dir, sizeof dir, "%s/%s", root, source);
    shard_source *s = NULL;
    if (shard_source_open(&s, dir, err)) return -1;
    *tokens = s->tokens;
    shard_source_close(s);
    return 0;
}

static int plan_add(mixture_plan *p, const char *source, const char *component, double weight, ps_error *err) {
    for (int i = 0; i < p->n_sources; i++)
        if (!strcmp(p->source[i], source)) {
            p->base[i] += weight;
            return 0;
        }
    if (p->n_sources == MIXTURE_MAX_SOURCES) return ps_fail(err, "a mixture of more than %d sources", MIXTURE_MAX_SOURCES);
    int i = p->n_sources++;
    snprintf(p->source[i], SHARD_NAME_MAX, "%s", source);
    snprintf(p->component[i], SHARD_NAME_MAX, "%s", component);
    p->base[i] = weight;
    return read_card_tokens(p->root, source, &p->tokens[i], err) ? ps_wrap(err, "source %s (in %s): ", source, component)
                                                                 : 0;
}

/* sources = "*": every source under the shards root, pooled by tokens. */
static int expand_all_sources(mixture_plan *p, const char *name, double weight, ps_error *err) {
    char (*names)[SHARD_NAME_MAX] = NULL;
    int n = shard_root_sources(p->root, &names, err);
    if (n <= 0) {
        free(names);
        return n < 0 ? -1 : ps_fail(err, "kinds.%s = \"*\": no ingested source under %s", name, p->root);
    }
    uint64_t *tokens = calloc((size_t)n, sizeof *tokens), total = 0;
    int rc = tokens ? 0 : ps_fail(err, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = read_card_tokens(p->root, names[i], &tokens[i], err);
        total += tokens[i];
    }
    if (rc == 0 && total == 0) rc = ps_fail(err, "kinds.%s = \"*\": the sources under %s are empty", name, p->root);
    for (int i = 0; rc == 0 && i < n; i++)
        if (tokens[i]) rc = plan_add(p, names[i], name, weight * (double)tokens[i] / (double)total, err);
    free(tokens);
    free(names);
    return rc;
}

/* One kind: sources = [ ... ] (by tokens), { a = x; ... } (as written) or
 * "*" (everything under the root, by tokens). */
static int expand_kind(mixture_plan *p, const config_setting_t *kind, const char *name, double weight, const char *file,
                       ps_error *err) {
    const config_setting_t *src = config_setting_get_member(kind, "sources");
    if (src && config_setting_type(src) == CONFIG_TYPE_STRING && !strcmp(config_setting_get_string(src), "*"))
        return expand_all_sources(p, name, weight, err);
    int n = src ? config_setting_length(src) : 0;
    if (!src || n == 0 || !(config_setting_is_array(src) || config_setting_is_group(src)))
        return ps_fail(err, "%s:%d: kinds.%s needs sources = [ \"a\", ... ], { a = 1.0; ... } or \"*\"", file,
                       config_setting_source_line(kind), name);
    double share[MIXTURE_MAX_SOURCES], total = 0;
    const char *names[MIXTURE_MAX_SOURCES];
    for (int i = 0; i < n && i < MIXTURE_MAX_SOURCES; i++) {
        config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
        int ok = 1;
        names[i] = config_setting_is_array(src) ? config_setting_get_string(e) : config_setting_name(e);
        if (!names[i]) return ps_fail(err, "%s:%d: kinds.%s.sources holds a non-string", file, config_setting_source_line(e), name);
        uint64_t tokens = 0;
        if (config_setting_is_group(src)) share[i] = number_of(e, &ok);
        else if (read_card_tokens(p->root, names[i], &tokens, err) == 0) share[i] = (double)tokens;
        else return ps_wrap(err, "source %s of kind %s (%s): ", names[i], name, file);
        if (!ok || share[i] < 0) return ps_fail(err, "%s:%d: kinds.%s.sources.%s must be a number >= 0", file,
                                                config_setting_source_line(e), name, names[i]);
        total += share[i];
    }
    if (total <= 0) return ps_fail(err, "%s: kinds.%s has no tokens (or all its weights are 0)", file, name);
    for (int i = 0; i < n && i < MIXTURE_MAX_SOURCES; i++)
        if (share[i] > 0 && plan_add(p, names[i], name, weight * share[i] / total, err)) return -1;
    return 0;
}

static int expand_all(mixture_plan *p, const weight_entry *w, int n, const config_setting_t *kinds, const char *file,
                      ps_error *err) {
    double total = 0;
    for (int i = 0; i < n; i++) total += w[i].weight;
    if (!(total > 0)) return ps_fail(err, "%s: the weights sum to 0", file[0] ? file : "data.weights");
    for (int i = 0; i < n; i++) {
        if (w[i].weight == 0) continue;
        const config_setting_t *kind = kinds ? config_setting_get_member(kinds, w[i].name) : NULL;
        int rc = kind ? expand_kind(p, kind, w[i].name, w[i].weight / total, file, err)
                      : plan_add(p, w[i].name, w[i].name, w[i].weight / total, err);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ label rates */

static void attach_rates(mixture_plan *p) {
    char path[2 * CONFIG_STR_MAX];
    snprintf(path, sizeof path, "%s/label_rates.tsv", p->root);
    label_rates *rates = NULL;
    int n = 0;
    ps_error ignore;
    p->have_rates = 0;
    if (!is_file(path) || label_rates_read(path, &rates, &n, &ignore)) return;
    int found = 0;
    for (int i = 0; i < p->n_sources; i++)
        for (int j = 0; j < n; j++)
            if (!strcmp(rates[j].source, p->source[i]) && rates[j].segments > 0) {
                p->rates[i] = rates[j];
                found++;
                break;
            }
    p->have_rates = found == p->n_sources;
    free(rates);
}

void mixture_category_shares(const mixture_plan *p, const double *w, double *reasoning, double *visual) {
    *reasoning = *visual = -1;
    if (!p->have_rates) return;
    *reasoning = *visual = 0;
    for (int i = 0; i < p->n_sources; i++) {
        *reasoning += w[i] * label_rate_reasoning(&p->rates[i]) / 100;
        *visual += w[i] * label_rate_visual(&p->rates[i]) / 100;
    }
}

static int solve_shares(mixture_plan *p, const data_config *d, ps_error *err) {
    double r = d->reasoning_share, v = d->visual_share;
    p->target_reasoning = r;
    p->target_visual = v;
    if (r < 0 && v < 0) return 0;
    if ((r < 0 && r != -1) || (v < 0 && v != -1))
        return ps_fail(err, "data.reasoning_share and data.visual_share are fractions in [0, 1], or -1 for unset");
    if (!p->have_rates)
        return ps_fail(err,
                       "data.reasoning_share / data.visual_share need label rates for every source of the mixture: "
                       "%s/label_rates.tsv is missing or lacks some (run presight data label --shards %s)",
                       p->root, p->root);
    double a[MIXTURE_MAX_SOURCES], b[MIXTURE_MAX_SOURCES];
    for (int i = 0; i < p->n_sources; i++) {
        a[i] = label_rate_reasoning(&p->rates[i]) / 100;
        b[i] = label_rate_visual(&p->rates[i]) / 100;
    }
    category_solution sol;
    if (category_solve(p->n_sources, p->base, a, b, r, v, p->weight, &sol, err)) return -1;
    p->solved = 1;
    p->feasible = sol.feasible;
    return 0;
}

int mixture_plan_load(mixture_plan *p, const run_config *cfg, ps_error *err) {
    memset(p, 0, sizeof *p);
    const data_config *d = &cfg->data;
    int single = !strcmp(d->kind, "shards");
    if (!d->path[0])
        return ps_fail(err, "data.path is empty: data.kind = \"%s\" needs %s", d->kind,
                       single ? "one source's shard folder (data.path = \"data/shards/moby-dick\";)"
                              : "the shards root (data.path = \"data/shards\";)");
    if (single) {
        /* One source: its folder is data.path, its root the folder above. */
        snprintf(p->root, sizeof p->root, "%s", d->path);
        size_t n = strlen(p->root);
        while (n > 1 && p->root[n - 1] == '/') p->root[--n] = 0;
        char *slash = strrchr(p->root, '/');
        const char *name = slash ? slash + 1 : p->root;
        char source[SHARD_NAME_MAX];
        if (strlen(name) >= sizeof source) return ps_fail(err, "data.path '%s': the folder name is too long", d->path);
        snprintf(source, sizeof source, "%.*s", (int)sizeof source - 1, name);
        if (slash) *slash = 0;
        else snprintf(p->root, sizeof p->root, ".");
        snprintf(p->name, sizeof p->name, "%s", source);
        if (plan_add(p, source, source, 1.0, err)) return -1;
    } else {
        if (!d->mixture[0] && !d->weights[0])
            return ps_fail(err, "data.kind = \"mixture\" needs data.mixture (e.g. \"mix6\") or data.weights");
        snprintf(p->root, sizeof p->root, "%s", d->path);
        mixture_file m;
        int have_file = d->mixture[0] != 0;
        if (find_mixture(have_file ? d->mixture : "kinds", cfg->source, p->file, sizeof p->file, err) ||
            mixture_file_read(&m, p->file, have_file && !d->weights[0], err))
            return -1;
        const char *name = NULL;
        if (!config_lookup_string(&m.cfg, "name", &name)) name = have_file ? d->mixture : "inline";
        snprintf(p->name, sizeof p->name, "%.200s%s", name, d->weights[0] ? " (data.weights)" : "");
        int rc = d->weights[0] ? parse_inline_weights(d->weights, m.w, &m.n, err) : 0;
        if (rc == 0) rc = expand_all(p, m.w, m.n, m.kinds, p->file, err);
        config_destroy(&m.cfg);
        if (rc) return -1;
    }
    memcpy(p->weight, p->base, sizeof p->base);
    attach_rates(p);
    if (solve_shares(p, d, err)) return -1;
    mixture_category_shares(p, p->weight, &p->achieved_reasoning, &p->achieved_visual);
    return 0;
}

/* ------------------------------------------------------------ the solver */

#define SOLVE_EPS 1e-12

typedef struct pt {
    double x, y;
} pt;

static double cross(pt o, pt a, pt b) { return (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x); }

static int pt_less(const void *pa, const void *pb) {
    const pt *a = pa, *b = pb;
    return a->x < b->x ? -1 : a->x > b->x ? 1 : a->y < b->y ? -1 : a->y > b->y ? 1 : 0;
}

/* Andrew's monotone chain: the hull of pts[0..n) counter-clockwise into
 * hull (room for n + 1); returns its size (1 for a point, 2 for a segment). */
static int convex_hull(pt *pts, int n, pt *hull) {
    qsort(pts, (size_t)n, sizeof *pts, pt_less);
    int k = 0;
    for (int i = 0; i < n; i++) {
        while (k >= 2 && cross(hull[k - 2], hull[k - 1], pts[i]) <= SOLVE_EPS) k--;
        hull[k++] = pts[i];
    }
    for (int i = n - 2, lower = k + 1; i >= 0; i--) {
        while (k >= lower && cross(hull[k - 2], hull[k - 1], pts[i]) <= SOLVE_EPS) k--;
        hull[k++] = pts[i];
    }
    return k > 1 ? k - 1 : k;
}

static pt nearest_on_segment(pt p, pt a, pt b) {
    double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
    double s = len2 > 0 ? ((p.x - a.x) * dx + (p.y - a.y) * dy) / len2 : 0;
    s = s < 0 ? 0 : s > 1 ? 1 : s;
    return (pt){a.x + s * dx, a.y + s * dy};
}

static double dist2(pt a, pt b) { return (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y); }

/* The reachable target nearest t: t itself when it is inside the hull of
 * the points, else the nearest point of the hull's boundary. *f0, *f1 is
 * the face it lies on (an edge, or a vertex when f0 = f1); *inside when t is
 * strictly inside (every point then keeps a share). */
static pt project_target(const pt *c, int n, pt t, pt *f0, pt *f1, int *inside) {
    pt *pts = malloc((size_t)n * sizeof *pts), *hull = malloc((size_t)(n + 1) * sizeof *hull);
    memcpy(pts, c, (size_t)n * sizeof *pts);
    int h = convex_hull(pts, n, hull);
    *inside = h >= 3;
    for (int i = 0; i < h && *inside; i++) *inside = cross(hull[i], hull[(i + 1) % h], t) > SOLVE_EPS;
    pt best = hull[0];
    *f0 = *f1 = hull[0];
    if (*inside) best = t;
    int edges = *inside || h == 1 ? 0 : h == 2 ? 1 : h;
    for (int i = 0; i < edges; i++) {
        pt a = hull[i], b = hull[(i + 1) % h], q = nearest_on_segment(t, a, b);
        if (dist2(q, t) >= dist2(best, t) - SOLVE_EPS * SOLVE_EPS) continue;
        best = q;
        int at_a = dist2(q, a) <= SOLVE_EPS * SOLVE_EPS, at_b = dist2(q, b) <= SOLVE_EPS * SOLVE_EPS;
        *f0 = at_b ? b : a;
        *f1 = at_a ? a : b;
    }
    free(pts);
    free(hull);
    return best;
}

/* Whether point c lies on the face [f0, f1] of the hull (a vertex if f0 = f1). */
static int on_face(pt c, pt f0, pt f1) {
    double len2 = dist2(f0, f1);
    if (len2 <= SOLVE_EPS * SOLVE_EPS) return dist2(c, f0) <= SOLVE_EPS * SOLVE_EPS;
    return fabs(cross(f0, f1, c)) <= 1e-9 * sqrt(len2);
}

/* The dual of min KL(w || base) s.t. E_w[c] = t over the face:
 * phi(l) = log sum base_i exp(l . c_i) - l . t. Fills w (normalised), the
 * mean and the covariance of c under w; returns phi. */
static double dual(int n, const double *base, const pt *c, const int *face, pt t, double l1, double l2, double *w,
                   pt *mean, double cov[3]) {
    double m = -INFINITY, z = 0;
    for (int i = 0; i < n; i++)
        if (face[i] && l1 * c[i].x + l2 * c[i].y > m) m = l1 * c[i].x + l2 * c[i].y;
    for (int i = 0; i < n; i++) {
        w[i] = face[i] ? base[i] * exp(l1 * c[i].x + l2 * c[i].y - m) : 0;
        z += w[i];
    }
    *mean = (pt){0, 0};
    for (int i = 0; i < n; i++) {
        w[i] /= z;
        mean->x += w[i] * c[i].x;
        mean->y += w[i] * c[i].y;
    }
    cov[0] = cov[1] = cov[2] = 0;
    for (int i = 0; i < n; i++) {
        double dx = c[i].x - mean->x, dy = c[i].y - mean->y;
        cov[0] += w[i] * dx * dx, cov[1] += w[i] * dx * dy, cov[2] += w[i] * dy * dy;
    }
    return m + log(z) - (l1 * t.x + l2 * t.y);
}

/* -H^+ g for the symmetric 2x2 H = [[h0, h1], [h1, h2]]: the pseudo-inverse
 * leaves alone a direction in which the face's points do not vary. */
static pt newton_step(const double h[3], pt g) {
    double tr = h[0] + h[2], det = h[0] * h[2] - h[1] * h[1], disc = sqrt(fmax(tr * tr / 4 - det, 0));
    double ev[2] = {tr / 2 + disc, tr / 2 - disc};
    pt step = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (ev[k] <= 1e-13 * fmax(ev[0], 1e-300)) continue;
        double vx = h[1], vy = ev[k] - h[0];
        if (fabs(vx) + fabs(vy) < 1e-300) vx = ev[k] - h[2], vy = h[1];
        if (fabs(vx) + fabs(vy) < 1e-300) vx = k == 0, vy = k == 1;
        double norm = sqrt(vx * vx + vy * vy), proj = (g.x * vx + g.y * vy) / norm;
        step.x -= proj / ev[k] * vx / norm;
        step.y -= proj / ev[k] * vy / norm;
    }
    return step;
}

/* w_i = base_i exp(l . c_i) / Z on the face, l by damped Newton on the dual. */
static void tilt(int n, const double *base, const pt *c, const int *face, pt t, double *w) {
    double l1 = 0, l2 = 0, h[3], h_try[3];
    pt mean, mean_try;
    double *w_try = malloc((size_t)n * sizeof *w_try);
    double phi = dual(n, base, c, face, t, l1, l2, w, &mean, h);
    for (int iter = 0; iter < 200 && w_try; iter++) {
        pt g = {mean.x - t.x, mean.y - t.y};
        if (g.x * g.x + g.y * g.y < 1e-28) break;
        pt step = newton_step(h, g);
        int accepted = 0;
        for (double s = 1; s > 1e-12 && !accepted; s /= 2) {
            double phi_try = dual(n, base, c, face, t, l1 + s * step.x, l2 + s * step.y, w_try, &mean_try, h_try);
            if (phi_try <= phi + 1e-15 * fabs(phi)) {
                l1 += s * step.x, l2 += s * step.y, phi = phi_try, mean = mean_try;
                memcpy(w, w_try, (size_t)n * sizeof *w);
                memcpy(h, h_try, sizeof h);
                accepted = 1;
            }
        }
        if (!accepted) break;
    }
    free(w_try);
}

int category_solve(int n, const double *base, const double *a, const double *b, double r, double v, double *w,
                   category_solution *sol, ps_error *err) {
    if (r < 0 && v < 0) return ps_fail(err, "category solve: no target (reasoning and visual both unset)");
    pt *c = malloc((size_t)(n ? n : 1) * sizeof *c), *sup = malloc((size_t)(n ? n : 1) * sizeof *sup);
    int *face = calloc((size_t)(n ? n : 1), sizeof *face), m = 0;
    if (!c || !sup || !face) {
        free(c), free(sup), free(face);
        return ps_fail(err, "out of memory");
    }
    double total = 0;
    for (int i = 0; i < n; i++) {
        /* An unset target is a coordinate that does not vary. */
        c[i] = (pt){r >= 0 ? a[i] : 0, v >= 0 ? b[i] : 0};
        if (base[i] > 0) sup[m++] = c[i], total += base[i];
    }
    if (m == 0 || !(total > 0)) {
        free(c), free(sup), free(face);
        return ps_fail(err, "category solve: the base weights are all zero");
    }
    pt t = {r >= 0 ? r : 0, v >= 0 ? v : 0}, f0, f1;
    int inside;
    pt target = project_target(sup, m, t, &f0, &f1, &inside);
    for (int i = 0; i < n; i++) face[i] = base[i] > 0 && (inside || on_face(c[i], f0, f1));
    tilt(n, base, c, face, target, w);
    sol->feasible = dist2(target, t) <= 1e-18;
    sol->reasoning = sol->visual = sol->kl = 0;
    sol->support = 0;
    for (int i = 0; i < n; i++) {
        sol->reasoning += w[i] * a[i];
        sol->visual += w[i] * b[i];
        if (w[i] > 0) sol->kl += w[i] * log(w[i] / (base[i] / total)), sol->support++;
    }
    free(c), free(sup), free(face);
    return 0;
}

/* ------------------------------------------------------------ the sampler */

typedef struct mixture_impl {
    mixture_plan *plan;
    shard_source *src[MIXTURE_MAX_SOURCES];
    double cum[MIXTURE_MAX_SOURCES]; /* cumulative weights; cum[n - 1] = 1 */
    uint64_t key_source, key_position;
    uint32_t *window;
    size_t window_cap;
} mixture_impl;

static const dataset_ops mixture_ops;

/* The source of sequence index: the first whose cumulative weight exceeds a
 * uniform draw of (seed, index). */
static int source_of(const mixture_impl *m, uint64_t index) {
    double u = rng_uniform(m->key_source, index);
    int lo = 0, hi = m->plan->n_sources - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u < m->cum[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static int mixture_read(dataset *ds, uint64_t first, int count, int seq_len, int *tokens, ps_error *err) {
    mixture_impl *m = ds->impl;
    size_t len = (size_t)seq_len + 1;
    if (len > m->window_cap) {
        uint32_t *grown = realloc(m->window, len * sizeof *grown);
        if (!grown) return ps_fail(err, "out of memory for a window of %zu tokens", len);
        m->window = grown;
        m->window_cap = len;
    }
    for (int i = 0; i < count; i++) {
        uint64_t index = first + (uint64_t)i;
        int s = source_of(m, index);
        shard_source *src = m->src[s];
        if (src->tokens < len)
            return ps_fail(err, "source %s has %llu tokens, fewer than one sequence of %zu", src->name,
                           (unsigned long long)src->tokens, len);
        uint64_t pos = rng_below(m->key_position, index, src->tokens - len + 1);
        if (shard_source_read(src, pos, len, m->window, err)) return -1;
        int *out = tokens + (size_t)i * len;
        for (size_t j = 0; j < len; j++) out[j] = (int)m->window[j];
    }
    return 0;
}

static void mixture_close(dataset *ds) {
    mixture_impl *m = ds->impl;
    if (m) {
        for (int i = 0; m->plan && i < m->plan->n_sources; i++) shard_source_close(m->src[i]);
        free(m->plan);
        free(m->window);
        free(m);
    }
    free(ds);
}

static const dataset_ops mixture_ops = {mixture_read, mixture_close};

/* data.tokenizer, when set, must be the vocabulary the shards were made with. */
static int check_tokenizer(const data_config *d, const shard_meta *meta, ps_error *err) {
    if (!d->tokenizer[0]) return 0;
    FILE *f = fopen(d->tokenizer, "rb");
    if (!f) return ps_fail(err, "data.tokenizer = \"%s\": cannot open", d->tokenizer);
    sha256_ctx h;
    sha256_init(&h);
    unsigned char buf[1 << 16], digest[32];
    for (size_t got; (got = fread(buf, 1, sizeof buf, f)) > 0;) sha256_update(&h, buf, got);
    fclose(f);
    sha256_final(&h, digest);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    if (strcmp(hex, meta->tokenizer_sha256) != 0)
        return ps_fail(err, "data.tokenizer = \"%s\" (sha256 %.12s...) is not the vocabulary of source %s (%.12s...)",
                       d->tokenizer, hex, meta->source, meta->tokenizer_sha256);
    if (strcmp(d->tokenizer_kind, meta->tokenizer_kind) != 0)
        return ps_fail(err, "data.tokenizer_kind = \"%s\", but source %s was tokenized as \"%s\"", d->tokenizer_kind,
                       meta->source, meta->tokenizer_kind);
    return 0;
}

static int open_sources(mixture_impl *m, const data_config *d, int seq_len, ps_error *err) {
    mixture_plan *p = m->plan;
    double acc = 0;
    for (int i = 0; i < p->n_sources; i++) {
        char dir[2 * CONFIG_STR_MAX];
        snprintf(dir, sizeof dir, "%s/%s", p->root, p->source[i]);
        if (shard_source_open(&m->src[i], dir, err)) return -1;
        const shard_meta *a = &m->src[0]->meta, *b = &m->src[i]->meta;
        if (strcmp(a->tokenizer_sha256, b->tokenizer_sha256) != 0)
            return ps_fail(err, "sources %s and %s were tokenized with different vocabularies (%.12s... vs %.12s...)",
                           a->source, b->source, a->tokenizer_sha256, b->tokenizer_sha256);
        if (check_tokenizer(d, b, err)) return -1;
        if (m->src[i]->tokens < (uint64_t)seq_len + 1)
            return ps_fail(err, "source %s (%s) has %llu tokens, fewer than one sequence of train.seq_len + 1 = %d",
                           p->source[i], dir, (unsigned long long)m->src[i]->tokens, seq_len + 1);
        acc += p->weight[i];
        m->cum[i] = acc;
    }
    for (int i = 0; i < p->n_sources; i++) m->cum[i] /= acc;
    m->cum[p->n_sources - 1] = 1.0;
    return 0;
}

int mixture_dataset_open(dataset **out, const run_config *cfg, ps_error *err) {
    *out = NULL;
    dataset *ds = calloc(1, sizeof *ds);
    mixture_impl *m = calloc(1, sizeof *m);
    if (m) m->plan = malloc(sizeof *m->plan);
    if (!ds || !m || !m->plan) {
        free(ds);
        if (m) free(m->plan);
        free(m);
        return ps_fail(err, "out of memory");
    }
    ds->ops = &mixture_ops;
    ds->impl = m;
    if (mixture_plan_load(m->plan, cfg, err) || open_sources(m, &cfg->data, cfg->train.seq_len, err)) {
        mixture_close(ds);
        return -1;
    }
    m->key_source = rng_key((uint64_t)cfg->train.seed, "data.mixture.source");
    m->key_position = rng_key((uint64_t)cfg->train.seed, "data.mixture.position");
    ds->vocab_size = (int)m->src[0]->meta.vocab_size;
    snprintf(ds->description, sizeof ds->description, "%s %.64s: %d source%s under %.100s (tokenizer %s %.12s)",
             strcmp(cfg->data.kind, "shards") ? "mixture" : "shards", m->plan->name, m->plan->n_sources,
             m->plan->n_sources == 1 ? "" : "s", m->plan->root, m->src[0]->meta.tokenizer_kind,
             m->src[0]->meta.tokenizer_sha256);
    *out = ds;
    return 0;
}

int mixture_n_sources(const dataset *ds) { return ds && ds->ops == &mixture_ops ? ((mixture_impl *)ds->impl)->plan->n_sources : 0; }

const mixture_plan *mixture_plan_of(const dataset *ds) {
    return ds && ds->ops == &mixture_ops ? ((mixture_impl *)ds->impl)->plan : NULL;
}

void mixture_count_sources(const dataset *ds, uint64_t first, uint64_t count, uint64_t *per_source) {
    if (!ds || ds->ops != &mixture_ops) return;
    const mixture_impl *m = ds->impl;
    memset(per_source, 0, (size_t)m->plan->n_sources * sizeof *per_source);
    for (uint64_t i = 0; i < count; i++) per_source[source_of(m, first + i)]++;
}

void mixture_log_tokens(const dataset *ds, uint64_t n_sequences, int seq_len, FILE *out) {
    const mixture_plan *p = mixture_plan_of(ds);
    if (!p || !out) return;
    uint64_t *counts = calloc((size_t)p->n_sources, sizeof *counts);
    if (!counts) return;
    mixture_count_sources(ds, 0, n_sequences, counts);
    fprintf(out, "data: tokens drawn per source over %llu sequences of %d (+1) tokens (%s)\n",
            (unsigned long long)n_sequences, seq_len, p->name);
    fprintf(out, "  %-16s %-14s %8s %8s %14s %9s\n", "source", "kind", "weight%", "drawn%", "tokens", "epochs");
    for (int i = 0; i < p->n_sources; i++) {
        double tokens = (double)counts[i] * (seq_len + 1);
        fprintf(out, "  %-16s %-14s %8.2f %8.2f %14.0f %9.3f\n", p->source[i], p->component[i], 100 * p->weight[i],
                n_sequences ? 100.0 * counts[i] / n_sequences : 0, tokens,
                p->tokens[i] ? tokens / (double)p->tokens[i] : 0);
    }
    free(counts);
}
