// The part kernels by command id: what a pool job names, and what the calling thread runs for a job
// a worker could not take.

import { attnBackward, attnForward, CMD_ATTN_BWD, CMD_ATTN_FWD } from "./attention_parts.ts";
import type { PartKernel } from "./context.ts";
import {
  CMD_CONV_BWD_INPUT,
  CMD_CONV_BWD_INPUT_BATCHED,
  CMD_CONV_BWD_WEIGHT,
  CMD_CONV_BWD_WEIGHT_BATCHED,
  CMD_CONV_FWD,
  CMD_CONV_FWD_BATCHED,
  CMD_CONV_WINOGRAD,
  CMD_CONV_WINOGRAD_WGRAD,
  convBackwardInput,
  convBackwardInputBatched,
  convBackwardWeight,
  convBackwardWeightBatched,
  convForward,
  convForwardBatched,
  convWinograd,
  convWinogradWeightGrad,
} from "./conv_parts.ts";

/**
 * Command 1: a slice of a GEMM with the thread's own packing buffers; arguments transA, transB, M, N,
 * K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch (as `PartContext.gemm`).
 */
export const CMD_GEMM = 1;

const gemmPart: PartKernel = (ctx, a) =>
  ctx.gemm(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16]);

/** Every part kernel a job may name. */
export const PART_KERNELS: Readonly<Record<number, PartKernel>> = {
  [CMD_GEMM]: gemmPart,
  [CMD_ATTN_FWD]: attnForward,
  [CMD_ATTN_BWD]: attnBackward,
  [CMD_CONV_FWD]: convForward,
  [CMD_CONV_BWD_INPUT]: convBackwardInput,
  [CMD_CONV_BWD_WEIGHT]: convBackwardWeight,
  [CMD_CONV_FWD_BATCHED]: convForwardBatched,
  [CMD_CONV_BWD_INPUT_BATCHED]: convBackwardInputBatched,
  [CMD_CONV_BWD_WEIGHT_BATCHED]: convBackwardWeightBatched,
  [CMD_CONV_WINOGRAD]: convWinograd,
  [CMD_CONV_WINOGRAD_WGRAD]: convWinogradWeightGrad,
};

/** The kernel of a command; throws on an unknown one. */
export function partKernel(cmd: number): PartKernel {
  const k = PART_KERNELS[cmd];
  if (!k) throw new RangeError(`unknown part-kernel command ${cmd}`);
  return k;
}
