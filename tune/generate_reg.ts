// Generated regularisation (Custom Diffusion paper, the alternative to retrieval; the reference scripts'
// --with_prior_preservation class images): N samples of "photo of a {class}" from the base model, cached on disk
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";
import { readImage, writePng } from "../data/images.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { baseFingerprint } from "./delta.ts";

/** Default cache root: ~/.cache/custom-diffusion-ts/class-images. */
export const DEFAULT_REG_CACHE = path.join(os.homedir(), ".cache", "custom-diffusion-ts", "class-images");

/** Inputs of {@link generateRegularisation}. */
export interface GenerateRegOptions {
  /** the base pipeline (sample before customising it) */
  pipeline: StableDiffusionPipeline;
  /** the class word ("dog"); the prompt is `promptTemplate` with it */
  classPrompt: string;
  /** "{}" is replaced by the class prompt (default "photo of a {}") */
  promptTemplate?: string;
  /** how many images (default 200) */
  numImages?: number;
  /** denoising steps (default 50) */
  steps?: number;
  /** classifier-free guidance (default 7.5, the pipeline default the reference uses; 1 for the small world) */
  guidanceScale?: number;
  /** seed of the first batch; batch b uses seed + b * batchSize (default 0) */
  seed?: number;
  /** images per pipeline.generate call (default 4) */
  batchSize?: number;
  /** cache root; each set of images goes in a sub-folder named by its key (default {@link DEFAULT_REG_CACHE}) */
  cacheDir?: string;
  log?: (line: string) => void;
}

/** What {@link generateRegularisation} returns. */
export interface GenerateRegResult {
  /** folder of the PNGs, usable as a concept's `class_data_dir` */
  dir: string;
  /** the PNG files, in order */
  files: string[];
  /** the prompt sampled */
  prompt: string;
  /** the cache key (hex) */
  key: string;
  /** images sampled by this call (0 when everything came from the cache) */
  generated: number;
  /** images taken from the cache */
  reused: number;
}

const MARKER = "generation.json";

/**
 * Samples `numImages` images of `promptTemplate` with the class prompt from the base pipeline, in
 * batches with fixed seeds, and writes them as PNGs into `cacheDir/<key>`, the key a hash of the base
 * model's fingerprint (tune/delta.ts baseFingerprint), the prompt, N, steps, guidance, seed, batch size
 * and resolution. A later call with the same inputs reuses the images without sampling; an
 * interrupted run keeps its finished batches and samples only the rest.
 */
export function generateRegularisation(o: GenerateRegOptions): GenerateRegResult {
  const log = o.log ?? ((s: string) => console.log(s));
  const n = o.numImages ?? 200,
    steps = o.steps ?? 50,
    guidance = o.guidanceScale ?? 7.5,
    seed = o.seed ?? 0,
    bs = o.batchSize ?? 4;
  const template = o.promptTemplate ?? "photo of a {}";
  if (!template.includes("{}"))
    throw new ConfigError(`generate_reg: promptTemplate must contain {}, got "${template}"`);
  for (const [k, v] of Object.entries({ numImages: n, steps, batchSize: bs })) {
    if (!(Number.isInteger(v) && v >= 1))
      throw new ConfigError(`generate_reg: ${k} must be a positive integer, got ${v}`);
  }
  const pipe = o.pipeline;
  const prompt = template.split("{}").join(o.classPrompt);
  const size = (pipe.unet.config.sample_size ?? 64) * pipe.vaeScaleFactor;
  const spec = {
    model: baseFingerprint(pipe.unet),
    prompt,
    num_images: n,
    steps,
    guidance_scale: guidance,
    seed,
    batch_size: bs,
    resolution: size,
    scheduler: pipe.scheduler.constructor.name,
  };
  const key = createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 16);
  const dir = path.join(
    o.cacheDir ?? DEFAULT_REG_CACHE,
    `${o.classPrompt.replace(/[^a-z0-9]+/gi, "_").slice(0, 40)}-${key}`,
  );
  const width = String(n - 1).length;
  const files = Array.from({ length: n }, (_, i) => path.join(dir, `${String(i).padStart(width, "0")}.png`));
  const readable = (f: string): boolean => {
    try {
      readImage(f);
      return true;
    } catch {
      return false;
    }
  };
  if (fs.existsSync(path.join(dir, MARKER)) && files.every(readable)) {
    log(`generate_reg: reusing ${n} cached images of "${prompt}" from ${dir}`);
    return { dir, files, prompt, key, generated: 0, reused: n };
  }
  fs.mkdirSync(dir, { recursive: true });
  let generated = 0,
    reused = 0;
  const t0 = performance.now();
  for (let b0 = 0; b0 < n; b0 += bs) {
    const batch = files.slice(b0, Math.min(n, b0 + bs));
    if (batch.every(readable)) {
      reused += batch.length;
      continue;
    }
    const { images } = pipe.generate({
      prompt,
      numImagesPerPrompt: batch.length,
      numInferenceSteps: steps,
      guidanceScale: guidance,
      seed: seed + b0,
    });
    images.forEach((img, i) => writePng(batch[i]!, img)); // atomic: a temporary file renamed into place
    generated += batch.length;
    const el = (performance.now() - t0) / 1000;
    log(
      `generate_reg: ${b0 + batch.length}/${n} images of "${prompt}"  ${(el / generated).toFixed(2)} s/image  ETA ${((el / generated) * (n - b0 - batch.length)).toFixed(0)} s`,
    );
  }
  writeJsonAtomic(path.join(dir, MARKER), { ...spec, key, files: files.map((f) => path.basename(f)) });
  if (reused > 0) log(`generate_reg: reusing ${reused} cached images, sampled ${generated}`);
  log(`generate_reg: ${n} images of "${prompt}" in ${dir}`);
  return { dir, files, prompt, key, generated, reused };
}
