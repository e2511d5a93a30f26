// The shared parts of CLIP's text and vision towers: input ids, outputs, and the pre-norm transformer
// encoder (CLIPAttention, CLIPMLP, CLIPEncoderLayer, CLIPEncoder).
import { gelu, mergeHeads, quickGelu, scaledDotProductAttention, splitHeads, Tensor } from "../../engine/index.ts";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { LayerNorm, Linear } from "../nn/layers.ts";
import { Module, parameter } from "../nn/module.ts";
import type { CLIPHiddenAct, CLIPTextConfig } from "./configuration_clip.ts";
import { CLIPTextModel } from "./clip_models.ts";

/** Token ids as rows (number[][]), as a flat array with its [B, L] shape, or as a (B, L) tensor. */
export type InputIds = readonly (readonly number[])[] | ArrayLike<number> | Tensor;

/** Outputs of a CLIP tower (transformers BaseModelOutputWithPooling). */
export interface CLIPOutput {
  /** (B, L, D): the text tower's after final_layer_norm; the vision tower's encoder output (no post_layernorm) */
  last_hidden_state: Tensor;
  /**
   * (B, D): text: hidden state at the eos token ({@link eosPositions}: with eos_token_id 2, as in the
   * SD-1.x config, the largest id, so an added token such as `<new1>` is pooled instead of
   * end-of-text, as in transformers); vision: post_layernorm of the class token
   */
  pooler_output: Tensor;
}

/** Optional inputs of the text forward. */
export interface CLIPTextForwardOptions {
  /** (B, L) with 1 for tokens to attend to and 0 for padding (as transformers' attention_mask) */
  attentionMask?: ArrayLike<number> | readonly (readonly number[])[];
}

export const WEIGHTS_NAME = "model.safetensors";
/** Buffers transformers keeps in CLIP state dicts: not weights, skipped on load. */
export const CLIP_BUFFER_KEYS = ["text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"] as const;

/** Flattens token ids and checks them against the vocabulary; returns the ids with B and L. */
export function flattenIds(
  inputIds: InputIds,
  shape?: readonly number[],
): { ids: Int32Array; batch: number; length: number } {
  let flat: ArrayLike<number>;
  let s: readonly number[];
  if (inputIds instanceof Tensor) {
    flat = inputIds.data;
    s = inputIds.shape;
  } else if (inputIds.length > 0 && Array.isArray(inputIds[0])) {
    const rows = inputIds as readonly (readonly number[])[];
    const L = rows[0].length;
    if (rows.some((r) => r.length !== L))
      throw new ShapeError(`CLIPTextModel: input id rows must have equal lengths, got ${rows.map((r) => r.length)}`);
    flat = rows.flat();
    s = [rows.length, L];
  } else {
    flat = inputIds as ArrayLike<number>;
    s = shape ?? [1, flat.length];
  }
  if (s.length !== 2 || s[0] * s[1] !== flat.length || s[0] < 1 || s[1] < 1) {
    throw new ShapeError(
      `CLIPTextModel: input ids must be (B, L) with B, L >= 1, got shape [${s}] for ${flat.length} ids`,
    );
  }
  const ids = new Int32Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isInteger(flat[i]))
      throw new ShapeError(`CLIPTextModel: input id at ${i} is not an integer, got ${flat[i]}`);
    ids[i] = flat[i];
  }
  return { ids, batch: s[0], length: s[1] };
}

/**
 * Per-row index of the pooled token, as transformers' CLIPTextTransformer: when eos_token_id is 2
 * (legacy configs), the position of the largest id (the first, on ties); otherwise the first
 * position holding eos_token_id (0 when the row has none).
 */
export function eosPositions(
  ids: ArrayLike<number>,
  batch: number,
  length: number,
  eosTokenId: number | null,
): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    let best = 0;
    if (eosTokenId === 2 || eosTokenId === null) {
      for (let j = 1; j < length; j++) if (ids[b * length + j] > ids[b * length + best]) best = j;
    } else {
      for (let j = 0; j < length; j++) {
        if (ids[b * length + j] === eosTokenId) {
          best = j;
          break;
        }
      }
    }
    out.push(best);
  }
  return out;
}

function activation(act: CLIPHiddenAct, x: Tensor): Tensor {
  switch (act) {
    case "quick_gelu":
      return quickGelu(x);
    case "gelu":
      return gelu(x);
    default:
      act satisfies never;
      throw new ConfigError(`CLIPMLP: unknown hidden_act ${String(act)}`);
  }
}

/** Re-initialises a Linear as transformers' CLIPPreTrainedModel._init_weights: normal weight, zero bias. */
export function initLinear(l: Linear, std: number): Linear {
  l.weight = parameter(l.weight.shape, { kind: "normal", std });
  if (l.bias) l.bias = parameter(l.bias.shape, { kind: "zeros" });
  return l;
}

type TowerConfig = Pick<
  CLIPTextConfig,
  | "hidden_size"
  | "intermediate_size"
  | "num_attention_heads"
  | "num_hidden_layers"
  | "hidden_act"
  | "layer_norm_eps"
  | "initializer_factor"
>;

/** Multi-head self-attention (transformers CLIPAttention): q/k/v/out projections with bias, scale d^-0.5. */
export class CLIPAttention extends Module {
  k_proj: Linear;
  v_proj: Linear;
  q_proj: Linear;
  out_proj: Linear;
  readonly embedDim: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly scale: number;
  constructor(
    config: Pick<TowerConfig, "hidden_size" | "num_attention_heads" | "num_hidden_layers" | "initializer_factor">,
  ) {
    super();
    this.embedDim = config.hidden_size;
    this.numHeads = config.num_attention_heads;
    this.headDim = this.embedDim / this.numHeads;
    if (!Number.isInteger(this.headDim))
      throw new ConfigError(
        `CLIPAttention: hidden_size ${this.embedDim} is not divisible by num_attention_heads ${this.numHeads}`,
      );
    this.scale = this.headDim ** -0.5;
    const f = config.initializer_factor;
    const inStd = this.embedDim ** -0.5 * (2 * config.num_hidden_layers) ** -0.5 * f;
    const outStd = this.embedDim ** -0.5 * f;
    this.k_proj = initLinear(new Linear(this.embedDim, this.embedDim), inStd);
    this.v_proj = initLinear(new Linear(this.embedDim, this.embedDim), inStd);
    this.q_proj = initLinear(new Linear(this.embedDim, this.embedDim), inStd);
    this.out_proj = initLinear(new Linear(this.embedDim, this.embedDim), outStd);
  }
  /** x (B, L, D) -> (B, L, D); `causal` hides later keys, `mask` is additive, broadcast to (B, H, L, L). */
  forward(x: Tensor, opts: { causal?: boolean; mask?: Tensor | null } = {}): Tensor {
    const [b, l] = x.shape as [number, number, number];
    if (!opts.mask) {
      // heads packed in the last axis: no head transposes
      const o = scaledDotProductAttention(this.q_proj.forward(x), this.k_proj.forward(x), this.v_proj.forward(x), {
        causal: opts.causal ?? false,
        scale: this.scale,
        heads: this.numHeads,
      });
      return this.out_proj.forward(o); // (B, L, D)
    }
    const q = splitHeads(this.q_proj.forward(x), this.numHeads); // (B, H, L, d)
    const k = splitHeads(this.k_proj.forward(x), this.numHeads);
    const v = splitHeads(this.v_proj.forward(x), this.numHeads);
    const o = scaledDotProductAttention(q, k, v, {
      causal: opts.causal ?? false,
      mask: opts.mask ?? null,
      scale: this.scale,
    }); // (B, H, L, d)
    return this.out_proj.forward(mergeHeads(o)); // (B, L, D)
  }
}

/** fc1 -> activation -> fc2 (transformers CLIPMLP). */
export class CLIPMLP extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(
    readonly config: Pick<
      TowerConfig,
      "hidden_size" | "intermediate_size" | "hidden_act" | "num_hidden_layers" | "initializer_factor"
    >,
  ) {
    super();
    const f = config.initializer_factor;
    const inStd = config.hidden_size ** -0.5 * (2 * config.num_hidden_layers) ** -0.5 * f;
    const fcStd = (2 * config.hidden_size) ** -0.5 * f;
    this.fc1 = initLinear(new Linear(config.hidden_size, config.intermediate_size), fcStd);
    this.fc2 = initLinear(new Linear(config.intermediate_size, config.hidden_size), inStd);
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(activation(this.config.hidden_act, this.fc1.forward(x)));
  }
}

/** Pre-norm transformer layer (transformers CLIPEncoderLayer). */
export class CLIPEncoderLayer extends Module {
  self_attn: CLIPAttention;
  layer_norm1: LayerNorm;
  mlp: CLIPMLP;
  layer_norm2: LayerNorm;
  constructor(config: TowerConfig) {
    super();
    this.self_attn = new CLIPAttention(config);
    this.layer_norm1 = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.mlp = new CLIPMLP(config);
    this.layer_norm2 = new LayerNorm(config.hidden_size, config.layer_norm_eps);
  }
  /** (B, L, D) -> (B, L, D) */
  forward(x: Tensor, opts: { causal?: boolean; mask?: Tensor | null } = {}): Tensor {
    const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x), opts));
    return h.add(this.mlp.forward(this.layer_norm2.forward(h)));
  }
}

/** The stack of encoder layers (transformers CLIPEncoder). */
export class CLIPEncoder extends Module {
  layers: CLIPEncoderLayer[];
  constructor(config: TowerConfig) {
    super();
    this.layers = Array.from({ length: config.num_hidden_layers }, () => new CLIPEncoderLayer(config));
  }
  forward(x: Tensor, opts: { causal?: boolean; mask?: Tensor | null } = {}): Tensor {
    let h = x;
    for (const layer of this.layers) h = layer.forward(h, opts);
    return h;
  }
}
