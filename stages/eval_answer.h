/* eval_answer.h - from a model's generated text to a scored answer, without the model.
 *
 * Multiple choice (the paper's parser, version EVAL_PARSER_VERSION): three tiers, first
 * hit wins, each tier enabled by its bit in `tiers`:
 *   1 letter    an explicit option letter, one of A.. (uppercase; the n choices only):
 *               the whole output "B", "B.", "B)", "(B)", "[B]", "B:";
 *               "answer is B", "answer is (B)", "answer: B", "Answer is: (B)" anywhere
 *               ("answer" in any case, the letter not followed by a letter or digit);
 *               "B. text", "B) text", "B: text" opening the output;
 *               "(B)" at the start, or at the end (a final "." allowed)
 *   2 whole     the output equals one option's text, ignoring ASCII case, surrounding
 *               whitespace and one final "."
 *   3 contained option texts that occur in the output (ASCII case ignored); the longest
 *               wins, then the one that occurs first; an option of length 0 never does.
 * Nothing parses -> choice -1, tier 0: scored wrong and counted. There is no random
 * fallback.
 *
 * Short answers: eval_normalize (ASCII lower case, whitespace runs -> one space, trimmed,
 * final "." dropped) and exact match on that; eval_relaxed_match is ChartQA's
 * relaxed_correctness (|p - t| / |t| <= 5% when both parse as numbers, "12%" = 0.12;
 * a target of 0 or a non-number compares the strings, lower-cased).
 * VQA accuracy (TextVQA / VQAv2, lmms-eval's textvqa_process_results): answers pass
 * through EvalAI's answer processor (eval_evalai_normalize, transcribed from
 * pythia/tasks/processors.py EvalAIAnswerProcessor including its quirks: commas and "?"
 * removed first, a "." kept only before a digit and at most 32 removed); the score is
 * mean over the n ground-truth answers i of min(1, #{j != i : gt_j == pred} / 3).
 * MME yes/no (lmms-eval mme parse_pred_ans, "from Otter"): eval_parse_yes_no. */
#ifndef PRESIGHT_EVAL_ANSWER_H
#define PRESIGHT_EVAL_ANSWER_H

#include <stddef.h>

#define EVAL_PARSER_VERSION "presight-mc-1"

enum { EVAL_TIER_LETTER = 1, EVAL_TIER_WHOLE = 2, EVAL_TIER_CONTAINED = 4, EVAL_TIERS_ALL = 7 };

typedef struct eval_parsed {
    int choice; /* 0-based option, -1 when nothing parsed */
    int tier;   /* 1, 2 or 3 (the tier number, not its bit); 0 when nothing parsed */
} eval_parsed;

/* Parses output against choices[0..n_choices) (n_choices <= 26) with the tiers whose
 * bits are set. */
eval_parsed eval_parse_choice(const char *output, const char *const *choices, int n_choices, unsigned tiers);

/* "123" -> EVAL_TIERS_ALL, "1" -> EVAL_TIER_LETTER, ...; -1 for anything else. */
int eval_tiers_parse(const char *text);

/* Writes the normalised text into out (size bytes; truncated if longer). */
void eval_normalize(const char *text, char *out, size_t size);
int eval_exact_match(const char *prediction, const char *target);
int eval_relaxed_match(const char *prediction, const char *target, double max_relative_change);

/* EvalAI's answer processor; out holds size bytes (truncated if longer). */
void eval_evalai_normalize(const char *answer, char *out, size_t size);
/* VQA accuracy of prediction against n ground-truth answers (n >= 1; 10 in VQAv2/TextVQA). */
double eval_vqa_accuracy(const char *prediction, const char *const *answers, int n);

/* MME: 1 yes, 0 no, -1 other. */
int eval_parse_yes_no(const char *output);

#endif
