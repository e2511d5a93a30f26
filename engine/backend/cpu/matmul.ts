// plain TypeScript matmul: blocked i-k-j loops with a 4-wide k unroll (the portable path)
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { MatmulParams } from "../backend.ts";

const KC = 128;
const NC = 512;

/** C[M,N] (+)= A[M,K] @ B[K,N]; all row-major and contiguous at the given offsets. */
export function gemm(
  A: TypedArray,
  aOff: number,
  B: TypedArray,
  bOff: number,
  C: TypedArray,
  cOff: number,
  M: number,
  K: number,
  N: number,
): void {
  for (let j0 = 0; j0 < N; j0 += NC) {
    const j1 = Math.min(N, j0 + NC);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const k1 = Math.min(K, k0 + KC);
      for (let i = 0; i < M; i++) {
        const ar = aOff + i * K;
        const cr = cOff + i * N;
        let k = k0;
        for (; k + 3 < k1; k += 4) {
          const a0 = A[ar + k],
            a1 = A[ar + k + 1],
            a2 = A[ar + k + 2],
            a3 = A[ar + k + 3];
          const b0 = bOff + k * N,
            b1 = b0 + N,
            b2 = b1 + N,
            b3 = b2 + N;
          for (let j = j0; j < j1; j++) C[cr + j] += a0 * B[b0 + j] + a1 * B[b1 + j] + a2 * B[b2 + j] + a3 * B[b3 + j];
        }
        for (; k < k1; k++) {
          const a0 = A[ar + k];
          const b0 = bOff + k * N;
          for (let j = j0; j < j1; j++) C[cr + j] += a0 * B[b0 + j];
        }
      }
    }
  }
}

/** Row-major transpose of a (rows x cols) block into a new array. */
export function transpose2d(x: TypedArray, off: number, rows: number, cols: number): TypedArray {
  const out = takeLike(x, rows * cols);
  const T = 32;
  for (let i0 = 0; i0 < rows; i0 += T) {
    for (let j0 = 0; j0 < cols; j0 += T) {
      const i1 = Math.min(rows, i0 + T),
        j1 = Math.min(cols, j0 + T);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = x[off + i * cols + j];
    }
  }
  return out;
}

/** Batched matmul with optional transposes; returns (batch, M, N). */
export function matmul(a: TypedArray, b: TypedArray, p: MatmulParams): TypedArray {
  const { batch, m, k, n } = p;
  const out = takeLike(a, batch * m * n);
  let lastB = -1;
  let bt: TypedArray = b;
  for (let i = 0; i < batch; i++) {
    let A = a,
      aOff = i * p.strideA;
    if (p.transA) {
      A = transpose2d(a, aOff, k, m);
      aOff = 0;
    }
    let B = b,
      bOff = i * p.strideB;
    if (p.transB) {
      if (bOff !== lastB) {
        bt = transpose2d(b, bOff, n, k);
        lastB = bOff;
      }
      B = bt;
      bOff = 0;
    }
    gemm(A, aOff, B, bOff, out, i * m * n, m, k, n);
  }
  return out;
}
