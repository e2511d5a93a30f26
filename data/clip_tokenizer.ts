// CLIP byte-level BPE tokenizer, as used by Stable Diffusion's text encoder: text cleanup, CLIP's
// pre-split regex, merge-rank BPE with `</w>` end-of-word marks, added tokens, padding and truncation.
// Loads the bundled bpe_simple_vocab_16e6 merges or a diffusers `tokenizer/` folder.
// The parts live in data/clip_tokenizer/: text (bytes and cleanup), vocab (merges and ids), tokenizer.
export { bytesToUnicode, htmlUnescape, cleanText } from "./clip_tokenizer/text.ts";
export { CLIP_NUM_MERGES } from "./clip_tokenizer/vocab.ts";
export type { CLIPTokenizerOptions, EncodeOptions, DecodeOptions } from "./clip_tokenizer/tokenizer.ts";
export { CLIPTokenizer } from "./clip_tokenizer/tokenizer.ts";
