/* eval_stage.h - `presight eval CONFIG`: a model presight trained, over a list of task
 * files, on the job runner (stages/runner.h).
 *
 *   model      the run CONFIG describes (eval_model.h: weights, tokenizer)
 *   tasks      eval.tasks (comma-separated task files, datasets/tasks.h); eval.limit
 *   out        eval.out (default run.dir/eval) is the job's run.dir: config.cfg (with
 *              eval.checkpoint resolved to the weights read), metrics.jsonl,
 *              predictions.jsonl, results.jsonl, final.json
 *
 * Items of every task form one list in task order; a step is eval.items_per_step of them.
 * Item g of a step is scored by rank g % world; the ranks' numbers meet in one sum (each
 * slot is written by one rank, the others add zeros: exact) and rank 0 appends the step's
 * predictions in item order, so predictions and results are the same for any world size.
 * Resume: predictions.jsonl's torn last line is cut, the items it holds (checked against
 * the task list, in order) are skipped. Language kinds are scored by log-likelihood
 * (eval_model_score); VQA items by greedy decoding of the prompt, the output parsed by the
 * task's scorer, plus the log-likelihood of each option letter after the prompt. The prompt
 * of a language-only model is the context + "\n" (text only); an adapted model's
 * (eval_model_open_visual) is sft's chat prompt with the item's picture spliced where
 * `<image>` stands (chat_template_question): every rank builds every item's prompt and
 * finds its picture (so a missing one fails everywhere), the rank scoring the item projects
 * it. Predictions record image_input, encoder, image_at and visual_tokens. After the
 * last item rank 0 scores everything (eval_score_all, eval_summarize) into results.jsonl
 * and prints the table. */
#ifndef PRESIGHT_EVAL_STAGE_H
#define PRESIGHT_EVAL_STAGE_H

#include "comm.h"
#include "config.h"
#include "error.h"

/* Collective. 0, -1 (this rank failed), JOB_FAILED_EVERYWHERE or PRESIGHT_EXIT_PREEMPTED. */
int eval_stage_run(const run_config *cfg, comm *c, ps_error *err);

#endif
