// helpers shared by the ops: scalar promotion, dtype/backend checks, building outputs
import type { Storage } from "../backend/backend.ts";
import type { DType } from "../dtype.ts";
import { floatOf, isHalf } from "../dtype.ts";
import { BackendError, DTypeError } from "../errors.ts";
import type { Shape } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import type { TensorLike } from "../tensor.ts";

/** A new tensor on `like`'s backend from storage that backend produced. */
export function out(like: Tensor, storage: Storage, shape: Shape, dtype: DType = like.dtype): Tensor {
  return new Tensor(storage, shape, dtype, like.backend);
}

/** Promotes a number to a 0-d tensor of `like`'s dtype and backend. */
export function lift(x: TensorLike, like: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  const dtype = floatOf(like.dtype);
  return new Tensor(like.backend.fill(dtype, 1, x), [], dtype, like.backend);
}

/** Checks that all tensors share a dtype and a backend. */
export function same(op: string, ts: readonly Tensor[]): void {
  const t0 = ts[0];
  for (const t of ts) {
    if (t.dtype !== t0.dtype)
      throw new DTypeError(`${op}: dtypes differ, got ${ts.map((x) => x.dtype).join(" and ")}; convert with .to()`);
    if (t.backend !== t0.backend)
      throw new BackendError(`${op}: tensors live on different backends (${t0.backend.name} and ${t.backend.name})`);
  }
}

/**
 * Checks the operands of an op that reads `w` as a weight: either the same dtype and backend as `x`,
 * or a frozen half-precision weight beside a float32 input on the same backend (two half operands
 * are refused: the input's storage getter names the problem).
 */
export function sameOrHalfWeight(op: string, x: Tensor, w: Tensor): void {
  if (!isHalf(w.dtype)) return same(op, [x, w]);
  if (x.dtype !== "float32")
    throw new DTypeError(`${op}: a ${w.dtype} weight [${w.shape}] computes in float32, but the input is ${x.dtype}`);
  if (x.backend !== w.backend)
    throw new BackendError(`${op}: tensors live on different backends (${x.backend.name} and ${w.backend.name})`);
  if (w.requiresGrad)
    throw new DTypeError(`${op}: a ${w.dtype} weight [${w.shape}] cannot be trained; convert it with .to_("float32")`);
}

/**
 * Runs `fn` on `w`'s float32 storage: its own for a float tensor; for a half tensor a widened copy,
 * made here and handed back to the backend's pool when `fn` returns (so no op keeps it alive).
 */
export function withWeight<T>(w: Tensor, fn: (s: Storage) => T): T {
  if (!isHalf(w.dtype)) return fn(w.storage);
  const scratch = w.backend.beginScratch();
  const wide = w.backend.cast(w.rawStorage, w.dtype, "float32");
  try {
    return fn(wide);
  } finally {
    scratch.release(wide);
    scratch.end();
  }
}
