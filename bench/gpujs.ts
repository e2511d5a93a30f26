// gpu.js next to cpu: matmul, conv2d and attention forward, conv2d and attention backward, the tiny
// UNet forward and the world training step, with the upload and readback time and the renderer named. On a software renderer
// (SwiftShader in CI and on the dev machines) the gpujs numbers measure correctness plumbing, not a
// GPU: expect them far slower than the cpu kernels. bash bench/gpu-check.sh runs this on a GPU machine.
//
//   npx tsx bench/gpujs.ts [--quick] [--only WORD]     (run bash scripts/gpu-setup.sh first)
//   CDIFF_GPUJS_PROFILE=1 npx tsx bench/gpujs.ts   adds the world step's time per kernel (each kernel
//                                                  waited for: slower, but the split is the GPU's)
// Own timing loop, not tinybench: the first gpujs call (kernel compilation) is timed on its own and
// every later run is split into upload, kernel and readback from the backend's counters, which one
// tinybench figure per task would merge.
import { cpuBackend, Generator, getBackend, noGrad, randn, setDefaultBackend } from "../engine/index.ts";
import type { Backend, Storage } from "../engine/index.ts";
import { gpujsReport, probeGpujs } from "../engine/backend/gpujs/index.ts";
import type { DeviceStats } from "../engine/backend/gpujs/device.ts";
import { withInitGenerator } from "../models/nn/index.ts";
import { UNet2DConditionModel } from "../models/unets/unet_2d_condition.ts";
import { TINY_UNET_CONFIG } from "../models/unets/unet_2d_condition_config.ts";
import { worldTrainingStep } from "./world_setup.ts";

const quick = process.argv.includes("--quick");
const oi = process.argv.indexOf("--only");
/** --only WORD: just the rows whose name contains WORD (e.g. "world", "attention") */
const only = oi >= 0 ? (process.argv[oi + 1] ?? "") : "";
const wanted = (name: string): boolean => name.includes(only);
const probe = probeGpujs();
if (!probe.ok) {
  console.error(`bench/gpujs: no GPU path: ${probe.reason}`);
  process.exit(1);
}
console.log(`gpujs: ${probe.description}`);
if (probe.software)
  console.log(
    "NOTE: software renderer - the gpujs rows are not GPU speed; the cpu rows use 2 threads of WebAssembly SIMD",
  );
const g = getBackend("gpujs");
const cpu = cpuBackend as unknown as Backend;

const rand = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);

interface Case {
  name: string;
  /** floating-point operations of one run (0: not stated) */
  flops: number;
  /** host inputs: sizes of random arrays, or arrays */
  inputs: (number | Float32Array)[];
  run: (b: Backend, s: Storage[]) => Storage | Storage[];
}
const M = quick ? 128 : 256,
  K = quick ? 128 : 512;
const cases: Case[] = [
  {
    name: `matmul ${M}x${K} @ ${K}x${M}`,
    flops: 2 * M * K * M,
    inputs: [M * K, K * M],
    run: (b, [x, y]) =>
      b.matmul(x!, y!, { batch: 1, m: M, k: K, n: M, transA: false, transB: false, strideA: 0, strideB: 0 }),
  },
  (() => {
    const C = quick ? 16 : 64,
      Hh = quick ? 16 : 32;
    return {
      name: `conv2d 1x${C}x${Hh}x${Hh} * ${C}x${C}x3x3 p1`,
      flops: 2 * C * C * 9 * Hh * Hh,
      inputs: [C * Hh * Hh, C * C * 9],
      run: (b: Backend, [x, w]: Storage[]) =>
        b.conv2d(x!, [1, C, Hh, Hh], w!, [C, C, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }),
    };
  })(),
  (() => {
    const B = 2,
      Hd = 8,
      L = quick ? 64 : 256,
      D = 40;
    const p = {
      batch: B * Hd,
      lq: L,
      lk: L,
      d: D,
      dv: D,
      scale: 1 / Math.sqrt(D),
      causal: false,
      maskStrideB: 0,
      maskStrideQ: 0,
      heads: Hd,
    };
    return {
      name: `attention ${B}x${L} tokens, ${Hd} heads of ${D}`,
      flops: 4 * B * Hd * L * L * D,
      inputs: [B * L * Hd * D, B * L * Hd * D, B * L * Hd * D],
      run: (b: Backend, [q, k, v]: Storage[]) => b.attention(q!, k!, v!, null, p).o,
    };
  })(),
  (() => {
    const C = quick ? 16 : 64,
      Hh = quick ? 16 : 32;
    const xs = [1, C, Hh, Hh],
      ws = [C, C, 3, 3],
      p = { stride: [1, 1] as const, padding: [1, 1] as const, groups: 1 };
    return {
      name: `conv2d backward (input + weight) 1x${C}x${Hh}x${Hh} * ${C}x${C}x3x3 p1`,
      flops: 2 * 2 * C * C * 9 * Hh * Hh,
      inputs: [C * Hh * Hh, C * C * 9, C * Hh * Hh],
      run: (b: Backend, [x, w, gy]: Storage[]) => [
        b.conv2dBackwardInput(gy!, xs, w!, ws, xs, p),
        b.conv2dBackwardWeight(x!, xs, gy!, xs, ws, p),
      ],
    };
  })(),
  (() => {
    const B = 2,
      Hd = 8,
      L = quick ? 64 : 256,
      D = 40;
    const p = {
      batch: B * Hd,
      lq: L,
      lk: L,
      d: D,
      dv: D,
      scale: 1 / Math.sqrt(D),
      causal: false,
      maskStrideB: 0,
      maskStrideQ: 0,
      heads: Hd,
    };
    const n = B * L * Hd * D;
    const [q, k, v, gO] = [rand(n), rand(n), rand(n), rand(n).map((x) => x * 0.1)];
    const fw = cpu.attention(cpu.fromHost(q.slice()), cpu.fromHost(k.slice()), cpu.fromHost(v.slice()), null, p);
    const o = Float32Array.from(cpu.toHost(fw.o)),
      lse = Float32Array.from(cpu.toHost(fw.lse));
    return {
      name: `attention backward ${B}x${L} tokens, ${Hd} heads of ${D}`,
      // scores recomputed, dP, dq, dk, dv: five products of 2 B H L^2 D
      flops: 10 * B * Hd * L * L * D,
      inputs: [q, k, v, o, lse, gO],
      run: (b: Backend, [qq, kk, vv, oo, ll, gg]: Storage[]) => {
        const r = b.attentionBackward(qq!, kk!, vv!, null, oo!, ll!, gg!, p, null);
        return [r.dq, r.dk, r.dv];
      },
    };
  })(),
];

const reps = quick ? 2 : 3;
const rows: string[] = [];
for (const c of cases.filter((c) => wanted(c.name))) {
  const host = c.inputs.map((x) => (typeof x === "number" ? rand(x) : x));
  const read = (b: Backend, r: Storage | Storage[]): void =>
    void (Array.isArray(r) ? r : [r]).forEach((o) => b.toHost(o));
  // cpu: inputs already in memory
  const cs = host.map((h) => cpu.fromHost(h.slice()));
  c.run(cpu, cs);
  let t = performance.now();
  for (let r = 0; r < reps; r++) read(cpu, c.run(cpu, cs));
  const cpuMs = (performance.now() - t) / reps;
  // gpujs: first call compiles; then upload, kernel, readback measured separately
  const st = gpujsReport().stats;
  const warm = host.map((h) => g.fromHost(h.slice()));
  t = performance.now();
  read(g, c.run(g, warm));
  const firstMs = performance.now() - t;
  let upMs = 0,
    runMs = 0,
    downMs = 0;
  for (let r = 0; r < reps; r++) {
    const s = gpujsReport().stats!;
    const u0 = s.uploadMs,
      d0 = s.downloadMs;
    const gs = host.map((h) => g.fromHost(h.slice()));
    t = performance.now();
    read(g, c.run(g, gs));
    const total = performance.now() - t;
    upMs += s.uploadMs - u0;
    downMs += s.downloadMs - d0;
    runMs += total - (s.uploadMs - u0) - (s.downloadMs - d0);
  }
  upMs /= reps;
  runMs /= reps;
  downMs /= reps;
  void st;
  const gf = (ms: number): string => (c.flops ? (c.flops / (ms * 1e6)).toFixed(2) : "-");
  rows.push(
    `| ${c.name} | ${cpuMs.toFixed(1)} (${gf(cpuMs)}) | ${(upMs + runMs + downMs).toFixed(1)} (${gf(upMs + runMs + downMs)}) | ${upMs.toFixed(1)} | ${runMs.toFixed(1)} | ${downMs.toFixed(1)} | ${firstMs.toFixed(0)} |`,
  );
}
/**
 * A whole-model row: `make()` builds the model on the default backend and returns one run of it; the
 * first run (kernel compilation on gpujs) is timed alone, then `reps` runs, on cpu and on gpujs.
 * `report(before)` prints extra gpujs figures against the stats taken before the timed runs.
 */
function modelRow(name: string, make: () => () => void, report?: (before: DeviceStats) => void): void {
  const time = (backend: string): { first: number; ms: number; up: number; down: number } => {
    setDefaultBackend(backend);
    try {
      const once = make();
      let t = performance.now();
      once();
      const first = performance.now() - t;
      const st = backend === "gpujs" ? gpujsReport().stats! : null;
      const before = st ? (structuredClone(st) as DeviceStats) : null;
      t = performance.now();
      for (let r = 0; r < reps; r++) once();
      const ms = (performance.now() - t) / reps;
      if (st && before) report?.(before);
      return {
        first,
        ms,
        up: st && before ? (st.uploadMs - before.uploadMs) / reps : 0,
        down: st && before ? (st.downloadMs - before.downloadMs) / reps : 0,
      };
    } finally {
      setDefaultBackend("cpu");
    }
  };
  const c = time("cpu"),
    gp = time("gpujs");
  rows.push(
    `| ${name} | ${c.ms.toFixed(1)} | ${gp.ms.toFixed(1)} | ${gp.up.toFixed(1)} | ${(gp.ms - gp.up - gp.down).toFixed(1)} | ${gp.down.toFixed(1)} | ${gp.first.toFixed(0)} |`,
  );
}

// the tiny UNet forward (diffusers' test config, one layer per block, 8 norm groups): weights uploaded on the first
// gpujs call; every later call uploads nothing but its inputs and reads back the output
if (wanted("tiny UNet forward")) {
  const cfg = { ...TINY_UNET_CONFIG, sample_size: 16, layers_per_block: 1, norm_num_groups: 8 };
  const S = quick ? 8 : 16;
  modelRow(`tiny UNet forward 2x4x${S}x${S} (channels 32/64, cross-attention)`, () => {
    const unet = withInitGenerator(new Generator(7), () => UNet2DConditionModel.fromConfig(cfg));
    return () => {
      const x = randn([2, 4, S, S], { generator: new Generator(8) }),
        ctx = randn([2, 8, 32], { generator: new Generator(9) });
      void noGrad(() => unet.forward(x, 321, ctx)).data;
    };
  });
}

// the world training step (bench/world_step.ts's step at a small batch): UNet + text encoder forward,
// backward and AdamW over every parameter, all on the backend; the first step compiles the kernels
if (wanted("world training step")) {
  const batch = quick ? 2 : 8;
  modelRow(
    `world training step, batch ${batch} (UNet + text encoder, AdamW)`,
    () => worldTrainingStep(batch).step,
    (before) => {
      const st = gpujsReport().stats!;
      if (st.kernelMs) {
        const per = Object.entries(st.kernelMs)
          .map(([k, v]): [string, number] => [k, (v - (before.kernelMs?.[k] ?? 0)) / reps])
          .filter(([, v]) => v > 0)
          .sort((a, b) => b[1] - a[1]);
        const shown = per.map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ");
        console.log(`world step ${batch} on gpujs, ms per step by kernel (CDIFF_GPUJS_PROFILE=1): ${shown}`);
      }
      console.log(
        `world step ${batch} on gpujs: texture memory ${(st.liveBytes / 2 ** 20).toFixed(0)} MiB live after ${reps + 1} tidied steps, peak ${(st.peakBytes / 2 ** 20).toFixed(0)} MiB (${gpujsReport().packed ? "packed, four values per texel" : "one value per texel"})`,
      );
    },
  );
}

console.log(`\nrenderer: ${probe.renderer}`);
console.log(
  "| case | cpu ms (GFLOP/s) | gpujs ms (GFLOP/s) | upload ms | kernels ms | readback ms | first call ms (compile) |",
);
console.log("|---|---|---|---|---|---|---|");
for (const r of rows) console.log(r);
