// VAE encoder, decoder and the diagonal Gaussian posterior, mirroring diffusers
// models/autoencoders/vae.py (Encoder, Decoder, DiagonalGaussianDistribution).
import { randn } from "../../engine/index.ts";
import type { Generator, Tensor } from "../../engine/index.ts";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { Conv2d, GroupNorm } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import { DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D } from "./vae_blocks.ts";
import type { VAEActFn, VAEBlockArgs } from "./vae_blocks.ts";

/** Block types the SD-1.x VAE uses. */
export type VAEDownBlockType = "DownEncoderBlock2D";
export type VAEUpBlockType = "UpDecoderBlock2D";

/** The config fields Encoder and Decoder read. */
export interface VAECoderConfig {
  in_channels: number;
  out_channels: number;
  block_out_channels: readonly number[];
  layers_per_block: number;
  norm_num_groups: number;
  act_fn: VAEActFn;
}

const VAE_EPS = 1e-6;

/** conv_in, DownEncoderBlock2D per level (downsampling all but the last), mid block, norm, SiLU, conv_out to 2x channels (mean, logvar). */
export class Encoder extends Module {
  conv_in: Conv2d;
  down_blocks: DownEncoderBlock2D[];
  mid_block: UNetMidBlock2D;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(readonly config: VAECoderConfig & { down_block_types: readonly VAEDownBlockType[]; double_z?: boolean }) {
    super();
    const boc = config.block_out_channels;
    const args: VAEBlockArgs = { groups: config.norm_num_groups, eps: VAE_EPS, actFn: config.act_fn };
    this.conv_in = new Conv2d(config.in_channels, boc[0], 3, { padding: 1 });
    let out = boc[0];
    this.down_blocks = config.down_block_types.map((type, i) => {
      if (type !== "DownEncoderBlock2D")
        throw new ConfigError(`Encoder: down block type must be DownEncoderBlock2D, got "${String(type)}"`);
      const inCh = out;
      out = boc[i];
      return new DownEncoderBlock2D(inCh, out, config.layers_per_block, i !== boc.length - 1, args);
    });
    const last = boc[boc.length - 1];
    this.mid_block = new UNetMidBlock2D(last, last, args);
    this.conv_norm_out = new GroupNorm(config.norm_num_groups, last, VAE_EPS);
    this.conv_out = new Conv2d(last, (config.double_z ?? true) ? 2 * config.out_channels : config.out_channels, 3, {
      padding: 1,
    });
  }
  /** (B, in, H, W) -> (B, 2*latent, H/2^(levels-1), W/2^(levels-1)) */
  forward(x: Tensor): Tensor {
    let h = this.conv_in.forward(x);
    for (const b of this.down_blocks) h = b.forward(h);
    h = this.mid_block.forward(h);
    return this.conv_out.forward(this.conv_norm_out.forwardSilu(h));
  }
}

/** conv_in, mid block, UpDecoderBlock2D per level (layers_per_block + 1 resnets, upsampling all but the last), norm, SiLU, conv_out. */
export class Decoder extends Module {
  conv_in: Conv2d;
  up_blocks: UpDecoderBlock2D[];
  mid_block: UNetMidBlock2D;
  conv_norm_out: GroupNorm;
  conv_out: Conv2d;
  constructor(readonly config: VAECoderConfig & { up_block_types: readonly VAEUpBlockType[] }) {
    super();
    const boc = config.block_out_channels;
    const args: VAEBlockArgs = { groups: config.norm_num_groups, eps: VAE_EPS, actFn: config.act_fn };
    const last = boc[boc.length - 1];
    this.conv_in = new Conv2d(config.in_channels, last, 3, { padding: 1 });
    const rev = [...boc].reverse();
    let out = rev[0];
    // registration order as torch: up_blocks precede mid_block in the state dict
    this.up_blocks = config.up_block_types.map((type, i) => {
      if (type !== "UpDecoderBlock2D")
        throw new ConfigError(`Decoder: up block type must be UpDecoderBlock2D, got "${String(type)}"`);
      const prev = out;
      out = rev[i];
      return new UpDecoderBlock2D(prev, out, config.layers_per_block + 1, i !== boc.length - 1, args);
    });
    this.mid_block = new UNetMidBlock2D(last, last, args);
    this.conv_norm_out = new GroupNorm(config.norm_num_groups, boc[0], VAE_EPS);
    this.conv_out = new Conv2d(boc[0], config.out_channels, 3, { padding: 1 });
  }
  /** (B, latent, h, w) -> (B, out, h*2^(levels-1), w*2^(levels-1)) */
  forward(z: Tensor): Tensor {
    let h = this.mid_block.forward(this.conv_in.forward(z));
    for (const b of this.up_blocks) h = b.forward(h);
    return this.conv_out.forward(this.conv_norm_out.forwardSilu(h));
  }
}

/**
 * Diagonal Gaussian over latents from (B, 2C, h, w) moments: mean and logvar halves along channels,
 * logvar clamped to [-30, 20], std = exp(logvar / 2).
 */
export class DiagonalGaussianDistribution {
  readonly mean: Tensor;
  readonly logvar: Tensor;
  readonly std: Tensor;
  readonly var: Tensor;
  constructor(readonly parameters: Tensor) {
    if (parameters.ndim !== 4 || parameters.shape[1] % 2 !== 0)
      throw new ShapeError(`DiagonalGaussianDistribution: moments must be (B, 2C, h, w), got [${parameters.shape}]`);
    const [mean, logvar] = parameters.chunk(2, 1); // (B, C, h, w) each
    this.mean = mean;
    this.logvar = logvar.clamp(-30, 20);
    this.std = this.logvar.mul(0.5).exp();
    this.var = this.logvar.exp();
  }
  /** mean + std * eps with eps ~ N(0, I) drawn from `generator` (reparameterised: differentiable in mean and logvar). */
  sample(generator?: Generator): Tensor {
    const eps = randn(this.mean.shape, { dtype: this.mean.dtype, ...(generator ? { generator } : {}) });
    return this.mean.add(this.std.mul(eps));
  }
  /** The mean. */
  mode(): Tensor {
    return this.mean;
  }
  /** KL(this || N(0, I)) per sample: 0.5 * sum(mean^2 + var - 1 - logvar) over (C, h, w) -> (B). */
  kl(): Tensor {
    return this.mean.square().add(this.var).sub(1).sub(this.logvar).sum([1, 2, 3]).mul(0.5);
  }
}
