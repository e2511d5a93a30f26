// scaled dot-product attention as one primitive (torch.nn.functional.scaled_dot_product_attention):
// a fused, chunked backend kernel with an analytic backward, and the composite reference it must match
import { record, willRecord } from "../autograd.ts";
import type { AttentionParams, Storage } from "../backend/backend.ts";
import { full } from "../creation.ts";
import { ShapeError } from "../errors.ts";
import { broadcastShapes, sizeOf } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { add, mul, where } from "./elementwise.ts";
import { mm } from "./matmul.ts";
import { expand, permute, reshape } from "./movement.ts";
import { sumTo } from "./reduce.ts";
import { softmax } from "./softmax.ts";
import { out, same } from "./util.ts";

export interface AttentionOptions {
  /** additive mask broadcast to (..., Lq, Lk), or a 0/1 mask when `maskIsBoolean` (1 = keep) */
  mask?: Tensor | null;
  maskIsBoolean?: boolean;
  /** hide keys after the query position */
  causal?: boolean;
  /** defaults to 1/sqrt(head dim) */
  scale?: number;
  /**
   * Heads packed in the last axis: q (B, Lq, H d), k (B, Lk, H d), v (B, Lk, H dv) give (B, Lq, H dv),
   * each head attending on its own slice - the layout of a projection's output, with no head
   * transposes. Default 1: q (..., Lq, d) as usual.
   */
  heads?: number;
}

/** (Lq, Lk) additive mask with -inf where key j > query i (+ offset Lk - Lq). */
export function causalMask(lq: number, lk: number, like: Tensor): Tensor {
  const m = full([lq, lk], 0, { dtype: like.dtype });
  const data = m.data;
  for (let i = 0; i < lq; i++) for (let j = i + 1 + (lk - lq); j < lk; j++) data[i * lk + j] = -Infinity;
  return new Tensor(like.backend.fromHost(data), [lq, lk], like.dtype, like.backend);
}

function check(q: Tensor, k: Tensor, v: Tensor): void {
  same("attention", [q, k, v]);
  if (q.ndim < 2 || k.ndim < 2 || v.ndim < 2)
    throw new ShapeError(`attention: q, k, v must have rank >= 2, got [${q.shape}], [${k.shape}], [${v.shape}]`);
  const d = q.shape[q.ndim - 1];
  if (k.shape[k.ndim - 1] !== d)
    throw new ShapeError(`attention: query [${q.shape}] and key [${k.shape}] head sizes differ`);
  if (k.shape[k.ndim - 2] !== v.shape[v.ndim - 2])
    throw new ShapeError(`attention: key [${k.shape}] and value [${v.shape}] lengths differ`);
}

/**
 * The composite reference: softmax(q k^T * scale + mask) v from mm, softmax and elementwise ops,
 * materialising the (..., Lq, Lk) scores: the reference the fused kernel must match, and the path
 * for masks that require grad.
 */
export function attentionComposite(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  check(q, k, v);
  const d = q.shape[q.ndim - 1];
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  let s = mul(mm(q, k, false, true), scale); // (..., Lq, Lk)
  const lq = q.shape[q.ndim - 2],
    lk = k.shape[k.ndim - 2];
  if (opts.causal) s = add(s, causalMask(lq, lk, q));
  if (opts.mask) s = opts.maskIsBoolean ? where(opts.mask, s, -Infinity) : add(s, opts.mask);
  return mm(softmax(s, -1), v);
}

/**
 * softmax(q k^T * scale + mask) v for q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv), batch axes
 * broadcast. One primitive with a fused, chunked kernel (the (..., Lq, Lk) scores are never held
 * whole) and an analytic backward that recomputes them; a row whose keys are all masked gives zeros.
 * Runs {@link attentionComposite} when the mask requires grad.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (opts.heads !== undefined && opts.heads !== 1) return packedHeadsAttention(q, k, v, opts.heads, opts);
  check(q, k, v);
  // a mask that requires grad differentiates through the composite
  if (opts.mask?.requiresGrad) return attentionComposite(q, k, v, opts);
  const be = q.backend;
  const d = q.shape[q.ndim - 1],
    dv = v.shape[v.ndim - 1];
  const lq = q.shape[q.ndim - 2],
    lk = k.shape[k.ndim - 2];
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const batchShape = broadcastShapes(
    "attention",
    broadcastShapes("attention", q.shape.slice(0, -2), k.shape.slice(0, -2)),
    v.shape.slice(0, -2),
  );
  const batch = sizeOf(batchShape);
  const full3 = (t: Tensor, r: number, c: number): Tensor =>
    t.shape.slice(0, -2).join() === batchShape.join() ? t : expand(t, [...batchShape, r, c]);
  const qe = full3(q, lq, d),
    ke = full3(k, lk, d),
    ve = full3(v, lk, dv);
  // the mask as additive (mB, mQ, lk) with mB in {1, batch} and mQ in {1, lq}
  let mask: Tensor | null = null,
    maskStrideB = 0,
    maskStrideQ = 0;
  if (opts.mask) {
    let m = opts.mask;
    if (opts.maskIsBoolean) m = where(m, full([], 0, { dtype: q.dtype }), full([], -Infinity, { dtype: q.dtype }));
    if (m.dtype !== q.dtype) throw new ShapeError(`attention: mask dtype ${m.dtype} differs from ${q.dtype}`);
    const mshape = [...new Array<number>(Math.max(0, q.ndim - m.ndim)).fill(1), ...m.shape];
    const mBatch = mshape.slice(0, -2),
      mq = mshape[mshape.length - 2]!,
      mk = mshape[mshape.length - 1]!;
    broadcastShapes("attention mask", [...batchShape, lq, lk], mshape);
    const rows = mq === 1 ? 1 : lq;
    const perItem = sizeOf(mBatch) === 1;
    const target = perItem ? [1, rows, lk] : [...batchShape, rows, lk];
    m = reshape(m, mshape);
    if (mk !== lk || (!perItem && mBatch.join() !== batchShape.join()))
      m = expand(m, perItem ? [...mBatch, rows, lk] : target);
    mask = reshape(m, [perItem ? 1 : batch, rows, lk]);
    maskStrideB = perItem ? 0 : rows * lk;
    maskStrideQ = rows === 1 ? 0 : lk;
  }
  const p: AttentionParams = {
    batch,
    lq,
    lk,
    d,
    dv,
    scale,
    causal: opts.causal ?? false,
    maskStrideB,
    maskStrideQ,
    forBackward: willRecord([q, k, v]),
  };
  const r = be.attention(qe.storage, ke.storage, ve.storage, mask ? mask.storage : null, p);
  const saved = r.saved ?? null;
  const y = out(q, r.o, [...batchShape, lq, dv]); // (..., Lq, dv)
  return record(
    y,
    "scaledDotProductAttention",
    [q, k, v],
    (g) => {
      const gr = be.attentionBackward(
        qe.storage,
        ke.storage,
        ve.storage,
        mask ? mask.storage : null,
        r.o,
        r.lse,
        g.storage,
        p,
        saved,
      );
      const back = (t: Tensor, s: Storage, rows: number, cols: number): Tensor | null => {
        if (!t.requiresGrad) return null;
        const full = out(q, s, [...batchShape, rows, cols]);
        return full.shape.join() === t.shape.join() ? full : sumTo(full, t.shape);
      };
      return [back(q, gr.dq, lq, d), back(k, gr.dk, lk, d), back(v, gr.dv, lk, dv)];
    },
    saved ? () => saved.release() : undefined,
  );
}

/** (B, L, H d) -> (B, H, L, d): the heads of a packed projection as their own axis (one head: a reshape). */
export function splitHeads(x: Tensor, heads: number): Tensor {
  if (x.ndim !== 3 || !Number.isInteger(heads) || heads < 1 || x.shape[2]! % heads !== 0) {
    throw new ShapeError(`splitHeads: need (B, L, heads * d) with ${heads} heads, got [${x.shape}]`);
  }
  const [b, l, hd] = x.shape as [number, number, number];
  const y = reshape(x, [b, l, heads, hd / heads]);
  return heads === 1 ? reshape(y, [b, 1, l, hd]) : permute(y, [0, 2, 1, 3]);
}

/** (B, H, L, d) -> (B, L, H d): the inverse of {@link splitHeads}. */
export function mergeHeads(x: Tensor): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`mergeHeads: need (B, heads, L, d), got [${x.shape}]`);
  const [b, h, l, d] = x.shape as [number, number, number, number];
  return reshape(h === 1 ? x : permute(x, [0, 2, 1, 3]), [b, l, h * d]);
}

/** (B, L, H d) -> (B H, L, d): the heads folded into the batch. */
export function headsToBatch(x: Tensor, heads: number): Tensor {
  const s = splitHeads(x, heads);
  const [b, h, l, d] = s.shape as [number, number, number, number];
  return reshape(s, [b * h, l, d]);
}

/** (B H, L, d) -> (B, L, H d): the inverse of {@link headsToBatch}. */
export function batchToHeads(x: Tensor, heads: number): Tensor {
  const [bh, l, d] = x.shape as [number, number, number];
  return mergeHeads(reshape(x, [bh / heads, heads, l, d]));
}

/** {@link scaledDotProductAttention} with `heads`: the fused kernel reads and writes the packed layout directly. */
function packedHeadsAttention(q: Tensor, k: Tensor, v: Tensor, H: number, opts: AttentionOptions): Tensor {
  same("attention", [q, k, v]);
  if (!Number.isInteger(H) || H < 1) throw new ShapeError(`attention: heads must be a positive integer, got ${H}`);
  if (q.ndim !== 3 || k.ndim !== 3 || v.ndim !== 3)
    throw new ShapeError(
      `attention with heads: q, k, v must be (B, L, heads * d), got [${q.shape}], [${k.shape}], [${v.shape}]`,
    );
  const [b, lq, hd] = q.shape as [number, number, number];
  const [bk, lk, hdk] = k.shape as [number, number, number];
  const [bv, lv, hdv] = v.shape as [number, number, number];
  if (bk !== b || bv !== b)
    throw new ShapeError(`attention with heads: batch sizes differ, q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
  if (lv !== lk) throw new ShapeError(`attention: key [${k.shape}] and value [${v.shape}] lengths differ`);
  if (hd % H !== 0 || hdv % H !== 0 || hdk !== hd)
    throw new ShapeError(`attention: ${H} heads do not divide q [${q.shape}], k [${k.shape}], v [${v.shape}] evenly`);
  const d = hd / H,
    dv = hdv / H;
  const { heads: _h, ...rest } = opts;
  const be = q.backend;
  if (opts.mask)
    return batchToHeads(scaledDotProductAttention(headsToBatch(q, H), headsToBatch(k, H), headsToBatch(v, H), rest), H);
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const p: AttentionParams = {
    batch: b * H,
    lq,
    lk,
    d,
    dv,
    scale,
    causal: opts.causal ?? false,
    maskStrideB: 0,
    maskStrideQ: 0,
    forBackward: willRecord([q, k, v]),
    heads: H,
  };
  const r = be.attention(q.storage, k.storage, v.storage, null, p);
  const saved = r.saved ?? null;
  const y = out(q, r.o, [b, lq, hdv]);
  return record(
    y,
    "scaledDotProductAttention",
    [q, k, v],
    (g) => {
      const gr = be.attentionBackward(q.storage, k.storage, v.storage, null, r.o, r.lse, g.storage, p, saved);
      return [
        q.requiresGrad ? out(q, gr.dq, q.shape) : null,
        k.requiresGrad ? out(q, gr.dk, k.shape) : null,
        v.requiresGrad ? out(q, gr.dv, v.shape) : null,
      ];
    },
    saved ? () => saved.release() : undefined,
  );
}
