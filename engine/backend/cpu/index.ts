// the cpu backend: typed-array storage, the plain TypeScript kernels (complete for float32 and
// float64), and the WebAssembly SIMD kernels for float32; which one runs is decided per kernel, once,
// when the kernel table is built (at load, or by useWasmKernels / setFastKernels)
import type { DType, FloatDType, TypedArray } from "../../dtype.ts";
import { isHalf } from "../../dtype.ts";
import { fromHalfBits, toHalfBits } from "../../half.ts";
import type {
  AdamHyper,
  Backend,
  BinaryOp,
  Conv2dParams,
  GroupNormParams,
  LayerNormParams,
  UnaryOp,
} from "../backend.ts";
import type { Shape } from "../../shape.ts";
import { beginScratch, take } from "./buffers.ts";
import { binary, geglu, gegluBackward, unary, where } from "./elementwise.ts";
import { concat, expand, gather, indexAdd, pad, permute, slice } from "./movement.ts";
import { reduce, softmax } from "./reduce.ts";
import { gemm as plainGemm, matmul as plainMatmul, transpose2d } from "./matmul.ts";
import type { Gemm } from "./conv.ts";
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, poolSum, upsampleNearest } from "./conv.ts";
import { wasmFastKernels } from "./fast.ts";
import { attentionBackward, attentionForward, plainAttentionBackward, plainAttentionForward } from "./attention.ts";
import { groupNormBackward, groupNormForward, layerNormBackward, layerNormForward } from "./norm.ts";
import { adamUpdate } from "./optim.ts";

/** Every kernel of a cpu backend (a {@link Backend} without its name). */
export type CpuKernels = Omit<Backend<TypedArray>, "name">;

type NormOut = { y: Float32Array; mean: Float64Array; rstd: Float64Array };
type NormGrads = { dx: Float32Array; dw: Float32Array | null; db: Float32Array | null };

/** Float32 kernels that replace plain ones where they apply; each returns null where it does not. */
export interface FastKernels {
  gemm: Gemm;
  matmul: typeof plainMatmul;
  conv2d?: (x: Float32Array, xs: Shape, w: Float32Array, ws: Shape, p: Conv2dParams) => Float32Array;
  conv2dBackwardInput?: (
    gy: Float32Array,
    gys: Shape,
    w: Float32Array,
    ws: Shape,
    xs: Shape,
    p: Conv2dParams,
  ) => Float32Array;
  conv2dBackwardWeight?: (
    x: Float32Array,
    xs: Shape,
    gy: Float32Array,
    gys: Shape,
    ws: Shape,
    p: Conv2dParams,
  ) => Float32Array;
  /** softmax over contiguous rows */
  softmaxRows?: (x: Float32Array, rows: number, n: number, log: boolean) => Float32Array | null;
  unary?: (op: UnaryOp, x: Float32Array) => Float32Array | null;
  /** group norm forward, optionally with silu after it */
  groupNorm?: (
    x: Float32Array,
    w: Float32Array | null,
    b: Float32Array | null,
    p: GroupNormParams,
    silu?: boolean,
  ) => NormOut | null;
  /** GEGLU forward (g null) or its gradient */
  geglu?: (h: Float32Array, g: Float32Array | null, rows: number, d: number) => Float32Array | null;
  layerNorm?: (x: Float32Array, w: Float32Array | null, b: Float32Array | null, p: LayerNormParams) => NormOut | null;
  /** add, sub, mul, div of float32 operands with broadcasting (the same results as the plain kernel) */
  binary?: (op: BinaryOp, a: Float32Array, as: Shape, b: Float32Array, bs: Shape, os: Shape) => Float32Array | null;
  /** sum over sorted unique axes (the same results as the plain kernel) */
  reduceSum?: (x: Float32Array, shape: Shape, axes: readonly number[]) => Float32Array | null;
  /** one Adam step in place over float32 storages (the same results as the plain kernel); false if not handled */
  adam?: (p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, size: number, h: AdamHyper) => boolean;
  /** group norm and layer norm gradients over float32 (mean and rstd as the forward kernels return them) */
  groupNormBackward?: (
    x: Float32Array,
    w: Float32Array | null,
    gy: Float32Array,
    mean: Float64Array,
    rstd: Float64Array,
    p: GroupNormParams,
    affine: boolean,
  ) => NormGrads | null;
  layerNormBackward?: (
    x: Float32Array,
    w: Float32Array | null,
    gy: Float32Array,
    mean: Float64Array,
    rstd: Float64Array,
    p: LayerNormParams,
    affine: boolean,
  ) => NormGrads | null;
  /** silu (or gelu) gradient for same-shape operands */
  siluGrad?: (g: Float32Array, x: Float32Array, gelu?: boolean) => Float32Array | null;
  /** fused attention (forward and backward) over float32 */
  attention?: boolean;
}

/**
 * Casts between the dtypes. Half storage is a Uint16Array of bits (handed around as the storage type,
 * and read by no kernel but this one: the ops widen half weights to float32 through here).
 */
function castStorage(x: TypedArray, from: DType, to: DType): TypedArray {
  if (isHalf(from)) {
    const bits = x as unknown as Uint16Array;
    if (from === to) return bits.slice() as unknown as TypedArray;
    const wide = fromHalfBits(bits, from, take(Float32Array, bits.length, true));
    return to === "float32" ? wide : castStorage(wide, "float32", to);
  }
  if (isHalf(to)) return toHalfBits(x, to) as unknown as TypedArray;
  const out = take(ctorOf(to), x.length, true);
  out.set(x);
  return out;
}

const ctorOf = (dtype: FloatDType): Float32ArrayConstructor | Float64ArrayConstructor =>
  dtype === "float64" ? Float64Array : Float32Array;

/** Storage management and the plain TypeScript kernels: the complete reference for either dtype. */
export const plainKernels: CpuKernels = {
  zeros: (dtype, size) => take(ctorOf(dtype), size),
  fromHost: (data) => data,
  toHost: (s) => s,
  fill: (dtype, size, value) => take(ctorOf(dtype), size, true).fill(value),
  cast: castStorage,
  beginScratch,
  // cpu arrays are the collector's: nothing to free early
  beginTidy: () => ({ end: () => {}, cancel: () => {} }),
  unary,
  binary,
  where,
  geglu,
  gegluBackward,
  reduce,
  softmax,
  permute,
  expand,
  slice,
  pad,
  concat,
  gather,
  indexAdd,
  matmul: plainMatmul,
  conv2d: (x, xs, w, ws, p) => conv2d(x, xs, w, ws, p, plainGemm),
  conv2dBackwardInput: (gy, gys, w, ws, xs, p) => conv2dBackwardInput(gy, gys, w, ws, xs, p, plainGemm, transpose2d),
  conv2dBackwardWeight: (x, xs, gy, gys, ws, p) => conv2dBackwardWeight(x, xs, gy, gys, ws, p, plainGemm, transpose2d),
  upsampleNearest,
  poolSum,
  attention: plainAttentionForward,
  attentionBackward: (q, k, v, mask, o, lse, gO, p) => plainAttentionBackward(q, k, v, mask, o, lse, gO, p),
  groupNorm: groupNormForward,
  groupNormBackward,
  layerNorm: layerNormForward,
  layerNormBackward,
  adamUpdate,
};

const f32 = (x: TypedArray | null): x is Float32Array => x instanceof Float32Array;
const f64 = (x: TypedArray | null): x is Float64Array => x instanceof Float64Array;
const f32OrNull = (x: TypedArray | null): x is Float32Array | null => x === null || x instanceof Float32Array;

/** The kernel table with `f`'s float32 kernels in front of the plain ones (float64 keeps the plain path). */
export function kernelTable(f: FastKernels | null): CpuKernels {
  const P = plainKernels;
  if (!f) return P;
  const gemmFor = (x: TypedArray): Gemm => (f32(x) ? f.gemm : plainGemm);
  return {
    ...P,
    unary: f.unary ? (op, x) => (f32(x) ? f.unary!(op, x) : null) ?? P.unary(op, x) : P.unary,
    binary:
      f.siluGrad || f.binary
        ? (op, a, as, b, bs, os) => {
            if (!f32(a) || !f32(b)) return P.binary(op, a, as, b, bs, os);
            const r =
              (op === "silu_grad" || op === "gelu_grad") &&
              f.siluGrad &&
              a.length === b.length &&
              as.join() === bs.join()
                ? f.siluGrad(a, b, op === "gelu_grad")
                : f.binary
                  ? f.binary(op, a, as, b, bs, os)
                  : null;
            return r ?? P.binary(op, a, as, b, bs, os);
          }
        : P.binary,
    geglu: f.geglu ? (h, rows, d) => (f32(h) ? f.geglu!(h, null, rows, d) : null) ?? P.geglu(h, rows, d) : P.geglu,
    gegluBackward: f.geglu
      ? (h, g, rows, d) => (f32(h) && f32(g) ? f.geglu!(h, g, rows, d) : null) ?? P.gegluBackward(h, g, rows, d)
      : P.gegluBackward,
    softmax: f.softmaxRows
      ? (x, shape, axis, log) => {
          const n = shape[axis]!;
          const r = f32(x) && axis === shape.length - 1 ? f.softmaxRows!(x, n === 0 ? 0 : x.length / n, n, log) : null;
          return r ?? P.softmax(x, shape, axis, log);
        }
      : P.softmax,
    matmul: (a, b, p) => (f32(a) ? f.matmul(a, b, p) : P.matmul(a, b, p)),
    conv2d: (x, xs, w, ws, p) =>
      f.conv2d && f32(x) && f32(w) ? f.conv2d(x, xs, w, ws, p) : conv2d(x, xs, w, ws, p, gemmFor(x)),
    conv2dBackwardInput: (gy, gys, w, ws, xs, p) =>
      f.conv2dBackwardInput && f32(gy) && f32(w)
        ? f.conv2dBackwardInput(gy, gys, w, ws, xs, p)
        : conv2dBackwardInput(gy, gys, w, ws, xs, p, gemmFor(gy), transpose2d),
    conv2dBackwardWeight: (x, xs, gy, gys, ws, p) =>
      f.conv2dBackwardWeight && f32(x) && f32(gy)
        ? f.conv2dBackwardWeight(x, xs, gy, gys, ws, p)
        : conv2dBackwardWeight(x, xs, gy, gys, ws, p, gemmFor(x), transpose2d),
    reduce: f.reduceSum
      ? (op, x, shape, axes) =>
          (op === "sum" && f32(x) ? f.reduceSum!(x, shape, axes) : null) ?? P.reduce(op, x, shape, axes)
      : P.reduce,
    adamUpdate: f.adam
      ? (p, g, m, v, size, h) =>
          f32(p) && f32(g) && f32(m) && f32(v) && f.adam!(p, g, m, v, size, h)
            ? { p, m, v }
            : P.adamUpdate(p, g, m, v, size, h)
      : P.adamUpdate,
    attention: f.attention ? attentionForward : P.attention,
    attentionBackward: f.attention ? attentionBackward : P.attentionBackward,
    groupNorm: f.groupNorm
      ? (x, w, b, p) =>
          (f32(x) && f32OrNull(w) && f32OrNull(b) ? f.groupNorm!(x, w, b, p, !!p.silu) : null) ??
          P.groupNorm(x, w, b, p)
      : P.groupNorm,
    groupNormBackward: f.groupNormBackward
      ? (x, w, gy, mean, rstd, p, affine) =>
          (f32(x) && f32OrNull(w) && f32(gy) && f64(mean) && f64(rstd)
            ? f.groupNormBackward!(x, w, gy, mean, rstd, p, affine)
            : null) ?? P.groupNormBackward(x, w, gy, mean, rstd, p, affine)
      : P.groupNormBackward,
    layerNormBackward: f.layerNormBackward
      ? (x, w, gy, mean, rstd, p, affine) =>
          (f32(x) && f32OrNull(w) && f32(gy) && f64(mean) && f64(rstd)
            ? f.layerNormBackward!(x, w, gy, mean, rstd, p, affine)
            : null) ?? P.layerNormBackward(x, w, gy, mean, rstd, p, affine)
      : P.layerNormBackward,
    layerNorm: f.layerNorm
      ? (x, w, b, p) =>
          (f32(x) && f32OrNull(w) && f32OrNull(b) ? f.layerNorm!(x, w, b, p) : null) ?? P.layerNorm(x, w, b, p)
      : P.layerNorm,
  };
}

const envPlain =
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CDIFF_KERNELS === "plain";
// WebAssembly SIMD by default; CDIFF_KERNELS=plain keeps the portable TypeScript path
let fast: FastKernels | null = envPlain ? null : simdKernels();

function simdKernels(): FastKernels | null {
  const k = wasmFastKernels();
  return k ? { ...k, attention: true } : null;
}

/** The cpu backend. Its kernel fields are the table chosen by the last switch (see {@link useWasmKernels}). */
export const cpuBackend: Backend<TypedArray> = { name: "cpu", ...kernelTable(fast) };

/** Installs float32 kernels in front of the plain ones (float64 keeps the plain path); null restores the plain path. */
export function setFastKernels(k: FastKernels | null): void {
  fast = k;
  Object.assign(cpuBackend, kernelTable(k));
}

/** The float32 fast kernels in use, or null (plain TypeScript). */
export function getFastKernels(): FastKernels | null {
  return fast;
}

/** Switches the WebAssembly SIMD kernels on (default) or off; returns whether they are on. */
export function useWasmKernels(on: boolean): boolean {
  setFastKernels(on ? simdKernels() : null);
  return fast !== null;
}
