// elementwise cpu kernels: unary, broadcasting binary and where (one tight loop per op), GEGLU
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import { sizeOf } from "../../shape.ts";
import type { BinaryOp, UnaryOp } from "../backend.ts";
import { erf32, erf64 } from "./math.ts";

type Erf = (v: number) => number;

/** out[i] = op(x[i]) over the whole array: one tight loop per op. */
function unaryLoop(op: UnaryOp, x: TypedArray, out: TypedArray, erf: Erf): void {
  const n = x.length;
  switch (op) {
    case "neg":
      for (let i = 0; i < n; i++) out[i] = -x[i]!;
      return;
    case "exp":
      for (let i = 0; i < n; i++) out[i] = Math.exp(x[i]!);
      return;
    case "log":
      for (let i = 0; i < n; i++) out[i] = Math.log(x[i]!);
      return;
    case "sqrt":
      for (let i = 0; i < n; i++) out[i] = Math.sqrt(x[i]!);
      return;
    case "rsqrt":
      for (let i = 0; i < n; i++) out[i] = 1 / Math.sqrt(x[i]!);
      return;
    case "abs":
      for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!);
      return;
    case "sign":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v > 0 ? 1 : v < 0 ? -1 : v;
      }
      return;
    case "tanh":
      for (let i = 0; i < n; i++) out[i] = Math.tanh(x[i]!);
      return;
    case "sigmoid":
      for (let i = 0; i < n; i++) out[i] = 1 / (1 + Math.exp(-x[i]!));
      return;
    case "relu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v > 0 ? v : 0;
      }
      return;
    case "step":
      for (let i = 0; i < n; i++) out[i] = x[i]! > 0 ? 1 : 0;
      return;
    case "silu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v / (1 + Math.exp(-v));
      }
      return;
    case "gelu":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = 0.5 * v * (1 + erf(v * 0.7071067811865476));
      }
      return;
    case "gelu_tanh":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
      }
      return;
    case "erf":
      for (let i = 0; i < n; i++) out[i] = erf(x[i]!);
      return;
    case "sin":
      for (let i = 0; i < n; i++) out[i] = Math.sin(x[i]!);
      return;
    case "cos":
      for (let i = 0; i < n; i++) out[i] = Math.cos(x[i]!);
      return;
    case "square":
      for (let i = 0; i < n; i++) {
        const v = x[i]!;
        out[i] = v * v;
      }
      return;
    case "reciprocal":
      for (let i = 0; i < n; i++) out[i] = 1 / x[i]!;
      return;
    default:
      throw new Error(`unary: unknown op "${op satisfies never}"`);
  }
}

export function unary(op: UnaryOp, x: TypedArray): TypedArray {
  const out = takeLike(x, x.length, true);
  unaryLoop(op, x, out, x instanceof Float64Array ? erf64 : erf32);
  return out;
}

/** d/dy of y sigmoid(y): s (1 + y (1 - s)). */
function dsilu(y: number): number {
  const s = 1 / (1 + Math.exp(-y));
  return s * (1 + y * (1 - s));
}

/**
 * out[o + j] = op(a[pa], b[pb]) for j < n, with pa and pb stepping by ia and ib (0 broadcasts): one
 * tight loop per op. For the activation gradients x is the output gradient and y the forward input
 * (sigmoid_grad, tanh_grad: the forward output).
 */
function binaryRow(
  op: BinaryOp,
  a: TypedArray,
  pa: number,
  ia: number,
  b: TypedArray,
  pb: number,
  ib: number,
  out: TypedArray,
  o: number,
  n: number,
  erf: Erf,
): void {
  const end = o + n;
  switch (op) {
    case "add":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! + b[pb]!;
      return;
    case "sub":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! - b[pb]!;
      return;
    case "mul":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! * b[pb]!;
      return;
    case "div":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! / b[pb]!;
      return;
    case "pow":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = Math.pow(a[pa]!, b[pb]!);
      return;
    // NaN in either operand gives NaN
    case "maximum":
      for (; o < end; o++, pa += ia, pb += ib) {
        const x = a[pa]!,
          y = b[pb]!;
        out[o] = x > y ? x : x <= y ? y : NaN;
      }
      return;
    case "minimum":
      for (; o < end; o++, pa += ia, pb += ib) {
        const x = a[pa]!,
          y = b[pb]!;
        out[o] = x < y ? x : x >= y ? y : NaN;
      }
      return;
    case "lt":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! < b[pb]! ? 1 : 0;
      return;
    case "le":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! <= b[pb]! ? 1 : 0;
      return;
    case "gt":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! > b[pb]! ? 1 : 0;
      return;
    case "ge":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! >= b[pb]! ? 1 : 0;
      return;
    case "eq":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! === b[pb]! ? 1 : 0;
      return;
    case "ne":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! !== b[pb]! ? 1 : 0;
      return;
    // g s (1 + y (1 - s)) with s = sigmoid(y)
    case "silu_grad":
      for (; o < end; o++, pa += ia, pb += ib) out[o] = a[pa]! * dsilu(b[pb]!);
      return;
    // g (Phi(y) + y phi(y))
    case "gelu_grad":
      for (; o < end; o++, pa += ia, pb += ib) {
        const x = a[pa]!,
          y = b[pb]!;
        out[o] = x * (0.5 * (1 + erf(y * 0.7071067811865476)) + y * Math.exp(-0.5 * y * y) * 0.3989422804014327);
      }
      return;
    // y = sigmoid output: g y (1 - y)
    case "sigmoid_grad":
      for (; o < end; o++, pa += ia, pb += ib) {
        const y = b[pb]!;
        out[o] = a[pa]! * y * (1 - y);
      }
      return;
    // y = tanh output: g (1 - y^2)
    case "tanh_grad":
      for (; o < end; o++, pa += ia, pb += ib) {
        const y = b[pb]!;
        out[o] = a[pa]! * (1 - y * y);
      }
      return;
    default:
      throw new Error(`binary: unknown op "${op satisfies never}"`);
  }
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

export function binary(
  op: BinaryOp,
  a: TypedArray,
  aShape: Shape,
  b: TypedArray,
  bShape: Shape,
  outShape: Shape,
): TypedArray {
  const out = takeLike(a, sizeOf(outShape), true);
  if (out.length === 0) return out;
  const {
    shape,
    strides: [sa, sb],
  } = coalesce(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
  const erf = a instanceof Float64Array ? erf64 : erf32;
  // the (coalesced) output shape with the innermost dimension as one row call
  const nd = shape.length,
    inner = shape[nd - 1]!,
    ia = sa![nd - 1]!,
    ib = sb![nd - 1]!;
  const outer = out.length / inner;
  const cnt = new Int32Array(nd);
  let oa = 0,
    ob = 0;
  for (let r = 0, o = 0; r < outer; r++, o += inner) {
    binaryRow(op, a, oa, ia, b, ob, ib, out, o, inner, erf);
    for (let d = nd - 2; d >= 0; d--) {
      cnt[d]++;
      oa += sa![d]!;
      ob += sb![d]!;
      if (cnt[d]! < shape[d]!) break;
      oa -= sa![d]! * shape[d]!;
      ob -= sb![d]! * shape[d]!;
      cnt[d] = 0;
    }
  }
  return out;
}

export function where(
  c: TypedArray,
  cShape: Shape,
  a: TypedArray,
  aShape: Shape,
  b: TypedArray,
  bShape: Shape,
  outShape: Shape,
): TypedArray {
  const n = sizeOf(outShape);
  const out = takeLike(a, n, true);
  const nd = outShape.length;
  const sc = broadcastStrides(cShape, outShape);
  const sa = broadcastStrides(aShape, outShape);
  const sb = broadcastStrides(bShape, outShape);
  const cnt = new Int32Array(nd);
  let oc = 0,
    oa = 0,
    ob = 0;
  for (let i = 0; i < n; i++) {
    out[i] = c[oc] !== 0 ? a[oa] : b[ob];
    for (let d = nd - 1; d >= 0; d--) {
      cnt[d]++;
      oc += sc[d];
      oa += sa[d];
      ob += sb[d];
      if (cnt[d] < outShape[d]) break;
      oc -= sc[d] * outShape[d];
      oa -= sa[d] * outShape[d];
      ob -= sb[d] * outShape[d];
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
    const hi = r * 2 * d,
      oi = r * d;
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
    const hi = r * 2 * d,
      gi = r * d;
    for (let j = 0; j < d; j++) {
      const x = h[hi + d + j]!,
        gv = g[gi + j]!;
      const Phi = 0.5 * (1 + erf(x * Math.SQRT1_2));
      dh[hi + j] = gv * x * Phi;
      dh[hi + d + j] = gv * h[hi + j]! * (Phi + x * Math.exp(-0.5 * x * x) * 0.3989422804014327);
    }
  }
  return dh;
}
