// A backend written only against the Backend interface: host typed arrays, the plain TypeScript
// kernels, no SIMD, no buffer pool. The contract test runs the op suite and the gradient checks on it.
import type { Backend, ScratchScope } from "../../engine/backend/backend.ts";
import type { FloatDType, TypedArray } from "../../engine/dtype.ts";
import { isHalf } from "../../engine/dtype.ts";
import { roundToHalf } from "../../engine/half.ts";
import { binary, geglu, gegluBackward, unary, where } from "../../engine/backend/cpu/elementwise.ts";
import { concat, expand, gather, indexAdd, pad, permute, slice } from "../../engine/backend/cpu/movement.ts";
import { reduce, softmax } from "../../engine/backend/cpu/reduce.ts";
import { gemm, matmul, transpose2d } from "../../engine/backend/cpu/matmul.ts";
import {
  conv2d,
  conv2dBackwardInput,
  conv2dBackwardWeight,
  poolSum,
  upsampleNearest,
} from "../../engine/backend/cpu/conv.ts";
import { plainAttentionBackward, plainAttentionForward } from "../../engine/backend/cpu/attention.ts";
import {
  groupNormBackward,
  groupNormForward,
  layerNormBackward,
  layerNormForward,
} from "../../engine/backend/cpu/norm.ts";
import { adamUpdate } from "../../engine/backend/cpu/optim.ts";

const alloc = (dtype: FloatDType, n: number): TypedArray =>
  dtype === "float64" ? new Float64Array(n) : new Float32Array(n);

/** No pooling: every scope ignores what it is given back. */
const noScratch = (): ScratchScope<TypedArray> => ({ key: (s) => s.buffer, release: () => {}, end: () => {} });

export const plainBackend: Backend<TypedArray> = {
  name: "plain-test",
  zeros: (dtype, size) => alloc(dtype, size),
  fromHost: (data) => data,
  toHost: (s) => s,
  fill: (dtype, size, value) => alloc(dtype, size).fill(value),
  // half dtypes as float32 values rounded to them
  cast: (x, from, to) => {
    if (isHalf(to)) return from === to ? Float32Array.from(x) : roundToHalf(x, to);
    const out = alloc(to, x.length);
    out.set(x);
    return out;
  },
  beginScratch: noScratch,
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
  matmul,
  conv2d: (x, xs, w, ws, p) => conv2d(x, xs, w, ws, p, gemm),
  conv2dBackwardInput: (gy, gys, w, ws, xs, p) => conv2dBackwardInput(gy, gys, w, ws, xs, p, gemm, transpose2d),
  conv2dBackwardWeight: (x, xs, gy, gys, ws, p) => conv2dBackwardWeight(x, xs, gy, gys, ws, p, gemm, transpose2d),
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

/** Calls per kernel since start, counted by wrapping every kernel of `b` in place. */
export function countCalls(b: Backend<TypedArray>): Map<string, number> {
  const counts = new Map<string, number>();
  const rec = b as unknown as Record<string, unknown>;
  for (const [name, fn] of Object.entries(rec)) {
    if (typeof fn !== "function") continue;
    rec[name] = (...args: unknown[]) => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return (fn as (...a: unknown[]) => unknown)(...args);
    };
  }
  return counts;
}
