// What a PyTorch checkpoint reads into: plain values, tuples and contiguous tensors.

/** A tensor read from a checkpoint: contiguous values (float32, or float64 for double storages). */
export interface TorchTensor {
  readonly kind: "tensor";
  /** the storage's dtype in the file */
  readonly dtype: "float32" | "float16" | "bfloat16" | "float64";
  readonly shape: number[];
  readonly data: Float32Array | Float64Array;
}

/** A Python tuple (a list is a plain array). */
export class PyTuple extends Array<PyValue> {}

/** What a checkpoint's pickle can hold here. Dicts keep their insertion order. */
export type PyValue =
  null | boolean | number | bigint | string | PyValue[] | PyTuple | Map<PyValue, PyValue> | TorchTensor;

export interface TorchZipOptions {
  /** refuse checkpoints whose tensors hold more elements than this in total (default 2^31) */
  maxElements?: number;
  /** refuse pickles nested deeper than this (default 256) */
  maxDepth?: number;
}
