/* encode_config.c - the `encode { ... }` group of a config file. See encode.h. */
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"

typedef enum { K_STR, K_INT, K_BOOL } key_type;
typedef struct key {
    const char *name;
    key_type type;
    size_t off, size;
    const char *help;
} key;

#define STR(f, h) {#f, K_STR, offsetof(encode_config, f), sizeof(((encode_config *)0)->f), h}
#define INT(f, h) {#f, K_INT, offsetof(encode_config, f), sizeof(int), h}
#define BOOL(f, h) {#f, K_BOOL, offsetof(encode_config, f), sizeof(int), h}
static const key keys[] = {
    STR(encoder, "mobilenet_v2_mid (weights from make encoder-data) or patches (the non-learned control)"),
    STR(weights, "encoder weights file (default data/encoders/<encoder>.h5)"),
    STR(images, "image set: data/images/<set>.h5 or a list of picture paths (ID<TAB>PATH lines allowed)"),
    STR(out_dir, "features go to <out_dir>/<encoder>/<set>.h5 (default data/features)"),
    STR(layer, "block whose grid is /features (default the last; e.g. expanded_conv_12 for 14x14)"),
    BOOL(float16, "store /features as float16 (default true)"),
    BOOL(pad_square, "pad to square with the mean colour before resizing (LLaVA's pad; default false)"),
    INT(part_size, "images per part file, the unit of resume (default 64)"),
    INT(patch_grid, "patches encoder: grid x grid tokens (default 7)"),
    INT(patch_sub, "patches encoder: sub x sub RGB cells per token (default 4)"),
    INT(patch_size, "patches encoder: input side in pixels (default 224)"),
    INT(threads, "threads per rank (default PRESIGHT_THREADS, else all cores)"),
};
static const int n_keys = sizeof keys / sizeof keys[0];

void encode_config_print_keys(FILE *out) {
    for (int i = 0; i < n_keys; i++) fprintf(out, "  encode.%-12s %s\n", keys[i].name, keys[i].help);
}

static int set_key(encode_config *c, const key *k, const char *val, const char *where, ps_error *err) {
    char *p = (char *)c + k->off;
    if (k->type == K_STR) {
        if (strlen(val) >= k->size) return ps_fail(err, "%s: encode.%s is longer than %zu bytes", where, k->name, k->size - 1);
        snprintf(p, k->size, "%s", val);
        return 0;
    }
    char *end;
    long v;
    if (k->type == K_BOOL && (!strcmp(val, "true") || !strcmp(val, "false"))) v = !strcmp(val, "true");
    else if ((v = strtol(val, &end, 10)), *val == 0 || *end != 0 || v < 0 || v > 1 << 30)
        return ps_fail(err, "%s: encode.%s wants %s, got '%s'", where, k->name, k->type == K_BOOL ? "true/false" : "a count", val);
    *(int *)p = (int)v;
    return 0;
}

static const key *find_key(const char *name) {
    for (int i = 0; i < n_keys; i++)
        if (!strcmp(keys[i].name, name)) return &keys[i];
    return NULL;
}

/* The file's settings, as text, through set_key (one validation path). */
static int load_file(encode_config *c, const char *path, ps_error *err) {
    config_t cf;
    config_init(&cf);
    if (config_read_file(&cf, path) != CONFIG_TRUE) {
        int rc = ps_fail(err, "%s:%d: %s", path, config_error_line(&cf), config_error_text(&cf));
        config_destroy(&cf);
        return rc;
    }
    config_setting_t *g = config_lookup(&cf, "encode");
    int rc = g ? 0 : ps_fail(err, "%s: no `encode { ... }` group", path);
    for (int i = 0; !rc && g && i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, i);
        const key *k = find_key(config_setting_name(s));
        char buf[1100], where[1100];
        snprintf(where, sizeof where, "%s:%d", path, config_setting_source_line(s));
        if (!k) { rc = ps_fail(err, "%s: unknown key encode.%s", where, config_setting_name(s)); break; }
        int t = config_setting_type(s);
        if (t == CONFIG_TYPE_STRING) snprintf(buf, sizeof buf, "%s", config_setting_get_string(s));
        else if (t == CONFIG_TYPE_INT) snprintf(buf, sizeof buf, "%d", config_setting_get_int(s));
        else if (t == CONFIG_TYPE_BOOL) snprintf(buf, sizeof buf, "%s", config_setting_get_bool(s) ? "true" : "false");
        else { rc = ps_fail(err, "%s: encode.%s has an unsupported type", where, k->name); break; }
        if ((k->type == K_STR) != (t == CONFIG_TYPE_STRING)) { rc = ps_fail(err, "%s: encode.%s has the wrong type", where, k->name); break; }
        rc = set_key(c, k, buf, where, err);
    }
    config_destroy(&cf);
    return rc;
}

int encode_config_load(encode_config *c, const char *path, int n_overrides, char **overrides, ps_error *err) {
    memset(c, 0, sizeof *c);
    snprintf(c->encoder, sizeof c->encoder, "mobilenet_v2_mid");
    snprintf(c->out_dir, sizeof c->out_dir, "data/features");
    c->float16 = 1, c->part_size = 64, c->patch_grid = 7, c->patch_sub = 4, c->patch_size = 224;
    if (load_file(c, path, err)) return -1;
    for (int i = 0; i < n_overrides; i++) {
        const char *a = overrides[i], *eq = strchr(a, '=');
        char name[64];
        if (!eq || strncmp(a, "encode.", 7) || (size_t)(eq - a - 7) >= sizeof name)
            return ps_fail(err, "override '%s': expected encode.KEY=VALUE", a);
        snprintf(name, sizeof name, "%.*s", (int)(eq - a - 7), a + 7);
        const key *k = find_key(name);
        if (!k) return ps_fail(err, "override '%s': unknown key encode.%s", a, name);
        if (set_key(c, k, eq + 1, "override", err)) return -1;
    }
    if (!c->images[0]) return ps_fail(err, "%s: encode.images is not set", path);
    if (c->part_size < 1) return ps_fail(err, "%s: encode.part_size must be >= 1", path);
    if (!c->weights[0] && strcmp(c->encoder, "patches"))
        snprintf(c->weights, sizeof c->weights, "data/encoders/%s.h5", c->encoder);
    return 0;
}
