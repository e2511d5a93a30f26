// gradient-norm clipping (as torch.nn.utils.clip_grad_norm_)
import type { Tensor } from "../engine/index.ts";
import { mul } from "../engine/index.ts";

/** Global L2 norm of the parameters' gradients (NaN or Infinity when any gradient value is). */
export function gradNorm(params: readonly Tensor[]): number {
  let sq = 0;
  for (const p of params) {
    if (!p.grad) continue;
    const g = p.grad.data;
    for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  }
  return Math.sqrt(sq);
}

/**
 * Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping.
 * A non-finite norm leaves the gradients as they are (the caller should stop: see `gradNorm`).
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const p of params) if (p.grad) p.grad = mul(p.grad, coef);
  return norm;
}
