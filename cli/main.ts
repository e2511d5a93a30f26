// cdiff: the command line - customise, sample (with one or several deltas), merge, compress, stack,
// analyze, eval; thin over tune/ and models/. Every error is one line naming the flag, file or value
// at fault; exit status 2 for a misuse of the command line, 1 for a failure.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, NumericalError } from "../engine/errors.ts";
import { makeGrid, writePng } from "../data/images.ts";
import { prepareOutputDir } from "../data/atomic.ts";
import { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { DDIMScheduler } from "../models/schedulers/scheduling_ddim.ts";
import { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import type { ConceptSpec } from "../tune/dataset.ts";
import { customise } from "../tune/train.ts";
import { FREEZE_MODELS, isTrained } from "../tune/params.ts";
import { parseWeightsDType } from "../models/nn/layers.ts";
import type { WeightsDType } from "../models/nn/layers.ts";
import type { LoadOptions } from "../models/modeling_utils.ts";
import type { Delta } from "../tune/delta.ts";
import { applyDeltaToUNet, firstNonFinite, loadDelta, saveDelta } from "../tune/delta.ts";
import { deltaFromTorch } from "../tune/convert.ts";
import { installTokens } from "../tune/tokens.ts";
import { formatMergeReport, mergeDeltas, readCaptions, saveMerged } from "../tune/merge.ts";
import { compressDelta, formatCompression, isCompressed, loadCompressed, saveCompressed } from "../tune/compress.ts";
import { stackDeltas } from "../tune/stack.ts";
import { analyzeWeights, formatAnalysis, writeAnalysis } from "../tune/analyze.ts";
import { clipScorer, evaluate, formatEvaluation } from "../tune/evaluate.ts";
import { listImages, loadImages } from "../tune/dataset.ts";
import { retrieveRegularisation } from "../tune/retrieve.ts";
import { generateRegularisation } from "../tune/generate_reg.ts";
import { noGrad } from "../engine/index.ts";
import { CLIPModel } from "../models/clip/modeling_clip.ts";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { UNet2DConditionModel } from "../models/unets/unet_2d_condition.ts";
import type { OptTable, Values } from "./args.ts";
import { UsageError, choice, commandHelp, distinctPaths, int, list, num, parseOptions, required, suggest } from "./args.ts";

/** Largest training or sampling size in pixels the command line accepts. */
const MAX_SIDE = 4096;

interface Command {
  usage: string;
  about: string;
  options: OptTable;
  run: (v: Values, cmd: string) => void;
}

const warn = (cmd: string, s: string): void => console.error(`cdiff ${cmd}: warning: ${s}`);

function loadPipeline(dir: string, opts: LoadOptions = {}): StableDiffusionPipeline {
  if (!fs.existsSync(dir)) throw new ConfigError(`--model ${dir}: no such folder`);
  if (!fs.statSync(dir).isDirectory()) throw new ConfigError(`--model ${dir}: not a folder (a diffusers-layout model folder is expected)`);
  return StableDiffusionPipeline.fromPretrained(dir, opts);
}

/** --weights-dtype: the frozen weights' dtype (float32 unless asked). */
function weightsDTypeFlag(v: Values): WeightsDType {
  return parseWeightsDType(choice(v["weights-dtype"], "weights-dtype", "f32", ["f32", "bf16", "f16"] as const));
}
const WEIGHTS_DTYPE_OPTION = {
  type: "string", arg: "D", help: "frozen Linear/Conv2d weights held as f32 | bf16 | f16 (f32): half the memory in half precision, computed in float32",
} as const;

/** The output file's folder is checked (writable, not under /proc) before any long work. */
function checkOutFile(out: string): void {
  if (fs.existsSync(out) && fs.statSync(out).isDirectory()) throw new ConfigError(`--out ${out} is a folder; give a file name such as ${path.join(out, "sample.png")}`);
  prepareOutputDir(path.dirname(path.resolve(out)), "--out");
}

function sizeFlag(v: Values, name: string, factor: number): number | undefined {
  if (v[name] === undefined) return undefined;
  const n = int(v[name], name, 0, { min: 8, max: MAX_SIDE });
  if (n % factor !== 0) throw new UsageError(`--${name} must be a multiple of ${factor} (this model's VAE downscale factor) from 8 to ${MAX_SIDE}, got ${n}`);
  return n;
}

const megapixels = (v: Values): { maxImagePixels?: number } =>
  v["max-image-megapixels"] === undefined ? {} : { maxImagePixels: Math.round(num(v["max-image-megapixels"], "max-image-megapixels", 25, { min: 0, max: 1000, exclusiveMin: true }) * 1e6) };

function readConceptsList(file: string): ConceptSpec[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`--concepts-list ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`--concepts-list ${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(`--concepts-list ${file}: must hold a non-empty JSON list of concepts`);
  raw.forEach((c: unknown, i) => {
    if (!c || typeof c !== "object") throw new ConfigError(`--concepts-list ${file}: concept ${i} is not an object`);
    for (const k of ["instance_prompt", "class_prompt", "instance_data_dir"]) {
      if (typeof (c as Record<string, unknown>)[k] !== "string") throw new ConfigError(`--concepts-list ${file}: concept ${i} lacks "${k}" (a string)`);
    }
  });
  return raw as ConceptSpec[];
}

// ---------------------------------------------------------------------------------------------

const customiseCmd: Command = {
  usage: `--model DIR --images DIR --prompt "photo of a <new1> dog" --class dog --out DIR [options]`,
  about: "Fine-tunes a model on a concept (a folder of images and a prompt with a modifier token) and writes a delta.",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (unet/, text_encoder/, tokenizer/, scheduler/, vae/)" },
    images: { type: "string", arg: "DIR", help: "the concept's images (PNG/JPEG)" },
    prompt: { type: "string", arg: "TEXT", help: 'instance prompt with the modifier token, e.g. "photo of a <new1> dog"' },
    class: { type: "string", arg: "TEXT", help: "class prompt, e.g. dog" },
    "concepts-list": { type: "string", arg: "FILE", help: "several concepts: a JSON list of {instance_prompt, class_prompt, instance_data_dir[, class_data_dir]}" },
    out: { type: "string", arg: "DIR", help: "output folder (delta, config, checkpoints/)" },
    "class-data": { type: "string", arg: "DIR", help: "regularisation images (a folder, or images.txt + caption.txt)" },
    "class-retrieve": { type: "string", arg: "PATH", help: "retrieve regularisation images from a local image+caption corpus" },
    "retrieve-threshold": { type: "string", arg: "X", help: "text-similarity threshold for --class-retrieve, -1 to 1 (0.85)" },
    "num-class-images": { type: "string", arg: "N", help: "regularisation images used, at least 1 (200)" },
    "class-generate": { type: "string", arg: "N", help: 'sample N regularisation images "photo of a {class}" from the base model' },
    guidance: { type: "string", arg: "X", help: "guidance scale for --class-generate (7.5)" },
    "reg-cache": { type: "string", arg: "DIR", help: "cache of generated regularisation images (~/.cache/custom-diffusion-ts)" },
    "freeze-model": { type: "string", arg: "M", help: `what trains: ${FREEZE_MODELS.join(" | ")} (crossattn_kv)` },
    steps: { type: "string", arg: "N", help: "training steps, at least 1 (250)" },
    batch: { type: "string", arg: "N", help: "images per step, 1 to 1024 (2)" },
    lr: { type: "string", arg: "X", help: "learning rate, above 0 (1e-5)" },
    "scale-lr": { type: "boolean", help: "multiply the learning rate by the batch size (x2 with regularisation)" },
    "prior-weight": { type: "string", arg: "X", help: "weight of the regularisation loss, 0 or more (1)" },
    noaug: { type: "boolean", help: "no resize augmentation" },
    hflip: { type: "boolean", help: "random horizontal flips" },
    seed: { type: "string", arg: "N", help: "random seed, a non-negative integer (42)" },
    resolution: { type: "string", arg: "N", help: `training size in pixels, a multiple of the VAE factor from 8 to ${MAX_SIDE} (the model's)` },
    "checkpoint-every": { type: "string", arg: "N", help: "write a resumable checkpoint every N steps (0: none)" },
    "gradient-checkpointing": { type: "boolean", help: "recompute the UNet's activations during backward: less memory, about one more forward of time, same gradients" },
    "weights-dtype": WEIGHTS_DTYPE_OPTION,
    resume: { type: "boolean", help: "continue from the newest intact checkpoint in --out" },
    "validation-prompt": { type: "string", multiple: true, arg: "TEXT", help: "sample this prompt during training (repeatable)" },
    "validation-every": { type: "string", arg: "N", help: "validation grid every N steps (0: at the end)" },
    "initializer-token": { type: "string", multiple: true, arg: "WORD", help: "word whose embedding starts each modifier token (repeatable)" },
    "max-image-megapixels": { type: "string", arg: "X", help: "largest image accepted, checked before decoding (25)" },
  },
  run(v, cmd) {
    // every value is checked before any file is touched
    let concepts: ConceptSpec[] | null = null;
    if (v["concepts-list"] !== undefined) {
      for (const f of ["images", "prompt", "class"]) if (v[f] !== undefined) throw new UsageError(`--${f} and --concepts-list exclude each other; put the concepts in the list`);
    } else {
      const missing = ["images", "prompt", "class"].filter((f) => v[f] === undefined);
      if (missing.length) throw new UsageError(`customise needs ${missing.map((f) => `--${f}`).join(", ")} (or --concepts-list FILE)`);
    }
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const out = required(v.out, "out", cmd, "DIR");
    const steps = int(v.steps, "steps", 250, { min: 1 });
    const batch = int(v.batch, "batch", 2, { min: 1, max: 1024 });
    const lr = num(v.lr, "lr", 1e-5, { min: 0, exclusiveMin: true });
    const priorWeight = num(v["prior-weight"], "prior-weight", 1, { min: 0 });
    const seed = int(v.seed, "seed", 42);
    const every = int(v["checkpoint-every"], "checkpoint-every", 0);
    const valEvery = int(v["validation-every"], "validation-every", 0);
    const numClass = int(v["num-class-images"], "num-class-images", 200, { min: 1 });
    const threshold = num(v["retrieve-threshold"], "retrieve-threshold", 0.85, { min: -1, max: 1 });
    const nGenerate = int(v["class-generate"], "class-generate", 200, { min: 1 });
    const guidance = num(v.guidance, "guidance", 7.5);
    const freezeModel = choice(v["freeze-model"], "freeze-model", "crossattn_kv", FREEZE_MODELS);
    const weightsDType = weightsDTypeFlag(v);
    if (weightsDType !== "float32" && freezeModel === "full") throw new UsageError(`--freeze-model full trains every weight: it needs --weights-dtype f32`);
    const images = megapixels(v);
    if (v["class-retrieve"] !== undefined && v["class-generate"] !== undefined) throw new UsageError("--class-retrieve and --class-generate exclude each other");
    if (v.resolution !== undefined) int(v.resolution, "resolution", 0, { min: 8, max: MAX_SIDE });
    const effLr = v["scale-lr"] ? lr * batch * 2 : lr;
    if (effLr > 0.1) warn(cmd, `--lr ${v.lr}${v["scale-lr"] ? " with --scale-lr" : ""} gives a learning rate of ${effLr.toExponential(1)}, far above the usual 1e-6 to 1e-3; training is likely to diverge (it stops with an error if it does)`);
    if (v["concepts-list"] !== undefined) concepts = readConceptsList(v["concepts-list"] as string);
    else concepts = [{ instance_data_dir: v.images as string, instance_prompt: v.prompt as string, class_prompt: v.class as string, ...(v["class-data"] ? { class_data_dir: v["class-data"] as string } : {}) }];
    if (!v.resume && fs.existsSync(path.join(out, "checkpoints"))) warn(cmd, `${out} holds checkpoints/ of an earlier run; this run starts from step 0 (pass --resume to continue that one)`);
    prepareOutputDir(out, "--out", { also: ["checkpoints"] });
    // the weights this run trains stay float32 whatever --weights-dtype says
    const pipe = loadPipeline(model, { weightsDType, keepFloat32: (k) => isTrained(k, freezeModel) });
    const resolution = sizeFlag(v, "resolution", pipe.vaeScaleFactor);
    if (v["class-retrieve"] || v["class-generate"]) {
      concepts = concepts.map((c, i) => {
        if (c.class_data_dir) return c;
        let dir: string;
        if (v["class-retrieve"]) {
          // the pooled text features of the model's own text encoder (CLIP text features for Stable Diffusion)
          const feats = (texts: readonly string[]) => {
            const o = noGrad(() => pipe.textEncoder.forward(pipe.tokenize(texts)).pooler_output);
            const d = o.shape[1], data = o.data;
            return texts.map((_, k) => Float64Array.from(data.subarray(k * d, (k + 1) * d)));
          };
          dir = path.join(out, "regularisation", String(i));
          retrieveRegularisation({ corpus: v["class-retrieve"] as string, classPrompt: c.class_prompt, textFeatures: feats, threshold, max: numClass, out: dir, log: (s) => console.log(s) });
        } else {
          dir = generateRegularisation({ pipeline: pipe, classPrompt: c.class_prompt, numImages: nGenerate, guidanceScale: guidance, log: (s) => console.log(s), ...(v["reg-cache"] ? { cacheDir: v["reg-cache"] as string } : {}) }).dir;
        }
        return { ...c, class_data_dir: dir };
      });
    }
    customise(pipe, {
      concepts, outputDir: out, freezeModel, maxTrainSteps: steps, trainBatchSize: batch, learningRate: lr,
      numClassImages: numClass, scaleLr: v["scale-lr"] === true, priorLossWeight: priorWeight, noaug: v.noaug === true,
      hflip: v.hflip === true, seed, checkpointingSteps: every, resume: v.resume === true, gradientCheckpointing: v["gradient-checkpointing"] === true, validationPrompt: list(v["validation-prompt"]),
      validationSteps: valEvery, ...(resolution !== undefined ? { resolution } : {}), ...images,
      ...(v["initializer-token"] ? { initializerTokens: list(v["initializer-token"]) } : {}),
    });
  },
};

/** A delta folder, full or compressed. */
function readDelta(dir: string, unet: UNet2DConditionModel, force: boolean): Delta {
  return isCompressed(dir) ? loadCompressed(dir, unet, { force }) : loadDelta(dir);
}

const TOKEN_IN_PROMPT = /<[^<>\s]+>/g;
const SAME_DELTA = "a delta stacked with itself doubles its change; give each delta once";

const sampleCmd: Command = {
  usage: "--model DIR [--delta DIR ...] --prompt TEXT [--prompt TEXT ...] --out FILE.png [options]",
  about: "Generates images from a model, with one or several deltas applied (several are stacked; their tokens are renumbered <new1>.. in order).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder" },
    delta: { type: "string", multiple: true, arg: "DIR", help: "delta folder, full or compressed (repeatable: stacked)" },
    prompt: { type: "string", multiple: true, arg: "TEXT", help: "prompt (repeatable)" },
    negative: { type: "string", arg: "TEXT", help: "negative prompt" },
    out: { type: "string", arg: "FILE", help: "output PNG (a grid when there are several images)" },
    steps: { type: "string", arg: "N", help: "denoising steps, 1 to 1000 (50)" },
    guidance: { type: "string", arg: "X", help: "classifier-free guidance scale (7.5)" },
    seed: { type: "string", arg: "N", help: "random seed, a non-negative integer (0)" },
    n: { type: "string", arg: "N", help: "images per prompt, 1 to 64 (1)" },
    scheduler: { type: "string", arg: "S", help: "ddim | ddpm (the model's)" },
    eta: { type: "string", arg: "X", help: "DDIM eta, 0 to 1 (0)" },
    height: { type: "string", arg: "N", help: `image height, a multiple of the VAE factor from 8 to ${MAX_SIDE}` },
    width: { type: "string", arg: "N", help: `image width, a multiple of the VAE factor from 8 to ${MAX_SIDE}` },
    force: { type: "boolean", help: "apply deltas trained on another base model" },
    "weights-dtype": WEIGHTS_DTYPE_OPTION,
  },
  run(v, cmd) {
    const prompts = list(v.prompt);
    if (prompts.length === 0) throw new UsageError("sample needs --prompt TEXT");
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const out = required(v.out, "out", cmd, "FILE.png");
    const steps = int(v.steps, "steps", 50, { min: 1, max: 1000 });
    const guidance = num(v.guidance, "guidance", 7.5);
    const seed = int(v.seed, "seed", 0);
    const n = int(v.n, "n", 1, { min: 1, max: 64 });
    const eta = num(v.eta, "eta", 0, { min: 0, max: 1 });
    const sched = v.scheduler === undefined ? undefined : choice(v.scheduler, "scheduler", "ddim", ["ddim", "ddpm"] as const);
    for (const f of ["height", "width"]) if (v[f] !== undefined) int(v[f], f, 0, { min: 8, max: MAX_SIDE });
    const dirs = list(v.delta);
    distinctPaths(dirs, "delta", SAME_DELTA);
    checkOutFile(out);
    // cross-attention weights (what a delta changes) stay float32, so deltas apply exactly
    const pipe = loadPipeline(model, { weightsDType: weightsDTypeFlag(v), keepFloat32: (k) => isTrained(k, "crossattn") });
    const height = sizeFlag(v, "height", pipe.vaeScaleFactor), width = sizeFlag(v, "width", pipe.vaeScaleFactor);
    let known = new Set<string>();
    if (dirs.length > 0) {
      const loaded = dirs.map((d) => readDelta(d, pipe.unet, v.force === true));
      let delta = loaded[0]!;
      if (loaded.length > 1) {
        const st = stackDeltas(pipe.unet, loaded);
        delta = st.delta;
        st.tokenMap.forEach((m, i) => console.log(`stacked ${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ") || "no tokens"}`));
      }
      applyDeltaToUNet(pipe.unet, delta, { force: v.force === true });
      installTokens(pipe.tokenizer, pipe.textEncoder, delta.tokens);
      known = new Set(delta.tokens.keys());
      console.log(`applied ${dirs.join(" + ")}: ${delta.unet.size} tensors, tokens ${[...known].join(", ") || "none"}`);
    }
    for (const p of prompts) {
      const unknown = [...new Set(p.match(TOKEN_IN_PROMPT) ?? [])].filter((t) => !known.has(t) && pipe.tokenizer.idsForTokenString(t).length !== 1);
      if (unknown.length === 0) continue;
      warn(cmd, dirs.length === 0
        ? `--prompt "${p}" mentions ${unknown.join(", ")}, but no --delta is given, so it is read as plain text`
        : `--prompt "${p}" mentions ${unknown.join(", ")}, which no --delta defines (they define ${[...known].join(", ") || "no tokens"}); it is read as plain text`);
    }
    if (sched === "ddpm") pipe.scheduler = DDPMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
    else if (sched === "ddim") pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
    const t0 = performance.now();
    const { images } = pipe.generate({
      prompt: prompts, numImagesPerPrompt: n, numInferenceSteps: steps, guidanceScale: guidance, seed, eta,
      ...(v.negative ? { negativePrompt: v.negative as string } : {}),
      ...(height !== undefined ? { height } : {}), ...(width !== undefined ? { width } : {}),
      onStep: (s, total) => process.stderr.write(`\rstep ${s}/${total}  ${((performance.now() - t0) / 1000).toFixed(1)}s`),
    });
    process.stderr.write("\n");
    writePng(out, images.length === 1 ? images[0]! : makeGrid(images, { cols: n > 1 ? n : Math.min(4, images.length), pad: 2 }));
    console.log(`wrote ${out} (${images.length} image${images.length > 1 ? "s" : ""})`);
  },
};

const mergeCmd: Command = {
  usage: "--model DIR --delta DIR --class WORD --delta DIR --class WORD [...] --captions FILE --out DIR [options]",
  about: "Merges several deltas into one in closed form (constrained least squares, paper eq. 4-5) and prints the residuals.",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the deltas' base)" },
    delta: { type: "string", multiple: true, arg: "DIR", help: "delta folder (two or more)" },
    class: { type: "string", multiple: true, arg: "WORD", help: "class word of each delta, in the same order" },
    captions: { type: "string", arg: "FILE", help: "regularisation captions, one a line" },
    "num-captions": { type: "string", arg: "N", help: "captions used, at least 1 (200)" },
    duplicates: { type: "string", arg: "M", help: "mean | first: how a target feature shared by concepts is kept (mean)" },
    ridge: { type: "string", arg: "X", help: "ridge term, 0 or more (0)" },
    out: { type: "string", arg: "DIR", help: "output delta folder" },
  },
  run(v, cmd) {
    const dirs = list(v.delta), classes = list(v.class);
    if (dirs.length < 2) throw new UsageError(`merge needs at least two --delta DIR, got ${dirs.length}`);
    if (classes.length !== dirs.length) throw new UsageError(`merge needs one --class per --delta (got ${classes.length} for ${dirs.length})`);
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const captions = required(v.captions, "captions", cmd, "FILE (regularisation captions, one a line)");
    const out = required(v.out, "out", cmd, "DIR");
    const numCaptions = int(v["num-captions"], "num-captions", 200, { min: 1 });
    const dup = choice(v.duplicates, "duplicates", "mean", ["mean", "first"] as const);
    const ridge = num(v.ridge, "ridge", 0, { min: 0 });
    distinctPaths(dirs, "delta", "merging a delta with itself adds nothing; give each delta once");
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const deltas = dirs.map((d) => readDelta(d, pipe.unet, false));
    const r = mergeDeltas(pipe, deltas, { regCaptions: readCaptions(captions, numCaptions), classWords: classes, duplicates: dup, ridge, log: (s) => console.log(s) });
    for (const line of formatMergeReport(r.report)) console.log(line);
    r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ")}`));
    saveMerged(out, r, dirs);
    console.log(`wrote ${out}`);
  },
};

const compressCmd: Command = {
  usage: "--model DIR --delta DIR [--ratio 0.6 | --rank K] --out DIR",
  about: "Stores a delta in low-rank form W0 + u v (truncated SVD of W - W0).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the delta's base)" },
    delta: { type: "string", arg: "DIR", help: "delta folder" },
    ratio: { type: "string", arg: "X", help: "share of the singular values kept, above 0 to 1 (0.6)" },
    rank: { type: "string", arg: "K", help: "fixed rank, at least 1 (instead of --ratio)" },
    out: { type: "string", arg: "DIR", help: "output folder" },
  },
  run(v, cmd) {
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const delta = required(v.delta, "delta", cmd, "DIR");
    const out = required(v.out, "out", cmd, "DIR");
    if (v.ratio !== undefined && v.rank !== undefined) throw new UsageError("--ratio and --rank exclude each other; give one");
    const how = v.rank !== undefined ? { rank: int(v.rank, "rank", 1, { min: 1 }) } : { ratio: num(v.ratio, "ratio", 0.6, { min: 0, max: 1, exclusiveMin: true }) };
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const c = compressDelta(loadDelta(delta), pipe.unet, how);
    for (const line of formatCompression(c)) console.log(line);
    saveCompressed(out, c);
    console.log(`wrote ${out}`);
  },
};

const convertCmd: Command = {
  usage: "--delta FILE|DIR --out DIR [--model DIR] [--token-file FILE ...] [--token-name TOKEN ...]",
  about:
    "Converts a delta from PyTorch files into this project's safetensors delta, without executing the pickle: a diffusers folder or\n" +
    "pytorch_custom_diffusion_weights.bin (+ <new1>.bin), or the authors' delta.bin / delta_epoch=*.ckpt (CompVis or diffusers layout, compressed or not).",
  options: {
    delta: { type: "string", arg: "FILE|DIR", help: "the PyTorch delta file, or a diffusers delta folder" },
    out: { type: "string", arg: "DIR", help: "output folder (safetensors delta)" },
    model: { type: "string", arg: "DIR", help: "the base model folder: needed to expand a compressed delta (W0 + u v) and to check keys and shapes" },
    "token-file": { type: "string", multiple: true, arg: "FILE", help: "a separate token file such as <new1>.bin (repeatable)" },
    "token-name": { type: "string", multiple: true, arg: "TOKEN", help: "names of the rows of a CompVis embed tensor, in order (default <new1>, <new2>, ...)" },
  },
  run(v, cmd) {
    const src = required(v.delta, "delta", cmd, "FILE or DIR");
    const out = required(v.out, "out", cmd, "DIR");
    if (!fs.existsSync(src)) throw new ConfigError(`--delta ${src}: no such file or folder`);
    const tokenFiles = list(v["token-file"]);
    for (const f of tokenFiles) if (!fs.existsSync(f)) throw new ConfigError(`--token-file ${f}: no such file`);
    prepareOutputDir(out, "--out");
    const pipe = typeof v.model === "string" ? loadPipeline(v.model) : null;
    let delta: Delta;
    if (fs.statSync(src).isDirectory()) {
      if (tokenFiles.length > 0) throw new UsageError("--token-file goes with a delta file; a delta folder's token files are read from the folder");
      delta = loadDelta(src);
    } else {
      const names = list(v["token-name"]);
      delta = deltaFromTorch(src, tokenFiles, { ...(pipe ? { base: pipe.unet } : {}), ...(names.length ? { tokenNames: names } : {}) }).delta;
    }
    // every key and shape against the base (applying checks them all before it writes; this loaded copy is discarded)
    if (pipe) applyDeltaToUNet(pipe.unet, delta, { warn: () => {} });
    console.log(`read ${delta.format ?? "this project's delta"} from ${src}: ${delta.unet.size} UNet tensors (${delta.freezeModel}), tokens ${[...delta.tokens.keys()].join(", ") || "none"}`);
    saveDelta(out, delta);
    console.log(`wrote ${out}`);
  },
};

const stackCmd: Command = {
  usage: "--model DIR --delta DIR --delta DIR [...] --out DIR",
  about: "Adds several deltas' changes onto the base (W0 + sum_i (W_i - W0)), keeping every token (renumbered <new1>.. in order).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the deltas' base)" },
    delta: { type: "string", multiple: true, arg: "DIR", help: "delta folder, full or compressed (two or more)" },
    out: { type: "string", arg: "DIR", help: "output delta folder" },
  },
  run(v, cmd) {
    const dirs = list(v.delta);
    if (dirs.length < 2) throw new UsageError(`stack needs two or more --delta DIR, got ${dirs.length}`);
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const out = required(v.out, "out", cmd, "DIR");
    distinctPaths(dirs, "delta", SAME_DELTA);
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const r = stackDeltas(pipe.unet, dirs.map((d) => readDelta(d, pipe.unet, false)));
    r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ") || "no tokens"}`));
    saveDelta(out, r.delta, { stacked_from: JSON.stringify(dirs) });
    console.log(`wrote ${out}`);
  },
};

const analyzeCmd: Command = {
  usage: "--model DIR (--tuned DIR | --delta DIR) --out DIR [--chart layers|groups] [--by layer|tensor]",
  about: "Per-layer weight change ||W' - W|| / ||W|| between a base and a fine-tuned model or delta (paper Fig. 3): JSON, CSV and a PNG chart.",
  options: {
    model: { type: "string", arg: "DIR", help: "the base UNet folder, or a pipeline folder with unet/" },
    tuned: { type: "string", arg: "DIR", help: "the fine-tuned UNet (or pipeline) folder" },
    delta: { type: "string", arg: "DIR", help: "a delta folder instead of --tuned" },
    out: { type: "string", arg: "DIR", help: "output folder" },
    chart: { type: "string", arg: "C", help: "layers | groups (layers)" },
    name: { type: "string", arg: "NAME", help: "file name stem (weight_change)" },
    by: { type: "string", arg: "B", help: "layer | tensor (layer)" },
  },
  run(v, cmd) {
    const model = required(v.model, "model", cmd, "DIR (the base UNet or pipeline)");
    const out = required(v.out, "out", cmd, "DIR");
    if ((v.tuned === undefined) === (v.delta === undefined)) throw new UsageError("analyze needs one of --tuned DIR or --delta DIR");
    const chart = choice(v.chart, "chart", "layers", ["layers", "groups"] as const);
    const by = choice(v.by, "by", "layer", ["layer", "tensor"] as const);
    prepareOutputDir(out, "--out");
    const unetDir = (d: string) => {
      if (!fs.existsSync(d)) throw new ConfigError(`${d}: no such folder`);
      return fs.existsSync(path.join(d, "unet")) ? path.join(d, "unet") : d;
    };
    const base = UNet2DConditionModel.fromPretrained(unetDir(model));
    let tuned: UNet2DConditionModel | Delta["unet"];
    if (v.tuned) {
      const m = UNet2DConditionModel.fromPretrained(unetDir(v.tuned as string));
      for (const [k, p] of m.namedParameters()) {
        const bad = firstNonFinite(p.data);
        if (bad) throw new NumericalError(`--tuned ${v.tuned}: ${k} holds ${bad.count} non-finite value${bad.count > 1 ? "s" : ""} (first ${bad.value} at index ${bad.index}); the model is unusable`);
      }
      tuned = m;
    } else tuned = readDelta(v.delta as string, base, true).unet;
    const a = analyzeWeights(base, tuned, { by });
    for (const line of formatAnalysis(a)) console.log(line);
    const files = writeAnalysis(a, out, { chart, ...(v.name ? { name: v.name as string } : {}) });
    console.log(`wrote ${Object.values(files).join(", ")}`);
  },
};

const evalCmd: Command = {
  usage: '--clip DIR --images DIR --prompts FILE [--targets DIR] [--real DIR] [--replace "<new1>=dog"]',
  about: "Text-alignment (and CLIPScore), image-alignment and KID of generated images with a CLIP model.",
  options: {
    clip: { type: "string", arg: "DIR", help: "CLIPModel folder (with a tokenizer/)" },
    images: { type: "string", arg: "DIR", help: "generated images" },
    prompts: { type: "string", arg: "FILE", help: "their prompts, one a line (one line: the same for all)" },
    targets: { type: "string", arg: "DIR", help: "the concept's images, for image-alignment" },
    real: { type: "string", arg: "DIR", help: "real images of the class, for KID" },
    replace: { type: "string", multiple: true, arg: "A=B", help: 'rewrite a token in the prompts, e.g. "<new1>=dog" (repeatable)' },
    resolution: { type: "string", arg: "N", help: `CLIP input size, 8 to ${MAX_SIDE} (224)` },
    "max-image-megapixels": { type: "string", arg: "X", help: "largest image accepted, checked before decoding (25)" },
  },
  run(v, cmd) {
    const clip = required(v.clip, "clip", cmd, "DIR (a CLIPModel folder with a tokenizer/)");
    const imagesDir = required(v.images, "images", cmd, "DIR");
    const promptsFile = required(v.prompts, "prompts", cmd, "FILE");
    const res = int(v.resolution, "resolution", 224, { min: 8, max: MAX_SIDE });
    const limits = megapixels(v);
    const decode = limits.maxImagePixels !== undefined ? { maxPixels: limits.maxImagePixels } : {};
    const replacements = Object.fromEntries(list(v.replace).map((r) => {
      const k = r.indexOf("=");
      if (k <= 0) throw new UsageError(`--replace must read TOKEN=WORDS, e.g. "<new1>=dog", got "${r}"`);
      return [r.slice(0, k), r.slice(k + 1)] as [string, string];
    }));
    if (!fs.existsSync(clip)) throw new ConfigError(`--clip ${clip}: no such folder`);
    const model = CLIPModel.fromPretrained(clip);
    const tokDir = fs.existsSync(path.join(clip, "tokenizer")) ? path.join(clip, "tokenizer") : clip;
    const tokenizer = fs.existsSync(path.join(tokDir, "vocab.json")) ? CLIPTokenizer.fromPretrained(tokDir) : CLIPTokenizer.default();
    const generated = loadImages(listImages(imagesDir), res, decode);
    if (!fs.existsSync(promptsFile)) throw new ConfigError(`--prompts ${promptsFile}: no such file`);
    const prompts = fs.readFileSync(promptsFile, "utf8").split("\n").map((l) => l.trim()).filter(Boolean);
    if (prompts.length !== 1 && prompts.length !== generated.length) throw new ConfigError(`--prompts ${promptsFile}: ${prompts.length} prompts for ${generated.length} images (give one, or one per image)`);
    const all = prompts.length === 1 ? generated.map(() => prompts[0]!) : prompts;
    const report = evaluate({
      scorer: clipScorer(model, tokenizer), generated, prompts: all, replacements,
      ...(v.targets ? { targets: loadImages(listImages(v.targets as string), res, decode) } : {}),
      ...(v.real ? { real: loadImages(listImages(v.real as string), res, decode) } : {}),
    });
    for (const line of formatEvaluation(report)) console.log(line);
  },
};

const COMMANDS: Record<string, Command> = {
  customise: customiseCmd, customize: customiseCmd, sample: sampleCmd, merge: mergeCmd, compress: compressCmd,
  stack: stackCmd, analyze: analyzeCmd, eval: evalCmd, convert: convertCmd,
};

const HELP = `cdiff - Custom Diffusion on a pure-TypeScript engine

usage: cdiff <command> [options]      cdiff <command> --help lists a command's options

commands:
  customise   fine-tune a model on a concept (folder of images + prompt) and write a delta
  sample      generate images from a model, optionally with one or more deltas applied
  merge       merge several deltas into one in closed form (constrained least squares)
  compress    store a delta in low-rank form (truncated SVD of W - W0)
  stack       add several deltas' changes onto the base (W0 + sum_i (W_i - W0))
  analyze     per-layer weight change ||W' - W|| / ||W|| between a base and a fine-tuned model (JSON, CSV, PNG)
  eval        text-alignment, image-alignment and KID of generated images with a CLIP model
  convert     read a delta from PyTorch files (diffusers .bin, the authors' delta.bin / .ckpt) without executing them

${Object.entries(COMMANDS).filter(([n]) => n !== "customize").map(([n, c]) => `cdiff ${n} ${c.usage}`).join("\n")}

Exit status: 0 done, 1 failed (a file, the data or the training), 2 misuse of the command line.
`;

/** The help text of `cmd`, or the overview. */
export function helpText(cmd?: string): string {
  const c = cmd ? COMMANDS[cmd] : undefined;
  return c ? commandHelp(cmd!, c.usage, c.about, c.options) : HELP;
}

/** One line: a message's lines joined. */
function oneLine(s: string): string {
  return s.split(/\s*\n\s*/).filter(Boolean).join("; ");
}

export function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const about = cmd === "help" ? rest[0] : undefined;
    if (about !== undefined && !COMMANDS[about]) {
      console.error(`cdiff help: unknown command "${about}" (commands: ${Object.keys(COMMANDS).join(", ")})`);
      return 2;
    }
    console.log(helpText(about));
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    const s = suggest(cmd, Object.keys(COMMANDS));
    console.error(`cdiff: unknown command "${cmd}"${s ? `; did you mean ${s}?` : ""} (commands: ${Object.keys(COMMANDS).filter((n) => n !== "customize").join(", ")}; cdiff --help)`);
    return 2;
  }
  try {
    const { values, help } = parseOptions(cmd, rest, c.options);
    if (help) {
      console.log(helpText(cmd));
      return 0;
    }
    c.run(values, cmd);
    return 0;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const usage = err instanceof UsageError;
    const named = !usage && err.name && err.name !== "Error" ? `${err.name}: ` : "";
    console.error(`cdiff ${cmd}: ${named}${oneLine(err.message)}`);
    if (process.env.CDIFF_DEBUG) console.error(err.stack);
    return usage ? 2 : 1;
  }
}

// run directly (`tsx cli/main.ts`); the cdiff bin imports main() and calls it
if (process.argv[1] && /cli[\\/]main\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
