// CLIP text and vision transformers, mirroring transformers models/clip/modeling_clip.py
// (CLIPTextModel, CLIPVisionModel, *WithProjection, CLIPModel); field names are checkpoint key segments.
import { concat, embedding, gelu, mergeHeads, narrowSlice, noGrad, quickGelu, scaledDotProductAttention, splitHeads, Tensor, tensor } from "../../engine/index.ts";
import { ConfigError, ShapeError, StateDictError } from "../../engine/errors.ts";
import { readSafetensors, readSafetensorsHeader } from "../../data/safetensors.ts";
import { Conv2d, Embedding, LayerNorm, Linear } from "../nn/layers.ts";
import { Module, parameter, withShapeOnly } from "../nn/module.ts";
import { findWeights, readJsonConfig, saveModel } from "../modeling_utils.ts";
import type { CLIPConfig, CLIPHiddenAct, CLIPTextConfig, CLIPVisionConfig } from "./configuration_clip.ts";
import { CLIP_TEXT_DEFAULTS, CLIP_VISION_DEFAULTS, parseCLIPConfig, parseCLIPTextConfig, parseCLIPVisionConfig } from "./configuration_clip.ts";

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

const WEIGHTS_NAME = "model.safetensors";
/** Buffers transformers keeps in CLIP state dicts: not weights, skipped on load. */
export const CLIP_BUFFER_KEYS = ["text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"] as const;

/** Flattens token ids and checks them against the vocabulary; returns the ids with B and L. */
export function flattenIds(inputIds: InputIds, shape?: readonly number[]): { ids: Int32Array; batch: number; length: number } {
  let flat: ArrayLike<number>;
  let s: readonly number[];
  if (inputIds instanceof Tensor) {
    flat = inputIds.data;
    s = inputIds.shape;
  } else if (inputIds.length > 0 && Array.isArray(inputIds[0])) {
    const rows = inputIds as readonly (readonly number[])[];
    const L = rows[0].length;
    if (rows.some((r) => r.length !== L)) throw new ShapeError(`CLIPTextModel: input id rows must have equal lengths, got ${rows.map((r) => r.length)}`);
    flat = rows.flat();
    s = [rows.length, L];
  } else {
    flat = inputIds as ArrayLike<number>;
    s = shape ?? [1, flat.length];
  }
  if (s.length !== 2 || s[0] * s[1] !== flat.length || s[0] < 1 || s[1] < 1) {
    throw new ShapeError(`CLIPTextModel: input ids must be (B, L) with B, L >= 1, got shape [${s}] for ${flat.length} ids`);
  }
  const ids = new Int32Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isInteger(flat[i])) throw new ShapeError(`CLIPTextModel: input id at ${i} is not an integer, got ${flat[i]}`);
    ids[i] = flat[i];
  }
  return { ids, batch: s[0], length: s[1] };
}

/**
 * Per-row index of the pooled token, as transformers' CLIPTextTransformer: when eos_token_id is 2
 * (legacy configs), the position of the largest id (the first, on ties); otherwise the first
 * position holding eos_token_id (0 when the row has none).
 */
export function eosPositions(ids: ArrayLike<number>, batch: number, length: number, eosTokenId: number | null): number[] {
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
function initLinear(l: Linear, std: number): Linear {
  l.weight = parameter(l.weight.shape, { kind: "normal", std });
  if (l.bias) l.bias = parameter(l.bias.shape, { kind: "zeros" });
  return l;
}

type TowerConfig = Pick<CLIPTextConfig, "hidden_size" | "intermediate_size" | "num_attention_heads" | "num_hidden_layers" | "hidden_act" | "layer_norm_eps" | "initializer_factor">;

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
  constructor(config: Pick<TowerConfig, "hidden_size" | "num_attention_heads" | "num_hidden_layers" | "initializer_factor">) {
    super();
    this.embedDim = config.hidden_size;
    this.numHeads = config.num_attention_heads;
    this.headDim = this.embedDim / this.numHeads;
    if (!Number.isInteger(this.headDim)) throw new ConfigError(`CLIPAttention: hidden_size ${this.embedDim} is not divisible by num_attention_heads ${this.numHeads}`);
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
      const o = scaledDotProductAttention(this.q_proj.forward(x), this.k_proj.forward(x), this.v_proj.forward(x), { causal: opts.causal ?? false, scale: this.scale, heads: this.numHeads });
      return this.out_proj.forward(o); // (B, L, D)
    }
    const q = splitHeads(this.q_proj.forward(x), this.numHeads); // (B, H, L, d)
    const k = splitHeads(this.k_proj.forward(x), this.numHeads);
    const v = splitHeads(this.v_proj.forward(x), this.numHeads);
    const o = scaledDotProductAttention(q, k, v, { causal: opts.causal ?? false, mask: opts.mask ?? null, scale: this.scale }); // (B, H, L, d)
    return this.out_proj.forward(mergeHeads(o)); // (B, L, D)
  }
}

/** fc1 -> activation -> fc2 (transformers CLIPMLP). */
export class CLIPMLP extends Module {
  fc1: Linear;
  fc2: Linear;
  constructor(readonly config: Pick<TowerConfig, "hidden_size" | "intermediate_size" | "hidden_act" | "num_hidden_layers" | "initializer_factor">) {
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

/** Token plus absolute position embeddings (transformers CLIPTextEmbeddings). */
export class CLIPTextEmbeddings extends Module {
  token_embedding: Embedding;
  position_embedding: Embedding;
  constructor(config: CLIPTextConfig) {
    super();
    const std = config.initializer_factor * 0.02;
    this.token_embedding = new Embedding(config.vocab_size, config.hidden_size);
    this.token_embedding.weight = parameter(this.token_embedding.weight.shape, { kind: "normal", std });
    this.position_embedding = new Embedding(config.max_position_embeddings, config.hidden_size);
    this.position_embedding.weight = parameter(this.position_embedding.weight.shape, { kind: "normal", std });
  }
  /**
   * Rows for tokens added after the base vocabulary (ids V, V+1, ...), kept apart from the base
   * table so that only they train and carry optimizer state (Custom Diffusion's modifier tokens).
   * Not a state-dict key: `mergeAddedTokens()` folds them into token_embedding.weight.
   */
  _addedRows: Tensor | null = null;

  /** Base rows plus added rows. */
  get vocabSize(): number {
    return this.token_embedding.weight.shape[0] + (this._addedRows?.shape[0] ?? 0);
  }

  /** Appends rows (n, D) for new token ids; returns the first new id. */
  addTokenRows(rows: Tensor): number {
    const d = this.token_embedding.weight.shape[1];
    if (rows.ndim !== 2 || rows.shape[1] !== d) throw new ShapeError(`CLIPTextEmbeddings: added rows must be (n, ${d}), got [${rows.shape}]`);
    const first = this.vocabSize;
    this._addedRows = this._addedRows ? concat([this._addedRows.detach(), rows], 0).requiresGrad_(rows.requiresGrad) : rows;
    return first;
  }

  /** Folds the added rows into token_embedding.weight (a new, larger parameter). */
  mergeAddedTokens(): void {
    if (!this._addedRows) return;
    const w = noGrad(() => concat([this.token_embedding.weight, this._addedRows as Tensor], 0));
    this.token_embedding.weight = w.detach().requiresGrad_(this.token_embedding.weight.requiresGrad);
    this._addedRows = null;
  }

  /** ids (B*L) -> (B, L, D); positions 0..L-1 */
  forward(ids: ArrayLike<number>, batch: number, length: number): Tensor {
    const maxPos = this.position_embedding.numEmbeddings;
    if (length > maxPos) throw new ShapeError(`CLIPTextEmbeddings: sequence length ${length} exceeds max_position_embeddings ${maxPos}`);
    const pos = narrowSlice(this.position_embedding.weight, 0, 0, length); // (L, D)
    const base = this.token_embedding.weight.shape[0];
    const extra = this._addedRows;
    let anyNew = false;
    for (let i = 0; i < ids.length; i++) if (ids[i] >= base) anyNew = true;
    if (!extra || !anyNew) return this.token_embedding.forward(ids, [batch, length]).add(pos); // (B, L, D)
    // rows from the base table where id < V, from the added rows elsewhere
    const n = ids.length;
    const baseIds = new Int32Array(n), newIds = new Int32Array(n), isNew = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (id >= base) {
        newIds[i] = id - base;
        isNew[i] = 1;
      } else baseIds[i] = id;
    }
    const w = this.token_embedding.weight;
    const m = tensor(isNew, [batch, length, 1], { dtype: w.dtype }); // (B, L, 1)
    const fromBase = embedding(w, baseIds, [batch, length]).mul(m.neg().add(1)); // (B, L, D)
    const fromNew = embedding(extra, newIds, [batch, length]).mul(m); // (B, L, D)
    return fromBase.add(fromNew).add(pos);
  }
}

/** Text tower (transformers CLIPTextTransformer): embeddings, causal encoder, final layer norm, eos pooling. */
export class CLIPTextTransformer extends Module {
  embeddings: CLIPTextEmbeddings;
  encoder: CLIPEncoder;
  final_layer_norm: LayerNorm;
  constructor(readonly config: CLIPTextConfig) {
    super();
    this.embeddings = new CLIPTextEmbeddings(config);
    this.encoder = new CLIPEncoder(config);
    this.final_layer_norm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
  }
  /** ids (B, L) -> last_hidden_state (B, L, D) and pooler_output (B, D). */
  forward(inputIds: InputIds, shape?: readonly number[], opts: CLIPTextForwardOptions = {}): CLIPOutput {
    const { ids, batch, length } = flattenIds(inputIds, shape);
    const vocab = this.embeddings.vocabSize;
    for (let i = 0; i < ids.length; i++) if (ids[i] < 0 || ids[i] >= vocab) throw new ShapeError(`CLIPTextTransformer: token id ${ids[i]} at ${i} is outside the vocabulary [0, ${vocab})`);
    const x = this.embeddings.forward(ids, batch, length); // (B, L, D)
    const mask = opts.attentionMask ? paddingMask(opts.attentionMask, batch, length, x) : null; // (B, 1, 1, L)
    const h = this.final_layer_norm.forward(this.encoder.forward(x, { causal: true, mask })); // (B, L, D)
    const pos = eosPositions(ids, batch, length, this.config.eos_token_id);
    const rows = pos.map((p, b) => b * length + p);
    const pooled = h.reshape([batch * length, this.config.hidden_size]).indexSelect(0, rows); // (B, D)
    return { last_hidden_state: h, pooler_output: pooled };
  }
}

/** (B, 1, 1, L) additive mask: 0 where attended, the dtype's lowest value at padding (as transformers). */
function paddingMask(m: ArrayLike<number> | readonly (readonly number[])[], batch: number, length: number, like: Tensor): Tensor {
  const flat = Array.isArray(m) && Array.isArray(m[0]) ? (m as readonly (readonly number[])[]).flat() : Array.from(m as ArrayLike<number>);
  if (flat.length !== batch * length) throw new ShapeError(`CLIPTextTransformer: attention mask has ${flat.length} values, expected ${batch}x${length}`);
  const low = like.dtype === "float64" ? -Number.MAX_VALUE : -3.4028234663852886e38;
  return tensor(flat.map((v) => (v ? 0 : low)), [batch, 1, 1, length], { dtype: like.dtype });
}

/** Class token, patch embedding (Conv2d, no bias, stride = patch) and positions (transformers CLIPVisionEmbeddings). */
export class CLIPVisionEmbeddings extends Module {
  class_embedding: Tensor;
  patch_embedding: Conv2d;
  position_embedding: Embedding;
  readonly numPatches: number;
  constructor(readonly config: CLIPVisionConfig) {
    super();
    const d = config.hidden_size, f = config.initializer_factor;
    this.class_embedding = parameter([d], { kind: "normal", std: d ** -0.5 * f });
    this.patch_embedding = new Conv2d(config.num_channels, d, config.patch_size, { stride: config.patch_size, bias: false });
    this.patch_embedding.weight = parameter(this.patch_embedding.weight.shape, { kind: "normal", std: config.initializer_range * f });
    this.numPatches = (config.image_size / config.patch_size) ** 2;
    this.position_embedding = new Embedding(this.numPatches + 1, d);
    this.position_embedding.weight = parameter(this.position_embedding.weight.shape, { kind: "normal", std: config.initializer_range * f });
  }
  /** pixels (B, C, S, S) -> (B, 1 + (S/patch)^2, D) */
  forward(pixelValues: Tensor): Tensor {
    const { image_size: s, num_channels: c, hidden_size: d } = this.config;
    if (pixelValues.ndim !== 4 || pixelValues.shape[1] !== c || pixelValues.shape[2] !== s || pixelValues.shape[3] !== s) {
      throw new ShapeError(`CLIPVisionEmbeddings: pixel values must be (B, ${c}, ${s}, ${s}), got [${pixelValues.shape}]`);
    }
    const b = pixelValues.shape[0];
    const patches = this.patch_embedding.forward(pixelValues).reshape([b, d, this.numPatches]).permute(0, 2, 1); // (B, N, D)
    const cls = this.class_embedding.reshape([1, 1, d]).expand([b, 1, d]); // (B, 1, D)
    return concat([cls, patches], 1).add(this.position_embedding.weight); // (B, N + 1, D)
  }
}

/** Vision tower (transformers CLIPVisionTransformer). */
export class CLIPVisionTransformer extends Module {
  embeddings: CLIPVisionEmbeddings;
  pre_layrnorm: LayerNorm;
  encoder: CLIPEncoder;
  post_layernorm: LayerNorm;
  constructor(readonly config: CLIPVisionConfig) {
    super();
    this.embeddings = new CLIPVisionEmbeddings(config);
    this.pre_layrnorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
    this.encoder = new CLIPEncoder(config);
    this.post_layernorm = new LayerNorm(config.hidden_size, config.layer_norm_eps);
  }
  /** pixels (B, C, S, S) -> last_hidden_state (B, N + 1, D), pooler_output (B, D) */
  forward(pixelValues: Tensor): CLIPOutput {
    const h = this.encoder.forward(this.pre_layrnorm.forward(this.embeddings.forward(pixelValues))); // (B, N + 1, D)
    const cls = narrowSlice(h, 1, 0, 1).reshape([h.shape[0], h.shape[2]]); // (B, D)
    return { last_hidden_state: h, pooler_output: this.post_layernorm.forward(cls) };
  }
}

// loading: the checkpoint keys a model owns, position_ids buffers skipped; models are built shape-only first
// (no random init) and the strict load gives every parameter its storage
function loadCLIPWeights(model: Module, folder: string, keep: (key: string) => boolean): void {
  const file = findWeights(folder, [WEIGHTS_NAME]);
  const header = readSafetensorsHeader(file);
  const skip = new Set<string>(CLIP_BUFFER_KEYS);
  const keys = [...header.tensors.keys()].filter((k) => !skip.has(k) && keep(k));
  const { tensors } = readSafetensors(file, { keys });
  model.loadStateDict(tensors);
}

function checkModelType(raw: Record<string, unknown>, allowed: readonly string[], cls: string): void {
  const t = raw.model_type;
  if (t !== undefined && !allowed.includes(t as string)) throw new ConfigError(`${cls}: config model_type must be one of ${allowed.join(", ")}; got "${String(t)}"`);
}

const textConfigJson = (c: CLIPTextConfig, arch: string) => ({ ...c, architectures: [arch], model_type: "clip_text_model" });
const visionConfigJson = (c: CLIPVisionConfig, arch: string) => ({ ...c, architectures: [arch], model_type: "clip_vision_model" });

/** The text encoder of Stable Diffusion (transformers CLIPTextModel); keys `text_model.*`. */
export class CLIPTextModel extends Module {
  text_model: CLIPTextTransformer;
  constructor(readonly config: CLIPTextConfig) {
    super();
    this.text_model = new CLIPTextTransformer(config);
  }
  /** Builds from a config (random init). */
  static fromConfig(config: Partial<CLIPTextConfig> = {}): CLIPTextModel {
    return new CLIPTextModel({ ...CLIP_TEXT_DEFAULTS, ...config });
  }
  /** Loads `folder/config.json` and `folder/model.safetensors` (a CLIPModel folder gives its text tower). */
  static fromPretrained(folder: string): CLIPTextModel {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip_text_model", "clip"], "CLIPTextModel");
    const model = withShapeOnly(() => new CLIPTextModel(parseCLIPTextConfig(raw)));
    loadCLIPWeights(model, folder, (k) => k.startsWith("text_model."));
    return model;
  }
  /** Writes config.json and model.safetensors as transformers' save_pretrained lays them out. */
  save(folder: string): void {
    const emb = this.text_model.embeddings;
    if (emb._addedRows) throw new StateDictError("CLIPTextModel.save: the model has added token rows; call text_model.embeddings.mergeAddedTokens() first");
    saveModel(this, folder, WEIGHTS_NAME, textConfigJson({ ...this.config, vocab_size: emb.token_embedding.weight.shape[0] }, "CLIPTextModel"));
  }
  /** ids (B, L) -> last_hidden_state (B, L, D), pooler_output (B, D) */
  forward(inputIds: InputIds, shape?: readonly number[], opts: CLIPTextForwardOptions = {}): CLIPOutput {
    return this.text_model.forward(inputIds, shape, opts);
  }
}

/** CLIPTextModel plus `text_projection` (no bias): text_embeds = text_projection(pooler_output). */
export class CLIPTextModelWithProjection extends Module {
  text_model: CLIPTextTransformer;
  text_projection: Linear;
  constructor(readonly config: CLIPTextConfig) {
    super();
    this.text_model = new CLIPTextTransformer(config);
    this.text_projection = initLinear(new Linear(config.hidden_size, config.projection_dim, false), config.hidden_size ** -0.5 * config.initializer_factor);
  }
  static fromConfig(config: Partial<CLIPTextConfig> = {}): CLIPTextModelWithProjection {
    return new CLIPTextModelWithProjection({ ...CLIP_TEXT_DEFAULTS, ...config });
  }
  static fromPretrained(folder: string): CLIPTextModelWithProjection {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip_text_model", "clip"], "CLIPTextModelWithProjection");
    const model = withShapeOnly(() => new CLIPTextModelWithProjection(parseCLIPTextConfig(raw)));
    loadCLIPWeights(model, folder, (k) => k.startsWith("text_model.") || k.startsWith("text_projection."));
    return model;
  }
  save(folder: string): void {
    saveModel(this, folder, WEIGHTS_NAME, textConfigJson(this.config, "CLIPTextModelWithProjection"));
  }
  /** ids (B, L) -> text_embeds (B, P), last_hidden_state (B, L, D) */
  forward(inputIds: InputIds, shape?: readonly number[], opts: CLIPTextForwardOptions = {}): { text_embeds: Tensor; last_hidden_state: Tensor } {
    const o = this.text_model.forward(inputIds, shape, opts);
    return { text_embeds: this.text_projection.forward(o.pooler_output), last_hidden_state: o.last_hidden_state };
  }
}

/** The image tower (transformers CLIPVisionModel); keys `vision_model.*`. */
export class CLIPVisionModel extends Module {
  vision_model: CLIPVisionTransformer;
  constructor(readonly config: CLIPVisionConfig) {
    super();
    this.vision_model = new CLIPVisionTransformer(config);
  }
  static fromConfig(config: Partial<CLIPVisionConfig> = {}): CLIPVisionModel {
    return new CLIPVisionModel({ ...CLIP_VISION_DEFAULTS, ...config });
  }
  static fromPretrained(folder: string): CLIPVisionModel {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip_vision_model", "clip"], "CLIPVisionModel");
    const model = withShapeOnly(() => new CLIPVisionModel(parseCLIPVisionConfig(raw)));
    loadCLIPWeights(model, folder, (k) => k.startsWith("vision_model."));
    return model;
  }
  save(folder: string): void {
    saveModel(this, folder, WEIGHTS_NAME, visionConfigJson(this.config, "CLIPVisionModel"));
  }
  /** pixels (B, C, S, S), normalised as clipPreprocess does -> last_hidden_state (B, N + 1, D), pooler_output (B, D) */
  forward(pixelValues: Tensor): CLIPOutput {
    return this.vision_model.forward(pixelValues);
  }
}

/** CLIPVisionModel plus `visual_projection` (no bias): image_embeds = visual_projection(pooler_output). */
export class CLIPVisionModelWithProjection extends Module {
  vision_model: CLIPVisionTransformer;
  visual_projection: Linear;
  constructor(readonly config: CLIPVisionConfig) {
    super();
    this.vision_model = new CLIPVisionTransformer(config);
    this.visual_projection = initLinear(new Linear(config.hidden_size, config.projection_dim, false), config.hidden_size ** -0.5 * config.initializer_factor);
  }
  static fromConfig(config: Partial<CLIPVisionConfig> = {}): CLIPVisionModelWithProjection {
    return new CLIPVisionModelWithProjection({ ...CLIP_VISION_DEFAULTS, ...config });
  }
  static fromPretrained(folder: string): CLIPVisionModelWithProjection {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip_vision_model", "clip"], "CLIPVisionModelWithProjection");
    const model = withShapeOnly(() => new CLIPVisionModelWithProjection(parseCLIPVisionConfig(raw)));
    loadCLIPWeights(model, folder, (k) => k.startsWith("vision_model.") || k.startsWith("visual_projection."));
    return model;
  }
  save(folder: string): void {
    saveModel(this, folder, WEIGHTS_NAME, visionConfigJson(this.config, "CLIPVisionModelWithProjection"));
  }
  /** pixels (B, C, S, S) -> image_embeds (B, P), last_hidden_state (B, N + 1, D) */
  forward(pixelValues: Tensor): { image_embeds: Tensor; last_hidden_state: Tensor } {
    const o = this.vision_model.forward(pixelValues);
    return { image_embeds: this.visual_projection.forward(o.pooler_output), last_hidden_state: o.last_hidden_state };
  }
}

/** Outputs of CLIPModel.forward (transformers CLIPOutput). */
export interface CLIPModelOutput {
  /** (B_img, B_txt) = exp(logit_scale) * cosine similarity */
  logits_per_image: Tensor;
  /** (B_txt, B_img) */
  logits_per_text: Tensor;
  /** (B_txt, P), L2-normalised */
  text_embeds: Tensor;
  /** (B_img, P), L2-normalised */
  image_embeds: Tensor;
}

const l2normalize = (x: Tensor) => x.div(x.square().sum(-1, true).sqrt()); // (B, P)

/** Both towers with projections and the learned temperature (transformers CLIPModel). */
export class CLIPModel extends Module {
  text_model: CLIPTextTransformer;
  vision_model: CLIPVisionTransformer;
  visual_projection: Linear;
  text_projection: Linear;
  logit_scale: Tensor;
  constructor(readonly config: CLIPConfig) {
    super();
    const t = config.text_config, v = config.vision_config;
    this.text_model = new CLIPTextTransformer(t);
    this.vision_model = new CLIPVisionTransformer(v);
    this.visual_projection = initLinear(new Linear(v.hidden_size, config.projection_dim, false), v.hidden_size ** -0.5 * config.initializer_factor);
    this.text_projection = initLinear(new Linear(t.hidden_size, config.projection_dim, false), t.hidden_size ** -0.5 * config.initializer_factor);
    this.logit_scale = parameter([], { kind: "const", value: config.logit_scale_init_value });
  }
  static fromConfig(config: { text_config?: Partial<CLIPTextConfig>; vision_config?: Partial<CLIPVisionConfig>; projection_dim?: number; logit_scale_init_value?: number; initializer_factor?: number } = {}): CLIPModel {
    const projection_dim = config.projection_dim ?? 512;
    return new CLIPModel({
      text_config: { ...CLIP_TEXT_DEFAULTS, ...config.text_config, projection_dim },
      vision_config: { ...CLIP_VISION_DEFAULTS, ...config.vision_config, projection_dim },
      projection_dim,
      logit_scale_init_value: config.logit_scale_init_value ?? 2.6592,
      initializer_factor: config.initializer_factor ?? 1,
    });
  }
  static fromPretrained(folder: string): CLIPModel {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip"], "CLIPModel");
    const model = withShapeOnly(() => new CLIPModel(parseCLIPConfig(raw)));
    loadCLIPWeights(model, folder, () => true);
    return model;
  }
  save(folder: string): void {
    const c = this.config;
    saveModel(this, folder, WEIGHTS_NAME, {
      text_config: { ...c.text_config, projection_dim: c.projection_dim, model_type: "clip_text_model" },
      vision_config: { ...c.vision_config, projection_dim: c.projection_dim, model_type: "clip_vision_model" },
      projection_dim: c.projection_dim, logit_scale_init_value: c.logit_scale_init_value, initializer_factor: c.initializer_factor,
      architectures: ["CLIPModel"], model_type: "clip",
    });
  }
  /** ids (B, L) -> (B, P) projected pooled text features (not normalised). */
  getTextFeatures(inputIds: InputIds, shape?: readonly number[], opts: CLIPTextForwardOptions = {}): Tensor {
    return this.text_projection.forward(this.text_model.forward(inputIds, shape, opts).pooler_output);
  }
  /** pixels (B, C, S, S) -> (B, P) projected pooled image features (not normalised). */
  getImageFeatures(pixelValues: Tensor): Tensor {
    return this.visual_projection.forward(this.vision_model.forward(pixelValues).pooler_output);
  }
  /** Cosine-similarity logits between every image and every text, scaled by exp(logit_scale). */
  forward(inputIds: InputIds, pixelValues: Tensor, shape?: readonly number[]): CLIPModelOutput {
    const text = l2normalize(this.getTextFeatures(inputIds, shape)); // (Bt, P)
    const image = l2normalize(this.getImageFeatures(pixelValues)); // (Bi, P)
    const logitsPerText = text.matmul(image.transpose(0, 1)).mul(this.logit_scale.exp()); // (Bt, Bi)
    return { logits_per_image: logitsPerText.transpose(0, 1), logits_per_text: logitsPerText, text_embeds: text, image_embeds: image };
  }
}
