// The loadable CLIP models: CLIPTextModel, CLIPVisionModel, their *WithProjection forms and CLIPModel,
// with loading from and saving to transformers checkpoints.
import { Tensor } from "../../engine/index.ts";
import { ConfigError, StateDictError } from "../../engine/errors.ts";
import { Linear } from "../nn/layers.ts";
import { Module, parameter, withShapeOnly } from "../nn/module.ts";
import { findWeights, loadWeights, readJsonConfig, saveModel } from "../modeling_utils.ts";
import type { LoadOptions } from "../modeling_utils.ts";
import type { CLIPConfig, CLIPTextConfig, CLIPVisionConfig } from "./configuration_clip.ts";
import {
  CLIP_TEXT_DEFAULTS,
  CLIP_VISION_DEFAULTS,
  parseCLIPConfig,
  parseCLIPTextConfig,
  parseCLIPVisionConfig,
} from "./configuration_clip.ts";
import { CLIP_BUFFER_KEYS, WEIGHTS_NAME, initLinear } from "./clip_encoder.ts";
import type { CLIPOutput, CLIPTextForwardOptions, InputIds } from "./clip_encoder.ts";
import { CLIPTextTransformer, CLIPVisionTransformer } from "./clip_towers.ts";

// loading: the checkpoint keys a model owns, position_ids buffers skipped; models are built shape-only first
// (no random init) and the strict load gives every parameter its storage
function loadCLIPWeights(model: Module, folder: string, keep: (key: string) => boolean, opts: LoadOptions = {}): void {
  loadWeights(model, findWeights(folder, [WEIGHTS_NAME]), CLIP_BUFFER_KEYS, { ...opts, keys: keep });
}

function checkModelType(raw: Record<string, unknown>, allowed: readonly string[], cls: string): void {
  const t = raw.model_type;
  if (t !== undefined && !allowed.includes(t as string))
    throw new ConfigError(`${cls}: config model_type must be one of ${allowed.join(", ")}; got "${String(t)}"`);
}

const textConfigJson = (c: CLIPTextConfig, arch: string) => ({
  ...c,
  architectures: [arch],
  model_type: "clip_text_model",
});
const visionConfigJson = (c: CLIPVisionConfig, arch: string) => ({
  ...c,
  architectures: [arch],
  model_type: "clip_vision_model",
});

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
  static fromPretrained(folder: string, opts: LoadOptions = {}): CLIPTextModel {
    const raw = readJsonConfig(folder);
    checkModelType(raw, ["clip_text_model", "clip"], "CLIPTextModel");
    const model = withShapeOnly(() => new CLIPTextModel(parseCLIPTextConfig(raw)));
    loadCLIPWeights(model, folder, (k) => k.startsWith("text_model."), opts);
    return model;
  }
  /** Writes config.json and model.safetensors as transformers' save_pretrained lays them out. */
  save(folder: string): void {
    const emb = this.text_model.embeddings;
    if (emb._addedRows)
      throw new StateDictError(
        "CLIPTextModel.save: the model has added token rows; call text_model.embeddings.mergeAddedTokens() first",
      );
    saveModel(
      this,
      folder,
      WEIGHTS_NAME,
      textConfigJson({ ...this.config, vocab_size: emb.token_embedding.weight.shape[0] }, "CLIPTextModel"),
    );
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
    this.text_projection = initLinear(
      new Linear(config.hidden_size, config.projection_dim, false),
      config.hidden_size ** -0.5 * config.initializer_factor,
    );
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
  forward(
    inputIds: InputIds,
    shape?: readonly number[],
    opts: CLIPTextForwardOptions = {},
  ): { text_embeds: Tensor; last_hidden_state: Tensor } {
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
    this.visual_projection = initLinear(
      new Linear(config.hidden_size, config.projection_dim, false),
      config.hidden_size ** -0.5 * config.initializer_factor,
    );
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
    const t = config.text_config,
      v = config.vision_config;
    this.text_model = new CLIPTextTransformer(t);
    this.vision_model = new CLIPVisionTransformer(v);
    this.visual_projection = initLinear(
      new Linear(v.hidden_size, config.projection_dim, false),
      v.hidden_size ** -0.5 * config.initializer_factor,
    );
    this.text_projection = initLinear(
      new Linear(t.hidden_size, config.projection_dim, false),
      t.hidden_size ** -0.5 * config.initializer_factor,
    );
    this.logit_scale = parameter([], { kind: "const", value: config.logit_scale_init_value });
  }
  static fromConfig(
    config: {
      text_config?: Partial<CLIPTextConfig>;
      vision_config?: Partial<CLIPVisionConfig>;
      projection_dim?: number;
      logit_scale_init_value?: number;
      initializer_factor?: number;
    } = {},
  ): CLIPModel {
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
      projection_dim: c.projection_dim,
      logit_scale_init_value: c.logit_scale_init_value,
      initializer_factor: c.initializer_factor,
      architectures: ["CLIPModel"],
      model_type: "clip",
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
    return {
      logits_per_image: logitsPerText.transpose(0, 1),
      logits_per_text: logitsPerText,
      text_embeds: text,
      image_embeds: image,
    };
  }
}
