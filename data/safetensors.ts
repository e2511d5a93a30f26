// safetensors reader and writer at the typed-array level: validates the header before any large
// allocation, reads F32/F16/BF16/F64 into Float32Array, writes F32 or F16 atomically.

import * as fs from "node:fs";
import { DTypeError, FormatError, ShapeError } from "../engine/errors.ts";
import type { HostTensor } from "../engine/host.ts";
import { roundHalfEven } from "../engine/numeric.ts";
import { writeAll, writeFileAtomic } from "./atomic.ts";

/** Every dtype name the safetensors format defines. */
export type SafeDType =
  | "F64" | "F32" | "F16" | "BF16"
  | "I64" | "I32" | "I16" | "I8"
  | "U64" | "U32" | "U16" | "U8"
  | "BOOL" | "F8_E4M3" | "F8_E5M2";

/** Bytes per element of each dtype the format defines. */
export const SAFE_DTYPE_SIZE: Readonly<Record<SafeDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
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
export type SafeTensorInput = HostTensor<Float32Array | Float64Array>;

/** Options of {@link writeSafetensors} and {@link serializeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Stored dtype, "F32" by default; "F16" rounds to nearest even. */
  dtype?: "F32" | "F16";
  /** Written as `__metadata__` (omitted when empty). */
  metadata?: Record<string, string>;
}

/** Largest header accepted, in bytes. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Most tensors a file may declare (Stable Diffusion's UNet has 686; large language-model shards a few thousand). */
export const MAX_TENSORS = 100_000;
/** Most elements one tensor may have: the longest typed array this runtime can allocate. */
const MAX_ELEMENTS = 2 ** 32 - 1;
/** Files larger than this are read tensor by tensor rather than in one buffer. */
const WHOLE_FILE_LIMIT = 1 << 30;
/** Largest single readSync request. */
const IO_CHUNK = 1 << 30;
/** Elements converted per chunk when writing. */
const ENCODE_CHUNK = 1 << 20;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// scalar conversions

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
const scratchView = new DataView(new ArrayBuffer(8));
/** POW2[k + 32] = 2^k exactly, for k in [-32, 32]. */
const POW2: number[] = [];
for (let k = -32; k <= 32; k++) {
  let p = 1;
  for (let i = 0; i < Math.abs(k); i++) p *= 2;
  POW2.push(k >= 0 ? p : 1 / p);
}

/**
 * Converts a number to IEEE-754 binary16 bits, rounding once to nearest even (also from a
 * float64 value, without double rounding). Handles subnormals, signed zero, overflow to
 * infinity (from 65520 up) and NaN (0x7E00).
 */
export function f32ToF16(x: number): number {
  if (x !== x) return 0x7e00;
  const sign = x < 0 || (x === 0 && 1 / x < 0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 6.103515625e-5) return sign | roundHalfEven(a * 16777216); // subnormal: units of 2^-24; 1024 carries into 0x0400
  scratchView.setFloat64(0, a);
  const e = ((scratchView.getUint32(0) >>> 20) & 0x7ff) - 1023;
  const m = roundHalfEven(a * POW2[10 - e + 32]!); // in [1024, 2048]; 2048 carries into the exponent
  return sign | (((e + 15) << 10) + (m - 1024));
}

/** Converts IEEE-754 binary16 bits (low 16 bits of `h`) to a number, exactly. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 5.960464477539063e-8; // m * 2^-24
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1024 + m) * POW2[e - 25 + 32]!; // (1024 + m) * 2^(e - 15 - 10)
}

/** Converts bfloat16 bits (low 16 bits of `h`) to a number, exactly. */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

let f16Table: Float32Array | undefined;
/** All 65536 binary16 values as float32, built on first use. */
function f16Lut(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16ToF32(h);
  }
  return f16Table;
}

// ---------------------------------------------------------------------------------------------
// header validation

function where(fileName: string | undefined): string {
  return fileName === undefined ? "safetensors: " : `safetensors: ${fileName}: `;
}

/** A short, bounded rendering of a JSON value for error messages. */
function show(v: unknown): string {
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

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isSafeDType(s: string): s is SafeDType {
  return Object.prototype.hasOwnProperty.call(SAFE_DTYPE_SIZE, s);
}

/**
 * Checks the 8-byte length prefix against the limits and the file size; returns the header length.
 * Throws FormatError for a short file or an absurd length.
 */
function checkHeaderLength(prefix: Uint8Array, fileName: string | undefined, fileSize: number): number {
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
      throw new FormatError(
        `${at}tensors "${pk}" [${p.begin}, ${p.end}] and "${ck}" [${c.begin}, ${c.end}] overlap`,
      );
    }
  }
  return { tensors, metadata, dataStart };
}

// ---------------------------------------------------------------------------------------------
// decoding

type FloatArray = Float32Array | Float64Array;
type FloatCtor<A extends FloatArray> = { new (n: number): A; readonly BYTES_PER_ELEMENT: number };

/** `src` as an aligned Uint8Array (a view when already aligned, else a copy). */
function aligned(src: Uint8Array, align: number): Uint8Array {
  return src.byteOffset % align === 0 ? src : src.slice();
}

/** Decodes little-endian `src` of `dtype` into `out` (whose length is the element count). */
function decodeInto(dtype: string, src: Uint8Array, out: FloatArray): void {
  const n = out.length;
  if (!LITTLE_ENDIAN_HOST) {
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let i = 0; i < n; i++) {
      out[i] =
        dtype === "F32" ? dv.getFloat32(4 * i, true)
        : dtype === "F64" ? dv.getFloat64(8 * i, true)
        : dtype === "F16" ? f16ToF32(dv.getUint16(2 * i, true))
        : bf16ToF32(dv.getUint16(2 * i, true));
    }
    return;
  }
  switch (dtype) {
    case "F32": {
      const a = aligned(src, 4);
      out.set(new Float32Array(a.buffer, a.byteOffset, n));
      return;
    }
    case "F64": {
      const a = aligned(src, 8);
      out.set(new Float64Array(a.buffer, a.byteOffset, n));
      return;
    }
    case "F16": {
      const a = aligned(src, 2);
      const u16 = new Uint16Array(a.buffer, a.byteOffset, n);
      const lut = f16Lut();
      for (let i = 0; i < n; i++) out[i] = lut[u16[i]!]!;
      return;
    }
    case "BF16": {
      const a = aligned(src, 2);
      const u16 = new Uint16Array(a.buffer, a.byteOffset, n);
      if (out instanceof Float32Array) {
        const u32 = new Uint32Array(out.buffer, out.byteOffset, n);
        for (let i = 0; i < n; i++) u32[i] = u16[i]! << 16;
      } else {
        for (let i = 0; i < n; i++) out[i] = bf16ToF32(u16[i]!);
      }
      return;
    }
    default:
      throw new DTypeError(`safetensors: cannot decode dtype ${dtype}`);
  }
}

function checkReadable(entries: Iterable<[string, SafeTensorEntry]>, fileName: string | undefined): void {
  for (const [key, e] of entries) {
    if (!(READABLE_DTYPES as readonly string[]).includes(e.dtype)) {
      throw new DTypeError(
        `${where(fileName)}tensor "${key}" has dtype ${e.dtype}, which cannot be read (supported: ${READABLE_DTYPES.join(", ")})`,
      );
    }
  }
}

/** The entries to read, in order: all of them, or the requested keys (each must exist). */
function select(header: SafeTensorsHeader, keys: readonly string[] | undefined, fileName: string | undefined): [string, SafeTensorEntry][] {
  if (keys === undefined) return [...header.tensors];
  return keys.map((k) => {
    const e = header.tensors.get(k);
    if (!e) throw new FormatError(`${where(fileName)}no tensor "${k}" among ${header.tensors.size} tensors`);
    return [k, e] as [string, SafeTensorEntry];
  });
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/** A typed array for tensor `key`, or a FormatError naming the file and the size when it cannot be had. */
function allocate<A extends FloatArray>(Ctor: FloatCtor<A>, e: SafeTensorEntry, key: string, fileName: string | undefined): A {
  const n = elementCount(e.shape);
  const gb = ((n * Ctor.BYTES_PER_ELEMENT) / 1e9).toFixed(1);
  if (n > MAX_ELEMENTS) {
    throw new FormatError(`${where(fileName)}tensor "${key}" [${e.shape.join(", ")}] has ${n} elements (${gb} GB), more than one array can hold (${MAX_ELEMENTS})`);
  }
  try {
    return new Ctor(n);
  } catch (err) {
    throw new FormatError(`${where(fileName)}tensor "${key}" [${e.shape.join(", ")}] needs ${gb} GB, which could not be allocated (${(err as Error).message})`);
  }
}

/** Fills `dst` from the file at `position`; a short read is a FormatError. */
function readFully(fd: number, dst: Uint8Array, position: number, fileName: string): void {
  let done = 0;
  while (done < dst.length) {
    const got = fs.readSync(fd, dst, done, Math.min(IO_CHUNK, dst.length - done), position + done);
    if (got === 0) {
      throw new FormatError(`${where(fileName)}file ended after ${position + done} bytes while reading ${dst.length} bytes at ${position}`);
    }
    done += got;
  }
}

function readImpl<A extends FloatArray>(
  source: Uint8Array | string,
  opts: ReadSafetensorsOptions | undefined,
  Ctor: FloatCtor<A>,
): SafeTensorsFile<A> {
  const tensors = new Map<string, SafeTensorData<A>>();
  if (typeof source !== "string") {
    const header = parseSafetensorsHeader(source);
    const chosen = select(header, opts?.keys, undefined);
    checkReadable(chosen, undefined);
    for (const [key, e] of chosen) {
      const out = allocate(Ctor, e, key, undefined);
      decodeInto(e.dtype, source.subarray(header.dataStart + e.begin, header.dataStart + e.end), out);
      tensors.set(key, { shape: e.shape.slice(), data: out });
    }
    return { tensors, metadata: header.metadata };
  }

  const fileName = source;
  const fd = fs.openSync(fileName, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const header = readHeaderAt(fd, size, fileName);
    const chosen = select(header, opts?.keys, fileName);
    checkReadable(chosen, fileName);

    if (opts?.keys === undefined && size <= WHOLE_FILE_LIMIT) {
      const all = new Uint8Array(size - header.dataStart);
      readFully(fd, all, header.dataStart, fileName);
      for (const [key, e] of chosen) {
        const out = allocate(Ctor, e, key, fileName);
        decodeInto(e.dtype, all.subarray(e.begin, e.end), out);
        tensors.set(key, { shape: e.shape.slice(), data: out });
      }
    } else {
      for (const [key, e] of chosen) {
        const out = allocate(Ctor, e, key, fileName);
        const position = header.dataStart + e.begin;
        const direct = (e.dtype === "F32" && Ctor.BYTES_PER_ELEMENT === 4) || (e.dtype === "F64" && Ctor.BYTES_PER_ELEMENT === 8);
        if (LITTLE_ENDIAN_HOST && direct) {
          readFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position, fileName);
        } else {
          const raw = new Uint8Array(e.end - e.begin);
          readFully(fd, raw, position, fileName);
          decodeInto(e.dtype, raw, out);
        }
        tensors.set(key, { shape: e.shape.slice(), data: out });
      }
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads a safetensors file (a path, or its bytes) into Float32Arrays. F32, F16, BF16 and F64 are
 * decoded; any other dtype among the tensors read is a DTypeError naming the dtype and the key.
 * With a path, the header is read and validated first; files over 1 GiB, or reads filtered by
 * `keys`, are read tensor by tensor. Throws FormatError for a malformed file.
 */
export function readSafetensors(bytesOrPath: Uint8Array | string, opts?: ReadSafetensorsOptions): SafeTensorsFile<Float32Array> {
  return readImpl(bytesOrPath, opts, Float32Array);
}

/** As {@link readSafetensors}, into Float64Arrays (F64 tensors are read exactly). */
export function readSafetensorsFloat64(bytesOrPath: Uint8Array | string, opts?: ReadSafetensorsOptions): SafeTensorsFile<Float64Array> {
  return readImpl(bytesOrPath, opts, Float64Array);
}

/** Reads and validates only the header of a safetensors file at `filePath`. */
export function readSafetensorsHeader(filePath: string): SafeTensorsHeader {
  const fd = fs.openSync(filePath, "r");
  try {
    return readHeaderAt(fd, fs.fstatSync(fd).size, filePath);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the length prefix and the JSON header from an open file of `size` bytes, and validates them. */
function readHeaderAt(fd: number, size: number, fileName: string): SafeTensorsHeader {
  const prefix = new Uint8Array(Math.min(8, size));
  readFully(fd, prefix, 0, fileName);
  const len = checkHeaderLength(prefix, fileName, size);
  const head = new Uint8Array(8 + len);
  head.set(prefix);
  readFully(fd, head.subarray(8), 8, fileName);
  return parseSafetensorsHeader(head, fileName, size);
}

// ---------------------------------------------------------------------------------------------
// writing

type TensorsInput = Map<string, SafeTensorInput> | Record<string, SafeTensorInput>;

interface WritePlan {
  head: Uint8Array;
  entries: [string, SafeTensorInput][];
  dtype: "F32" | "F16";
  total: number;
}

/** Validates the input and builds the 8-byte-aligned header (keys sorted, `__metadata__` first). */
function plan(tensors: TensorsInput, opts: WriteSafetensorsOptions | undefined, fileName: string | undefined): WritePlan {
  const at = where(fileName);
  const dtype = opts?.dtype ?? "F32";
  if (dtype !== "F32" && dtype !== "F16") throw new DTypeError(`${at}cannot write dtype ${show(dtype)}, only F32 or F16`);
  const size = SAFE_DTYPE_SIZE[dtype];
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors)).sort((a, b) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
  );
  const header: Record<string, unknown> = {};
  const metadata = opts?.metadata ?? {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new FormatError(`${at}__metadata__ value "${k}" is not a string, got ${show(v)}`);
  }
  if (Object.keys(metadata).length > 0) header["__metadata__"] = { ...metadata };
  let offset = 0;
  for (const [key, t] of entries) {
    if (key === "__metadata__") throw new FormatError(`${at}"__metadata__" is reserved and cannot name a tensor`);
    if (!t.shape.every(isCount)) throw new ShapeError(`${at}tensor "${key}" shape ${show(t.shape)} is not an array of non-negative integers`);
    const n = elementCount(t.shape);
    if (n !== t.data.length) {
      throw new ShapeError(`${at}tensor "${key}" shape ${show(t.shape)} needs ${n} values, got ${t.data.length}`);
    }
    Object.defineProperty(header, key, {
      value: { dtype, shape: [...t.shape], data_offsets: [offset, offset + n * size] },
      enumerable: true,
      writable: true,
      configurable: true,
    });
    offset += n * size;
  }
  let json = JSON.stringify(header);
  let bytes = new TextEncoder().encode(json);
  const pad = (8 - (bytes.length % 8)) % 8;
  if (pad > 0) {
    json += " ".repeat(pad);
    bytes = new TextEncoder().encode(json);
  }
  const head = new Uint8Array(8 + bytes.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(bytes.length), true);
  head.set(bytes, 8);
  return { head, entries, dtype, total: head.length + offset };
}

/** Yields the little-endian bytes of `data` as `dtype`, chunk by chunk. */
function* encode(data: Float32Array | Float64Array, dtype: "F32" | "F16"): Generator<Uint8Array> {
  if (dtype === "F32" && LITTLE_ENDIAN_HOST && data instanceof Float32Array) {
    yield new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return;
  }
  for (let start = 0; start < data.length; start += ENCODE_CHUNK) {
    const part = data.subarray(start, Math.min(data.length, start + ENCODE_CHUNK));
    if (dtype === "F32") {
      const f = new Float32Array(part);
      if (LITTLE_ENDIAN_HOST) {
        yield new Uint8Array(f.buffer);
      } else {
        const out = new Uint8Array(f.length * 4);
        const dv = new DataView(out.buffer);
        for (let i = 0; i < f.length; i++) dv.setFloat32(4 * i, f[i]!, true);
        yield out;
      }
    } else {
      const out = new Uint8Array(part.length * 2);
      if (LITTLE_ENDIAN_HOST) {
        const u16 = new Uint16Array(out.buffer);
        for (let i = 0; i < part.length; i++) u16[i] = f32ToF16(part[i]!);
      } else {
        const dv = new DataView(out.buffer);
        for (let i = 0; i < part.length; i++) dv.setUint16(2 * i, f32ToF16(part[i]!), true);
      }
      yield out;
    }
  }
}

/**
 * Serializes tensors to safetensors bytes: keys sorted, header padded with spaces to a multiple
 * of 8, data as F32 (default) or F16 (rounded to nearest even), `metadata` as `__metadata__`.
 * Throws ShapeError when a tensor's data length does not match its shape.
 */
export function serializeSafetensors(tensors: TensorsInput, opts?: WriteSafetensorsOptions): Uint8Array {
  const p = plan(tensors, opts, undefined);
  const out = new Uint8Array(p.total);
  out.set(p.head);
  let at = p.head.length;
  for (const [, t] of p.entries) {
    for (const chunk of encode(t.data, p.dtype)) {
      out.set(chunk, at);
      at += chunk.length;
    }
  }
  return out;
}

/**
 * Writes tensors to a safetensors file at `filePath` (format as {@link serializeSafetensors}).
 * The file is written to a temporary file in the same folder, flushed, and renamed over
 * `filePath`, so a failure never leaves a half-written file behind.
 */
export function writeSafetensors(filePath: string, tensors: TensorsInput, opts?: WriteSafetensorsOptions): void {
  writeFileAtomic(filePath, safetensorsWriter(tensors, opts, filePath));
}

/** The bytes writer of {@link writeSafetensors}, for a caller that commits several files as one unit. */
export function safetensorsWriter(tensors: TensorsInput, opts?: WriteSafetensorsOptions, fileName?: string): (fd: number) => void {
  const p = plan(tensors, opts, fileName);
  return (fd) => {
    writeAll(fd, p.head);
    for (const [, t] of p.entries) for (const chunk of encode(t.data, p.dtype)) writeAll(fd, chunk);
  };
}
