/* test_mm_model.c - the chat template and the <image> splice (stages/chat_template.h,
 * stages/mm_model.h): ids, trained flags, picture place, shifted targets,
 * per-sample positions and ids, packing, truncation after the splice, and
 * the layout's projector unit. Byte ids make expected values readable. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "mm_model.h"
#include "adapt_data.h"
#include "tasks.h"
#include "test_util.h"
#include "tokenizer.h"

static chat_template bytes_template(void) {
    chat_template t;
    ps_error err = {{0}};
    cr_assert_eq(chat_template_init(&t, NULL, 512, &err), 0, "%s", err.msg);
    return t;
}

Test(chat_template, plain_caption_is_trained_with_eot) {
    chat_template t = bytes_template();
    chat_turn turns[] = {{1, "<image>"}, {0, "ab"}};
    chat_tokens c = {0};
    ps_error err = {{0}};
    cr_assert_eq(chat_template_apply(&t, CHAT_PLAIN, turns, 2, 1, 0, &c, &err), 0, "%s", err.msg);
    int want[] = {256, 'a', 'b', 257};
    unsigned char train[] = {0, 1, 1, 1};
    cr_assert_eq(c.n, 4);
    cr_assert_eq(c.image_at, 1);
    cr_assert_eq(c.n_train, 3);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(c.ids[i], want[i]);
        cr_assert_eq(c.train[i], train[i]);
    }
    chat_tokens_free(&c);
}

Test(chat_template, chat_marks_only_answers) {
    chat_template t = bytes_template();
    chat_turn turns[] = {{1, "<image>\nQ"}, {0, "A"}, {1, "R"}, {0, "B"}};
    chat_tokens c = {0};
    ps_error err = {{0}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, turns, 4, 1, 0, &c, &err), 0, "%s", err.msg);
    /* BOS "USER: " <image> "\nQ" "\n" "ASSISTANT: " "A" EOT "USER: " "R" "\n" "ASSISTANT: " "B" EOT */
    const char *expect = "\x01USER: \nQ\nASSISTANT: A\x02USER: R\nASSISTANT: B\x02";
    cr_assert_eq(c.n, (int)strlen(expect));
    cr_assert_eq(c.image_at, 7);
    for (int i = 0; i < c.n; i++) {
        int want = expect[i] == 1 ? 256 : expect[i] == 2 ? 257 : (unsigned char)expect[i];
        cr_assert_eq(c.ids[i], want, "id %d", i);
        int answer = (i > 0 && (c.ids[i] == 'A' || c.ids[i] == 'B') && c.ids[i - 1] == ' ') ||
                     (c.ids[i] == 257);
        cr_assert_eq(c.train[i], answer, "train flag %d", i);
    }
    cr_assert_eq(c.n_train, 4);
    /* A generation prompt ends with the assistant header, nothing trained. */
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, turns, 1, 1, 1, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_train, 0);
    cr_assert_eq(memcmp(c.ids + c.n - 11, (int[]){'A', 'S', 'S', 'I', 'S', 'T', 'A', 'N', 'T', ':', ' '}, 11 * sizeof(int)), 0);
    chat_tokens_free(&c);
}

Test(chat_template, refuses_what_it_cannot_apply) {
    chat_template t = bytes_template();
    chat_tokens c = {0};
    ps_error err = {{0}};
    chat_turn late[] = {{1, "Q"}, {0, "A"}, {1, "<image> R"}, {0, "B"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, late, 4, 1, 0, &c, &err), -1);
    cr_assert(strstr(err.msg, "later human turn"), "%s", err.msg);
    chat_turn twice[] = {{1, "<image><image>"}, {0, "A"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, twice, 2, 1, 0, &c, &err), -1);
    chat_turn gpt_first[] = {{0, "A"}, {1, "Q"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, gpt_first, 2, 0, 0, &c, &err), -1);
    chat_turn empty[] = {{1, "Q"}, {0, ""}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, empty, 2, 0, 0, &c, &err), -1);
    chat_turn no_mark[] = {{1, "Q"}, {0, "A"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, no_mark, 2, 1, 0, &c, &err), -1, "a picture without <image>");
    chat_turn mark[] = {{1, "<image>Q"}, {0, "A"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, mark, 2, 0, 0, &c, &err), -1, "<image> without a picture");
    cr_assert_eq(chat_template_apply(&t, CHAT_PLAIN, mark, 2, 1, 0, &c, &err), -1, "plain: human turn not just <image>");
    /* The control: the same turns apply when they are well formed. */
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, mark, 2, 1, 0, &c, &err), 0, "%s", err.msg);
    chat_tokens_free(&c);
}

Test(mm_batch, splice_targets_positions_and_packing) {
    chat_template t = bytes_template();
    chat_turn cap[] = {{1, "<image>"}, {0, "ab"}};
    chat_turn text[] = {{1, "q"}, {0, "z"}};
    chat_tokens a = {0}, b = {0};
    ps_error err = {{0}};
    cr_assert_eq(chat_template_apply(&t, CHAT_PLAIN, cap, 2, 1, 0, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, text, 2, 0, 0, &b, &err), 0, "%s", err.msg);
    mm_batch mb;
    cr_assert_eq(mm_batch_alloc(&mb, 2, 8, &err), 0, "%s", err.msg);
    /* a: BOS v v v a b EOT = 7 rows */
    cr_assert_eq(mm_batch_add(&mb, &a, 3, 1, &err), 1);
    int tok[] = {256, -1, -1, -1, 'a', 'b', 257};
    int tgt[] = {-1, -1, -1, 'a', 'b', 257, -1};
    for (int j = 0; j < 7; j++) {
        cr_assert_eq(mb.tokens[j], tok[j], "token %d", j);
        cr_assert_eq(mb.targets[j], tgt[j], "target %d", j);
        cr_assert_eq(mb.positions[j], j);
        cr_assert_eq(mb.sample[j], 0);
    }
    cr_assert_eq(mb.sample[7], -1, "padding");
    cr_assert_eq(mb.n_embeds, 3);
    cr_assert_eq(mb.placed[0].n_train, 3);
    /* b (16 rows) does not fit after a: row 1, truncated to 8 rows, and its
     * answer (after "USER: q\nASSISTANT: ") is cut away entirely. */
    cr_assert_eq(mm_batch_add(&mb, &b, 3, 1, &err), 1);
    cr_assert_eq(mb.placed[1].row, 1);
    cr_assert_eq(mb.placed[1].len, 8);
    cr_assert_eq(mb.placed[1].truncated, b.n - 8);
    cr_assert_eq(mb.placed[1].n_train, 0);
    cr_assert_eq(mb.positions[8 + 7], 7);
    /* No room left. */
    cr_assert_eq(mm_batch_add(&mb, &a, 3, 1, &err), 0);
    cr_assert_eq(mb.n_counted, 3);
    /* Packing: two short samples share a row with their own ids and positions. */
    mm_batch_clear(&mb);
    chat_turn tiny[] = {{1, "<image>"}, {0, "c"}};
    cr_assert_eq(chat_template_apply(&t, CHAT_PLAIN, tiny, 2, 1, 0, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 1, &err), 1); /* BOS v c EOT: 4 rows */
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 1, &err), 1);
    cr_assert_eq(mb.placed[1].row, 0);
    cr_assert_eq(mb.sample[4], 1);
    cr_assert_eq(mb.positions[4], 0);
    cr_assert_eq(mb.targets[3], -1, "no target across samples");
    cr_assert_eq(mb.n_images, 2);
    cr_assert_eq(mb.image_sample[1], 1);
    /* A caller's row plan: new_row starts the next sample on a fresh row. */
    mm_batch_clear(&mb);
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 1, &err), 1);
    mm_batch_new_row(&mb);
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 1, &err), 1);
    cr_assert_eq(mb.placed[1].row, 1);
    cr_assert_eq(mm_sample_targets(&a, 1, 8), 2);
    cr_assert_eq(mm_sample_targets(&a, 6, 8), 1, "EOT would be row 8, cut");
    cr_assert_eq(mm_sample_targets(&a, 7, 8), 0, "cut away");
    /* Without packing the second goes to the next row. */
    mm_batch_clear(&mb);
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 0, &err), 1);
    cr_assert_eq(mm_batch_add(&mb, &a, 1, 0, &err), 1);
    cr_assert_eq(mb.placed[1].row, 1);
    /* The projector's input in row order. */
    float f0[2] = {1, 2}, f1[2] = {3, 4};
    const float *feats[] = {f0, f1};
    real out[4];
    mm_batch_gather(&mb, feats, 2, out);
    cr_assert(out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 4);
    mm_batch_free(&mb);
    chat_tokens_free(&a);
    chat_tokens_free(&b);
}

Test(mm_model, layout_is_llm_then_projector) {
    model_config cfg = {.vocab = 300, .dim = 16, .layers = 2, .heads = 2, .kv_heads = 1, .ffn_dim = 32, .context = 32,
                        .rope_theta = 10000, .norm_eps = 1e-5, .tied_head = 1, .init_std = 0.02};
    mm_model mm;
    ps_error err = {{0}};
    cr_assert_eq(mm_model_init(&mm, &cfg, 24, backend_cpu(), &err), 0, "%s", err.msg);
    cr_assert_eq(mm.m.layout.llm_units, 4);
    cr_assert_eq(mm.pj.unit, 4);
    cr_assert_eq(mm.m.layout.n_units, 5);
    int w0 = model_layout_find(&mm.m.layout, "mm_projector.0.weight");
    cr_assert_eq(mm.m.layout.tensors[w0].rows, 16);
    cr_assert_eq(mm.m.layout.tensors[w0].cols, 24);
    mm_model_free(&mm);
}

/* The chat style with real vocabularies: Llama 3's header tokens, and a
 * trained BPE's <|begin_of_text|> / <|end_of_text|>; decoding the ids gives
 * the documented text back. Skipped without the vocabularies (make tokenizers). */
static void check_vocab(const char *path, tokenizer_kind kind, int vocab, const char *expect) {
    if (access(path, R_OK) != 0) {
        /* info, not warn: Criterion 2.4 exits 1 after any warning. */
        cr_log_info("skip: %s missing", path);
        return;
    }
    tokenizer *tok;
    ps_error err = {{0}};
    cr_assert_eq(tokenizer_load(&tok, path, kind, &err), 0, "%s", err.msg);
    chat_template t;
    cr_assert_eq(chat_template_init(&t, tok, vocab, &err), 0, "%s", err.msg);
    chat_turn turns[] = {{1, "<image>\nWhat is it?"}, {0, "A cat."}};
    chat_tokens c = {0};
    cr_assert_eq(chat_template_apply(&t, CHAT_CHAT, turns, 2, 1, 0, &c, &err), 0, "%s", err.msg);
    tokenizer_bytes out = {0};
    uint32_t *ids = malloc((size_t)c.n * sizeof *ids);
    for (int i = 0; i < c.n; i++) ids[i] = (uint32_t)c.ids[i];
    cr_assert_eq(tokenizer_decode(tok, ids, (size_t)c.n, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out.n, strlen(expect), "%.*s", (int)out.n, out.bytes);
    cr_assert_eq(memcmp(out.bytes, expect, out.n), 0, "%.*s", (int)out.n, out.bytes);
    /* Trained: "A cat." and the end of the turn, nothing else. */
    tokenizer_bytes tr = {0};
    int k = 0;
    for (int i = 0; i < c.n; i++)
        if (c.train[i]) ids[k++] = (uint32_t)c.ids[i];
    cr_assert_eq(tokenizer_decode(tok, ids, (size_t)k, &tr, &err), 0, "%s", err.msg);
    const char *eot = kind == TOKENIZER_LLAMA3 ? "A cat.<|eot_id|>" : "A cat.<|end_of_text|>";
    cr_assert_eq(tr.n, strlen(eot), "%.*s", (int)tr.n, tr.bytes);
    cr_assert_eq(memcmp(tr.bytes, eot, tr.n), 0);
    tokenizer_bytes_free(&out);
    tokenizer_bytes_free(&tr);
    free(ids);
    chat_tokens_free(&c);
    tokenizer_free(tok);
}

Test(chat_template, real_vocabularies) {
    test_chdir_to_repo_root("config/tiny.cfg");
    check_vocab("build/vocab/llama3.tiktoken", TOKENIZER_LLAMA3, 128256,
                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n\nWhat is it?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nA cat.<|eot_id|>");
    check_vocab("build/vocab/bpe-8192.tiktoken", TOKENIZER_PLAIN, 8192,
                "<|begin_of_text|>USER: \nWhat is it?\nASSISTANT: A cat.<|end_of_text|>");
}

/* One picture's features file (grid 2 x 2, width 4) and a one-line instruct JSONL that
 * asks question with answer "B", in dir. */
static void write_sft_fixture(const char *dir, const char *question) {
    ps_error err = {{0}};
    features_meta m = {.grid_h = 2, .grid_w = 2, .width = 4};
    snprintf(m.encoder, sizeof m.encoder, "test");
    snprintf(m.set, sizeof m.set, "captions");
    char path[512], *ids[] = {"flag:x.png"};
    float grid[16];
    for (int i = 0; i < 16; i++) grid[i] = (float)i;
    features_writer *w;
    snprintf(path, sizeof path, "%s/captions.h5", dir);
    cr_assert_eq(features_create(&w, path, &m, ids, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(features_write_row(w, 0, grid, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(features_close(w, 1, 0, &err), 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/instruct.jsonl", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"id\": \"i1\", \"image\": \"flag:x.png\", \"image_set\": \"captions\", \"conversations\": "
               "[{\"from\": \"human\", \"value\": \"<image>\\n");
    for (const char *c = question; *c; c++) fprintf(f, *c == '\n' ? "\\n" : "%c", *c);
    fprintf(f, "\"}, {\"from\": \"gpt\", \"value\": \"B\"}]}\n");
    fclose(f);
}

/* The evaluation prompt of a VQA item (the shipped task file's context, the picture
 * where <image> goes) is token for token, splice row for splice row, what sft trains on
 * (adapt_data_load of an instruction asking the same question the way
 * data/images/instruct.jsonl does: "<image>\n" + question, options, the answer hint);
 * and the option letter eval scores is the answer's tokens there. */
Test(chat_template, eval_prompt_is_what_sft_trains_on) {
    test_chdir_to_repo_root("config/tasks/images-vqa-mc.cfg");
    ps_error err = {{0}};
    task_def *def;
    cr_assert_eq(task_load(&def, "config/tasks/images-vqa-mc.cfg", 0, NULL, &err), 0, "%s", err.msg);
    const char *line = "{\"id\": \"vqa:1\", \"image\": \"flag:x.png\", \"image_set\": \"captions\", \"question\": "
                       "\"Which country's flag is this?\", \"choices\": [\"Chad\", \"Peru\", \"Mali\"], \"answer\": "
                       "\"Peru\", \"answer_index\": 1, \"category\": \"Knowledge\", \"answer_type\": \"multiple_choice\"}";
    task_item it;
    cr_assert_eq(task_map_line(def, line, 1, &it, &err), 0, "%s", err.msg);
    char dir[] = "/tmp/presight-test-mm-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    write_sft_fixture(dir, "Which country's flag is this?\nA. Chad\nB. Peru\nC. Mali\n"
                           "Answer with the option's letter from the given choices directly.");
    enum { VT = 4 };
    run_config cfg;
    config_defaults(&cfg);
    snprintf(cfg.adapt.features, sizeof cfg.adapt.features, "%s", dir);
    snprintf(cfg.adapt.data, sizeof cfg.adapt.data, "%s/instruct.jsonl", dir);
    cfg.adapt.visual_tokens = VT, cfg.adapt.batch = 1, cfg.adapt.max_bad = 0, cfg.train.seq_len = 256;
    chat_template t = bytes_template();
    adapt_data d;
    cr_assert_eq(adapt_data_load(&d, &cfg, &t, CHAT_CHAT, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(d.n, 1);
    const chat_tokens *sft = &d.s[0].tok;
    chat_tokens q = {0}, letter = {0};
    cr_assert_eq(chat_template_question(&t, it.context, 1, &q, &err), 0, "%s", err.msg);
    cr_assert_eq(chat_tokens_append_text(&t, &letter, "B", 1, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(q.image_at, sft->image_at);
    cr_assert_eq(sft->n, q.n + letter.n + 1, "sft: prompt, answer, EOT (%d vs %d + %d + 1)", sft->n, q.n, letter.n);
    for (int i = 0; i < q.n; i++) {
        cr_assert_eq(q.ids[i], sft->ids[i], "token %d: eval %d, sft %d", i, q.ids[i], sft->ids[i]);
        cr_assert_eq(sft->train[i], 0, "sft trains on prompt token %d", i);
    }
    for (int i = 0; i < letter.n; i++) cr_assert(sft->ids[q.n + i] == letter.ids[i] && sft->train[q.n + i]);
    /* the splice: eval's decoding row is the start of sft's training row */
    mm_batch b;
    cr_assert_eq(mm_batch_alloc(&b, 1, 256, &err), 0, "%s", err.msg);
    cr_assert_eq(mm_batch_add(&b, sft, VT, 0, &err), 1);
    int row[256];
    int n = mm_splice_ids(&q, VT, row);
    cr_assert_eq(n, q.n + VT);
    for (int j = 0; j < n; j++) cr_assert_eq(row[j], b.tokens[j], "row %d: eval %d, sft %d", j, row[j], b.tokens[j]);
    cr_assert_eq(row[q.image_at], -1);
    cr_assert_eq(b.targets[n - 1], letter.ids[0], "the prompt's last row predicts the answer letter");
    /* a question worded otherwise is another prompt (the comparison can fail) */
    chat_tokens other = {0};
    cr_assert_eq(chat_template_question(&t, "Which flag is this?", 1, &other, &err), 0, "%s", err.msg);
    cr_assert(other.n != q.n || memcmp(other.ids, q.ids, sizeof *q.ids * (size_t)q.n));
    chat_tokens_free(&other);
    mm_batch_free(&b);
    adapt_data_free(&d);
    chat_tokens_free(&q), chat_tokens_free(&letter);
    task_item_clear(&it);
    task_free(def);
    char path[600];
    snprintf(path, sizeof path, "%s/captions.h5", dir), remove(path);
    snprintf(path, sizeof path, "%s/instruct.jsonl", dir), remove(path);
    rmdir(dir);
}
