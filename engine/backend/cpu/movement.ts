// data-movement cpu kernels: strided copies for permute, expand, slice, pad, concat; gather and index-add
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import { sizeOf, stridesOf } from "../../shape.ts";
import { broadcastStrides, coalesce } from "./elementwise.ts";

function like(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n);
}

/** An output the kernel writes in full (no zero-fill needed). */
function full(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n, true);
}

/** dst[dOff + sum i_d*ds_d] = src[sOff + sum i_d*ss_d] over `shape`, innermost dimension as a tight loop. */
export function copyStrided(
  src: TypedArray,
  sOff: number,
  ss: number[],
  dst: TypedArray,
  dOff: number,
  ds: number[],
  shape: Shape,
): void {
  if (sizeOf(shape) === 0) return;
  const c = coalesce(shape, [ss, ds]);
  const sh = c.shape,
    s1 = c.strides[0],
    s2 = c.strides[1];
  const nd = sh.length,
    inner = sh[nd - 1],
    is = s1[nd - 1],
    id = s2[nd - 1];
  let outer = 1;
  for (let d = 0; d < nd - 1; d++) outer *= sh[d];
  const cnt = new Int32Array(nd);
  let os = sOff,
    od = dOff;
  for (let r = 0; r < outer; r++) {
    if (is === 1 && id === 1) {
      if (inner > 64) dst.set(src.subarray(os, os + inner), od);
      else for (let j = 0; j < inner; j++) dst[od + j] = src[os + j];
    } else {
      for (let j = 0; j < inner; j++) dst[od + j * id] = src[os + j * is];
    }
    for (let d = nd - 2; d >= 0; d--) {
      cnt[d]++;
      os += s1[d];
      od += s2[d];
      if (cnt[d] < sh[d]) break;
      os -= s1[d] * sh[d];
      od -= s2[d] * sh[d];
      cnt[d] = 0;
    }
  }
}

export function permute(x: TypedArray, shape: Shape, perm: readonly number[]): TypedArray {
  const out = full(x, x.length);
  const st = stridesOf(shape);
  const outShape = perm.map((p) => shape[p]);
  copyStrided(
    x,
    0,
    perm.map((p) => st[p]),
    out,
    0,
    stridesOf(outShape),
    outShape,
  );
  return out;
}

export function expand(x: TypedArray, shape: Shape, outShape: Shape): TypedArray {
  const out = full(x, sizeOf(outShape));
  if (x.length === 1) {
    // a scalar broadcast (the gradient of a sum, a constant): one fill
    out.fill(x[0] as never);
    return out;
  }
  copyStrided(x, 0, broadcastStrides(shape, outShape), out, 0, stridesOf(outShape), outShape);
  return out;
}

export function slice(
  x: TypedArray,
  shape: Shape,
  begin: readonly number[],
  end: readonly number[],
  step: readonly number[],
): TypedArray {
  const st = stridesOf(shape);
  const outShape = begin.map((b, d) => Math.max(0, Math.ceil((end[d] - b) / step[d])));
  const out = full(x, sizeOf(outShape));
  let off = 0;
  for (let d = 0; d < shape.length; d++) off += begin[d] * st[d];
  copyStrided(
    x,
    off,
    st.map((s, d) => s * step[d]),
    out,
    0,
    stridesOf(outShape),
    outShape,
  );
  return out;
}

export function pad(
  x: TypedArray,
  shape: Shape,
  pads: readonly (readonly [number, number])[],
  value: number,
): TypedArray {
  const outShape = shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const out = like(x, sizeOf(outShape));
  if (value !== 0) out.fill(value);
  const ost = stridesOf(outShape);
  let off = 0;
  for (let d = 0; d < shape.length; d++) off += pads[d][0] * ost[d];
  copyStrided(x, 0, stridesOf(shape), out, off, ost, shape);
  return out;
}

export function concat(xs: readonly TypedArray[], shapes: readonly Shape[], axis: number): TypedArray {
  const outShape = [...shapes[0]];
  outShape[axis] = shapes.reduce((s, sh) => s + sh[axis], 0);
  const out = full(xs[0], sizeOf(outShape));
  const ost = stridesOf(outShape);
  let pos = 0;
  xs.forEach((x, i) => {
    copyStrided(x, 0, stridesOf(shapes[i]), out, pos * ost[axis], ost, shapes[i]);
    pos += shapes[i][axis];
  });
  return out;
}

function split3(shape: Shape, axis: number): [number, number, number] {
  let outer = 1,
    inner = 1;
  for (let d = 0; d < axis; d++) outer *= shape[d];
  for (let d = axis + 1; d < shape.length; d++) inner *= shape[d];
  return [outer, shape[axis], inner];
}

export function gather(x: TypedArray, shape: Shape, axis: number, index: Int32Array): TypedArray {
  const [outer, len, inner] = split3(shape, axis);
  const m = index.length;
  const out = full(x, outer * m * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      const src = (o * len + index[j]) * inner;
      const dst = (o * m + j) * inner;
      if (inner > 32) out.set(x.subarray(src, src + inner), dst);
      else for (let i = 0; i < inner; i++) out[dst + i] = x[src + i];
    }
  }
  return out;
}

export function indexAdd(shape: Shape, axis: number, index: Int32Array, src: TypedArray): TypedArray {
  const [outer, len, inner] = split3(shape, axis);
  const m = index.length;
  const out = like(src, outer * len * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      const d = (o * len + index[j]) * inner;
      const s = (o * m + j) * inner;
      for (let i = 0; i < inner; i++) out[d + i] += src[s + i];
    }
  }
  return out;
}
