// loading and saving models in the diffusers/transformers folder layout (config.json + safetensors)
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { ConfigError, FormatError } from "../engine/errors.ts";
import type { HostTensor } from "../engine/host.ts";
import type { Module } from "./nn/module.ts";

const MAX_CONFIG_BYTES = 4 << 20;

/** Reads and parses `folder/config.json` (or another json file), with clear errors. */
export function readJsonConfig(folder: string, file = "config.json"): Record<string, unknown> {
  const p = path.join(folder, file);
  if (!fs.existsSync(p)) throw new ConfigError(`fromPretrained: ${p} does not exist`);
  const size = fs.statSync(p).size;
  if (size > MAX_CONFIG_BYTES) throw new FormatError(`config: ${p} is ${size} bytes, more than a config can be (${MAX_CONFIG_BYTES})`);
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(p, "utf8"));
  } catch (e) {
    throw new FormatError(`config: ${p} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new FormatError(`config: ${p} must hold a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Fills a config from raw JSON: known keys are type-checked against the defaults, keys starting
 * with "_" and `ignored` keys are skipped, and any other unknown key is a ConfigError.
 */
export function parseConfig<C extends object>(name: string, raw: Record<string, unknown>, defaults: C, ignored: readonly string[] = []): C {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(raw)) {
    if (k.startsWith("_") || ignored.includes(k)) continue;
    if (!(k in defaults)) throw new ConfigError(`${name}: unknown config key "${k}" (value ${JSON.stringify(v)})`);
    const d = (defaults as Record<string, unknown>)[k];
    if (d !== null && v !== null && typeof d !== typeof v && !(Array.isArray(d) && typeof v === "number") && !(typeof d === "number" && Array.isArray(v))) {
      throw new ConfigError(`${name}: config key "${k}" should be ${Array.isArray(d) ? "an array" : typeof d}, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out as C;
}

/** The first weights file that exists in `folder` among `names`. */
export function findWeights(folder: string, names: readonly string[]): string {
  for (const n of names) {
    const p = path.join(folder, n);
    if (fs.existsSync(p)) return p;
  }
  throw new ConfigError(`fromPretrained: no weights file in ${folder} (looked for ${names.join(", ")})`);
}

/** Loads a safetensors file into a module by key (strict; `ignore` lists keys to skip). */
export function loadWeights(model: Module, file: string, ignore: readonly string[] = []): void {
  const { tensors } = readSafetensors(file);
  model.loadStateDict(tensors, { ignore });
}

/** Writes `config.json` and the weights into `folder`, atomically per file. */
export function saveModel(model: Module, folder: string, weightsName: string, config: object, opts: { dtype?: "F32" | "F16"; metadata?: Record<string, string> } = {}): void {
  fs.mkdirSync(folder, { recursive: true });
  const sd = new Map<string, HostTensor<Float32Array | Float64Array>>();
  for (const [k, t] of model.stateDict()) sd.set(k, { shape: t.shape, data: t.data });
  writeSafetensors(path.join(folder, weightsName), sd, { dtype: opts.dtype ?? "F32", metadata: opts.metadata ?? { format: "pt" } });
  writeJsonAtomic(path.join(folder, "config.json"), config);
}

/** Writes JSON to a temporary file and renames it into place (the shared helper of `data/atomic.ts`). */
export { writeJsonAtomic } from "../data/atomic.ts";
