// The context a JavaScript part kernel (attention, convolution) gets on the calling thread: the row
// module, the heap, the shared work counter and the blocked GEMM on this thread's packing buffers.
// Workers build the same object in their own source (pool.ts).

import { gemmDriver } from "./driver.ts";
import type { WorkerPool } from "./pool.ts";
import type { WasmSgemm } from "./sgemm.ts";

/** What part kernels call (`ctx.row`, `ctx.heap()`, `ctx.next()`, `ctx.gemm(...)`). */
export interface PartContext {
  row: WasmSgemm["rows"];
  heap: () => Float32Array;
  next: () => number;
  gemm: (tA: number, tB: number, M: number, N: number, K: number, alpha: number, a: number, lda: number, sA: number, b: number, ldb: number, sB: number, acc0: number, c: number, ldc: number, sC: number, batch: number) => void;
}

/** The calling thread's context; `next` draws from the pool's counter, or a local one without a pool. */
export function partContext(kern: WasmSgemm, pool: WorkerPool | null): PartContext {
  const local = kern.localBuffers();
  const { mr, nr, mc, kc, nc } = kern.consts;
  const ex = kern.exports;
  let units = 0;
  return {
    row: kern.rows,
    heap: () => kern.arena.heapF32(),
    next: pool ? () => pool.next() : () => units++,
    gemm: (tA, tB, M, N, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch) =>
      gemmDriver(ex, mr, nr, mc, kc, nc, local.packA, local.packB, local.scratch, tA, tB, M, N, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch),
  };
}
