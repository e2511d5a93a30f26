// SGEMM throughput of the wasm SIMD kernels (fused relaxed_madd when available, mul+add) and the
// plain TypeScript kernel; run `node --experimental-wasm-relaxed-simd --import tsx bench/sgemm.ts`.

import { Bench } from "tinybench";
import {
  defaultArena,
  relaxedSimdAvailable,
  sgemmKernel,
  simdAvailable,
  type SgemmVariant,
} from "../engine/backend/cpu/wasm/index.ts";

interface Shape {
  M: number;
  N: number;
  K: number;
  label: string;
}

const SHAPES: Shape[] = [
  { M: 512, N: 512, K: 512, label: "512x512 @ 512x512" },
  { M: 1024, N: 1024, K: 1024, label: "1024x1024 @ 1024x1024" },
  { M: 2048, N: 2048, K: 2048, label: "2048x2048 @ 2048x2048" },
  { M: 4096, N: 320, K: 320, label: "4096x320 @ 320x320" },
  { M: 4096, N: 1280, K: 320, label: "4096x320 @ 320x1280" },
];

const NAMES: Record<SgemmVariant, string> = {
  relaxed: "wasm SIMD + relaxed FMA",
  simd: "wasm SIMD (mul+add)",
  ts: "TypeScript 4x4 tiled",
};

async function main(): Promise<void> {
  const variants: SgemmVariant[] = [];
  if (relaxedSimdAvailable()) variants.push("relaxed");
  if (simdAvailable()) variants.push("simd");
  variants.push("ts");
  console.log(
    `node ${process.version}; wasm SIMD: ${simdAvailable()}; relaxed SIMD: ${relaxedSimdAvailable()}` +
      (relaxedSimdAvailable() ? "" : " (run node with --experimental-wasm-relaxed-simd to include it)"),
  );

  const arena = defaultArena();
  const rows: Record<string, string>[] = [];
  for (const { M, N, K, label } of SHAPES) {
    const pa = arena.alloc(M * K),
      pb = arena.alloc(K * N),
      pc = arena.alloc(M * N);
    const h = arena.heapF32();
    for (let i = 0; i < M * K; i++) h[pa / 4 + i] = Math.random() - 0.5;
    for (let i = 0; i < K * N; i++) h[pb / 4 + i] = Math.random() - 0.5;
    const flop = 2 * M * N * K;
    for (const v of variants) {
      const kern = sgemmKernel(v, { arena });
      const slow = v === "ts";
      const bench = new Bench({
        time: slow ? 0 : 1500,
        iterations: slow ? 3 : 10,
        warmupTime: slow ? 0 : 500,
        warmupIterations: slow ? 1 : 5,
      });
      bench.add(`${v} ${label}`, () => kern.sgemm(false, false, M, N, K, 1, pa, K, pb, N, 0, pc, N));
      await bench.run();
      const r = bench.tasks[0]!.result;
      if (r.state !== "completed") throw new Error(`bench ${v} ${label}: ${r.state}`);
      const ms = r.latency.p50;
      const gf = (t: number): string => (flop / t / 1e6).toFixed(1);
      rows.push({
        kernel: NAMES[v],
        shape: label,
        "ms (median)": ms.toFixed(2),
        "GFLOP/s": gf(ms),
        "GFLOP/s (best run)": gf(r.latency.min),
      });
      console.log(
        `${NAMES[v].padEnd(26)} ${label.padEnd(24)} ${ms.toFixed(2).padStart(9)} ms ${gf(ms).padStart(6)} GFLOP/s (best ${gf(r.latency.min)})`,
      );
    }
    arena.free(pa);
    arena.free(pb);
    arena.free(pc);
  }
  console.table(rows);
}

await main();
