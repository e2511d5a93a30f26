// How the float32 fast path's convolutions are split into parts for the worker pool: channel runs,
// part counts, per-part scratch, and the wasm runtime they run on
import { UnsupportedKernelError } from "../../errors.ts";
import { PARALLEL_MIN_WORK } from "./wasm/sgemm.ts";
import type { WasmRuntime } from "./wasm/sgemm.ts";
import { getNumThreads } from "./wasm/pool.ts";
import { fastRuntime } from "./fast_rows.ts";

/**
 * Channel runs for `threads` threads, one per thread: a finer split repacks the shared GEMM operand
 * once more per run, which cost more than the balancing gained on an idle machine.
 */
export function channelUnits(c: number, threads: number): { threads: number; cs: number; units: number } {
  const cs = Math.ceil(c / Math.min(c, threads));
  return { threads, cs, units: Math.ceil(c / cs) };
}
/** Parts worth running for `work` multiply-adds over at most `units` independent units. */
export function partCount(work: number, units: number): number {
  return Math.max(1, Math.min(getNumThreads(), units, Math.floor(work / PARALLEL_MIN_WORK)));
}

/** The runtime the convolutions need (installed only where WebAssembly SIMD is, see wasmFastKernels). */
export function convRuntime(): WasmRuntime {
  const rt = fastRuntime();
  if (!rt) throw new UnsupportedKernelError("conv2d (fast path)", "wasm-simd");
  return rt;
}

/** `count` scratch blocks of `floats` floats each, one per part. */
export const scratch = (count: number, floats: number): number[] => Array.from({ length: count }, () => floats);
