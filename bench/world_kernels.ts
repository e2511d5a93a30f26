// The small world's convolution and matmul shapes (one training step's worth, with their counts),
// timed kernel by kernel on cpuBackend: total ms per kind, median of --reps repetitions.
// Run: npx tsx bench/world_kernels.ts [--reps 5] [--only conv|matmul|add]
// Own timing loop, not tinybench: it measures process CPU time (process.cpuUsage; --wall for wall time)
// per kind of kernel summed over a step's worth of calls, which tinybench's wall-clock tasks do not give.
import { cpuBackend, setNumThreads } from "../engine/index.ts";

const arg = (n: string, d: string): string => {
  const i = process.argv.indexOf(n);
  return i >= 0 ? process.argv[i + 1]! : d;
};
const reps = Number(arg("--reps", "5")),
  only = arg("--only", "");
setNumThreads(Number(arg("--threads", "1")));
const rnd = (n: number): Float32Array => {
  const a = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) {
    s = (s * 16807) % 2147483647;
    a[i] = s / 2147483647 - 0.5;
  }
  return a;
};
type Conv = [number[], number[], number, number];
// [x shape, w shape, stride, count]: forward shapes; backward passes use the same convs
const convs: Conv[] = [
  [[64, 128, 4, 4], [128, 128, 3, 3], 1, 7],
  [[64, 128, 8, 8], [128, 128, 3, 3], 1, 1],
  [[64, 192, 4, 4], [128, 192, 1, 1], 1, 1],
  [[64, 192, 4, 4], [128, 192, 3, 3], 1, 1],
  [[64, 192, 8, 8], [64, 192, 1, 1], 1, 1],
  [[64, 192, 8, 8], [64, 192, 3, 3], 1, 1],
  [[64, 256, 4, 4], [128, 256, 1, 1], 1, 1],
  [[64, 256, 4, 4], [128, 256, 3, 3], 1, 1],
  [[64, 3, 16, 16], [32, 3, 3, 3], 1, 1],
  [[64, 32, 16, 16], [3, 32, 3, 3], 1, 1],
  [[64, 32, 16, 16], [32, 32, 3, 3], 1, 4],
  [[64, 32, 16, 16], [32, 32, 3, 3], 2, 1],
  [[64, 32, 8, 8], [64, 32, 1, 1], 1, 1],
  [[64, 32, 8, 8], [64, 32, 3, 3], 1, 1],
  [[64, 64, 16, 16], [32, 64, 1, 1], 1, 1],
  [[64, 64, 16, 16], [32, 64, 3, 3], 1, 1],
  [[64, 64, 16, 16], [64, 64, 3, 3], 1, 1],
  [[64, 64, 4, 4], [128, 64, 1, 1], 1, 1],
  [[64, 64, 4, 4], [128, 64, 3, 3], 1, 1],
  [[64, 64, 8, 8], [64, 64, 3, 3], 1, 3],
  [[64, 64, 8, 8], [64, 64, 3, 3], 2, 1],
  [[64, 96, 16, 16], [32, 96, 1, 1], 1, 1],
  [[64, 96, 16, 16], [32, 96, 3, 3], 1, 1],
  [[64, 96, 8, 8], [64, 96, 1, 1], 1, 1],
  [[64, 96, 8, 8], [64, 96, 3, 3], 1, 1],
];
// [m, k, n, transA, transB, count]
const mms: [number, number, number, boolean, boolean, number][] = [
  [1024, 1024, 128, false, false, 4],
  [1024, 1024, 128, true, false, 4],
  [1024, 128, 1024, false, true, 4],
  [1024, 128, 128, false, false, 24],
  [1024, 128, 128, false, true, 24],
  [1024, 128, 512, false, false, 4],
  [1024, 128, 64, false, false, 8],
  [1024, 512, 128, false, true, 4],
  [1024, 64, 128, false, true, 8],
  [1024, 64, 64, false, false, 14],
  [1024, 64, 64, false, true, 14],
  [128, 1024, 128, true, false, 24],
  [128, 1024, 512, true, false, 4],
  [128, 1024, 64, true, false, 8],
  [4096, 256, 64, false, true, 3],
  [4096, 512, 64, false, false, 3],
  [4096, 64, 256, false, false, 3],
  [4096, 64, 512, false, true, 3],
  [4096, 64, 64, false, false, 18],
  [4096, 64, 64, false, true, 18],
  [512, 4096, 64, true, false, 3],
  [64, 1024, 64, true, false, 14],
];
const adds: [number[], number[], number][] = [
  [[64, 64, 64], [64, 64, 64], 24],
  [[64, 16, 128], [64, 16, 128], 32],
  [[64, 32, 16, 16], [64, 32, 16, 16], 6],
  [[64, 128, 4, 4], [64, 128, 4, 4], 16],
  [[64, 64, 512], [512], 3],
  [[64, 16, 1024], [1024], 4],
  [[64, 16, 128], [128], 16],
  [[64, 64, 64], [64], 12],
  [[64, 32, 16, 16], [1, 32, 1, 1], 9],
  [[64, 64, 8, 8], [1, 64, 1, 1], 9],
  [[64, 128, 4, 4], [1, 128, 1, 1], 13],
  [[64, 32, 16, 16], [64, 32, 1, 1], 3],
];
const sums: [number[], number[], number][] = [
  [[64, 128, 128], [0], 8],
  [[64, 64, 512], [0, 1], 3],
  [[64, 64, 64], [0, 1], 12],
  [[64, 16, 1024], [0, 1], 4],
  [[64, 64, 64], [0], 6],
  [[64, 32, 16, 16], [0, 2, 3], 9],
  [[64, 16, 128], [0, 1], 16],
  [[64, 64, 8, 8], [0, 2, 3], 9],
  [[64, 128, 4, 4], [0, 2, 3], 13],
];
// [parameter size, count]
const adams: [number, number][] = [
  [147456, 8],
  [16384, 45],
  [131072, 4],
  [294912, 1],
  [221184, 1],
  [65536, 4],
  [4096, 42],
  [36864, 5],
  [110592, 1],
  [32768, 4],
  [8192, 12],
  [73728, 1],
];
const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
type Job = { kind: string; run: () => void; flops: number };
const jobs: Job[] = [];
const B = cpuBackend;
if (!only || only === "conv")
  for (const [xs, ws, st, cnt] of convs) {
    const p = { stride: [st, st] as const, padding: [ws[2] === 3 ? 1 : 0, ws[2] === 3 ? 1 : 0] as const, groups: 1 };
    const ho = Math.floor((xs[2]! + 2 * p.padding[0] - ws[2]!) / st) + 1;
    const ys = [xs[0]!, ws[0]!, ho, ho];
    const x = rnd(size(xs)),
      w = rnd(size(ws)),
      gy = rnd(size(ys));
    const f = 2 * size(ys) * ws[1]! * ws[2]! * ws[3]! * cnt;
    jobs.push({
      kind: "conv fwd",
      flops: f,
      run: () => {
        for (let i = 0; i < cnt; i++) B.conv2d(x, xs, w, ws, p);
      },
    });
    jobs.push({
      kind: "conv bwd input",
      flops: f,
      run: () => {
        for (let i = 0; i < cnt; i++) B.conv2dBackwardInput(gy, ys, w, ws, xs, p);
      },
    });
    jobs.push({
      kind: "conv bwd weight",
      flops: f,
      run: () => {
        for (let i = 0; i < cnt; i++) B.conv2dBackwardWeight(x, xs, gy, ys, ws, p);
      },
    });
  }
if (!only || only === "matmul")
  for (const [m, k, n, tA, tB, cnt] of mms) {
    const a = rnd(m * k),
      b = rnd(k * n);
    const p = { batch: 1, m, k, n, transA: tA, transB: tB, strideA: 0, strideB: 0 };
    jobs.push({
      kind: "matmul",
      flops: 2 * m * n * k * cnt,
      run: () => {
        for (let i = 0; i < cnt; i++) B.matmul(a, b, p);
      },
    });
  }
if (!only || only === "add")
  for (const [as, bs, cnt] of adds) {
    const a = rnd(size(as)),
      b = rnd(size(bs));
    jobs.push({
      kind: "binary add",
      flops: 0,
      run: () => {
        for (let i = 0; i < cnt; i++) B.binary("add", a, as, b, bs, as);
      },
    });
  }
const cpu = process.argv.includes("--wall")
  ? null
  : () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    };
const now = cpu ?? (() => performance.now());
if (!only || only === "reduce")
  for (const [xs, axes, cnt] of sums) {
    const x = rnd(size(xs));
    jobs.push({
      kind: "reduce sum",
      flops: 0,
      run: () => {
        for (let i = 0; i < cnt; i++) B.reduce("sum", x, xs, axes);
      },
    });
  }
if (!only || only === "adam")
  for (const [n, cnt] of adams) {
    const w = rnd(n),
      g = rnd(n),
      m = new Float32Array(n),
      v = new Float32Array(n);
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true, t: 1 };
    jobs.push({
      kind: "adam",
      flops: 0,
      run: () => {
        for (let i = 0; i < cnt; i++) B.adamUpdate(w, g, m, v, n, h);
      },
    });
  }
for (const j of jobs) j.run(); // warm-up
const kinds = [...new Set(jobs.map((j) => j.kind))];
const times = new Map<string, number[]>(kinds.map((k) => [k, []]));
for (let r = 0; r < reps; r++) {
  const t = new Map<string, number>();
  // CPU time of this thread (user + system): steadier than wall time on a shared machine (one thread only)
  for (const j of jobs) {
    const t0 = now();
    j.run();
    t.set(j.kind, (t.get(j.kind) ?? 0) + now() - t0);
  }
  for (const [k, v] of t) times.get(k)!.push(v);
}
const med = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
};
let tot = 0;
for (const k of kinds) {
  const m = med(times.get(k)!),
    f = jobs.filter((j) => j.kind === k).reduce((a, j) => a + j.flops, 0);
  tot += m;
  console.log(`${k.padEnd(16)} ${m.toFixed(1).padStart(8)} ms${f ? `  ${(f / m / 1e6).toFixed(1)} GFLOP/s` : ""}`);
}
console.log(`${"total".padEnd(16)} ${tot.toFixed(1).padStart(8)} ms`);
