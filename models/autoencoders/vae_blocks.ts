// The VAE's building blocks, mirroring diffusers models/resnet.py (ResnetBlock2D without time embedding,
// Downsample2D, Upsample2D), models/attention_processor.py (Attention as the VAE mid-block uses it) and
// models/unets/unet_2d_blocks.py (DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D). Self-contained.
import { mergeHeads, pad, scaledDotProductAttention, silu, splitHeads, upsampleNearest2d } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { Conv2d, Dropout, GroupNorm, Linear } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";

/** Activations the VAE accepts (act_fn); SD-1.x uses "silu". */
export type VAEActFn = "silu";

/** Arguments shared by the VAE's blocks. */
export interface VAEBlockArgs {
  /** GroupNorm groups (norm_num_groups) */
  groups: number;
  /** GroupNorm eps (diffusers passes 1e-6 throughout the VAE) */
  eps: number;
  actFn: VAEActFn;
}

function act(fn: VAEActFn, x: Tensor): Tensor {
  switch (fn) {
    case "silu":
      return silu(x);
    default:
      fn satisfies never;
      throw new ConfigError(`VAE: unknown act_fn ${String(fn)}`);
  }
}

/** Residual block without time embedding: norm1, act, conv1, norm2, act, dropout, conv2, plus 1x1 conv_shortcut when channels change. */
export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  norm2: GroupNorm;
  dropout: Dropout;
  conv2: Conv2d;
  conv_shortcut: Conv2d | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly args: VAEBlockArgs,
  ) {
    super();
    this.norm1 = new GroupNorm(args.groups, inChannels, args.eps);
    this.conv1 = new Conv2d(inChannels, outChannels, 3, { padding: 1 });
    this.norm2 = new GroupNorm(args.groups, outChannels, args.eps);
    this.dropout = new Dropout(0);
    this.conv2 = new Conv2d(outChannels, outChannels, 3, { padding: 1 });
    this.conv_shortcut = inChannels !== outChannels ? new Conv2d(inChannels, outChannels, 1) : null;
  }
  /** (B, Cin, H, W) -> (B, Cout, H, W); output_scale_factor 1 */
  forward(x: Tensor): Tensor {
    let h = this.conv1.forward(act(this.args.actFn, this.norm1.forward(x))); // (B, Cout, H, W)
    h = this.conv2.forward(this.dropout.forward(act(this.args.actFn, this.norm2.forward(h))));
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    return skip.add(h);
  }
}

/** 3x3 stride-2 conv with padding 0 after an asymmetric zero pad (right 1, bottom 1), as diffusers' padding=0 path. */
export class Downsample2D extends Module {
  conv: Conv2d;
  constructor(readonly channels: number) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { stride: 2, padding: 0 });
  }
  /** (B, C, H, W) -> (B, C, floor(H/2), floor(W/2)) for even H, W */
  forward(x: Tensor): Tensor {
    return this.conv.forward(
      pad(x, [
        [0, 0],
        [0, 0],
        [0, 1],
        [0, 1],
      ]),
    ); // (B, C, H/2, W/2)
  }
}

/** Nearest 2x upsampling then a 3x3 conv (padding 1). */
export class Upsample2D extends Module {
  conv: Conv2d;
  constructor(readonly channels: number) {
    super();
    this.conv = new Conv2d(channels, channels, 3, { padding: 1 });
  }
  /** (B, C, H, W) -> (B, C, 2H, 2W) */
  forward(x: Tensor): Tensor {
    return this.conv.forward(upsampleNearest2d(x, 2));
  }
}

/**
 * Spatial self-attention of the VAE mid-block (diffusers Attention with group_norm, residual_connection,
 * rescale_output_factor 1, bias on every projection): heads = channels / attention_head_dim.
 */
export class Attention extends Module {
  group_norm: GroupNorm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  to_out: [Linear, Dropout];
  readonly heads: number;
  readonly dimHead: number;
  readonly scale: number;
  constructor(
    readonly channels: number,
    attentionHeadDim: number,
    args: Pick<VAEBlockArgs, "groups" | "eps">,
  ) {
    super();
    if (channels % attentionHeadDim !== 0)
      throw new ConfigError(
        `Attention: ${channels} channels are not divisible by attention_head_dim ${attentionHeadDim}`,
      );
    this.heads = channels / attentionHeadDim;
    this.dimHead = attentionHeadDim;
    this.scale = attentionHeadDim ** -0.5;
    this.group_norm = new GroupNorm(args.groups, channels, args.eps);
    this.to_q = new Linear(channels, channels);
    this.to_k = new Linear(channels, channels);
    this.to_v = new Linear(channels, channels);
    this.to_out = [new Linear(channels, channels), new Dropout(0)];
  }
  /** (B, C, H, W) -> (B, C, H, W): x + to_out(attention(group_norm(x))) */
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels)
      throw new ShapeError(`Attention: input must be (B, ${this.channels}, H, W), got [${x.shape}]`);
    const [b, c, h, w] = x.shape as [number, number, number, number];
    const n = h * w;
    const tokens = this.group_norm.forward(x).reshape([b, c, n]).permute(0, 2, 1); // (B, HW, C)
    const q = splitHeads(this.to_q.forward(tokens), this.heads); // (B, heads, HW, d)
    const k = splitHeads(this.to_k.forward(tokens), this.heads);
    const v = splitHeads(this.to_v.forward(tokens), this.heads);
    let o = mergeHeads(scaledDotProductAttention(q, k, v, { scale: this.scale })); // (B, HW, C)
    o = this.to_out[1].forward(this.to_out[0].forward(o));
    return o.permute(0, 2, 1).reshape([b, c, h, w]).add(x); // (B, C, H, W)
  }
}

/** `numLayers` resnets then an optional Downsample2D (diffusers DownEncoderBlock2D). */
export class DownEncoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  downsamplers: Downsample2D[] | null;
  constructor(inChannels: number, outChannels: number, numLayers: number, addDownsample: boolean, args: VAEBlockArgs) {
    super();
    this.resnets = Array.from(
      { length: numLayers },
      (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, args),
    );
    this.downsamplers = addDownsample ? [new Downsample2D(outChannels)] : null;
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets) h = r.forward(h);
    if (this.downsamplers) for (const d of this.downsamplers) h = d.forward(h);
    return h;
  }
}

/** `numLayers` resnets then an optional Upsample2D (diffusers UpDecoderBlock2D). */
export class UpDecoderBlock2D extends Module {
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[] | null;
  constructor(inChannels: number, outChannels: number, numLayers: number, addUpsample: boolean, args: VAEBlockArgs) {
    super();
    this.resnets = Array.from(
      { length: numLayers },
      (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, args),
    );
    this.upsamplers = addUpsample ? [new Upsample2D(outChannels)] : null;
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets) h = r.forward(h);
    if (this.upsamplers) for (const u of this.upsamplers) h = u.forward(h);
    return h;
  }
}

/** resnet, then (attention, resnet) once (diffusers UNetMidBlock2D with num_layers 1, no time embedding). */
export class UNetMidBlock2D extends Module {
  attentions: Attention[];
  resnets: ResnetBlock2D[];
  constructor(channels: number, attentionHeadDim: number, args: VAEBlockArgs) {
    super();
    this.attentions = [new Attention(channels, attentionHeadDim, args)];
    this.resnets = [new ResnetBlock2D(channels, channels, args), new ResnetBlock2D(channels, channels, args)];
  }
  /** (B, C, H, W) -> (B, C, H, W) */
  forward(x: Tensor): Tensor {
    let h = this.resnets[0].forward(x);
    for (let i = 0; i < this.attentions.length; i++) h = this.resnets[i + 1].forward(this.attentions[i].forward(h));
    return h;
  }
}
