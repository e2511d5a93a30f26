// in-place optimizer kernels of the cpu backend
import type { TypedArray } from "../../dtype.ts";
import type { AdamHyper, AdamStorages } from "../backend.ts";

/**
 * One Adam step, in place, as torch.optim.Adam/AdamW: decoupled decay scales the weights first; L2
 * decay adds wd * w to the gradient; moments keep the parameter's precision; the update is
 * lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
export function adamUpdate(
  w: TypedArray,
  gr: TypedArray,
  m: TypedArray,
  v: TypedArray,
  size: number,
  h: AdamHyper,
): AdamStorages<TypedArray> {
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = h;
  const stepSize = lr / (1 - Math.pow(b1, h.t)),
    sq = Math.sqrt(1 - Math.pow(b2, h.t));
  if (decoupled && wd !== 0) for (let i = 0; i < size; i++) w[i] *= 1 - lr * wd;
  for (let i = 0; i < size; i++) {
    let gi = gr[i]!;
    if (!decoupled && wd !== 0) gi += wd * w[i]!;
    m[i] = b1 * m[i]! + (1 - b1) * gi;
    v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
    w[i] -= (stepSize * m[i]!) / (Math.sqrt(v[i]!) / sq + eps);
  }
  return { p: w, m, v };
}
