// The safetensors format: dtypes, header types, limits, and the header's validation (before any large allocation).
import { FormatError } from "../../engine/errors.ts";
import type { HostTensor } from "../../engine/host.ts";

/** Every dtype name the safetensors format defines. */
export type SafeDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

/** Bytes per element of each dtype the format defines. */
export const SAFE_DTYPE_SIZE: Readonly<Record<SafeDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The dtypes this module can decode to floating point. */
export const READABLE_DTYPES: readonly SafeDType[] = ["F32", "F16", "BF16", "F64"];

/** One tensor of a parsed header; `begin`/`end` are byte offsets relative to the data section. */
export interface SafeTensorEntry {
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** A validated header: tensors in header order, `__metadata__`, and the absolute offset of the data section. */
export interface SafeTensorsHeader {
  tensors: Map<string, SafeTensorEntry>;
  metadata: Record<string, string>;
  dataStart: number;
}

/** A tensor as read from a file: a host tensor whose shape array is its own. */
export interface SafeTensorData<A extends ArrayLike<number>> extends HostTensor<A> {
  shape: number[];
}

/** Result of a read: tensors keyed by name, and the file's `__metadata__`. */
export interface SafeTensorsFile<A extends ArrayLike<number>> {
  tensors: Map<string, SafeTensorData<A>>;
  metadata: Record<string, string>;
}

/** Options of {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /** Read only these tensors (in this order); a key the file lacks is a FormatError. */
  keys?: readonly string[];
}

/** A tensor to write: a shape and `product(shape)` values. */
export type SafeTensorInput = HostTensor<Float32Array | Float64Array> & {
  /** Stored dtype of this tensor (default: the file's {@link WriteSafetensorsOptions.dtype}). */
  dtype?: WritableDType;
};

/** Dtypes a file can be written in: F32, or F16 / BF16 rounded to nearest even. */
export type WritableDType = "F32" | "F16" | "BF16";

/** Options of {@link writeSafetensors} and {@link serializeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Stored dtype, "F32" by default; "F16" and "BF16" round to nearest even. */
  dtype?: WritableDType;
  /** Written as `__metadata__` (omitted when empty). */
  metadata?: Record<string, string>;
}

/** Largest header accepted, in bytes. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Most tensors a file may declare (Stable Diffusion's UNet has 686; large language-model shards a few thousand). */
export const MAX_TENSORS = 100_000;
/** Most elements one tensor may have: the longest typed array this runtime can allocate. */
export const MAX_ELEMENTS = 2 ** 32 - 1;
/** Files larger than this are read tensor by tensor rather than in one buffer. */
export const WHOLE_FILE_LIMIT = 1 << 30;
/** Largest single readSync request. */
export const IO_CHUNK = 1 << 30;
/** Elements converted per chunk when writing. */
export const ENCODE_CHUNK = 1 << 20;

export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// header validation

export function where(fileName: string | undefined): string {
  return fileName === undefined ? "safetensors: " : `safetensors: ${fileName}: `;
}

/** A short, bounded rendering of a JSON value for error messages. */
export function show(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? "undefined" : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isSafeDType(s: string): s is SafeDType {
  return Object.prototype.hasOwnProperty.call(SAFE_DTYPE_SIZE, s);
}

/**
 * Checks the 8-byte length prefix against the limits and the file size; returns the header length.
 * Throws FormatError for a short file or an absurd length.
 */
export function checkHeaderLength(prefix: Uint8Array, fileName: string | undefined, fileSize: number): number {
  const at = where(fileName);
  if (fileSize < 8 || prefix.length < 8) {
    throw new FormatError(`${at}file is ${fileSize} bytes, shorter than the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(`${at}header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new FormatError(`${at}header length ${len} runs past the end of the ${fileSize}-byte file (truncated?)`);
  }
  return len;
}

const DATA_OFFSETS = new TextEncoder().encode('"data_offsets"');

/** Occurrences of `needle` in `hay` (first-byte scan, no allocation). */
function countOccurrences(hay: Uint8Array, needle: Uint8Array): number {
  let n = 0;
  const first = needle[0]!;
  outer: for (let i = hay.indexOf(first); i >= 0 && i + needle.length <= hay.length; i = hay.indexOf(first, i + 1)) {
    for (let k = 1; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    n++;
  }
  return n;
}

/**
 * Parses and validates a safetensors header. `bytes` must hold at least the length prefix and the
 * header (it may hold the whole file); `fileSize` is the size of the whole file, `bytes.length`
 * by default; `fileName` is named in error messages. Throws FormatError for every malformation
 * (short file, absurd header length, bad UTF-8 or JSON, bad fields or shapes, offsets outside the
 * data section, overlaps, byte counts that do not match the shape, non-string metadata).
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileName?: string, fileSize?: number): SafeTensorsHeader {
  const size = fileSize ?? bytes.length;
  const at = where(fileName);
  const len = checkHeaderLength(bytes, fileName, size);
  if (bytes.length < 8 + len) {
    throw new FormatError(`${at}header of ${len} bytes given only ${bytes.length - 8} bytes`);
  }
  // bound the work before parsing: every tensor entry names its "data_offsets"
  const declared = countOccurrences(bytes.subarray(8, 8 + len), DATA_OFFSETS);
  if (declared > MAX_TENSORS) {
    throw new FormatError(`${at}header declares ${declared} tensors, more than the limit of ${MAX_TENSORS}`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + len));
  } catch {
    throw new FormatError(`${at}header of ${len} bytes is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${at}header is not valid JSON (${(e as Error).message}): ${show(text.slice(0, 60))}`);
  }
  if (!isPlainObject(json)) throw new FormatError(`${at}header is not a JSON object, got ${show(json)}`);

  const dataStart = 8 + len;
  const dataSize = size - dataStart;
  const tensors = new Map<string, SafeTensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [key, raw] of Object.entries(json)) {
    if (key === "__metadata__") {
      if (!isPlainObject(raw)) throw new FormatError(`${at}__metadata__ is not an object, got ${show(raw)}`);
      for (const [mk, mv] of Object.entries(raw)) {
        if (typeof mv !== "string") {
          throw new FormatError(`${at}__metadata__ value "${mk}" is not a string, got ${show(mv)}`);
        }
      }
      metadata = Object.fromEntries(Object.entries(raw)) as Record<string, string>;
      continue;
    }
    const t = `${at}tensor "${key}"`;
    if (!isPlainObject(raw)) throw new FormatError(`${t} is not an object, got ${show(raw)}`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== "string") throw new FormatError(`${t} has no string dtype, got ${show(dtype)}`);
    if (!isSafeDType(dtype)) throw new FormatError(`${t} has unknown dtype ${show(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new FormatError(`${t} shape ${show(shape)} is not an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new FormatError(`${t} data_offsets ${show(offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new FormatError(`${t} offsets [${begin}, ${end}] end before they begin`);
    if (end > dataSize) {
      throw new FormatError(`${t} offsets [${begin}, ${end}] run past the ${dataSize}-byte data section (truncated?)`);
    }
    // exact while below 2^53; a larger product can never equal end - begin, which is below the file size
    const need = (shape as number[]).reduce((p, d) => p * d, 1) * SAFE_DTYPE_SIZE[dtype];
    if (need !== end - begin) {
      throw new FormatError(
        `${t} offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ${show(shape)} of ${dtype} needs ${need}`,
      );
    }
    tensors.set(key, { dtype, shape: (shape as number[]).slice(), begin, end });
  }

  const byBegin = [...tensors].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < byBegin.length; i++) {
    const [pk, p] = byBegin[i - 1]!;
    const [ck, c] = byBegin[i]!;
    if (c.begin < p.end) {
      throw new FormatError(`${at}tensors "${pk}" [${p.begin}, ${p.end}] and "${ck}" [${c.begin}, ${c.end}] overlap`);
    }
  }
  return { tensors, metadata, dataStart };
}
