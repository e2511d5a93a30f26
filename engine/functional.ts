// composite ops built from primitives (no hand-written backward): norms, attention, losses, activations
import { ShapeError } from "./errors.ts";
import type { Generator } from "./random.ts";
import { defaultGenerator } from "./random.ts";
import { Tensor } from "./tensor.ts";
import { add, div, maximum, mul, rsqrt, sigmoid, square, sub, where } from "./ops/elementwise.ts";
import { mean, sum } from "./ops/reduce.ts";
import { reshape, indexSelect } from "./ops/movement.ts";
import { mm } from "./ops/matmul.ts";
import { softmax, logSoftmax } from "./ops/softmax.ts";
import { rand, full } from "./creation.ts";

/** x * sigmoid(1.702 x), the activation of CLIP's MLP. */
export function quickGelu(x: Tensor): Tensor {
  return mul(x, sigmoid(mul(x, 1.702)));
}

/** Layer normalisation over the last `normalizedDims` axes, with optional affine weight and bias. */
export function layerNorm(x: Tensor, normalizedShape: readonly number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  const k = normalizedShape.length;
  const tail = x.shape.slice(x.ndim - k);
  if (k === 0 || tail.join() !== normalizedShape.join()) throw new ShapeError(`layerNorm: normalized shape [${normalizedShape}] does not end input shape [${x.shape}]`);
  const axes = Array.from({ length: k }, (_, i) => x.ndim - k + i);
  const mu = mean(x, axes, true);
  const d = sub(x, mu);
  const v = mean(square(d), axes, true);
  let y = mul(d, rsqrt(add(v, eps)));
  if (weight) y = mul(y, weight);
  if (bias) y = add(y, bias);
  return y;
}

/** Group normalisation of (N, C, ...) over `groups` channel groups, with per-channel affine. */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  if (x.ndim < 2) throw new ShapeError(`groupNorm: input must be (N, C, ...), got [${x.shape}]`);
  const [n, c] = x.shape as [number, number];
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) throw new ShapeError(`groupNorm: ${c} channels of [${x.shape}] do not split into ${groups} groups`);
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

export interface AttentionOptions {
  /** additive mask broadcast to (..., Lq, Lk), or a 0/1 mask when `maskIsBoolean` (1 = keep) */
  mask?: Tensor | null;
  maskIsBoolean?: boolean;
  /** hide keys after the query position */
  causal?: boolean;
  /** defaults to 1/sqrt(head dim) */
  scale?: number;
}

/** softmax(q k^T * scale + mask) v for q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv). */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const d = q.shape[q.ndim - 1];
  if (k.shape[k.ndim - 1] !== d) throw new ShapeError(`attention: query [${q.shape}] and key [${k.shape}] head sizes differ`);
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  let s = mul(mm(q, k, false, true), scale); // (..., Lq, Lk)
  const lq = q.shape[q.ndim - 2], lk = k.shape[k.ndim - 2];
  if (opts.causal) s = add(s, causalMask(lq, lk, q));
  if (opts.mask) s = opts.maskIsBoolean ? where(opts.mask, s, -Infinity) : add(s, opts.mask);
  return mm(softmax(s, -1), v);
}

/** (Lq, Lk) additive mask with -inf where key j > query i (+ offset Lk - Lq). */
export function causalMask(lq: number, lk: number, like: Tensor): Tensor {
  const m = full([lq, lk], 0, { dtype: like.dtype });
  const data = m.data;
  for (let i = 0; i < lq; i++) for (let j = i + 1 + (lk - lq); j < lk; j++) data[i * lk + j] = -Infinity;
  return new Tensor(like.backend.fromHost(data), [lq, lk], like.dtype, like.backend);
}

/** Inverted dropout: in training, zeroes with probability p and scales the rest by 1/(1-p). */
export function dropout(x: Tensor, p: number, training: boolean, generator: Generator = defaultGenerator): Tensor {
  if (!(p >= 0 && p < 1)) throw new ShapeError(`dropout: p must be in [0, 1), got ${p}`);
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
  if (pred.shape.join() !== target.shape.join()) throw new ShapeError(`mseLoss: pred [${pred.shape}] and target [${target.shape}] differ`);
  const err = square(sub(pred, target));
  if (!mask) return mean(err);
  if (mask.ndim !== pred.ndim || mask.shape[0] !== pred.shape[0]) throw new ShapeError(`mseLoss: mask [${mask.shape}] must have the rank and batch size of pred [${pred.shape}]`);
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
  if (logits.ndim !== 2 || logits.shape[0] !== targets.length) throw new ShapeError(`crossEntropy: logits [${logits.shape}] and ${targets.length} targets do not fit`);
  const [n, c] = logits.shape as [number, number];
  const oh = full([n, c], 0, { dtype: logits.dtype });
  const d = oh.data;
  for (let i = 0; i < n; i++) {
    const t = targets[i];
    if (!Number.isInteger(t) || t < 0 || t >= c) throw new ShapeError(`crossEntropy: target ${t} at ${i} is out of range [0, ${c})`);
    d[i * c + t] = 1;
  }
  const onehot = new Tensor(logits.backend.fromHost(d), [n, c], logits.dtype, logits.backend);
  return div(sum(mul(logSoftmax(logits, 1), onehot)), -n);
}
