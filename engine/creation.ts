// tensor creation: from data, constants, ranges, seeded random, and ndarray interop
import type ndarray from "ndarray";
import type { DType, TypedArray } from "./dtype.ts";
import { allocArray, checkDType, floatOf, isHalf } from "./dtype.ts";
import { ShapeError } from "./errors.ts";
import type { Generator } from "./random.ts";
import { defaultGenerator } from "./random.ts";
import { checkShape, sizeOf, stridesOf } from "./shape.ts";
import { getDefaultBackend, Tensor } from "./tensor.ts";
import type { Backend } from "./backend/backend.ts";
import { getBackend } from "./backend/registry.ts";

export interface CreateOptions {
  /** float32 (default), float64, or a half dtype (made in float32, then rounded) */
  dtype?: DType;
  requiresGrad?: boolean;
  /** where the tensor lives: a backend or its registered name (default: the default backend) */
  backend?: Backend | string;
}

function backendOf(opts: CreateOptions): Backend {
  const b = opts.backend;
  return b === undefined ? getDefaultBackend() : typeof b === "string" ? getBackend(b) : b;
}
export interface RandomOptions extends CreateOptions {
  generator?: Generator;
}

function make(data: TypedArray, shape: readonly number[], opts: CreateOptions): Tensor {
  checkShape("tensor", shape);
  const b = backendOf(opts);
  const dtype = opts.dtype ?? "float32";
  const t = new Tensor(b.fromHost(data), shape, floatOf(dtype), b);
  if (isHalf(dtype)) t.to_(dtype);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

type Nested = number | readonly Nested[];

/** A tensor from a (nested) array or typed array; `shape` defaults to the nesting. */
export function tensor(data: Nested | ArrayLike<number>, shape?: readonly number[], opts: CreateOptions = {}): Tensor {
  const dtype = checkDType(opts.dtype ?? (data instanceof Float64Array ? "float64" : "float32"), "tensor");
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (typeof data === "number") {
    flat = [data];
    inferred = [];
  } else if (ArrayBuffer.isView(data)) {
    flat = data as ArrayLike<number>;
    inferred = [flat.length];
  } else {
    inferred = [];
    let cur: unknown = data;
    while (Array.isArray(cur)) {
      inferred.push(cur.length);
      cur = cur[0];
    }
    flat = (data as readonly Nested[]).flat(Infinity as 1) as number[];
    if (flat.length !== sizeOf(inferred))
      throw new ShapeError(
        `tensor: ragged nested array (expected ${sizeOf(inferred)} elements for [${inferred}], got ${flat.length})`,
      );
  }
  const s = shape ?? inferred;
  if (sizeOf(s) !== flat.length) throw new ShapeError(`tensor: ${flat.length} values do not fill shape [${s}]`);
  const arr = allocArray(floatOf(dtype), flat.length);
  arr.set(flat as ArrayLike<number>);
  return make(arr, s, { ...opts, dtype });
}

export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  checkShape("zeros", shape);
  const b = backendOf(opts),
    dtype = opts.dtype ?? "float32";
  const t = new Tensor(b.zeros(floatOf(dtype), sizeOf(shape)), shape, floatOf(dtype), b);
  if (isHalf(dtype)) t.to_(dtype);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}
export function ones(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return full(shape, 1, opts);
}
export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  checkShape("full", shape);
  return make(allocArray(floatOf(opts.dtype), sizeOf(shape)).fill(value), shape, opts);
}
export function zerosLike(t: Tensor): Tensor {
  return zeros(t.shape, { dtype: t.dtype, backend: t.backend });
}
export function onesLike(t: Tensor): Tensor {
  return ones(t.shape, { dtype: t.dtype, backend: t.backend });
}

/** [start, start+step, ...) below `end` (as numpy.arange). */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  const [a, b] = end === undefined ? [0, start] : [start, end];
  if (step === 0) throw new ShapeError("arange: step must not be 0");
  const n = Math.max(0, Math.ceil((b - a) / step));
  const arr = allocArray(floatOf(opts.dtype), n);
  for (let i = 0; i < n; i++) arr[i] = a + i * step;
  return make(arr, [n], opts);
}

/** `num` evenly spaced values from start to end inclusive. */
export function linspace(start: number, end: number, num: number, opts: CreateOptions = {}): Tensor {
  const arr = allocArray(floatOf(opts.dtype), num);
  const step = num > 1 ? (end - start) / (num - 1) : 0;
  for (let i = 0; i < num; i++) arr[i] = i === num - 1 && num > 1 ? end : start + i * step;
  return make(arr, [num], opts);
}

/** Uniform in [0, 1) from a seeded generator. */
export function rand(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const arr = allocArray(floatOf(opts.dtype), sizeOf(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = g.random();
  return make(arr, shape, opts);
}
/** Uniform in [lo, hi). */
export function uniform(shape: readonly number[], lo: number, hi: number, opts: RandomOptions = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const arr = allocArray(floatOf(opts.dtype), sizeOf(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = g.uniform(lo, hi);
  return make(arr, shape, opts);
}
/** Standard normal from a seeded generator. */
export function randn(shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const arr = allocArray(floatOf(opts.dtype), sizeOf(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = g.normal();
  return make(arr, shape, opts);
}
/** Integers uniform in [lo, hi), stored as floats. */
export function randint(lo: number, hi: number, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const arr = allocArray(floatOf(opts.dtype), sizeOf(shape));
  for (let i = 0; i < arr.length; i++) arr[i] = g.randint(lo, hi);
  return make(arr, shape, opts);
}

/** A tensor copied from an ndarray (any strides and offset). */
export function fromNdarray(a: ndarray.NdArray, opts: CreateOptions = {}): Tensor {
  const shape = a.shape.slice();
  const dtype = opts.dtype ?? (a.data instanceof Float64Array ? "float64" : "float32");
  const out = allocArray(floatOf(dtype), sizeOf(shape));
  const n = shape.length;
  const idx = new Array<number>(n).fill(0);
  for (let i = 0; i < out.length; i++) {
    let off = a.offset;
    for (let d = 0; d < n; d++) off += idx[d] * a.stride[d];
    out[i] = (a.data as ArrayLike<number>)[off];
    for (let d = n - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return make(out, shape, { ...opts, dtype });
}

/** An ndarray over a host copy of the tensor's elements. */
export function toNdarray(
  t: Tensor,
  ctor: (data: TypedArray, shape: number[], stride: number[], offset: number) => ndarray.NdArray,
): ndarray.NdArray {
  const data = t.data.slice() as TypedArray;
  return ctor(data, [...t.shape], stridesOf(t.shape), 0);
}
