// The context a part kernel (attention, convolution, a slice of a GEMM) runs in, on the calling
// thread or on a pool worker: the row module, the heap, the shared work counter and the blocked GEMM
// on that thread's own packing buffers.

import { gemmDriver, type DriverConsts, type ThreadBuffers } from "./driver.ts";
import type { SgemmExports } from "./kernels.ts";
import type { WorkerPool } from "./pool.ts";
import type { RowExports } from "./rowops.ts";
import type { WasmRuntime } from "./runtime.ts";

/** What part kernels call (`ctx.row`, `ctx.heap()`, `ctx.next()`, `ctx.gemm(...)`). */
export interface PartContext {
  /** The generated row kernels (softmax passes, im2col / col2im) on the shared memory. */
  readonly row: RowExports;
  /** A Float32Array over the whole memory (index = byte offset / 4), current after growth. */
  heap(): Float32Array;
  /** The next work unit: every participant of one run draws from the same counter. */
  next(): number;
  /**
   * `batch` GEMMs C = alpha op(A) op(B) (+ C when acc0 = 1), pointers in bytes, leading dimensions and
   * batch strides (sA, sB, sC) in elements; tA, tB = 1 transpose.
   */
  gemm(
    tA: number,
    tB: number,
    M: number,
    N: number,
    K: number,
    alpha: number,
    a: number,
    lda: number,
    sA: number,
    b: number,
    ldb: number,
    sB: number,
    acc0: number,
    c: number,
    ldc: number,
    sC: number,
    batch: number,
  ): void;
}

/** A part kernel: its numeric arguments (pointers in bytes) arrive as one array. */
export type PartKernel = (ctx: PartContext, a: ArrayLike<number>) => void;

/** The pieces of a context. */
export interface ContextSource {
  gemmModule: SgemmExports;
  row: RowExports;
  consts: DriverConsts;
  bufs: ThreadBuffers;
  heap: () => Float32Array;
  next: () => number;
}

/** A context over one thread's module instances and packing buffers. */
export function makeContext(s: ContextSource): PartContext {
  const {
    gemmModule: ex,
    consts: { mr, nr, mc, kc, nc },
    bufs: { packA, packB, scratch },
  } = s;
  return {
    row: s.row,
    heap: s.heap,
    next: s.next,
    gemm: (tA, tB, M, N, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch) =>
      gemmDriver(
        ex,
        mr,
        nr,
        mc,
        kc,
        nc,
        packA,
        packB,
        scratch,
        tA,
        tB,
        M,
        N,
        K,
        alpha,
        a,
        lda,
        sA,
        b,
        ldb,
        sB,
        acc0,
        c,
        ldc,
        sC,
        batch,
      ),
  };
}

/** The calling thread's context; `next` draws from the pool's counter, or a local one without a pool. */
export function partContext(rt: WasmRuntime, pool: WorkerPool | null): PartContext {
  let units = 0;
  return makeContext({
    gemmModule: rt.exports,
    row: rt.rows,
    consts: rt.consts,
    bufs: rt.localBuffers(),
    heap: () => rt.arena.heapF32(),
    next: pool ? () => pool.next() : () => units++,
  });
}
