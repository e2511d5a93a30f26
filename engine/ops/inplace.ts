// in-place updates that the optimizers need, each one backend kernel on the tensors' own backend
import type { AdamHyper } from "../backend/backend.ts";
import { BackendError, DTypeError, ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";

/**
 * One Adam/AdamW step (see {@link AdamHyper}) on the leaf `p` with gradient `grad` and moments `m`,
 * `v`, all of one shape, dtype and backend; `p`, `m` and `v` hold the updated values afterwards. No graph.
 */
export function adamUpdate_(p: Tensor, grad: Tensor, m: Tensor, v: Tensor, h: AdamHyper): void {
  for (const [name, t] of [
    ["gradient", grad],
    ["first moment", m],
    ["second moment", v],
  ] as const) {
    if (t.shape.join() !== p.shape.join())
      throw new ShapeError(`adamUpdate_: ${name} of shape [${t.shape}] for parameter [${p.shape}]`);
    if (t.backend !== p.backend)
      throw new BackendError(
        `adamUpdate_: ${name} on backend ${t.backend.name} for a parameter on ${p.backend.name}, shape [${p.shape}]`,
      );
    if (t.dtype !== p.dtype)
      throw new DTypeError(
        `adamUpdate_: ${name} of dtype ${t.dtype} for a parameter of dtype ${p.dtype}, shape [${p.shape}]`,
      );
  }
  if (p.gradNode || m.gradNode || v.gradNode)
    throw new ShapeError(`adamUpdate_: parameter and moments must be leaves, shape [${p.shape}]`);
  const r = p.backend.adamUpdate(p.storage, grad.storage, m.storage, v.storage, p.size, h);
  p.replaceStorage_(r.p);
  m.replaceStorage_(r.m);
  v.replaceStorage_(r.v);
}
