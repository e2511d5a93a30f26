// Tensor: shape + contiguous storage on a backend + dtype + an optional autograd node
import type { GradNode } from "./autograd.ts";
import { runBackward } from "./autograd.ts";
import type { Backend, Storage } from "./backend/backend.ts";
import { getBackend } from "./backend/registry.ts";
import type { DType, TypedArray } from "./dtype.ts";
import { floatOf, isHalf } from "./dtype.ts";
import { ConfigError, DTypeError, ShapeError } from "./errors.ts";
import type { Shape } from "./shape.ts";
import { sizeOf } from "./shape.ts";
import * as E from "./ops/elementwise.ts";
import * as R from "./ops/reduce.ts";
import * as M from "./ops/movement.ts";
import * as MM from "./ops/matmul.ts";
import * as S from "./ops/softmax.ts";

let defaultBackend: Backend | null = null;

/** The backend new tensors are created on: {@link setDefaultBackend}'s, else CDIFF_BACKEND's, else "cpu". */
export function getDefaultBackend(): Backend {
  if (!defaultBackend) {
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CDIFF_BACKEND;
    defaultBackend = getBackend(env || "cpu");
  }
  return defaultBackend;
}
/** Sets the backend new tensors are created on, by object or by registered name ("cpu", ...). */
export function setDefaultBackend(b: Backend | string): void {
  defaultBackend = typeof b === "string" ? getBackend(b) : b;
}

export type TensorLike = Tensor | number;

/** Storage of `dtype` on `backend` holding `src` (half dtypes round to nearest even). */
function upload(backend: Backend, src: ArrayLike<number>, dtype: DType): Storage {
  if (dtype === "float64") return backend.fromHost(Float64Array.from(src));
  const s = backend.fromHost(Float32Array.from(src));
  return isHalf(dtype) ? backend.cast(s, "float32", dtype) : s;
}

/** An n-dimensional array with reverse-mode autograd. Storage is contiguous and row-major. */
export class Tensor {
  readonly shape: Shape;
  readonly dtype: DType;
  readonly backend: Backend;
  private store: Storage;
  /** Whether gradients flow to (or through) this tensor. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after `backward()`; never mutated in place. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while a graph is recorded. */
  gradNode: GradNode | null = null;

  constructor(storage: Storage, shape: Shape, dtype: DType, backend: Backend = getDefaultBackend()) {
    this.store = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.backend = backend;
  }

  /** The backend's handle of the elements; only the backend reads it, and only the engine replaces it. */
  get storage(): Storage {
    if (isHalf(this.dtype)) {
      throw new DTypeError(
        `a ${this.dtype} tensor of shape [${this.shape}] holds frozen weights: only linear, matmul (right operand) and conv2d (weight) read it; convert with .to("float32") for other uses`,
      );
    }
    return this.store;
  }
  /** @internal The storage whatever the dtype: casts and the ops that widen half weights read it here. */
  get rawStorage(): Storage {
    return this.store;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get size(): number {
    return sizeOf(this.shape);
  }
  /** Host array of the elements (the cpu backend returns its storage itself: treat it as read-only). */
  get data(): TypedArray {
    // a half tensor's values come back widened to float32 (exactly)
    return this.backend.toHost(isHalf(this.dtype) ? this.backend.cast(this.store, this.dtype, "float32") : this.store);
  }
  /** The elements as a plain array. */
  toArray(): number[] {
    return Array.from(this.data);
  }
  /** The single element of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new ShapeError(`item: tensor must have one element, got shape [${this.shape}]`);
    return this.data[0];
  }
  /** Marks a leaf as requiring grad (in place); returns this. */
  requiresGrad_(flag = true): this {
    if (flag && isHalf(this.dtype))
      throw new DTypeError(
        `requiresGrad_: a ${this.dtype} tensor of shape [${this.shape}] holds frozen weights; convert it with .to_("float32") to train it`,
      );
    this.requiresGrad = flag;
    return this;
  }
  /** Same storage, cut from the graph. */
  detach(): Tensor {
    return new Tensor(this.store, this.shape, this.dtype, this.backend);
  }
  /** A copy with its own storage (no graph). */
  clone(): Tensor {
    if (isHalf(this.dtype))
      return new Tensor(this.backend.cast(this.store, this.dtype, this.dtype), this.shape, this.dtype, this.backend);
    return M.contiguousCopy(this);
  }
  /**
   * Copies `src` (a tensor of the same shape, on any backend and of any dtype, or host values in
   * row-major order) into this tensor, converted to its dtype; returns this. For leaves and plain
   * tensors only (an op's output in a recorded graph would silently change its gradient). No graph.
   */
  copy_(src: Tensor | ArrayLike<number>): this {
    this.checkWritable("copy_");
    if (src instanceof Tensor) {
      if (src.shape.join() !== this.shape.join())
        throw new ShapeError(`copy_: source shape [${src.shape}] differs from [${this.shape}]`);
      this.store =
        src.backend === this.backend
          ? this.backend.cast(src.rawStorage, src.dtype, this.dtype)
          : upload(this.backend, src.data, this.dtype);
    } else {
      if (src.length !== this.size)
        throw new ShapeError(
          `copy_: ${src.length} values for a tensor of shape [${this.shape}] (${this.size} elements)`,
        );
      this.store = upload(this.backend, src, this.dtype);
    }
    return this;
  }
  /** Converts this tensor's elements to `dtype` in place (e.g. a module's parameters to float64); returns this. */
  to_(dtype: DType): this {
    this.checkWritable("to_");
    if (dtype === this.dtype) return this;
    if (isHalf(dtype) && this.requiresGrad)
      throw new DTypeError(
        `to_: a tensor of shape [${this.shape}] that requires grad cannot become ${dtype} (half dtypes hold frozen weights)`,
      );
    this.store = this.backend.cast(this.store, this.dtype, dtype);
    (this as { dtype: DType }).dtype = dtype;
    return this;
  }
  /** @internal Swaps in storage a backend kernel returned for this tensor (in-place updates of the engine). */
  replaceStorage_(s: Storage): void {
    this.store = s;
  }
  private checkWritable(op: string): void {
    if (this.gradNode)
      throw new ConfigError(
        `${op}: tensor of shape [${this.shape}] is the output of "${this.gradNode.op}" in a recorded graph; write into leaves only (detach() first)`,
      );
  }
  zeroGrad(): void {
    this.grad = null;
  }
  /** Back-propagates from this tensor (a scalar unless `grad` is given). */
  backward(grad?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    if (!this.requiresGrad)
      throw new ShapeError("backward: tensor does not require grad (no input on its path requires grad)");
    let g = grad;
    if (!g) {
      if (this.size !== 1)
        throw new ShapeError(`backward: implicit gradient needs a scalar, got shape [${this.shape}]; pass a gradient`);
      g = new Tensor(this.backend.fill(floatOf(this.dtype), 1, 1), this.shape, this.dtype, this.backend);
    } else if (g.shape.join() !== this.shape.join()) {
      throw new ShapeError(`backward: gradient shape [${g.shape}] differs from tensor shape [${this.shape}]`);
    }
    runBackward(this, g, E.add, opts.retainGraph ?? false);
  }
  toString(): string {
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}${this.requiresGrad ? ", requiresGrad" : ""})`;
  }

  // elementwise
  add(o: TensorLike): Tensor {
    return E.add(this, o);
  }
  sub(o: TensorLike): Tensor {
    return E.sub(this, o);
  }
  mul(o: TensorLike): Tensor {
    return E.mul(this, o);
  }
  div(o: TensorLike): Tensor {
    return E.div(this, o);
  }
  pow(o: TensorLike): Tensor {
    return E.pow(this, o);
  }
  maximum(o: TensorLike): Tensor {
    return E.maximum(this, o);
  }
  minimum(o: TensorLike): Tensor {
    return E.minimum(this, o);
  }
  lt(o: TensorLike): Tensor {
    return E.lt(this, o);
  }
  le(o: TensorLike): Tensor {
    return E.le(this, o);
  }
  gt(o: TensorLike): Tensor {
    return E.gt(this, o);
  }
  ge(o: TensorLike): Tensor {
    return E.ge(this, o);
  }
  eq(o: TensorLike): Tensor {
    return E.eq(this, o);
  }
  ne(o: TensorLike): Tensor {
    return E.ne(this, o);
  }
  neg(): Tensor {
    return E.neg(this);
  }
  exp(): Tensor {
    return E.exp(this);
  }
  log(): Tensor {
    return E.log(this);
  }
  sqrt(): Tensor {
    return E.sqrt(this);
  }
  rsqrt(): Tensor {
    return E.rsqrt(this);
  }
  abs(): Tensor {
    return E.abs(this);
  }
  sign(): Tensor {
    return E.sign(this);
  }
  square(): Tensor {
    return E.square(this);
  }
  tanh(): Tensor {
    return E.tanh(this);
  }
  sigmoid(): Tensor {
    return E.sigmoid(this);
  }
  relu(): Tensor {
    return E.relu(this);
  }
  silu(): Tensor {
    return E.silu(this);
  }
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return approximate === "tanh" ? E.geluTanh(this) : E.gelu(this);
  }
  sin(): Tensor {
    return E.sin(this);
  }
  cos(): Tensor {
    return E.cos(this);
  }
  clamp(lo?: number, hi?: number): Tensor {
    return E.clamp(this, lo, hi);
  }
  // reductions
  sum(axes?: number | readonly number[], keepdim = false): Tensor {
    return R.sum(this, axes, keepdim);
  }
  mean(axes?: number | readonly number[], keepdim = false): Tensor {
    return R.mean(this, axes, keepdim);
  }
  max(axes?: number | readonly number[], keepdim = false): Tensor {
    return R.max(this, axes, keepdim);
  }
  min(axes?: number | readonly number[], keepdim = false): Tensor {
    return R.min(this, axes, keepdim);
  }
  var(axes?: number | readonly number[], keepdim = false, correction = 1): Tensor {
    return R.variance(this, axes, keepdim, correction);
  }
  // movement
  reshape(shape: readonly number[]): Tensor {
    return M.reshape(this, shape);
  }
  view(...shape: number[]): Tensor {
    return M.reshape(this, shape);
  }
  flatten(start = 0, end = -1): Tensor {
    return M.flatten(this, start, end);
  }
  permute(...perm: number[]): Tensor {
    return M.permute(this, perm);
  }
  transpose(a = -2, b = -1): Tensor {
    return M.transpose(this, a, b);
  }
  get T(): Tensor {
    return M.transpose(this, -2, -1);
  }
  expand(shape: readonly number[]): Tensor {
    return M.expand(this, shape);
  }
  squeeze(axis?: number): Tensor {
    return M.squeeze(this, axis);
  }
  unsqueeze(axis: number): Tensor {
    return M.unsqueeze(this, axis);
  }
  slice(axis: number, start: number, end?: number, step = 1): Tensor {
    return M.narrowSlice(this, axis, start, end, step);
  }
  chunk(n: number, axis = 0): Tensor[] {
    return M.chunk(this, n, axis);
  }
  split(sizes: number | readonly number[], axis = 0): Tensor[] {
    return M.split(this, sizes, axis);
  }
  pad(pads: readonly (readonly [number, number])[], value = 0): Tensor {
    return M.pad(this, pads, value);
  }
  indexSelect(axis: number, index: ArrayLike<number> | Tensor): Tensor {
    return M.indexSelect(this, axis, index);
  }
  // linear algebra and nn
  matmul(o: Tensor): Tensor {
    return MM.matmul(this, o);
  }
  softmax(axis = -1): Tensor {
    return S.softmax(this, axis);
  }
  logSoftmax(axis = -1): Tensor {
    return S.logSoftmax(this, axis);
  }
  /** Converts to another dtype (differentiable). */
  to(dtype: DType): Tensor {
    return E.cast(this, dtype);
  }
  float(): Tensor {
    return E.cast(this, "float32");
  }
  double(): Tensor {
    return E.cast(this, "float64");
  }
}
