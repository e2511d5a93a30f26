// The blocked GEMM driver (Goto-style jc/pc/ic loops around the generated macro-kernel), run by the
// calling thread and by the pool's workers alike, each on its own packing buffers.

import type { SgemmExports } from "./kernels.ts";

/** Micro-tile and cache-block sizes the driver needs (elements). */
export interface DriverConsts {
  mr: number;
  nr: number;
  mc: number;
  kc: number;
  nc: number;
}

/** One thread's packing buffers (byte offsets into the shared memory). */
export interface ThreadBuffers {
  packA: number;
  packB: number;
  scratch: number;
}

const up = (x: number, m: number): number => Math.ceil(x / m) * m;
const bal = (n: number, max: number, mult: number): number => up(Math.ceil(n / Math.ceil(n / max)), mult);

/**
 * `batch` GEMMs C = alpha op(A) op(B) (+ C when acc0 = 1) on the generated module `ex`: pointers in
 * bytes, leading dimensions and batch strides in elements. MCmax, KCmax, NCmax bound the blocks
 * (balanced to equal parts); packA, packB, scratch are this thread's buffers. Results depend only on
 * K's blocking, so splitting M, N or the batch across threads is bit-exact.
 */
export function gemmDriver(
  ex: SgemmExports,
  mr: number,
  nr: number,
  MCmax: number,
  KCmax: number,
  NCmax: number,
  packA: number,
  packB: number,
  scratch: number,
  transA: boolean | number,
  transB: boolean | number,
  M: number,
  N: number,
  K: number,
  alpha: number,
  aPtr: number,
  lda: number,
  sA: number,
  bPtr: number,
  ldb: number,
  sB: number,
  acc0: number,
  cPtr: number,
  ldc: number,
  sC: number,
  batch: number,
): void {
  if (M === 0 || N === 0 || K === 0) return;
  const MC = bal(M, MCmax, mr),
    KC = bal(K, KCmax, 1),
    NC = bal(N, NCmax, nr);
  const aIs = transA ? 4 : lda * 4,
    aKs = transA ? lda * 4 : 4;
  const bJs = transB ? ldb * 4 : 4,
    bKs = transB ? 4 : ldb * 4;
  const ldcB = ldc * 4;
  for (let t = 0; t < batch; t++) {
    const a0 = aPtr + t * sA * 4,
      b0 = bPtr + t * sB * 4,
      c0 = cPtr + t * sC * 4;
    for (let jc = 0; jc < N; jc += NC) {
      const nc = Math.min(NC, N - jc);
      for (let pc = 0; pc < K; pc += KC) {
        const kc = Math.min(KC, K - pc);
        ex.packB(b0 + pc * bKs + jc * bJs, bKs, bJs, kc, nc, packB);
        const acc = pc === 0 ? acc0 : 1;
        for (let ic = 0; ic < M; ic += MC) {
          const mc = Math.min(MC, M - ic);
          ex.packA(a0 + ic * aIs + pc * aKs, aKs, aIs, kc, mc, packA);
          ex.macro(mc, nc, kc, packA, packB, c0 + (ic * ldc + jc) * 4, ldcB, alpha, acc, scratch);
        }
      }
    }
  }
}
