// CLIP configs, mirroring transformers models/clip/configuration_clip.py (CLIPTextConfig,
// CLIPVisionConfig, CLIPConfig): field names are the config.json keys transformers writes.
import { ConfigError } from "../../engine/errors.ts";
import { parseConfig } from "../modeling_utils.ts";

/** Activations CLIP's MLP may use. */
export type CLIPHiddenAct = "quick_gelu" | "gelu";

/** Text tower config (transformers CLIPTextConfig; defaults are transformers' defaults). */
export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: CLIPHiddenAct;
  layer_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  initializer_factor: number;
  pad_token_id: number | null;
  bos_token_id: number | null;
  /** 2 selects transformers' legacy pooling (argmax of the ids); any other value pools at its first occurrence */
  eos_token_id: number | null;
}

/** Vision tower config (transformers CLIPVisionConfig). */
export interface CLIPVisionConfig {
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  hidden_act: CLIPHiddenAct;
  layer_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  initializer_factor: number;
}

/** Dual-tower config (transformers CLIPConfig) as nested in a CLIPModel config.json. */
export interface CLIPConfig {
  text_config: CLIPTextConfig;
  vision_config: CLIPVisionConfig;
  projection_dim: number;
  logit_scale_init_value: number;
  initializer_factor: number;
}

/** transformers' CLIPTextConfig defaults. */
export const CLIP_TEXT_DEFAULTS: CLIPTextConfig = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  attention_dropout: 0,
  initializer_range: 0.02,
  initializer_factor: 1,
  pad_token_id: 1,
  bos_token_id: 49406,
  eos_token_id: 49407,
};

/** The text encoder of Stable Diffusion 1.x (CLIP ViT-L/14's text tower): 123M parameters. */
export const SD15_TEXT_CONFIG: Readonly<CLIPTextConfig> = Object.freeze({
  ...CLIP_TEXT_DEFAULTS,
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 768,
  num_attention_heads: 12,
});

/** transformers' CLIPVisionConfig defaults. */
export const CLIP_VISION_DEFAULTS: CLIPVisionConfig = {
  hidden_size: 768,
  intermediate_size: 3072,
  projection_dim: 512,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_channels: 3,
  image_size: 224,
  patch_size: 32,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  attention_dropout: 0,
  initializer_range: 0.02,
  initializer_factor: 1,
};

/** The tiny text encoder of diffusers' Stable Diffusion pipeline tests (get_dummy_components): eos 2, legacy pooling. */
export const TINY_CLIP_TEXT: CLIPTextConfig = {
  ...CLIP_TEXT_DEFAULTS,
  vocab_size: 1000,
  hidden_size: 32,
  intermediate_size: 37,
  projection_dim: 32,
  num_hidden_layers: 5,
  num_attention_heads: 4,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  bos_token_id: 0,
  pad_token_id: 1,
  eos_token_id: 2,
};

/** A tiny vision config sized like transformers' CLIPVisionModelTester (image 30, patch 2, hidden 32). */
export const TINY_CLIP_VISION: CLIPVisionConfig = {
  ...CLIP_VISION_DEFAULTS,
  hidden_size: 32,
  intermediate_size: 37,
  projection_dim: 32,
  num_hidden_layers: 5,
  num_attention_heads: 4,
  num_channels: 3,
  image_size: 30,
  patch_size: 2,
};

/**
 * The generic keys of transformers' `PretrainedConfig` (configuration_utils.py): the attributes every
 * config carries and a full `to_dict()` / `save_pretrained` writes, often as null (generation
 * settings, fine-tuning labels, tokenizer ids, bookkeeping). They do not change the CLIP forward, so
 * parsing skips them; a tower that owns one (the text config's bos/eos/pad token ids) reads it as its
 * own key. Keys starting with "_" (`_name_or_path`, `_commit_hash`, `_attn_implementation`...) are
 * skipped too. Any other key a tower does not know is a ConfigError.
 */
export const PRETRAINED_CONFIG_KEYS: readonly string[] = [
  // outputs and PyTorch/TensorFlow settings
  "return_dict",
  "output_hidden_states",
  "output_attentions",
  "torchscript",
  "torch_dtype",
  "dtype",
  "use_bfloat16",
  "tf_legacy_loss",
  "pruned_heads",
  "tie_word_embeddings",
  "chunk_size_feed_forward",
  // encoder-decoder
  "is_encoder_decoder",
  "is_decoder",
  "cross_attention_hidden_size",
  "add_cross_attention",
  "tie_encoder_decoder",
  // sequence generation (older configs carry these; newer transformers pops them)
  "max_length",
  "min_length",
  "do_sample",
  "early_stopping",
  "num_beams",
  "num_beam_groups",
  "diversity_penalty",
  "temperature",
  "top_k",
  "top_p",
  "typical_p",
  "repetition_penalty",
  "length_penalty",
  "no_repeat_ngram_size",
  "encoder_no_repeat_ngram_size",
  "bad_words_ids",
  "num_return_sequences",
  "output_scores",
  "return_dict_in_generate",
  "forced_bos_token_id",
  "forced_eos_token_id",
  "remove_invalid_values",
  "exponential_decay_length_penalty",
  "suppress_tokens",
  "begin_suppress_tokens",
  // fine-tuning task
  "architectures",
  "finetuning_task",
  "id2label",
  "label2id",
  "num_labels",
  "problem_type",
  "task_specific_params",
  // tokenizer
  "tokenizer_class",
  "prefix",
  "bos_token_id",
  "pad_token_id",
  "eos_token_id",
  "sep_token_id",
  "decoder_start_token_id",
  // bookkeeping
  "name_or_path",
  "transformers_version",
  "model_type",
  "xla_device",
  "gradient_checkpointing",
  "use_cache",
  "attn_implementation",
];

/** Model keys of transformers' CLIP configs that the forward here does not use (training dropout). */
export const CLIP_IGNORED_MODEL_KEYS: readonly string[] = ["dropout", "output_hidden_states_before_dropout"];

/** The keys a tower's parse skips: the generic ones it does not own, and CLIP's unused model keys. */
function skippedKeys(defaults: object): string[] {
  return [...PRETRAINED_CONFIG_KEYS.filter((k) => !(k in defaults)), ...CLIP_IGNORED_MODEL_KEYS];
}

function checkActAndDropout(
  name: string,
  c: { hidden_act: string; attention_dropout: number; hidden_size: number; num_attention_heads: number },
): void {
  if (c.hidden_act !== "quick_gelu" && c.hidden_act !== "gelu")
    throw new ConfigError(`${name}: hidden_act must be one of quick_gelu, gelu; got "${c.hidden_act}"`);
  if (c.attention_dropout !== 0)
    throw new ConfigError(`${name}: only attention_dropout 0 is supported, got ${c.attention_dropout}`);
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new ConfigError(
      `${name}: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`,
    );
  }
}

/** Parses a CLIPTextConfig (a CLIPModel config's `text_config` is taken when model_type is "clip"). */
export function parseCLIPTextConfig(raw: Record<string, unknown>): CLIPTextConfig {
  const src = raw.model_type === "clip" ? tower(raw, "text_config") : raw;
  const c = parseConfig("CLIPTextConfig", src, CLIP_TEXT_DEFAULTS, skippedKeys(CLIP_TEXT_DEFAULTS));
  checkActAndDropout("CLIPTextConfig", c);
  return c;
}

/** Parses a CLIPVisionConfig (a CLIPModel config's `vision_config` is taken when model_type is "clip"). */
export function parseCLIPVisionConfig(raw: Record<string, unknown>): CLIPVisionConfig {
  const src = raw.model_type === "clip" ? tower(raw, "vision_config") : raw;
  const c = parseConfig("CLIPVisionConfig", src, CLIP_VISION_DEFAULTS, skippedKeys(CLIP_VISION_DEFAULTS));
  checkActAndDropout("CLIPVisionConfig", c);
  if (c.image_size % c.patch_size !== 0)
    throw new ConfigError(
      `CLIPVisionConfig: image_size ${c.image_size} is not a multiple of patch_size ${c.patch_size}`,
    );
  return c;
}

const CLIP_TOP_DEFAULTS = {
  text_config: {},
  vision_config: {},
  projection_dim: 512,
  logit_scale_init_value: 2.6592,
  initializer_factor: 1,
};

/**
 * Parses a CLIPModel config.json (nested text_config / vision_config), as transformers' CLIPConfig
 * reads it: a null or missing tower takes the defaults, and a legacy `text_config_dict` /
 * `vision_config_dict` replaces the tower it names.
 */
export function parseCLIPConfig(raw: Record<string, unknown>): CLIPConfig {
  const top = parseConfig("CLIPConfig", raw, CLIP_TOP_DEFAULTS, [
    ...skippedKeys(CLIP_TOP_DEFAULTS),
    "text_config_dict",
    "vision_config_dict",
  ]);
  return {
    text_config: parseCLIPTextConfig(tower(raw, "text_config")),
    vision_config: parseCLIPVisionConfig(tower(raw, "vision_config")),
    projection_dim: top.projection_dim,
    logit_scale_init_value: top.logit_scale_init_value,
    initializer_factor: top.initializer_factor,
  };
}

/**
 * One tower's raw config in a CLIPModel config: `<key>_dict` when present (transformers' CLIPConfig
 * builds a full config from it and lets it overwrite `<key>`), else `<key>`; null or missing is {}.
 */
function tower(raw: Record<string, unknown>, key: "text_config" | "vision_config"): Record<string, unknown> {
  const legacy = raw[`${key}_dict`];
  const [name, v] = legacy !== undefined && legacy !== null ? [`${key}_dict`, legacy] : [key, raw[key]];
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v))
    throw new ConfigError(`CLIPConfig: "${name}" must be an object, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}
