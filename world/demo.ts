// The one-command demo: customise the shipped world model on a held-out concept it has never seen
// (Custom Diffusion, K/V only + a new token) and write before/after grids with simple measurements.
// Run: npx tsx world/demo.ts [--concept "unicorn face"] [--steps 250] [--out out/demo] [--model world/model]
//                            [--samples 8] [--backend cpu|gpujs]
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { setDefaultBackend } from "../engine/index.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { chwToImage, makeGrid, writePng } from "../data/images.ts";
import type { Image } from "../data/images.ts";
import { customise } from "../tune/train.ts";
import type { FreezeModel } from "../tune/params.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { loadHeldoutConcepts, loadWorldDataset } from "./dataset.ts";
import type { HeldoutConcept, WorldDataset } from "./dataset.ts";
import { WORLD_MODEL_DIR, loadWorld } from "./model.ts";
import { loadWorldScorer } from "./scorer.ts";
import { imageAlignment } from "../tune/evaluate.ts";
import { formatDuration } from "../tune/loop.ts";

export interface DemoOptions {
  concept: string;
  steps: number;
  out: string;
  model: string;
  freezeModel: FreezeModel;
  lr: number;
  batch: number;
  samples: number;
  seed: number;
  log?: (s: string) => void;
}

export const DEMO_DEFAULTS: DemoOptions = {
  concept: "unicorn face",
  steps: 250,
  out: "out/demo",
  model: WORLD_MODEL_DIR,
  freezeModel: "crossattn_kv",
  lr: 1e-3,
  batch: 4,
  samples: 8,
  seed: 0,
};

/** Mean over samples of the pixel RMS distance to the nearest of `targets` (CHW in [-1, 1]). */
export function distanceToTargets(samples: Float32Array[], targets: Float32Array[]): number {
  let total = 0;
  for (const s of samples) {
    let best = Infinity;
    for (const t of targets) {
      let d = 0;
      for (let j = 0; j < s.length; j++) d += (s[j] - t[j]) ** 2;
      best = Math.min(best, Math.sqrt(d / s.length));
    }
    total += best;
  }
  return total / samples.length;
}

/** Mean pixel RMS distance between paired samples (same seeds before and after). */
export function pairedDistance(a: Float32Array[], b: Float32Array[]): number {
  let total = 0;
  a.forEach((x, i) => {
    let d = 0;
    for (let j = 0; j < x.length; j++) d += (x[j] - b[i][j]) ** 2;
    total += Math.sqrt(d / x.length);
  });
  return total / a.length;
}

/** Samples `n` images of `prompt`; a call past 15 s (a slow backend) logs its progress every 15 s. */
function sample(
  pipe: StableDiffusionPipeline,
  prompt: string,
  n: number,
  seed: number,
  log: (s: string) => void,
): Float32Array[] {
  const t0 = performance.now();
  let last = t0;
  const onStep = (step: number, total: number): void => {
    const now = performance.now();
    if (now - last < 15000 || step === total) return;
    last = now;
    const eta = (((now - t0) / step) * (total - step)) / 1000;
    log(`sampling "${prompt}" x${n}: step ${step}/${total}  ETA ${formatDuration(eta)}`);
  };
  const { latents } = pipe.generate({
    prompt,
    numImagesPerPrompt: n,
    numInferenceSteps: 25,
    guidanceScale: 1,
    seed,
    onStep,
  });
  const d = latents.data,
    per = d.length / n;
  return Array.from({ length: n }, (_, i) =>
    Float32Array.from(d.subarray(i * per, (i + 1) * per), (v) => Math.max(-1, Math.min(1, v))),
  );
}

function writeImages(dir: string, images: Float32Array[], size: number): void {
  fs.mkdirSync(dir, { recursive: true });
  images.forEach((im, i) =>
    writePng(path.join(dir, `${String(i).padStart(3, "0")}.png`), chwToImage(im, 3, size, size)),
  );
}

export interface DemoResult {
  concept: HeldoutConcept;
  before: { targetDistance: number; imageAlignment: number };
  after: { targetDistance: number; imageAlignment: number; drift: number };
  seconds: number;
  files: string[];
}

/** Runs the demo end to end and writes `out/before.png`, `out/after.png`, `out/delta/`, `out/demo.json`. */
export function runDemo(o: DemoOptions): DemoResult {
  const log = o.log ?? ((s: string) => console.log(s));
  const t0 = performance.now();
  const ds: WorldDataset = loadWorldDataset();
  const concepts = loadHeldoutConcepts(ds);
  const concept = concepts.find((c) => c.name === o.concept);
  if (!concept)
    throw new Error(
      `demo: no held-out concept "${o.concept}"; choose one of ${concepts.map((c) => c.name).join(", ")}`,
    );
  const pipe = loadWorld(o.model);
  const size = ds.size;
  log(
    `demo: teaching the world "${concept.name}" from ${concept.images.length} images as ${concept.token} (class "${concept.class}"), ${o.steps} ${o.freezeModel} steps`,
  );
  // data folders the customise command reads: the concept's images and the class's training images
  const instDir = path.join(o.out, "data", "concept"),
    classDir = path.join(o.out, "data", "class");
  fs.rmSync(path.join(o.out, "data"), { recursive: true, force: true });
  writeImages(instDir, concept.images, size);
  writeImages(
    classDir,
    ds.classes[concept.classIndex].imageIndices.map((i) => ds.images[i]),
    size,
  );
  const prompt = concept.prompts.find((p) => p.startsWith("photo of a")) ?? concept.prompts[0];
  const classPrompt = concept.class;
  const n = o.samples;
  const beforeClass = sample(pipe, classPrompt, n, o.seed, log);
  const beforeDist = distanceToTargets(beforeClass, concept.images);
  customise(pipe, {
    concepts: [
      { instance_prompt: prompt, class_prompt: classPrompt, instance_data_dir: instDir, class_data_dir: classDir },
    ],
    outputDir: path.join(o.out, "delta"),
    freezeModel: o.freezeModel,
    maxTrainSteps: o.steps,
    trainBatchSize: o.batch,
    learningRate: o.lr,
    seed: o.seed,
    hflip: true,
    log,
  });
  const afterConcept = sample(pipe, concept.prompts[0], n, o.seed, log);
  const afterClass = sample(pipe, classPrompt, n, o.seed, log);
  const extra = concept.prompts
    .filter((p) => /^a \w+ <new1>/.test(p))
    .slice(0, 2)
    .map((p) => ({ p, s: sample(pipe, p, n, o.seed, log) }));
  const afterDist = distanceToTargets(afterConcept, concept.images);
  const drift = pairedDistance(beforeClass, afterClass);
  // image-alignment with the world's own image-text scorer (mean cosine of image features)
  const scorer = loadWorldScorer();
  const targetFeats = scorer.imageFeaturesCHW(concept.images);
  const alignBefore = imageAlignment(scorer.imageFeaturesCHW(beforeClass), targetFeats);
  const alignAfter = imageAlignment(scorer.imageFeaturesCHW(afterConcept), targetFeats);
  const toImg = (xs: Float32Array[]): Image[] => xs.map((x) => chwToImage(x, 3, size, size));
  const targetsRow = toImg(concept.images);
  while (targetsRow.length < n) targetsRow.push(chwToImage(new Float32Array(3 * size * size).fill(1), 3, size, size));
  fs.mkdirSync(o.out, { recursive: true });
  const beforePng = path.join(o.out, "before.png"),
    afterPng = path.join(o.out, "after.png");
  writePng(beforePng, upscale(makeGrid([...targetsRow, ...toImg(beforeClass)], { cols: n, pad: 1 }), 4));
  writePng(
    afterPng,
    upscale(
      makeGrid([...targetsRow, ...toImg(afterConcept), ...toImg(afterClass), ...extra.flatMap((e) => toImg(e.s))], {
        cols: n,
        pad: 1,
      }),
      4,
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  const result: DemoResult = {
    concept,
    before: { targetDistance: beforeDist, imageAlignment: alignBefore },
    after: { targetDistance: afterDist, imageAlignment: alignAfter, drift },
    seconds,
    files: [beforePng, afterPng, path.join(o.out, "delta")],
  };
  writeJsonAtomic(path.join(o.out, "demo.json"), {
    concept: concept.name,
    class: concept.class,
    steps: o.steps,
    freeze_model: o.freezeModel,
    rows_before: ["target images", `"${classPrompt}" before`],
    rows_after: ["target images", `"${concept.prompts[0]}"`, `"${classPrompt}" after`, ...extra.map((e) => `"${e.p}"`)],
    distance_to_targets_before: +beforeDist.toFixed(4),
    distance_to_targets_after: +afterDist.toFixed(4),
    image_alignment_before: +alignBefore.toFixed(4),
    image_alignment_after: +alignAfter.toFixed(4),
    class_drift: +drift.toFixed(4),
    seconds: +seconds.toFixed(1),
  });
  log(
    `"${classPrompt}" samples before: distance to the ${concept.name} images ${beforeDist.toFixed(3)}, image-alignment ${alignBefore.toFixed(3)}`,
  );
  log(
    `"${concept.prompts[0]}" after:  distance ${afterDist.toFixed(3)} (lower is closer to the concept), image-alignment ${alignAfter.toFixed(3)} (higher is closer)`,
  );
  log(`"${classPrompt}" drift (same seeds, before vs after): ${drift.toFixed(3)}`);
  log(
    `wrote ${beforePng} (targets; "${classPrompt}" before) and ${afterPng} (targets; "${concept.prompts[0]}"; "${classPrompt}" after; ${extra.map((e) => `"${e.p}"`).join("; ")}) in ${seconds.toFixed(0)} s`,
  );
  return result;
}

/** Nearest-neighbour upscale by an integer factor, so 16 px samples are visible. */
export function upscale(img: Image, k: number): Image {
  const W = img.width * k,
    H = img.height * k,
    c = img.channels;
  const data = new Float32Array(W * H * c);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      for (let ch = 0; ch < c; ch++)
        data[(y * W + x) * c + ch] = img.data[(Math.floor(y / k) * img.width + Math.floor(x / k)) * c + ch];
  return { width: W, height: H, channels: img.channels, data };
}

if (process.argv[1] && /world[\\/]demo\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: {
      concept: { type: "string" },
      steps: { type: "string" },
      out: { type: "string" },
      model: { type: "string" },
      "freeze-model": { type: "string" },
      lr: { type: "string" },
      batch: { type: "string" },
      seed: { type: "string" },
      samples: { type: "string" },
      backend: { type: "string" },
    },
  });
  // CDIFF_BACKEND works too; --backend names the backend every tensor of the run is made on
  if (v.backend) setDefaultBackend(v.backend);
  runDemo({
    ...DEMO_DEFAULTS,
    ...(v.concept ? { concept: v.concept } : {}),
    ...(v.steps ? { steps: Number(v.steps) } : {}),
    ...(v.out ? { out: v.out } : {}),
    ...(v.model ? { model: v.model } : {}),
    ...(v["freeze-model"] ? { freezeModel: v["freeze-model"] as FreezeModel } : {}),
    ...(v.lr ? { lr: Number(v.lr) } : {}),
    ...(v.batch ? { batch: Number(v.batch) } : {}),
    ...(v.seed ? { seed: Number(v.seed) } : {}),
    ...(v.samples ? { samples: Number(v.samples) } : {}),
  });
}
