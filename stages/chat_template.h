/* chat_template.h - the one chat template of the study (adapt and eval).
 *
 * A conversation (LLaVA's {"from": "human"|"gpt", "value": ...} turns) becomes
 * token ids plus, per id, whether it is trained on (an answer token) and
 * where the picture goes. Two styles, as LLaVA has them:
 *
 *   CHAT_PLAIN (stage 1, align; LLaVA's "plain"): the human turn must be
 *   exactly "<image>" (whitespace around it allowed); the sample is
 *       BOS <image> caption EOS
 *   and caption + EOS are trained.
 *
 *   CHAT_CHAT (blind, stage 2 and evaluation prompts; LLaVA's "v1" shape):
 *       BOS  U text_1 E  A answer_1 EOT  U text_2 E  A answer_2 EOT ...
 *   where, for the tokenizer in use,
 *     llama3 (128k vocabulary with the Llama 3.1 specials):
 *       U = <|start_header_id|>user<|end_header_id|>\n\n,  E = <|eot_id|>,
 *       A = <|start_header_id|>assistant<|end_header_id|>\n\n, EOT = <|eot_id|>,
 *       BOS = <|begin_of_text|>
 *     plain (a trained BPE: specials <|begin_of_text|>, <|end_of_text|>, ...)
 *     and bytes (data.kind = "text": byte ids 0..255, then the same specials):
 *       U = "USER: ", E = "\n", A = "ASSISTANT: ", EOT = <|end_of_text|>,
 *       BOS = <|begin_of_text|>
 *     cl100k: as plain with BOS = EOT = <|endoftext|>.
 *   Every answer's tokens and its EOT are trained; BOS, U, E, A, every human
 *   text and the picture are not. `<image>` may appear once, in the first
 *   human turn only (LLaVA puts it there); the text on either side of it is
 *   kept ("<image>\nWhat ..." -> picture, then "\nWhat ...").
 *   With add_generation_prompt (evaluation: the model answers next), the last
 *   turn must be human and A follows it.
 *
 * A conversation the template cannot take is an error (-1 with err naming
 * why): turns not alternating human/gpt starting with human, an empty
 * answer, `<image>` elsewhere than the first human turn or more than once,
 * `<image>` without a picture or a picture without `<image>`. Callers count
 * such samples (adapt fails past a threshold) rather than train on them.
 * Human and answer texts are tokenized as ordinary text: a special token's
 * name typed in a prompt stays text. */
#ifndef PRESIGHT_CHAT_TEMPLATE_H
#define PRESIGHT_CHAT_TEMPLATE_H

#include <stddef.h>

#include "config.h"
#include "error.h"
#include "tokenizer.h"

#define CHAT_IMAGE_MARK "<image>"

typedef enum { CHAT_PLAIN = 0, CHAT_CHAT = 1 } chat_style;

typedef enum { CHAT_TEXT_BYTES = 0, CHAT_TEXT_PLAIN, CHAT_TEXT_LLAMA3, CHAT_TEXT_CL100K } chat_text_kind;

/* How text becomes ids: a tokenizer, or bytes (tok NULL). */
typedef struct chat_template {
    const tokenizer *tok; /* NULL: byte ids */
    tokenizer *owned;     /* the tokenizer chat_template_for_run loaded (freed by chat_template_free) */
    chat_text_kind kind;
    int vocab;            /* ids must be below this (the model's model.vocab) */
    int bos, eot;         /* BOS and the end of an answer */
    int header_start, header_end; /* llama3 only (else -1) */
} chat_template;

/* With a loaded tokenizer (tok NULL: byte ids with specials at 256..259);
 * vocab is the model's embedding rows: every id used must fit. */
int chat_template_init(chat_template *t, const tokenizer *tok, int vocab, ps_error *err);
/* The text encoding a pretrained run used: data.kind "text" -> bytes; else
 * data.tokenizer (data.tokenizer_kind) is loaded. */
int chat_template_for_run(chat_template *t, const run_config *pretrained, ps_error *err);
void chat_template_free(chat_template *t);

typedef struct chat_turn {
    int human;          /* 1: from "human", 0: from "gpt" */
    const char *text;
} chat_turn;

/* One templated sample: ids with the picture as one mark (image_at). */
typedef struct chat_tokens {
    int *ids;           /* [n] token ids (no picture rows) */
    unsigned char *train; /* [n] 1: an answer token, trained on */
    int n, cap;
    int image_at;       /* the picture goes before ids[image_at]; -1: no picture */
    int n_train;        /* ids with train = 1 */
} chat_tokens;

/* Templates turns[0..n_turns) into out (reset first; start out zeroed, free
 * with chat_tokens_free). has_image: the sample has a picture. */
int chat_template_apply(const chat_template *t, chat_style style, const chat_turn *turns, int n_turns,
                        int has_image, int add_generation_prompt, chat_tokens *out, ps_error *err);
void chat_tokens_free(chat_tokens *c);

/* An evaluation prompt: one human turn, "<image>\n" + question when has_image (where
 * LLaVA's first turn puts the picture, as data/images/instruct.jsonl has it), then A
 * (add_generation_prompt): token for token the start of a stage-2 sample that asks this
 * question first, so the model answers where sft taught it to. */
int chat_template_question(const chat_template *t, const char *question, int has_image, chat_tokens *out,
                           ps_error *err);

/* Appends the ids of text (ordinary text, no specials) to out with train flag. */
int chat_tokens_append_text(const chat_template *t, chat_tokens *out, const char *text, size_t len, int train,
                            ps_error *err);

#endif
