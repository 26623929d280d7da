/* export_hf.h - a presight model as a Hugging Face Llama checkpoint, so that users can
 * cross-check presight's scores in lm-evaluation-harness on their own machines.
 *
 *   DIR/config.json          LlamaForCausalLM: hidden_size, intermediate_size, num_hidden_layers,
 *                            num_attention_heads, num_key_value_heads, head_dim, vocab_size,
 *                            max_position_embeddings, rope_theta, rms_norm_eps,
 *                            tie_word_embeddings, bos/eos_token_id, torch_dtype float32
 *   DIR/model.safetensors    float32, little-endian; an 8-byte header length, the JSON
 *                            header (name -> dtype, shape, data_offsets), the raw data
 *   DIR/tokenizer.tiktoken   the vocabulary the model was trained with (a copy)
 *   DIR/tokenizer.json, tokenizer_config.json, special_tokens_map.json
 *                            the same vocabulary for transformers (export_tokenizer.h)
 *
 * Names: tok_embeddings -> model.embed_tokens, layers.i.attention.wq/wk/wv/wo ->
 * model.layers.i.self_attn.q/k/v/o_proj, feed_forward.w1/w3/w2 -> mlp.gate/up/down_proj,
 * attention_norm -> input_layernorm, ffn_norm -> post_attention_layernorm, norm ->
 * model.norm, output -> lm_head (absent when tied). Meta's RoPE rotates interleaved pairs
 * (x[2i], x[2i+1]); HF's rotate_half rotates (x[i], x[i + hd/2]): wq and wk rows are
 * permuted per head as transformers' convert_llama_weights_to_hf.py permute() does,
 * new row h*hd + p*hd/2 + i = old row h*hd + 2i + p. */
#ifndef PRESIGHT_EXPORT_HF_H
#define PRESIGHT_EXPORT_HF_H

#include "config.h"
#include "error.h"

/* Writes cfg's model (eval_model.h: its weights and tokenizer) into dir (created;
 * files written as NAME.tmp and renamed). */
int export_hf_llama(const run_config *cfg, const char *dir, ps_error *err);

/* 1 when cfg is an adapted model's run config (adapt.init and adapt.encoder_width set). */
int export_hf_is_adapted(const run_config *cfg);

/* An adapted model (mm_model.h: LLM + projector) in LLaVA's layout: config.json is
 * LlavaLlamaForCausalLM (model_type llava_llama) with the Llama keys above plus
 * mm_projector_type "mlp2x_gelu", mm_hidden_size (the encoder's width), mm_vision_tower
 * "presight:ENCODER" (presight's encoders are not CLIP checkpoints: a user feeds the
 * encoder's features, see README), mm_use_im_start_end false, and presight_visual_tokens,
 * presight_encoder_sha256, presight_adapt_stage (eos_token_id is [<|end_of_text|>,
 * <|eot_id|>] for a Llama 3 vocabulary, whose answers end with the latter);
 * model.safetensors holds the Llama tensors and model.mm_projector.{0,2}.{weight,bias}
 * ([dim, mm_hidden_size], [dim], [dim, dim], [dim]: nn.Linear, GELU, nn.Linear); the
 * tokenizer files carry the chat template. */
int export_hf_llava(const run_config *cfg, const char *dir, ps_error *err);

#endif
