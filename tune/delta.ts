// Custom Diffusion deltas in the diffusers layout: pytorch_custom_diffusion_weights.safetensors with
// `<layer>.attn2.processor.to_k_custom_diffusion.weight` keys (full replacement matrices) and one
// `<token>.safetensors` per modifier token; plus the base model's fingerprint to refuse mismatches
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, FormatError, StateDictError } from "../engine/errors.ts";
import type { Tensor } from "../engine/index.ts";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import type { Module } from "../models/nn/module.ts";
import type { FreezeModel } from "./params.ts";

export const DELTA_WEIGHTS = "pytorch_custom_diffusion_weights.safetensors";

export interface HostTensor {
  shape: readonly number[];
  data: Float32Array;
}

/** A fine-tuned delta: replacement values for UNet parameters (by UNet key) and new token rows. */
export interface Delta {
  unet: Map<string, HostTensor>;
  /** modifier token -> embedding row, in token order (<new1>, <new2>, ...) */
  tokens: Map<string, Float32Array>;
  freezeModel: FreezeModel;
  /** fingerprint of the base UNet the delta was trained from ("" when unknown) */
  baseFingerprint: string;
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
export function extractDelta(unet: Module, keys: readonly string[], tokens: Map<string, Float32Array>, freezeModel: FreezeModel, fingerprint: string): Delta {
  const sd = unet.stateDict();
  const out = new Map<string, HostTensor>();
  for (const k of keys) {
    const p = sd.get(k);
    if (!p) throw new StateDictError(`delta: the model has no parameter ${k}`);
    out.set(k, { shape: [...p.shape], data: Float32Array.from(p.data) });
  }
  return { unet: out, tokens, freezeModel, baseFingerprint: fingerprint };
}

/** Writes a delta folder (atomic per file): the weights file and one `<token>.safetensors` per token. */
export function saveDelta(folder: string, delta: Delta, extraMetadata: Record<string, string> = {}): void {
  fs.mkdirSync(folder, { recursive: true });
  const weights = new Map<string, HostTensor>();
  for (const [k, v] of delta.unet) weights.set(toDeltaKey(k), v);
  const metadata = {
    format: "pt",
    freeze_model: delta.freezeModel,
    base_fingerprint: delta.baseFingerprint,
    modifier_tokens: JSON.stringify([...delta.tokens.keys()]),
    ...extraMetadata,
  };
  writeSafetensors(path.join(folder, DELTA_WEIGHTS), weights, { dtype: "F32", metadata });
  for (const [tok, row] of delta.tokens) {
    writeSafetensors(path.join(folder, `${tok}.safetensors`), new Map([[tok, { shape: [row.length], data: row }]]), { dtype: "F32", metadata: { format: "pt" } });
  }
}

/**
 * Reads a delta folder written by this project or by the diffusers example (`<token>.bin` files
 * written with safetensors are accepted; pickled files are refused, as they are unsafe to read).
 */
export function loadDelta(folder: string): Delta {
  const wf = path.join(folder, DELTA_WEIGHTS);
  if (!fs.existsSync(wf)) {
    const bin = path.join(folder, "pytorch_custom_diffusion_weights.bin");
    if (fs.existsSync(bin) && !isSafetensors(bin)) throw new FormatError(`delta: ${bin} is a pickle, which is unsafe to read; save the delta with safetensors`);
    if (!fs.existsSync(bin)) throw new ConfigError(`delta: ${folder} has no ${DELTA_WEIGHTS}`);
  }
  const file = fs.existsSync(wf) ? wf : path.join(folder, "pytorch_custom_diffusion_weights.bin");
  const { tensors, metadata } = readSafetensors(file);
  const unet = new Map<string, HostTensor>();
  for (const [k, v] of tensors) unet.set(fromDeltaKey(k), v);
  const listed: string[] = metadata.modifier_tokens ? (JSON.parse(metadata.modifier_tokens) as string[]) : [];
  const found = fs.readdirSync(folder)
    .filter((f) => /^<.+>\.(safetensors|bin)$/.test(f))
    .map((f) => f.replace(/\.(safetensors|bin)$/, ""));
  const order = [...listed, ...[...new Set(found)].filter((t) => !listed.includes(t)).sort(tokenOrder)];
  const tokens = new Map<string, Float32Array>();
  for (const tok of order) {
    const st = path.join(folder, `${tok}.safetensors`), bin = path.join(folder, `${tok}.bin`);
    const f = fs.existsSync(st) ? st : bin;
    if (!fs.existsSync(f)) throw new ConfigError(`delta: token ${tok} is listed but ${st} does not exist`);
    if (!isSafetensors(f)) throw new FormatError(`delta: ${f} is a pickle, which is unsafe to read; save it with safetensors`);
    const t = readSafetensors(f).tensors.get(tok);
    if (!t || t.shape.length !== 1) throw new FormatError(`delta: ${f} must hold one vector named "${tok}"`);
    tokens.set(tok, t.data);
  }
  const fm = (metadata.freeze_model ?? inferMode(unet)) as FreezeModel;
  return { unet, tokens, freezeModel: fm, baseFingerprint: metadata.base_fingerprint ?? "" };
}

function inferMode(unet: Map<string, HostTensor>): FreezeModel {
  const ks = [...unet.keys()];
  if (ks.some((k) => !/\.attn2\./.test(k))) return "full";
  return ks.some((k) => /\.attn2\.(to_q|to_out)/.test(k)) ? "crossattn" : "crossattn_kv";
}

function tokenOrder(a: string, b: string): number {
  const na = /(\d+)>$/.exec(a), nb = /(\d+)>$/.exec(b);
  return na && nb ? Number(na[1]) - Number(nb[1]) : a.localeCompare(b);
}

function isSafetensors(file: string): boolean {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(9);
    fs.readSync(fd, b, 0, 9, 0);
    const n = Number(b.readBigUInt64LE(0));
    return n > 1 && n < 100_000_000 && b[8] === 0x7b; // '{'
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Copies a delta's UNet values into `unet` (the tensors keep their identity). Unknown keys and
 * mismatched shapes are errors naming the key; a fingerprint that differs from the base's is an
 * error unless `force`.
 */
export function applyDeltaToUNet(unet: Module, delta: Delta, opts: { force?: boolean; fingerprint?: string } = {}): number {
  if (delta.baseFingerprint && !opts.force) {
    const fp = opts.fingerprint ?? baseFingerprint(unet);
    if (fp !== delta.baseFingerprint) {
      throw new ConfigError(`delta: trained on a different base model (fingerprint ${delta.baseFingerprint}, this model ${fp}); pass force to apply anyway`);
    }
  }
  const sd = unet.stateDict();
  for (const [k, v] of delta.unet) {
    const p = sd.get(k);
    if (!p) throw new StateDictError(`delta: ${toDeltaKey(k)} names ${k}, which the model does not have`);
    if (p.shape.join() !== v.shape.join()) throw new StateDictError(`delta: ${k} expected [${p.shape}], got [${v.shape}]`);
  }
  for (const [k, v] of delta.unet) {
    (sd.get(k) as Tensor).copy_(v.data);
  }
  return delta.unet.size;
}
