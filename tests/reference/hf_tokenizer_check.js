// hf_tokenizer_check.js - presight export's Hugging Face tokenizer files read back by an
// implementation of the format no one here wrote: @lenml/tokenizers (transformers.js'
// tokenizers: PreTrainedTokenizer from tokenizer.json + tokenizer_config.json), against
// tiktoken (the WASM build of OpenAI's Rust BPE) on the .tiktoken vocabulary itself.
//
//   node tests/reference/hf_tokenizer_check.js DIR VOCAB KIND [options]
//     --text FILE        more sample text (paragraphs, split at blank lines)
//     --official FILE    an official tokenizer.json of the same vocabulary (Llama 3's):
//                        its model.vocab must equal DIR's exactly
//     --chat CONV IDS    conversations (hf_tokenizer chat's input) and presight's ids for
//                        them: apply_chat_template with DIR's chat_template must give the same
//     --mutate merges    reverse the merges first (the negative control: must fail)
// Pass: every sample encodes to tiktoken's ids (allowed_special="all": HF turns special-token
// names in any text into their ids) and decodes back to itself.
'use strict';
const fs = require('fs');
const { need, PATTERN, llama3Specials, CL100K_SPECIALS } = require('../../datasets/tools/npm.js');

const args = process.argv.slice(2);
const [dir, vocab, kind] = args;
const opt = (name) => { const i = args.indexOf(name); return i < 0 ? null : args.slice(i + 1, i + 3); };
const json = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));

const tj = json(`${dir}/tokenizer.json`), tc = json(`${dir}/tokenizer_config.json`);
if ((opt('--mutate') || [])[0] === 'merges') tj.model.merges.reverse();
const { TokenizerLoader } = need('@lenml/tokenizers');
const hf = TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: tc });

const specials = kind === 'llama3' ? llama3Specials() : kind === 'cl100k' ? CL100K_SPECIALS : {};
if (kind === 'plain') { // the four of tokenizer.h after the ordinary ids
  for (const t of tj.added_tokens) specials[t.content] = t.id;
}
const { Tiktoken } = need('tiktoken');
const tt = new Tiktoken(fs.readFileSync(vocab, 'utf8'), specials, PATTERN);

const samples = [
  'Hello world', 'The quick brown fox jumps over the lazy dog.', "I'll say it: DON'T, we're sure they've gone.",
  '12345678 + 3.14159 = 1234567.89', '    four spaces, then\ttab\n\n\nnewlines\r\n', 'a  b   c    d     e      f',
  'caf\u00e9 na\u00efve \u00fcber \u00c5ngstr\u00f6m', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587',
  'emoji \ud83d\ude00\ud83d\udc4d\ud83c\udffd flags \ud83c\uddeb\ud83c\uddf7', 'int main(void) { return x->y[3] != 0 && !z; }',
  '"quoted" \\ backslash \u00a0nbsp', '!!!???...---***', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '                                        ', 'def f(x):\n    return [i ** 2 for i in range(x)]\n',
];
// Repetitions, where merges of the same token at two places could compete.
for (const unit of ['=', '-', '*', '.', ' ', '\n', '\t', 'a', 'ab', 'aab', 'x ', '==-', "'", '\u00e9']) {
  for (let n = 1; n <= 120; n += (n < 40 ? 1 : 7)) samples.push(unit.repeat(n));
}
const extra = opt('--text');
if (extra) samples.push(...fs.readFileSync(extra[0], 'utf8').split(/\n\s*\n/).filter((s) => s.length));

let bad = 0, tokens = 0;
for (const s of samples) {
  const want = Array.from(tt.encode(s, 'all')); // HF splits added tokens out of any text
  const got = hf.encode(s, { add_special_tokens: false });
  tokens += want.length;
  if (JSON.stringify(want) !== JSON.stringify(got)) {
    let k = 0;
    while (k < want.length && want[k] === got[k]) k++;
    if (bad++ < 3) console.log(`mismatch on ${JSON.stringify(s.slice(0, 60))} at token ${k}:\n  tiktoken ${want.slice(k, k + 8)} ${JSON.stringify(new TextDecoder().decode(tt.decode(new Uint32Array(want.slice(k, k + 8)))))}\n  hf       ${got.slice(k, k + 8)} ${JSON.stringify(hf.decode(got.slice(k, k + 8)))}`);
  } else if (hf.decode(got) !== s) {
    if (bad++ < 3) console.log(`decode of ${JSON.stringify(s.slice(0, 80))} gives ${JSON.stringify(hf.decode(got).slice(0, 80))}`);
  }
}
console.log(`${samples.length - bad}/${samples.length} samples (${tokens} tokens) identical to tiktoken, round trip exact`);

const off = opt('--official');
if (off) {
  const ov = json(off[0]).model.vocab, mv = tj.model.vocab;
  const diff = Object.keys(ov).filter((k) => ov[k] !== mv[k]).length + Object.keys(mv).filter((k) => !(k in ov)).length;
  console.log(`vocabulary against ${off[0]}: ${Object.keys(mv).length} tokens, ${diff} differ`);
  if (diff) bad++;
}

const chat = opt('--chat');
if (chat) {
  const convs = fs.readFileSync(chat[0], 'utf8').trim().split('\n').map(JSON.parse);
  const ids = fs.readFileSync(chat[1], 'utf8').trim().split('\n').map(JSON.parse);
  let same = 0, text = 0;
  convs.forEach((c, i) => {
    const msgs = c.map(([role, content]) => ({ role, content }));
    const o = { add_generation_prompt: c[c.length - 1][0] === 'user', return_tensor: false };
    const got = Array.from(hf.apply_chat_template(msgs, { ...o, tokenize: true }));
    const rendered = hf.apply_chat_template(msgs, { ...o, tokenize: false });
    if (JSON.stringify(got) === JSON.stringify(ids[i])) same++;
    if (rendered === hf.decode(ids[i])) text++;
    // Llama 3's template joins its parts with specials, so the ids must agree; the plain
    // one ("USER: ", "\n", "ASSISTANT: ") only as text: presight tokenizes each part on its
    // own, HF the whole rendered string (a boundary such as "USER: " + "What" differs).
    const ok = kind === 'llama3' ? JSON.stringify(got) === JSON.stringify(ids[i]) : rendered === hf.decode(ids[i]);
    if (!ok && bad++ < 5) console.log(`chat ${i}: presight ${ids[i].slice(0, 24)} ${JSON.stringify(hf.decode(ids[i]))}\n        hf       ${got.slice(0, 24)} ${JSON.stringify(rendered)}`);
  });
  console.log(`${convs.length} conversations: the exported chat template renders presight's text for ${text}, its ids for ${same}`);
}
tt.free();
process.exit(bad ? 1 : 0);
