// gpu.js next to cpu: matmul, conv2d and attention (forward), with the upload and readback time and
// the renderer named. On a software renderer (SwiftShader in CI and on the dev machines) the gpujs
// numbers measure correctness plumbing, not a GPU: expect them far slower than the cpu kernels.
//
//   npx tsx bench/gpujs.ts [--quick]     (run bash scripts/gpu-setup.sh first)
// Own timing loop, not tinybench: the first gpujs call (kernel compilation) is timed on its own and
// every later run is split into upload, kernel and readback from the backend's counters, which one
// tinybench figure per task would merge.
import { cpuBackend, getBackend } from "../engine/index.ts";
import type { Backend, Storage } from "../engine/index.ts";
import { gpujsReport, probeGpujs } from "../engine/backend/gpujs/index.ts";

const quick = process.argv.includes("--quick");
const probe = probeGpujs();
if (!probe.ok) {
  console.error(`bench/gpujs: no GPU path: ${probe.reason}`);
  process.exit(1);
}
console.log(`gpujs: ${probe.description}`);
if (probe.software) console.log("NOTE: software renderer - the gpujs rows are not GPU speed; the cpu rows use 2 threads of WebAssembly SIMD");
const g = getBackend("gpujs");
const cpu = cpuBackend as unknown as Backend;

const rand = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

interface Case {
  name: string;
  flops: number;
  inputs: number[];
  run: (b: Backend, s: Storage[]) => Storage;
}
const M = quick ? 128 : 256, K = quick ? 128 : 512;
const cases: Case[] = [
  { name: `matmul ${M}x${K} @ ${K}x${M}`, flops: 2 * M * K * M, inputs: [M * K, K * M], run: (b, [x, y]) => b.matmul(x!, y!, { batch: 1, m: M, k: K, n: M, transA: false, transB: false, strideA: 0, strideB: 0 }) },
  (() => {
    const C = quick ? 16 : 64, Hh = quick ? 16 : 32;
    return {
      name: `conv2d 1x${C}x${Hh}x${Hh} * ${C}x${C}x3x3 p1`,
      flops: 2 * C * C * 9 * Hh * Hh,
      inputs: [C * Hh * Hh, C * C * 9],
      run: (b: Backend, [x, w]: Storage[]) => b.conv2d(x!, [1, C, Hh, Hh], w!, [C, C, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }),
    };
  })(),
  (() => {
    const B = 2, Hd = 8, L = quick ? 64 : 256, D = 40;
    const p = { batch: B * Hd, lq: L, lk: L, d: D, dv: D, scale: 1 / Math.sqrt(D), causal: false, maskStrideB: 0, maskStrideQ: 0, heads: Hd };
    return {
      name: `attention ${B}x${L} tokens, ${Hd} heads of ${D}`,
      flops: 4 * B * Hd * L * L * D,
      inputs: [B * L * Hd * D, B * L * Hd * D, B * L * Hd * D],
      run: (b: Backend, [q, k, v]: Storage[]) => b.attention(q!, k!, v!, null, p).o,
    };
  })(),
];

const reps = quick ? 2 : 3;
const rows: string[] = [];
for (const c of cases) {
  const host = c.inputs.map(rand);
  // cpu: inputs already in memory
  const cs = host.map((h) => cpu.fromHost(h.slice()));
  c.run(cpu, cs);
  let t = performance.now();
  for (let r = 0; r < reps; r++) cpu.toHost(c.run(cpu, cs));
  const cpuMs = (performance.now() - t) / reps;
  // gpujs: first call compiles; then upload, kernel, readback measured separately
  const st = gpujsReport().stats;
  const warm = host.map((h) => g.fromHost(h.slice()));
  t = performance.now();
  g.toHost(c.run(g, warm));
  const firstMs = performance.now() - t;
  let upMs = 0, runMs = 0, downMs = 0;
  for (let r = 0; r < reps; r++) {
    const s = gpujsReport().stats!;
    const u0 = s.uploadMs, d0 = s.downloadMs;
    const gs = host.map((h) => g.fromHost(h.slice()));
    t = performance.now();
    const out = c.run(g, gs);
    g.toHost(out);
    const total = performance.now() - t;
    upMs += s.uploadMs - u0;
    downMs += s.downloadMs - d0;
    runMs += total - (s.uploadMs - u0) - (s.downloadMs - d0);
  }
  upMs /= reps;
  runMs /= reps;
  downMs /= reps;
  void st;
  const gf = (ms: number): string => (c.flops / (ms * 1e6)).toFixed(2);
  rows.push(`| ${c.name} | ${cpuMs.toFixed(1)} (${gf(cpuMs)}) | ${(upMs + runMs + downMs).toFixed(1)} (${gf(upMs + runMs + downMs)}) | ${upMs.toFixed(1)} | ${runMs.toFixed(1)} | ${downMs.toFixed(1)} | ${firstMs.toFixed(0)} |`);
}
console.log(`\nrenderer: ${probe.renderer}`);
console.log("| case | cpu ms (GFLOP/s) | gpujs ms (GFLOP/s) | upload ms | kernels ms | readback ms | first call ms (compile) |");
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
