#!/usr/bin/env node
// encoder_convert.js - the first half of the weights conversion: nsfwjs model
// directory -> OUT.json (op list, preprocessing, tensor index) + OUT.bin
// (dequantised float32, little-endian). encoder_h5.py writes the HDF5 file.
//
// usage: node encoder_convert.js <model dir> <encoder name> <OUT prefix>
'use strict';
const fs = require('fs');
const { loadModel, dequantise, graphOps, layersOps, short } = require('./encoder_model.js');

const [dir, encoder, outPrefix] = process.argv.slice(2);
if (!outPrefix) { console.error('usage: node encoder_convert.js <model dir> <encoder> <out prefix>'); process.exit(2); }
const { model, specs, data } = loadModel(dir);
const weights = dequantise(specs, data);
const g = model.format === 'graph-model' ? graphOps(model, weights) : layersOps(model, weights);
const source = g.tensors || new Map([...weights].map(([n, w]) => [short(n), w]));
const used = new Set();
for (const l of g.lines) { const f = l.split(' '); if (f[0] === 'conv' || f[0] === 'dwconv') { used.add(f[3]); used.add(f[4]); } }
const tensors = [];
const parts = [];
let off = 0;
for (const [n, w] of source) {
  if (!used.has(n)) continue;
  tensors.push({ name: n, shape: w.shape, offset: off });
  parts.push(Buffer.from(w.values.buffer, w.values.byteOffset, w.values.byteLength));
  off += w.values.length;
}
fs.writeFileSync(outPrefix + '.bin', Buffer.concat(parts));
fs.writeFileSync(outPrefix + '.json', JSON.stringify({ encoder, graph: g.lines.join('\n'), prep: g.prep, feature: g.feature, tensors }, null, 1));
console.log(`encoder weights: ${encoder}: ${g.lines.length} ops/blocks, ${tensors.length} tensors, ${off} floats`);
