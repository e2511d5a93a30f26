// WebAssembly CPU kernels: arena allocator over a (shared) WebAssembly.Memory and a generated
// cache-blocked SIMD SGEMM with a plain TypeScript fallback.

export { WasmArena, sizeClass, type ArenaOptions } from "./arena.ts";
export type { MicroKernelConfig } from "./kernels.ts";
export { sgemmTS } from "./reference.ts";
export {
  bestVariant, defaultArena, matmulF32, matmulF32Batched, relaxedSimdAvailable, sgemm, sgemmBatched,
  sgemmKernel, simdAvailable, WasmSgemm, PARALLEL_MIN_WORK,
  type BatchedMatmulOptions, type BlockSizes, type SgemmKernel, type SgemmKernelOptions, type SgemmVariant,
} from "./sgemm.ts";
export { getNumThreads, setNumThreads, WorkerPool, type Job } from "./pool.ts";
export { CMD_ATTN_BWD, CMD_ATTN_FWD } from "./attention_src.ts";
