// The small world's image-text scorer: a CLIP-style model (transformers CLIPModel layout: a 16 px
// CLIPVisionModel tower and a small CLIPTextModel tower over the world's restricted tokenizer), as a
// FeatureScorer for the metrics and a text encoder for retrieval; plus the world corpus as image files.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Generator, noGrad, tensor } from "../engine/index.ts";
import { ConfigError } from "../engine/errors.ts";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import type { Image } from "../data/images.ts";
import { writeFileAtomic } from "../data/atomic.ts";
import { chwToImage, writePng } from "../data/images.ts";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import { withInitGenerator } from "../models/nn/module.ts";
import { CLIPModel } from "../models/clip/modeling_clip.ts";
import { CLIP_MEAN, CLIP_STD } from "../models/clip/image_processing_clip.ts";
import type { FeatureScorer } from "../tune/evaluate.ts";
import { clipPixelValues } from "../tune/evaluate.ts";
import type { WorldDataset } from "./dataset.ts";
import { loadWorldDataset } from "./dataset.ts";
import { applyTemplate } from "./build_dataset.ts";
import { WORLD_MAX_TOKENS } from "./model.ts";

/** Where the shipped scorer lives (a CLIPModel folder: config.json, model.safetensors, tokenizer/, scorer.json). */
export const WORLD_SCORER_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "scorer");

/** Image side the vision tower takes (the corpus size: no resize). */
export const WORLD_SCORER_IMAGE_SIZE = 16;

/** Tower sizes of the world scorer (the text tower's vocabulary and special ids come from its tokenizer). */
export const WORLD_SCORER_ARCH = {
  projection_dim: 64,
  vision: {
    image_size: WORLD_SCORER_IMAGE_SIZE,
    patch_size: 4,
    hidden_size: 64,
    intermediate_size: 256,
    num_hidden_layers: 3,
    num_attention_heads: 4,
  },
  text: {
    hidden_size: 64,
    intermediate_size: 256,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    max_position_embeddings: WORLD_MAX_TOKENS,
  },
} as const;

/** A freshly initialised world scorer for `tokenizer` (the world's restricted tokenizer). */
export function buildWorldScorer(tokenizer: CLIPTokenizer, seed = 0): CLIPModel {
  return withInitGenerator(new Generator(seed), () =>
    CLIPModel.fromConfig({
      projection_dim: WORLD_SCORER_ARCH.projection_dim,
      vision_config: { ...WORLD_SCORER_ARCH.vision, hidden_act: "quick_gelu" },
      text_config: {
        ...WORLD_SCORER_ARCH.text,
        hidden_act: "quick_gelu",
        vocab_size: tokenizer.vocabSize,
        bos_token_id: tokenizer.bosTokenId,
        eos_token_id: tokenizer.eosTokenId,
        pad_token_id: tokenizer.padTokenId,
      },
    }),
  );
}

/**
 * Token ids for the scorer's text tower: [bos, pieces..., eos] padded to WORLD_MAX_TOKENS. Pieces
 * outside the restricted vocabulary (which the tokenizer maps to its unknown token, the same id as
 * end-of-text) are dropped, so an unknown word does not end the text early at the pooled position.
 */
export function encodeWorldText(
  tokenizer: CLIPTokenizer,
  text: string,
  maxLength: number = WORLD_MAX_TOKENS,
): number[] {
  const raw = tokenizer.encode(text, { padding: "none", truncation: false });
  const core = raw
    .slice(1, -1)
    .filter((id) => id !== tokenizer.unkTokenId && id !== tokenizer.bosTokenId)
    .slice(0, maxLength - 2);
  const ids = [tokenizer.bosTokenId, ...core, tokenizer.eosTokenId];
  while (ids.length < maxLength) ids.push(tokenizer.padTokenId);
  return ids;
}

/**
 * CHW images in [-1, 1] (the world dataset's layout, 16x16) -> (N, 3, 16, 16) pixel values for the
 * vision tower: mapped to [0, 1], then normalised with CLIP's mean and std per channel.
 */
export function worldPixelValues(
  images: readonly Float32Array[],
  size: number = WORLD_SCORER_IMAGE_SIZE,
): Float32Array {
  const plane = size * size;
  const out = new Float32Array(images.length * 3 * plane); // (N, 3, size, size)
  images.forEach((img, n) => {
    if (img.length !== 3 * plane)
      throw new ConfigError(`world scorer: expected CHW images of 3x${size}x${size}, got ${img.length} values`);
    for (let c = 0; c < 3; c++) {
      const m = CLIP_MEAN[c],
        s = CLIP_STD[c];
      for (let i = 0; i < plane; i++) out[(n * 3 + c) * plane + i] = ((img[c * plane + i]! + 1) / 2 - m) / s;
    }
  });
  return out;
}

/** The world scorer: a {@link FeatureScorer} plus the model, its tokenizer and a CHW entry point. */
export interface WorldScorer extends FeatureScorer {
  model: CLIPModel;
  tokenizer: CLIPTokenizer;
  /**
   * Images as the project's HWC `Image` in [0, 1] (data/images.ts; alpha composited on white). 16x16
   * images go in unchanged; other sizes are resized (bicubic on the short side) and center-cropped
   * to 16 as CLIPImageProcessor does. Returns projected image features (not normalised).
   */
  imageFeatures(images: readonly Image[]): Float64Array[];
  /** CHW 16x16 images in [-1, 1] (the world dataset's `images`, a pipeline's output tensor rows). */
  imageFeaturesCHW(images: readonly Float32Array[]): Float64Array[];
  /** Projected text features (not normalised); words outside the world's vocabulary are dropped. */
  textFeatures(texts: readonly string[]): Float64Array[];
}

function rowsOf(data: ArrayLike<number>, n: number): Float64Array[] {
  const d = data.length / n;
  return Array.from({ length: n }, (_, i) => {
    const r = new Float64Array(d);
    for (let j = 0; j < d; j++) r[j] = data[i * d + j]!;
    return r;
  });
}

/** Wraps a CLIPModel (in eval mode) and its tokenizer as a {@link WorldScorer}. */
export function worldScorer(
  model: CLIPModel,
  tokenizer: CLIPTokenizer,
  opts: { batchSize?: number } = {},
): WorldScorer {
  const bs = opts.batchSize ?? 128;
  const size = model.config.vision_config.image_size;
  const maxLen = model.config.text_config.max_position_embeddings;
  const batched = <T>(xs: readonly T[], f: (batch: readonly T[]) => ArrayLike<number>): Float64Array[] => {
    const out: Float64Array[] = [];
    for (let b0 = 0; b0 < xs.length; b0 += bs) {
      const batch = xs.slice(b0, b0 + bs);
      out.push(...rowsOf(f(batch), batch.length));
    }
    return out;
  };
  const fromPixels = (px: Float32Array, n: number) =>
    noGrad(() => model.getImageFeatures(tensor(px, [n, 3, size, size])).data); // (n, P)
  return {
    model,
    tokenizer,
    imageFeatures: (images) =>
      batched(images, (batch) => {
        return fromPixels(clipPixelValues(batch, size), batch.length);
      }),
    imageFeaturesCHW: (images) => batched(images, (batch) => fromPixels(worldPixelValues(batch, size), batch.length)),
    textFeatures: (texts) =>
      batched(texts, (batch) =>
        noGrad(() => model.getTextFeatures(batch.map((t) => encodeWorldText(tokenizer, t, maxLen))).data),
      ),
  };
}

/**
 * Loads the shipped scorer (or another folder in the same layout) in eval mode.
 * @throws ConfigError naming the folder when it holds no scorer
 */
export function loadWorldScorer(folder: string = WORLD_SCORER_DIR, opts: { batchSize?: number } = {}): WorldScorer {
  if (!fs.existsSync(path.join(folder, "config.json")) || !fs.existsSync(path.join(folder, "tokenizer"))) {
    throw new ConfigError(
      `world scorer: no scorer at ${folder} (config.json, model.safetensors, tokenizer/); train one with \`npx tsx world/train_scorer.ts\``,
    );
  }
  const model = CLIPModel.fromPretrained(folder).eval();
  const tokenizer = CLIPTokenizer.fromPretrained(path.join(folder, "tokenizer"));
  return worldScorer(model, tokenizer, opts);
}

/** Writes a scorer in the CLIPModel folder layout, weights stored as F16 (tokenizer saved separately). */
export function saveWorldScorer(model: CLIPModel, folder: string): void {
  model.save(folder);
  const file = path.join(folder, "model.safetensors");
  const { tensors, metadata } = readSafetensors(file);
  writeSafetensors(file, tensors, { dtype: "F16", metadata }); // atomic: a temporary renamed over the file
}

/**
 * Writes the world's training images as PNG files with a captions.txt (one caption per image in
 * sorted file order): a local image-caption corpus, the stand-in for LAION that
 * `retrieveRegularisation` (tune/retrieve.ts) searches. Files are `NNN-<caption>-<vendor>.png`.
 * Held-out concepts are not included.
 * @param opts.templates caption image k with the dataset's caption templates in turn ("horse face",
 *   "a horse face", "photo of a horse face", ...) instead of the bare class caption
 * @returns the folder and the number of images
 */
export function buildWorldCorpus(
  out: string,
  opts: { dataset?: WorldDataset; templates?: boolean } = {},
): { dir: string; count: number } {
  const ds = opts.dataset ?? loadWorldDataset();
  fs.mkdirSync(out, { recursive: true });
  const width = String(ds.images.length - 1).length;
  const lines: string[] = [];
  ds.images.forEach((img, k) => {
    const caption = opts.templates
      ? applyTemplate(ds.captionTemplates[k % ds.captionTemplates.length]!, ds.captions[k]!)
      : ds.captions[k]!;
    const name = `${String(k).padStart(width, "0")}-${ds.captions[k]!.replace(/[^a-z0-9]+/gi, "-")}-${ds.vendors[k]}.png`;
    writePng(path.join(out, name), chwToImage(img, 3, ds.size, ds.size));
    lines.push(caption);
  });
  writeFileAtomic(path.join(out, "captions.txt"), lines.join("\n") + "\n");
  return { dir: out, count: ds.images.length };
}
