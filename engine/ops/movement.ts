// shape and data movement: reshape (free), permute, expand, slice, pad, concat, index select/add
import { record } from "../autograd.ts";
import { ShapeError } from "../errors.ts";
import type { Shape } from "../shape.ts";
import { broadcastShapes, checkShape, normAxis, shapesEqual, sizeOf } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { sumTo } from "./reduce.ts";
import { out } from "./util.ts";

/** Same elements, new shape (one dimension may be -1); shares storage (half tensors too: no element is read). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const infer = s.indexOf(-1);
  if (infer >= 0) {
    const rest = s.reduce((p, d, i) => (i === infer ? p : p * d), 1);
    s[infer] = rest === 0 ? 0 : x.size / rest;
  }
  checkShape("reshape", s);
  if (sizeOf(s) !== x.size)
    throw new ShapeError(`reshape: cannot reshape [${x.shape}] (${x.size} elements) to [${shape}]`);
  if (shapesEqual(s, x.shape)) return x;
  const y = new Tensor(x.rawStorage, s, x.dtype, x.backend);
  return record(y, "reshape", [x], (g) => [reshape(g, x.shape)]);
}

/** Reorders axes (copies). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.ndim || new Set(perm.map((p) => normAxis("permute", p, x.ndim))).size !== x.ndim) {
    throw new ShapeError(`permute: [${perm}] is not a permutation of the ${x.ndim} axes of [${x.shape}]`);
  }
  const p = perm.map((a) => normAxis("permute", a, x.ndim));
  if (p.every((a, i) => a === i)) return x;
  const shape = p.map((a) => x.shape[a]);
  const y = out(x, x.backend.permute(x.storage, x.shape, p), shape);
  const inv = new Array<number>(p.length);
  p.forEach((a, i) => (inv[a] = i));
  return record(y, "permute", [x], (g) => [permute(g, inv)]);
}

/** Swaps two axes. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const p = Array.from({ length: x.ndim }, (_, i) => i);
  const i = normAxis("transpose", a, x.ndim),
    j = normAxis("transpose", b, x.ndim);
  [p[i], p[j]] = [p[j], p[i]];
  return permute(x, p);
}

/** Broadcasts to `shape` (copies); -1 keeps a dimension. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.ndim;
  const s = shape.map((d, i) => (d === -1 ? x.shape[i - lead] : d));
  if (lead < 0 || !shapesEqual(broadcastShapes("expand", x.shape, s), s)) {
    throw new ShapeError(`expand: cannot expand [${x.shape}] to [${shape}]`);
  }
  if (shapesEqual(s, x.shape)) return x;
  const y = out(x, x.backend.expand(x.storage, x.shape, s), s);
  return record(y, "expand", [x], (g) => [sumTo(g, x.shape)]);
}

/** Removes size-1 axes (one, or all). */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined)
    return reshape(
      x,
      x.shape.filter((d) => d !== 1),
    );
  const a = normAxis("squeeze", axis, x.ndim);
  if (x.shape[a] !== 1) return x;
  return reshape(
    x,
    x.shape.filter((_, i) => i !== a),
  );
}

/** Inserts a size-1 axis. */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normAxis("unsqueeze", axis, x.ndim + 1);
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return reshape(x, s);
}

/** Flattens axes start..end into one. */
export function flatten(x: Tensor, start = 0, end = -1): Tensor {
  if (x.ndim === 0) return reshape(x, [1]);
  const s = normAxis("flatten", start, x.ndim),
    e = normAxis("flatten", end, x.ndim);
  const mid = x.shape.slice(s, e + 1).reduce((p, d) => p * d, 1);
  return reshape(x, [...x.shape.slice(0, s), mid, ...x.shape.slice(e + 1)]);
}

/** Sub-tensor x[begin:end:step] per axis (copies). Negative begin/end count from the end. */
export function slice(x: Tensor, begin: readonly number[], end: readonly number[], step?: readonly number[]): Tensor {
  if (begin.length !== x.ndim || end.length !== x.ndim)
    throw new ShapeError(`slice: need ${x.ndim} begin/end values for shape [${x.shape}], got [${begin}] and [${end}]`);
  const st = step ?? x.shape.map(() => 1);
  const b = begin.map((v, d) => clampIndex(v, x.shape[d]));
  const e = end.map((v, d) => Math.max(b[d], clampIndex(v, x.shape[d])));
  if (st.some((v) => !Number.isInteger(v) || v < 1))
    throw new ShapeError(`slice: steps must be positive integers, got [${st}]`);
  const shape = b.map((v, d) => Math.ceil((e[d] - v) / st[d]));
  if (shapesEqual(shape, x.shape)) return x;
  const y = out(x, x.backend.slice(x.storage, x.shape, b, e, st), shape);
  return record(y, "slice", [x], (g) => {
    if (st.every((v) => v === 1))
      return [
        pad(
          g,
          b.map((v, d) => [v, x.shape[d] - e[d]] as const),
        ),
      ];
    // strided: scatter one axis at a time
    let r = g;
    for (let d = 0; d < x.ndim; d++) {
      if (r.shape[d] === x.shape[d]) continue;
      const idx = Int32Array.from({ length: r.shape[d] }, (_, k) => b[d] + k * st[d]);
      const s = [...r.shape];
      s[d] = x.shape[d];
      r = out(r, r.backend.indexAdd(s, d, idx, r.storage), s);
    }
    return [r];
  });
}

function clampIndex(v: number, n: number): number {
  const i = v < 0 ? v + n : v;
  return Math.min(Math.max(i, 0), n);
}

/** x sliced along one axis: [start, end) with a step. */
export function narrowSlice(x: Tensor, axis: number, start: number, end?: number, step = 1): Tensor {
  const a = normAxis("slice", axis, x.ndim);
  const b = x.shape.map(() => 0),
    e = [...x.shape],
    s = x.shape.map(() => 1);
  b[a] = start;
  e[a] = end ?? x.shape[a];
  s[a] = step;
  return slice(x, b, e, s);
}

/** Pads each axis with [before, after] elements of `value` (non-negative pads). */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  if (pads.length !== x.ndim)
    throw new ShapeError(`pad: need ${x.ndim} [before, after] pairs for shape [${x.shape}], got ${pads.length}`);
  if (pads.some(([l, r]) => !Number.isInteger(l) || !Number.isInteger(r) || l < 0 || r < 0)) {
    throw new ShapeError(`pad: pads must be non-negative integers, got ${JSON.stringify(pads)}`);
  }
  if (pads.every(([l, r]) => l === 0 && r === 0)) return x;
  const shape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const y = out(x, x.backend.pad(x.storage, x.shape, pads, value), shape);
  return record(y, "pad", [x], (g) => [
    slice(
      g,
      pads.map(([l]) => l),
      pads.map(([l], i) => l + x.shape[i]),
    ),
  ]);
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError("concat: needs at least one tensor");
  const a = normAxis("concat", axis, xs[0].ndim);
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new ShapeError(`concat: shapes ${xs.map((u) => `[${u.shape}]`).join(", ")} differ outside axis ${axis}`);
    }
    if (t.dtype !== xs[0].dtype) throw new ShapeError(`concat: dtypes differ (${t.dtype} and ${xs[0].dtype})`);
  }
  if (xs.length === 1) return xs[0];
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((s, t) => s + t.shape[a], 0);
  const y = out(
    xs[0],
    xs[0].backend.concat(
      xs.map((t) => t.storage),
      xs.map((t) => t.shape),
      a,
    ),
    shape,
  );
  return record(y, "concat", xs, (g) => {
    let pos = 0;
    return xs.map((t) => {
      const r = t.requiresGrad ? narrowSlice(g, a, pos, pos + t.shape[a]) : null;
      pos += t.shape[a];
      return r;
    });
  });
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError("stack: needs at least one tensor");
  const a = normAxis("stack", axis, xs[0].ndim + 1);
  return concat(
    xs.map((t) => unsqueeze(t, a)),
    a,
  );
}

/** Splits along an axis into pieces of the given size(s). */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const a = normAxis("split", axis, x.ndim);
  const n = x.shape[a];
  const list =
    typeof sizes === "number"
      ? Array.from({ length: Math.ceil(n / sizes) }, (_, i) => Math.min(sizes, n - i * sizes))
      : [...sizes];
  if (list.reduce((p, v) => p + v, 0) !== n)
    throw new ShapeError(`split: sizes [${list}] do not add up to ${n} (axis ${axis} of [${x.shape}])`);
  let pos = 0;
  return list.map((s) => {
    const r = narrowSlice(x, a, pos, pos + s);
    pos += s;
    return r;
  });
}

/** Splits into `n` nearly equal chunks along an axis (as torch.chunk). */
export function chunk(x: Tensor, n: number, axis = 0): Tensor[] {
  const a = normAxis("chunk", axis, x.ndim);
  return split(x, Math.ceil(x.shape[a] / n), a);
}

/** Checks indices against a bound and returns them as Int32Array. */
export function toIndex(op: string, index: ArrayLike<number> | Tensor, bound: number): Int32Array {
  const src = index instanceof Tensor ? index.data : index;
  const idx = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i];
    if (!Number.isInteger(v) || v < 0 || v >= bound)
      throw new ShapeError(`${op}: index ${v} at position ${i} is out of range [0, ${bound})`);
    idx[i] = v;
  }
  return idx;
}

/** Selects entries along an axis by index (embedding lookup on axis 0); the result has index.length there. */
export function indexSelect(x: Tensor, axis: number, index: ArrayLike<number> | Tensor): Tensor {
  const a = normAxis("indexSelect", axis, x.ndim);
  const idx = toIndex("indexSelect", index, x.shape[a]);
  const shape = [...x.shape];
  shape[a] = idx.length;
  const y = out(x, x.backend.gather(x.storage, x.shape, a, idx), shape);
  return record(y, "indexSelect", [x], (g) => [indexAdd(x.shape, a, idx, g)]);
}

/** zeros(shape) with `src` rows added at `index` along `axis` (the adjoint of indexSelect). */
export function indexAdd(shape: Shape, axis: number, index: ArrayLike<number> | Tensor, src: Tensor): Tensor {
  const a = normAxis("indexAdd", axis, shape.length);
  const idx = toIndex("indexAdd", index, shape[a]);
  const expect = [...shape];
  expect[a] = idx.length;
  if (!shapesEqual(expect, src.shape)) throw new ShapeError(`indexAdd: src shape [${src.shape}] should be [${expect}]`);
  const y = out(src, src.backend.indexAdd(shape, a, idx, src.storage), shape);
  return record(y, "indexAdd", [src], (g) => [out(g, g.backend.gather(g.storage, g.shape, a, idx), src.shape)]);
}

/** A copy with fresh storage, in the graph as identity. */
export function contiguousCopy(x: Tensor): Tensor {
  const y = out(
    x,
    x.backend.slice(
      x.storage,
      x.shape,
      x.shape.map(() => 0),
      x.shape,
      x.shape.map(() => 1),
    ),
    x.shape,
  );
  return record(y, "clone", [x], (g) => [g]);
}
