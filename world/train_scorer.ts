// Trains the small world's image-text scorer contrastively (CLIP's symmetric InfoNCE with a learnable
// logit_scale) on the emoji corpus and measures it; ships F16 weights + scorer.json to world/scorer/.
// Run: npx tsx world/train_scorer.ts [--steps 400] [--batch 64] [--lr 1e-3] [--seed 0] [--out world/scorer] [--split]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Generator, crossEntropy, noGrad, tensor, tidy } from "../engine/index.ts";
import type { Tensor } from "../engine/index.ts";
import type { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { AdamW, clipGradNorm, lrLambda } from "../optim/index.ts";
import type { CLIPModel } from "../models/clip/modeling_clip.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { cosine } from "../tune/evaluate.ts";
import { TrainingLoop, formatDuration } from "../tune/loop.ts";
import { applyTemplate } from "./build_dataset.ts";
import type { HeldoutConcept, WorldDataset } from "./dataset.ts";
import { loadHeldoutConcepts, loadWorldDataset, splitTrainValidation } from "./dataset.ts";
import { worldTokenIds, writeRestrictedTokenizer } from "./model.ts";
import type { WorldScorer } from "./scorer.ts";
import {
  WORLD_SCORER_ARCH,
  WORLD_SCORER_DIR,
  buildWorldScorer,
  encodeWorldText,
  saveWorldScorer,
  worldPixelValues,
  worldScorer,
} from "./scorer.ts";

/** Options of {@link trainWorldScorer}. */
export interface ScorerTrainOptions {
  steps: number;
  /** classes per batch (distinct, so no caption is a false negative); at most the class count */
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  seed: number;
  /** train only on splitTrainValidation's training images (to measure cross-vendor generalisation) */
  split: boolean;
  log?: (s: string) => void;
}

export const SCORER_RECIPE: ScorerTrainOptions = {
  steps: 1000,
  batch: 64,
  lr: 1e-3,
  warmup: 30,
  weightDecay: 0.1,
  seed: 0,
  split: false,
};

/** CLIP's cap on the temperature: logit_scale <= ln(100). */
const MAX_LOGIT_SCALE = Math.log(100);
/** The temperature's lr relative to the weights' (a 246-image run is too short for it to move at 1x). */
const LOGIT_SCALE_LR_FACTOR = 10;

function augment(img: Float32Array, size: number, g: Generator): Float32Array {
  // random horizontal flip, then a random shift of up to 1 px filled with white (+1)
  const flip = g.random() < 0.5;
  const dx = g.randint(-1, 2),
    dy = g.randint(-1, 2);
  const out = new Float32Array(img.length).fill(1); // (3, size, size)
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < size; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= size) continue;
      for (let x = 0; x < size; x++) {
        let sx = x - dx;
        if (sx < 0 || sx >= size) continue;
        if (flip) sx = size - 1 - sx;
        out[(c * size + y) * size + x] = img[(c * size + sy) * size + sx]!;
      }
    }
  }
  return out;
}

/**
 * Contrastive training of a fresh scorer: each step takes `batch` distinct classes, one image of each
 * (random vendor, h-flip, 1 px shift) and its caption under a random template; the loss is the mean of
 * the image->text and text->image cross-entropies over exp(logit_scale)-scaled cosines. AdamW with
 * warm-up then cosine decay, weight decay on matrices only, gradient clip 1.
 */
export function trainWorldScorer(
  tokenizer: CLIPTokenizer,
  ds: WorldDataset,
  o: ScorerTrainOptions,
): { model: CLIPModel; losses: number[]; seconds: number } {
  const log = o.log ?? ((s: string) => console.log(s));
  const model = buildWorldScorer(tokenizer, o.seed);
  model.train();
  const named = model.namedParameters();
  // weight decay on matrices only (not embeddings, norms, biases); the temperature learns 10x faster
  const decays = (k: string, p: Tensor) => p.ndim >= 2 && !k.includes("embedding");
  const decay = named.filter(([k, p]) => decays(k, p)).map(([, p]) => p);
  const rest = named.filter(([k, p]) => !decays(k, p) && p !== model.logit_scale).map(([, p]) => p);
  const opt = new AdamW(
    [
      { params: decay, name: "decay" },
      { params: rest, name: "no_decay", weightDecay: 0 },
      { params: [model.logit_scale], name: "logit_scale", weightDecay: 0 },
    ],
    { lr: o.lr, weightDecay: o.weightDecay, betas: [0.9, 0.98], eps: 1e-6 },
  );
  const g = new Generator(o.seed);
  const allowed = new Set(o.split ? splitTrainValidation(ds).train : ds.images.map((_, i) => i));
  const byClass = ds.classes.map((c) => c.imageIndices.filter((i) => allowed.has(i)));
  const B = Math.min(o.batch, ds.classes.length);
  const size = ds.size;
  const maxLen = model.config.text_config.max_position_embeddings;
  log(
    `world scorer: ${model.numParameters().toLocaleString("en")} parameters (vision ${WORLD_SCORER_ARCH.vision.num_hidden_layers}x${WORLD_SCORER_ARCH.vision.hidden_size}, text ${WORLD_SCORER_ARCH.text.num_hidden_layers}x${WORLD_SCORER_ARCH.text.hidden_size}, projection ${WORLD_SCORER_ARCH.projection_dim}); ${allowed.size} images of ${ds.classes.length} classes; batch ${B}, ${o.steps} steps`,
  );
  const losses: number[] = [];
  const targets = Array.from({ length: B }, (_, i) => i);
  const loop = new TrainingLoop({ start: 0, steps: o.steps });
  for (let step = 0; loop.next(step); step++) {
    const perm = ds.classes.map((_, i) => i);
    for (let i = perm.length - 1; i > 0; i--) {
      const j = g.randint(0, i + 1);
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    const classes = perm.slice(0, B);
    const imgs = classes.map((k) => augment(ds.images[byClass[k]![g.randint(0, byClass[k]!.length)]!]!, size, g));
    const texts = classes.map((k) =>
      applyTemplate(ds.captionTemplates[g.randint(0, ds.captionTemplates.length)]!, ds.classes[k]!.caption),
    );
    const ids = texts.map((t) => encodeWorldText(tokenizer, t, maxLen));
    // one step in a tidy scope: its temporaries go at its end (gpujs textures; engine/tidy.ts)
    const l = tidy(
      () => {
        const out = model.forward(ids, tensor(worldPixelValues(imgs, size), [B, 3, size, size]));
        const loss = crossEntropy(out.logits_per_image, targets)
          .add(crossEntropy(out.logits_per_text, targets))
          .mul(0.5);
        opt.zeroGrad();
        loss.backward();
        clipGradNorm(opt.params(), 1);
        const lr = o.lr * lrLambda("cosine", step, o.warmup, o.steps);
        opt.setLr(lr, 0);
        opt.setLr(lr, 1);
        opt.setLr(lr * LOGIT_SCALE_LR_FACTOR, 2);
        opt.step();
        clampLogitScale(model.logit_scale);
        opt.zeroGrad();
        return loss.item();
      },
      () => opt.tensors(),
    );
    losses.push(+l.toFixed(5));
    const done = step + 1;
    if (done === 1 || done % 20 === 0 || done === o.steps) {
      const p = loop.progress(done);
      const recent = losses.slice(-20);
      log(
        `step ${done}/${o.steps}  loss ${l.toFixed(4)} (avg20 ${(recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(4)})  logit scale ${Math.exp(model.logit_scale.item()).toFixed(1)}  ${p.secondsPerStep.toFixed(2)} s/step  ETA ${formatDuration(p.eta)}`,
      );
    }
  }
  model.eval();
  return { model, losses, seconds: loop.seconds() };
}

function clampLogitScale(p: Tensor): void {
  noGrad(() => {
    const v = p.item();
    if (v > MAX_LOGIT_SCALE) p.copy_([MAX_LOGIT_SCALE]);
  });
}

const unit = (v: ArrayLike<number>): Float64Array => {
  let n = 0;
  for (let i = 0; i < v.length; i++) n += v[i]! * v[i]!;
  const s = n > 0 ? 1 / Math.sqrt(n) : 0;
  return Float64Array.from(v as ArrayLike<number>, (x) => x * s);
};

/** Mean of unit vectors, renormalised (CLIP's prompt ensembling). */
function ensemble(feats: readonly ArrayLike<number>[]): Float64Array {
  const acc = new Float64Array(feats[0]!.length);
  for (const f of feats) unit(f).forEach((x, i) => (acc[i] += x));
  return unit(acc);
}

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

function percentiles(xs: readonly number[], ps: readonly number[]): Record<string, number> {
  const s = [...xs].sort((a, b) => a - b);
  const out: Record<string, number> = {};
  for (const p of ps)
    out[`p${p}`] = +s[Math.min(s.length - 1, Math.max(0, Math.round((p / 100) * (s.length - 1))))]!.toFixed(4);
  return out;
}

const r4 = (x: number) => +x.toFixed(4);
const meanOf = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** What {@link measureWorldScorer} reports. */
export interface ScorerQuality {
  /** image -> class caption top-1 over all classes, captions as they are ("horse face") */
  imageToCaptionTop1: number;
  /** the same with each class's caption features averaged over the caption templates */
  imageToCaptionTop1Ensemble: number;
  /** the same over the given image subset only (e.g. cross-vendor validation images), when given */
  subsetTop1?: number;
  /** class caption -> image top-1 (is the nearest image of that class) */
  captionToImageTop1: number;
  /** mean cosine of each image with its own caption, and with the other captions */
  ownCaptionCosine: number;
  otherCaptionCosine: number;
  /** per held-out concept: its images against its class caption and all other class captions */
  heldout: {
    concept: string;
    class: string;
    classCaptionCosine: number;
    otherCaptionsCosine: number;
    classCaptionRank: number;
    top3: string[];
  }[];
  /** text-text cosine between class captions: the distribution retrieval sees */
  textSimilarity: {
    /** cosine of distinct class captions ("horse face" vs "zebra face"), percentiles */
    otherClasses: Record<string, number>;
    /** cosine of a caption with its own templated lines ("horse face" vs "photo of a horse face"), percentiles */
    ownTemplates: Record<string, number>;
    /** share of distinct-class pairs above 0.85 */
    otherClassesAbove085: number;
    /** share of own templated lines above 0.85 */
    ownTemplatesAbove085: number;
  };
}

/** Measures a scorer on the world corpus (see {@link ScorerQuality}). */
export function measureWorldScorer(
  scorer: WorldScorer,
  ds: WorldDataset,
  heldout: readonly HeldoutConcept[],
  subset?: readonly number[],
): ScorerQuality {
  const captions = ds.classes.map((c) => c.caption);
  const capF = scorer.textFeatures(captions).map(unit);
  const tplF = ds.captionTemplates.map((t) => scorer.textFeatures(captions.map((c) => applyTemplate(t, c))));
  const ensF = captions.map((_, k) => ensemble(tplF.map((f) => f[k]!)));
  const imgF = scorer.imageFeaturesCHW(ds.images).map(unit);
  const sims = imgF.map((f) => capF.map((c) => cosine(f, c)));
  const simsEns = imgF.map((f) => ensF.map((c) => cosine(f, c)));
  const hit = (s: number[][], idx: readonly number[]) =>
    idx.filter((i) => argmax(s[i]!) === ds.labels[i]).length / idx.length;
  const all = ds.images.map((_, i) => i);
  const captionToImage =
    capF.map((c, k) => ds.labels[argmax(imgF.map((f) => cosine(f, c)))] === k).filter(Boolean).length / capF.length;
  const own = all.map((i) => sims[i]![ds.labels[i]!]!);
  const other = all.map((i) => meanOf(sims[i]!.filter((_, k) => k !== ds.labels[i])));
  const held = heldout.map((h) => {
    const f = scorer.imageFeaturesCHW(h.images).map(unit);
    const s = f.map((v) => capF.map((c) => cosine(v, c)));
    const mean = captions.map((_, k) => meanOf(s.map((r) => r[k]!)));
    const order = captions.map((_, k) => k).sort((a, b) => mean[b]! - mean[a]!);
    return {
      concept: h.name,
      class: h.class,
      classCaptionCosine: r4(mean[h.classIndex]!),
      otherCaptionsCosine: r4(meanOf(mean.filter((_, k) => k !== h.classIndex))),
      classCaptionRank: order.indexOf(h.classIndex) + 1,
      top3: order.slice(0, 3).map((k) => captions[k]!),
    };
  });
  const otherPairs: number[] = [];
  for (let a = 0; a < capF.length; a++)
    for (let b = a + 1; b < capF.length; b++) otherPairs.push(cosine(capF[a]!, capF[b]!));
  const ownTpl: number[] = [];
  tplF.forEach((f, t) => {
    if (applyTemplate(ds.captionTemplates[t]!, "x") === "x") return; // the bare caption itself
    f.forEach((v, k) => ownTpl.push(cosine(v, capF[k]!)));
  });
  const q: ScorerQuality = {
    imageToCaptionTop1: r4(hit(sims, all)),
    imageToCaptionTop1Ensemble: r4(hit(simsEns, all)),
    captionToImageTop1: r4(captionToImage),
    ownCaptionCosine: r4(meanOf(own)),
    otherCaptionCosine: r4(meanOf(other)),
    heldout: held,
    textSimilarity: {
      otherClasses: percentiles(otherPairs, [0, 50, 90, 99, 100]),
      ownTemplates: percentiles(ownTpl, [0, 10, 50, 90, 100]),
      otherClassesAbove085: r4(otherPairs.filter((x) => x > 0.85).length / otherPairs.length),
      ownTemplatesAbove085: r4(ownTpl.filter((x) => x > 0.85).length / ownTpl.length),
    },
  };
  if (subset) q.subsetTop1 = r4(hit(sims, subset));
  return q;
}

if (process.argv[1] && /world[\\/]train_scorer\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: {
      steps: { type: "string" },
      batch: { type: "string" },
      lr: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      split: { type: "boolean" },
    },
  });
  const o: ScorerTrainOptions = {
    ...SCORER_RECIPE,
    split: v.split ?? false,
    ...(v.steps ? { steps: Number(v.steps) } : {}),
    ...(v.batch ? { batch: Number(v.batch) } : {}),
    ...(v.lr ? { lr: Number(v.lr) } : {}),
    ...(v.seed ? { seed: Number(v.seed) } : {}),
  };
  const out = v.out ?? (o.split ? path.join(os.tmpdir(), "world-scorer-split") : WORLD_SCORER_DIR);
  const ds = loadWorldDataset();
  const heldout = loadHeldoutConcepts(ds);
  fs.mkdirSync(out, { recursive: true });
  const tokenizer = writeRestrictedTokenizer(path.join(out, "tokenizer"), worldTokenIds(ds.tokenIds));
  const r = trainWorldScorer(tokenizer, ds, o);
  saveWorldScorer(r.model, out);
  const scorer = worldScorer(r.model, tokenizer);
  const quality = measureWorldScorer(scorer, ds, heldout, o.split ? splitTrainValidation(ds).validation : undefined);
  writeJsonAtomic(path.join(out, "scorer.json"), {
    format: "small-world-scorer/1",
    recipe: {
      ...o,
      log: undefined,
      loss: "symmetric InfoNCE (CLIP)",
      optimizer: `AdamW betas (0.9, 0.98) eps 1e-6, cosine schedule, grad clip 1, logit_scale lr x${LOGIT_SCALE_LR_FACTOR}`,
      augmentation: "h-flip, 1 px shift (white fill)",
      templates: ds.captionTemplates,
    },
    architecture: WORLD_SCORER_ARCH,
    parameters: r.model.numParameters(),
    input:
      "FeatureScorer.imageFeatures: HWC Image in [0, 1] (16x16 unchanged, else resized + center-cropped); imageFeaturesCHW: CHW 16x16 in [-1, 1]; CLIP mean/std normalisation",
    steps: r.losses.length,
    seed: o.seed,
    seconds: +r.seconds.toFixed(1),
    final_loss_avg20: +meanOf(r.losses.slice(-20)).toFixed(4),
    logit_scale: +Math.exp(r.model.logit_scale.item()).toFixed(2),
    quality,
    machine: `${os.cpus()[0]?.model} x${os.cpus().length}`,
    node: process.version,
  });
  console.log(JSON.stringify(quality, null, 1));
  console.log(`saved the scorer to ${out} (${r.seconds.toFixed(0)} s of training)`);
}
