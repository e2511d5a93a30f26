// reduction and softmax cpu kernels over (outer, axis, inner) views
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import type { ReduceOp } from "../backend.ts";

// reductions and softmax write every output element
function like(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n, true);
}

function reduceAxis(op: ReduceOp, x: TypedArray, outer: number, len: number, inner: number): TypedArray {
  const out = like(x, outer * inner);
  let acc = new Float64Array(0);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    if (inner === 1) {
      if (op === "sum") {
        // four partial sums break the add dependency chain
        let s0 = 0,
          s1 = 0,
          s2 = 0,
          s3 = 0,
          j = 0;
        for (; j + 3 < len; j += 4) {
          s0 += x[base + j];
          s1 += x[base + j + 1];
          s2 += x[base + j + 2];
          s3 += x[base + j + 3];
        }
        for (; j < len; j++) s0 += x[base + j];
        out[o] = s0 + s1 + (s2 + s3);
      } else {
        let m = op === "max" ? -Infinity : Infinity;
        for (let j = 0; j < len; j++) {
          const v = x[base + j];
          // NaN propagates, as in torch: a NaN value is taken, and a NaN result stays
          if ((op === "max" ? !(v <= m) : !(v >= m)) && m === m) m = v;
        }
        out[o] = m;
      }
      continue;
    }
    if (acc.length !== inner) acc = new Float64Array(inner);
    if (op === "sum") {
      acc.fill(0);
      for (let j = 0; j < len; j++) {
        const row = base + j * inner;
        for (let i = 0; i < inner; i++) acc[i] += x[row + i];
      }
    } else {
      acc.fill(op === "max" ? -Infinity : Infinity);
      for (let j = 0; j < len; j++) {
        const row = base + j * inner;
        for (let i = 0; i < inner; i++) {
          const v = x[row + i];
          const m = acc[i];
          if ((op === "max" ? !(v <= m) : !(v >= m)) && m === m) acc[i] = v;
        }
      }
    }
    out.set(acc, o * inner);
  }
  return out;
}

/** Reduces sorted unique `axes`, one run of adjacent axes at a time. */
export function reduce(op: ReduceOp, x: TypedArray, shape: Shape, axes: readonly number[]): TypedArray {
  let cur = x;
  const sh = [...shape];
  let i = axes.length - 1;
  if (axes.length === 0) return cur.slice() as TypedArray;
  while (i >= 0) {
    let j = i;
    while (j > 0 && axes[j - 1] === axes[j] - 1) j--;
    const first = axes[j],
      last = axes[i];
    let outer = 1,
      len = 1,
      inner = 1;
    for (let d = 0; d < first; d++) outer *= sh[d];
    for (let d = first; d <= last; d++) len *= sh[d];
    for (let d = last + 1; d < sh.length; d++) inner *= sh[d];
    cur = reduceAxis(op, cur, outer, len, inner);
    for (let d = first; d <= last; d++) sh[d] = 1;
    i = j - 1;
  }
  return cur;
}

/** Numerically stable softmax (or log-softmax) along `axis`. */
export function softmax(x: TypedArray, shape: Shape, axis: number, log: boolean): TypedArray {
  let outer = 1,
    inner = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  const len = shape[axis];
  const out = like(x, x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * len * inner + i;
      let m = -Infinity;
      for (let j = 0; j < len; j++) m = Math.max(m, x[base + j * inner]);
      if (m === -Infinity) m = 0;
      let s = 0;
      for (let j = 0; j < len; j++) {
        const e = Math.exp(x[base + j * inner] - m);
        if (!log) out[base + j * inner] = e;
        s += e;
      }
      if (log) {
        const ls = Math.log(s) + m;
        for (let j = 0; j < len; j++) out[base + j * inner] = x[base + j * inner] - ls;
      } else {
        const inv = 1 / s;
        for (let j = 0; j < len; j++) out[base + j * inner] *= inv;
      }
    }
  }
  return out;
}
