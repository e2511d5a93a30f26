// WebAssembly CPU kernels: arena allocator over a (shared) WebAssembly.Memory, the runtime with its
// generated SIMD SGEMM and row modules and its worker pool, and a plain TypeScript GEMM fallback.

export { WasmArena, sizeClass, type ArenaOptions } from "./arena.ts";
export type { MicroKernelConfig } from "./kernels.ts";
export { sgemmTS } from "./reference.ts";
export {
  bestVariant,
  defaultArena,
  matmulF32,
  matmulF32Batched,
  relaxedSimdAvailable,
  sgemm,
  sgemmBatched,
  sgemmKernel,
  simdAvailable,
  PARALLEL_MIN_WORK,
  type BatchedMatmulOptions,
  type BlockSizes,
  type SgemmKernel,
  type SgemmKernelOptions,
  type SgemmVariant,
} from "./sgemm.ts";
export { WasmRuntime, type BlockSpec } from "./runtime.ts";
export { closeThreads, getNumThreads, setNumThreads, WorkerPool, type Job } from "./pool.ts";
export { CMD_ATTN_BWD, CMD_ATTN_FWD } from "./attention_parts.ts";
export type { PartContext, PartKernel } from "./context.ts";
