// data layer: safetensors, images, the CLIP tokenizer, PyTorch zip checkpoints (restricted reader and writer)
export * from "./safetensors.ts";
export * from "./images.ts";
export { CLIPTokenizer, CLIP_NUM_MERGES, bytesToUnicode, htmlUnescape, cleanText } from "./clip_tokenizer.ts";
export type { CLIPTokenizerOptions, EncodeOptions } from "./clip_tokenizer.ts";
export { readTorchZip, writeTorchZip, isTorchZip, sniffTorchFile, PyTuple } from "./torch_zip.ts";
export type { TorchTensor, TorchTensorInput, PyValue, PyInput, TorchZipOptions } from "./torch_zip.ts";
