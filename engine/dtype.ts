// element types of tensors and the typed arrays that hold them on the host
import { DTypeError } from "./errors.ts";

/** Element type of a computing tensor: float32 (default) or float64 (for gradient checks and linear algebra). */
export type FloatDType = "float32" | "float64";
/**
 * Half-precision storage for frozen weights: bfloat16 or IEEE binary16. Such a tensor is only ever
 * read by `linear`/`matmul` (as the right operand) and `conv2d` (as the weight), which widen it to
 * float32 inside the op; every other op refuses it, and it never requires grad.
 */
export type HalfDType = "bfloat16" | "float16";
/** Element type of a tensor. */
export type DType = FloatDType | HalfDType;
/** Host array of a tensor's elements. */
export type TypedArray = Float32Array | Float64Array;

/** Allocates a zero-filled host array of `size` elements of `dtype`. */
export function allocArray(dtype: FloatDType, size: number): TypedArray {
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
export function dtypeOf(a: TypedArray): FloatDType {
  return a instanceof Float64Array ? "float64" : "float32";
}

/** Whether `dtype` is a half-precision storage dtype. */
export function isHalf(dtype: DType): dtype is HalfDType {
  return dtype === "bfloat16" || dtype === "float16";
}

/** Bytes per element of `dtype`. */
export function bytesOf(dtype: DType): number {
  return dtype === "float64" ? 8 : dtype === "float32" ? 4 : 2;
}

/** The computing dtype that holds `dtype`'s values: float64 stays, everything else computes in float32. */
export function floatOf(dtype: DType | undefined): FloatDType {
  return dtype === "float64" ? "float64" : "float32";
}

/** Checks that `dtype` is a dtype name. */
export function checkDType(dtype: string, where: string): DType {
  if (dtype !== "float32" && dtype !== "float64" && dtype !== "bfloat16" && dtype !== "float16") {
    throw new DTypeError(`${where}: dtype must be float32, float64, bfloat16 or float16, got "${dtype}"`);
  }
  return dtype;
}
