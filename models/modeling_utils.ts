// loading and saving models in the diffusers/transformers folder layout (config.json + safetensors)
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensorsEach, readSafetensorsHeader, writeSafetensors } from "../data/safetensors.ts";
import type { SafeTensorInput } from "../data/safetensors.ts";
import { noGrad } from "../engine/index.ts";
import { setWeightsDType } from "./nn/layers.ts";
import type { WeightsDType } from "./nn/layers.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { ConfigError, FormatError } from "../engine/errors.ts";
import type { Module } from "./nn/module.ts";

const MAX_CONFIG_BYTES = 4 << 20;

/** Reads and parses `folder/config.json` (or another json file), with clear errors. */
export function readJsonConfig(folder: string, file = "config.json"): Record<string, unknown> {
  const p = path.join(folder, file);
  if (!fs.existsSync(p)) throw new ConfigError(`fromPretrained: ${p} does not exist`);
  const size = fs.statSync(p).size;
  if (size > MAX_CONFIG_BYTES)
    throw new FormatError(`config: ${p} is ${size} bytes, more than a config can be (${MAX_CONFIG_BYTES})`);
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(p, "utf8"));
  } catch (e) {
    throw new FormatError(`config: ${p} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new FormatError(`config: ${p} must hold a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Fills a config from raw JSON: known keys are type-checked against the defaults, keys starting
 * with "_" and `ignored` keys are skipped, and any other unknown key is a ConfigError.
 */
export function parseConfig<C extends object>(
  name: string,
  raw: Record<string, unknown>,
  defaults: C,
  ignored: readonly string[] = [],
): C {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(raw)) {
    if (k.startsWith("_") || ignored.includes(k)) continue;
    if (!(k in defaults)) throw new ConfigError(`${name}: unknown config key "${k}" (value ${JSON.stringify(v)})`);
    const d = (defaults as Record<string, unknown>)[k];
    if (
      d !== null &&
      v !== null &&
      typeof d !== typeof v &&
      !(Array.isArray(d) && typeof v === "number") &&
      !(typeof d === "number" && Array.isArray(v))
    ) {
      throw new ConfigError(
        `${name}: config key "${k}" should be ${Array.isArray(d) ? "an array" : typeof d}, got ${JSON.stringify(v)}`,
      );
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

/** How a model's weights are held when loaded. */
export interface LoadOptions {
  /** dtype of the Linear and Conv2d weights (default float32; half dtypes halve their memory and freeze them) */
  weightsDType?: WeightsDType;
  /** weights kept in float32 whatever `weightsDType` says (those a training run updates) */
  keepFloat32?: (key: string) => boolean;
}

/**
 * Loads a safetensors file into a module by key, strict: keys and shapes are checked against the
 * header before any data is read (`ignore` lists file keys to skip, `keys` restricts the read), then
 * tensors are read one at a time and converted into the parameters' dtypes, so loading holds one
 * tensor beyond the model.
 */
export function loadWeights(
  model: Module,
  file: string,
  ignore: readonly string[] = [],
  opts: LoadOptions & { keys?: (key: string) => boolean } = {},
): void {
  const header = readSafetensorsHeader(file);
  const skip = new Set(ignore);
  const keys = [...header.tensors.keys()].filter((k) => !skip.has(k) && (opts.keys?.(k) ?? true));
  model.checkStateShapes(new Map(keys.map((k) => [k, header.tensors.get(k)!])));
  if (opts.weightsDType) setWeightsDType(model, opts.weightsDType, opts.keepFloat32);
  const own = model.stateDict();
  noGrad(() => readSafetensorsEach(file, (k, t) => own.get(k)!.copy_(t.data), { keys }));
}

/** Writes `config.json` and the weights into `folder`, atomically per file. */
export function saveModel(
  model: Module,
  folder: string,
  weightsName: string,
  config: object,
  opts: { dtype?: "F32" | "F16"; metadata?: Record<string, string> } = {},
): void {
  fs.mkdirSync(folder, { recursive: true });
  // half-precision weights are written in their own dtype (their values exactly)
  const half = { bfloat16: "BF16", float16: "F16" } as const;
  const sd = new Map<string, SafeTensorInput>();
  // (values are read when the writer reaches each tensor: a half model is widened one tensor at a time)
  for (const [k, t] of model.stateDict()) {
    const d = t.dtype === "bfloat16" || t.dtype === "float16" ? half[t.dtype] : undefined;
    sd.set(k, {
      shape: t.shape,
      get data() {
        return t.data;
      },
      ...(d ? { dtype: d } : {}),
    });
  }
  writeSafetensors(path.join(folder, weightsName), sd, {
    dtype: opts.dtype ?? "F32",
    metadata: opts.metadata ?? { format: "pt" },
  });
  writeJsonAtomic(path.join(folder, "config.json"), config);
}

/** Writes JSON to a temporary file and renames it into place (the shared helper of `data/atomic.ts`). */
export { writeJsonAtomic } from "../data/atomic.ts";
