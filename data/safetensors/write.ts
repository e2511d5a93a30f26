// Writing safetensors: F32, F16 or BF16 (per tensor where asked), keys sorted, header padded to 8 bytes; files written atomically.
import { DTypeError, FormatError, ShapeError } from "../../engine/errors.ts";
import { writeAll, writeFileAtomic } from "../atomic.ts";
import { ENCODE_CHUNK, LITTLE_ENDIAN_HOST, SAFE_DTYPE_SIZE, isCount, show, where } from "./format.ts";
import type { SafeTensorInput, WritableDType, WriteSafetensorsOptions } from "./format.ts";
import { toHalfBits } from "../../engine/half.ts";
import { f32ToF16 } from "../half.ts";
import { elementCount } from "./read.ts";

// ---------------------------------------------------------------------------------------------
// writing

type TensorsInput = Map<string, SafeTensorInput> | Record<string, SafeTensorInput>;

interface WritePlan {
  head: Uint8Array;
  entries: [string, SafeTensorInput, WritableDType][];
  total: number;
}

/** Validates the input and builds the 8-byte-aligned header (keys sorted, `__metadata__` first). */
function plan(
  tensors: TensorsInput,
  opts: WriteSafetensorsOptions | undefined,
  fileName: string | undefined,
): WritePlan {
  const at = where(fileName);
  const fileDType = opts?.dtype ?? "F32";
  const checkWritable = (d: string, key?: string): WritableDType => {
    if (d !== "F32" && d !== "F16" && d !== "BF16")
      throw new DTypeError(
        `${at}cannot write dtype ${show(d)}${key === undefined ? "" : ` (tensor "${key}")`}, only F32, F16 or BF16`,
      );
    return d;
  };
  checkWritable(fileDType);
  const entries = (tensors instanceof Map ? [...tensors] : Object.entries(tensors))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, t]): [string, SafeTensorInput, WritableDType] => [k, t, checkWritable(t.dtype ?? fileDType, k)]);
  const header: Record<string, unknown> = {};
  const metadata = opts?.metadata ?? {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new FormatError(`${at}__metadata__ value "${k}" is not a string, got ${show(v)}`);
  }
  if (Object.keys(metadata).length > 0) header["__metadata__"] = { ...metadata };
  let offset = 0;
  for (const [key, t, dtype] of entries) {
    const size = SAFE_DTYPE_SIZE[dtype];
    if (key === "__metadata__") throw new FormatError(`${at}"__metadata__" is reserved and cannot name a tensor`);
    if (!t.shape.every(isCount))
      throw new ShapeError(`${at}tensor "${key}" shape ${show(t.shape)} is not an array of non-negative integers`);
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
  return { head, entries, total: head.length + offset };
}

/** Yields the little-endian bytes of `data` as `dtype`, chunk by chunk. */
function* encode(data: Float32Array | Float64Array, dtype: WritableDType): Generator<Uint8Array> {
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
    } else if (dtype === "BF16") {
      const bits = toHalfBits(part, "bfloat16");
      if (LITTLE_ENDIAN_HOST) {
        yield new Uint8Array(bits.buffer);
      } else {
        const out = new Uint8Array(bits.length * 2);
        const dv = new DataView(out.buffer);
        for (let i = 0; i < bits.length; i++) dv.setUint16(2 * i, bits[i]!, true);
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
 * of 8, data as F32 (default), F16 or BF16 (rounded to nearest even; per tensor where its
 * `dtype` says), `metadata` as `__metadata__`.
 * Throws ShapeError when a tensor's data length does not match its shape.
 */
export function serializeSafetensors(tensors: TensorsInput, opts?: WriteSafetensorsOptions): Uint8Array {
  const p = plan(tensors, opts, undefined);
  const out = new Uint8Array(p.total);
  out.set(p.head);
  let at = p.head.length;
  for (const [, t, dtype] of p.entries) {
    for (const chunk of encode(t.data, dtype)) {
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
export function safetensorsWriter(
  tensors: TensorsInput,
  opts?: WriteSafetensorsOptions,
  fileName?: string,
): (fd: number) => void {
  const p = plan(tensors, opts, fileName);
  return (fd) => {
    writeAll(fd, p.head);
    for (const [, t, dtype] of p.entries) for (const chunk of encode(t.data, dtype)) writeAll(fd, chunk);
  };
}
