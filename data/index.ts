// data layer: safetensors, images, the CLIP tokenizer
export * from "./safetensors.ts";
export * from "./images.ts";
export { CLIPTokenizer, CLIP_NUM_MERGES, bytesToUnicode, htmlUnescape, cleanText } from "./clip_tokenizer.ts";
export type { CLIPTokenizerOptions, EncodeOptions } from "./clip_tokenizer.ts";
