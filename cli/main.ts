// cdiff: the command line - customise, sample (with one or several deltas); thin over tune/ and models/
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../engine/errors.ts";
import { makeGrid, writePng } from "../data/images.ts";
import { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { DDIMScheduler } from "../models/schedulers/scheduling_ddim.ts";
import { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import type { ConceptSpec } from "../tune/dataset.ts";
import { customise } from "../tune/train.ts";
import type { FreezeModel } from "../tune/params.ts";
import type { Delta } from "../tune/delta.ts";
import { applyDeltaToUNet, loadDelta, saveDelta } from "../tune/delta.ts";
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
import { int, list, num } from "./args.ts";

const HELP = `cdiff - Custom Diffusion on a pure-TypeScript engine

usage: cdiff <command> [options]

commands:
  customise   fine-tune a model on a concept (folder of images + prompt) and write a delta
  sample      generate images from a model, optionally with one or more deltas applied
  merge       merge several deltas into one in closed form (constrained least squares)
  compress    store a delta in low-rank form (truncated SVD of W - W0)
  stack       add several deltas' changes onto the base (W0 + sum_i (W_i - W0))
  analyze     per-layer weight change ||W' - W|| / ||W|| between a base and a fine-tuned model (JSON, CSV, PNG)
  eval        text-alignment, image-alignment and KID of generated images with a CLIP model

cdiff customise --model DIR --images DIR --prompt "photo of a <new1> dog" --class dog --out DIR
  --model DIR            diffusers-layout model folder (unet/, text_encoder/, tokenizer/, scheduler/, vae/)
  --images DIR           target images (PNG/JPEG), or --concepts-list FILE.json (diffusers' concepts_list)
  --prompt TEXT          instance prompt with the modifier token; --class WORD the class prompt
  --class-data DIR       regularisation images (a folder, or images.txt + caption.txt)
  --class-retrieve PATH  retrieve regularisation images from a local image+caption corpus by text similarity
                         to the class prompt (--retrieve-threshold 0.85, --num-class-images 200)
  --class-generate N     sample N regularisation images "photo of a {class}" from the base model
                         (cached in --reg-cache DIR, default ~/.cache/custom-diffusion-ts; --guidance X)
  --freeze-model M       crossattn_kv (default) | crossattn | full
  --steps N (250)  --batch N (2)  --lr X (1e-5)  --scale-lr  --prior-weight X (1)
  --noaug  --hflip  --seed N (42)  --resolution N
  --checkpoint-every N   resumable checkpoints; --resume continues from the newest
  --validation-prompt TEXT (repeatable)  --validation-every N
cdiff sample --model DIR [--delta DIR ...] --prompt TEXT [--prompt TEXT ...] --out FILE.png
  several --delta are stacked (tokens renumbered <new1>.. in order; prompts use the new names)
  --steps N (50)  --guidance X (7.5)  --seed N (0)  --n N images per prompt (1)
  --scheduler ddim|ddpm  --eta X (0)  --height N  --width N  --negative TEXT
cdiff merge --model DIR --delta DIR --class WORD --delta DIR --class WORD [...] --captions FILE --out DIR
  --num-captions N (200)  --duplicates mean|first  --ridge X (0)
cdiff compress --model DIR --delta DIR [--ratio 0.6 | --rank K] --out DIR
cdiff stack --model DIR --delta DIR --delta DIR [...] --out DIR
cdiff analyze --model DIR (--tuned DIR | --delta DIR) --out DIR [--chart layers|groups] [--by layer|tensor]
cdiff eval --clip DIR --images DIR --prompts FILE [--targets DIR] [--real DIR] [--replace "<new1>=dog"]
`;

function loadPipeline(dir: string | undefined): StableDiffusionPipeline {
  if (!dir) throw new ConfigError("--model is required (a diffusers-layout folder)");
  return StableDiffusionPipeline.fromPretrained(dir);
}

function cmdCustomise(argv: string[]): void {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, images: { type: "string" }, prompt: { type: "string" }, class: { type: "string" },
      "class-data": { type: "string" }, "concepts-list": { type: "string" }, out: { type: "string" },
      "freeze-model": { type: "string" }, steps: { type: "string" }, batch: { type: "string" }, lr: { type: "string" },
      "scale-lr": { type: "boolean" }, "prior-weight": { type: "string" }, noaug: { type: "boolean" }, hflip: { type: "boolean" },
      seed: { type: "string" }, resolution: { type: "string" }, "checkpoint-every": { type: "string" }, resume: { type: "boolean" },
      "validation-prompt": { type: "string", multiple: true }, "validation-every": { type: "string" },
      "initializer-token": { type: "string", multiple: true }, "class-retrieve": { type: "string" }, "retrieve-threshold": { type: "string" },
      "num-class-images": { type: "string" }, "class-generate": { type: "string" }, guidance: { type: "string" }, "reg-cache": { type: "string" },
    },
  });
  let concepts: ConceptSpec[];
  if (v["concepts-list"]) {
    const raw = JSON.parse(fs.readFileSync(v["concepts-list"], "utf8")) as unknown;
    if (!Array.isArray(raw)) throw new ConfigError(`--concepts-list ${v["concepts-list"]}: must hold a JSON list of concepts`);
    concepts = raw as ConceptSpec[];
    concepts.forEach((c, i) => {
      for (const k of ["instance_prompt", "class_prompt", "instance_data_dir"] as const) if (typeof c[k] !== "string") throw new ConfigError(`--concepts-list: concept ${i} lacks "${k}"`);
    });
  } else {
    if (!v.images || !v.prompt || !v.class) throw new ConfigError("customise needs --images, --prompt and --class (or --concepts-list)");
    concepts = [{ instance_data_dir: v.images, instance_prompt: v.prompt, class_prompt: v.class, ...(v["class-data"] ? { class_data_dir: v["class-data"] } : {}) }];
  }
  if (!v.out) throw new ConfigError("customise needs --out DIR");
  const pipe = loadPipeline(v.model);
  const numClass = int(v["num-class-images"], "num-class-images", 200);
  if (v["class-retrieve"] || v["class-generate"]) {
    concepts = concepts.map((c, i) => {
      if (c.class_data_dir) return c;
      let dir: string;
      if (v["class-retrieve"]) {
        // the pooled text features of the model's own text encoder (CLIP text features for Stable Diffusion)
        const feats = (texts: readonly string[]) => {
          const out = noGrad(() => pipe.textEncoder.forward(pipe.tokenize(texts)).pooler_output);
          const d = out.shape[1], data = out.data;
          return texts.map((_, k) => Float64Array.from(data.subarray(k * d, (k + 1) * d)));
        };
        dir = path.join(v.out as string, "regularisation", String(i));
        retrieveRegularisation({ corpus: v["class-retrieve"] as string, classPrompt: c.class_prompt, textFeatures: feats, threshold: num(v["retrieve-threshold"], "retrieve-threshold", 0.85), max: numClass, out: dir, log: (s) => console.log(s) });
      } else {
        dir = generateRegularisation({ pipeline: pipe, classPrompt: c.class_prompt, numImages: int(v["class-generate"], "class-generate", 200), guidanceScale: num(v.guidance, "guidance", 7.5), log: (s) => console.log(s), ...(v["reg-cache"] ? { cacheDir: v["reg-cache"] } : {}) }).dir;
      }
      return { ...c, class_data_dir: dir };
    });
  }
  customise(pipe, {
    concepts, outputDir: v.out,
    freezeModel: (v["freeze-model"] ?? "crossattn_kv") as FreezeModel,
    maxTrainSteps: int(v.steps, "steps", 250), trainBatchSize: int(v.batch, "batch", 2), learningRate: num(v.lr, "lr", 1e-5),
    numClassImages: numClass, scaleLr: v["scale-lr"] ?? false, priorLossWeight: num(v["prior-weight"], "prior-weight", 1), noaug: v.noaug ?? false,
    hflip: v.hflip ?? false, seed: int(v.seed, "seed", 42), checkpointingSteps: int(v["checkpoint-every"], "checkpoint-every", 0),
    resume: v.resume ?? false, validationPrompt: list(v["validation-prompt"]), validationSteps: int(v["validation-every"], "validation-every", 0),
    ...(v.resolution ? { resolution: int(v.resolution, "resolution", 0) } : {}),
    ...(v["initializer-token"] ? { initializerTokens: list(v["initializer-token"]) } : {}),
  });
}

function cmdSample(argv: string[]): void {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: "string" }, delta: { type: "string", multiple: true }, prompt: { type: "string", multiple: true },
      negative: { type: "string" }, out: { type: "string" }, steps: { type: "string" }, guidance: { type: "string" },
      seed: { type: "string" }, n: { type: "string" }, scheduler: { type: "string" }, eta: { type: "string" },
      height: { type: "string" }, width: { type: "string" }, force: { type: "boolean" },
    },
  });
  const prompts = list(v.prompt);
  if (prompts.length === 0) throw new ConfigError("sample needs --prompt TEXT");
  if (!v.out) throw new ConfigError("sample needs --out FILE.png");
  const pipe = loadPipeline(v.model);
  const dirs = list(v.delta);
  if (dirs.length > 0) {
    const loaded = dirs.map((d) => readDelta(d, pipe.unet, v.force ?? false));
    let delta = loaded[0];
    if (loaded.length > 1) {
      const st = stackDeltas(pipe.unet, loaded);
      delta = st.delta;
      st.tokenMap.forEach((m, i) => console.log(`stacked ${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ") || "no tokens"}`));
    }
    applyDeltaToUNet(pipe.unet, delta, { force: v.force ?? false });
    installTokens(pipe.tokenizer, pipe.textEncoder, delta.tokens);
    console.log(`applied ${dirs.join(" + ")}: ${delta.unet.size} tensors, tokens ${[...delta.tokens.keys()].join(", ") || "none"}`);
  }
  if (v.scheduler === "ddpm") pipe.scheduler = DDPMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
  else if (v.scheduler === "ddim") pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
  else if (v.scheduler !== undefined) throw new ConfigError(`--scheduler must be ddim or ddpm, got "${v.scheduler}"`);
  const n = int(v.n, "n", 1);
  const t0 = performance.now();
  const { images } = pipe.generate({
    prompt: prompts, numImagesPerPrompt: n, numInferenceSteps: int(v.steps, "steps", 50), guidanceScale: num(v.guidance, "guidance", 7.5),
    seed: int(v.seed, "seed", 0), eta: num(v.eta, "eta", 0),
    ...(v.negative ? { negativePrompt: v.negative } : {}),
    ...(v.height ? { height: int(v.height, "height", 0) } : {}), ...(v.width ? { width: int(v.width, "width", 0) } : {}),
    onStep: (s, total) => process.stderr.write(`\rstep ${s}/${total}  ${((performance.now() - t0) / 1000).toFixed(1)}s`),
  });
  process.stderr.write("\n");
  fs.mkdirSync(path.dirname(path.resolve(v.out)), { recursive: true });
  writePng(v.out, images.length === 1 ? images[0] : makeGrid(images, { cols: n > 1 ? n : Math.min(4, images.length), pad: 2 }));
  console.log(`wrote ${v.out} (${images.length} image${images.length > 1 ? "s" : ""})`);
}

/** A delta folder, full or compressed. */
function readDelta(dir: string, unet: UNet2DConditionModel, force: boolean): Delta {
  return isCompressed(dir) ? loadCompressed(dir, unet, { force }) : loadDelta(dir);
}

function cmdMerge(argv: string[]): void {
  const { values: v } = parseArgs({ args: argv, options: {
    model: { type: "string" }, delta: { type: "string", multiple: true }, class: { type: "string", multiple: true }, captions: { type: "string" },
    "num-captions": { type: "string" }, duplicates: { type: "string" }, ridge: { type: "string" }, out: { type: "string" },
  } });
  const dirs = list(v.delta), classes = list(v.class);
  if (dirs.length < 2) throw new ConfigError("merge needs at least two --delta DIR");
  if (classes.length !== dirs.length) throw new ConfigError(`merge needs one --class per --delta (got ${classes.length} for ${dirs.length})`);
  if (!v.captions) throw new ConfigError("merge needs --captions FILE (regularisation captions, one a line)");
  if (!v.out) throw new ConfigError("merge needs --out DIR");
  const pipe = loadPipeline(v.model);
  const deltas = dirs.map((d) => readDelta(d, pipe.unet, false));
  const dup = v.duplicates ?? "mean";
  if (dup !== "mean" && dup !== "first") throw new ConfigError(`--duplicates must be mean or first, got "${dup}"`);
  const r = mergeDeltas(pipe, deltas, { regCaptions: readCaptions(v.captions, int(v["num-captions"], "num-captions", 200)), classWords: classes, duplicates: dup, ridge: num(v.ridge, "ridge", 0), log: (s) => console.log(s) });
  for (const line of formatMergeReport(r.report)) console.log(line);
  r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ")}`));
  saveMerged(v.out, r, dirs);
  console.log(`wrote ${v.out}`);
}

function cmdCompress(argv: string[]): void {
  const { values: v } = parseArgs({ args: argv, options: { model: { type: "string" }, delta: { type: "string" }, ratio: { type: "string" }, rank: { type: "string" }, out: { type: "string" } } });
  if (!v.delta || !v.out) throw new ConfigError("compress needs --delta DIR and --out DIR");
  const pipe = loadPipeline(v.model);
  const c = compressDelta(loadDelta(v.delta), pipe.unet, v.rank ? { rank: int(v.rank, "rank", 1) } : { ratio: num(v.ratio, "ratio", 0.6) });
  for (const line of formatCompression(c)) console.log(line);
  saveCompressed(v.out, c);
  console.log(`wrote ${v.out}`);
}

function cmdStack(argv: string[]): void {
  const { values: v } = parseArgs({ args: argv, options: { model: { type: "string" }, delta: { type: "string", multiple: true }, out: { type: "string" } } });
  const dirs = list(v.delta);
  if (dirs.length < 2 || !v.out) throw new ConfigError("stack needs two or more --delta DIR and --out DIR");
  const pipe = loadPipeline(v.model);
  const r = stackDeltas(pipe.unet, dirs.map((d) => readDelta(d, pipe.unet, false)));
  r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${[...m].map(([a, b]) => `${a} -> ${b}`).join(", ") || "no tokens"}`));
  saveDelta(v.out, r.delta, { stacked_from: JSON.stringify(dirs) });
  console.log(`wrote ${v.out}`);
}

function cmdAnalyze(argv: string[]): void {
  const { values: v } = parseArgs({ args: argv, options: { model: { type: "string" }, tuned: { type: "string" }, delta: { type: "string" }, out: { type: "string" }, chart: { type: "string" }, name: { type: "string" }, by: { type: "string" } } });
  if (!v.model || !v.out || (!v.tuned && !v.delta)) throw new ConfigError("analyze needs --model DIR (the base UNet or pipeline), --tuned DIR or --delta DIR, and --out DIR");
  const unetDir = (d: string) => (fs.existsSync(path.join(d, "unet")) ? path.join(d, "unet") : d);
  const base = UNet2DConditionModel.fromPretrained(unetDir(v.model));
  const tuned = v.tuned ? UNet2DConditionModel.fromPretrained(unetDir(v.tuned)) : readDelta(v.delta as string, base, true).unet;
  const chart = v.chart ?? "layers";
  if (chart !== "layers" && chart !== "groups") throw new ConfigError(`--chart must be layers or groups, got "${chart}"`);
  const by = v.by ?? "layer";
  if (by !== "layer" && by !== "tensor") throw new ConfigError(`--by must be layer or tensor, got "${by}"`);
  const a = analyzeWeights(base, tuned, { by });
  for (const line of formatAnalysis(a)) console.log(line);
  const files = writeAnalysis(a, v.out, { chart, ...(v.name ? { name: v.name } : {}) });
  console.log(`wrote ${Object.values(files).join(", ")}`);
}

function cmdEval(argv: string[]): void {
  const { values: v } = parseArgs({ args: argv, options: {
    clip: { type: "string" }, images: { type: "string" }, prompts: { type: "string" }, targets: { type: "string" }, real: { type: "string" },
    replace: { type: "string", multiple: true }, resolution: { type: "string" },
  } });
  if (!v.clip || !v.images || !v.prompts) throw new ConfigError("eval needs --clip DIR (a CLIPModel folder with a tokenizer/), --images DIR and --prompts FILE");
  const model = CLIPModel.fromPretrained(v.clip);
  const tokDir = fs.existsSync(path.join(v.clip, "tokenizer")) ? path.join(v.clip, "tokenizer") : v.clip;
  const tokenizer = fs.existsSync(path.join(tokDir, "vocab.json")) ? CLIPTokenizer.fromPretrained(tokDir) : CLIPTokenizer.default();
  const res = int(v.resolution, "resolution", 224);
  const generated = loadImages(listImages(v.images), res);
  const prompts = fs.readFileSync(v.prompts, "utf8").split("\n").map((l) => l.trim()).filter(Boolean);
  const all = prompts.length === 1 ? generated.map(() => prompts[0]) : prompts;
  const replacements = Object.fromEntries(list(v.replace).map((r) => r.split("=") as [string, string]));
  const report = evaluate({
    scorer: clipScorer(model, tokenizer), generated, prompts: all, replacements,
    ...(v.targets ? { targets: loadImages(listImages(v.targets), res) } : {}),
    ...(v.real ? { real: loadImages(listImages(v.real), res) } : {}),
  });
  for (const line of formatEvaluation(report)) console.log(line);
}


const COMMANDS: Record<string, (argv: string[]) => void> = {
  customise: cmdCustomise, customize: cmdCustomise, sample: cmdSample, merge: cmdMerge, compress: cmdCompress,
  stack: cmdStack, analyze: cmdAnalyze, eval: cmdEval,
};

export function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(HELP);
    return 0;
  }
  const f = COMMANDS[cmd];
  if (!f) {
    console.error(`cdiff: unknown command "${cmd}"\n\n${HELP}`);
    return 2;
  }
  try {
    f(rest);
    return 0;
  } catch (e) {
    const err = e as Error;
    console.error(`cdiff ${cmd}: ${err.name && err.name !== "Error" ? `${err.name}: ` : ""}${err.message}`);
    if (process.env.CDIFF_DEBUG) console.error(err.stack);
    return 1;
  }
}

// run directly (`tsx cli/main.ts`); the cdiff bin imports main() and calls it
if (process.argv[1] && /cli[\\/]main\.[jt]s$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
