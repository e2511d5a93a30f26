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
import { applyDeltaToUNet, loadDelta } from "../tune/delta.ts";
import { installTokens } from "../tune/tokens.ts";
import { int, list, num } from "./args.ts";

const HELP = `cdiff - Custom Diffusion on a pure-TypeScript engine

usage: cdiff <command> [options]

commands:
  customise   fine-tune a model on a concept (folder of images + prompt) and write a delta
  sample      generate images from a model, optionally with one or more deltas applied

cdiff customise --model DIR --images DIR --prompt "photo of a <new1> dog" --class dog --out DIR
  --model DIR            diffusers-layout model folder (unet/, text_encoder/, tokenizer/, scheduler/, vae/)
  --images DIR           target images (PNG/JPEG), or --concepts-list FILE.json (diffusers' concepts_list)
  --prompt TEXT          instance prompt with the modifier token; --class WORD the class prompt
  --class-data DIR       regularisation images (a folder, or images.txt + caption.txt)
  --freeze-model M       crossattn_kv (default) | crossattn | full
  --steps N (250)  --batch N (2)  --lr X (1e-5)  --scale-lr  --prior-weight X (1)
  --noaug  --hflip  --seed N (42)  --resolution N
  --checkpoint-every N   resumable checkpoints; --resume continues from the newest
  --validation-prompt TEXT (repeatable)  --validation-every N
cdiff sample --model DIR [--delta DIR ...] --prompt TEXT [--prompt TEXT ...] --out FILE.png
  --steps N (50)  --guidance X (7.5)  --seed N (0)  --n N images per prompt (1)
  --scheduler ddim|ddpm  --eta X (0)  --height N  --width N  --negative TEXT
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
      "initializer-token": { type: "string", multiple: true },
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
  customise(pipe, {
    concepts, outputDir: v.out,
    freezeModel: (v["freeze-model"] ?? "crossattn_kv") as FreezeModel,
    maxTrainSteps: int(v.steps, "steps", 250), trainBatchSize: int(v.batch, "batch", 2), learningRate: num(v.lr, "lr", 1e-5),
    scaleLr: v["scale-lr"] ?? false, priorLossWeight: num(v["prior-weight"], "prior-weight", 1), noaug: v.noaug ?? false,
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
  const deltas = list(v.delta);
  if (deltas.length > 1) throw new ConfigError("sample: several deltas are applied with `cdiff stack` or `cdiff merge` first; pass one --delta");
  for (const d of deltas) {
    const delta = loadDelta(d);
    applyDeltaToUNet(pipe.unet, delta, { force: v.force ?? false });
    installTokens(pipe.tokenizer, pipe.textEncoder, delta.tokens);
    console.log(`applied ${d}: ${delta.unet.size} tensors, tokens ${[...delta.tokens.keys()].join(", ") || "none"}`);
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

const COMMANDS: Record<string, (argv: string[]) => void> = { customise: cmdCustomise, customize: cmdCustomise, sample: cmdSample };

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

if (process.argv[1] && /cdiff\.mjs$|cli[\\/]main\.ts$/.test(process.argv[1])) process.exitCode = main(process.argv.slice(2));
