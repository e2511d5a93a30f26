// The paper's metrics: text-alignment (CLIP image-text cosine, also CLIPScore 2.5 * max(cos, 0)), image-
// alignment (mean pairwise image cosine to the targets) and KID (unbiased polynomial-kernel MMD^2, as torchmetrics)
import { ConfigError } from "../engine/errors.ts";
import { Generator, noGrad, tensor } from "../engine/index.ts";
import type { Image } from "../data/images.ts";
import { toRGB } from "../data/images.ts";
import type { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import type { CLIPModel } from "../models/clip/modeling_clip.ts";
import { clipPreprocess } from "../models/clip/image_processing_clip.ts";

type Vec = ArrayLike<number>;

/** Anything that turns images and texts into feature vectors (a CLIP model, or a small world's own scorer). */
export interface FeatureScorer {
  imageFeatures(images: readonly Image[]): Vec[];
  textFeatures(texts: readonly string[]): Vec[];
}

/** Images (HWC in [0, 1]; alpha composited on white) -> (N, 3, size, size) CLIP pixel values (resize, crop, normalise). */
export function clipPixelValues(images: readonly Image[], size: number): Float32Array {
  const px = new Float32Array(images.length * 3 * size * size); // (N, 3, size, size)
  images.forEach((im0, i) => {
    const im = im0.channels === 3 ? im0 : toRGB(im0);
    const { width: w, height: h } = im,
      plane = w * h;
    const chw = new Float32Array(3 * plane);
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) chw[c * plane + p] = im.data[p * 3 + c]!;
    px.set(clipPreprocess(chw, 3, h, w, { size, cropSize: size }), i * 3 * size * size);
  });
  return px;
}

/** A {@link FeatureScorer} over a CLIPModel: CLIPImageProcessor preprocessing, projected pooled features. */
export function clipScorer(
  model: CLIPModel,
  tokenizer: CLIPTokenizer,
  opts: { batchSize?: number } = {},
): FeatureScorer {
  const bs = opts.batchSize ?? 8;
  const size = model.config.vision_config.image_size;
  const maxLen = Math.min(tokenizer.modelMaxLength, model.config.text_config.max_position_embeddings);
  const rows = (data: ArrayLike<number>, n: number): Float64Array[] => {
    const d = data.length / n;
    return Array.from({ length: n }, (_, i) =>
      Float64Array.from(Array.prototype.slice.call(data, i * d, (i + 1) * d) as number[]),
    );
  };
  return {
    imageFeatures(images) {
      const out: Float64Array[] = [];
      for (let b0 = 0; b0 < images.length; b0 += bs) {
        const batch = images.slice(b0, b0 + bs);
        const px = clipPixelValues(batch, size);
        const f = noGrad(() => model.getImageFeatures(tensor(px, [batch.length, 3, size, size])));
        out.push(...rows(f.data, batch.length));
      }
      return out;
    },
    textFeatures(texts) {
      const out: Float64Array[] = [];
      for (let b0 = 0; b0 < texts.length; b0 += bs) {
        const batch = texts.slice(b0, b0 + bs);
        const ids = batch.map((t) => tokenizer.encode(t, { maxLength: maxLen }));
        const f = noGrad(() => model.getTextFeatures(ids));
        out.push(...rows(f.data, batch.length));
      }
      return out;
    },
  };
}

/** Cosine similarity (0 when either vector is zero). */
export function cosine(a: Vec, b: Vec): number {
  if (a.length !== b.length) throw new ConfigError(`evaluate: feature lengths differ (${a.length}, ${b.length})`);
  let ab = 0,
    aa = 0,
    bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/** Text-alignment of image i with text i: mean cosine, and mean CLIPScore 2.5 * max(cos, 0). */
export function textAlignment(
  imageFeats: readonly Vec[],
  textFeats: readonly Vec[],
): { cosine: number; clipScore: number; perImage: number[] } {
  if (imageFeats.length !== textFeats.length || imageFeats.length === 0)
    throw new ConfigError(
      `evaluate: text-alignment needs one text per image (${imageFeats.length} images, ${textFeats.length} texts)`,
    );
  const per = imageFeats.map((f, i) => cosine(f, textFeats[i]!));
  return { cosine: mean(per), clipScore: mean(per.map((c) => 2.5 * Math.max(c, 0))), perImage: per };
}

/** Image-alignment: mean cosine over every (generated, target) pair. */
export function imageAlignment(generated: readonly Vec[], targets: readonly Vec[]): number {
  if (generated.length === 0 || targets.length === 0)
    throw new ConfigError("evaluate: image-alignment needs generated and target images");
  let s = 0;
  for (const g of generated) for (const t of targets) s += cosine(g, t);
  return s / (generated.length * targets.length);
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Polynomial kernel k(x, y) = (x.y / d + 1)^3 (KID's, gamma = 1/d, coef 1, degree 3). */
export function polyKernel(x: Vec, y: Vec): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  return (s / x.length + 1) ** 3;
}

/**
 * Unbiased MMD^2 between samples x (m) and y (n) with the cubic polynomial kernel:
 * sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum k(x_i,y_j)/(mn).
 * For m = n this is torchmetrics' and clean-fid's per-subset value.
 */
export function mmdUnbiased(x: readonly Vec[], y: readonly Vec[]): number {
  const m = x.length,
    n = y.length;
  if (m < 2 || n < 2) throw new ConfigError(`evaluate: KID needs at least 2 samples per set, got ${m} and ${n}`);
  const d = x[0]!.length;
  for (const v of [...x, ...y])
    if (v.length !== d) throw new ConfigError(`evaluate: feature lengths differ (${d}, ${v.length})`);
  let kxx = 0,
    kyy = 0,
    kxy = 0;
  for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) kxx += 2 * polyKernel(x[i]!, x[j]!);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) kyy += 2 * polyKernel(y[i]!, y[j]!);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) kxy += polyKernel(x[i]!, y[j]!);
  return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - (2 * kxy) / (m * n);
}

/** KID result: mean over subsets, their (population) std as torchmetrics reports, and the standard error. */
export interface KidResult {
  mean: number;
  std: number;
  /** sample std / sqrt(subsets) */
  stderr: number;
  subsets: number;
  subsetSize: number;
  /** the same, x 10^3 (how the paper reports KID) */
  x1000: { mean: number; std: number; stderr: number };
  /** the subsets drawn (or given): per subset, indices into `real` and into `fake`; with `returnIndices` */
  indices?: KidSubsets;
}

/** KID subsets as indices: `real[k]` and `fake[k]` list the samples of subset k. */
export interface KidSubsets {
  real: readonly (readonly number[])[];
  fake: readonly (readonly number[])[];
}

/** Options of {@link kid}. */
export interface KidOptions {
  /** number of subsets drawn (default 100) */
  subsets?: number;
  /** samples per subset, capped by the set sizes (default 1000) */
  subsetSize?: number;
  /** seed of the draws (default 0); ignored with `generator` */
  seed?: number;
  /** draws the subsets from this generator (its state advances) instead of a fresh Generator(seed) */
  generator?: Generator;
  /**
   * explicit subsets instead of draws, e.g. another implementation's (torchmetrics' randperm, clean-fid's
   * np.random.choice): as many real as fake subsets, every subset of one size >= 2, indices in range
   */
  indices?: KidSubsets;
  /** also return the subsets used as `indices` */
  returnIndices?: boolean;
}

/** Checks explicit KID subsets; returns their size. */
function checkKidSubsets(ix: KidSubsets, nReal: number, nFake: number): number {
  const { real, fake } = ix;
  if (real.length === 0 || real.length !== fake.length)
    throw new ConfigError(
      `evaluate: KID indices need as many real as fake subsets (at least one), got ${real.length} and ${fake.length}`,
    );
  const m = real[0]!.length;
  const check = (sets: readonly (readonly number[])[], n: number, which: string) =>
    sets.forEach((set, k) => {
      if (set.length !== m)
        throw new ConfigError(
          `evaluate: KID subsets must all have one size; ${which} subset ${k} has ${set.length}, subset 0 of real ${m}`,
        );
      for (const i of set)
        if (!Number.isInteger(i) || i < 0 || i >= n)
          throw new ConfigError(`evaluate: KID ${which} subset ${k} has index ${i}, outside [0, ${n})`);
    });
  check(real, nReal, "real");
  check(fake, nFake, "fake");
  if (m < 2) throw new ConfigError(`evaluate: KID subsets need at least 2 samples, got ${m}`);
  return m;
}

/**
 * Kernel Inception Distance over feature sets (torchmetrics KernelInceptionDistance / clean-fid
 * kernel_distance): `subsets` draws of m = min(subsetSize, |real|, |fake|) samples without
 * replacement from each set (or the given `indices`), unbiased MMD^2 per subset.
 */
export function kid(real: readonly Vec[], fake: readonly Vec[], opts: KidOptions = {}): KidResult {
  let subsets: KidSubsets;
  let m: number;
  if (opts.indices !== undefined) {
    if (
      opts.generator !== undefined ||
      opts.subsets !== undefined ||
      opts.subsetSize !== undefined ||
      opts.seed !== undefined
    ) {
      throw new ConfigError(
        "evaluate: KID indices fix the subsets; subsets, subsetSize, seed and generator do not apply",
      );
    }
    m = checkKidSubsets(opts.indices, real.length, fake.length);
    subsets = opts.indices;
  } else {
    const count = opts.subsets ?? 100;
    m = Math.min(opts.subsetSize ?? 1000, real.length, fake.length);
    if (m < 2)
      throw new ConfigError(
        `evaluate: KID needs at least 2 real and 2 generated samples, got ${real.length} and ${fake.length}`,
      );
    if (!(Number.isInteger(count) && count >= 1))
      throw new ConfigError(`evaluate: subsets must be a positive integer, got ${count}`);
    const g = opts.generator ?? new Generator(opts.seed ?? 0);
    // m draws of a Fisher-Yates shuffle: the first m of a random permutation
    const pick = (n: number): number[] => {
      const idx = Array.from({ length: n }, (_, i) => i);
      for (let i = 0; i < m; i++) {
        const j = i + g.randint(0, n - i);
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
      return idx.slice(0, m);
    };
    const r: number[][] = [],
      f: number[][] = [];
    for (let k = 0; k < count; k++) {
      r.push(pick(real.length));
      f.push(pick(fake.length));
    }
    subsets = { real: r, fake: f };
  }
  const vals = subsets.real.map((ri, k) =>
    mmdUnbiased(
      ri.map((i) => real[i]!),
      subsets.fake[k]!.map((i) => fake[i]!),
    ),
  );
  const n = vals.length;
  const mu = mean(vals);
  const ss = vals.reduce((a, v) => a + (v - mu) ** 2, 0);
  const std = Math.sqrt(ss / n);
  const stderr = n > 1 ? Math.sqrt(ss / (n - 1)) / Math.sqrt(n) : 0;
  const out: KidResult = {
    mean: mu,
    std,
    stderr,
    subsets: n,
    subsetSize: m,
    x1000: { mean: 1e3 * mu, std: 1e3 * std, stderr: 1e3 * stderr },
  };
  if (opts.returnIndices) out.indices = subsets;
  return out;
}

/** Prompt text for scoring: modifier tokens such as `<new1>` removed (CLIP does not know them), spaces collapsed. */
export function scoringPrompt(prompt: string, replacements: Record<string, string> = {}): string {
  let p = prompt;
  for (const [k, v] of Object.entries(replacements)) p = p.split(k).join(v);
  return p
    .replace(/<[^<>\s]+>/g, "")
    .replace(/\s+/g, " ")
    .trim();
}

/** Inputs of {@link evaluate}. */
export interface EvaluateInputs {
  scorer: FeatureScorer;
  /** generated images and the prompt each came from */
  generated: readonly Image[];
  prompts: readonly string[];
  /** the concept's target images (image-alignment) */
  targets?: readonly Image[];
  /** real images of the class (KID) */
  real?: readonly Image[];
  /** token -> text substitutions applied before the remaining `<...>` tokens are dropped */
  replacements?: Record<string, string>;
  kid?: KidOptions;
}

/** The metrics of one evaluation. */
export interface EvaluateReport {
  textAlignment: number;
  clipScore: number;
  imageAlignment: number | null;
  kid: KidResult | null;
  images: number;
}

/** Computes text-alignment, image-alignment (with targets) and KID (with real images). */
export function evaluate(inp: EvaluateInputs): EvaluateReport {
  if (inp.generated.length !== inp.prompts.length)
    throw new ConfigError(`evaluate: ${inp.generated.length} images but ${inp.prompts.length} prompts`);
  const gen = inp.scorer.imageFeatures(inp.generated);
  const txt = inp.scorer.textFeatures(inp.prompts.map((p) => scoringPrompt(p, inp.replacements)));
  const ta = textAlignment(gen, txt);
  const ia = inp.targets?.length ? imageAlignment(gen, inp.scorer.imageFeatures(inp.targets)) : null;
  const k = inp.real?.length ? kid(inp.scorer.imageFeatures(inp.real), gen, inp.kid) : null;
  return { textAlignment: ta.cosine, clipScore: ta.clipScore, imageAlignment: ia, kid: k, images: gen.length };
}

/** Human-readable lines of an evaluation. */
export function formatEvaluation(r: EvaluateReport): string[] {
  const lines = [
    `text-alignment ${r.textAlignment.toFixed(4)} (CLIPScore ${r.clipScore.toFixed(4)}) over ${r.images} images`,
  ];
  if (r.imageAlignment !== null) lines.push(`image-alignment ${r.imageAlignment.toFixed(4)}`);
  if (r.kid)
    lines.push(
      `KID x10^3 ${r.kid.x1000.mean.toFixed(3)} +- ${r.kid.x1000.stderr.toFixed(3)} (std ${r.kid.x1000.std.toFixed(3)}; ${r.kid.subsets} subsets of ${r.kid.subsetSize})`,
    );
  return lines;
}
