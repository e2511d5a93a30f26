// the conditional UNet that predicts noise from (noisy latents, timestep, text states): SD-1.x path
// mirrors diffusers models/unets/unet_2d_condition.py UNet2DConditionModel
import { ConfigError, ShapeError, silu, Tensor } from "../../engine/index.ts";
import { Attention } from "../attention_processor.ts";
import { TimestepEmbedding, Timesteps } from "../embeddings.ts";
import { findWeights, loadWeights, readJsonConfig, saveModel } from "../modeling_utils.ts";
import type { LoadOptions } from "../modeling_utils.ts";
import { Conv2d, GroupNorm, Module, withShapeOnly } from "../nn/index.ts";
import { getActivation } from "../resnet.ts";
import { getDownBlock, getUpBlock, UNetMidBlock2DCrossAttn } from "./unet_2d_blocks.ts";
import type { BlockArgs, DownBlock, UpBlock } from "./unet_2d_blocks.ts";
import { isPosInt, NAME, parseUNetConfig, perBlock } from "./unet_2d_condition_config.ts";
import type { UNet2DConditionConfig } from "./unet_2d_condition_config.ts";

export {
  parseUNetConfig,
  SD15_UNET_CONFIG,
  TINY_UNET_CONFIG,
  UNET_DEFAULT_CONFIG,
  UNET_IGNORED_CONFIG_KEYS,
} from "./unet_2d_condition_config.ts";
export type { UNet2DConditionConfig } from "./unet_2d_condition_config.ts";

export type Timestep = number | readonly number[] | Tensor;

/**
 * Predicts the noise (or v) from noisy latents: conv_in, sinusoidal time embedding, down blocks
 * whose outputs are kept as skips, a cross-attention mid block, up blocks that consume the skips,
 * then GroupNorm, SiLU and conv_out. Text conditioning enters through every attn2.
 */
export class UNet2DConditionModel extends Module {
  conv_in: Conv2d;
  time_proj: Timesteps;
  time_embedding: TimestepEmbedding;
  down_blocks: DownBlock[];
  up_blocks: UpBlock[];
  mid_block: UNetMidBlock2DCrossAttn;
  conv_norm_out: GroupNorm;
  conv_act: (x: Tensor) => Tensor;
  conv_out: Conv2d;
  readonly config: Readonly<UNet2DConditionConfig>;
  readonly numUpsamplers: number;

  /** Builds from a checked config; use fromConfig for raw config.json values. */
  constructor(config: UNet2DConditionConfig) {
    super();
    const c = (this.config = Object.freeze(structuredClone(config)));
    const ch = c.block_out_channels,
      n = ch.length;
    const heads = perBlock("attention_head_dim", c.attention_head_dim, n);
    const tlayers = perBlock("transformer_layers_per_block", c.transformer_layers_per_block, n);
    const timeEmbedDim = ch[0] * 4;
    this.conv_in = new Conv2d(c.in_channels, ch[0], c.conv_in_kernel, { padding: (c.conv_in_kernel - 1) / 2 });
    this.time_proj = new Timesteps(ch[0], c.flip_sin_to_cos, c.freq_shift);
    this.time_embedding = new TimestepEmbedding(ch[0], timeEmbedDim, c.act_fn);
    const args = (i: number, numLayers: number, inChannels: number, outChannels: number): BlockArgs => ({
      numLayers,
      inChannels,
      outChannels,
      tembChannels: timeEmbedDim,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: c.norm_num_groups,
      numAttentionHeads: heads[i],
      crossAttentionDim: c.cross_attention_dim,
      transformerLayersPerBlock: tlayers[i],
      useLinearProjection: c.use_linear_projection,
      upcastAttention: c.upcast_attention,
    });
    this.down_blocks = c.down_block_types.map((type, i) =>
      getDownBlock(
        type,
        args(i, c.layers_per_block, i === 0 ? ch[0] : ch[i - 1], ch[i]),
        i < n - 1,
        c.downsample_padding,
      ),
    );
    this.mid_block = new UNetMidBlock2DCrossAttn({
      ...args(n - 1, 1, ch[n - 1], ch[n - 1]),
      outputScaleFactor: c.mid_block_scale_factor,
    });
    const rch = [...ch].reverse(),
      rheads = [...heads].reverse(),
      rtl = [...tlayers].reverse();
    this.numUpsamplers = n - 1;
    this.up_blocks = c.up_block_types.map((type, i) => {
      const last = i === n - 1;
      const prev = rch[Math.max(i - 1, 0)],
        out = rch[i],
        input = rch[Math.min(i + 1, n - 1)];
      const a = {
        ...args(0, c.layers_per_block + 1, input, out),
        numAttentionHeads: rheads[i],
        transformerLayersPerBlock: rtl[i],
      };
      return getUpBlock(type, a, prev, !last);
    });
    this.conv_norm_out = new GroupNorm(c.norm_num_groups, ch[0], c.norm_eps);
    this.conv_act = getActivation(c.act_fn);
    this.conv_out = new Conv2d(ch[0], c.out_channels, c.conv_out_kernel, { padding: (c.conv_out_kernel - 1) / 2 });
  }

  /** Builds a randomly initialised model from config.json values (checked; defaults as diffusers). */
  static fromConfig(config: Partial<UNet2DConditionConfig> | Record<string, unknown>): UNet2DConditionModel {
    return new UNet2DConditionModel(parseUNetConfig(config as Record<string, unknown>));
  }

  /**
   * Loads a diffusers folder: config.json + diffusion_pytorch_model.safetensors (F32, F16 or BF16,
   * read as float32, or with `weightsDType` the Linear/Conv2d weights held in half precision, see
   * {@link LoadOptions}). Missing, unexpected or mis-shaped keys are a StateDictError naming them.
   */
  static fromPretrained(folder: string, opts: LoadOptions = {}): UNet2DConditionModel {
    const config = parseUNetConfig(readJsonConfig(folder));
    const file = findWeights(folder, ["diffusion_pytorch_model.safetensors"]);
    // parameters get their storage from the file, so none is allocated and initialised first
    const model = withShapeOnly(() => new UNet2DConditionModel(config));
    loadWeights(model, file, [], opts);
    return model;
  }

  /** Writes config.json and diffusion_pytorch_model.safetensors (F32 unless F16 is asked for). */
  save(folder: string, opts: { dtype?: "F32" | "F16" } = {}): void {
    const config = { _class_name: NAME, _diffusers_version: "0.21.0", ...this.config };
    saveModel(this, folder, "diffusion_pytorch_model.safetensors", config, opts.dtype ? { dtype: opts.dtype } : {});
  }

  /** Every cross-attention layer (attn2) with its module key, in state-dict order. */
  /**
   * Gradient checkpointing (diffusers' `enable_gradient_checkpointing`): every resnet and transformer
   * of the down, mid and up blocks keeps only its inputs during the forward and runs again during
   * backward. Less memory for one more forward's time; gradients are bit-identical.
   */
  enableGradientCheckpointing(on = true): this {
    for (const b of [...this.down_blocks, this.mid_block, ...this.up_blocks]) b._gradientCheckpointing = on;
    return this;
  }
  disableGradientCheckpointing(): this {
    return this.enableGradientCheckpointing(false);
  }
  get isGradientCheckpointing(): boolean {
    return this.mid_block._gradientCheckpointing;
  }

  crossAttentionLayers(): [string, Attention][] {
    return this.attentionLayers().filter(([k]) => k.endsWith(".attn2"));
  }

  /** Every attention layer (attn1 and attn2) with its module key. */
  attentionLayers(): [string, Attention][] {
    return this.namedModules().filter((e): e is [string, Attention] => e[1] instanceof Attention);
  }

  /** Runs attention `size` (batch x head) slices at a time in every layer; null turns it off. */
  setAttentionSlice(size: number | null): this {
    if (size !== null && !isPosInt(size))
      throw new ConfigError(`${NAME}: attention slice size must be a positive integer or null, got ${size}`);
    for (const [, a] of this.attentionLayers()) a.sliceSize = size;
    return this;
  }

  /**
   * sample (B, in_channels, H, W), timestep (a number, or one per sample), encoder hidden states
   * (B, L, cross_attention_dim) -> (B, out_channels, H, W).
   */
  forward(sample: Tensor, timestep: Timestep, encoderHiddenStates: Tensor): Tensor {
    const c = this.config;
    const s = sample.shape,
      e = encoderHiddenStates.shape;
    if (sample.ndim !== 4 || s[1] !== c.in_channels)
      throw new ShapeError(`${NAME}: sample must be (B, ${c.in_channels}, H, W), got [${s}]`);
    if (encoderHiddenStates.ndim !== 3 || e[0] !== s[0] || e[2] !== c.cross_attention_dim) {
      throw new ShapeError(
        `${NAME}: encoder hidden states must be (${s[0]}, L, ${c.cross_attention_dim}) for sample [${s}], got [${e}]`,
      );
    }
    const b = s[0];
    const ts =
      timestep instanceof Tensor
        ? Array.from(timestep.data)
        : typeof timestep === "number"
          ? [timestep]
          : Array.from(timestep);
    if (ts.length !== 1 && ts.length !== b)
      throw new ShapeError(`${NAME}: timestep must be one value or ${b} (one per sample), got ${ts.length}`);
    const steps = ts.length === b ? ts : new Array<number>(b).fill(ts[0]);

    // sizes that do not divide by 2^upsamplers make the up path resize to the skip's size
    const factor = 2 ** this.numUpsamplers;
    const forwardUpsampleSize = s[2] % factor !== 0 || s[3] % factor !== 0;

    let x = c.center_input_sample ? sample.mul(2).sub(1) : sample;
    const tEmb = this.time_proj.forward(steps, sample.dtype); // (B, C0)
    const emb = this.time_embedding.forward(tEmb); // (B, 4 C0)
    x = this.conv_in.forward(x); // (B, C0, H, W)

    const skips: Tensor[] = [x];
    for (const blk of this.down_blocks) {
      const o = blk.forward(x, emb, encoderHiddenStates);
      x = o.hidden;
      skips.push(...o.resSamples);
    }
    x = this.mid_block.forward(x, emb, encoderHiddenStates); // (B, C_last, H/f, W/f)

    this.up_blocks.forEach((blk, i) => {
      const last = i === this.up_blocks.length - 1;
      const res = skips.splice(skips.length - blk.resnets.length, blk.resnets.length);
      const next = skips[skips.length - 1];
      const size: [number, number] | null =
        !last && forwardUpsampleSize && next ? [next.shape[2], next.shape[3]] : null;
      x = blk.forward(x, res, emb, encoderHiddenStates, size);
    });
    x = this.conv_act === silu ? this.conv_norm_out.forwardSilu(x) : this.conv_act(this.conv_norm_out.forward(x));
    return this.conv_out.forward(x); // (B, out_channels, H, W)
  }
}
