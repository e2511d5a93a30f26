// the backend contract: every kernel the ops call, each with one parameter type shared by both sides;
// a backend that lacks a kernel or declares a different signature does not compile (see
// test/engine/backend_contract.test.ts and docs/architecture.md)
import type { DType, FloatDType, HalfDType, TypedArray } from "../dtype.ts";
import type { Shape } from "../shape.ts";

export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "sign"
  | "tanh"
  | "sigmoid"
  | "relu"
  | "step"
  | "silu"
  | "gelu"
  | "gelu_tanh"
  | "erf"
  | "sin"
  | "cos"
  | "square"
  | "reciprocal";
export type BinaryOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "pow"
  | "maximum"
  | "minimum"
  | "lt"
  | "le"
  | "gt"
  | "ge"
  | "eq"
  | "ne"
  // fused activation backwards: a = output gradient, b = the forward input (sigmoid_grad, tanh_grad: the output)
  | "silu_grad"
  | "gelu_grad"
  | "sigmoid_grad"
  | "tanh_grad";
export type ReduceOp = "sum" | "max" | "min";

/** Opaque storage handle; only the backend that made it reads it. */
export type Storage = object;

/**
 * A backend: storage management plus every kernel the ops call. Shapes travel with every call, so a
 * backend keeps no per-tensor metadata. Kernels return fresh contiguous storage, except the in-place
 * updates ({@link Backend.adamUpdate}), which may write into their inputs and return them.
 *
 * Storage is never written outside a backend: `Tensor.copy_`, `Tensor.to_` and the optimizers swap a
 * tensor's storage for what a kernel returned.
 *
 * Kernels are declared as function-typed properties, not methods, so that their parameters are
 * checked contravariantly: an implementation that needs a field the engine does not pass, or a
 * narrower storage type, is a compile error.
 */
export interface Backend<S extends Storage = Storage> {
  readonly name: string;

  // ---- storage
  zeros: (dtype: FloatDType, size: number) => S;
  /** Wraps or uploads host data (the cpu backend takes ownership, no copy). */
  fromHost: (data: TypedArray) => S;
  /** Host view of storage (the cpu backend returns the array itself; a device backend downloads). */
  toHost: (s: S) => TypedArray;
  fill: (dtype: FloatDType, size: number, value: number) => S;
  /**
   * A fresh copy of `x` (of dtype `from`) converted to `to` (a plain copy when the dtypes are the same).
   * Half dtypes (see {@link HalfDType}) round to nearest even; a backend may hold them in less memory
   * (the cpu backend: 16 bits) or as float32 values so rounded. No other kernel receives half storage.
   */
  cast: (x: S, from: DType, to: DType) => S;
  /**
   * Opens a scope whose allocations the autograd walk may hand back as soon as they are consumed
   * (see `runBackward`); a backend without pooling returns a scope that ignores `release`.
   */
  beginScratch: () => ScratchScope<S>;
  /**
   * Opens a tidy scope (see `tidy` in engine/tidy.ts): its `end(keep)` frees at once every storage
   * made on this backend while it was open, except `keep`. For memory the JS collector does not see
   * in time: gpujs textures are otherwise deleted only by finalizers, which never run while a
   * synchronous loop keeps the thread busy. A backend whose storage the collector reclaims (cpu
   * arrays) returns a scope that frees nothing.
   */
  beginTidy: () => TidyScope<S>;

  // ---- elementwise
  unary: (op: UnaryOp, x: S) => S;
  binary: (op: BinaryOp, a: S, aShape: Shape, b: S, bShape: Shape, outShape: Shape) => S;
  where: (c: S, cShape: Shape, a: S, aShape: Shape, b: S, bShape: Shape, outShape: Shape) => S;
  /** GEGLU of rows of 2d: first half times GELU of the second half, (rows, 2d) -> (rows, d). */
  geglu: (h: S, rows: number, d: number) => S;
  /** Gradient of {@link geglu} with respect to `h`, given the output gradient `g` (rows, d). */
  gegluBackward: (h: S, g: S, rows: number, d: number) => S;

  // ---- reductions
  /** Reduces `axes` (sorted, unique); the result has those axes kept with size 1. */
  reduce: (op: ReduceOp, x: S, shape: Shape, axes: readonly number[]) => S;
  softmax: (x: S, shape: Shape, axis: number, log: boolean) => S;

  // ---- movement
  permute: (x: S, shape: Shape, perm: readonly number[]) => S;
  expand: (x: S, shape: Shape, outShape: Shape) => S;
  slice: (x: S, shape: Shape, begin: readonly number[], end: readonly number[], step: readonly number[]) => S;
  pad: (x: S, shape: Shape, pads: readonly (readonly [number, number])[], value: number) => S;
  concat: (xs: readonly S[], shapes: readonly Shape[], axis: number) => S;
  /** out[o, j, i] = x[o, index[j], i] with x viewed as (outer, shape[axis], inner). */
  gather: (x: S, shape: Shape, axis: number, index: Int32Array) => S;
  /** zeros(shape) then out[o, index[j], i] += src[o, j, i]. */
  indexAdd: (shape: Shape, axis: number, index: Int32Array, src: S) => S;

  // ---- linear algebra and convolution
  /** batched (M x K) @ (K x N) with optional transposes; a batch stride of 0 broadcasts one operand. */
  matmul: (a: S, b: S, p: MatmulParams) => S;
  conv2d: (x: S, xShape: Shape, w: S, wShape: Shape, p: Conv2dParams) => S;
  conv2dBackwardInput: (gy: S, gyShape: Shape, w: S, wShape: Shape, xShape: Shape, p: Conv2dParams) => S;
  conv2dBackwardWeight: (x: S, xShape: Shape, gy: S, gyShape: Shape, wShape: Shape, p: Conv2dParams) => S;
  /** nearest-neighbour upsampling of (N, C, H, W) by an integer factor. */
  upsampleNearest: (x: S, shape: Shape, scale: number) => S;
  /** sum over non-overlapping k x k windows of (N, C, H, W), times `mul` (1/k^2 gives average pooling). */
  poolSum: (x: S, shape: Shape, k: number, mul: number) => S;

  // ---- fused primitives
  /** softmax(scale q k^T + mask) v per batch item, with the row log-sum-exp; see {@link AttentionParams}. */
  attention: (q: S, k: S, v: S, mask: S | null, p: AttentionParams) => AttentionForward<S>;
  /** Gradients of {@link attention} from its output, row log-sum-exp, output gradient and what it saved. */
  attentionBackward: (
    q: S,
    k: S,
    v: S,
    mask: S | null,
    o: S,
    lse: S,
    gO: S,
    p: AttentionParams,
    saved: SavedState | null,
  ) => AttentionGrads<S>;
  /** Group norm of (n, c, s), optionally followed by silu; also returns mean and 1/std per (sample, group). */
  groupNorm: (x: S, weight: S | null, bias: S | null, p: GroupNormParams) => NormForward<S>;
  /** Gradients of the group norm (without the silu) given the output gradient and the saved statistics. */
  groupNormBackward: (
    x: S,
    weight: S | null,
    gy: S,
    mean: S,
    rstd: S,
    p: GroupNormParams,
    affine: boolean,
  ) => NormGrads<S>;
  /** Layer norm of (rows, d) rows; also returns mean and 1/std per row. */
  layerNorm: (x: S, weight: S | null, bias: S | null, p: LayerNormParams) => NormForward<S>;
  layerNormBackward: (
    x: S,
    weight: S | null,
    gy: S,
    mean: S,
    rstd: S,
    p: LayerNormParams,
    affine: boolean,
  ) => NormGrads<S>;

  // ---- in-place updates
  /** One Adam/AdamW step over a parameter `p` with gradient `g` and moments `m`, `v` (all `size` long). */
  adamUpdate: (p: S, g: S, m: S, v: S, size: number, h: AdamHyper) => AdamStorages<S>;
}

/** A tidy scope (see {@link Backend.beginTidy}); scopes nest, and each is ended or cancelled once. */
export interface TidyScope<S extends Storage = Storage> {
  /**
   * Frees the storage made while this scope was open (in it or in scopes nested in it) except `keep`;
   * a later use of freed storage throws. What `keep` holds passes to the enclosing tidy scope, if any.
   */
  end(keep: readonly S[]): void;
  /** Closes the scope freeing nothing (after an error): its storage passes to the enclosing scope. */
  cancel(): void;
}

/** A scope of scratch allocations (see {@link Backend.beginScratch}). */
export interface ScratchScope<S extends Storage = Storage> {
  /** Identifies the memory behind `s`, so views of one allocation count as one. */
  key(s: S): object;
  /** Gives `s` back for reuse if this scope allocated it and nothing else can hold it. */
  release(s: S): void;
  end(): void;
}

export interface MatmulParams {
  batch: number;
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
  strideA: number;
  strideB: number;
}

export interface Conv2dParams {
  stride: readonly [number, number];
  padding: readonly [number, number];
  groups: number;
}

/** Sizes of a batched attention: q (batch, lq, d), k (batch, lk, d), v (batch, lk, dv). */
export interface AttentionParams {
  batch: number;
  lq: number;
  lk: number;
  d: number;
  dv: number;
  scale: number;
  /** hide key j > i + (lk - lq) */
  causal: boolean;
  /** element strides of the additive mask per batch item (0 broadcasts) and per query row (0 broadcasts); rows are lk long */
  maskStrideB: number;
  maskStrideQ: number;
  /** the backward will run: the backend may keep state for it (returned as `saved`) */
  forBackward?: boolean;
  /**
   * Heads packed in the last axis (default 1): q is (B, Lq, H d), k (B, Lk, H d), v (B, Lk, H dv) and
   * the output (B, Lq, H dv), with batch = B H items (item b is head b % H of sequence b / H).
   */
  heads?: number;
}

/** What a kernel kept for its backward outside the JS heap; autograd calls `release` once. */
export interface SavedState {
  release(): void;
}

/** Attention forward: output (batch, lq, dv), per-row log-sum-exp (batch, lq), what it kept. */
export interface AttentionForward<S extends Storage = Storage> {
  o: S;
  lse: S;
  saved?: SavedState | null;
}

/** Gradients of q, k and v. */
export interface AttentionGrads<S extends Storage = Storage> {
  dq: S;
  dk: S;
  dv: S;
}

/** Sizes of a group norm over x (n, c, s) with `groups` groups of c/groups channels. */
export interface GroupNormParams {
  n: number;
  c: number;
  /** elements per channel (product of the spatial axes) */
  s: number;
  groups: number;
  eps: number;
  /** apply silu to the output (the fused norm-then-activation) */
  silu?: boolean;
}

/** Sizes of a layer norm over `rows` rows of `d` elements. */
export interface LayerNormParams {
  rows: number;
  d: number;
  eps: number;
}

/** A norm's output and its saved statistics (mean and 1/std, float64 on the cpu backend). */
export interface NormForward<S extends Storage = Storage> {
  y: S;
  mean: S;
  rstd: S;
}

/** A norm's input gradient and, when affine, its weight and bias gradients. */
export interface NormGrads<S extends Storage = Storage> {
  dx: S;
  dw: S | null;
  db: S | null;
}

/** Hyper-parameters of one Adam step (t is the step number, from 1, for the bias corrections). */
export interface AdamHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** decoupled weight decay (AdamW) instead of L2 added to the gradient */
  decoupled: boolean;
  t: number;
}

/** The updated parameter and moments (a backend may return its inputs, updated in place). */
export interface AdamStorages<S extends Storage = Storage> {
  p: S;
  m: S;
  v: S;
}
