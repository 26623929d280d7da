/* export_hf.c - a presight model as a Hugging Face Llama checkpoint (see export_hf.h). */
#include "export_hf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "eval_model.h"
#include "export_tokenizer.h"
#include "mm_model.h"

typedef struct hf_tensor {
    char name[96];
    int meta; /* index into the layout's tensors */
    int permute_heads; /* wq: heads, wk: kv_heads; 0: as stored */
} hf_tensor;

static int hf_names(const model_layout *L, const projector *pj, hf_tensor **out, int *n_out, ps_error *err) {
    const model_config *c = &L->cfg;
    int cap = 8 + 9 * c->layers, n = 0;
    hf_tensor *t = calloc((size_t)cap, sizeof *t);
    if (!t) return ps_fail(err, "out of memory");
    static const char *const block[][2] = {
        {"attention_norm.weight", "input_layernorm.weight"},   {"attention.wq.weight", "self_attn.q_proj.weight"},
        {"attention.wk.weight", "self_attn.k_proj.weight"},    {"attention.wv.weight", "self_attn.v_proj.weight"},
        {"attention.wo.weight", "self_attn.o_proj.weight"},    {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"feed_forward.w1.weight", "mlp.gate_proj.weight"},    {"feed_forward.w3.weight", "mlp.up_proj.weight"},
        {"feed_forward.w2.weight", "mlp.down_proj.weight"}};
    char meta[MODEL_TENSOR_NAME_MAX + 32];
#define ADD(M, H, P)                                                                              \
    do {                                                                                          \
        int i_ = model_layout_find(L, M);                                                         \
        if (i_ < 0) {                                                                             \
            free(t);                                                                              \
            return ps_fail(err, "the model has no tensor %s", M);                                 \
        }                                                                                         \
        snprintf(t[n].name, sizeof t[n].name, "%s", H);                                           \
        t[n].meta = i_, t[n].permute_heads = P, n++;                                              \
    } while (0)
    ADD("tok_embeddings.weight", "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->layers; l++)
        for (int k = 0; k < 9; k++) {
            char hf[96];
            snprintf(meta, sizeof meta, "layers.%d.%s", l, block[k][0]);
            snprintf(hf, sizeof hf, "model.layers.%d.%s", l, block[k][1]);
            ADD(meta, hf, k == 1 ? c->heads : k == 2 ? c->kv_heads : 0);
        }
    ADD("norm.weight", "model.norm.weight", 0);
    if (!c->tied_head) ADD("output.weight", "lm_head.weight", 0);
    if (pj) { /* LLaVA's names: the projector sits inside the model (LlavaLlamaModel.mm_projector) */
        ADD("mm_projector.0.weight", "model.mm_projector.0.weight", 0);
        ADD("mm_projector.0.bias", "model.mm_projector.0.bias", 0);
        ADD("mm_projector.2.weight", "model.mm_projector.2.weight", 0);
        ADD("mm_projector.2.bias", "model.mm_projector.2.bias", 0);
    }
#undef ADD
    *out = t, *n_out = n;
    return 0;
}

/* Meta's interleaved rows -> rotate_half rows, per head (see export_hf.h). */
static void permute_rows(const float *src, float *dst, int heads, int head_dim, int cols) {
    int half = head_dim / 2;
    for (int h = 0; h < heads; h++)
        for (int p = 0; p < 2; p++)
            for (int i = 0; i < half; i++)
                memcpy(dst + ((size_t)h * head_dim + p * half + i) * cols, src + ((size_t)h * head_dim + 2 * i + p) * cols,
                       sizeof *dst * (size_t)cols);
}

static int finish_file(FILE *f, const char *tmp, const char *path, ps_error *err) {
    int bad = ferror(f);
    if (fclose(f) || bad) {
        remove(tmp);
        return ps_fail(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path)) return ps_fail(err, "%s: cannot rename to %s", tmp, path);
    return 0;
}

/* The tensors of L (the projector's too when pj) from whole parameters P. */
static int write_safetensors(const model_layout *L, const model_params *P, const projector *pj, const char *dir,
                             ps_error *err) {
    hf_tensor *t = NULL;
    int n = 0;
    if (hf_names(L, pj, &t, &n, err)) return -1;
    /* the header: names in file order, offsets of the data that follows it */
    size_t cap = 256 + (size_t)n * 192, len = 0, off = 0;
    char *h = malloc(cap);
    if (!h) return free(t), ps_fail(err, "out of memory");
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"presight\"}");
    for (int i = 0; i < n; i++) {
        const model_tensor *m = &L->tensors[t[i].meta];
        size_t bytes = sizeof(float) * (size_t)m->rows * m->cols;
        if (m->cols == 1)
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                                    t[i].name, m->rows, off, off + bytes);
        else
            len += (size_t)snprintf(h + len, cap - len,
                                    ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", t[i].name,
                                    m->rows, m->cols, off, off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' '; /* the data starts 8-byte aligned */
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = f ? 0 : ps_fail(err, "%s: cannot create", tmp);
    unsigned char le[8];
    for (int b = 0; b < 8; b++) le[b] = (unsigned char)((uint64_t)len >> (8 * b));
    if (!rc) fwrite(le, 1, 8, f), fwrite(h, 1, len, f);
    float *scratch = NULL;
    for (int i = 0; i < n && !rc; i++) {
        const model_tensor *m = &L->tensors[t[i].meta];
        size_t count = (size_t)m->rows * m->cols;
        const real *src = model_tensor_data(P, L, t[i].meta);
        float *buf = realloc(scratch, sizeof *buf * count * 2);
        if (!buf) {
            rc = ps_fail(err, "out of memory");
            break;
        }
        scratch = buf;
        for (size_t k = 0; k < count; k++) buf[k] = (float)src[k];
        const float *w = buf;
        if (t[i].permute_heads) {
            permute_rows(buf, buf + count, t[i].permute_heads, L->head_dim, m->cols);
            w = buf + count;
        }
        fwrite(w, sizeof *w, count, f); /* x86-64 and aarch64 are little-endian, as the format is */
    }
    free(scratch), free(h), free(t);
    if (!f) return rc;
    int frc = finish_file(f, tmp, path, err);
    return rc ? rc : frc;
}

/* LLaVA's keys of an adapted model (llava/model/llava_arch.py, builder.py). */
typedef struct llava_info {
    int mm_hidden_size, visual_tokens;
    const char *encoder, *encoder_sha256, *stage;
} llava_info;

static int write_config(const run_config *cfg, const tokenizer *tok, uint32_t eos, const llava_info *lv,
                        const char *dir, ps_error *err) {
    const model_config *c = &cfg->model;
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ps_fail(err, "%s: cannot create", tmp);
    int64_t bos = tokenizer_special_id(tok, "<|begin_of_text|>");
    if (bos < 0) bos = eos; /* cl100k: <|endoftext|> begins and ends */
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n",
            lv ? "LlavaLlamaForCausalLM" : "LlamaForCausalLM", lv ? "llava_llama" : "llama");
    fprintf(f,
            "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
            "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n"
            "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n  \"rope_theta\": %.17g,\n"
            "  \"rms_norm_eps\": %.17g,\n  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n"
            "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"bos_token_id\": %lld,\n",
            c->dim, c->ffn_dim, c->layers, c->heads, c->kv_heads, c->dim / c->heads, c->vocab, c->context, c->rope_theta,
            c->norm_eps, c->tied_head ? "true" : "false", (long long)bos);
    /* An adapted Llama 3 model ends its answers with <|eot_id|> (chat_template.h): generation
     * stops at either, as Llama 3 Instruct's config has it. */
    int64_t eot = lv ? tokenizer_special_id(tok, "<|eot_id|>") : -1;
    if (eot >= 0) fprintf(f, "  \"eos_token_id\": [%u, %lld],\n", eos, (long long)eot);
    else fprintf(f, "  \"eos_token_id\": %u,\n", eos);
    if (lv)
        fprintf(f,
                "  \"mm_projector_type\": \"mlp2x_gelu\",\n  \"mm_hidden_size\": %d,\n"
                "  \"mm_vision_tower\": \"presight:%s\",\n  \"mm_vision_select_feature\": \"patch\",\n"
                "  \"mm_vision_select_layer\": -1,\n  \"mm_patch_merge_type\": \"flat\",\n"
                "  \"mm_use_im_start_end\": false,\n  \"mm_use_im_patch_token\": false,\n"
                "  \"image_aspect_ratio\": \"square\",\n  \"tune_mm_mlp_adapter\": false,\n"
                "  \"presight_visual_tokens\": %d,\n  \"presight_encoder_sha256\": \"%s\",\n"
                "  \"presight_adapt_stage\": \"%s\",\n",
                lv->mm_hidden_size, lv->encoder, lv->visual_tokens, lv->encoder_sha256, lv->stage);
    fprintf(f, "  \"torch_dtype\": \"float32\"\n}\n");
    return finish_file(f, tmp, path, err);
}

/* The vocabulary file as it was used (a byte-level run's is written by eval_model_open),
 * and the Hugging Face tokenizer files (export_tokenizer.h). */
static int write_tokenizer(const run_config *cfg, const tokenizer *tok, uint32_t eos, int chat, const char *dir,
                           ps_error *err) {
    char src[4200], path[4200], tmp[4300];
    if (cfg->data.tokenizer[0]) snprintf(src, sizeof src, "%s", cfg->data.tokenizer);
    else snprintf(src, sizeof src, "%s/bytes.tiktoken", dir);
    snprintf(path, sizeof path, "%s/tokenizer.tiktoken", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *in = fopen(src, "rb"), *f = in ? fopen(tmp, "wb") : NULL;
    if (!in || !f) {
        if (in) fclose(in);
        return ps_fail(err, "%s: cannot copy to %s", src, tmp);
    }
    char buf[1 << 16];
    for (size_t k; (k = fread(buf, 1, sizeof buf, in)) > 0;) fwrite(buf, 1, k, f);
    fclose(in);
    if (!cfg->data.tokenizer[0]) remove(src);
    if (finish_file(f, tmp, path, err)) return -1;
    return export_hf_tokenizer(tok, eos, cfg->model.context, chat, dir, err);
}

int export_hf_llama(const run_config *cfg, const char *dir, ps_error *err) {
    if (mkdir(dir, 0777) && errno != EEXIST) return ps_fail(err, "%s: cannot create", dir);
    eval_model em;
    if (eval_model_open(&em, cfg, dir, err)) return -1;
    int rc = write_safetensors(&em.model.layout, &em.params, NULL, dir, err);
    if (!rc) rc = write_config(&em.cfg, em.tok, em.prefix, NULL, dir, err);
    if (!rc) rc = write_tokenizer(&em.cfg, em.tok, em.prefix, 0, dir, err);
    eval_model_close(&em);
    return rc;
}

int export_hf_is_adapted(const run_config *cfg) { return cfg->adapt.init[0] && cfg->adapt.encoder_width > 0; }

int export_hf_llava(const run_config *cfg, const char *dir, ps_error *err) {
    if (!export_hf_is_adapted(cfg)) return ps_fail(err, "not an adapted model's config (no adapt.init, adapt.encoder_width)");
    if (mkdir(dir, 0777) && errno != EEXIST) return ps_fail(err, "%s: cannot create", dir);
    char weights[4096];
    if (eval_model_weights_path(cfg, weights, sizeof weights, err)) return -1;
    mm_model mm;
    if (mm_model_init(&mm, &cfg->model, cfg->adapt.encoder_width, backend_cpu(), err)) return -1;
    model_params p = {0};
    mm_load_report rep;
    tokenizer *tok = NULL;
    uint32_t eot = 0;
    int rc = model_params_alloc(&p, &mm.m.layout, err);
    if (!rc) model_init_weights(&p, &mm.m.layout, (uint64_t)cfg->train.seed);
    if (!rc) rc = mm_model_load(&mm, weights, &p, &rep, err);
    if (!rc && !rep.adapted) rc = ps_fail(err, "%s: has no projector (a pretrained model: export it without adapt.*)", weights);
    if (!rc) rc = eval_tokenizer_open(cfg, dir, &tok, &eot, err);
    llava_info lv = {cfg->adapt.encoder_width, cfg->adapt.visual_tokens, cfg->adapt.encoder, cfg->adapt.encoder_sha256,
                     cfg->adapt.stage};
    if (!rc) rc = write_safetensors(&mm.m.layout, &p, &mm.pj, dir, err);
    if (!rc) rc = write_config(cfg, tok, eot, &lv, dir, err);
    if (!rc) rc = write_tokenizer(cfg, tok, eot, 1, dir, err);
    tokenizer_free(tok);
    model_params_free(&p);
    mm_model_free(&mm);
    return rc;
}
