// the float32 fast path of the cpu backend: WebAssembly SIMD GEMM (relaxed FMA where the runtime has
// it), convolutions, softmax rows, norms and activations, staged through the shared arena by
// WasmRuntime.withBlocks; convolutions run their part kernels (wasm/conv_parts.ts) on the worker
// pool. Every function returns null (or takes the plain path) where it does not apply.
// This file holds the GEMM entry points and the kernel table; fast_rows.ts the elementwise, reduction,
// norm, softmax and Adam kernels; fast_conv.ts the convolutions.
import type { TypedArray } from "../../dtype.ts";
import type { MatmulParams } from "../backend.ts";
import { gemm as plainGemm, matmul as plainMatmul } from "./matmul.ts";
import { matmulF32Batched, simdAvailable, bestVariant } from "./wasm/sgemm.ts";
import {
  adamF32,
  binaryF32,
  gegluF32,
  groupNormBackwardF32,
  groupNormF32,
  layerNormBackwardF32,
  layerNormF32,
  reduceSumF32,
  siluGradF32,
  softmaxRowsF32,
  unaryF32,
} from "./fast_rows.ts";
import { conv2dBackwardInputF32, conv2dBackwardWeightF32, conv2dF32 } from "./fast_conv.ts";

// below this many multiply-adds the copies into WebAssembly memory cost more than they save
const MIN_WORK = 16 * 16 * 16;

/** C[M,N] += A[M,K] @ B[K,N] through the SIMD kernel. */
function gemm(
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
  if (M * N * K < MIN_WORK || !(A instanceof Float32Array) || !(B instanceof Float32Array)) {
    plainGemm(A, aOff, B, bOff, C, cOff, M, K, N);
    return;
  }
  const t = matmulF32Batched(A.subarray(aOff, aOff + M * K), B.subarray(bOff, bOff + K * N), 1, M, N, K, false, false);
  for (let i = 0; i < M * N; i++) C[cOff + i] += t[i];
}

function matmul(a: TypedArray, b: TypedArray, p: MatmulParams): TypedArray {
  if (p.m * p.n * p.k < MIN_WORK || !(a instanceof Float32Array) || !(b instanceof Float32Array))
    return plainMatmul(a, b, p);
  return matmulF32Batched(a, b, p.batch, p.m, p.n, p.k, p.transA, p.transB, undefined, {
    strideA: p.strideA,
    strideB: p.strideB,
    strideC: p.m * p.n,
  });
}

/** The SIMD kernels, or null where WebAssembly SIMD is unavailable. */
export function wasmFastKernels(): {
  gemm: typeof gemm;
  matmul: typeof matmul;
  variant: string;
  conv2d: typeof conv2dF32;
  conv2dBackwardInput: typeof conv2dBackwardInputF32;
  conv2dBackwardWeight: typeof conv2dBackwardWeightF32;
  softmaxRows: typeof softmaxRowsF32;
  unary: typeof unaryF32;
  siluGrad: typeof siluGradF32;
  groupNorm: typeof groupNormF32;
  layerNorm: typeof layerNormF32;
  geglu: typeof gegluF32;
  binary: typeof binaryF32;
  reduceSum: typeof reduceSumF32;
  adam: typeof adamF32;
  groupNormBackward: typeof groupNormBackwardF32;
  layerNormBackward: typeof layerNormBackwardF32;
} | null {
  if (!simdAvailable()) return null;
  return {
    gemm,
    matmul,
    variant: bestVariant(),
    conv2d: conv2dF32,
    conv2dBackwardInput: conv2dBackwardInputF32,
    conv2dBackwardWeight: conv2dBackwardWeightF32,
    softmaxRows: softmaxRowsF32,
    unary: unaryF32,
    siluGrad: siluGradF32,
    groupNorm: groupNormF32,
    layerNorm: layerNormF32,
    geglu: gegluF32,
    binary: binaryF32,
    reduceSum: reduceSumF32,
    adam: adamF32,
    groupNormBackward: groupNormBackwardF32,
    layerNormBackward: layerNormBackwardF32,
  };
}
