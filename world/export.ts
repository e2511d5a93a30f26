// Writes the shipped world model from a pretraining checkpoint: the EMA weights in the diffusers layout
// (UNet in F16), the restricted tokenizer, the DDIM scheduler, and training.json (recipe, steps, time, loss).
// Run: npx tsx world/export.ts [--run runs/world] [--out world/model] [--checkpoint N]
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { readSafetensors } from "../data/safetensors.ts";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { replaceDir, writeJsonAtomic } from "../data/atomic.ts";
import { WORLD_MODEL_DIR, buildWorldPipeline } from "./model.ts";
import { WORLD_RECIPE } from "./train.ts";
import { checkpointSteps } from "../tune/checkpoint.ts";

export function exportWorld(run: string, out: string, step?: number): { step: number; dir: string } {
  const root = path.join(run, "checkpoints");
  const steps = checkpointSteps(root);
  const s = step ?? steps[0];
  if (s === undefined || !steps.includes(s))
    throw new Error(`export: no checkpoint ${step ?? ""} in ${root} (have ${steps.join(", ") || "none"})`);
  const dir = path.join(root, `checkpoint-${s}`);
  const tokenizer = CLIPTokenizer.fromPretrained(path.join(run, "tokenizer"));
  const pipe = buildWorldPipeline(tokenizer, 0);
  const ema = readSafetensors(path.join(dir, "ema.safetensors")).tensors;
  const pick = (prefix: string) =>
    new Map([...ema].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
  pipe.unet.loadStateDict(pick("unet."));
  pipe.textEncoder.loadStateDict(pick("text_encoder."));
  const state = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as {
    step: number;
    losses: number[];
    seconds: number;
  };
  replaceDir(out, (tmp) => {
    pipe.save(tmp);
    pipe.unet.save(path.join(tmp, "unet"), { dtype: "F16" });
    const last = state.losses.slice(-50);
    writeJsonAtomic(path.join(tmp, "training.json"), {
      recipe: {
        ...WORLD_RECIPE,
        prediction: "v_prediction",
        schedule: "squaredcos_cap_v2",
        ema: "min(0.999, (1+n)/(10+n))",
        captions: "templates {}, a {}, photo of a {}, an emoji of a {}; 10% dropped",
      },
      steps: state.step,
      planned_steps: WORLD_RECIPE.steps,
      wall_seconds: Math.round(state.seconds),
      final_loss_avg50: +(last.reduce((a, b) => a + b, 0) / Math.max(1, last.length)).toFixed(5),
      weights: "EMA",
      machine: `${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}`,
      node: process.version,
    });
  });
  return { step: state.step, dir: out };
}

if (process.argv[1] && /world[\\/]export\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: { run: { type: "string" }, out: { type: "string" }, checkpoint: { type: "string" } },
  });
  const r = exportWorld(
    v.run ?? "runs/world",
    v.out ?? WORLD_MODEL_DIR,
    v.checkpoint ? Number(v.checkpoint) : undefined,
  );
  console.log(`exported step ${r.step} to ${r.dir}`);
}
