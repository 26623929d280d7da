/* export_tokenizer.h - a presight vocabulary as Hugging Face tokenizer files, so that
 * transformers (AutoTokenizer, PreTrainedTokenizerFast) and lm-evaluation-harness read an
 * exported model's text exactly as presight does.
 *
 *   DIR/tokenizer.json          the `tokenizers` format: a byte-level BPE model
 *       (ignore_merges: a pre-token piece that is a whole token is that token, as in
 *       tiktoken), the vocabulary in GPT-2's bytes-to-unicode spelling, merges derived from
 *       the tiktoken ranks as transformers' TikTokenConverter derives them (every split of
 *       a token into two tokens, ordered by the token's rank, then by the ranks of the
 *       left and right parts), the Llama 3 / cl100k split regex, a ByteLevel decoder, and
 *       the specials as added tokens. No BOS is added on encoding (presight's scoring
 *       starts from <|end_of_text|> itself).
 *   DIR/tokenizer_config.json   PreTrainedTokenizerFast, the specials (added_tokens_decoder),
 *       eos_token (presight's scoring prefix), model_max_length and, for an adapted model,
 *       bos_token and chat_template: the Jinja form of chat_template.h's CHAT_CHAT for the
 *       vocabulary's kind. A pretrained model's bos_token is null: pretraining uses none,
 *       and lm-evaluation-harness then takes eos_token as its prefix, as presight does.
 *   DIR/special_tokens_map.json eos_token (and bos_token for an adapted model).
 *
 * Where tiktoken and HF's BPE could part: a piece holding two adjacent pairs that merge to
 * the same token (e.g. "aa a aa"): tiktoken merges the leftmost, HF the pair whose parts
 * rank lower. No such case turned up in 3,000 random strings and 2,160 repetitions (one to
 * 120 copies of 18 units) per vocabulary; tests/t_export_hf.sh keeps the repetitions. */
#ifndef PRESIGHT_EXPORT_TOKENIZER_H
#define PRESIGHT_EXPORT_TOKENIZER_H

#include "error.h"
#include "tokenizer.h"

/* Writes the three files into dir (NAME.tmp, renamed). eos is the end-of-text id
 * (eval_model's prefix); chat 1 adds the chat template (an adapted model). */
int export_hf_tokenizer(const tokenizer *tok, uint32_t eos, int model_max_length, int chat, const char *dir,
                        ps_error *err);

#endif
