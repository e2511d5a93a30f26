// nn functions: the fused norm and GEGLU primitives (backend kernels with analytic backwards) and the
// composites they must match, losses, activations and dropout built from primitives; attention re-exported
import { ConfigError, ShapeError } from "./errors.ts";
import type { Generator } from "./random.ts";
import { defaultGenerator } from "./random.ts";
import { Tensor } from "./tensor.ts";
import { record } from "./autograd.ts";
import type { GroupNormParams, LayerNormParams } from "./backend/backend.ts";
import { add, div, maximum, mul, rsqrt, sigmoid, square, sub } from "./ops/elementwise.ts";
import { mean, sum } from "./ops/reduce.ts";
import { reshape, indexSelect } from "./ops/movement.ts";
import { logSoftmax } from "./ops/softmax.ts";
import { rand, full } from "./creation.ts";

/** x * sigmoid(1.702 x), the activation of CLIP's MLP. */
export function quickGelu(x: Tensor): Tensor {
  return mul(x, sigmoid(mul(x, 1.702)));
}

function checkLayerNorm(x: Tensor, normalizedShape: readonly number[]): number[] {
  const k = normalizedShape.length;
  const tail = x.shape.slice(x.ndim - k);
  if (k === 0 || k > x.ndim || tail.join() !== normalizedShape.join())
    throw new ShapeError(`layerNorm: normalized shape [${normalizedShape}] does not end input shape [${x.shape}]`);
  return Array.from({ length: k }, (_, i) => x.ndim - k + i);
}

/** Layer normalisation over the last `normalizedDims` axes from primitives (the reference the fused kernel must match). */
export function layerNormComposite(
  x: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  const axes = checkLayerNorm(x, normalizedShape);
  const mu = mean(x, axes, true);
  const d = sub(x, mu);
  const v = mean(square(d), axes, true);
  let y = mul(d, rsqrt(add(v, eps)));
  if (weight) y = mul(y, weight);
  if (bias) y = add(y, bias);
  return y;
}

/**
 * Layer normalisation over the last `normalizedShape.length` axes, with optional affine weight and
 * bias of `normalizedShape`, as torch.nn.functional.layer_norm. One primitive with a single-pass
 * kernel and an analytic backward where the backend has it; the composite otherwise.
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  checkLayerNorm(x, normalizedShape);
  const d = normalizedShape.reduce((p, v) => p * v, 1);
  const affineOk = [weight, bias].every(
    (t) => !t || (t.dtype === x.dtype && t.size === d && t.shape.join() === normalizedShape.join()),
  );
  // an affine term of another shape or dtype broadcasts through the composite
  if (!affineOk || d === 0) return layerNormComposite(x, normalizedShape, weight, bias, eps);
  const p: LayerNormParams = { rows: x.size / d, d, eps };
  const f = x.backend;
  const r = f.layerNorm(x.storage, weight ? weight.storage : null, bias ? bias.storage : null, p);
  const y = new Tensor(r.y, x.shape, x.dtype, x.backend); // (..., *normalizedShape)
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record(y, "layerNorm", inputs, (g) => {
    const affine = !!((weight && weight.requiresGrad) || (bias && bias.requiresGrad));
    const gr = f.layerNormBackward(x.storage, weight ? weight.storage : null, g.storage, r.mean, r.rstd, p, affine);
    const res: (Tensor | null)[] = [x.requiresGrad ? new Tensor(gr.dx, x.shape, x.dtype, x.backend) : null];
    if (weight) res.push(weight.requiresGrad && gr.dw ? new Tensor(gr.dw, weight.shape, x.dtype, x.backend) : null);
    if (bias) res.push(bias.requiresGrad && gr.db ? new Tensor(gr.db, bias.shape, x.dtype, x.backend) : null);
    return res;
  });
}

/** Group normalisation of (N, C, ...) over `groups` channel groups, with per-channel affine (composite reference). */
export function groupNormComposite(
  x: Tensor,
  groups: number,
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  checkGroups(x, groups);
  const [n, c] = x.shape as [number, number];
  const g = reshape(x, [n, groups, -1]);
  const mu = mean(g, 2, true);
  const d = sub(g, mu);
  const v = mean(square(d), 2, true);
  let y = reshape(mul(d, rsqrt(add(v, eps))), x.shape);
  const affine = [1, c, ...x.shape.slice(2).map(() => 1)];
  if (weight) y = mul(y, reshape(weight, affine));
  if (bias) y = add(y, reshape(bias, affine));
  return y;
}

function checkGroups(x: Tensor, groups: number): void {
  if (x.ndim < 2) throw new ShapeError(`groupNorm: input must be (N, C, ...), got [${x.shape}]`);
  const c = x.shape[1]!;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0)
    throw new ShapeError(`groupNorm: ${c} channels of [${x.shape}] do not split into ${groups} groups`);
}

/**
 * Group normalisation of (N, C, ...) over `groups` channel groups, with per-channel affine, as
 * torch.nn.functional.group_norm. One primitive with a single-pass kernel and an analytic backward
 * where the backend has it; the composite otherwise.
 */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return groupNormImpl("groupNorm", x, groups, weight, bias, eps, false);
}

/**
 * silu(groupNorm(x)) as one primitive (the norm-then-activation of every diffusers ResNet block): one
 * pass over the output instead of two; the backward recomputes the pre-activation.
 */
export function groupNormSilu(
  x: Tensor,
  groups: number,
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  return groupNormImpl("groupNormSilu", x, groups, weight, bias, eps, true);
}

function groupNormImpl(
  op: string,
  x: Tensor,
  groups: number,
  weight: Tensor | null | undefined,
  bias: Tensor | null | undefined,
  eps: number,
  silu: boolean,
): Tensor {
  checkGroups(x, groups);
  const [n, c] = x.shape as [number, number];
  for (const [name, t] of [
    ["weight", weight],
    ["bias", bias],
  ] as const) {
    if (t && (t.ndim !== 1 || t.shape[0] !== c))
      throw new ShapeError(`${op}: ${name} must be [${c}], got [${t.shape}]`);
    if (t && t.dtype !== x.dtype) throw new ShapeError(`${op}: ${name} dtype ${t.dtype} differs from input ${x.dtype}`);
  }
  const p: GroupNormParams = { n, c, s: x.size / Math.max(1, n * c), groups, eps, silu };
  const f = x.backend;
  const w = weight ? weight.storage : null,
    b = bias ? bias.storage : null;
  const r = f.groupNorm(x.storage, w, b, p);
  const y = new Tensor(r.y, x.shape, x.dtype, x.backend); // (N, C, ...)
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  return record(y, op, inputs, (g) => {
    let gy = g.storage;
    // the recomputed pre-activation and the gradient through silu go back to the backend's pool as
    // soon as they are consumed (the gradients themselves stay with the enclosing scope)
    const scratch = silu ? f.beginScratch() : null;
    if (silu) {
      // through silu at the recomputed pre-activation
      const z = f.groupNorm(x.storage, w, b, { ...p, silu: false }).y;
      gy = x.backend.binary("silu_grad", g.storage, x.shape, z, x.shape, x.shape);
      scratch!.release(z);
    }
    const gr = f.groupNormBackward(x.storage, w, gy, r.mean, r.rstd, p, !!(weight || bias));
    if (scratch) {
      scratch.release(gy);
      scratch.end();
    }
    const res: (Tensor | null)[] = [x.requiresGrad ? new Tensor(gr.dx, x.shape, x.dtype, x.backend) : null];
    if (weight) res.push(weight.requiresGrad && gr.dw ? new Tensor(gr.dw, [c], x.dtype, x.backend) : null);
    if (bias) res.push(bias.requiresGrad && gr.db ? new Tensor(gr.db, [c], x.dtype, x.backend) : null);
    return res;
  });
}

/**
 * GEGLU of the last axis: its first half times GELU of its second half, (..., 2d) -> (..., d), as
 * diffusers' GEGLU after its projection. One primitive (one pass, no slices) where the backend has
 * it; the composite otherwise.
 */
export function geglu(h: Tensor): Tensor {
  const d2 = h.shape[h.ndim - 1];
  if (h.ndim < 1 || d2 === undefined || d2 % 2 !== 0)
    throw new ShapeError(`geglu: the last axis must have even length, got [${h.shape}]`);
  const d = d2 / 2,
    outShape = [...h.shape.slice(0, -1), d];
  const f = h.backend,
    rows = h.size / Math.max(1, d2);
  const y = new Tensor(f.geglu(h.storage, rows, d), outShape, h.dtype, h.backend);
  return record(y, "geglu", [h], (g) => [
    new Tensor(f.gegluBackward(h.storage, g.storage, rows, d), h.shape, h.dtype, h.backend),
  ]);
}

export {
  scaledDotProductAttention,
  causalMask,
  splitHeads,
  mergeHeads,
  headsToBatch,
  batchToHeads,
  type AttentionOptions,
} from "./ops/attention.ts";

/** Inverted dropout: in training, zeroes with probability p and scales the rest by 1/(1-p). */
export function dropout(x: Tensor, p: number, training: boolean, generator: Generator = defaultGenerator): Tensor {
  if (!(p >= 0 && p < 1)) throw new ConfigError(`dropout: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  const keep = rand(x.shape, { dtype: x.dtype, generator });
  const m = keep.data;
  for (let i = 0; i < m.length; i++) m[i] = m[i] >= p ? 1 / (1 - p) : 0;
  return mul(x, new Tensor(x.backend.fromHost(m), x.shape, x.dtype, x.backend));
}

/**
 * Mean squared error. With a mask (broadcastable to `pred`, e.g. (N, 1, H, W)): per sample
 * sum(mask * (pred - target)^2) / sum(mask) over the non-batch axes (the mask's own elements are
 * counted, not its broadcast), then the mean over the batch - as Custom Diffusion's masked loss.
 * A sample with an empty mask contributes 0.
 */
export function mseLoss(pred: Tensor, target: Tensor, mask?: Tensor | null): Tensor {
  if (pred.shape.join() !== target.shape.join())
    throw new ShapeError(`mseLoss: pred [${pred.shape}] and target [${target.shape}] differ`);
  const err = square(sub(pred, target));
  if (!mask) return mean(err);
  if (mask.ndim !== pred.ndim || mask.shape[0] !== pred.shape[0])
    throw new ShapeError(`mseLoss: mask [${mask.shape}] must have the rank and batch size of pred [${pred.shape}]`);
  const axes = Array.from({ length: pred.ndim - 1 }, (_, i) => i + 1);
  // a sample whose mask is empty contributes 0 (its numerator is 0 too) instead of 0/0
  return mean(div(sum(mul(err, mask), axes), maximum(sum(mask, axes), 1e-30)));
}

/** Embedding lookup: rows of `weight` (V, D) at integer `ids`; result has shape ids.shape + [D]. */
export function embedding(weight: Tensor, ids: ArrayLike<number> | Tensor, idsShape?: readonly number[]): Tensor {
  const shape = idsShape ?? (ids instanceof Tensor ? ids.shape : [ids.length]);
  const rows = indexSelect(weight, 0, ids);
  return reshape(rows, [...shape, weight.shape[1]]);
}

/** Mean cross-entropy of logits (N, C) against integer class targets. */
export function crossEntropy(logits: Tensor, targets: ArrayLike<number>): Tensor {
  if (logits.ndim !== 2 || logits.shape[0] !== targets.length)
    throw new ShapeError(`crossEntropy: logits [${logits.shape}] and ${targets.length} targets do not fit`);
  const [n, c] = logits.shape as [number, number];
  const oh = full([n, c], 0, { dtype: logits.dtype });
  const d = oh.data;
  for (let i = 0; i < n; i++) {
    const t = targets[i];
    if (!Number.isInteger(t) || t < 0 || t >= c)
      throw new ShapeError(`crossEntropy: target ${t} at ${i} is out of range [0, ${c})`);
    d[i * c + t] = 1;
  }
  const onehot = new Tensor(logits.backend.fromHost(d), [n, c], logits.dtype, logits.backend);
  return div(sum(mul(logSoftmax(logits, 1), onehot)), -n);
}
