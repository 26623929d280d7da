// encoder_model.js - reads one of nsfwjs's TF.js graph models (model.min.js +
// group*-shard*.min.js) and turns its GraphDef into the short op list that
// core/encoder.c runs. Shared by encoder_convert.js (the weights file) and
// encoder_golden.js (the TF.js reference), so both see the same graph.
'use strict';
const fs = require('fs');
const path = require('path');

const PREFIX = 'StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/StatefulPartitionedCall/StatefulPartitionedCall/predict/';
const short = (s) => (s.startsWith(PREFIX) ? s.slice(PREFIX.length) : s);

// The model's files are CommonJS modules: model.min.js exports the model.json
// object, each shard exports its bytes as base64 text.
function loadModel(dir) {
  const model = require(path.resolve(dir, 'model.min.js'));
  if (model.format !== 'graph-model') throw new Error(`${dir}/model.min.js: format '${model.format}', expected graph-model`);
  const buffers = [];
  for (const group of model.weightsManifest)
    for (const p of group.paths) {
      const f = path.resolve(dir, p + '.min.js');
      const text = require(f);
      if (typeof text !== 'string') throw new Error(`${f}: expected a base64 string`);
      buffers.push(Buffer.from(text, 'base64'));
    }
  const data = Buffer.concat(buffers);
  const specs = [].concat(...model.weightsManifest.map((g) => g.weights));
  return { model, specs, data };
}

// name -> Float32Array, dequantised as TF.js does (v * scale + min).
function dequantise(specs, data) {
  const out = new Map();
  let off = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const q = s.quantization;
    const v = new Float32Array(n);
    if (q && q.dtype === 'uint8') {
      for (let i = 0; i < n; i++) v[i] = data[off + i] * q.scale + q.min;
      off += n;
    } else if (!q && s.dtype === 'float32') {
      v.set(new Float32Array(data.buffer.slice(data.byteOffset + off, data.byteOffset + off + 4 * n)));
      off += 4 * n;
    } else throw new Error(`weight ${s.name}: unsupported dtype/quantisation ${JSON.stringify(q || s.dtype)}`);
    out.set(s.name, { shape: s.shape, values: v });
  }
  if (off !== data.length) throw new Error(`weights: manifest covers ${off} bytes, shards hold ${data.length}`);
  return out;
}

const attrList = (a) => (a && a.list ? a.list.i || (a.list.s || []).map((x) => Buffer.from(x, 'base64').toString()) : []);
const attrStr = (a) => (a && a.s ? Buffer.from(a.s, 'base64').toString() : '');

// The op list: one line per op, names shortened; see core/encoder.h.
//   conv OUT IN W B SH SW SAME|VALID none|relu|relu6
//   dwconv OUT IN W B SH SW SAME|VALID none|relu|relu6
//   add OUT A B
//   pool OUT IN            (global average: the feature vector)
//   block NAME TENSOR      (a block's output, for per-layer pooled features)
function graphOps(model, weights) {
  const ops = [];
  const prep = {};
  let input = null, pooled = null;
  const alias = new Map();
  const name = (s) => alias.get(short(s)) || short(s);
  const blockOf = (s) => { const p = s.split('/'); return p.length > 2 ? p[1] : null; };
  const scalar = (s) => weights.get(s).values[0];
  for (const n of model.modelTopology.node) {
    const a = n.attr || {};
    const ins = (n.input || []).filter((i) => !i.startsWith('^'));
    const out = short(n.name);
    if (n.op === 'Const') continue;
    if (pooled) continue; // the classifier head after the feature vector is not needed
    if (n.op === 'Placeholder') { input = out; continue; }
    if (n.op === 'Mul' && ins.includes('input')) { prep.norm_mul = scalar(ins.find((i) => i !== 'input')); alias.set(out, 'input'); continue; }
    if (n.op === 'Sub' && name(ins[0]) === 'input') { prep.norm_sub = scalar(ins[1]); alias.set(out, 'input'); continue; }
    if (n.op === '_FusedConv2D' || n.op === 'FusedDepthwiseConv2dNative') {
      const fused = attrList(a.fused_ops);
      const st = attrList(a.strides).map(Number), dil = attrList(a.dilations).map(Number);
      if (dil.some((d) => d !== 1)) throw new Error(`${out}: dilations ${dil} not supported`);
      if (fused[0] !== 'BiasAdd' || fused.length > 2) throw new Error(`${out}: fused ops ${fused} not supported`);
      const act = fused.length === 1 ? 'none' : fused[1].toLowerCase();
      if (!['relu', 'relu6'].includes(act) && act !== 'none') throw new Error(`${out}: activation ${fused[1]} not supported`);
      ops.push([n.op === '_FusedConv2D' ? 'conv' : 'dwconv', out, name(ins[0]), short(ins[1]), short(ins[2]), st[1], st[2], attrStr(a.padding), act].join(' '));
      continue;
    }
    if (n.op === 'AddV2' || n.op === 'Add') { ops.push(['add', out, name(ins[0]), name(ins[1])].join(' ')); continue; }
    if (n.op === 'AvgPool') {
      const k = attrList(a.ksize).map(Number);
      ops.push(['pool', out, name(ins[0])].join(' '));
      pooled = { name: out, k: k[1] };
      continue;
    }
    throw new Error(`node ${n.name}: op ${n.op} not supported by core/encoder.c`);
  }
  if (input !== 'input' || prep.norm_mul === undefined || prep.norm_sub === undefined || !pooled)
    throw new Error('graph: expected input -> Mul -> Sub preprocessing and an AvgPool feature vector');
  // Block outputs: the last op of each MobilenetV2/<block>/... group.
  const blocks = [];
  for (let i = 0; i < ops.length; i++) {
    const f = ops[i].split(' ');
    if (f[0] === 'pool') continue;
    const b = blockOf(f[1]), next = i + 1 < ops.length ? blockOf(ops[i + 1].split(' ')[1]) : null;
    if (b && b !== next) blocks.push([b, f[1]]);
  }
  const lines = ops.concat(blocks.map(([b, t]) => `block ${b} ${t}`));
  const shape = model.modelTopology.node.find((n) => n.op === 'Placeholder').attr.shape.shape.dim.map((d) => Number(d.size));
  prep.input_size = shape[1];
  prep.pool_grid = pooled.k;
  return { lines, prep, blocks, feature: pooled.name };
}

module.exports = { loadModel, dequantise, graphOps, short, PREFIX };
