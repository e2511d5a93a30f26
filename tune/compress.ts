// Low-rank compression of a Custom Diffusion delta (the authors' `--compress`): per matrix dW = W - W0,
// SVD, keep the smallest rank whose singular-value share reaches the ratio; store u = U_k S_k, v = V_k^T
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, FormatError, StateDictError } from "../engine/errors.ts";
import * as la from "../engine/linalg.ts";
import { readSafetensors, safetensorsWriter } from "../data/safetensors.ts";
import type { FileContent } from "../data/atomic.ts";
import { committedNames, committedPath } from "../data/atomic.ts";
import type { Module } from "../models/nn/module.ts";
import type { Delta, HostTensor } from "./delta.ts";
import { assertFiniteDelta, baseFingerprint, commitDeltaFiles, loadDelta, tokenFiles } from "./delta.ts";
import { sniffTorchFile } from "../data/torch_zip.ts";
import type { FreezeModel } from "./params.ts";

export const COMPRESSED_WEIGHTS = "compressed_custom_diffusion_weights.safetensors";

/** One compressed parameter: low-rank factors of its change, or (for 1-D tensors) the full value. */
export interface CompressedLayer {
  shape: number[];
  /** (out, k) = U_k S_k, null for a full value */
  u: HostTensor | null;
  /** (k, in) = V_k^T, where in = the product of the trailing dimensions */
  v: HostTensor | null;
  /** the replacement value of a tensor stored in full (biases) */
  full: HostTensor | null;
  rank: number;
  fullRank: number;
  /** ||dW - u v|| / ||dW|| (0 for a zero change) */
  error: number;
  /** bytes stored as float32 / bytes of the full matrix */
  bytes: number;
  fullBytes: number;
}

/** A compressed delta. */
export interface CompressedDelta {
  layers: Map<string, CompressedLayer>;
  tokens: Map<string, Float32Array>;
  freezeModel: FreezeModel;
  baseFingerprint: string;
  /** the share asked for, or null when a fixed rank was */
  ratio: number | null;
  fixedRank: number | null;
}

/** Options of {@link compressDelta}. */
export interface CompressOptions {
  /** keep the smallest rank whose cumulative singular-value share is >= ratio (default 0.6) */
  ratio?: number;
  /** a fixed rank instead (clipped to each matrix's full rank) */
  rank?: number;
  log?: (line: string) => void;
}

/** Smallest k >= 1 with sum(s[0..k)) >= ratio * sum(s) (s descending); the full length when none is (ratio 1 with rounding). */
export function rankForRatio(s: ArrayLike<number>, ratio: number): number {
  let total = 0;
  for (let i = 0; i < s.length; i++) total += s[i]!;
  if (total === 0) return 1;
  let acc = 0;
  for (let i = 0; i < s.length; i++) {
    acc += s[i]!;
    if (acc >= ratio * total) return i + 1;
  }
  return s.length;
}

/**
 * Compresses every matrix of `delta` against the base UNet: dW = W - W0 (tensors with more than two
 * dimensions are flattened to (out, rest)), SVD in float64, rank from `ratio` or `rank`.
 */
export function compressDelta(delta: Delta, baseUnet: Module, opts: CompressOptions = {}): CompressedDelta {
  const ratio = opts.ratio ?? 0.6;
  if (opts.rank === undefined && !(ratio > 0 && ratio <= 1))
    throw new ConfigError(`compress: ratio must be in (0, 1], got ${ratio}`);
  if (opts.rank !== undefined && !(Number.isInteger(opts.rank) && opts.rank >= 1))
    throw new ConfigError(`compress: rank must be an integer >= 1, got ${opts.rank}`);
  const fp = baseFingerprint(baseUnet);
  if (delta.baseFingerprint && delta.baseFingerprint !== fp)
    throw new ConfigError(
      `compress: the delta was trained on a different base model (fingerprint ${delta.baseFingerprint}, this base ${fp})`,
    );
  const sd = baseUnet.stateDict();
  const layers = new Map<string, CompressedLayer>();
  for (const [k, v] of delta.unet) {
    const p = sd.get(k);
    if (!p) throw new StateDictError(`compress: the delta has ${k}, which the base model does not have`);
    if (p.shape.join() !== v.shape.join())
      throw new StateDictError(`compress: ${k} is [${v.shape}] in the delta, [${p.shape}] in the base`);
    const shape = [...v.shape];
    if (shape.length < 2) {
      layers.set(k, {
        shape,
        u: null,
        v: null,
        full: { shape, data: Float32Array.from(v.data) },
        rank: 0,
        fullRank: 0,
        error: 0,
        bytes: 4 * v.data.length,
        fullBytes: 4 * v.data.length,
      });
      continue;
    }
    const out = shape[0]!,
      inn = v.data.length / out;
    const w0 = p.data;
    const dw = la.mat(out, inn);
    for (let i = 0; i < dw.data.length; i++) dw.data[i] = v.data[i]! - w0[i]!;
    const full = Math.min(out, inn);
    const svd = la.svd(dw);
    const k0 = opts.rank !== undefined ? Math.min(opts.rank, full) : rankForRatio(svd.s, ratio);
    const u = new Float32Array(out * k0),
      vt = new Float32Array(k0 * inn);
    for (let i = 0; i < out; i++) for (let j = 0; j < k0; j++) u[i * k0 + j] = svd.u.data[i * full + j]! * svd.s[j]!;
    vt.set(svd.vt.data.subarray(0, k0 * inn));
    const rec = reconstructChange(u, vt, out, k0, inn);
    let num = 0,
      den = 0;
    for (let i = 0; i < rec.length; i++) {
      num += (dw.data[i]! - rec[i]!) ** 2;
      den += dw.data[i]! ** 2;
    }
    const error = den === 0 ? 0 : Math.sqrt(num / den);
    layers.set(k, {
      shape,
      u: { shape: [out, k0], data: u },
      v: { shape: [k0, inn], data: vt },
      full: null,
      rank: k0,
      fullRank: full,
      error,
      bytes: 4 * (u.length + vt.length),
      fullBytes: 4 * out * inn,
    });
  }
  const c: CompressedDelta = {
    layers,
    tokens: delta.tokens,
    freezeModel: delta.freezeModel,
    baseFingerprint: delta.baseFingerprint || fp,
    ratio: opts.rank === undefined ? ratio : null,
    fixedRank: opts.rank ?? null,
  };
  if (opts.log) for (const line of formatCompression(c)) opts.log(line);
  return c;
}

/** u v (float64 accumulation) as a flat (out x in) array. */
function reconstructChange(u: Float32Array, v: Float32Array, out: number, k: number, inn: number): Float64Array {
  const r = new Float64Array(out * inn);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < k; j++) {
      const a = u[i * k + j]!;
      if (a === 0) continue;
      const ro = i * inn,
        vo = j * inn;
      for (let q = 0; q < inn; q++) r[ro + q] += a * v[vo + q]!;
    }
  }
  return r;
}

/** Per-layer lines (rank, size, relative reconstruction error) and a total. */
export function formatCompression(c: CompressedDelta): string[] {
  const lines: string[] = [];
  let bytes = 0,
    fullBytes = 0;
  for (const [k, l] of c.layers) {
    bytes += l.bytes;
    fullBytes += l.fullBytes;
    lines.push(
      l.full
        ? `  ${k} [${l.shape}]: stored in full (${kib(l.bytes)})`
        : `  ${k} [${l.shape}]: rank ${l.rank}/${l.fullRank}, ${kib(l.bytes)} of ${kib(l.fullBytes)}, relative error ${l.error.toExponential(2)}`,
    );
  }
  lines.unshift(
    `compressed ${c.layers.size} tensors (${c.ratio !== null ? `singular-value share ${c.ratio}` : `rank ${c.fixedRank}`}): ${kib(bytes)} of ${kib(fullBytes)} (${((100 * bytes) / Math.max(fullBytes, 1)).toFixed(1)}%)`,
  );
  return lines;
}

const kib = (b: number): string =>
  b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`;

/** Writes `compressed_custom_diffusion_weights.safetensors` (keys `<UNet key>.u` / `.v`, or the key itself for full values) and one `<token>.safetensors` per token. */
export function saveCompressed(folder: string, c: CompressedDelta): void {
  const t = new Map<string, HostTensor>();
  const shapes: Record<string, number[]> = {};
  for (const [k, l] of c.layers) {
    shapes[k] = l.shape;
    if (l.full) t.set(k, l.full);
    else {
      t.set(`${k}.u`, l.u!);
      t.set(`${k}.v`, l.v!);
    }
  }
  assertFiniteDelta({ unet: t, tokens: c.tokens }, `compressed delta for ${folder}`);
  const files = new Map<string, FileContent>([
    [
      COMPRESSED_WEIGHTS,
      safetensorsWriter(
        t,
        {
          dtype: "F32",
          metadata: {
            format: "pt",
            base_fingerprint: c.baseFingerprint,
            freeze_model: c.freezeModel,
            ratio: c.ratio === null ? "" : String(c.ratio),
            rank: c.fixedRank === null ? "" : String(c.fixedRank),
            shapes: JSON.stringify(shapes),
            modifier_tokens: JSON.stringify([...c.tokens.keys()]),
          },
        },
        COMPRESSED_WEIGHTS,
      ),
    ],
    ...tokenFiles(c.tokens),
  ]);
  commitDeltaFiles(folder, files);
}

/** Whether a folder holds a compressed delta. */
export function isCompressed(folder: string): boolean {
  return (
    fs.existsSync(folder) && fs.statSync(folder).isDirectory() && committedPath(folder, COMPRESSED_WEIGHTS) !== null
  );
}

/**
 * Reads a compressed delta folder and rebuilds a normal Delta: W = W0 + u v for every factored key
 * (W0 from `baseUnet`, whose fingerprint must match unless `force`).
 */
export function loadCompressed(folder: string, baseUnet: Module, opts: { force?: boolean } = {}): Delta {
  const file = isCompressed(folder) ? committedPath(folder, COMPRESSED_WEIGHTS)! : null;
  if (!file) throw new ConfigError(`compress: ${folder} has no ${COMPRESSED_WEIGHTS}`);
  const { tensors, metadata } = readSafetensors(file);
  const fp = metadata.base_fingerprint ?? "";
  if (fp && !opts.force) {
    const own = baseFingerprint(baseUnet);
    if (own !== fp)
      throw new ConfigError(
        `compress: ${folder} was made against a different base model (fingerprint ${fp}, this model ${own}); pass force to load anyway`,
      );
  }
  let shapes: Record<string, number[]>, listed: string[];
  try {
    shapes = JSON.parse(metadata.shapes ?? "{}") as Record<string, number[]>;
    listed = JSON.parse(metadata.modifier_tokens ?? "[]") as string[];
  } catch (e) {
    throw new FormatError(`compress: ${file}: metadata is not valid JSON (${(e as Error).message})`);
  }
  const sd = baseUnet.stateDict();
  const unet = new Map<string, HostTensor>();
  for (const [name, t] of tensors) {
    const m = /^(.*)\.(u|v)$/.exec(name);
    if (!m) {
      unet.set(name, t);
      continue;
    }
    if (m[2] === "v") continue;
    const k = m[1]!;
    const v = tensors.get(`${k}.v`);
    if (!v) throw new FormatError(`compress: ${file} has ${k}.u but no ${k}.v`);
    const p = sd.get(k);
    if (!p) throw new ConfigError(`compress: ${file} has ${k}, which the base model does not have`);
    const [out, r] = t.shape as [number, number];
    const inn = v.shape[1]!;
    if (v.shape[0] !== r || out * inn !== p.data.length || p.shape[0] !== out)
      throw new FormatError(`compress: ${k}.u [${t.shape}] and .v [${v.shape}] do not fit the base [${p.shape}]`);
    const dw = reconstructChange(t.data, v.data, out, r, inn);
    const w0 = p.data;
    unet.set(k, { shape: shapes[k] ?? [...p.shape], data: Float32Array.from(dw, (x, i) => w0[i]! + x) });
  }
  const tokens = new Map<string, Float32Array>();
  const names = new Set(committedNames(folder));
  for (const tok of listed) {
    const f = names.has(`${tok}.safetensors`) ? committedPath(folder, `${tok}.safetensors`) : null;
    if (!f)
      throw new ConfigError(
        `compress: token ${tok} is listed but ${path.join(folder, `${tok}.safetensors`)} does not exist`,
      );
    if (sniffTorchFile(f)) throw new FormatError(`compress: ${f} is a pickle, which is unsafe to read`);
    const row = readSafetensors(f).tensors.get(tok);
    if (!row) throw new FormatError(`compress: ${f} must hold a vector named "${tok}"`);
    tokens.set(tok, row.data);
  }
  assertFiniteDelta({ unet, tokens }, `compressed delta ${folder}`);
  return { unet, tokens, freezeModel: (metadata.freeze_model || "crossattn_kv") as FreezeModel, baseFingerprint: fp };
}

/** A delta folder, full or compressed (a compressed one is rebuilt against `baseUnet`, see {@link loadCompressed}). */
export function loadAnyDelta(folder: string, baseUnet: Module, opts: { force?: boolean } = {}): Delta {
  return isCompressed(folder) ? loadCompressed(folder, baseUnet, opts) : loadDelta(folder);
}
