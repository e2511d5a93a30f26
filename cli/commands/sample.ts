// cdiff sample: images from a model, with one delta or several stacked
import { makeGrid, writePng } from "../../data/images.ts";
import { DDIMScheduler } from "../../models/schedulers/scheduling_ddim.ts";
import { DDPMScheduler } from "../../models/schedulers/scheduling_ddpm.ts";
import { isTrained } from "../../tune/params.ts";
import { loadAnyDelta } from "../../tune/compress.ts";
import { applyDeltas } from "../../tune/stack.ts";
import { UsageError, choice, distinctPaths, int, list, num, required } from "../args.ts";
import type { Command } from "../common.ts";
import {
  MAX_SIDE,
  SAME_DELTA,
  WEIGHTS_DTYPE_OPTION,
  checkOutFile,
  loadPipeline,
  sizeFlag,
  tokenMapText,
  warn,
  weightsDTypeFlag,
} from "../common.ts";

const TOKEN_IN_PROMPT = /<[^<>\s]+>/g;

export const sampleCmd: Command = {
  usage: "--model DIR [--delta DIR ...] --prompt TEXT [--prompt TEXT ...] --out FILE.png [options]",
  about:
    "Generates images from a model, with one or several deltas applied (several are stacked; their tokens are renumbered <new1>.. in order).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder" },
    delta: {
      type: "string",
      multiple: true,
      arg: "DIR",
      help: "delta folder, full or compressed (repeatable: stacked)",
    },
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
    const sched =
      v.scheduler === undefined ? undefined : choice(v.scheduler, "scheduler", "ddim", ["ddim", "ddpm"] as const);
    for (const f of ["height", "width"]) if (v[f] !== undefined) int(v[f], f, 0, { min: 8, max: MAX_SIDE });
    const dirs = list(v.delta);
    distinctPaths(dirs, "delta", SAME_DELTA);
    checkOutFile(out);
    // cross-attention weights (what a delta changes) stay float32, so deltas apply exactly
    const pipe = loadPipeline(model, {
      weightsDType: weightsDTypeFlag(v),
      keepFloat32: (k) => isTrained(k, "crossattn"),
    });
    const height = sizeFlag(v, "height", pipe.vaeScaleFactor),
      width = sizeFlag(v, "width", pipe.vaeScaleFactor);
    let known = new Set<string>();
    if (dirs.length > 0) {
      const force = v.force === true;
      const delta = applyDeltas(
        pipe,
        dirs.map((d) => loadAnyDelta(d, pipe.unet, { force })),
        {
          force,
          onStacked: (maps) =>
            maps.forEach((m, i) => console.log(`stacked ${dirs[i]}: ${tokenMapText(m) || "no tokens"}`)),
        },
      );
      known = new Set(delta.tokens.keys());
      console.log(`applied ${dirs.join(" + ")}: ${delta.unet.size} tensors, tokens ${[...known].join(", ") || "none"}`);
    }
    for (const p of prompts) {
      const unknown = [...new Set(p.match(TOKEN_IN_PROMPT) ?? [])].filter(
        (t) => !known.has(t) && pipe.tokenizer.idsForTokenString(t).length !== 1,
      );
      if (unknown.length === 0) continue;
      warn(
        cmd,
        dirs.length === 0
          ? `--prompt "${p}" mentions ${unknown.join(", ")}, but no --delta is given, so it is read as plain text`
          : `--prompt "${p}" mentions ${unknown.join(", ")}, which no --delta defines (they define ${[...known].join(", ") || "no tokens"}); it is read as plain text`,
      );
    }
    if (sched === "ddpm")
      pipe.scheduler = DDPMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
    else if (sched === "ddim")
      pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
    const t0 = performance.now();
    const { images } = pipe.generate({
      prompt: prompts,
      numImagesPerPrompt: n,
      numInferenceSteps: steps,
      guidanceScale: guidance,
      seed,
      eta,
      ...(v.negative ? { negativePrompt: v.negative as string } : {}),
      ...(height !== undefined ? { height } : {}),
      ...(width !== undefined ? { width } : {}),
      onStep: (s, total) =>
        process.stderr.write(`\rstep ${s}/${total}  ${((performance.now() - t0) / 1000).toFixed(1)}s`),
    });
    process.stderr.write("\n");
    writePng(
      out,
      images.length === 1 ? images[0]! : makeGrid(images, { cols: n > 1 ? n : Math.min(4, images.length), pad: 2 }),
    );
    console.log(`wrote ${out} (${images.length} image${images.length > 1 ? "s" : ""})`);
  },
};
