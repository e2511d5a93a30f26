// Custom Diffusion deltas in the diffusers layout: pytorch_custom_diffusion_weights.safetensors with
// `<layer>.attn2.processor.to_k_custom_diffusion.weight` keys (full replacement matrices) and one
// `<token>.safetensors` per modifier token; plus the base model's fingerprint to refuse mismatches
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, FormatError, NumericalError, StateDictError } from "../engine/errors.ts";
import type { HostTensor, Tensor } from "../engine/index.ts";
import { readSafetensors, safetensorsWriter } from "../data/safetensors.ts";
import type { FileContent } from "../data/atomic.ts";
import { commitFiles, committedNames, committedPath, recoverCommit } from "../data/atomic.ts";
import type { Module } from "../models/nn/module.ts";
import type { FreezeModel } from "./params.ts";
import { deltaFromTorch, freezeModelOf, readTorchDelta } from "./convert.ts";
import { sniffTorchFile } from "../data/torch_zip.ts";
import { defaultModifierTokens } from "./tokens.ts";

export const DELTA_WEIGHTS = "pytorch_custom_diffusion_weights.safetensors";

export type { HostTensor };

/** A fine-tuned delta: replacement values for UNet parameters (by UNet key) and new token rows. */
export interface Delta {
  unet: Map<string, HostTensor>;
  /** modifier token -> embedding row, in token order (<new1>, <new2>, ...) */
  tokens: Map<string, Float32Array>;
  freezeModel: FreezeModel;
  /** fingerprint of the base UNet the delta was trained from ("" when unknown) */
  baseFingerprint: string;
  /** what was read, when the delta came from another tool's files (e.g. "custom-diffusion (CompVis layout)") */
  format?: string;
}

const PROC = /^(.*\.attn2)\.processor\.(to_k|to_v|to_q)_custom_diffusion\.weight$/;
const PROC_OUT = /^(.*\.attn2)\.processor\.to_out_custom_diffusion\.0\.(weight|bias)$/;
const OWN = /^(.*\.attn2)\.(to_k|to_v|to_q)\.weight$/;
const OWN_OUT = /^(.*\.attn2)\.to_out\.0\.(weight|bias)$/;

/** UNet key -> delta-file key (attn2 projections in the processor naming diffusers writes). */
export function toDeltaKey(key: string): string {
  let m = OWN.exec(key);
  if (m) return `${m[1]}.processor.${m[2]}_custom_diffusion.weight`;
  m = OWN_OUT.exec(key);
  if (m) return `${m[1]}.processor.to_out_custom_diffusion.0.${m[2]}`;
  return key;
}

/** Delta-file key -> UNet key. */
export function fromDeltaKey(key: string): string {
  let m = PROC.exec(key);
  if (m) return `${m[1]}.${m[2]}.weight`;
  m = PROC_OUT.exec(key);
  if (m) return `${m[1]}.to_out.0.${m[2]}`;
  return key;
}

/** sha256 over the shapes and values of the base UNet's cross-attention K/V weights (what a delta replaces). */
export function baseFingerprint(unet: Module): string {
  const h = createHash("sha256");
  for (const [k, p] of unet.namedParameters()) {
    if (!/\.attn2\.to_[kv]\.weight$/.test(k)) continue;
    h.update(`${k}:${p.shape.join("x")};`);
    const d = p.data;
    const f = d instanceof Float32Array ? d : Float32Array.from(d);
    h.update(new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
  }
  return h.digest("hex").slice(0, 32);
}

/** Collects the delta of a trained model: current values of `keys` (UNet naming) and token rows. */
export function extractDelta(
  unet: Module,
  keys: readonly string[],
  tokens: Map<string, Float32Array>,
  freezeModel: FreezeModel,
  fingerprint: string,
): Delta {
  const sd = unet.stateDict();
  const out = new Map<string, HostTensor>();
  for (const k of keys) {
    const p = sd.get(k);
    if (!p) throw new StateDictError(`delta: the model has no parameter ${k}`);
    out.set(k, { shape: [...p.shape], data: Float32Array.from(p.data) });
  }
  return { unet: out, tokens, freezeModel, baseFingerprint: fingerprint };
}

/**
 * Files that belong to a delta folder's unit: a new delta written into a folder replaces all of them
 * (weights of either kind, token files, the run's config and a merge report), so no part of an older
 * delta survives beside the new one.
 */
export function isDeltaFile(name: string): boolean {
  return /^(pytorch_custom_diffusion_weights\.(safetensors|bin)|compressed_custom_diffusion_weights\.safetensors|custom_diffusion_config\.json|merge_report\.json|<.+>\.(safetensors|bin))$/.test(
    name,
  );
}

/** Options of {@link saveDelta}. */
export interface SaveDeltaOptions {
  /** more files of the same unit, by name: JSON values (written pretty-printed) */
  json?: Record<string, unknown>;
}

/** The token files of a delta, by file name. */
export function tokenFiles(tokens: ReadonlyMap<string, Float32Array>): Map<string, FileContent> {
  const out = new Map<string, FileContent>();
  for (const [tok, row] of tokens)
    out.set(
      `${tok}.safetensors`,
      safetensorsWriter(
        new Map([[tok, { shape: [row.length], data: row }]]),
        { dtype: "F32", metadata: { format: "pt" } },
        tok,
      ),
    );
  return out;
}

/** Writes `files` (plus `json` files) into `folder` as one unit that replaces every delta file there (see {@link commitFiles}). */
export function commitDeltaFiles(
  folder: string,
  files: Map<string, FileContent>,
  json: Record<string, unknown> = {},
): void {
  for (const [name, v] of Object.entries(json)) files.set(name, JSON.stringify(v, null, 2) + "\n");
  commitFiles(folder, files, isDeltaFile);
}

/**
 * Writes a delta folder as one unit: the weights file, one `<token>.safetensors` per token and any
 * `opts.json` files are written to temporaries, then committed together, replacing every delta file
 * the folder held (an interrupted write leaves the old delta or the new one, never a mix). Refuses
 * non-finite values.
 */
export function saveDelta(
  folder: string,
  delta: Delta,
  extraMetadata: Record<string, string> = {},
  opts: SaveDeltaOptions = {},
): void {
  assertFiniteDelta(delta, `delta for ${folder}`);
  const weights = new Map<string, HostTensor>();
  for (const [k, v] of delta.unet) weights.set(toDeltaKey(k), v);
  const metadata = {
    format: "pt",
    freeze_model: delta.freezeModel,
    base_fingerprint: delta.baseFingerprint,
    modifier_tokens: JSON.stringify([...delta.tokens.keys()]),
    ...extraMetadata,
  };
  const files = new Map<string, FileContent>([
    [DELTA_WEIGHTS, safetensorsWriter(weights, { dtype: "F32", metadata }, DELTA_WEIGHTS)],
    ...tokenFiles(delta.tokens),
  ]);
  commitDeltaFiles(folder, files, opts.json);
}

/** Index and value of the first non-finite entry of `a`, with the count of them; null when all are finite. */
export function firstNonFinite(a: ArrayLike<number>): { index: number; value: number; count: number } | null {
  let first = -1,
    count = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v - v !== 0) {
      if (first < 0) first = i;
      count++;
    }
  }
  return first < 0 ? null : { index: first, value: a[first]!, count };
}

/** Throws NumericalError naming `what`, the tensor and the count when any value of the delta is NaN or infinite. */
export function assertFiniteDelta(delta: Pick<Delta, "unet" | "tokens">, what: string): void {
  const check = (name: string, data: ArrayLike<number>) => {
    const bad = firstNonFinite(data);
    if (bad)
      throw new NumericalError(
        `${what}: ${name} holds ${bad.count} non-finite value${bad.count > 1 ? "s" : ""} (first ${bad.value} at index ${bad.index}); a diverged training run writes such values - retrain with a lower --lr`,
      );
  };
  for (const [k, v] of delta.unet) check(`tensor ${k}`, v.data);
  for (const [t, r] of delta.tokens) check(`token ${t}`, r);
}

/**
 * Whether a delta file is a PyTorch zip archive (read by the restricted reader); a bare pickle is
 * refused, as only the zip format's reader runs; anything else is read as safetensors.
 */
function isPytorchFile(file: string): boolean {
  const kind = sniffTorchFile(file);
  if (kind === "pickle")
    throw new FormatError(
      `delta: ${file} is a bare pickle (PyTorch's format before 1.6), which is not read; load and re-save it with torch.save in a current PyTorch, or save it with safetensors`,
    );
  return kind === "torch-zip";
}

/** The row of token `tok` from its file (safetensors, or a PyTorch `{"<tok>": row}`). */
function readTokenRow(file: string, tok: string): Float32Array {
  const row = isPytorchFile(file) ? readTorchDelta(file).tokens.get(tok) : readSafetensors(file).tensors.get(tok);
  const data = row instanceof Float32Array ? row : row && row.shape.length === 1 ? row.data : null;
  if (!data) throw new FormatError(`delta: ${file} must hold one vector named "${tok}"`);
  return data;
}

/**
 * Reads a delta: a folder written by this project or by the diffusers example (weights and
 * `<token>` files in safetensors, or in PyTorch's zip format, read without executing the pickle), or
 * one PyTorch file of the authors' repository (`delta.bin`, `delta_epoch=*.ckpt`; see tune/convert.ts).
 * A delta read from another tool's files says so in `format`. The folder is read as of its last
 * complete write: an interrupted write is ignored, or finished when it had written everything (see
 * {@link commitFiles}). Non-finite values are refused (NumericalError).
 */
export function loadDelta(folder: string): Delta {
  if (fs.existsSync(folder) && fs.statSync(folder).isFile()) {
    if (!isPytorchFile(folder))
      throw new ConfigError(
        `delta: ${folder} is a file but not a PyTorch checkpoint; a delta is a folder, or one .bin/.ckpt file`,
      );
    const { delta } = deltaFromTorch(folder);
    assertFiniteDelta(delta, `delta ${folder}`);
    return delta;
  }
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory())
    throw new ConfigError(`delta: ${folder} is not a folder`);
  try {
    recoverCommit(folder); // finish a write that was interrupted after it was complete
  } catch {
    // read-only or raced: the view below reads the committed files where they are
  }
  const names = new Set(committedNames(folder));
  const at = (name: string) => committedPath(folder, name) ?? path.join(folder, name);
  let file: string;
  if (names.has(DELTA_WEIGHTS)) file = at(DELTA_WEIGHTS);
  else if (names.has("pytorch_custom_diffusion_weights.bin")) file = at("pytorch_custom_diffusion_weights.bin");
  else throw new ConfigError(`delta: ${folder} has no ${DELTA_WEIGHTS}`);
  let unet = new Map<string, HostTensor>();
  let metadata: Record<string, string> = {};
  let format: string | undefined;
  if (isPytorchFile(file)) {
    // the diffusers example's .bin: weights in PyTorch's zip format, no metadata
    const d = readTorchDelta(file);
    if (d.unet.size === 0) throw new FormatError(`delta: ${file} holds no UNet weights`);
    ({ unet, format } = d);
  } else {
    const st = readSafetensors(file);
    metadata = st.metadata;
    for (const [k, v] of st.tensors) unet.set(fromDeltaKey(k), v);
  }
  let listed: string[] = [];
  if (metadata.modifier_tokens) {
    try {
      listed = JSON.parse(metadata.modifier_tokens) as string[];
    } catch {
      /* checked below */
    }
    if (!Array.isArray(listed) || !listed.every((t) => typeof t === "string"))
      throw new FormatError(`delta: ${file}: metadata modifier_tokens is not a JSON list of strings`);
  }
  const found = [...names]
    .filter((f) => /^<.+>\.(safetensors|bin)$/.test(f))
    .map((f) => f.replace(/\.(safetensors|bin)$/, ""));
  const order = [...listed, ...[...new Set(found)].filter((t) => !listed.includes(t)).sort(tokenOrder)];
  const tokens = new Map<string, Float32Array>();
  for (const tok of order) {
    const f = names.has(`${tok}.safetensors`)
      ? at(`${tok}.safetensors`)
      : names.has(`${tok}.bin`)
        ? at(`${tok}.bin`)
        : null;
    if (!f)
      throw new ConfigError(
        `delta: token ${tok} is listed but ${path.join(folder, `${tok}.safetensors`)} does not exist`,
      );
    tokens.set(tok, readTokenRow(f, tok));
  }
  const fm = (metadata.freeze_model ?? freezeModelOf(unet.keys())) as FreezeModel;
  const delta: Delta = {
    unet,
    tokens,
    freezeModel: fm,
    baseFingerprint: metadata.base_fingerprint ?? "",
    ...(format ? { format } : {}),
  };
  assertFiniteDelta(delta, `delta ${folder}`);
  return delta;
}

function tokenOrder(a: string, b: string): number {
  const na = /(\d+)>$/.exec(a),
    nb = /(\d+)>$/.exec(b);
  return na && nb ? Number(na[1]) - Number(nb[1]) : a.localeCompare(b);
}

/**
 * Copies a delta's UNet values into `unet` (the tensors keep their identity). Unknown keys and
 * mismatched shapes are errors naming the key; a fingerprint that differs from the base's is an
 * error unless `force`. A delta without a fingerprint (written by diffusers or the authors' code)
 * can only be checked by key and shape: `warn` (default console.warn) says so.
 */
export function applyDeltaToUNet(
  unet: Module,
  delta: Delta,
  opts: { force?: boolean; fingerprint?: string; warn?: (message: string) => void } = {},
): number {
  if (!delta.baseFingerprint) {
    (opts.warn ?? console.warn)(
      `delta${delta.format ? ` (${delta.format})` : ""}: it carries no base-model fingerprint, so only its keys and shapes were checked against this UNet; if it was trained on another base model of the same shape, the result is wrong without an error`,
    );
  } else if (!opts.force) {
    const fp = opts.fingerprint ?? baseFingerprint(unet);
    if (fp !== delta.baseFingerprint) {
      throw new ConfigError(
        `delta: trained on a different base model (fingerprint ${delta.baseFingerprint}, this model ${fp}); pass force to apply anyway`,
      );
    }
  }
  const sd = unet.stateDict();
  for (const [k, v] of delta.unet) {
    const p = sd.get(k);
    if (!p) throw new StateDictError(`delta: ${toDeltaKey(k)} names ${k}, which the model does not have`);
    if (p.shape.join() !== v.shape.join())
      throw new StateDictError(`delta: ${k} expected [${p.shape}], got [${v.shape}]`);
  }
  for (const [k, v] of delta.unet) {
    (sd.get(k) as Tensor).copy_(v.data);
  }
  return delta.unet.size;
}

// ---------------------------------------------------------------------------------------------
// several deltas over one base (merge, stack)

/** Checks that deltas come from `unet` (fingerprints where recorded, keys and shapes always). */
export function checkSameBase(unet: Module, deltas: readonly Delta[], what: string): string {
  const fp = baseFingerprint(unet);
  const sd = unet.stateDict();
  deltas.forEach((dl, i) => {
    if (dl.baseFingerprint && dl.baseFingerprint !== fp) {
      throw new ConfigError(
        `${what}: delta ${i + 1} was trained on a different base model (fingerprint ${dl.baseFingerprint}, this base ${fp})`,
      );
    }
    for (const [k, v] of dl.unet) {
      const p = sd.get(k);
      if (!p) throw new StateDictError(`${what}: delta ${i + 1} has ${k}, which the base model does not have`);
      if (p.shape.join() !== v.shape.join())
        throw new StateDictError(
          `${what}: delta ${i + 1} ${k} is [${v.shape}], the base [${p.shape}] (a different base model)`,
        );
    }
  });
  const fps = new Set(deltas.map((d) => d.baseFingerprint).filter(Boolean));
  if (fps.size > 1)
    throw new ConfigError(`${what}: the deltas come from different base models (${[...fps].join(", ")})`);
  return fp;
}

/** Merged tokens `<new1>..<newN>` over all deltas' tokens in input order. */
export function renumberTokens(deltas: readonly Delta[]): {
  tokens: Map<string, Float32Array>;
  tokenMap: Map<string, string>[];
} {
  const total = deltas.reduce((s, d) => s + d.tokens.size, 0);
  const names = defaultModifierTokens(total);
  const tokens = new Map<string, Float32Array>();
  const tokenMap: Map<string, string>[] = [];
  let k = 0;
  for (const d of deltas) {
    const m = new Map<string, string>();
    for (const [t, row] of d.tokens) {
      const nt = names[k++]!;
      m.set(t, nt);
      tokens.set(nt, Float32Array.from(row));
    }
    tokenMap.push(m);
  }
  return { tokens, tokenMap };
}

/** Replaces a delta's tokens in a prompt by the merged ones (one pass, so <new1> -> <new2> -> ... cannot chain). */
export function rewritePrompt(prompt: string, map: Map<string, string>): string {
  if (map.size === 0) return prompt;
  const re = new RegExp(
    [...map.keys()]
      .sort((a, b) => b.length - a.length)
      .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join("|"),
    "g",
  );
  return prompt.replace(re, (t) => map.get(t) ?? t);
}
