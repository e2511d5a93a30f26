// elementwise cpu kernels: unary, broadcasting binary and where, generated once per op for tight loops
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import { sizeOf } from "../../shape.ts";
import type { BinaryOp, UnaryOp } from "../backend.ts";
import { erf32, erf64 } from "./math.ts";

const UNARY: { [K in UnaryOp]: string } = {
  neg: "-x",
  exp: "Math.exp(x)",
  log: "Math.log(x)",
  sqrt: "Math.sqrt(x)",
  rsqrt: "1 / Math.sqrt(x)",
  abs: "Math.abs(x)",
  sign: "(x > 0 ? 1 : x < 0 ? -1 : x)",
  tanh: "Math.tanh(x)",
  sigmoid: "1 / (1 + Math.exp(-x))",
  relu: "(x > 0 ? x : 0)",
  step: "(x > 0 ? 1 : 0)",
  silu: "x / (1 + Math.exp(-x))",
  gelu: "0.5 * x * (1 + erf(x * 0.7071067811865476))",
  gelu_tanh: "0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))",
  erf: "erf(x)",
  sin: "Math.sin(x)",
  cos: "Math.cos(x)",
  square: "x * x",
  reciprocal: "1 / x",
};

const BINARY: { [K in BinaryOp]: string } = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  pow: "Math.pow(x, y)",
  maximum: "(x > y ? x : x <= y ? y : NaN)",
  minimum: "(x < y ? x : x >= y ? y : NaN)",
  lt: "(x < y ? 1 : 0)",
  le: "(x <= y ? 1 : 0)",
  gt: "(x > y ? 1 : 0)",
  ge: "(x >= y ? 1 : 0)",
  eq: "(x === y ? 1 : 0)",
  ne: "(x !== y ? 1 : 0)",
  // x = output gradient, y = input: g s (1 + y (1 - s)) with s = sigmoid(y)
  silu_grad: "x * dsilu(y)",
  // g (Phi(y) + y phi(y))
  gelu_grad: "x * (0.5 * (1 + erf(y * 0.7071067811865476)) + y * Math.exp(-0.5 * y * y) * 0.3989422804014327)",
  // y = sigmoid output: g y (1 - y)
  sigmoid_grad: "x * y * (1 - y)",
  // y = tanh output: g (1 - y^2)
  tanh_grad: "x * (1 - y * y)",
};

/** d/dy of y sigmoid(y): s (1 + y (1 - s)). */
function dsilu(y: number): number {
  const s = 1 / (1 + Math.exp(-y));
  return s * (1 + y * (1 - s));
}

type UnaryFn = (x: TypedArray, out: TypedArray, erf: (v: number) => number) => void;
type BinaryFn = (a: TypedArray, b: TypedArray, out: TypedArray, shape: number[], sa: number[], sb: number[], erf: (v: number) => number, dsilu: (v: number) => number) => void;

const unaryCache = new Map<string, UnaryFn>();
const binaryCache = new Map<string, BinaryFn>();

function unaryFn(op: UnaryOp): UnaryFn {
  let f = unaryCache.get(op);
  if (!f) {
    f = new Function("src", "out", "erf", `"use strict"; const n = src.length; for (let i = 0; i < n; i++) { const x = src[i]; out[i] = ${UNARY[op]}; }`) as UnaryFn;
    unaryCache.set(op, f);
  }
  return f;
}

export function unary(op: UnaryOp, x: TypedArray): TypedArray {
  const out = takeLike(x, x.length, true);
  unaryFn(op)(x, out, x instanceof Float64Array ? erf64 : erf32);
  return out;
}

// iterates the (coalesced) output shape with the innermost dimension as a tight loop
function binaryFn(op: string, expr: string): BinaryFn {
  let f = binaryCache.get(op);
  if (!f) {
    f = new Function(
      "a", "b", "out", "shape", "sa", "sb", "erf", "dsilu",
      `"use strict";
      const nd = shape.length, inner = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
      let outer = 1; for (let d = 0; d < nd - 1; d++) outer *= shape[d];
      const cnt = new Int32Array(nd);
      let oa = 0, ob = 0, o = 0;
      for (let r = 0; r < outer; r++) {
        if (ia === 1 && ib === 1) { for (let j = 0; j < inner; j++) { const x = a[oa + j], y = b[ob + j]; out[o + j] = ${expr}; } }
        else if (ib === 0) { const y = b[ob]; for (let j = 0; j < inner; j++) { const x = a[oa + j * ia]; out[o + j] = ${expr}; } }
        else if (ia === 0) { const x = a[oa]; for (let j = 0; j < inner; j++) { const y = b[ob + j * ib]; out[o + j] = ${expr}; } }
        else { for (let j = 0; j < inner; j++) { const x = a[oa + j * ia], y = b[ob + j * ib]; out[o + j] = ${expr}; } }
        o += inner;
        for (let d = nd - 2; d >= 0; d--) {
          cnt[d]++; oa += sa[d]; ob += sb[d];
          if (cnt[d] < shape[d]) break;
          oa -= sa[d] * shape[d]; ob -= sb[d] * shape[d]; cnt[d] = 0;
        }
      }`,
    ) as BinaryFn;
    binaryCache.set(op, f);
  }
  return f;
}

/** Strides of `shape` aligned right to `outShape`, 0 where the dimension broadcasts. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const n = outShape.length;
  const s = new Array<number>(n).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const oi = i + n - shape.length;
    s[oi] = shape[i] === 1 && outShape[oi] !== 1 ? 0 : acc;
    acc *= shape[i];
  }
  return s;
}

/** Merges adjacent dimensions that are contiguous in every operand; drops size-1 dimensions. */
export function coalesce(shape: Shape, strides: number[][]): { shape: number[]; strides: number[][] } {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = outShape.length - 1;
    if (last >= 0 && strides.every((s, k) => outStrides[k][last] === s[d] * shape[d])) {
      outShape[last] *= shape[d];
      strides.forEach((s, k) => (outStrides[k][last] = s[d]));
    } else {
      outShape.push(shape[d]);
      strides.forEach((s, k) => outStrides[k].push(s[d]));
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    outStrides.forEach((s) => s.push(1));
  }
  return { shape: outShape, strides: outStrides };
}

export function binary(op: BinaryOp, a: TypedArray, aShape: Shape, b: TypedArray, bShape: Shape, outShape: Shape): TypedArray {
  const out = takeLike(a, sizeOf(outShape), true);
  if (out.length === 0) return out;
  const c = coalesce(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
  binaryFn(op, BINARY[op])(a, b, out, c.shape, c.strides[0], c.strides[1], a instanceof Float64Array ? erf64 : erf32, dsilu);
  return out;
}

export function where(c: TypedArray, cShape: Shape, a: TypedArray, aShape: Shape, b: TypedArray, bShape: Shape, outShape: Shape): TypedArray {
  const n = sizeOf(outShape);
  const out = takeLike(a, n, true);
  const nd = outShape.length;
  const sc = broadcastStrides(cShape, outShape);
  const sa = broadcastStrides(aShape, outShape);
  const sb = broadcastStrides(bShape, outShape);
  const cnt = new Int32Array(nd);
  let oc = 0, oa = 0, ob = 0;
  for (let i = 0; i < n; i++) {
    out[i] = c[oc] !== 0 ? a[oa] : b[ob];
    for (let d = nd - 1; d >= 0; d--) {
      cnt[d]++;
      oc += sc[d]; oa += sa[d]; ob += sb[d];
      if (cnt[d] < outShape[d]) break;
      oc -= sc[d] * outShape[d]; oa -= sa[d] * outShape[d]; ob -= sb[d] * outShape[d];
      cnt[d] = 0;
    }
  }
  return out;
}

/** GEGLU over rows of 2d: out[r][j] = h[r][j] gelu(h[r][d + j]) (the first half times GELU of the second). */
export function geglu(h: TypedArray, rows: number, d: number): TypedArray {
  const out = takeLike(h, rows * d, true);
  const erf = h instanceof Float64Array ? erf64 : erf32;
  for (let r = 0; r < rows; r++) {
    const hi = r * 2 * d, oi = r * d;
    for (let j = 0; j < d; j++) {
      const x = h[hi + d + j]!;
      out[oi + j] = h[hi + j]! * (0.5 * x * (1 + erf(x * Math.SQRT1_2)));
    }
  }
  return out;
}

/** Gradient of {@link geglu}: dh[r][j] = g gelu(x), dh[r][d + j] = g h[r][j] (Phi(x) + x phi(x)), x = h[r][d + j]. */
export function gegluBackward(h: TypedArray, g: TypedArray, rows: number, d: number): TypedArray {
  const dh = takeLike(h, rows * 2 * d, true);
  const erf = h instanceof Float64Array ? erf64 : erf32;
  for (let r = 0; r < rows; r++) {
    const hi = r * 2 * d, gi = r * d;
    for (let j = 0; j < d; j++) {
      const x = h[hi + d + j]!, gv = g[gi + j]!;
      const Phi = 0.5 * (1 + erf(x * Math.SQRT1_2));
      dh[hi + j] = gv * x * Phi;
      dh[hi + d + j] = gv * h[hi + j]! * (Phi + x * Math.exp(-0.5 * x * x) * 0.3989422804014327);
    }
  }
  return dh;
}
