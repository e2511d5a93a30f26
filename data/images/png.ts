// PNG decoding: the chunk list walked and checked here (structure, CRCs, header limits), the pixels by fast-png.
import { crc32, inflateSync } from "node:zlib";
import { decode as fastPngDecode } from "fast-png";
import { checkLimits, errText, fail, hexHead } from "./image.ts";
import type { DecodeOptions, Image } from "./image.ts";

const PNG_SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const PNG_DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};
const ADAM7: Array<[number, number, number, number]> = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

function u32(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) >>> 0) + (b[p + 1]! << 16) + (b[p + 2]! << 8) + b[p + 3]!;
}

/** Size in bytes of the filtered (pre-inflate) PNG image data the header implies. */
function pngRawSize(w: number, h: number, spp: number, depth: number, interlace: number): number {
  const rowBytes = (pw: number): number => Math.ceil((pw * spp * depth) / 8);
  if (interlace === 0) return h * (1 + rowBytes(w));
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const pw = w > x0 ? Math.ceil((w - x0) / dx) : 0;
    const ph = h > y0 ? Math.ceil((h - y0) / dy) : 0;
    if (pw > 0 && ph > 0) total += ph * (1 + rowBytes(pw));
  }
  return total;
}

export function decodePngChecked(bytes: Uint8Array, name: string, opts: DecodeOptions): Image {
  // walk the chunk list ourselves first: structure, CRCs of critical chunks, header limits, completeness
  const n = bytes.length;
  let pos = 8;
  let ihdr: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let trns: { pos: number; body: Uint8Array } | undefined;
  let sawEnd = false;
  while (!sawEnd) {
    if (pos + 12 > n)
      fail(
        name,
        `truncated PNG: file ends at byte ${n} inside chunk header at byte ${pos}${ihdr ? " (no IEND chunk)" : ""}`,
      );
    const len = u32(bytes, pos);
    const type = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!, bytes[pos + 6]!, bytes[pos + 7]!);
    if (!/^[A-Za-z]{4}$/.test(type))
      fail(name, `corrupt PNG: invalid chunk type at byte ${pos} (bytes ${hexHead(bytes.subarray(pos + 4))})`);
    if (len > 0x7fffffff) fail(name, `corrupt PNG: chunk ${type} at byte ${pos} declares length ${len}`);
    if (pos + 12 + len > n)
      fail(name, `truncated PNG: chunk ${type} at byte ${pos} needs ${len + 12} bytes, only ${n - pos} remain`);
    const body = bytes.subarray(pos + 8, pos + 8 + len);
    const critical = type.charCodeAt(0) < 97;
    if (critical && crc32(bytes.subarray(pos + 4, pos + 8 + len)) >>> 0 !== u32(bytes, pos + 8 + len)) {
      fail(name, `corrupt PNG: CRC mismatch in chunk ${type} at byte ${pos}`);
    }
    if (ihdr === undefined) {
      if (type !== "IHDR" || len !== 13)
        fail(name, `corrupt PNG: first chunk must be a 13-byte IHDR, got ${type} of ${len} bytes`);
      ihdr = body;
      const width = u32(body, 0);
      const height = u32(body, 4);
      checkLimits(name, "PNG", width, height, opts);
    } else if (type === "IDAT") {
      idat.push(body);
    } else if (type === "tRNS") {
      trns = { pos, body };
    } else if (type === "IEND") {
      sawEnd = true;
    }
    pos += 12 + len;
  }
  if (ihdr === undefined) fail(name, "corrupt PNG: no IHDR chunk");
  const width = u32(ihdr, 0);
  const height = u32(ihdr, 4);
  const depth = ihdr[8]!;
  const colorType = ihdr[9]!;
  const interlace = ihdr[12]!;
  const spp = PNG_SAMPLES[colorType];
  if (spp === undefined) fail(name, `corrupt PNG: unknown colour type ${colorType}`);
  if (!PNG_DEPTHS[colorType]!.includes(depth))
    fail(name, `corrupt PNG: bit depth ${depth} is not valid for colour type ${colorType}`);
  if (ihdr[10] !== 0 || ihdr[11] !== 0)
    fail(name, `corrupt PNG: unknown compression/filter method ${ihdr[10]}/${ihdr[11]}`);
  if (interlace > 1) fail(name, `corrupt PNG: unknown interlace method ${interlace}`);
  if (idat.length === 0) fail(name, "corrupt PNG: no IDAT chunk (no image data)");

  // bounded inflate: guards against decompression bombs and detects truncated or short image data
  const expected = pngRawSize(width, height, spp, depth, interlace);
  let inflatedBytes: number;
  try {
    // only the length is kept, so this copy can go before the decoder makes its own
    inflatedBytes = inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 65536 }).length;
  } catch (e) {
    if ((e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      fail(name, `corrupt PNG: image data inflates past the ${expected} bytes its ${width}x${height} header implies`);
    }
    fail(name, `truncated or corrupt PNG image data (zlib: ${errText(e)})`);
  }
  if (inflatedBytes < expected) {
    fail(name, `truncated PNG image data: ${inflatedBytes} of ${expected} bytes`);
  }

  // colour-key transparency of gray/RGB images is read here; the chunk is hidden from the decoder,
  // which rejects keys longer than the pixel count of tiny images
  let key: number[] | undefined;
  let input = bytes;
  if (trns !== undefined && (colorType === 0 || colorType === 2)) {
    if (trns.body.length === spp * 2)
      key = Array.from({ length: spp }, (_, c) => (trns.body[2 * c]! << 8) | trns.body[2 * c + 1]!);
    input = Uint8Array.from(bytes);
    input[trns.pos + 4] = 0x78; // "xRNS": an unknown ancillary chunk, skipped
  }
  let png: ReturnType<typeof fastPngDecode>;
  try {
    png = fastPngDecode(input);
  } catch (e) {
    fail(name, `corrupt PNG (${errText(e)})`);
  }
  if (png.width !== width || png.height !== height || png.depth !== depth || png.channels !== spp) {
    fail(name, `corrupt PNG: decoder disagrees with IHDR (${png.width}x${png.height}x${png.channels}@${png.depth})`);
  }

  // unpack samples to one array entry per sample
  const count = width * height * spp;
  let samples: Uint8Array | Uint16Array;
  if (depth >= 8) {
    if (png.data.length !== count) fail(name, `corrupt PNG: decoded ${png.data.length} samples, expected ${count}`);
    samples = png.data as Uint8Array | Uint16Array;
  } else {
    const rowBytes = Math.ceil((width * spp * depth) / 8);
    if (png.data.length !== rowBytes * height)
      fail(name, `corrupt PNG: decoded ${png.data.length} bytes, expected ${rowBytes * height}`);
    samples = new Uint8Array(count);
    const perByte = 8 / depth;
    const mask = (1 << depth) - 1;
    const rowSamples = width * spp;
    for (let y = 0; y < height; y++) {
      const row = y * rowBytes;
      for (let i = 0; i < rowSamples; i++) {
        const byte = png.data[row + Math.floor(i / perByte)]!;
        const shift = 8 - depth * ((i % perByte) + 1);
        samples[y * rowSamples + i] = (byte >> shift) & mask;
      }
    }
  }
  const maxVal = (1 << depth) - 1;
  const pixels = width * height;

  if (colorType === 3) {
    const palette = png.palette;
    if (!palette || palette.length === 0) fail(name, "corrupt PNG: palette image without a PLTE chunk");
    const ch = palette.some((p) => p.length === 4) ? 4 : 3;
    const data = new Float32Array(pixels * ch);
    for (let i = 0; i < pixels; i++) {
      const idx = samples[i]!;
      const entry = palette[idx];
      if (entry === undefined)
        fail(name, `corrupt PNG: palette index ${idx} out of range (palette has ${palette.length} entries)`);
      for (let c = 0; c < 3; c++) data[i * ch + c] = entry[c]! / 255;
      if (ch === 4) data[i * ch + 3] = (entry[3] ?? 255) / 255;
    }
    return { width, height, channels: ch, data };
  }
  if (colorType === 0 || colorType === 2) {
    const hasKey = key !== undefined;
    const ch = hasKey ? 4 : spp === 1 ? 1 : 3;
    const data = new Float32Array(pixels * ch);
    for (let i = 0; i < pixels; i++) {
      let transparent = hasKey;
      for (let c = 0; c < spp; c++) {
        const s = samples[i * spp + c]!;
        if (key !== undefined && s !== key[c]) transparent = false;
        data[i * ch + c] = s / maxVal;
      }
      if (hasKey) {
        if (spp === 1) data[i * ch + 1] = data[i * ch + 2] = data[i * ch]!;
        data[i * ch + 3] = transparent ? 0 : 1;
      }
    }
    return { width, height, channels: ch as 1 | 3 | 4, data };
  }
  // gray+alpha (4) and RGBA (6) both become RGBA
  const data = new Float32Array(pixels * 4);
  for (let i = 0; i < pixels; i++) {
    if (colorType === 4) {
      const g = samples[i * 2]! / maxVal;
      data[i * 4] = data[i * 4 + 1] = data[i * 4 + 2] = g;
      data[i * 4 + 3] = samples[i * 2 + 1]! / maxVal;
    } else {
      for (let c = 0; c < 4; c++) data[i * 4 + c] = samples[i * 4 + c]! / maxVal;
    }
  }
  return { width, height, channels: 4, data };
}
