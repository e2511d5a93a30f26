// the narrow kernel interface every backend implements (cpu now; gpu.js later)
import type { DType, TypedArray } from "../dtype.ts";
import type { Shape } from "../shape.ts";

export type UnaryOp =
  | "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "abs" | "sign" | "tanh" | "sigmoid" | "relu" | "step"
  | "silu" | "gelu" | "gelu_tanh" | "erf" | "sin" | "cos" | "square" | "reciprocal";
export type BinaryOp =
  | "add" | "sub" | "mul" | "div" | "pow" | "maximum" | "minimum"
  | "lt" | "le" | "gt" | "ge" | "eq" | "ne"
  // fused activation backwards: a = output gradient, b = the forward input (sigmoid_grad, tanh_grad: the output)
  | "silu_grad" | "gelu_grad" | "sigmoid_grad" | "tanh_grad";
export type ReduceOp = "sum" | "max" | "min";

/** Opaque storage handle; only the backend that made it reads it. */
export type Storage = object;

/**
 * A backend: storage management plus the kernels the ops call. Shapes travel with every call, so a
 * backend keeps no per-tensor metadata; every kernel returns fresh contiguous storage.
 */
export interface Backend<S extends Storage = Storage> {
  readonly name: string;
  zeros(dtype: DType, size: number): S;
  /** Wraps or uploads host data (the cpu backend takes ownership, no copy). */
  fromHost(data: TypedArray): S;
  /** Host view of storage (the cpu backend returns the array itself; a device backend downloads). */
  toHost(s: S): TypedArray;
  fill(dtype: DType, size: number, value: number): S;
  cast(x: S, to: DType): S;
  unary(op: UnaryOp, x: S): S;
  binary(op: BinaryOp, a: S, aShape: Shape, b: S, bShape: Shape, outShape: Shape): S;
  where(c: S, cShape: Shape, a: S, aShape: Shape, b: S, bShape: Shape, outShape: Shape): S;
  /** Reduces `axes` (sorted, unique); the result has those axes kept with size 1. */
  reduce(op: ReduceOp, x: S, shape: Shape, axes: readonly number[]): S;
  permute(x: S, shape: Shape, perm: readonly number[]): S;
  expand(x: S, shape: Shape, outShape: Shape): S;
  slice(x: S, shape: Shape, begin: readonly number[], end: readonly number[], step: readonly number[]): S;
  pad(x: S, shape: Shape, pads: readonly (readonly [number, number])[], value: number): S;
  concat(xs: readonly S[], shapes: readonly Shape[], axis: number): S;
  /** out[o, j, i] = x[o, index[j], i] with x viewed as (outer, shape[axis], inner). */
  gather(x: S, shape: Shape, axis: number, index: Int32Array): S;
  /** zeros(shape) then out[o, index[j], i] += src[o, j, i]. */
  indexAdd(shape: Shape, axis: number, index: Int32Array, src: S): S;
  /** batched (M x K) @ (K x N) with optional transposes; a batch stride of 0 broadcasts one operand. */
  matmul(a: S, b: S, p: MatmulParams): S;
  conv2d(x: S, xShape: Shape, w: S, wShape: Shape, p: Conv2dParams): S;
  conv2dBackwardInput(gy: S, gyShape: Shape, w: S, wShape: Shape, xShape: Shape, p: Conv2dParams): S;
  conv2dBackwardWeight(x: S, xShape: Shape, gy: S, gyShape: Shape, wShape: Shape, p: Conv2dParams): S;
  /** nearest-neighbour upsampling of (N, C, H, W) by an integer factor. */
  upsampleNearest(x: S, shape: Shape, scale: number): S;
  /** sum over non-overlapping k x k windows of (N, C, H, W), times `mul` (1/k^2 gives average pooling). */
  poolSum(x: S, shape: Shape, k: number, mul: number): S;
  softmax(x: S, shape: Shape, axis: number, log: boolean): S;
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
