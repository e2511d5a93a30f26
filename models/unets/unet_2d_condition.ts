// the conditional UNet that predicts noise from (noisy latents, timestep, text states): SD-1.x path
// mirrors diffusers models/unets/unet_2d_condition.py UNet2DConditionModel
import { ConfigError, ShapeError, silu, Tensor } from "../../engine/index.ts";
import { Attention } from "../attention_processor.ts";
import { TimestepEmbedding, Timesteps } from "../embeddings.ts";
import { findWeights, loadWeights, parseConfig, readJsonConfig, saveModel } from "../modeling_utils.ts";
import type { LoadOptions } from "../modeling_utils.ts";
import { Conv2d, GroupNorm, Module, withShapeOnly } from "../nn/index.ts";
import { getActivation } from "../resnet.ts";
import {
  DOWN_BLOCK_TYPES,
  getDownBlock,
  getUpBlock,
  UNetMidBlock2DCrossAttn,
  UP_BLOCK_TYPES,
} from "./unet_2d_blocks.ts";
import type { BlockArgs, DownBlock, DownBlockType, UpBlock, UpBlockType } from "./unet_2d_blocks.ts";

/**
 * config.json of a diffusers UNet2DConditionModel, keys as diffusers writes them. Keys marked
 * "only" accept one value: other values select code paths this model does not have.
 */
export interface UNet2DConditionConfig {
  sample_size: number | null;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: DownBlockType[];
  /** only "UNetMidBlock2DCrossAttn" */
  mid_block_type: "UNetMidBlock2DCrossAttn";
  up_block_types: UpBlockType[];
  /** only false (or all false) */
  only_cross_attention: boolean | boolean[];
  block_out_channels: number[];
  layers_per_block: number;
  downsample_padding: number;
  mid_block_scale_factor: number;
  act_fn: string;
  norm_num_groups: number;
  norm_eps: number;
  cross_attention_dim: number;
  transformer_layers_per_block: number | number[];
  /** the number of heads per block (diffusers' naming; head width = channels / this) */
  attention_head_dim: number | number[];
  /** only null (diffusers rejects it too) */
  num_attention_heads: null;
  /** only false */
  dual_cross_attention: boolean;
  use_linear_projection: boolean;
  /** no effect: scores are computed in the input's float32/float64 already */
  upcast_attention: boolean;
  /** only null */
  class_embed_type: null;
  /** only null */
  addition_embed_type: null;
  /** only null */
  num_class_embeds: null;
  /** only null */
  encoder_hid_dim: null;
  /** only null */
  encoder_hid_dim_type: null;
  /** only "default" */
  resnet_time_scale_shift: "default";
  /** only "positional" */
  time_embedding_type: "positional";
  /** only null */
  time_embedding_dim: null;
  /** only null */
  time_embedding_act_fn: null;
  /** only null */
  timestep_post_act: null;
  /** only null */
  time_cond_proj_dim: null;
  /** odd kernel size of conv_in */
  conv_in_kernel: number;
  /** odd kernel size of conv_out */
  conv_out_kernel: number;
  /** only null */
  cross_attention_norm: null;
  /** only "default" */
  attention_type: "default";
  /** only null */
  reverse_transformer_layers_per_block: null;
  /** only 0 */
  dropout: number;
}

/** diffusers' defaults for every key (a config.json may leave keys out). */
export const UNET_DEFAULT_CONFIG: Readonly<UNet2DConditionConfig> = Object.freeze({
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: "silu",
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  attention_head_dim: 8,
  num_attention_heads: null,
  dual_cross_attention: false,
  use_linear_projection: false,
  upcast_attention: false,
  class_embed_type: null,
  addition_embed_type: null,
  num_class_embeds: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  resnet_time_scale_shift: "default",
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  cross_attention_norm: null,
  attention_type: "default",
  reverse_transformer_layers_per_block: null,
  dropout: 0,
} satisfies UNet2DConditionConfig);

/**
 * Keys diffusers writes that do not change this path: they only act together with class or
 * addition embeddings (rejected above) or on block types this model does not have.
 */
export const UNET_IGNORED_CONFIG_KEYS: readonly string[] = [
  "resnet_skip_time_act",
  "resnet_out_scale_factor",
  "addition_time_embed_dim",
  "addition_embed_type_num_heads",
  "projection_class_embeddings_input_dim",
  "class_embeddings_concat",
  "mid_block_only_cross_attention",
];

/** Stable Diffusion 1.x (v1-4, v1-5): 859,520,964 parameters. */
export const SD15_UNET_CONFIG: Readonly<UNet2DConditionConfig> = Object.freeze({
  ...UNET_DEFAULT_CONFIG,
  sample_size: 64,
  cross_attention_dim: 768,
} satisfies UNet2DConditionConfig);

/** The small config of diffusers' UNet2DConditionModel tests (get_init_dict). */
export const TINY_UNET_CONFIG: Readonly<UNet2DConditionConfig> = Object.freeze({
  ...UNET_DEFAULT_CONFIG,
  sample_size: 32,
  block_out_channels: [32, 64],
  layers_per_block: 2,
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
  cross_attention_dim: 32,
  attention_head_dim: 8,
  norm_num_groups: 32,
} satisfies UNet2DConditionConfig);

const ONLY: Partial<Record<keyof UNet2DConditionConfig, unknown>> = {
  mid_block_type: "UNetMidBlock2DCrossAttn",
  num_attention_heads: null,
  dual_cross_attention: false,
  class_embed_type: null,
  addition_embed_type: null,
  num_class_embeds: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  resnet_time_scale_shift: "default",
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  cross_attention_norm: null,
  attention_type: "default",
  reverse_transformer_layers_per_block: null,
  dropout: 0,
};

const NAME = "UNet2DConditionModel";

function bad(key: string, what: string, v: unknown): never {
  throw new ConfigError(`${NAME}: config key "${key}" ${what}, got ${JSON.stringify(v)}`);
}
const isPosInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/** Per-block list from an int or a list of the block count (diffusers broadcasts ints). */
function perBlock(key: string, v: number | number[], n: number): number[] {
  const list = typeof v === "number" ? new Array<number>(n).fill(v) : v;
  if (!Array.isArray(list) || list.length !== n || !list.every(isPosInt))
    bad(key, `must be a positive integer or a list of ${n} of them`, v);
  return list;
}

/**
 * Fills and checks a config from raw config.json values: unknown keys, unsupported values and
 * inconsistent sizes are ConfigErrors naming the key.
 */
export function parseUNetConfig(raw: Record<string, unknown>): UNet2DConditionConfig {
  const c = parseConfig<UNet2DConditionConfig>(NAME, raw, { ...UNET_DEFAULT_CONFIG }, UNET_IGNORED_CONFIG_KEYS);
  for (const [k, v] of Object.entries(ONLY)) {
    const got = (c as unknown as Record<string, unknown>)[k];
    if (got !== v) bad(k, `is not supported except as ${JSON.stringify(v)}`, got);
  }
  if (
    c.only_cross_attention !== false &&
    !(Array.isArray(c.only_cross_attention) && c.only_cross_attention.every((x) => x === false))
  ) {
    bad("only_cross_attention", "is not supported except as false", c.only_cross_attention);
  }
  for (const k of [
    "in_channels",
    "out_channels",
    "layers_per_block",
    "norm_num_groups",
    "cross_attention_dim",
  ] as const) {
    if (!isPosInt(c[k])) bad(k, "must be a positive integer", c[k]);
  }
  for (const k of ["conv_in_kernel", "conv_out_kernel"] as const)
    if (!isPosInt(c[k]) || c[k] % 2 === 0) bad(k, "must be a positive odd integer", c[k]);
  if (c.sample_size !== null && !isPosInt(c.sample_size))
    bad("sample_size", "must be a positive integer or null", c.sample_size);
  if (!(typeof c.norm_eps === "number" && c.norm_eps > 0)) bad("norm_eps", "must be a positive number", c.norm_eps);
  if (typeof c.freq_shift !== "number") bad("freq_shift", "must be a number", c.freq_shift);
  if (!(typeof c.mid_block_scale_factor === "number" && c.mid_block_scale_factor > 0))
    bad("mid_block_scale_factor", "must be a positive number", c.mid_block_scale_factor);
  if (c.downsample_padding !== 0 && c.downsample_padding !== 1)
    bad("downsample_padding", "must be 0 or 1", c.downsample_padding);
  for (const k of ["center_input_sample", "flip_sin_to_cos", "use_linear_projection", "upcast_attention"] as const) {
    if (typeof c[k] !== "boolean") bad(k, "must be a boolean", c[k]);
  }
  if (c.act_fn !== "silu" && c.act_fn !== "swish") bad("act_fn", 'is not supported except as "silu"', c.act_fn);
  const n = c.block_out_channels.length;
  if (!Array.isArray(c.block_out_channels) || n === 0 || !c.block_out_channels.every(isPosInt))
    bad("block_out_channels", "must be a non-empty list of positive integers", c.block_out_channels);
  for (const ch of c.block_out_channels)
    if (ch % c.norm_num_groups !== 0)
      bad(
        "norm_num_groups",
        `must divide every entry of block_out_channels [${c.block_out_channels}]`,
        c.norm_num_groups,
      );
  const down = c.down_block_types,
    up = c.up_block_types;
  if (!Array.isArray(down) || down.length !== n)
    bad("down_block_types", `must list ${n} block types (one per block_out_channels entry)`, down);
  if (!Array.isArray(up) || up.length !== n)
    bad("up_block_types", `must list ${n} block types (one per block_out_channels entry)`, up);
  for (const t of down)
    if (!(DOWN_BLOCK_TYPES as readonly string[]).includes(t))
      bad("down_block_types", `has unsupported type "${t}" (supported: ${DOWN_BLOCK_TYPES.join(", ")})`, down);
  for (const t of up)
    if (!(UP_BLOCK_TYPES as readonly string[]).includes(t))
      bad("up_block_types", `has unsupported type "${t}" (supported: ${UP_BLOCK_TYPES.join(", ")})`, up);
  const heads = perBlock("attention_head_dim", c.attention_head_dim, n);
  perBlock("transformer_layers_per_block", c.transformer_layers_per_block, n);
  c.block_out_channels.forEach((ch, i) => {
    if (ch % heads[i] !== 0)
      bad(
        "attention_head_dim",
        `must divide block_out_channels (${ch} channels, ${heads[i]} heads at block ${i})`,
        c.attention_head_dim,
      );
  });
  return c;
}

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
