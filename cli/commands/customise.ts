// cdiff customise: fine-tunes a model on one or several concepts and writes a delta
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../../engine/errors.ts";
import { prepareOutputDir } from "../../data/atomic.ts";
import type { ConceptSpec } from "../../tune/dataset.ts";
import { customise } from "../../tune/train.ts";
import { FREEZE_MODELS, isTrained } from "../../tune/params.ts";
import { addRegularisation } from "../../tune/regularisation.ts";
import { UsageError, choice, int, list, num, required } from "../args.ts";
import type { Command } from "../common.ts";
import {
  MAX_SIDE,
  WEIGHTS_DTYPE_OPTION,
  loadPipeline,
  megapixels,
  sizeFlag,
  warn,
  weightsDTypeFlag,
} from "../common.ts";

/** --concepts-list: a JSON list of concepts, each checked for its three strings. */
function readConceptsList(file: string): ConceptSpec[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(
      `--concepts-list ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`--concepts-list ${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length === 0)
    throw new ConfigError(`--concepts-list ${file}: must hold a non-empty JSON list of concepts`);
  raw.forEach((c: unknown, i) => {
    if (!c || typeof c !== "object") throw new ConfigError(`--concepts-list ${file}: concept ${i} is not an object`);
    for (const k of ["instance_prompt", "class_prompt", "instance_data_dir"]) {
      if (typeof (c as Record<string, unknown>)[k] !== "string")
        throw new ConfigError(`--concepts-list ${file}: concept ${i} lacks "${k}" (a string)`);
    }
  });
  return raw as ConceptSpec[];
}

export const customiseCmd: Command = {
  usage: `--model DIR --images DIR --prompt "photo of a <new1> dog" --class dog --out DIR [options]`,
  about: "Fine-tunes a model on a concept (a folder of images and a prompt with a modifier token) and writes a delta.",
  options: {
    model: {
      type: "string",
      arg: "DIR",
      help: "diffusers-layout model folder (unet/, text_encoder/, tokenizer/, scheduler/, vae/)",
    },
    images: { type: "string", arg: "DIR", help: "the concept's images (PNG/JPEG)" },
    prompt: {
      type: "string",
      arg: "TEXT",
      help: 'instance prompt with the modifier token, e.g. "photo of a <new1> dog"',
    },
    class: { type: "string", arg: "TEXT", help: "class prompt, e.g. dog" },
    "concepts-list": {
      type: "string",
      arg: "FILE",
      help: "several concepts: a JSON list of {instance_prompt, class_prompt, instance_data_dir[, class_data_dir]}",
    },
    out: { type: "string", arg: "DIR", help: "output folder (delta, config, checkpoints/)" },
    "class-data": { type: "string", arg: "DIR", help: "regularisation images (a folder, or images.txt + caption.txt)" },
    "class-retrieve": {
      type: "string",
      arg: "PATH",
      help: "retrieve regularisation images from a local image+caption corpus",
    },
    "retrieve-threshold": {
      type: "string",
      arg: "X",
      help: "text-similarity threshold for --class-retrieve, -1 to 1 (0.85)",
    },
    "num-class-images": { type: "string", arg: "N", help: "regularisation images used, at least 1 (200)" },
    "class-generate": {
      type: "string",
      arg: "N",
      help: 'sample N regularisation images "photo of a {class}" from the base model',
    },
    guidance: { type: "string", arg: "X", help: "guidance scale for --class-generate (7.5)" },
    "reg-cache": {
      type: "string",
      arg: "DIR",
      help: "cache of generated regularisation images (~/.cache/custom-diffusion-ts)",
    },
    "freeze-model": { type: "string", arg: "M", help: `what trains: ${FREEZE_MODELS.join(" | ")} (crossattn_kv)` },
    steps: { type: "string", arg: "N", help: "training steps, at least 1 (250)" },
    batch: { type: "string", arg: "N", help: "images per step, 1 to 1024 (2)" },
    lr: { type: "string", arg: "X", help: "learning rate, above 0 (1e-5)" },
    "scale-lr": { type: "boolean", help: "multiply the learning rate by the batch size (x2 with regularisation)" },
    "prior-weight": { type: "string", arg: "X", help: "weight of the regularisation loss, 0 or more (1)" },
    noaug: { type: "boolean", help: "no resize augmentation" },
    hflip: { type: "boolean", help: "random horizontal flips" },
    seed: { type: "string", arg: "N", help: "random seed, a non-negative integer (42)" },
    resolution: {
      type: "string",
      arg: "N",
      help: `training size in pixels, a multiple of the VAE factor from 8 to ${MAX_SIDE} (the model's)`,
    },
    "checkpoint-every": { type: "string", arg: "N", help: "write a resumable checkpoint every N steps (0: none)" },
    "gradient-checkpointing": {
      type: "boolean",
      help: "recompute the UNet's activations during backward: less memory, about one more forward of time, same gradients",
    },
    "weights-dtype": WEIGHTS_DTYPE_OPTION,
    resume: { type: "boolean", help: "continue from the newest intact checkpoint in --out" },
    "validation-prompt": {
      type: "string",
      multiple: true,
      arg: "TEXT",
      help: "sample this prompt during training (repeatable)",
    },
    "validation-every": { type: "string", arg: "N", help: "validation grid every N steps (0: at the end)" },
    "initializer-token": {
      type: "string",
      multiple: true,
      arg: "WORD",
      help: "word whose embedding starts each modifier token (repeatable)",
    },
    "max-image-megapixels": { type: "string", arg: "X", help: "largest image accepted, checked before decoding (25)" },
  },
  run(v, cmd) {
    // every value is checked before any file is touched
    let concepts: ConceptSpec[] | null = null;
    if (v["concepts-list"] !== undefined) {
      for (const f of ["images", "prompt", "class"])
        if (v[f] !== undefined)
          throw new UsageError(`--${f} and --concepts-list exclude each other; put the concepts in the list`);
    } else {
      const missing = ["images", "prompt", "class"].filter((f) => v[f] === undefined);
      if (missing.length)
        throw new UsageError(`customise needs ${missing.map((f) => `--${f}`).join(", ")} (or --concepts-list FILE)`);
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
    if (weightsDType !== "float32" && freezeModel === "full")
      throw new UsageError(`--freeze-model full trains every weight: it needs --weights-dtype f32`);
    const images = megapixels(v);
    if (v["class-retrieve"] !== undefined && v["class-generate"] !== undefined)
      throw new UsageError("--class-retrieve and --class-generate exclude each other");
    if (v.resolution !== undefined) int(v.resolution, "resolution", 0, { min: 8, max: MAX_SIDE });
    const effLr = v["scale-lr"] ? lr * batch * 2 : lr;
    if (effLr > 0.1)
      warn(
        cmd,
        `--lr ${v.lr}${v["scale-lr"] ? " with --scale-lr" : ""} gives a learning rate of ${effLr.toExponential(1)}, far above the usual 1e-6 to 1e-3; training is likely to diverge (it stops with an error if it does)`,
      );
    if (v["concepts-list"] !== undefined) concepts = readConceptsList(v["concepts-list"] as string);
    else
      concepts = [
        {
          instance_data_dir: v.images as string,
          instance_prompt: v.prompt as string,
          class_prompt: v.class as string,
          ...(v["class-data"] ? { class_data_dir: v["class-data"] as string } : {}),
        },
      ];
    if (!v.resume && fs.existsSync(path.join(out, "checkpoints")))
      warn(
        cmd,
        `${out} holds checkpoints/ of an earlier run; this run starts from step 0 (pass --resume to continue that one)`,
      );
    prepareOutputDir(out, "--out", { also: ["checkpoints"] });
    // the weights this run trains stay float32 whatever --weights-dtype says
    const pipe = loadPipeline(model, { weightsDType, keepFloat32: (k) => isTrained(k, freezeModel) });
    const resolution = sizeFlag(v, "resolution", pipe.vaeScaleFactor);
    if (v["class-retrieve"] || v["class-generate"]) {
      // retrieval compares captions with the model's own pooled text features
      concepts = addRegularisation(pipe, concepts, {
        outputDir: out,
        log: (s) => console.log(s),
        ...(v["class-retrieve"]
          ? { retrieve: { corpus: v["class-retrieve"] as string, threshold, max: numClass } }
          : {
              generate: {
                numImages: nGenerate,
                guidanceScale: guidance,
                ...(v["reg-cache"] ? { cacheDir: v["reg-cache"] as string } : {}),
              },
            }),
      });
    }
    customise(pipe, {
      concepts,
      outputDir: out,
      freezeModel,
      maxTrainSteps: steps,
      trainBatchSize: batch,
      learningRate: lr,
      numClassImages: numClass,
      scaleLr: v["scale-lr"] === true,
      priorLossWeight: priorWeight,
      noaug: v.noaug === true,
      hflip: v.hflip === true,
      seed,
      checkpointingSteps: every,
      resume: v.resume === true,
      gradientCheckpointing: v["gradient-checkpointing"] === true,
      validationPrompt: list(v["validation-prompt"]),
      validationSteps: valEvery,
      ...(resolution !== undefined ? { resolution } : {}),
      ...images,
      ...(v["initializer-token"] ? { initializerTokens: list(v["initializer-token"]) } : {}),
    });
  },
};
