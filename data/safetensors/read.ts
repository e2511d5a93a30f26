// Reading safetensors: F32/F16/BF16/F64 decoded into Float32Array or Float64Array, from bytes or a file.
import * as fs from "node:fs";
import { DTypeError, FormatError } from "../../engine/errors.ts";
import {
  IO_CHUNK,
  LITTLE_ENDIAN_HOST,
  MAX_ELEMENTS,
  READABLE_DTYPES,
  WHOLE_FILE_LIMIT,
  checkHeaderLength,
  parseSafetensorsHeader,
  where,
} from "./format.ts";
import type {
  ReadSafetensorsOptions,
  SafeDType,
  SafeTensorData,
  SafeTensorEntry,
  SafeTensorsFile,
  SafeTensorsHeader,
} from "./format.ts";
import { bf16ToF32, f16Lut, f16ToF32 } from "../half.ts";

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
        dtype === "F32"
          ? dv.getFloat32(4 * i, true)
          : dtype === "F64"
            ? dv.getFloat64(8 * i, true)
            : dtype === "F16"
              ? f16ToF32(dv.getUint16(2 * i, true))
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
function select(
  header: SafeTensorsHeader,
  keys: readonly string[] | undefined,
  fileName: string | undefined,
): [string, SafeTensorEntry][] {
  if (keys === undefined) return [...header.tensors];
  return keys.map((k) => {
    const e = header.tensors.get(k);
    if (!e) throw new FormatError(`${where(fileName)}no tensor "${k}" among ${header.tensors.size} tensors`);
    return [k, e] as [string, SafeTensorEntry];
  });
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

/** A typed array for tensor `key`, or a FormatError naming the file and the size when it cannot be had. */
function allocate<A extends FloatArray>(
  Ctor: FloatCtor<A>,
  e: SafeTensorEntry,
  key: string,
  fileName: string | undefined,
): A {
  const n = elementCount(e.shape);
  const gb = ((n * Ctor.BYTES_PER_ELEMENT) / 1e9).toFixed(1);
  if (n > MAX_ELEMENTS) {
    throw new FormatError(
      `${where(fileName)}tensor "${key}" [${e.shape.join(", ")}] has ${n} elements (${gb} GB), more than one array can hold (${MAX_ELEMENTS})`,
    );
  }
  try {
    return new Ctor(n);
  } catch (err) {
    throw new FormatError(
      `${where(fileName)}tensor "${key}" [${e.shape.join(", ")}] needs ${gb} GB, which could not be allocated (${(err as Error).message})`,
    );
  }
}

/** Fills `dst` from the file at `position`; a short read is a FormatError. */
function readFully(fd: number, dst: Uint8Array, position: number, fileName: string): void {
  let done = 0;
  while (done < dst.length) {
    const got = fs.readSync(fd, dst, done, Math.min(IO_CHUNK, dst.length - done), position + done);
    if (got === 0) {
      throw new FormatError(
        `${where(fileName)}file ended after ${position + done} bytes while reading ${dst.length} bytes at ${position}`,
      );
    }
    done += got;
  }
}

function readImpl<A extends FloatArray>(
  source: Uint8Array | string,
  opts: ReadSafetensorsOptions | undefined,
  Ctor: FloatCtor<A>,
  each?: (key: string, t: SafeTensorData<A>, stored: SafeDType) => void,
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

    if (opts?.keys === undefined && size <= WHOLE_FILE_LIMIT && !each) {
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
        const direct =
          (e.dtype === "F32" && Ctor.BYTES_PER_ELEMENT === 4) || (e.dtype === "F64" && Ctor.BYTES_PER_ELEMENT === 8);
        if (LITTLE_ENDIAN_HOST && direct) {
          readFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position, fileName);
        } else {
          const raw = new Uint8Array(e.end - e.begin);
          readFully(fd, raw, position, fileName);
          decodeInto(e.dtype, raw, out);
        }
        if (each) each(key, { shape: e.shape.slice(), data: out }, e.dtype as SafeDType);
        else tensors.set(key, { shape: e.shape.slice(), data: out });
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
export function readSafetensors(
  bytesOrPath: Uint8Array | string,
  opts?: ReadSafetensorsOptions,
): SafeTensorsFile<Float32Array> {
  return readImpl(bytesOrPath, opts, Float32Array);
}

/**
 * Reads the tensors of the file at `filePath` one at a time (in file order, or `opts.keys` order),
 * handing each to `each` with the dtype it was stored in and keeping none: memory holds one tensor
 * at a time. The header is validated first, as in {@link readSafetensors}.
 */
export function readSafetensorsEach(
  filePath: string,
  each: (key: string, t: SafeTensorData<Float32Array>, stored: SafeDType) => void,
  opts?: ReadSafetensorsOptions,
): Record<string, string> {
  return readImpl(filePath, opts, Float32Array, each).metadata;
}

/** As {@link readSafetensors}, into Float64Arrays (F64 tensors are read exactly). */
export function readSafetensorsFloat64(
  bytesOrPath: Uint8Array | string,
  opts?: ReadSafetensorsOptions,
): SafeTensorsFile<Float64Array> {
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
