// Deltas people already have, read from PyTorch files without executing them (data/torch_zip.ts):
// - diffusers: `pytorch_custom_diffusion_weights.bin` (`<layer>.attn2.processor.to_k_custom_diffusion.weight`
//   keys; `{}` entries of parameter-free processors mean "default attention") and `<new1>.bin`
//   ({"<new1>": row});
// - the authors' repository, diffusers variant: `delta.bin` = {"unet": {<UNet key>: W}, "modifier_token": {"<new1>": row}};
// - the authors' repository, CompVis variant: `delta.bin` / `delta_epoch=*.ckpt` = {"state_dict":
//   {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": W, ..., "embed": rows}},
//   and its compressed form where a matrix is {"u": (out, r), "v": (r, in)} with W = W0 + u v.
import { ConfigError, FormatError } from "../engine/errors.ts";
import type { Module } from "../models/nn/module.ts";
import { readTorchZip, type PyValue, type TorchTensor } from "../data/torch_zip.ts";
import { fromDeltaKey, type Delta, type HostTensor } from "./delta.ts";
import type { FreezeModel } from "./params.ts";

/** Which layout a PyTorch delta file had. */
export type TorchDeltaFormat =
  | "diffusers attention processors"
  | "diffusers token embedding"
  | "custom-diffusion (diffusers layout)"
  | "custom-diffusion (CompVis layout)"
  | "custom-diffusion (CompVis layout, compressed)";

export interface TorchDeltaOptions {
  /** the base UNet the delta was trained from: needed to expand a compressed delta (W = W0 + u v) */
  base?: Module;
  /** names for the rows of a CompVis `embed` tensor (default <new1>, <new2>, ...) */
  tokenNames?: readonly string[];
  /** layers per block of the UNet, for CompVis block numbering (2 in Stable Diffusion 1.x) */
  layersPerBlock?: number;
}

/** A delta read from a PyTorch file; `tokens` may be empty (the token file is separate in diffusers). */
export interface TorchDelta {
  format: TorchDeltaFormat;
  unet: Map<string, HostTensor>;
  tokens: Map<string, Float32Array>;
}

const isTensor = (v: PyValue | undefined): v is TorchTensor =>
  !!v && typeof v === "object" && "kind" in v && (v as TorchTensor).kind === "tensor";
const isDict = (v: PyValue | undefined): v is Map<PyValue, PyValue> => v instanceof Map;
const f32 = (t: TorchTensor): Float32Array => (t.data instanceof Float32Array ? t.data : Float32Array.from(t.data));
const host = (t: TorchTensor): HostTensor => ({ shape: [...t.shape], data: f32(t) });

/**
 * A CompVis (ldm) UNet key, `model.diffusion_model.` prefix optional, to the diffusers key, for the
 * cross-attention transformer blocks; null for other keys. Blocks are numbered as ldm numbers them:
 * input block i >= 1 is down block (i-1) / (L+1), layer (i-1) % (L+1); output block i is up block
 * i / (L+1), layer i % (L+1); middle_block.1 is the mid block's attention (L = layers per block).
 */
export function compvisToDiffusersKey(key: string, layersPerBlock = 2): string | null {
  const k = key.replace(/^model\.diffusion_model\./, "");
  const per = layersPerBlock + 1;
  let m = /^input_blocks\.(\d+)\.1\.(transformer_blocks\..+)$/.exec(k);
  if (m) {
    const i = Number(m[1]) - 1;
    if (i < 0 || i % per === layersPerBlock) return null;
    return `down_blocks.${Math.floor(i / per)}.attentions.${i % per}.${m[2]}`;
  }
  m = /^output_blocks\.(\d+)\.1\.(transformer_blocks\..+)$/.exec(k);
  if (m) {
    const i = Number(m[1]);
    return `up_blocks.${Math.floor(i / per)}.attentions.${i % per}.${m[2]}`;
  }
  m = /^middle_block\.1\.(transformer_blocks\..+)$/.exec(k);
  if (m) return `mid_block.attentions.0.${m[1]}`;
  return null;
}

/** Inverse of {@link compvisToDiffusersKey} (with the `model.diffusion_model.` prefix), for writing that layout. */
export function diffusersToCompvisKey(key: string, layersPerBlock = 2): string | null {
  const per = layersPerBlock + 1;
  let m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(transformer_blocks\..+)$/.exec(key);
  if (m) return `model.diffusion_model.input_blocks.${Number(m[1]) * per + Number(m[2]) + 1}.1.${m[3]}`;
  m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(transformer_blocks\..+)$/.exec(key);
  if (m) return `model.diffusion_model.output_blocks.${Number(m[1]) * per + Number(m[2])}.1.${m[3]}`;
  m = /^mid_block\.attentions\.0\.(transformer_blocks\..+)$/.exec(key);
  if (m) return `model.diffusion_model.middle_block.1.${m[1]}`;
  return null;
}

/** The delta's freeze mode from the keys it replaces. */
export function freezeModelOf(keys: Iterable<string>): FreezeModel {
  let mode: FreezeModel = "crossattn_kv";
  for (const k of keys) {
    if (!/\.attn2\./.test(k)) return "full";
    if (/\.attn2\.(to_q|to_out)/.test(k)) mode = "crossattn";
  }
  return mode;
}

/**
 * Reads a Custom Diffusion delta (or a token-embedding file) from a PyTorch `.bin` / `.ckpt` file,
 * recognising the layout by its keys. Never executes the pickle.
 */
export function readTorchDelta(file: string, opts: TorchDeltaOptions = {}): TorchDelta {
  const root = readTorchZip(file);
  if (!isDict(root)) throw new FormatError(`${file}: expected a dict at the top of the checkpoint`);
  const keys = [...root.keys()];
  const str = (k: PyValue) => {
    if (typeof k !== "string") throw new FormatError(`${file}: a key is not a string (${String(k)})`);
    return k;
  };
  const tokensFrom = (d: Map<PyValue, PyValue>, where: string) => {
    const out = new Map<string, Float32Array>();
    for (const [k, v] of d) {
      if (!isTensor(v)) throw new FormatError(`${file}: ${where}${str(k)} is not a tensor`);
      // one row: (d) or (1, d)
      if (v.shape.length !== 1 && !(v.shape.length === 2 && v.shape[0] === 1))
        throw new FormatError(`${file}: token ${str(k)} has shape [${v.shape}], expected one row`);
      out.set(str(k), f32(v));
    }
    return out;
  };

  // the authors' diffusers variant
  if (root.has("unet") && isDict(root.get("unet"))) {
    const unet = new Map<string, HostTensor>();
    const compressed = new Map<string, Map<PyValue, PyValue>>();
    for (const [k, v] of root.get("unet") as Map<PyValue, PyValue>) {
      const key = str(k);
      if (isTensor(v)) unet.set(key, host(v));
      else if (isDict(v) && v.has("u")) compressed.set(key, v);
      else throw new FormatError(`${file}: unet.${key} is neither a tensor nor a compressed {u, v}`);
    }
    expand(file, compressed, unet, opts.base);
    const mt = root.get("modifier_token");
    return {
      format: "custom-diffusion (diffusers layout)",
      unet,
      tokens: isDict(mt) ? tokensFrom(mt, "modifier_token.") : new Map(),
    };
  }

  // the authors' CompVis variant
  if (root.has("state_dict") && isDict(root.get("state_dict"))) {
    const sd = root.get("state_dict") as Map<PyValue, PyValue>;
    const unet = new Map<string, HostTensor>();
    const compressed = new Map<string, Map<PyValue, PyValue>>();
    let tokens = new Map<string, Float32Array>();
    for (const [k, v] of sd) {
      const key = str(k);
      if (key === "embed") {
        if (!isTensor(v) || v.shape.length !== 2)
          throw new FormatError(`${file}: state_dict.embed must be a (tokens, width) tensor`);
        const [n, d] = v.shape as [number, number];
        const names = opts.tokenNames ?? Array.from({ length: n }, (_, i) => `<new${i + 1}>`);
        if (names.length !== n)
          throw new ConfigError(`${file}: embed has ${n} rows, ${names.length} token names given`);
        const rows = f32(v);
        tokens = new Map(names.map((t, i) => [t, rows.slice(i * d, (i + 1) * d)]));
        continue;
      }
      const name = compvisToDiffusersKey(key, opts.layersPerBlock);
      if (!name)
        throw new FormatError(
          `${file}: state_dict key ${key} is not a CompVis cross-attention weight this reader maps`,
        );
      if (isTensor(v)) unet.set(name, host(v));
      else if (isDict(v) && v.has("u")) compressed.set(name, v);
      else throw new FormatError(`${file}: state_dict.${key} is neither a tensor nor a compressed {u, v}`);
    }
    expand(file, compressed, unet, opts.base);
    return {
      format:
        compressed.size > 0 ? "custom-diffusion (CompVis layout, compressed)" : "custom-diffusion (CompVis layout)",
      unet,
      tokens,
    };
  }

  // diffusers: processor weights, or a token file
  const proc = keys.filter((k) => typeof k === "string" && /\.processor\./.test(k));
  if (proc.length > 0) {
    const unet = new Map<string, HostTensor>();
    for (const [k, v] of root) {
      const key = str(k);
      // a parameter-free processor (attn1) is saved as {}: default attention, nothing to load
      if (isDict(v) && v.size === 0) continue;
      if (!isTensor(v)) throw new FormatError(`${file}: ${key} is not a tensor`);
      const unetKey = fromDeltaKey(key);
      if (unetKey === key) throw new FormatError(`${file}: ${key} is not a Custom Diffusion processor weight`);
      unet.set(unetKey, host(v));
    }
    return { format: "diffusers attention processors", unet, tokens: new Map() };
  }
  if (keys.length > 0 && keys.every((k) => typeof k === "string" && /^<.+>$/.test(k))) {
    return { format: "diffusers token embedding", unet: new Map(), tokens: tokensFrom(root, "") };
  }
  throw new FormatError(
    `${file}: not a Custom Diffusion delta this reader knows (top-level keys: ${keys.slice(0, 6).map(String).join(", ")})`,
  );
}

/** W = W0 + u v for each compressed matrix (float64 sums, stored as float32). */
function expand(
  file: string,
  compressed: Map<string, Map<PyValue, PyValue>>,
  unet: Map<string, HostTensor>,
  base: Module | undefined,
): void {
  if (compressed.size === 0) return;
  if (!base) throw new ConfigError(`${file}: the delta is compressed (W = W0 + u v): pass the base model to expand it`);
  const sd = base.stateDict();
  for (const [key, uv] of compressed) {
    const u = uv.get("u"),
      v = uv.get("v"),
      w0 = sd.get(key);
    if (!isTensor(u) || !isTensor(v) || u.shape.length !== 2 || v.shape.length !== 2)
      throw new FormatError(`${file}: ${key} must hold 2-d tensors u and v`);
    if (!w0) throw new ConfigError(`${file}: ${key} is not a parameter of the base model`);
    const [out, r] = u.shape as [number, number];
    const [r2, inn] = v.shape as [number, number];
    if (r !== r2 || w0.shape.join() !== `${out},${inn}`)
      throw new FormatError(`${file}: ${key}: u [${u.shape}] v [${v.shape}] do not make the base's [${w0.shape}]`);
    const W = w0.data,
      U = u.data,
      V = v.data,
      data = new Float32Array(out * inn);
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < inn; j++) {
        let s = 0;
        for (let q = 0; q < r; q++) s += U[i * r + q]! * V[q * inn + j]!;
        data[i * inn + j] = W[i * inn + j]! + s;
      }
    }
    unet.set(key, { shape: [out, inn], data });
  }
}

/** A {@link Delta} from a PyTorch delta file (and optional separate token files), with its format named. */
export function deltaFromTorch(
  file: string,
  tokenFiles: readonly string[] = [],
  opts: TorchDeltaOptions = {},
): { delta: Delta; format: TorchDeltaFormat } {
  const d = readTorchDelta(file, opts);
  const tokens = new Map(d.tokens);
  for (const f of tokenFiles) {
    const t = readTorchDelta(f, opts);
    if (t.unet.size > 0) throw new FormatError(`${f}: expected a token file, found UNet weights`);
    for (const [k, v] of t.tokens) tokens.set(k, v);
  }
  if (d.unet.size === 0) throw new FormatError(`${file}: the delta holds no UNet weights`);
  return {
    delta: { unet: d.unet, tokens, freezeModel: freezeModelOf(d.unet.keys()), baseFingerprint: "", format: d.format },
    format: d.format,
  };
}
