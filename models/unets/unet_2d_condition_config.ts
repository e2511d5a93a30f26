// UNet2DConditionModel config.json: the typed config, defaults, fixed presets and the parser
// that checks every key (mirrors diffusers models/unets/unet_2d_condition.py register_to_config)
import { ConfigError } from "../../engine/index.ts";
import { parseConfig } from "../modeling_utils.ts";
import { DOWN_BLOCK_TYPES, UP_BLOCK_TYPES } from "./unet_2d_blocks.ts";
import type { DownBlockType, UpBlockType } from "./unet_2d_blocks.ts";

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

export const NAME = "UNet2DConditionModel";

function bad(key: string, what: string, v: unknown): never {
  throw new ConfigError(`${NAME}: config key "${key}" ${what}, got ${JSON.stringify(v)}`);
}
export const isPosInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/** Per-block list from an int or a list of the block count (diffusers broadcasts ints). */
export function perBlock(key: string, v: number | number[], n: number): number[] {
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
