// What the commands share: the Command shape, warnings, loading a pipeline, and the flags several
// commands take (--weights-dtype, sizes, --max-image-megapixels, an output file)
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";
import { prepareOutputDir } from "../data/atomic.ts";
import { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { parseWeightsDType } from "../models/nn/layers.ts";
import type { WeightsDType } from "../models/nn/layers.ts";
import type { LoadOptions } from "../models/modeling_utils.ts";
import type { OptTable, Values } from "./args.ts";
import { UsageError, choice, int, num } from "./args.ts";

/** Largest training or sampling size in pixels the command line accepts. */
export const MAX_SIDE = 4096;

/** One command: its usage line, description, options and what it does with the parsed values. */
export interface Command {
  usage: string;
  about: string;
  options: OptTable;
  run: (v: Values, cmd: string) => void;
}

/** A warning line on stderr: `cdiff <cmd>: warning: ...`. */
export const warn = (cmd: string, s: string): void => console.error(`cdiff ${cmd}: warning: ${s}`);

/** A diffusers-layout pipeline folder, refused with one line when missing or not a folder. */
export function loadPipeline(dir: string, opts: LoadOptions = {}): StableDiffusionPipeline {
  if (!fs.existsSync(dir)) throw new ConfigError(`--model ${dir}: no such folder`);
  if (!fs.statSync(dir).isDirectory())
    throw new ConfigError(`--model ${dir}: not a folder (a diffusers-layout model folder is expected)`);
  return StableDiffusionPipeline.fromPretrained(dir, opts);
}

/** --weights-dtype: the frozen weights' dtype (float32 unless asked). */
export function weightsDTypeFlag(v: Values): WeightsDType {
  return parseWeightsDType(choice(v["weights-dtype"], "weights-dtype", "f32", ["f32", "bf16", "f16"] as const));
}
export const WEIGHTS_DTYPE_OPTION = {
  type: "string",
  arg: "D",
  help: "frozen Linear/Conv2d weights held as f32 | bf16 | f16 (f32): half the memory in half precision, computed in float32",
} as const;

/** The output file's folder is checked (writable, not under /proc) before any long work. */
export function checkOutFile(out: string): void {
  if (fs.existsSync(out) && fs.statSync(out).isDirectory())
    throw new ConfigError(`--out ${out} is a folder; give a file name such as ${path.join(out, "sample.png")}`);
  prepareOutputDir(path.dirname(path.resolve(out)), "--out");
}

/** --height/--width/--resolution: a multiple of the VAE factor from 8 to MAX_SIDE; undefined when absent. */
export function sizeFlag(v: Values, name: string, factor: number): number | undefined {
  if (v[name] === undefined) return undefined;
  const n = int(v[name], name, 0, { min: 8, max: MAX_SIDE });
  if (n % factor !== 0)
    throw new UsageError(
      `--${name} must be a multiple of ${factor} (this model's VAE downscale factor) from 8 to ${MAX_SIDE}, got ${n}`,
    );
  return n;
}

/** --max-image-megapixels as the decoder's pixel limit. */
export const megapixels = (v: Values): { maxImagePixels?: number } =>
  v["max-image-megapixels"] === undefined
    ? {}
    : {
        maxImagePixels: Math.round(
          num(v["max-image-megapixels"], "max-image-megapixels", 25, { min: 0, max: 1000, exclusiveMin: true }) * 1e6,
        ),
      };

/** Why the same delta may not be given twice to sample or stack. */
export const SAME_DELTA = "a delta stacked with itself doubles its change; give each delta once";

/** A token map as "<new1> -> <new2>, ..." (empty when there are no tokens). */
export function tokenMapText(m: ReadonlyMap<string, string>): string {
  return [...m].map(([a, b]) => `${a} -> ${b}`).join(", ");
}
