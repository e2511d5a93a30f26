// Attention (query from hidden states, key/value from hidden or encoder states) and its processors
// mirrors diffusers models/attention_processor.py Attention, AttnProcessor and SlicedAttnProcessor
import {
  batchToHeads,
  concat,
  headsToBatch,
  narrowSlice,
  reshape,
  permute,
  scaledDotProductAttention,
  ShapeError,
} from "../engine/index.ts";
import type { Tensor } from "../engine/index.ts";
import { Dropout, Linear, Module } from "./nn/index.ts";

/**
 * Computes an Attention layer's output from its inputs. A processor replaces how queries, keys and
 * values are formed (Custom Diffusion swaps to_k/to_v of cross-attention for its own layers and
 * detaches the start-of-text token); `attn.attend(q, k, v)` then does the shared rest.
 * A processor that extends Module contributes its parameters under `<attn>.processor.*`.
 */
export interface AttentionProcessor {
  call(attn: Attention, hiddenStates: Tensor, encoderHiddenStates: Tensor | null): Tensor;
}

/** The standard processor: q = to_q(x), k = to_k(c), v = to_v(c) with c = encoder states or x. */
export class AttnProcessor implements AttentionProcessor {
  call(attn: Attention, hiddenStates: Tensor, encoderHiddenStates: Tensor | null): Tensor {
    const context = encoderHiddenStates ?? hiddenStates;
    const q = attn.to_q.forward(hiddenStates); // (B, Lq, H*d)
    const k = attn.to_k.forward(context); // (B, Lk, H*d)
    const v = attn.to_v.forward(context); // (B, Lk, H*d)
    return attn.attend(q, k, v);
  }
}

/**
 * Keeps the values of x (B, L, C) but stops the gradient through its first token (index 0 along
 * L), as Custom Diffusion does for the start-of-text token's key and value.
 */
export function detachFirstToken(x: Tensor): Tensor {
  if (x.ndim !== 3 || x.shape[1] < 1)
    throw new ShapeError(`detachFirstToken: input must be (B, L, C) with L >= 1, got [${x.shape}]`);
  if (x.shape[1] === 1) return x.detach();
  const first = narrowSlice(x, 1, 0, 1).detach(); // (B, 1, C)
  return concat([first, narrowSlice(x, 1, 1)], 1); // (B, L, C)
}

export interface AttentionArgs {
  queryDim: number;
  /** width of encoder states for cross-attention; null means self-attention (queryDim) */
  crossAttentionDim?: number | null;
  heads?: number;
  dimHead?: number;
  dropout?: number;
  /** bias on to_q / to_k / to_v (false in Stable Diffusion) */
  bias?: boolean;
  /** bias on to_out.0 */
  outBias?: boolean;
  /** diffusers computes scores in float32 for half inputs; the engine is float32 or wider already */
  upcastAttention?: boolean;
}

/** Multi-head attention with to_q/to_k/to_v and to_out = [Linear, Dropout]; scale dim_head^-0.5. */
export class Attention extends Module {
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: [Linear, Dropout];
  /** not a parameter unless the processor is a Module (then its keys sit under `processor.`) */
  processor: AttentionProcessor;
  readonly heads: number;
  readonly dimHead: number;
  readonly innerDim: number;
  readonly queryDim: number;
  readonly crossAttentionDim: number;
  readonly isCrossAttention: boolean;
  readonly scale: number;
  readonly upcastAttention: boolean;
  /** when set, the (B*heads) attention batch runs this many at a time (less peak memory) */
  sliceSize: number | null = null;

  constructor(args: AttentionArgs) {
    super();
    this.heads = args.heads ?? 8;
    this.dimHead = args.dimHead ?? 64;
    this.innerDim = this.heads * this.dimHead;
    this.queryDim = args.queryDim;
    this.isCrossAttention = args.crossAttentionDim != null;
    this.crossAttentionDim = args.crossAttentionDim ?? args.queryDim;
    this.scale = this.dimHead ** -0.5;
    this.upcastAttention = args.upcastAttention ?? false;
    const bias = args.bias ?? false;
    this.to_q = new Linear(this.queryDim, this.innerDim, bias);
    this.to_k = new Linear(this.crossAttentionDim, this.innerDim, bias);
    this.to_v = new Linear(this.crossAttentionDim, this.innerDim, bias);
    this.to_out = [new Linear(this.innerDim, this.queryDim, args.outBias ?? true), new Dropout(args.dropout ?? 0)];
    this.processor = new AttnProcessor();
  }

  /** hidden (B, Lq, queryDim), encoder states (B, Lk, crossAttentionDim) or null -> (B, Lq, queryDim) */
  forward(hiddenStates: Tensor, encoderHiddenStates: Tensor | null = null): Tensor {
    if (hiddenStates.ndim !== 3 || hiddenStates.shape[2] !== this.queryDim) {
      throw new ShapeError(`Attention: hidden states must be (B, L, ${this.queryDim}), got [${hiddenStates.shape}]`);
    }
    if (encoderHiddenStates) {
      const e = encoderHiddenStates.shape;
      if (encoderHiddenStates.ndim !== 3 || e[2] !== this.crossAttentionDim || e[0] !== hiddenStates.shape[0]) {
        throw new ShapeError(
          `Attention: encoder hidden states must be (${hiddenStates.shape[0]}, L, ${this.crossAttentionDim}), got [${e}]`,
        );
      }
    }
    return this.processor.call(this, hiddenStates, encoderHiddenStates);
  }

  /** Replaces the processor (returns this). */
  setProcessor(p: AttentionProcessor): this {
    this.processor = p;
    return this;
  }

  /** (B, L, H*d) -> (B*H, L, d): heads folded into the batch. */
  headToBatchDim(x: Tensor): Tensor {
    return this.heads === 1 ? x : headsToBatch(x, this.heads);
  }

  /** (B*H, L, d) -> (B, L, H*d) */
  batchToHeadDim(x: Tensor): Tensor {
    return this.heads === 1 ? x : batchToHeads(x, this.heads);
  }

  /**
   * softmax(q k^T * scale) v per head, then to_out: q (B, Lq, H*d), k and v (B, Lk, H*d)
   * -> (B, Lq, queryDim). Processors call this after forming q, k and v.
   */
  attend(q: Tensor, k: Tensor, v: Tensor): Tensor {
    if (this.sliceSize === null && this.heads > 1) {
      // every head on its own slice of the last axis: no head transposes
      const h = scaledDotProductAttention(q, k, v, { scale: this.scale, heads: this.heads }); // (B, Lq, H*d)
      return this.to_out[1].forward(this.to_out[0].forward(h)); // (B, Lq, queryDim)
    }
    const qh = this.headToBatchDim(q); // (B*H, Lq, d)
    const kh = this.headToBatchDim(k); // (B*H, Lk, d)
    const vh = this.headToBatchDim(v); // (B*H, Lk, d)
    const n = qh.shape[0];
    let o: Tensor;
    if (this.sliceSize === null || this.sliceSize >= n) {
      o = scaledDotProductAttention(qh, kh, vh, { scale: this.scale }); // (B*H, Lq, d)
    } else {
      const parts: Tensor[] = [];
      for (let s = 0; s < n; s += this.sliceSize) {
        const e = Math.min(n, s + this.sliceSize);
        parts.push(
          scaledDotProductAttention(narrowSlice(qh, 0, s, e), narrowSlice(kh, 0, s, e), narrowSlice(vh, 0, s, e), {
            scale: this.scale,
          }),
        );
      }
      o = concat(parts, 0); // (B*H, Lq, d)
    }
    const h = this.batchToHeadDim(o); // (B, Lq, H*d)
    return this.to_out[1].forward(this.to_out[0].forward(h)); // (B, Lq, queryDim)
  }
}
