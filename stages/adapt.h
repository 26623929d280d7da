/* adapt.h - `presight adapt`: one stage of the visual adaptation on the job
 * runner (runner.h), as stages/pretrain.c is pretraining's.
 *
 *   align  the projector alone trains, on captions (CHAT_PLAIN); the LLM is
 *          frozen and checked bit-identical to adapt.init at the end
 *   blind  the LLM alone trains on instructions with the pictures withheld
 *          (no visual rows; the projector frozen)
 *   sft    projector + LLM train on instructions, visual and language-only
 *
 * The model is stages/mm_model.h's (LLM of adapt.init + projector); model.*
 * and data.* (the tokenizer) are adapt.init's, copied into the resolved
 * config with the encoder's identity (adapt.encoder, _sha256, _width) and
 * adapt.init_sha256 (a changed init is then refused on resume, as any
 * changed key is). A step is one megabatch of adapt.batch samples
 * (adapt_data.h), packed into sequence rows of train.seq_len in a plan that
 * does not depend on the number of ranks; rows are dealt to ranks round
 * robin and cut into micro-batches of train.micro_batch rows (as many on
 * every rank), the loss is the mean over the megabatch's trained tokens
 * (loss_divisor). train.steps = adapt.epochs x megabatches and
 * train.warmup_steps = ceil(adapt.warmup_ratio x steps) are derived.
 * run.dir/model.h5 is the complete model: LLM + projector at full shapes.
 * On the GPU engine (run.backend = cuda, gpu_engine.h) the projector and
 * the LLM run on the device; the engine takes a fixed number of
 * micro-batches per step, the most of any step of the run (planned at the
 * start), and a shorter step empties the loss slots an earlier one left
 * (all-padding micro-batches). Checkpoints are the CPU path's.
 *
 * eval.every > 0: every N steps and at the last, the mean loss over the
 * trained (caption or answer) tokens of adapt.heldout's samples, with their
 * pictures, templated as the stage trains, forward only; the same set for
 * any number of ranks ("heldout_loss" in metrics.jsonl). */
#ifndef PRESIGHT_ADAPT_H
#define PRESIGHT_ADAPT_H

#include "comm.h"
#include "config.h"
#include "error.h"

/* Returns 0, -1 (this rank failed: main ends the job), JOB_FAILED_EVERYWHERE
 * or PRESIGHT_EXIT_PREEMPTED, as pretrain_run. */
int adapt_run(const run_config *cfg, comm *c, ps_error *err);

#endif
