// The KL-regularised autoencoder of Stable Diffusion, mirroring diffusers models/autoencoders/autoencoder_kl.py
// (AutoencoderKL): encode -> quant_conv -> DiagonalGaussianDistribution; decode: post_quant_conv -> Decoder.
import type { Generator, Tensor } from "../../engine/index.ts";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { Conv2d } from "../nn/layers.ts";
import { Module, withShapeOnly } from "../nn/module.ts";
import { findWeights, loadWeights, parseConfig, readJsonConfig, saveModel } from "../modeling_utils.ts";
import type { LoadOptions } from "../modeling_utils.ts";
import { Decoder, DiagonalGaussianDistribution, Encoder } from "./vae.ts";
import type { VAEDownBlockType, VAEUpBlockType } from "./vae.ts";
import type { VAEActFn } from "./vae_blocks.ts";

/** AutoencoderKL config.json (diffusers keys; only the SD-1.x path is implemented). */
export interface AutoencoderKLConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: VAEDownBlockType[];
  up_block_types: VAEUpBlockType[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: VAEActFn;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number;
  /** latents are multiplied by this before the UNet (0.18215 for SD-1.x) */
  scaling_factor: number;
}

/** diffusers' AutoencoderKL defaults. */
export const AUTOENCODER_KL_DEFAULTS: AutoencoderKLConfig = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
};

/** The VAE of Stable Diffusion 1.x (AutoencoderKL, 84M parameters, 8x down-sampling). */
export const SD15_VAE_CONFIG: Readonly<AutoencoderKLConfig> = Object.freeze({
  ...AUTOENCODER_KL_DEFAULTS,
  block_out_channels: [128, 256, 512, 512],
  layers_per_block: 2,
  sample_size: 512,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
} satisfies AutoencoderKLConfig);

/** A tiny two-level VAE for tests (block_out_channels [32, 64], 32 groups). */
export const TINY_VAE: AutoencoderKLConfig = {
  ...AUTOENCODER_KL_DEFAULTS,
  block_out_channels: [32, 64],
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D"],
  layers_per_block: 1,
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 16,
};

// diffusers keys that are accepted only at the value the SD-1.x path has
const FIXED_KEYS: Record<string, unknown> = {
  force_upcast: undefined, // precision hint, any value
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** Parses an AutoencoderKL config.json (unknown keys and non-SD-1.x values are ConfigErrors). */
export function parseAutoencoderKLConfig(raw: Record<string, unknown>): AutoencoderKLConfig {
  for (const [k, v] of Object.entries(FIXED_KEYS)) {
    if (v === undefined || !(k in raw)) continue;
    if (raw[k] !== v)
      throw new ConfigError(
        `AutoencoderKL: ${k} must be ${JSON.stringify(v)} on the SD-1.x path, got ${JSON.stringify(raw[k])}`,
      );
  }
  const c = parseConfig("AutoencoderKL", raw, AUTOENCODER_KL_DEFAULTS, Object.keys(FIXED_KEYS));
  checkConfig(c);
  return c;
}

function checkConfig(c: AutoencoderKLConfig): void {
  const n = c.block_out_channels.length;
  if (n < 1) throw new ConfigError("AutoencoderKL: block_out_channels must not be empty");
  if (c.down_block_types.length !== n || c.up_block_types.length !== n) {
    throw new ConfigError(
      `AutoencoderKL: down_block_types (${c.down_block_types.length}) and up_block_types (${c.up_block_types.length}) must have one entry per block_out_channels (${n})`,
    );
  }
  if (c.act_fn !== "silu") throw new ConfigError(`AutoencoderKL: act_fn must be "silu", got "${String(c.act_fn)}"`);
  for (const ch of c.block_out_channels) {
    if (ch % c.norm_num_groups !== 0)
      throw new ConfigError(
        `AutoencoderKL: block_out_channels [${c.block_out_channels}] must be divisible by norm_num_groups ${c.norm_num_groups}`,
      );
  }
}

/** Stable Diffusion's VAE: images (B, 3, H, W) in [-1, 1] <-> latents (B, 4, H/8, W/8) for SD-1.x. */
export class AutoencoderKL extends Module {
  encoder: Encoder;
  decoder: Decoder;
  quant_conv: Conv2d;
  post_quant_conv: Conv2d;
  constructor(readonly config: AutoencoderKLConfig) {
    super();
    checkConfig(config);
    const common = {
      block_out_channels: config.block_out_channels,
      layers_per_block: config.layers_per_block,
      norm_num_groups: config.norm_num_groups,
      act_fn: config.act_fn,
    };
    this.encoder = new Encoder({
      ...common,
      in_channels: config.in_channels,
      out_channels: config.latent_channels,
      down_block_types: config.down_block_types,
      double_z: true,
    });
    this.decoder = new Decoder({
      ...common,
      in_channels: config.latent_channels,
      out_channels: config.out_channels,
      up_block_types: config.up_block_types,
    });
    this.quant_conv = new Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1);
    this.post_quant_conv = new Conv2d(config.latent_channels, config.latent_channels, 1);
  }
  /** Builds from a (partial) config with random init. */
  static fromConfig(config: Partial<AutoencoderKLConfig> = {}): AutoencoderKL {
    return new AutoencoderKL({ ...AUTOENCODER_KL_DEFAULTS, ...config });
  }
  /** Loads `folder/config.json` and `folder/diffusion_pytorch_model.safetensors` (diffusers' vae/ folder). */
  static fromPretrained(folder: string, opts: LoadOptions = {}): AutoencoderKL {
    const config = parseAutoencoderKLConfig(readJsonConfig(folder));
    const model = withShapeOnly(() => new AutoencoderKL(config)); // no random init: the strict load fills every parameter
    loadWeights(model, findWeights(folder, ["diffusion_pytorch_model.safetensors"]), [], opts);
    return model;
  }
  /** Writes config.json and diffusion_pytorch_model.safetensors as diffusers' save_pretrained lays them out. */
  save(folder: string): void {
    saveModel(this, folder, "diffusion_pytorch_model.safetensors", { _class_name: "AutoencoderKL", ...this.config });
  }
  /** images (B, in, H, W) -> posterior over (B, latent, H/f, W/f), f = 2^(levels-1); H and W must be multiples of f. */
  encode(x: Tensor): DiagonalGaussianDistribution {
    const f = 2 ** (this.config.block_out_channels.length - 1);
    if (x.ndim !== 4 || x.shape[1] !== this.config.in_channels || x.shape[2] % f !== 0 || x.shape[3] % f !== 0) {
      throw new ShapeError(
        `AutoencoderKL.encode: input must be (B, ${this.config.in_channels}, H, W) with H, W multiples of ${f}, got [${x.shape}]`,
      );
    }
    return new DiagonalGaussianDistribution(this.quant_conv.forward(this.encoder.forward(x))); // (B, 2*latent, H/f, W/f)
  }
  /** latents (B, latent, h, w) (unscaled: divide UNet latents by scaling_factor first) -> images (B, out, h*f, w*f). */
  decode(z: Tensor): Tensor {
    if (z.ndim !== 4 || z.shape[1] !== this.config.latent_channels)
      throw new ShapeError(
        `AutoencoderKL.decode: latents must be (B, ${this.config.latent_channels}, h, w), got [${z.shape}]`,
      );
    return this.decoder.forward(this.post_quant_conv.forward(z));
  }
  /** encode then decode the posterior mode, or a sample when `samplePosterior`. */
  forward(x: Tensor, opts: { samplePosterior?: boolean; generator?: Generator } = {}): Tensor {
    const posterior = this.encode(x);
    return this.decode(opts.samplePosterior ? posterior.sample(opts.generator) : posterior.mode());
  }
}
