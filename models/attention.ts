// transformer parts of the UNet: GEGLU, FeedForward, BasicTransformerBlock, Transformer2DModel
// mirrors diffusers models/attention.py and models/transformers/transformer_2d.py (continuous input, SD-1.x path)
import { add, geglu, mm, reshape, ShapeError } from "../engine/index.ts";
import type { Tensor } from "../engine/index.ts";
import { Attention } from "./attention_processor.ts";
import { Conv2d, Dropout, GroupNorm, LayerNorm, Linear, Module } from "./nn/index.ts";

/** Gated GELU: proj to 2*dimOut, split into (hidden, gate), hidden * gelu(gate) with the exact erf gelu. */
export class GEGLU extends Module {
  proj: Linear;
  constructor(
    readonly dimIn: number,
    readonly dimOut: number,
  ) {
    super();
    this.proj = new Linear(dimIn, dimOut * 2);
  }
  /** hidden * gelu(gate) with [hidden, gate] = proj(x) split in halves, as one fused op */
  forward(x: Tensor): Tensor {
    return geglu(this.proj.forward(x)); // (..., dimOut)
  }
}

/** net = [GEGLU(dim, 4 dim), Dropout, Linear(4 dim, dimOut)]: keys ff.net.0.proj.*, ff.net.2.* */
export class FeedForward extends Module {
  net: [GEGLU, Dropout, Linear];
  constructor(dim: number, opts: { dimOut?: number; mult?: number; dropout?: number } = {}) {
    super();
    const inner = dim * (opts.mult ?? 4);
    this.net = [new GEGLU(dim, inner), new Dropout(opts.dropout ?? 0), new Linear(inner, opts.dimOut ?? dim)];
  }
  forward(x: Tensor): Tensor {
    return this.net[2].forward(this.net[1].forward(this.net[0].forward(x)));
  }
}

export interface BasicTransformerBlockArgs {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
  dropout?: number;
  upcastAttention?: boolean;
  /** LayerNorm eps of norm1..3 (diffusers default 1e-5) */
  normEps?: number;
}

/** x += attn1(norm1 x); x += attn2(norm2 x, context); x += ff(norm3 x). */
export class BasicTransformerBlock extends Module {
  norm1: LayerNorm;
  attn1: Attention;
  norm2: LayerNorm;
  attn2: Attention;
  norm3: LayerNorm;
  ff: FeedForward;
  constructor(a: BasicTransformerBlockArgs) {
    super();
    const eps = a.normEps ?? 1e-5;
    const common = {
      heads: a.heads,
      dimHead: a.dimHead,
      dropout: a.dropout ?? 0,
      upcastAttention: a.upcastAttention ?? false,
    };
    this.norm1 = new LayerNorm(a.dim, eps);
    this.attn1 = new Attention({ queryDim: a.dim, ...common });
    this.norm2 = new LayerNorm(a.dim, eps);
    this.attn2 = new Attention({ queryDim: a.dim, crossAttentionDim: a.crossAttentionDim, ...common });
    this.norm3 = new LayerNorm(a.dim, eps);
    this.ff = new FeedForward(a.dim, { dropout: a.dropout ?? 0 });
  }
  /** x (B, L, dim), context (B, Lc, crossAttentionDim) -> (B, L, dim) */
  forward(x: Tensor, encoderHiddenStates: Tensor): Tensor {
    let h = add(this.attn1.forward(this.norm1.forward(x)), x); // (B, L, dim)
    h = add(this.attn2.forward(this.norm2.forward(h), encoderHiddenStates), h);
    return add(this.ff.forward(this.norm3.forward(h)), h);
  }
}

export interface Transformer2DModelArgs {
  numAttentionHeads: number;
  attentionHeadDim: number;
  inChannels: number;
  numLayers?: number;
  crossAttentionDim: number;
  normNumGroups?: number;
  useLinearProjection?: boolean;
  upcastAttention?: boolean;
  dropout?: number;
}

/**
 * Spatial transformer over (B, C, H, W): GroupNorm (eps 1e-6), proj_in (1x1 Conv2d, or Linear with
 * `useLinearProjection`), transformer blocks over the H*W tokens, proj_out, plus the residual.
 */
export class Transformer2DModel extends Module {
  norm: GroupNorm;
  proj_in: Conv2d | Linear;
  transformer_blocks: BasicTransformerBlock[];
  proj_out: Conv2d | Linear;
  readonly inChannels: number;
  readonly innerDim: number;
  readonly useLinearProjection: boolean;

  constructor(a: Transformer2DModelArgs) {
    super();
    this.inChannels = a.inChannels;
    this.innerDim = a.numAttentionHeads * a.attentionHeadDim;
    this.useLinearProjection = a.useLinearProjection ?? false;
    this.norm = new GroupNorm(a.normNumGroups ?? 32, a.inChannels, 1e-6);
    this.proj_in = this.useLinearProjection
      ? new Linear(a.inChannels, this.innerDim)
      : new Conv2d(a.inChannels, this.innerDim, 1);
    this.transformer_blocks = Array.from(
      { length: a.numLayers ?? 1 },
      () =>
        new BasicTransformerBlock({
          dim: this.innerDim,
          heads: a.numAttentionHeads,
          dimHead: a.attentionHeadDim,
          crossAttentionDim: a.crossAttentionDim,
          dropout: a.dropout ?? 0,
          upcastAttention: a.upcastAttention ?? false,
        }),
    );
    this.proj_out = this.useLinearProjection
      ? new Linear(this.innerDim, a.inChannels)
      : new Conv2d(this.innerDim, a.inChannels, 1);
  }

  /** x (B, C, H, W), context (B, L, crossAttentionDim) -> (B, C, H, W) */
  forward(x: Tensor, encoderHiddenStates: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`Transformer2DModel: input must be (B, ${this.inChannels}, H, W), got [${x.shape}]`);
    const [b, c, h, w] = x.shape as [number, number, number, number];
    // a 1x1 conv and a linear layer on the channels-last tokens are the same product; the weight
    // is read as (out, in) either way, and the transpose flags of mm replace the permutes
    const normed = reshape(this.norm.forward(x), [b, c, h * w]); // (B, C, HW)
    const win = reshape(this.proj_in.weight, [this.innerDim, c]); // (inner, C)
    let tokens = mm(normed, win, true, true); // (B, HW, inner)
    if (this.proj_in.bias) tokens = add(tokens, this.proj_in.bias);
    for (const blk of this.transformer_blocks) tokens = blk.forward(tokens, encoderHiddenStates); // (B, HW, inner)
    const wout = reshape(this.proj_out.weight, [c, this.innerDim]); // (C, inner)
    let y = mm(wout, tokens, false, true); // (B, C, HW)
    if (this.proj_out.bias) y = add(y, reshape(this.proj_out.bias, [c, 1]));
    return add(reshape(y, [b, c, h, w]), x); // (B, C, H, W)
  }
}
