#!/usr/bin/env node
// ONNX Runtime side of the inference benchmark (scripts/bench-inference.sh), on the CPU library
// that npm's onnxruntime-node ships (installed with --ignore-scripts: its post-install download
// is not needed for the CPU provider).
//
// Usage: node scripts/bench-ort.js MODEL.onnx [--batch N] [--threads N] [--runs N] [--warmup N]
//        node scripts/bench-ort.js MODEL.onnx --check IN.npy OUT.npy [--threads N]
//
// Session options: intraOpNumThreads = --threads (default 1), interOpNumThreads 1,
// graphOptimizationLevel 'all', executionMode 'sequential'. The first form feeds a seeded
// random float32 input of shape [batch, C, H, W] (C, H, W from the model's input metadata),
// runs --warmup untimed and --runs timed inferences (default 3 and 20) and prints one JSON
// line: median, p90 and mean ms per batch, ms per image, images/s, ORT's version and the
// library file. --check runs the model once on IN.npy (float32, C order) and writes its first
// output to OUT.npy, for the accuracy check.
// onnxruntime-node is looked up in ORT_PREFIX (default build-bench/ort), where
// bench-inference.sh installs it.
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const prefix = process.env.ORT_PREFIX || path.join(root, 'build-bench', 'ort');

function usage(msg) {
  if (msg) process.stderr.write(`bench-ort: ${msg}\n`);
  process.stderr.write('usage: bench-ort.js MODEL.onnx [--batch N] [--threads N] [--runs N] ' +
                       '[--warmup N] | MODEL.onnx --check IN.npy OUT.npy [--threads N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {model: null, batch: 1, threads: 1, runs: 20, warmup: 3, check: null};
  const int = (name, v, min) => {
    if (v === undefined || !/^[0-9]+$/.test(v) || Number(v) < min) {
      usage(`${name} needs an integer >= ${min}`);
    }
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--batch') o.batch = int(a, argv[++i], 1);
    else if (a === '--threads') o.threads = int(a, argv[++i], 1);
    else if (a === '--runs') o.runs = int(a, argv[++i], 1);
    else if (a === '--warmup') o.warmup = int(a, argv[++i], 0);
    else if (a === '--check') {
      if (i + 2 >= argv.length) usage('--check needs IN.npy OUT.npy');
      o.check = [argv[i + 1], argv[i + 2]];
      i += 2;
    } else if (a.startsWith('-') || o.model !== null) usage(`unexpected argument '${a}'`);
    else o.model = a;
  }
  if (o.model === null) usage('no model given');
  return o;
}

// Minimal .npy (format 1.0/2.0) reader and writer for little-endian float32 C-order arrays.
function readNpy(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY') {
    throw new Error(`${file}: not a .npy file`);
  }
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) {
    throw new Error(`${file}: need little-endian float32 in C order, header ${header.trim()}`);
  }
  const m = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!m) throw new Error(`${file}: no shape in header`);
  const shape = m[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = hstart + hlen;
  if (buf.length - start !== count * 4) throw new Error(`${file}: payload size mismatch`);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = buf.readFloatLE(start + 4 * i);
  return {shape, data};
}

function writeNpy(file, shape, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${
    shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) body.writeFloatLE(data[i], 4 * i);
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
}

function quantile(sorted, q) {
  return sorted[Math.round(q * (sorted.length - 1))];
}

function libraryPath() {
  const dir = path.join(prefix, 'node_modules', 'onnxruntime-node', 'bin');
  const found = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, {withFileTypes: true})) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/^libonnxruntime\.so/.test(e.name) && p.includes(`${process.platform}`) &&
               p.includes(process.arch)) found.push(path.relative(prefix, p));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return found.join(',');
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require(path.join(prefix, 'node_modules', 'onnxruntime-node'));
  } catch (e) {
    process.stderr.write(`bench-ort: cannot load onnxruntime-node from ${prefix}: ${e.message}\n` +
                         '(scripts/bench-inference.sh installs it)\n');
    process.exit(4);
  }
  const session = await ort.InferenceSession.create(o.model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];

  if (o.check) {
    const x = readNpy(o.check[0]);
    const feeds = {[inName]: new ort.Tensor('float32', x.data, x.shape)};
    const res = await session.run(feeds);
    const y = res[outName];
    writeNpy(o.check[1], y.dims, y.data);
    return;
  }

  let dims = null;
  if (session.inputMetadata && session.inputMetadata[0] && session.inputMetadata[0].shape) {
    dims = session.inputMetadata[0].shape.slice(1);
  }
  if (!dims || dims.length !== 3 || dims.some((d) => typeof d !== 'number')) {
    process.stderr.write(`bench-ort: ${o.model}: cannot read a static C,H,W for input ` +
                         `'${inName}'\n`);
    process.exit(4);
  }
  const count = o.batch * dims[0] * dims[1] * dims[2];
  const data = new Float32Array(count);
  let seed = 12345;
  for (let i = 0; i < count; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    data[i] = (seed >>> 8) / 16777216;
  }
  const feeds = {[inName]: new ort.Tensor('float32', data, [o.batch, ...dims])};
  for (let i = 0; i < o.warmup; i++) await session.run(feeds);
  const t = [];
  for (let i = 0; i < o.runs; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const mean = t.reduce((a, b) => a + b, 0) / t.length;
  t.sort((a, b) => a - b);
  const med = quantile(t, 0.5);
  const out = {
    bench: 'ort',
    model: o.model,
    batch: o.batch,
    threads: o.threads,
    runs: o.runs,
    warmup: o.warmup,
    median_ms: +med.toFixed(3),
    p90_ms: +quantile(t, 0.9).toFixed(3),
    mean_ms: +mean.toFixed(3),
    ms_per_image: +(med / o.batch).toFixed(3),
    images_per_s: +(1e3 * o.batch / med).toFixed(3),
    ort_version: ort.env && ort.env.versions ? ort.env.versions.node : 'unknown',
    library: libraryPath(),
    node: process.version,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(`bench-ort: ${e && e.message ? e.message : e}\n`);
  process.exit(4);
});
