/* test_tasks.c - the shipped task files (config/tasks/) map a format sample of each
 * benchmark (tests/fixtures/tasks/, written by hand in the real field names) into exactly
 * what lm-evaluation-harness's task builds from those fields; bad task files and bad data
 * lines fail naming FILE:LINE and the key or field. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "tasks.h"
#include "test_util.h"

static task_def *load_with(const char *cfg, const char *data) {
    test_chdir_to_repo_root("config/tasks/piqa.cfg");
    char override[512];
    snprintf(override, sizeof override, "data=%s", data);
    char *ov[] = {override};
    task_def *t;
    ps_error err;
    cr_assert_eq(task_load(&t, cfg, 1, ov, &err), 0, "%s: %s", cfg, err.msg);
    return t;
}

static task_item *one_item(task_def *t) {
    task_item *items;
    size_t n;
    ps_error err;
    cr_assert_eq(task_read_items(t, &items, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    return items;
}

static void expect_choices(const task_item *it, int n, const char *const *want) {
    cr_assert_eq(it->n_choices, n, "%d choices, expected %d", it->n_choices, n);
    for (int i = 0; i < n; i++) cr_expect_str_eq(it->choices[i], want[i], "choice %d", i);
}

Test(tasks, piqa) {
    task_def *t = load_with("config/tasks/piqa.cfg", "tests/fixtures/tasks/piqa.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "Question: How do I keep a bike chain from rusting?\nAnswer:");
    const char *const want[] = {"Wipe it dry and oil it after riding in rain.", "Leave it wet so the rust washes off."};
    expect_choices(it, 2, want);
    cr_expect_eq(it->gold, 0);
    task_info info = task_get_info(t);
    cr_expect_eq(info.kind, TASK_MULTIPLE_CHOICE);
    cr_expect_str_eq(info.delimiter, " ");
    cr_expect_eq(strlen(info.sha256), 64);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, hellaswag_preprocess) {
    task_def *t = load_with("config/tasks/hellaswag.cfg", "tests/fixtures/tasks/hellaswag.jsonl");
    task_item *it = one_item(t);
    /* ctx_a + " " + ctx_b.capitalize() ("HE" -> "He"), prefixed by the activity label */
    cr_expect_str_eq(it->context, "Painting a fence: A man dips a brush in a can of paint. He");
    /* strip; " [title]" -> ". "; "[...]" dropped; "  " -> " " */
    const char *const want[] = {"drinks the paint.", "throws the can. away.", "spreads the paint along the boards.",
                                "sits down quietly."};
    expect_choices(it, 4, want);
    cr_expect_eq(it->gold, 2, "the label is the string \"2\"");
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, winogrande_partial) {
    task_def *t = load_with("config/tasks/winogrande.cfg", "tests/fixtures/tasks/winogrande.jsonl");
    task_item *it = one_item(t);
    const char *const want[] = {"The trophy did not fit in the suitcase because the trophy",
                                "The trophy did not fit in the suitcase because the suitcase"};
    expect_choices(it, 2, want);
    cr_expect_str_eq(it->target, "was too big.");
    cr_expect_eq(it->gold, 0, "answer \"1\" is the first option");
    cr_expect_str_eq(it->id, "sample-1");
    cr_expect_eq(task_get_info(t).kind, TASK_PARTIAL);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, arc_easy_and_challenge) {
    const char *cfgs[] = {"config/tasks/arc_easy.cfg", "config/tasks/arc_challenge.cfg"};
    for (int c = 0; c < 2; c++) {
        task_def *t = load_with(cfgs[c], "tests/fixtures/tasks/arc.jsonl");
        task_item *it = one_item(t);
        cr_expect_str_eq(it->context, "Question: Which gas do plants take in from the air to make food?\nAnswer:");
        const char *const want[] = {"oxygen", "carbon dioxide", "nitrogen", "helium"};
        expect_choices(it, 4, want);
        cr_expect_eq(it->gold, 1, "answerKey B at choices.label[1]");
        cr_expect_str_eq(it->id, "Sample_1");
        task_items_free(it, 1);
        task_free(t);
    }
}

Test(tasks, copa) {
    task_def *t = load_with("config/tasks/copa.cfg", "tests/fixtures/tasks/copa.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "The man turned on the faucet therefore");
    const char *const want[] = {"The toilet filled with water.", "Water flowed from the spout."};
    expect_choices(it, 2, want);
    cr_expect_eq(it->gold, 1);
    cr_expect_str_eq(it->id, "7", "a numeric id becomes its text");
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, sciq_constant_gold) {
    task_def *t = load_with("config/tasks/sciq.cfg", "tests/fixtures/tasks/sciq.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "Stars differ in distance from Earth.\nQuestion: What is the closest star to Earth?\nAnswer:");
    const char *const want[] = {"Polaris", "Vega", "Sirius", "the Sun"};
    expect_choices(it, 4, want);
    cr_expect_eq(it->gold, 3);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, openbookqa_stripped_key) {
    task_def *t = load_with("config/tasks/openbookqa.cfg", "tests/fixtures/tasks/openbookqa.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "The sun is responsible for");
    cr_expect_eq(it->n_choices, 4);
    cr_expect_eq(it->gold, 1, "answerKey \" B\" lstripped");
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, boolq) {
    task_def *t = load_with("config/tasks/boolq.cfg", "tests/fixtures/tasks/boolq.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "The Sun is the star at the centre of the Solar System.\nQuestion: is the sun a star?\nAnswer:");
    const char *const want[] = {"no", "yes"};
    expect_choices(it, 2, want);
    cr_expect_eq(it->gold, 1);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, wikitext_detokenized_but_counted_raw) {
    task_def *t = load_with("config/tasks/wikitext.cfg", "tests/fixtures/tasks/wikitext.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, " = Sample =\n\nThe ship was 1,200 tons (about 1.1 kt), and it's fast.\n");
    cr_expect_str_eq(it->count_text, " = Sample = \n \n The ship was 1 @,@ 200 tons ( about 1 @.@ 1 kt ) , and it 's fast . \n");
    cr_expect_eq(it->n_choices, 0);
    cr_expect_eq(task_get_info(t).kind, TASK_ROLLING);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, lambada) {
    task_def *t = load_with("config/tasks/lambada.cfg", "tests/fixtures/tasks/lambada.jsonl");
    task_item *it = one_item(t);
    cr_expect_str_eq(it->context, "She opened the door and called out to her dog , but the only answer was");
    cr_expect_str_eq(it->target, " silence");
    task_items_free(it, 1);
    task_free(t);
}

/* ------------------------------------------------------------ bad files */

static const char *tmp_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/presight-test-tasks-%d-%s", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *piqa_head = "name = \"t\";\ndata = \"/nonexistent.jsonl\";\nkind = \"multiple_choice\";\nscorer = \"acc\";\n";

static void expect_load_error(const char *body, const char *want1, const char *want2) {
    char text[4096];
    snprintf(text, sizeof text, "%s%s", piqa_head, body);
    const char *path = tmp_file("bad.cfg", text);
    task_def *t;
    ps_error err = {{0}};
    cr_assert_eq(task_load(&t, path, 0, NULL, &err), -1, "accepted:\n%s", text);
    cr_expect(strstr(err.msg, want1) && strstr(err.msg, want2), "message '%s' lacks '%s' / '%s'", err.msg, want1, want2);
    unlink(path);
}

Test(tasks, bad_task_files_name_file_line_and_key) {
    const char *ok_body = "context = \"{goal}\";\nchoices = [\"{sol1}\", \"{sol2}\"];\nlabel = \"label\";\nlabel_kind = \"index\";\n";
    char body[1024];
    /* the libconfig line of the offending key */
    snprintf(body, sizeof body, "%scolour = \"red\";\n", ok_body);
    expect_load_error(body, ":9: colour", "unknown key");
    expect_load_error("context = 3;\nchoices = [\"a\"];\nlabel = \"l\";\nlabel_kind = \"index\";\n", ":5: context",
                      "expected a string");
    expect_load_error("context = \"{goal|shout}\";\nchoices = [\"a\"];\nlabel = \"l\";\nlabel_kind = \"index\";\n",
                      ":5: context", "unknown filter 'shout'");
    expect_load_error("context = \"{goal\";\nchoices = [\"a\"];\nlabel = \"l\";\nlabel_kind = \"index\";\n", ":5: context",
                      "no '}'");
    expect_load_error("context = \"x\";\nchoices = [\"a\"];\nlabel = \"l\";\nlabel_kind = \"ordinal\";\n",
                      ":8: label_kind", "'ordinal' is not one of");
    expect_load_error("context = \"x\";\nchoices = [\"a\"];\nlabel_kind = \"index\";\n", "'label' is required", "gold");
    expect_load_error("context = \"{x|map:nope}\";\nchoices = [\"a\"];\nlabel = \"l\";\nlabel_kind = \"index\";\n",
                      ":5: context", "no map named 'nope'");
    expect_load_error("context = \"x\";\nchoices = [\"a\"] ];\n", ":6:", "syntax error");
    /* a scorer that does not fit the kind */
    const char *path = tmp_file("kind.cfg", "name=\"t\"; data=\"x\"; kind=\"rolling\"; scorer=\"acc\"; text=\"{page}\";\n");
    task_def *t;
    ps_error err;
    cr_expect_eq(task_load(&t, path, 0, NULL, &err), -1);
    cr_expect(strstr(err.msg, "scorer 'acc' does not fit kind rolling"), "%s", err.msg);
    char *bad_override[] = {"seed=3"};
    path = tmp_file("ok.cfg", "name=\"t\"; data=\"x\"; kind=\"rolling\"; scorer=\"perplexity\"; text=\"{page}\";\n");
    cr_expect_eq(task_load(&t, path, 1, bad_override, &err), -1);
    cr_expect(strstr(err.msg, "seed=3"), "%s", err.msg);
    unlink(path);
}

static void expect_line_error(const char *cfg, const char *jsonl, const char *want1, const char *want2) {
    const char *data = tmp_file("data.jsonl", jsonl);
    char data_path[256];
    snprintf(data_path, sizeof data_path, "%s", data);
    task_def *t = load_with(cfg, data_path);
    task_item *items;
    size_t n;
    ps_error err = {{0}};
    cr_assert_eq(task_read_items(t, &items, &n, &err), -1, "accepted %s", jsonl);
    cr_expect(strstr(err.msg, want1) && strstr(err.msg, want2), "message '%s' lacks '%s' / '%s'", err.msg, want1, want2);
    task_free(t);
    unlink(data_path);
}

Test(tasks, bad_data_lines_name_file_line_and_field) {
    const char *good = "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n";
    char jsonl[1024];
    snprintf(jsonl, sizeof jsonl, "%s\n%s{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 0}\n", good, good);
    expect_line_error("config/tasks/piqa.cfg", jsonl, "data.jsonl:4:", "field 'sol2': missing");
    snprintf(jsonl, sizeof jsonl, "%s{\"goal\": [1], \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n", good);
    expect_line_error("config/tasks/piqa.cfg", jsonl, "data.jsonl:2:", "field 'goal': wrong type");
    expect_line_error("config/tasks/piqa.cfg", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 2}\n",
                      "data.jsonl:1:", "label 2 is outside the 2 choices");
    expect_line_error("config/tasks/piqa.cfg", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": \"x\"}\n",
                      "data.jsonl:1:", "'x' is not an integer");
    expect_line_error("config/tasks/piqa.cfg", "{\"goal\": \"g\", \"sol1\": \"a\",\n", "data.jsonl:1:", "not JSON");
    expect_line_error("config/tasks/arc_easy.cfg",
                      "{\"question\": \"q\", \"choices\": {\"text\": [\"a\", \"b\"], \"label\": [\"A\", \"B\"]}, \"answerKey\": \"E\"}\n",
                      "data.jsonl:1:", "'E' is not among the keys in 'choices.label'");
    expect_line_error("config/tasks/winogrande.cfg",
                      "{\"sentence\": \"no blank here\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}\n",
                      "data.jsonl:1:", "'_' does not occur");
    expect_line_error("config/tasks/copa.cfg",
                      "{\"premise\": \"p.\", \"choice1\": \"a\", \"choice2\": \"b\", \"question\": \"why\", \"label\": 0}\n",
                      "data.jsonl:1:", "no entry for value 'why'");
}

/* ------------------------------------------------- VQA task files, selection */

static task_item *items_of(task_def *t, size_t want) {
    task_item *items;
    size_t n;
    ps_error err;
    cr_assert_eq(task_read_items(t, &items, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, want, "%zu items, expected %zu", n, want);
    return items;
}

Test(tasks, images_vqa_mc_selects_and_letters_the_options) {
    task_def *t = load_with("config/tasks/images-vqa-mc.cfg", "tests/fixtures/tasks/images-vqa.jsonl");
    task_item *it = items_of(t, 1);
    cr_expect_str_eq(it->context, "What is the main colour of the cup in the image?\nA. green\nB. red\nC. blue\nD. white\n"
                                  "Answer with the option's letter from the given choices directly.");
    cr_expect_eq(it->gold, 1);
    cr_expect_str_eq(it->item_category, "General");
    cr_expect_str_eq(it->image, "scene-0007");
    cr_expect_eq(it->line, 1);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, images_short_answers_split_by_image_set) {
    task_def *t = load_with("config/tasks/images-vqa-short.cfg", "tests/fixtures/tasks/images-vqa.jsonl");
    task_item *it = items_of(t, 1);
    cr_expect_eq(it->line, 3, "the chart line is excluded");
    cr_expect(it->n_answers == 1 && !strcmp(it->answers[0], "harbour"));
    task_items_free(it, 1);
    task_free(t);
    t = load_with("config/tasks/images-chart-short.cfg", "tests/fixtures/tasks/images-vqa.jsonl");
    it = items_of(t, 1);
    cr_expect(it->line == 2 && !strcmp(it->answers[0], "41.5"));
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, images_existence) {
    task_def *t = load_with("config/tasks/images-existence.cfg", "tests/fixtures/tasks/images-existence.jsonl");
    task_item *it = items_of(t, 1);
    cr_expect_eq(it->gold, 2);
    cr_expect_float_eq(it->area_share, 0.42, 1e-12);
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, textvqa_mme_chartqa) {
    task_def *t = load_with("config/tasks/textvqa.cfg", "tests/fixtures/tasks/textvqa.jsonl");
    task_item *it = items_of(t, 1);
    cr_expect_str_eq(it->context, "what is the brand of this camera?\nAnswer the question using a single word or phrase.");
    cr_expect_eq(it->n_answers, 10);
    cr_expect_str_eq(it->id, "34602");
    task_items_free(it, 1);
    task_free(t);
    t = load_with("config/tasks/mme.cfg", "tests/fixtures/tasks/mme.jsonl");
    it = items_of(t, 1);
    cr_expect_str_eq(it->group, "code_reasoning/0020.png");
    cr_expect_str_eq(it->answers[0], "Yes");
    cr_expect_str_eq(it->item_category, "code_reasoning");
    task_items_free(it, 1);
    task_free(t);
    t = load_with("config/tasks/chartqa.cfg", "tests/fixtures/tasks/chartqa.jsonl");
    it = items_of(t, 1);
    cr_expect_str_eq(it->answers[0], "14");
    cr_expect_str_eq(it->item_category, "human_test");
    task_items_free(it, 1);
    task_free(t);
}

Test(tasks, every_shipped_task_file_loads) {
    test_chdir_to_repo_root("config/tasks/piqa.cfg");
    FILE *ls = popen("ls config/tasks/*.cfg", "r");
    cr_assert(ls);
    char path[512];
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        task_def *t;
        ps_error err;
        cr_expect_eq(task_load(&t, path, 0, NULL, &err), 0, "%s: %s", path, err.msg);
        if (t) task_free(t);
        n++;
    }
    pclose(ls);
    cr_expect_geq(n, 18, "%d task files", n);
}

Test(tasks, mmbench_hint_missing_options_and_circular_group) {
    task_def *t = load_with("config/tasks/mmbench.cfg", "tests/fixtures/tasks/mmbench.jsonl");
    task_item *it = items_of(t, 2);
    /* "nan" hint: no hint line; D is null: three options */
    cr_expect_str_eq(it[0].context, "Which of these is a mammal?\nA. whale\nB. shark\nC. trout\n"
                                    "Answer with the option's letter from the given choices directly.");
    cr_expect_eq(it[0].n_choices, 3);
    cr_expect_eq(it[0].gold, 0);
    cr_expect_str_eq(it[1].context, "Think about how they breathe.\nWhich of these is a mammal?\nA. shark\nB. trout\n"
                                    "C. whale\nAnswer with the option's letter from the given choices directly.");
    cr_expect_eq(it[1].gold, 2);
    cr_expect_str_eq(it[0].group, "241");
    cr_expect_str_eq(it[1].group, "241", "the circular copy shares index %% 1000000");
    cr_expect_str_eq(it[1].id, "1000241");
    task_items_free(it, 2);
    task_free(t);
}
