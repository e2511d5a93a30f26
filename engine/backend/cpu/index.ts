// the cpu backend: typed-array storage and the plain TypeScript kernels
import type { DType, TypedArray } from "../../dtype.ts";
import { allocArray } from "../../dtype.ts";
import { beginScratch, take } from "./buffers.ts";

const ctorOf = (dtype: DType): Float32ArrayConstructor | Float64ArrayConstructor => (allocArray(dtype, 0) instanceof Float64Array ? Float64Array : Float32Array);
import type { Backend, Conv2dParams, UnaryOp } from "../backend.ts";
import type { Shape } from "../../shape.ts";
import { binary, geglu, gegluBackward, unary, where } from "./elementwise.ts";
import { concat, expand, gather, indexAdd, pad, permute, slice } from "./movement.ts";
import { reduce, softmax } from "./reduce.ts";
import { gemm as plainGemm, matmul as plainMatmul, transpose2d } from "./matmul.ts";
import type { Gemm } from "./conv.ts";
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, poolSum, upsampleNearest } from "./conv.ts";
import { wasmFastKernels } from "./fast.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import { groupNormBackward, groupNormForward, layerNormBackward, layerNormForward, type GroupNormParams, type LayerNormParams } from "./norm.ts";

/** Float32 GEMM/matmul implementations the cpu backend may switch to (e.g. WebAssembly SIMD). */
export interface FastKernels {
  gemm: Gemm;
  matmul: typeof plainMatmul;
  /** float32 convolutions working in the kernel's memory (optional: else im2col + `gemm`) */
  conv2d?: (x: Float32Array, xs: Shape, w: Float32Array, ws: Shape, p: Conv2dParams) => Float32Array;
  conv2dBackwardInput?: (gy: Float32Array, gys: Shape, w: Float32Array, ws: Shape, xs: Shape, p: Conv2dParams) => Float32Array;
  conv2dBackwardWeight?: (x: Float32Array, xs: Shape, gy: Float32Array, gys: Shape, ws: Shape, p: Conv2dParams) => Float32Array;
  /** float32 softmax over contiguous rows (optional; null = not handled) */
  softmaxRows?: (x: Float32Array, rows: number, n: number, log: boolean) => Float32Array | null;
  /** float32 elementwise activations (optional; null = not handled) */
  unary?: (op: UnaryOp, x: Float32Array) => Float32Array | null;
  /** float32 group norm forward, optionally with silu after it (optional; null = not handled) */
  groupNorm?: (x: Float32Array, w: Float32Array | null, b: Float32Array | null, p: GroupNormParams, silu?: boolean) => { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null;
  /** float32 GEGLU forward (g null) or its gradient (optional; null = not handled) */
  geglu?: (h: Float32Array, g: Float32Array | null, rows: number, d: number) => Float32Array | null;
  /** float32 layer norm forward (optional; null = not handled) */
  layerNorm?: (x: Float32Array, w: Float32Array | null, b: Float32Array | null, p: LayerNormParams) => { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null;
  /** float32 silu (or gelu) gradient for same-shape operands (optional; null = not handled) */
  siluGrad?: (g: Float32Array, x: Float32Array, gelu?: boolean) => Float32Array | null;
}
// WebAssembly SIMD GEMM by default; CDIFF_KERNELS=plain keeps the portable TypeScript path
let fast: FastKernels | null = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CDIFF_KERNELS === "plain" ? null : wasmFastKernels();

/** Installs faster float32 kernels (float64 keeps the plain path); pass null to restore the plain path. */
export function setFastKernels(k: FastKernels | null): void {
  fast = k;
}

/** The float32 fast kernels in use, or null (plain TypeScript). */
export function getFastKernels(): FastKernels | null {
  return fast;
}

/** Switches the WebAssembly SIMD kernels on (default) or off; returns whether they are on. */
export function useWasmKernels(on: boolean): boolean {
  fast = on ? wasmFastKernels() : null;
  return fast !== null;
}

function gemmFor(x: TypedArray): Gemm {
  return fast && x instanceof Float32Array ? fast.gemm : plainGemm;
}

/** The cpu backend: the {@link Backend} kernels plus fused attention (see engine/ops/attention.ts). */
export const cpuBackend: Backend<TypedArray> & {
  beginScratch: typeof beginScratch;
  geglu: typeof geglu;
  gegluBackward: typeof gegluBackward;
  attention: typeof attentionForward;
  attentionBackward: typeof attentionBackward;
  groupNorm: typeof groupNormForward;
  groupNormBackward: typeof groupNormBackward;
  layerNorm: typeof layerNormForward;
  layerNormBackward: typeof layerNormBackward;
} = {
  name: "cpu",
  zeros: (dtype: DType, size: number) => take(ctorOf(dtype), size),
  fromHost: (data) => data,
  toHost: (s) => s,
  fill: (dtype, size, value) => take(ctorOf(dtype), size, true).fill(value),
  cast: (x, to) => {
    const out = take(ctorOf(to), x.length, true);
    out.set(x);
    return out;
  },
  beginScratch,
  unary: (op, x) => (fast?.unary && x instanceof Float32Array ? fast.unary(op, x) : null) ?? unary(op, x),
  binary: (op, a, as, b, bs, os) =>
    ((op === "silu_grad" || op === "gelu_grad") && fast?.siluGrad && a instanceof Float32Array && b instanceof Float32Array && a.length === b.length && as.join() === bs.join()
      ? fast.siluGrad(a, b, op === "gelu_grad")
      : null) ?? binary(op, a, as, b, bs, os),
  where,
  reduce,
  permute,
  expand,
  slice,
  pad,
  concat,
  gather,
  indexAdd,
  matmul: (a, b, p) => (fast && a instanceof Float32Array ? fast.matmul(a, b, p) : plainMatmul(a, b, p)),
  conv2d: (x, xs, w, ws, p) =>
    fast?.conv2d && x instanceof Float32Array && w instanceof Float32Array ? fast.conv2d(x, xs, w, ws, p) : conv2d(x, xs, w, ws, p, gemmFor(x)),
  conv2dBackwardInput: (gy, gys, w, ws, xs, p) =>
    fast?.conv2dBackwardInput && gy instanceof Float32Array && w instanceof Float32Array
      ? fast.conv2dBackwardInput(gy, gys, w, ws, xs, p)
      : conv2dBackwardInput(gy, gys, w, ws, xs, p, gemmFor(gy), transpose2d),
  conv2dBackwardWeight: (x, xs, gy, gys, ws, p) =>
    fast?.conv2dBackwardWeight && x instanceof Float32Array && gy instanceof Float32Array
      ? fast.conv2dBackwardWeight(x, xs, gy, gys, ws, p)
      : conv2dBackwardWeight(x, xs, gy, gys, ws, p, gemmFor(x), transpose2d),
  upsampleNearest,
  poolSum,
  softmax: (x, shape, axis, log) => {
    if (fast?.softmaxRows && x instanceof Float32Array && axis === shape.length - 1) {
      const n = shape[axis]!;
      const r = fast.softmaxRows(x, n === 0 ? 0 : x.length / n, n, log);
      if (r) return r;
    }
    return softmax(x, shape, axis, log);
  },
  geglu: (h, rows, d) => (fast?.geglu && h instanceof Float32Array ? fast.geglu(h, null, rows, d) : null) ?? geglu(h, rows, d),
  gegluBackward: (h, g, rows, d) =>
    (fast?.geglu && h instanceof Float32Array && g instanceof Float32Array ? fast.geglu(h, g, rows, d) : null) ?? gegluBackward(h, g, rows, d),
  attention: attentionForward,
  attentionBackward,
  groupNorm: (x, w, b, p) =>
    (fast?.groupNorm && x instanceof Float32Array && (!w || w instanceof Float32Array) && (!b || b instanceof Float32Array) ? fast.groupNorm(x, w, b, p, !!p.silu) : null) ??
    groupNormForward(x, w, b, p),
  groupNormBackward,
  layerNorm: (x, w, b, p) =>
    (fast?.layerNorm && x instanceof Float32Array && (!w || w instanceof Float32Array) && (!b || b instanceof Float32Array) ? fast.layerNorm(x, w, b, p) : null) ??
    layerNormForward(x, w, b, p),
  layerNormBackward,
};
