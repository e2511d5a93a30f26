// Argument checks of the GEMM entry points (sizes, leading dimensions, pointers within the memory).

import { ShapeError } from "../../../errors.ts";

function checkDim(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new ShapeError(`sgemm: ${name} must be a non-negative integer, got ${v}`);
}

/** Checks that a rows x cols operand with leading dimension ld at byte offset ptr fits the memory. */
function checkOperand(name: string, ptr: number, rows: number, cols: number, ld: number, bytes: number): void {
  if (!Number.isInteger(ld) || ld < Math.max(1, cols)) {
    throw new ShapeError(`sgemm: ld${name} must be an integer >= ${Math.max(1, cols)}, got ${ld}`);
  }
  if (!Number.isInteger(ptr) || ptr < 0 || ptr % 4 !== 0) {
    throw new RangeError(`sgemm: ${name} pointer must be a non-negative multiple of 4, got ${ptr}`);
  }
  if (rows > 0 && cols > 0 && ptr + ((rows - 1) * ld + cols) * 4 > bytes) {
    throw new RangeError(`sgemm: ${name} (${rows}x${cols}, ld ${ld}) at ${ptr} runs past memory of ${bytes} bytes`);
  }
}

/** Checks the sizes and operands of one GEMM on a memory of `bytes` bytes. */
export function validate(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  aPtr: number,
  lda: number,
  bPtr: number,
  ldb: number,
  cPtr: number,
  ldc: number,
  bytes: number,
): void {
  checkDim("M", M);
  checkDim("N", N);
  checkDim("K", K);
  checkOperand("A", aPtr, transA ? K : M, transA ? M : K, lda, bytes);
  checkOperand("B", bPtr, transB ? N : K, transB ? K : N, ldb, bytes);
  checkOperand("C", cPtr, M, N, ldc, bytes);
}

/** Checks a batch count and the element strides between batch items. */
export function checkBatch(batch: number, sa: number, sb: number, sc: number): void {
  if (!Number.isInteger(batch) || batch < 0)
    throw new ShapeError(`sgemmBatched: batch must be a non-negative integer, got ${batch}`);
  for (const [n, s] of [
    ["strideA", sa],
    ["strideB", sb],
    ["strideC", sc],
  ] as const) {
    if (!Number.isInteger(s) || s < 0)
      throw new ShapeError(`sgemmBatched: ${n} must be a non-negative integer, got ${s}`);
  }
}
