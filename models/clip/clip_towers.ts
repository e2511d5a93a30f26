// CLIP's embeddings and transformers: the text tower (token and position embeddings, causal encoder,
// final norm, pooled EOS) and the vision tower (patch, class and position embeddings, pre/post norms).
import { concat, embedding, narrowSlice, noGrad, Tensor, tensor } from "../../engine/index.ts";
import { ShapeError } from "../../engine/errors.ts";
import { Conv2d, Embedding, LayerNorm } from "../nn/layers.ts";
import { Module, parameter } from "../nn/module.ts";
import type { CLIPTextConfig, CLIPVisionConfig } from "./configuration_clip.ts";
import { CLIPEncoder, eosPositions, flattenIds } from "./clip_encoder.ts";
import type { CLIPOutput, CLIPTextForwardOptions, InputIds } from "./clip_encoder.ts";

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
    if (rows.ndim !== 2 || rows.shape[1] !== d)
      throw new ShapeError(`CLIPTextEmbeddings: added rows must be (n, ${d}), got [${rows.shape}]`);
    const first = this.vocabSize;
    this._addedRows = this._addedRows
      ? concat([this._addedRows.detach(), rows], 0).requiresGrad_(rows.requiresGrad)
      : rows;
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
    if (length > maxPos)
      throw new ShapeError(`CLIPTextEmbeddings: sequence length ${length} exceeds max_position_embeddings ${maxPos}`);
    const pos = narrowSlice(this.position_embedding.weight, 0, 0, length); // (L, D)
    const base = this.token_embedding.weight.shape[0];
    const extra = this._addedRows;
    let anyNew = false;
    for (let i = 0; i < ids.length; i++) if (ids[i] >= base) anyNew = true;
    if (!extra || !anyNew) return this.token_embedding.forward(ids, [batch, length]).add(pos); // (B, L, D)
    // rows from the base table where id < V, from the added rows elsewhere
    const n = ids.length;
    const baseIds = new Int32Array(n),
      newIds = new Int32Array(n),
      isNew = new Float32Array(n);
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
    for (let i = 0; i < ids.length; i++)
      if (ids[i] < 0 || ids[i] >= vocab)
        throw new ShapeError(`CLIPTextTransformer: token id ${ids[i]} at ${i} is outside the vocabulary [0, ${vocab})`);
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
function paddingMask(
  m: ArrayLike<number> | readonly (readonly number[])[],
  batch: number,
  length: number,
  like: Tensor,
): Tensor {
  const flat =
    Array.isArray(m) && Array.isArray(m[0])
      ? (m as readonly (readonly number[])[]).flat()
      : Array.from(m as ArrayLike<number>);
  if (flat.length !== batch * length)
    throw new ShapeError(`CLIPTextTransformer: attention mask has ${flat.length} values, expected ${batch}x${length}`);
  const low = like.dtype === "float64" ? -Number.MAX_VALUE : -3.4028234663852886e38;
  return tensor(
    flat.map((v) => (v ? 0 : low)),
    [batch, 1, 1, length],
    { dtype: like.dtype },
  );
}

/** Class token, patch embedding (Conv2d, no bias, stride = patch) and positions (transformers CLIPVisionEmbeddings). */
export class CLIPVisionEmbeddings extends Module {
  class_embedding: Tensor;
  patch_embedding: Conv2d;
  position_embedding: Embedding;
  readonly numPatches: number;
  constructor(readonly config: CLIPVisionConfig) {
    super();
    const d = config.hidden_size,
      f = config.initializer_factor;
    this.class_embedding = parameter([d], { kind: "normal", std: d ** -0.5 * f });
    this.patch_embedding = new Conv2d(config.num_channels, d, config.patch_size, {
      stride: config.patch_size,
      bias: false,
    });
    this.patch_embedding.weight = parameter(this.patch_embedding.weight.shape, {
      kind: "normal",
      std: config.initializer_range * f,
    });
    this.numPatches = (config.image_size / config.patch_size) ** 2;
    this.position_embedding = new Embedding(this.numPatches + 1, d);
    this.position_embedding.weight = parameter(this.position_embedding.weight.shape, {
      kind: "normal",
      std: config.initializer_range * f,
    });
  }
  /** pixels (B, C, S, S) -> (B, 1 + (S/patch)^2, D) */
  forward(pixelValues: Tensor): Tensor {
    const { image_size: s, num_channels: c, hidden_size: d } = this.config;
    if (
      pixelValues.ndim !== 4 ||
      pixelValues.shape[1] !== c ||
      pixelValues.shape[2] !== s ||
      pixelValues.shape[3] !== s
    ) {
      throw new ShapeError(
        `CLIPVisionEmbeddings: pixel values must be (B, ${c}, ${s}, ${s}), got [${pixelValues.shape}]`,
      );
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
