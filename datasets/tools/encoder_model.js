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
  const layers = model.modelTopology && model.modelTopology.model_config;
  if (model.format !== 'graph-model' && !layers) throw new Error(`${dir}/model.min.js: neither a graph model nor a Keras layers model`);
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

// A Keras layers model (nsfwjs's InceptionV3): Conv2D (no bias) -> BatchNormalization
// -> Activation(relu) become one conv with the batch norm folded in:
//   s = gamma / sqrt(var + eps), W' = W * s (per output channel), b' = beta - mean * s,
// computed in double and rounded to float once. Pools and concatenations follow
// the layer graph; Flatten ends the features (its input's spatial mean is the
// pooled feature). Returns the op list and the folded tensors (name -> {shape, values}).
function layersOps(model, weights) {
  const L = model.modelTopology.model_config.config.layers;
  const ops = [], tensors = new Map(), blocks = [];
  const alias = new Map();
  const name = (n) => alias.get(n) || n;
  const inputOf = (l) => l.inbound_nodes[0].map((x) => name(x[0]));
  let input = null, feature = null, size = 0;
  const pendingConv = new Map(), pendingBn = new Map();
  for (const l of L) {
    const c = l.config, ins = l.inbound_nodes.length ? inputOf(l) : [];
    if (feature) break;
    if (l.class_name === 'InputLayer') { input = l.name; alias.set(l.name, 'input'); size = c.batch_input_shape[1]; continue; }
    if (l.class_name === 'Conv2D') {
      if (c.use_bias || c.activation !== 'linear' || c.dilation_rate.some((d) => d !== 1)) throw new Error(`${l.name}: only bias-free linear convs are supported`);
      pendingConv.set(l.name, { l, in: ins[0] });
      continue;
    }
    if (l.class_name === 'BatchNormalization') {
      const conv = pendingConv.get(ins[0]);
      if (!conv || c.axis !== 3 || !c.center) throw new Error(`${l.name}: batch norm must follow a conv (channels last, center)`);
      pendingBn.set(l.name, { conv, bn: l });
      continue;
    }
    if (l.class_name === 'Activation') {
      const p = pendingBn.get(ins[0]);
      if (!p || c.activation !== 'relu') throw new Error(`${l.name}: relu after a conv + batch norm expected`);
      const cv = p.conv.l, bn = p.bn, eps = bn.config.epsilon;
      const W = weights.get(`${cv.name}/kernel`), beta = weights.get(`${bn.name}/beta`).values;
      const mean = weights.get(`${bn.name}/moving_mean`).values, vr = weights.get(`${bn.name}/moving_variance`).values;
      const gamma = bn.config.scale ? weights.get(`${bn.name}/gamma`).values : null;
      const cout = W.shape[3], wf = new Float32Array(W.values.length), bf = new Float32Array(cout);
      const sc = new Float64Array(cout);
      for (let o = 0; o < cout; o++) { sc[o] = (gamma ? gamma[o] : 1) / Math.sqrt(vr[o] + eps); bf[o] = beta[o] - mean[o] * sc[o]; }
      for (let i = 0; i < wf.length; i++) wf[i] = W.values[i] * sc[i % cout];
      tensors.set(`${cv.name}/kernel_bn`, { shape: W.shape, values: wf });
      tensors.set(`${cv.name}/bias_bn`, { shape: [cout], values: bf });
      ops.push(['conv', l.name, p.conv.in, `${cv.name}/kernel_bn`, `${cv.name}/bias_bn`, cv.config.strides[0], cv.config.strides[1],
        cv.config.padding.toUpperCase(), 'relu'].join(' '));
      if (/^activation_[1-5]$/.test(l.name)) blocks.push([l.name, l.name]); // the stem
      continue;
    }
    if (l.class_name === 'MaxPooling2D' || l.class_name === 'AveragePooling2D') {
      if (c.pool_size[0] !== c.pool_size[1] || c.strides[0] !== c.strides[1]) throw new Error(`${l.name}: square pools only`);
      ops.push([l.class_name === 'MaxPooling2D' ? 'maxpool' : 'avgpool', l.name, ins[0], c.pool_size[0], c.strides[0], c.padding.toUpperCase()].join(' '));
      continue;
    }
    if (l.class_name === 'Concatenate') {
      if (c.axis !== 3 && c.axis !== -1) throw new Error(`${l.name}: concatenation on channels only`);
      ops.push(['concat', l.name, ...ins].join(' '));
      if (/^mixed\d+$/.test(l.name)) blocks.push([l.name, l.name]);
      continue;
    }
    if (l.class_name === 'Flatten') { feature = 'features/mean'; ops.push(['pool', feature, ins[0]].join(' ')); continue; }
    throw new Error(`layer ${l.name}: ${l.class_name} not supported by core/encoder.c`);
  }
  if (!input || !feature) throw new Error('layers model: expected an input layer and a Flatten after the features');
  const lines = ops.concat(blocks.map(([b, t]) => `block ${b} ${t}`));
  return { lines, prep: { input_size: size, norm_mul: 1, norm_sub: 0 }, blocks, feature, tensors };
}

module.exports = { loadModel, dequantise, graphOps, layersOps, short, PREFIX };
