// the engine's public surface: Tensor, creation, ops, autograd, random, backends, errors
export { Tensor, getDefaultBackend, setDefaultBackend } from "./tensor.ts";
export type { TensorLike } from "./tensor.ts";
export * from "./creation.ts";
export * from "./ops/elementwise.ts";
export { sum, mean, max, min, variance, sumTo } from "./ops/reduce.ts";
export * from "./ops/movement.ts";
export * from "./ops/matmul.ts";
export * from "./ops/softmax.ts";
export * from "./ops/conv.ts";
export { adamUpdate_ } from "./ops/inplace.ts";
export * from "./functional.ts";
export { noGrad, withGrad, isGradEnabled } from "./autograd.ts";
export { checkpoint } from "./checkpoint.ts";
export { tidy } from "./tidy.ts";
export type { Keep } from "./tidy.ts";
export { Generator, defaultGenerator, manualSeed } from "./random.ts";
export type { DType, TypedArray } from "./dtype.ts";
export type { Shape } from "./shape.ts";
export type { HostTensor } from "./host.ts";
export { sizeOf, broadcastShapes } from "./shape.ts";
export type {
  Backend,
  Storage,
  UnaryOp,
  BinaryOp,
  ReduceOp,
  ScratchScope,
  TidyScope,
  MatmulParams,
  Conv2dParams,
  AttentionParams,
  AttentionForward,
  AttentionGrads,
  SavedState,
  GroupNormParams,
  LayerNormParams,
  NormForward,
  NormGrads,
  AdamHyper,
  AdamStorages,
} from "./backend/backend.ts";
export { registerBackend, getBackend, backendNames } from "./backend/registry.ts";
export { cpuBackend, setFastKernels, getFastKernels, useWasmKernels } from "./backend/cpu/index.ts";
export { bufferPoolStats, clearBufferPool, setBufferPoolCapacity } from "./backend/cpu/buffers.ts";
export { closeThreads, getNumThreads, setNumThreads } from "./backend/cpu/wasm/pool.ts";
/** float64 dense linear algebra: `Mat`, LU/Cholesky/QR solvers, `eigh`, `svd` (also `custom-diffusion-ts/engine/linalg`). */
export * as linalg from "./linalg.ts";
export * from "./errors.ts";
export { DIFFERENTIABLE_OPS } from "./registry.ts";
