// Per-kernel wall time of the small world's training step (bench/world_step.ts's step): wraps every
// function property of cpuBackend and sums time per kernel and per (kernel, shape).
// Run: npx tsx bench/world_profile.ts [--threads 1] [--batch 64] [--top 40]
// Own timing, not tinybench: it is a profiler, not a benchmark: every backend call inside one step is
// wrapped and timed, summed per kernel and per (kernel, shape).
import { cpuBackend } from "../engine/index.ts";
import { setNumThreads } from "../engine/backend/cpu/wasm/index.ts";
import { worldTrainingStep } from "./world_setup.ts";

const arg = (n: string, d: number): number => {
  const i = process.argv.indexOf(n);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const batch = arg("--batch", 64),
  top = arg("--top", 40);
setNumThreads(arg("--threads", 1));
const stats = new Map<string, { ms: number; calls: number }>();
const flopsOf = new Map<string, number>();
/** Multiply-adds x 2 of a matmul or convolution call (0 for other kernels). */
function flops(name: string, args: unknown[]): number {
  if (name === "matmul") {
    const p = args[2] as { batch: number; m: number; k: number; n: number };
    return 2 * p.batch * p.m * p.k * p.n;
  }
  if (!name.startsWith("conv2d")) return 0;
  const shapes = args.filter((a) => Array.isArray(a)) as number[][];
  const ws = name === "conv2dBackwardWeight" ? shapes[2]! : shapes[1]!,
    ys = name === "conv2d" ? null : shapes[name === "conv2dBackwardInput" ? 0 : 1]!;
  const xs = name === "conv2dBackwardInput" ? shapes[2]! : shapes[0]!;
  const p = args[args.length - 1] as { stride: number[]; padding: number[] };
  const ho = ys ? ys[2]! : Math.floor((xs[2]! + 2 * p.padding[0]! - ws[2]!) / p.stride[0]!) + 1;
  const wo = ys ? ys[3]! : Math.floor((xs[3]! + 2 * p.padding[1]! - ws[3]!) / p.stride[1]!) + 1;
  return 2 * xs[0]! * ws[0]! * ws[1]! * ws[2]! * ws[3]! * ho * wo;
}
const perKernel = new Map<string, { ms: number; calls: number }>();
let on = false;
const desc = (name: string, args: unknown[]): string => {
  const shapes = args
    .filter((a) => Array.isArray(a) && (a.length === 0 || typeof a[0] === "number"))
    .map((a) => `[${(a as number[]).join(",")}]`);
  const p = args.find(
    (a) => a && typeof a === "object" && !Array.isArray(a) && !ArrayBuffer.isView(a) && "m" in (a as object),
  ) as Record<string, unknown> | undefined;
  const op = typeof args[0] === "string" ? `${args[0]} ` : "";
  const mm = p
    ? ` b${p.batch} m${p.m} k${p.k} n${p.n}${p.transA ? " tA" : ""}${p.transB ? " tB" : ""}${p.strideA === 0 ? " sA0" : ""}${p.strideB === 0 ? " sB0" : ""}`
    : "";
  const len = args.filter((a) => ArrayBuffer.isView(a)).map((a) => (a as Float32Array).length);
  return `${name} ${op}${shapes.join(" ")}${mm}${shapes.length || mm ? "" : ` len ${len.join(",")}`}`;
};
const be = cpuBackend as unknown as Record<string, unknown>;
for (const [k, v] of Object.entries(be)) {
  if (typeof v !== "function") continue;
  const f = v as (...a: unknown[]) => unknown;
  be[k] = (...args: unknown[]) => {
    if (!on) return f(...args);
    const t0 = performance.now();
    const r = f(...args);
    const dt = performance.now() - t0;
    const key = desc(k, args);
    const s = stats.get(key) ?? { ms: 0, calls: 0 };
    s.ms += dt;
    s.calls++;
    stats.set(key, s);
    flopsOf.set(k, (flopsOf.get(k) ?? 0) + flops(k, args));
    const kk = k === "binary" || k === "unary" || k === "reduce" ? `${k} ${args[0] as string}` : k;
    const s2 = perKernel.get(kk) ?? { ms: 0, calls: 0 };
    s2.ms += dt;
    s2.calls++;
    perKernel.set(kk, s2);
    return r;
  };
}
const { step: trainingStep } = worldTrainingStep(batch);
const steps = arg("--steps", 3);
let total = 0,
  cpuTotal = 0;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
for (let step = 0; step < steps + 1; step++) {
  on = step > 0;
  const t0 = performance.now(),
    c0 = cpuMs();
  trainingStep();
  if (on) {
    total += performance.now() - t0;
    cpuTotal += cpuMs() - c0;
  }
}
const per = (m: number) => (m / steps).toFixed(1).padStart(8);
let inK = 0;
for (const s of perKernel.values()) inK += s.ms;
console.log(`step ${(total / steps).toFixed(0)} ms, in kernels ${(inK / steps).toFixed(0)} ms`);
console.log(
  `cpu ${(cpuTotal / steps).toFixed(0)} ms (process CPU time per step; with one thread steadier than wall time on a shared machine)`,
);
for (const [k, s] of [...perKernel].sort((a, b) => b[1].ms - a[1].ms)) {
  const f = flopsOf.get(k) ?? 0;
  console.log(
    `${per(s.ms)} ms ${String(s.calls / steps).padStart(5)}x  ${k}${f ? `  ${(f / steps / 1e9).toFixed(2)} GFLOP, ${(f / s.ms / 1e6).toFixed(1)} GFLOP/s` : ""}`,
  );
}
console.log("--- by shape");
for (const [k, s] of [...stats].sort((a, b) => b[1].ms - a[1].ms).slice(0, top))
  console.log(`${per(s.ms)} ms ${String(s.calls / steps).padStart(5)}x  ${k}`);
