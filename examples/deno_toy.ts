// The toy training run (examples/train_toy.ts) under Deno, on the engine's worker pool of 2 threads:
// there the pool's workers are Web Workers (module workers loading engine/backend/cpu/wasm/worker.ts).
// Run: deno run -A examples/deno_toy.ts [--steps 100]
// Node users run examples/train_toy.ts (CDIFF_THREADS=2 gives the same losses, bit for bit).
import {
  closeThreads,
  getNumThreads,
  matmulF32,
  setNumThreads,
  sgemmKernel,
  WasmRuntime,
} from "../engine/backend/cpu/wasm/index.ts";

const deno = (globalThis as { Deno?: { version: { deno: string; v8: string } } }).Deno;
setNumThreads(2);
console.log(`${deno ? `Deno ${deno.version.deno} (V8 ${deno.version.v8})` : "not Deno"}: ${getNumThreads()} threads`);
await import("./train_toy.ts");

// one GEMM large enough to be split across the threads, then the pool's state
const n = 512,
  a = new Float32Array(n * n).fill(1),
  b = new Float32Array(n * n).fill(2);
const c = matmulF32(a, b, n, n, n);
const rt = sgemmKernel();
const pool = rt instanceof WasmRuntime ? rt.workerPool() : null;
console.log(`GEMM ${n}^3: c[0] = ${c[0]}, c[last] = ${c[n * n - 1]} (expect ${2 * n})`);
console.log(
  `worker pool: ${pool ? `${pool.running} of ${pool.size} worker(s) running${pool.broken ? `, ${pool.broken}` : ""}` : "none"}; ${rt.variant} kernels`,
);
// Web Workers keep a Deno process alive until they are stopped
closeThreads();
