// CLIP text and vision transformers, mirroring transformers models/clip/modeling_clip.py
// (CLIPTextModel, CLIPVisionModel, *WithProjection, CLIPModel); field names are checkpoint key segments.
// The parts live beside this file: clip_encoder (ids, outputs, the encoder), clip_towers (embeddings and
// transformers), clip_models (the loadable models).
export type { InputIds, CLIPOutput, CLIPTextForwardOptions } from "./clip_encoder.ts";
export {
  CLIP_BUFFER_KEYS,
  flattenIds,
  eosPositions,
  CLIPAttention,
  CLIPMLP,
  CLIPEncoderLayer,
  CLIPEncoder,
} from "./clip_encoder.ts";
export { CLIPTextEmbeddings, CLIPTextTransformer, CLIPVisionEmbeddings, CLIPVisionTransformer } from "./clip_towers.ts";
export type { CLIPModelOutput } from "./clip_models.ts";
export {
  CLIPTextModel,
  CLIPTextModelWithProjection,
  CLIPVisionModel,
  CLIPVisionModelWithProjection,
  CLIPModel,
} from "./clip_models.ts";
