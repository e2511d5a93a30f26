// gradient-norm clipping (as torch.nn.utils.clip_grad_norm_)
import type { Tensor } from "../engine/index.ts";
import { mul } from "../engine/index.ts";

/** Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before clipping. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  let sq = 0;
  for (const p of params) {
    if (!p.grad) continue;
    const g = p.grad.data;
    for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  }
  const norm = Math.sqrt(sq);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const p of params) if (p.grad) p.grad = mul(p.grad, coef);
  return norm;
}
