// Browser stand-in for node:zlib: crc32, inflate/gunzip (fflate, which fast-png already brings), deflate.
import { gunzipSync as fgunzip, unzlibSync, zlibSync } from "fflate";
import { Buffer } from "./buffer.ts";

let table: Uint32Array | undefined;
export function crc32(data: Uint8Array | string, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  const b = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let c = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < b.length; i++) c = table[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
export function inflateSync(b: Uint8Array, opts?: { maxOutputLength?: number }): Buffer {
  const out = unzlibSync(b);
  if (opts?.maxOutputLength !== undefined && out.length > opts.maxOutputLength)
    throw new RangeError(`inflated data exceeds ${opts.maxOutputLength} bytes`);
  return Buffer.from(out);
}
export function deflateSync(b: Uint8Array, opts?: { level?: number }): Buffer {
  return Buffer.from(zlibSync(b, { level: (opts?.level ?? 6) as 6 }));
}
export function gunzipSync(b: Uint8Array): Buffer {
  return Buffer.from(fgunzip(b));
}
export default { crc32, inflateSync, deflateSync, gunzipSync };
