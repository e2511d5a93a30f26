// the float32 fast path of the cpu backend: WebAssembly SIMD GEMM (relaxed FMA where the runtime has it)
import type { TypedArray } from "../../dtype.ts";
import type { MatmulParams } from "../backend.ts";
import { gemm as plainGemm, matmul as plainMatmul } from "./matmul.ts";
import { matmulF32Batched, simdAvailable, bestVariant } from "./wasm/sgemm.ts";

// below this many multiply-adds the copies into WebAssembly memory cost more than they save
const MIN_WORK = 16 * 16 * 16;

/** C[M,N] += A[M,K] @ B[K,N] through the SIMD kernel. */
function gemm(A: TypedArray, aOff: number, B: TypedArray, bOff: number, C: TypedArray, cOff: number, M: number, K: number, N: number): void {
  if (M * N * K < MIN_WORK || !(A instanceof Float32Array) || !(B instanceof Float32Array)) {
    plainGemm(A, aOff, B, bOff, C, cOff, M, K, N);
    return;
  }
  const t = matmulF32Batched(A.subarray(aOff, aOff + M * K), B.subarray(bOff, bOff + K * N), 1, M, N, K, false, false);
  for (let i = 0; i < M * N; i++) C[cOff + i] += t[i];
}

function matmul(a: TypedArray, b: TypedArray, p: MatmulParams): TypedArray {
  if (p.m * p.n * p.k < MIN_WORK || !(a instanceof Float32Array) || !(b instanceof Float32Array)) return plainMatmul(a, b, p);
  return matmulF32Batched(a, b, p.batch, p.m, p.n, p.k, p.transA, p.transB, undefined, { strideA: p.strideA, strideB: p.strideB, strideC: p.m * p.n });
}

/** The SIMD kernels, or null where WebAssembly SIMD is unavailable. */
export function wasmFastKernels(): { gemm: typeof gemm; matmul: typeof matmul; variant: string } | null {
  if (!simdAvailable()) return null;
  return { gemm, matmul, variant: bestVariant() };
}
