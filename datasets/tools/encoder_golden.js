#!/usr/bin/env node
// encoder_golden.js - the reference no one here wrote: runs an nsfwjs graph
// model in TensorFlow.js (pure-JS CPU backend) on real PNG pictures and writes
// what presight's encoder must reproduce.
//
// usage: node encoder_golden.js <model dir> <picture dir> <out dir> [--check IMAGE | --bench N]
//
// Pipeline, as nsfwjs feeds its models: pngjs decodes (grey, palette, 16-bit
// scaled to 8 bits; alpha composited on white: round((c*a + 255*(255-a))/255)),
// then x/255, tf.image.resizeBilinear(alignCorners=true) to the model's size,
// then the graph itself (x*2-1, the network).
// Writes <out>/manifest.json, pooled.f32 (per image, every block's spatial
// mean, blocks concatenated) and grid_<image>_<block>.f32 (full [h,w,c] grids
// for a few). With --check it recomputes one image and compares it with the
// committed files instead (exit 1 on a difference).
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const npm = path.resolve(__dirname, '../../data/encoders/npm/node_modules');
const req = (m) => require(path.join(npm, m));
const tf = req('@tensorflow/tfjs-core');
req('@tensorflow/tfjs-backend-cpu');
const tfc = req('@tensorflow/tfjs-converter');
const { PNG } = req('pngjs');
const { loadModel, dequantise, graphOps, layersOps, PREFIX } = require('./encoder_model.js');

const IMAGES = ['astronaut', 'brick', 'bw_text', 'camera', 'cell', 'chelsea', 'chessboard_GRAY', 'chessboard_RGB',
  'clock_motion', 'coffee', 'coins', 'color', 'green_palette', 'grass', 'gravel', 'horse', 'ihc', 'logo',
  'microaneurysms', 'moon', 'motorcycle_left', 'page', 'phantom', 'text', 'palette_color', 'checker_bilevel'];
const GRIDS = [['chelsea', 'Conv_1'], ['chelsea', 'expanded_conv_12'], ['logo', 'Conv_1'], ['camera', 'Conv_1'],
  ['chelsea', 'mixed10'], ['chelsea', 'mixed7'], ['logo', 'mixed10']];

function decodePng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const { width, height, data } = png;
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const a = data[4 * i + 3];
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = Math.round((data[4 * i + c] * a + 255 * (255 - a)) / 255);
  }
  return { tensor: tf.tensor3d(rgb, [height, width, 3], 'int32'), height, width,
    sha256: crypto.createHash('sha256').update(Uint8Array.from(rgb)).digest('hex') };
}

async function main() {
  const args = process.argv.slice(2);
  const [modelDir, picDir, outDir] = args;
  const ci = args.indexOf('--check');
  const check = ci >= 0 ? args[ci + 1] : null;
  await tf.setBackend('cpu');
  const { model, specs, data } = loadModel(modelDir);
  const graph = model.format === 'graph-model';
  const g = graph ? graphOps(model, dequantise(specs, data)) : layersOps(model, dequantise(specs, data));
  const io = tf.io.fromMemory({ modelTopology: model.modelTopology, weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.length) });
  let net;
  if (graph) net = await tfc.loadGraphModel(io);
  else { // a Keras model: a sub-model whose outputs are the blocks (and the feature)
    const tfl = req('@tensorflow/tfjs-layers');
    const full = await tfl.loadLayersModel(io);
    const sub = tfl.model({ inputs: full.inputs, outputs: g.blocks.map(([, t]) => full.getLayer(t).output) });
    net = { execute: (x, names) => { const o = sub.predict(x); return names.length === 1 && !Array.isArray(o) ? o : o; } };
  }
  const size = g.prep.input_size;
  const run = (name) => tf.tidy(() => {
    const img = decodePng(path.join(picDir, name + '.png')).tensor;
    const x = tf.reshape(tf.image.resizeBilinear(tf.div(tf.cast(img, 'float32'), tf.scalar(255)), [size, size], true), [1, size, size, 3]);
    const outs = net.execute(x, g.blocks.map(([, t]) => (graph ? PREFIX : '') + t));
    return outs.map((o) => tf.squeeze(o, [0]));
  });
  const widths = g.blocks.map(([, t]) => 0);
  if (check) return compare(run, g, outDir, check);
  const bi = args.indexOf('--bench');
  if (bi >= 0) { // images/s of TF.js's forward pass alone, batch 1, after a warm-up
    const n = Number(args[bi + 1] || 3);
    const x = tf.zeros([1, size, size, 3]);
    const outs = graph ? PREFIX + g.feature : g.blocks.map(([, t]) => t);
    tf.dispose(net.execute(x, outs));
    const t0 = Date.now();
    for (let i = 0; i < n; i++) tf.dispose(net.execute(x, outs));
    console.log(JSON.stringify({ images_per_s: n / ((Date.now() - t0) / 1000), images: n, backend: 'tfjs-backend-cpu 4.22.0' }));
    return;
  }
  fs.mkdirSync(outDir, { recursive: true });
  const pooled = [];
  const manifest = { encoder: path.basename(modelDir), reference: 'TensorFlow.js 4.22.0 (tfjs-backend-cpu), nsfwjs 4.4.0, pngjs 7.0.0',
    images: [], blocks: [], grids: [] };
  // InceptionV3 takes ten times MobileNetV2's time in TF.js: its goldens cover the first 20 pictures.
  for (const name of graph ? IMAGES : IMAGES.slice(0, 20)) {
    const t0 = Date.now();
    const outs = run(name);
    outs.forEach((o, b) => { widths[b] = o.shape[2]; pooled.push(Buffer.from(tf.mean(o, [0, 1]).dataSync().buffer)); });
    for (const [img, blk] of GRIDS) if (img === name && g.blocks.some(([n]) => n === blk)) {
      const b = g.blocks.findIndex(([n]) => n === blk);
      const file = `grid_${img}_${blk}.f32`;
      fs.writeFileSync(path.join(outDir, file), Buffer.from(outs[b].dataSync().buffer));
      manifest.grids.push({ image: img, block: blk, shape: outs[b].shape, file });
    }
    outs.forEach((o) => o.dispose());
    const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(picDir, name + '.png'))).digest('hex');
    // What pngjs decoded (RGB after compositing on white): libpng must agree byte for byte.
    const dec = decodePng(path.join(picDir, name + '.png'));
    dec.tensor.dispose();
    manifest.images.push({ id: name, file: name + '.png', sha256: sha, height: dec.height, width: dec.width, rgb_sha256: dec.sha256 });
    console.log(`encoder golden: ${name} (${Date.now() - t0} ms)`);
  }
  manifest.blocks = g.blocks.map(([n, t], b) => ({ name: n, tensor: t, width: widths[b] }));
  fs.writeFileSync(path.join(outDir, 'pooled.f32'), Buffer.concat(pooled));
  fs.writeFileSync(path.join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
}

// The committed goldens must still be what TF.js computes today.
function compare(run, g, outDir, name) {
  const manifest = JSON.parse(fs.readFileSync(path.join(outDir, 'manifest.json')));
  const idx = manifest.images.findIndex((i) => i.id === name);
  if (idx < 0) throw new Error(`${name}: not in ${outDir}/manifest.json`);
  const per = manifest.blocks.reduce((s, b) => s + b.width, 0);
  const all = new Float32Array(fs.readFileSync(path.join(outDir, 'pooled.f32')).buffer.slice(0));
  const want = all.subarray(idx * per, (idx + 1) * per);
  const outs = run(name);
  let off = 0, worst = 0;
  outs.forEach((o, b) => {
    const got = tf.mean(o, [0, 1]).dataSync();
    let d = 0, n = 0;
    for (let i = 0; i < got.length; i++) { d += (got[i] - want[off + i]) ** 2; n += want[off + i] ** 2; }
    worst = Math.max(worst, Math.sqrt(d / Math.max(n, 1e-30)));
    off += got.length;
  });
  const ok = worst <= 1e-6;
  console.log(`encoder golden check: ${path.basename(outDir)}, ${name}: TF.js today vs committed, worst block rel. L2 ${worst.toExponential(2)} ${ok ? 'ok' : 'FAILED'}`);
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(`encoder golden: ${e.message}`); process.exit(1); });
