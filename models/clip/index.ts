// CLIP text and vision models, configs and image preprocessing (transformers models/clip)
export * from "./configuration_clip.ts";
export * from "./modeling_clip.ts";
export * from "./image_processing_clip.ts";
