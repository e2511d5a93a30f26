// the UNet's down, mid and up blocks with diffusers' skip-connection bookkeeping
// mirrors diffusers models/unets/unet_2d_blocks.py (DownBlock2D, CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D)
import { checkpoint, concat, ConfigError, ShapeError } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { Transformer2DModel } from "../attention.ts";
import { Module } from "../nn/index.ts";
import { Downsample2D, ResnetBlock2D, Upsample2D } from "../resnet.ts";

export const DOWN_BLOCK_TYPES = ["CrossAttnDownBlock2D", "DownBlock2D"] as const;
export const UP_BLOCK_TYPES = ["UpBlock2D", "CrossAttnUpBlock2D"] as const;
export type DownBlockType = (typeof DOWN_BLOCK_TYPES)[number];
export type UpBlockType = (typeof UP_BLOCK_TYPES)[number];

/** What every block is built from (diffusers get_down_block / get_up_block arguments). */
export interface BlockArgs {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  resnetEps: number;
  resnetActFn: string;
  resnetGroups: number;
  /** number of heads (diffusers' attention_head_dim of SD-1.x configs) */
  numAttentionHeads: number;
  crossAttentionDim: number;
  transformerLayersPerBlock: number;
  useLinearProjection: boolean;
  upcastAttention: boolean;
  dropout?: number;
  outputScaleFactor?: number;
}

/** Down block output: the hidden states and the skip tensors it hands to the up path. */
export interface DownBlockOutput {
  hidden: Tensor;
  resSamples: Tensor[];
}

/** Blocks whose resnets and transformers may recompute their forward during backward. */
interface Checkpointable {
  /** recompute each resnet and transformer during backward instead of keeping its activations */
  _gradientCheckpointing: boolean;
}

const trainable = (m: Module): Tensor[] => m.parameters().filter((p) => p.requiresGrad);

/** `r.forward(h, temb)`, checkpointed when the block asks for it (diffusers' gradient_checkpointing). */
function runResnet(blk: Checkpointable, r: ResnetBlock2D, h: Tensor, temb: Tensor): Tensor {
  return blk._gradientCheckpointing
    ? checkpoint((x, t) => r.forward(x!, t!), [h, temb], trainable(r))
    : r.forward(h, temb);
}

/** `t.forward(h, encoderHiddenStates)`, checkpointed when the block asks for it. */
function runTransformer(blk: Checkpointable, t: Transformer2DModel, h: Tensor, ehs: Tensor): Tensor {
  return blk._gradientCheckpointing
    ? checkpoint((x, e) => t.forward(x!, e!), [h, ehs], trainable(t))
    : t.forward(h, ehs);
}

function resnet(a: BlockArgs, inChannels: number, outChannels: number): ResnetBlock2D {
  return new ResnetBlock2D({
    inChannels,
    outChannels,
    tembChannels: a.tembChannels,
    groups: a.resnetGroups,
    eps: a.resnetEps,
    dropout: a.dropout ?? 0,
    actFn: a.resnetActFn,
    outputScaleFactor: a.outputScaleFactor ?? 1,
  });
}

function transformer(a: BlockArgs, channels: number): Transformer2DModel {
  if (channels % a.numAttentionHeads !== 0)
    throw new ConfigError(`Transformer2DModel: ${channels} channels do not split into ${a.numAttentionHeads} heads`);
  return new Transformer2DModel({
    numAttentionHeads: a.numAttentionHeads,
    attentionHeadDim: channels / a.numAttentionHeads,
    inChannels: channels,
    numLayers: a.transformerLayersPerBlock,
    crossAttentionDim: a.crossAttentionDim,
    normNumGroups: a.resnetGroups,
    useLinearProjection: a.useLinearProjection,
    upcastAttention: a.upcastAttention,
  });
}

/** numLayers resnets, then a Downsample2D unless it is the last block. */
export class DownBlock2D extends Module {
  _gradientCheckpointing = false;
  resnets: ResnetBlock2D[];
  downsamplers: Downsample2D[] | null;
  constructor(a: BlockArgs, addDownsample: boolean, downsamplePadding: number) {
    super();
    this.resnets = Array.from({ length: a.numLayers }, (_, i) =>
      resnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels),
    );
    this.downsamplers = addDownsample ? [new Downsample2D(a.outChannels, a.outChannels, downsamplePadding)] : null;
  }
  forward(x: Tensor, temb: Tensor, _encoderHiddenStates: Tensor | null = null): DownBlockOutput {
    const resSamples: Tensor[] = [];
    let h = x;
    for (const r of this.resnets) {
      h = runResnet(this, r, h, temb); // (B, Cout, H, W)
      resSamples.push(h);
    }
    if (this.downsamplers) {
      for (const d of this.downsamplers) h = d.forward(h); // (B, Cout, H/2, W/2)
      resSamples.push(h);
    }
    return { hidden: h, resSamples };
  }
}

/** numLayers (resnet, transformer) pairs, then a Downsample2D unless it is the last block. */
export class CrossAttnDownBlock2D extends Module {
  _gradientCheckpointing = false;
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  downsamplers: Downsample2D[] | null;
  constructor(a: BlockArgs, addDownsample: boolean, downsamplePadding: number) {
    super();
    this.resnets = Array.from({ length: a.numLayers }, (_, i) =>
      resnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels),
    );
    this.attentions = Array.from({ length: a.numLayers }, () => transformer(a, a.outChannels));
    this.downsamplers = addDownsample ? [new Downsample2D(a.outChannels, a.outChannels, downsamplePadding)] : null;
  }
  forward(x: Tensor, temb: Tensor, encoderHiddenStates: Tensor | null): DownBlockOutput {
    if (!encoderHiddenStates) throw new ShapeError("CrossAttnDownBlock2D: encoder hidden states are required");
    const resSamples: Tensor[] = [];
    let h = x;
    for (let i = 0; i < this.resnets.length; i++) {
      h = runResnet(this, this.resnets[i]!, h, temb); // (B, Cout, H, W)
      h = runTransformer(this, this.attentions[i]!, h, encoderHiddenStates);
      resSamples.push(h);
    }
    if (this.downsamplers) {
      for (const d of this.downsamplers) h = d.forward(h); // (B, Cout, H/2, W/2)
      resSamples.push(h);
    }
    return { hidden: h, resSamples };
  }
}

/** resnet, then numLayers (transformer, resnet) pairs, at the lowest resolution. */
export class UNetMidBlock2DCrossAttn extends Module {
  _gradientCheckpointing = false;
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  constructor(a: BlockArgs) {
    super();
    const c = a.inChannels;
    this.resnets = Array.from({ length: a.numLayers + 1 }, () => resnet(a, c, c));
    this.attentions = Array.from({ length: a.numLayers }, () => transformer(a, c));
  }
  forward(x: Tensor, temb: Tensor, encoderHiddenStates: Tensor): Tensor {
    let h = runResnet(this, this.resnets[0]!, x, temb); // (B, C, H, W)
    for (let i = 0; i < this.attentions.length; i++) {
      h = runTransformer(this, this.attentions[i]!, h, encoderHiddenStates);
      h = runResnet(this, this.resnets[i + 1]!, h, temb);
    }
    return h;
  }
}

/**
 * Resnet i of an up block takes cat(hidden, skip) where the skips are consumed last-first; its
 * input width is prevOutputChannels (i = 0) or outChannels, plus the skip's width: inChannels for
 * the last resnet, outChannels otherwise.
 */
function upResnets(a: BlockArgs, prevOutputChannels: number): ResnetBlock2D[] {
  return Array.from({ length: a.numLayers }, (_, i) => {
    const skip = i === a.numLayers - 1 ? a.inChannels : a.outChannels;
    const input = i === 0 ? prevOutputChannels : a.outChannels;
    return resnet(a, input + skip, a.outChannels);
  });
}

function popSkip(block: string, skips: Tensor[], h: Tensor): Tensor {
  const s = skips.pop();
  if (!s) throw new ShapeError(`${block}: ran out of skip connections`);
  if (s.shape[0] !== h.shape[0] || s.shape[2] !== h.shape[2] || s.shape[3] !== h.shape[3]) {
    throw new ShapeError(`${block}: skip [${s.shape}] does not fit hidden states [${h.shape}]`);
  }
  return concat([h, s], 1); // (B, C + Cskip, H, W)
}

/** numLayers resnets over cat(hidden, skip), then an Upsample2D unless it is the last block. */
export class UpBlock2D extends Module {
  _gradientCheckpointing = false;
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[] | null;
  constructor(a: BlockArgs, prevOutputChannels: number, addUpsample: boolean) {
    super();
    this.resnets = upResnets(a, prevOutputChannels);
    this.upsamplers = addUpsample ? [new Upsample2D(a.outChannels, a.outChannels)] : null;
  }
  /** `resSamples` holds this block's skips in down-path order (it is not modified). */
  forward(
    x: Tensor,
    resSamples: readonly Tensor[],
    temb: Tensor,
    _encoderHiddenStates: Tensor | null = null,
    upsampleSize: readonly [number, number] | null = null,
  ): Tensor {
    const skips = [...resSamples];
    let h = x;
    for (const r of this.resnets) h = runResnet(this, r, popSkip("UpBlock2D", skips, h), temb); // (B, Cout, H, W)
    if (this.upsamplers) for (const u of this.upsamplers) h = u.forward(h, upsampleSize); // (B, Cout, 2H, 2W)
    return h;
  }
}

/** numLayers (resnet over cat(hidden, skip), transformer) pairs, then an Upsample2D unless last. */
export class CrossAttnUpBlock2D extends Module {
  _gradientCheckpointing = false;
  attentions: Transformer2DModel[];
  resnets: ResnetBlock2D[];
  upsamplers: Upsample2D[] | null;
  constructor(a: BlockArgs, prevOutputChannels: number, addUpsample: boolean) {
    super();
    this.resnets = upResnets(a, prevOutputChannels);
    this.attentions = Array.from({ length: a.numLayers }, () => transformer(a, a.outChannels));
    this.upsamplers = addUpsample ? [new Upsample2D(a.outChannels, a.outChannels)] : null;
  }
  forward(
    x: Tensor,
    resSamples: readonly Tensor[],
    temb: Tensor,
    encoderHiddenStates: Tensor | null,
    upsampleSize: readonly [number, number] | null = null,
  ): Tensor {
    if (!encoderHiddenStates) throw new ShapeError("CrossAttnUpBlock2D: encoder hidden states are required");
    const skips = [...resSamples];
    let h = x;
    for (let i = 0; i < this.resnets.length; i++) {
      h = runResnet(this, this.resnets[i]!, popSkip("CrossAttnUpBlock2D", skips, h), temb); // (B, Cout, H, W)
      h = runTransformer(this, this.attentions[i]!, h, encoderHiddenStates);
    }
    if (this.upsamplers) for (const u of this.upsamplers) h = u.forward(h, upsampleSize); // (B, Cout, 2H, 2W)
    return h;
  }
}

export type DownBlock = DownBlock2D | CrossAttnDownBlock2D;
export type UpBlock = UpBlock2D | CrossAttnUpBlock2D;

/** Builds a down block by its diffusers type name. */
export function getDownBlock(
  type: DownBlockType,
  a: BlockArgs,
  addDownsample: boolean,
  downsamplePadding: number,
): DownBlock {
  switch (type) {
    case "DownBlock2D":
      return new DownBlock2D(a, addDownsample, downsamplePadding);
    case "CrossAttnDownBlock2D":
      return new CrossAttnDownBlock2D(a, addDownsample, downsamplePadding);
    default:
      void (type satisfies never);
      throw new ConfigError(
        `getDownBlock: unsupported down block type "${String(type)}" (supported: ${DOWN_BLOCK_TYPES.join(", ")})`,
      );
  }
}

/** Builds an up block by its diffusers type name. */
export function getUpBlock(type: UpBlockType, a: BlockArgs, prevOutputChannels: number, addUpsample: boolean): UpBlock {
  switch (type) {
    case "UpBlock2D":
      return new UpBlock2D(a, prevOutputChannels, addUpsample);
    case "CrossAttnUpBlock2D":
      return new CrossAttnUpBlock2D(a, prevOutputChannels, addUpsample);
    default:
      void (type satisfies never);
      throw new ConfigError(
        `getUpBlock: unsupported up block type "${String(type)}" (supported: ${UP_BLOCK_TYPES.join(", ")})`,
      );
  }
}
