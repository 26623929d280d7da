/* heldout_loss.h - the validation loss printed while training (eval.every), as llm.c and
 * torchtitan print one: the mean next-token cross-entropy over held-out documents.
 *
 * The documents are those of a rolling task file (eval.heldout: the held-out perplexity
 * task, or WikiText), tokenized with the run's tokenizer; each document is preceded by
 * <|end_of_text|> (as the eval's rolling windows are), the stream is cut into rows of
 * train.seq_len + 1 tokens, and the first eval.batches global batches (train.micro_batch x
 * ranks rows each) are the fixed held-out set (a short last row's missing targets do not
 * count): the same rows for any number of ranks at the same global batch. Rank r runs rows
 * (b * ranks + r) * micro_batch ... of batch b, every rank the same number of forward passes
 * (FSDP gathers in lockstep); the sums meet in one all-reduce. */
#ifndef PRESIGHT_HELDOUT_LOSS_H
#define PRESIGHT_HELDOUT_LOSS_H

#include "comm.h"
#include "config.h"
#include "error.h"
#include "gpu_engine.h"
#include "model.h"

typedef struct heldout_set {
    int *inputs, *targets; /* [batches][micro_batch * seq_len] */
    int batches, rows, seq;
    long counted;          /* targets that count, every rank's */
} heldout_set;

/* scratch_dir: where a byte-level run's vocabulary is written (eval_model.h). */
int heldout_set_open(heldout_set *h, const run_config *cfg, int rank, int world, const char *scratch_dir, ps_error *err);
void heldout_set_free(heldout_set *h);

/* Collective: the mean loss over the set with the model as it stands (acts: [micro_batch,
 * seq_len]); the same on every rank. */
int heldout_set_loss(const heldout_set *h, model *m, const model_params *params, model_activations *acts, comm *c,
                     double *loss, ps_error *err);
/* The same on the GPU engine (its forward_batch: bf16 weights and activations, fp32 logits' loss). */
int heldout_set_loss_gpu(const heldout_set *h, const gpu_engine_api *gpu, gpu_engine *e, comm *c, double *loss,
                         ps_error *err);

#endif
