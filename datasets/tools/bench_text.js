#!/usr/bin/env node
// bench_text.js - writes the mixed text the encoders are timed on.
//
// usage: node bench_text.js <out.txt> [megabytes, default 4]
//
// About half prose (licences, release notes, fortunes when installed), a
// third code (Python standard library, C headers), and the rest generated
// multilingual text with numbers and emoji: the mix a pretraining corpus has,
// from files every Debian machine here carries, so runs are comparable.
'use strict';
const fs = require('fs');
const path = require('path');

function listFiles(dir, test, limit) {
  const out = [];
  const walk = (d) => {
    let names;
    try { names = fs.readdirSync(d).sort(); } catch { return; }
    for (const n of names) {
      if (out.length >= limit) return;
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && test(p)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

// Reads files in order until quota bytes (of valid UTF-8) are gathered.
function gather(files, quota) {
  const parts = [];
  let have = 0;
  for (const f of files) {
    if (have >= quota) break;
    const buf = fs.readFileSync(f);
    const text = buf.toString('utf8');
    if (text.includes('\ufffd')) continue; // not UTF-8
    parts.push(text);
    have += buf.length;
  }
  return parts.join('\n').slice(0, quota);
}

function multilingual(quota) {
  const words = ['日本語の文章です。', '中文的句子，包括标点。', '한국어 문장입니다.', 'Русский текст, с запятыми.',
    'Ελληνικό κείμενο.', 'نص عربي قصير.', 'טקסט בעברית.', 'हिन्दी का वाक्य है।', 'ข้อความภาษาไทย',
    'Deutsche Übersetzung für Größe', 'naïve façade, résumé', '😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷', '3.14159 2653589793',
    '$1,234,567.89', '2024-05-17T12:34:56Z', 'x = f(y) + 42;', '\t\tindented\n', '  \n', 'CAPS AND it\'s WE\'LL'];
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296;
  const parts = [];
  let have = 0;
  while (have < quota) {
    const w = words[Math.floor(rand() * words.length)] + (rand() < 0.15 ? '\n' : ' ');
    parts.push(w);
    have += Buffer.byteLength(w);
  }
  return parts.join('');
}

function main() {
  const out = process.argv[2];
  const mb = Number(process.argv[3] || 4);
  if (!out) { process.stderr.write('usage: node bench_text.js <out.txt> [megabytes]\n'); process.exit(1); }
  const total = mb * 1e6;
  const prose = [
    ...listFiles('/usr/share/common-licenses', () => true, 100),
    ...listFiles('/usr/share/games/fortunes', (p) => !/\.(dat|u8)$/.test(p), 100),
    ...listFiles('/usr/share/doc', (p) => /RelNotes\/.*\.txt$|\.txt$/.test(p), 2000),
  ];
  const code = [
    ...listFiles('/usr/lib/python3.11', (p) => p.endsWith('.py'), 3000),
    ...listFiles('/usr/include', (p) => p.endsWith('.h'), 3000),
  ];
  const text = gather(prose, total * 0.5) + '\n' + gather(code, total * 0.35) + '\n' + multilingual(total * 0.15);
  fs.writeFileSync(`${out}.tmp`, text);
  fs.renameSync(`${out}.tmp`, out);
  process.stdout.write(`bench_text: ${Buffer.byteLength(text)} bytes -> ${out}\n`);
}

main();
