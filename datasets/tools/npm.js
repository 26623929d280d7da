// npm.js - loads the reference encoders that mk/tokenizer.mk installs into
// build/npm, so the scripts here work from any directory without NODE_PATH.
'use strict';
const path = require('path');
const fs = require('fs');

const ROOT = path.resolve(__dirname, '..', '..');
const MODULES = path.join(ROOT, 'build', 'npm', 'node_modules');
const VOCAB = path.join(ROOT, 'build', 'vocab');

function need(name) {
  try {
    return require(path.join(MODULES, name));
  } catch (e) {
    process.stderr.write(`${name} is not installed in build/npm (${e.message}); run 'make tokenizer-data'\n`);
    process.exit(1);
  }
}

// The Llama 3 / cl100k split pattern (identical for both vocabularies).
const PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Llama 3.1's special tokens as tokenizer.c defines them: ten named ids
// after the 128,000 ordinary ones, then reserved names up to id 128255.
function llama3Specials() {
  const named = ['<|begin_of_text|>', '<|end_of_text|>', '<|reserved_special_token_0|>',
    '<|reserved_special_token_1|>', '<|finetune_right_pad_id|>', '<|reserved_special_token_2|>',
    '<|start_header_id|>', '<|end_header_id|>', '<|eom_id|>', '<|eot_id|>', '<|python_tag|>'];
  const out = {};
  for (let i = 0; i < 256; i++) {
    const name = i < named.length ? named[i] : `<|reserved_special_token_${i - named.length + 3}|>`;
    out[name] = 128000 + i;
  }
  return out;
}

const CL100K_SPECIALS = {
  '<|endoftext|>': 100257, '<|fim_prefix|>': 100258, '<|fim_middle|>': 100259,
  '<|fim_suffix|>': 100260, '<|endofprompt|>': 100276,
};

// tiktoken (Rust compiled to WASM) over a vocabulary file of build/vocab.
function tiktokenFor(file, specials) {
  const { Tiktoken } = need('tiktoken');
  const p = path.join(VOCAB, file);
  if (!fs.existsSync(p)) {
    process.stderr.write(`${p} is missing; run 'make tokenizer-data'\n`);
    process.exit(1);
  }
  return new Tiktoken(fs.readFileSync(p, 'utf8'), specials, PATTERN);
}

module.exports = { need, ROOT, VOCAB, PATTERN, llama3Specials, CL100K_SPECIALS, tiktokenFor };
