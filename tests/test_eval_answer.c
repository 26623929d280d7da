/* test_eval_answer.c - the answer parser's tiers, short-answer scoring, VQA accuracy, MME,
 * MMBench circular and existence by size on worked cases (each expected value is worked
 * out by hand from the rule in the header, not taken from the code). The EvalAI processor,
 * ChartQA's relaxed match and MME's parser are also checked against transcriptions of
 * their published Python in tests/t_eval_reference.sh. */
#include <criterion/criterion.h>
#include <math.h>

#include "eval_aggregate.h"
#include "eval_answer.h"

static const char *const colours[] = {"red", "dark red", "blue", "green"};

static void expect(const char *output, unsigned tiers, int choice, int tier) {
    eval_parsed p = eval_parse_choice(output, colours, 4, tiers);
    cr_expect(p.choice == choice && p.tier == tier, "\"%s\": got choice %d tier %d, expected %d tier %d", output,
              p.choice, p.tier, choice, tier);
}

Test(parser, tier1_letters) {
    expect("B", EVAL_TIERS_ALL, 1, 1);
    expect(" B. ", EVAL_TIERS_ALL, 1, 1);
    expect("(C)", EVAL_TIERS_ALL, 2, 1);
    expect("D)", EVAL_TIERS_ALL, 3, 1);
    expect("[A]", EVAL_TIERS_ALL, 0, 1);
    expect("The answer is (B).", EVAL_TIERS_ALL, 1, 1);
    expect("The answer is C", EVAL_TIERS_ALL, 2, 1);
    expect("Answer: D, green", EVAL_TIERS_ALL, 3, 1);
    expect("ANSWER IS: (A)", EVAL_TIERS_ALL, 0, 1);
    expect("(B) dark red", EVAL_TIERS_ALL, 1, 1);
    /* the letter opening the answer wins over a shorter option text inside it */
    expect("B. Red, a dark one", EVAL_TIERS_ALL, 1, 1);
    expect("C) blue", EVAL_TIERS_ALL, 2, 1);
    expect("A cat", EVAL_TIERS_ALL, -1, 0);
    expect("I think it is green (D).", EVAL_TIERS_ALL, 3, 1);
    /* E is no option of four: tier 1 finds nothing, tier 3 then finds "green" */
    expect("(E) green", EVAL_TIERS_ALL, 3, 3);
    expect("E. green", EVAL_TIERS_ALL, 3, 3);
    /* a lowercase "a" is an article, never a letter */
    expect("a", EVAL_TIERS_ALL, -1, 0);
    /* "Answer: Blue": the B is part of a word */
    expect("Answer: Blue", EVAL_TIERS_ALL, 2, 3);
    /* a letter inside a sentence is not explicit */
    expect("Because B is wrong", EVAL_TIER_LETTER, -1, 0);
}

Test(parser, tier2_whole_text) {
    expect("Dark Red", EVAL_TIERS_ALL, 1, 2);
    expect("  blue. ", EVAL_TIERS_ALL, 2, 2);
    expect("red", EVAL_TIERS_ALL, 0, 2);
    expect("blue", EVAL_TIER_LETTER, -1, 0); /* tier 2 off */
}

Test(parser, tier3_longest_contained) {
    /* both "red" and "dark red" occur: the longest wins */
    expect("It looks dark red to me", EVAL_TIERS_ALL, 1, 3);
    /* two of equal length: the first to occur wins */
    expect("not blue but green? no: green", EVAL_TIERS_ALL, 3, 3);
    const char *const same_len[] = {"cat", "dog"};
    eval_parsed p = eval_parse_choice("a dog and a cat", same_len, 2, EVAL_TIERS_ALL);
    cr_expect(p.choice == 1 && p.tier == 3, "dog occurs first: %d", p.choice);
    expect("It looks dark red to me", EVAL_TIER_LETTER | EVAL_TIER_WHOLE, -1, 0);
    expect("no idea", EVAL_TIERS_ALL, -1, 0);
    const char *const with_empty[] = {"", "yes"};
    p = eval_parse_choice("anything", with_empty, 2, EVAL_TIERS_ALL);
    cr_expect(p.choice == -1, "an empty option never matches");
}

Test(parser, tiers_text) {
    cr_expect_eq(eval_tiers_parse("123"), EVAL_TIERS_ALL);
    cr_expect_eq(eval_tiers_parse("1"), EVAL_TIER_LETTER);
    cr_expect_eq(eval_tiers_parse("13"), EVAL_TIER_LETTER | EVAL_TIER_CONTAINED);
    cr_expect_eq(eval_tiers_parse("4"), -1);
    cr_expect_eq(eval_tiers_parse("11"), -1);
    cr_expect_eq(eval_tiers_parse(""), -1);
}

Test(short_answer, exact_and_relaxed) {
    char out[64];
    eval_normalize("  The  Cat.\n", out, sizeof out);
    cr_expect_str_eq(out, "the cat");
    cr_expect(eval_exact_match("Blue.", " blue"));
    cr_expect(!eval_exact_match("blue sky", "blue"));
    /* ChartQA: within 5% of the target */
    cr_expect(eval_relaxed_match("104", "100", 0.05));
    cr_expect(eval_relaxed_match("105", "100", 0.05));
    cr_expect(!eval_relaxed_match("105.1", "100", 0.05));
    cr_expect(eval_relaxed_match("12%", "0.12", 0.05));
    cr_expect(eval_relaxed_match("0.121", "12%", 0.05));
    /* a target of 0 compares text */
    cr_expect(!eval_relaxed_match("0.0", "0", 0.05));
    cr_expect(eval_relaxed_match("0", "0", 0.05));
    cr_expect(eval_relaxed_match("Yes", "yes", 0.05));
    cr_expect(!eval_relaxed_match("0x10", "16", 0.05), "Python's float() refuses hexadecimal");
}

Test(vqa, evalai_normalisation_and_accuracy) {
    char out[128];
    eval_evalai_normalize("Two dogs!", out, sizeof out);
    cr_expect_str_eq(out, "2 dogs");
    eval_evalai_normalize("The man's hat.", out, sizeof out);
    cr_expect_str_eq(out, "man 's hat");
    eval_evalai_normalize("dont know", out, sizeof out);
    cr_expect_str_eq(out, "don't know");
    eval_evalai_normalize("3.5 kg", out, sizeof out);
    cr_expect_str_eq(out, "3.5 kg");
    eval_evalai_normalize("left-hand", out, sizeof out);
    cr_expect_str_eq(out, "left hand");
    eval_evalai_normalize("yes - no", out, sizeof out);
    cr_expect_str_eq(out, "yes no", "'-' next to a space is deleted, not spaced: %s", out);
    /* 10 answers: "2" three times -> each leave-one-out sees 2 or 3 matches */
    const char *const answers[] = {"2", "two", "2", "3", "3", "3", "3", "3", "3", "3"};
    /* pred "2": gt answers normalise to 2,2,2,3x7; for the 3 "2"s: 2 others match -> 2/3;
     * for the 7 "3"s: 3 match -> 1; mean (3 * 2/3 + 7) / 10 = 0.9 */
    cr_expect_float_eq(eval_vqa_accuracy("Two", answers, 10), 0.9, 1e-12);
    /* pred "3": the 3 "2"s see 7 -> 1; the 7 "3"s see 6 -> 1 */
    cr_expect_float_eq(eval_vqa_accuracy("3", answers, 10), 1.0, 1e-12);
    cr_expect_float_eq(eval_vqa_accuracy("4", answers, 10), 0.0, 1e-12);
}

Test(mme, yes_no_and_acc_plus) {
    cr_expect_eq(eval_parse_yes_no("Yes."), 1);
    cr_expect_eq(eval_parse_yes_no("no"), 0);
    cr_expect_eq(eval_parse_yes_no("Y"), 1);
    cr_expect_eq(eval_parse_yes_no("No, it is not."), 0);
    cr_expect_eq(eval_parse_yes_no("Yes, there is"), 1);
    cr_expect_eq(eval_parse_yes_no("There is a dog"), -1);
    cr_expect_eq(eval_parse_yes_no("maybe"), -1);
    /* three images: both right, one right, none right -> acc 3/6, acc+ 1/3 */
    const char *const image[] = {"a.png", "b.png", "a.png", "c.png", "b.png", "c.png"};
    const double correct[] = {1, 1, 1, 0, 0, 0};
    eval_mme m;
    ps_error err;
    cr_assert_eq(eval_mme_category(image, correct, 6, 1, &m, &err), 0, "%s", err.msg);
    cr_expect_float_eq(m.acc, 0.5, 1e-12);
    cr_expect_float_eq(m.acc_plus, 1.0 / 3.0, 1e-12);
    cr_expect_float_eq(m.score, 100 * (0.5 + 1.0 / 3.0), 1e-9);
    cr_expect_eq(m.images, 3);
    cr_expect_eq(eval_mme_category(image, correct, 5, 1, &m, &err), -1, "c.png has one question");
    cr_expect(strstr(err.msg, "c.png"), "%s", err.msg);
}

Test(mmbench, circular) {
    const char *const group[] = {"q1", "q1", "q1", "q1", "q2", "q2", "q2", "q2"};
    const double correct[] = {1, 1, 1, 1, 1, 1, 0, 1};
    eval_circular c;
    ps_error err;
    cr_assert_eq(eval_mmbench_circular(group, correct, 8, &c, &err), 0);
    cr_expect_float_eq(c.acc, 0.5, 1e-12);
    cr_expect_float_eq(c.vanilla, 7.0 / 8.0, 1e-12);
    cr_expect_eq(c.groups, 2);
    /* answer C (2) of 4, rotated by 1: options shown B C D A, so C sits at position 1 */
    cr_expect_eq(eval_circular_answer(2, 4, 1), 1);
    cr_expect_eq(eval_circular_answer(0, 4, 1), 3);
    cr_expect_eq(eval_circular_answer(0, 4, 0), 0);
}

Test(existence, by_size) {
    /* small: 2 items (1 right), medium: 1 (right), large: 3 (all right) */
    const double share[] = {0.05, 0.299, 0.3, 0.6, 0.9, 1.0};
    const double correct[] = {1, 0, 1, 1, 1, 1};
    eval_by_size s;
    ps_error err;
    cr_assert_eq(eval_existence_by_size(share, correct, 6, &s, &err), 0);
    cr_expect_eq(s.n[EVAL_SIZE_SMALL], 2);
    cr_expect_eq(s.n[EVAL_SIZE_MEDIUM], 1);
    cr_expect_eq(s.n[EVAL_SIZE_LARGE], 3);
    cr_expect_float_eq(s.acc[EVAL_SIZE_SMALL], 0.5, 1e-12);
    cr_expect_float_eq(s.weighted, 5.0 / 6.0, 1e-12);
    cr_expect_float_eq(s.macro, (0.5 + 1 + 1) / 3.0, 1e-12);
    const double bad[] = {0.5, 1.2};
    cr_expect_eq(eval_existence_by_size(bad, correct, 2, &s, &err), -1);
    cr_expect(strstr(err.msg, "item 1"), "%s", err.msg);
}

Test(groups, means_by_key_and_macro) {
    const char *const key[] = {"ocr", "general", "ocr", "general", "general"};
    const double score[] = {1, 0, 0, 1, 1};
    eval_groups g;
    ps_error err;
    cr_assert_eq(eval_group_means(key, score, 5, &g, &err), 0);
    cr_assert_eq(g.n, 2);
    cr_expect_str_eq(g.groups[0].key, "general");
    cr_expect_float_eq(g.groups[0].mean, 2.0 / 3.0, 1e-12);
    cr_expect_float_eq(g.groups[1].mean, 0.5, 1e-12);
    cr_expect_float_eq(g.macro, (2.0 / 3.0 + 0.5) / 2, 1e-12);
    eval_groups_free(&g);
}
