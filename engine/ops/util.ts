// helpers shared by the ops: scalar promotion, dtype/backend checks, building outputs
import type { Storage } from "../backend/backend.ts";
import type { DType } from "../dtype.ts";
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
  return new Tensor(like.backend.fill(like.dtype, 1, x), [], like.dtype, like.backend);
}

/** Checks that all tensors share a dtype and a backend. */
export function same(op: string, ts: readonly Tensor[]): void {
  const t0 = ts[0];
  for (const t of ts) {
    if (t.dtype !== t0.dtype) throw new DTypeError(`${op}: dtypes differ, got ${ts.map((x) => x.dtype).join(" and ")}; convert with .to()`);
    if (t.backend !== t0.backend) throw new BackendError(`${op}: tensors live on different backends (${t0.backend.name} and ${t.backend.name})`);
  }
}
