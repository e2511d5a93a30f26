// element types of tensors and the typed arrays that hold them on the host
import { DTypeError } from "./errors.ts";

/** Element type of a tensor: float32 (default) or float64 (CPU, for gradient checks and linear algebra). */
export type DType = "float32" | "float64";
/** Host array of a tensor's elements. */
export type TypedArray = Float32Array | Float64Array;

/** Allocates a zero-filled host array of `size` elements of `dtype`. */
export function allocArray(dtype: DType, size: number): TypedArray {
  switch (dtype) {
    case "float32":
      return new Float32Array(size);
    case "float64":
      return new Float64Array(size);
    default:
      throw new DTypeError(`alloc: unknown dtype "${dtype satisfies never}"`);
  }
}

/** The dtype of a host array. */
export function dtypeOf(a: TypedArray): DType {
  return a instanceof Float64Array ? "float64" : "float32";
}

/** Checks that `dtype` is a supported dtype name. */
export function checkDType(dtype: string, where: string): DType {
  if (dtype !== "float32" && dtype !== "float64") throw new DTypeError(`${where}: dtype must be float32 or float64, got "${dtype}"`);
  return dtype;
}
