// Image I/O and preprocessing on a plain HWC float image: PNG/JPEG decoding with header checks
// against hostile files, PNG writing, alpha compositing, area/bilinear/nearest resizing, crops and grids.
import { readFileSync, statSync } from "node:fs";
import { crc32, inflateSync } from "node:zlib";
import { decode as fastPngDecode, encode as fastPngEncode } from "fast-png";
import jpeg from "jpeg-js";
import { FormatError, ShapeError } from "../engine/errors.ts";
import { writeFileAtomic } from "./atomic.ts";

/** A decoded image: row-major HWC samples in [0,1]; 1 = gray, 3 = RGB, 4 = RGBA (straight alpha). */
export interface Image {
  width: number;
  height: number;
  channels: 3 | 4 | 1;
  data: Float32Array;
}

/** Limits applied while decoding, checked against the file header before any pixel memory is allocated. */
export interface DecodeOptions {
  /** Largest accepted width in pixels (default 16384). */
  maxWidth?: number;
  /** Largest accepted height in pixels (default 16384). */
  maxHeight?: number;
  /**
   * Largest accepted width*height (default 25 megapixels: a 6000x4000 photo; training resizes every
   * image to a few hundred pixels, and decoding takes about 20 bytes a pixel).
   */
  maxPixels?: number;
  /** Memory cap handed to the JPEG decoder, in MiB (default: enough for maxPixels, at least 512). */
  maxMemoryMB?: number;
  /** Largest accepted file size for readImage, in bytes (default 512 MiB). */
  maxFileBytes?: number;
}

/** Resampling filter of {@link resize}. */
export type ResizeMode = "area" | "bilinear" | "nearest";

const DEFAULT_MAX_SIDE = 16384;
/** Default {@link DecodeOptions.maxPixels}. */
export const DEFAULT_MAX_PIXELS = 25_000_000;
const DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024;
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function fail(name: string, problem: string): never {
  throw new FormatError(`images: ${name}: ${problem}`);
}

function hexHead(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function checkImage(img: Image, op: string): void {
  if (img === null || typeof img !== "object") throw new ShapeError(`${op}: expected an Image, got ${String(img)}`);
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ShapeError(`${op}: image size must be positive integers, got ${width}x${height}`);
  }
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new ShapeError(`${op}: channels must be 1, 3 or 4, got ${String(channels)}`);
  }
  if (!(data instanceof Float32Array) || data.length !== width * height * channels) {
    throw new ShapeError(
      `${op}: data must be a Float32Array of ${width}*${height}*${channels} = ${width * height * channels} values, got ${data instanceof Float32Array ? data.length : typeof data}`,
    );
  }
}

function checkSize(op: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ShapeError(`${op}: target size must be positive integers, got ${width}x${height}`);
  }
}

function checkLimits(name: string, kind: string, width: number, height: number, opts: DecodeOptions): void {
  const maxW = opts.maxWidth ?? DEFAULT_MAX_SIDE;
  const maxH = opts.maxHeight ?? DEFAULT_MAX_SIDE;
  const maxP = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (width < 1 || height < 1) fail(name, `${kind} header declares an empty image (${width}x${height})`);
  if (width > maxW || height > maxH || width * height > maxP) {
    fail(
      name,
      `${kind} header declares ${width}x${height} (${((width * height) / 1e6).toFixed(1)} megapixels), above the limit of ${maxW}x${maxH} and ${(maxP / 1e6).toFixed(1)} megapixels (raise it with maxPixels, or --max-image-megapixels on the command line)`,
    );
  }
}

// ---------------------------------------------------------------- PNG

const PNG_SAMPLES: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
const ADAM7: Array<[number, number, number, number]> = [
  [0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2],
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

function decodePngChecked(bytes: Uint8Array, name: string, opts: DecodeOptions): Image {
  // walk the chunk list ourselves first: structure, CRCs of critical chunks, header limits, completeness
  const n = bytes.length;
  let pos = 8;
  let ihdr: Uint8Array | undefined;
  const idat: Uint8Array[] = [];
  let trns: { pos: number; body: Uint8Array } | undefined;
  let sawEnd = false;
  while (!sawEnd) {
    if (pos + 12 > n) fail(name, `truncated PNG: file ends at byte ${n} inside chunk header at byte ${pos}${ihdr ? " (no IEND chunk)" : ""}`);
    const len = u32(bytes, pos);
    const type = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!, bytes[pos + 6]!, bytes[pos + 7]!);
    if (!/^[A-Za-z]{4}$/.test(type)) fail(name, `corrupt PNG: invalid chunk type at byte ${pos} (bytes ${hexHead(bytes.subarray(pos + 4))})`);
    if (len > 0x7fffffff) fail(name, `corrupt PNG: chunk ${type} at byte ${pos} declares length ${len}`);
    if (pos + 12 + len > n) fail(name, `truncated PNG: chunk ${type} at byte ${pos} needs ${len + 12} bytes, only ${n - pos} remain`);
    const body = bytes.subarray(pos + 8, pos + 8 + len);
    const critical = type.charCodeAt(0) < 97;
    if (critical && crc32(bytes.subarray(pos + 4, pos + 8 + len)) >>> 0 !== u32(bytes, pos + 8 + len)) {
      fail(name, `corrupt PNG: CRC mismatch in chunk ${type} at byte ${pos}`);
    }
    if (ihdr === undefined) {
      if (type !== "IHDR" || len !== 13) fail(name, `corrupt PNG: first chunk must be a 13-byte IHDR, got ${type} of ${len} bytes`);
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
  if (!PNG_DEPTHS[colorType]!.includes(depth)) fail(name, `corrupt PNG: bit depth ${depth} is not valid for colour type ${colorType}`);
  if (ihdr[10] !== 0 || ihdr[11] !== 0) fail(name, `corrupt PNG: unknown compression/filter method ${ihdr[10]}/${ihdr[11]}`);
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
    if (trns.body.length === spp * 2) key = Array.from({ length: spp }, (_, c) => (trns.body[2 * c]! << 8) | trns.body[2 * c + 1]!);
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
    if (png.data.length !== rowBytes * height) fail(name, `corrupt PNG: decoded ${png.data.length} bytes, expected ${rowBytes * height}`);
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
      if (entry === undefined) fail(name, `corrupt PNG: palette index ${idx} out of range (palette has ${palette.length} entries)`);
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

// ---------------------------------------------------------------- JPEG

function decodeJpegChecked(bytes: Uint8Array, name: string, opts: DecodeOptions): Image {
  const n = bytes.length;
  let pos = 2;
  let sof = -1;
  let width = 0;
  let height = 0;
  let comps = 0;
  while (sof < 0) {
    if (pos + 2 > n) fail(name, `truncated JPEG: file ends at byte ${n} before a frame header`);
    if (bytes[pos] !== 0xff) fail(name, `corrupt JPEG: expected a marker at byte ${pos}, got 0x${bytes[pos]!.toString(16)}`);
    const marker = bytes[pos + 1]!;
    if (marker === 0xff) { pos += 1; continue; } // fill byte
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { pos += 2; continue; }
    if (marker === 0xd9) fail(name, "corrupt JPEG: end-of-image marker before any frame header");
    if (marker === 0xda) fail(name, "corrupt JPEG: scan data before any frame header");
    if (pos + 4 > n) fail(name, `truncated JPEG: file ends inside the marker at byte ${pos}`);
    const segLen = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    if (segLen < 2) fail(name, `corrupt JPEG: marker 0x${marker.toString(16)} at byte ${pos} has length ${segLen}`);
    if (pos + 2 + segLen > n) fail(name, `truncated JPEG: marker 0x${marker.toString(16)} at byte ${pos} needs ${segLen + 2} bytes, only ${n - pos} remain`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (segLen < 8) fail(name, `corrupt JPEG: frame header of ${segLen} bytes`);
      if (marker > 0xc2) fail(name, `unsupported JPEG coding process (SOF${marker - 0xc0}: lossless, hierarchical or arithmetic-coded)`);
      const precision = bytes[pos + 4]!;
      height = (bytes[pos + 5]! << 8) | bytes[pos + 6]!;
      width = (bytes[pos + 7]! << 8) | bytes[pos + 8]!;
      comps = bytes[pos + 9]!;
      if (precision !== 8) fail(name, `unsupported JPEG sample precision ${precision} bits`);
      if (height === 0) fail(name, "unsupported JPEG: height deferred to a DNL marker");
      if (comps !== 1 && comps !== 3 && comps !== 4) fail(name, `unsupported JPEG with ${comps} components`);
      checkLimits(name, "JPEG", width, height, opts);
      sof = pos;
    }
    pos += 2 + segLen;
  }
  // the end-of-image marker cannot occur inside entropy-coded data (0xff is stuffed there), so its absence means truncation
  let eoi = false;
  for (let i = n - 2; i >= pos; i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) { eoi = true; break; }
  }
  if (!eoi) fail(name, `truncated JPEG: no end-of-image marker after the frame header (${n} bytes)`);

  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  const maxMemoryMB = opts.maxMemoryMB ?? Math.max(512, Math.ceil((maxPixels * 20) / (1024 * 1024)));
  let out: { width: number; height: number; data: Uint8Array };
  try {
    out = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: true,
      maxResolutionInMP: maxPixels / 1e6,
      maxMemoryUsageInMB: maxMemoryMB,
    });
  } catch (e) {
    fail(name, `corrupt or unsupported JPEG (${errText(e)})`);
  }
  if (out.width !== width || out.height !== height || out.data.length !== width * height * 3) {
    fail(name, `corrupt JPEG: decoder returned ${out.width}x${out.height} (${out.data.length} bytes) for a ${width}x${height} header`);
  }
  const pixels = width * height;
  if (comps === 1) {
    const data = new Float32Array(pixels);
    for (let i = 0; i < pixels; i++) data[i] = out.data[i * 3]! / 255;
    return { width, height, channels: 1, data };
  }
  const data = new Float32Array(pixels * 3);
  for (let i = 0; i < data.length; i++) data[i] = out.data[i]! / 255;
  return { width, height, channels: 3, data };
}

// ---------------------------------------------------------------- public I/O

/**
 * Decodes a PNG (1/2/4/8/16-bit gray, gray+alpha, RGB, RGBA, palette, tRNS) or baseline/progressive JPEG,
 * chosen by magic bytes. Gray+alpha and transparency-keyed images become RGBA; values are scaled to [0,1].
 * The declared size is checked against `opts` limits before pixel memory is allocated.
 * @param bytes file contents
 * @param name file name used in error messages
 * @param opts size and memory limits
 * @throws FormatError naming `name` and the problem for empty, unknown, truncated, corrupt or oversized files
 */
export function decodeImage(bytes: Uint8Array, name = "<buffer>", opts: DecodeOptions = {}): Image {
  if (!(bytes instanceof Uint8Array)) fail(name, `expected a Uint8Array of file bytes, got ${typeof bytes}`);
  if (bytes.length === 0) fail(name, "empty file");
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    return guard(name, () => decodePngChecked(bytes, name, opts));
  }
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return guard(name, () => decodeJpegChecked(bytes, name, opts));
  }
  fail(name, `not a PNG or JPEG file (first bytes ${hexHead(bytes)})`);
}

function guard(name: string, fn: () => Image): Image {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FormatError) throw e;
    fail(name, `could not decode (${errText(e)})`);
  }
}

/**
 * Reads and decodes an image file (see {@link decodeImage}); the path names the file in error messages.
 * @throws FormatError for files above `opts.maxFileBytes` or that fail to decode; file-system errors pass through
 */
export function readImage(path: string, opts: DecodeOptions = {}): Image {
  const maxBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const size = statSync(path).size;
  if (size > maxBytes) fail(path, `file is ${size} bytes, above the limit of ${maxBytes}`);
  return decodeImage(readFileSync(path), path, opts);
}

/** Encodes an image as an 8-bit PNG (gray, RGB or RGBA after its channels); values are clamped to [0,1] and rounded. */
export function encodePng(img: Image): Uint8Array {
  checkImage(img, "encodePng");
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = img.data[i]!;
    out[i] = v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0; // NaN -> 0
  }
  return fastPngEncode({ width: img.width, height: img.height, data: out, depth: 8, channels: img.channels });
}

/** Writes an image as an 8-bit PNG atomically: a temporary file in the same folder is synced, then renamed over `path`. */
export function writePng(path: string, img: Image): void {
  writeFileAtomic(path, encodePng(img));
}

// ---------------------------------------------------------------- pixel ops

/**
 * Returns a 3-channel copy: gray is replicated, RGBA is composited (straight alpha) over `background`.
 * @param background RGB in [0,1], default white
 */
export function toRGB(img: Image, background: [number, number, number] = [1, 1, 1]): Image {
  checkImage(img, "toRGB");
  if (background.length !== 3 || !background.every(Number.isFinite)) {
    throw new ShapeError(`toRGB: background must be 3 finite numbers, got [${background.join(", ")}]`);
  }
  const pixels = img.width * img.height;
  const out = new Float32Array(pixels * 3);
  const src = img.data;
  if (img.channels === 3) {
    out.set(src);
  } else if (img.channels === 1) {
    for (let i = 0; i < pixels; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = src[i]!;
  } else {
    const [br, bg, bb] = background;
    for (let i = 0; i < pixels; i++) {
      const a = src[i * 4 + 3]!;
      out[i * 3] = src[i * 4]! * a + br * (1 - a);
      out[i * 3 + 1] = src[i * 4 + 1]! * a + bg * (1 - a);
      out[i * 3 + 2] = src[i * 4 + 2]! * a + bb * (1 - a);
    }
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** Per-output-index taps of a separable 1-D resampler. */
interface Taps { start: Int32Array; count: Int32Array; weights: Float64Array[] }

function makeTaps(inSize: number, outSize: number, mode: ResizeMode): Taps {
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights: Float64Array[] = [];
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    if (mode === "area") {
      // exact overlap of the output cell [o, o+1) * scale with each input pixel
      const lo = (o * inSize) / outSize;
      const hi = ((o + 1) * inSize) / outSize;
      const i0 = Math.floor(lo);
      const i1 = Math.min(inSize, Math.ceil(hi));
      const w = new Float64Array(i1 - i0);
      let sum = 0;
      for (let i = i0; i < i1; i++) {
        w[i - i0] = Math.max(0, Math.min(hi, i + 1) - Math.max(lo, i));
        sum += w[i - i0]!;
      }
      for (let k = 0; k < w.length; k++) w[k]! /= sum;
      start[o] = i0; count[o] = w.length; weights.push(w);
    } else if (mode === "bilinear") {
      // half-pixel centres, negative source coordinates clamped to 0 (align_corners=False)
      const src = Math.max(0, (o + 0.5) * scale - 0.5);
      const i0 = Math.min(Math.floor(src), inSize - 1);
      const lambda = src - i0;
      if (i0 < inSize - 1 && lambda > 0) {
        start[o] = i0; count[o] = 2; weights.push(Float64Array.of(1 - lambda, lambda));
      } else {
        start[o] = i0; count[o] = 1; weights.push(Float64Array.of(1));
      }
    } else {
      // nearest with half-pixel centres
      start[o] = Math.min(inSize - 1, Math.floor((o + 0.5) * scale)); count[o] = 1; weights.push(Float64Array.of(1));
    }
  }
  return { start, count, weights };
}

/**
 * Resizes to width x height. "area" integrates each output cell exactly over the input pixels it covers
 * (box/area averaging, also for non-integer ratios; like PIL BOX / cv2 INTER_AREA when shrinking);
 * "bilinear" uses half-pixel centres without antialiasing (like torch align_corners=False);
 * "nearest" picks the pixel under each output centre. Default: "area" on shrinking axes, "bilinear" on growing ones.
 */
export function resize(img: Image, width: number, height: number, mode?: ResizeMode): Image {
  checkImage(img, "resize");
  checkSize("resize", width, height);
  if (mode !== undefined && mode !== "area" && mode !== "bilinear" && mode !== "nearest") {
    throw new ShapeError(`resize: mode must be "area", "bilinear" or "nearest", got ${String(mode)}`);
  }
  const C = img.channels;
  const W = img.width;
  const H = img.height;
  const tx = makeTaps(W, width, mode ?? (width <= W ? "area" : "bilinear"));
  const ty = makeTaps(H, height, mode ?? (height <= H ? "area" : "bilinear"));
  // horizontal pass into float64, then vertical pass
  const mid = new Float64Array(H * width * C);
  const src = img.data;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < width; x++) {
      const s = tx.start[x]!, k = tx.count[x]!, w = tx.weights[x]!;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let j = 0; j < k; j++) acc += w[j]! * src[((y * W) + s + j) * C + c]!;
        mid[(y * width + x) * C + c] = acc;
      }
    }
  }
  const out = new Float32Array(height * width * C);
  const rowLen = width * C;
  for (let y = 0; y < height; y++) {
    const s = ty.start[y]!, k = ty.count[y]!, w = ty.weights[y]!;
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += w[j]! * mid[(s + j) * rowLen + i]!;
      out[y * rowLen + i] = acc;
    }
  }
  return { width, height, channels: C, data: out };
}

/** Python-style round (half to even), so crop offsets match torchvision's CenterCrop. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Crops the centred width x height window; offsets are round((size - crop) / 2) with half-to-even rounding,
 * as torchvision's CenterCrop.
 * @throws ShapeError if the window is larger than the image
 */
export function centerCrop(img: Image, width: number, height: number): Image {
  checkImage(img, "centerCrop");
  checkSize("centerCrop", width, height);
  if (width > img.width || height > img.height) {
    throw new ShapeError(`centerCrop: crop ${width}x${height} is larger than the image ${img.width}x${img.height}`);
  }
  const left = roundHalfEven((img.width - width) / 2);
  const top = roundHalfEven((img.height - height) / 2);
  const C = img.channels;
  const out = new Float32Array(width * height * C);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * C;
    out.set(img.data.subarray(from, from + width * C), y * width * C);
  }
  return { width, height, channels: C, data: out };
}

/**
 * Scales the shorter side to `size` (longer side floor(size * long / short), as torchvision Resize(size)),
 * then centre-crops to size x size. Shrinking uses area averaging, growing uses bilinear.
 */
export function resizeAndCenterCrop(img: Image, size: number): Image {
  checkImage(img, "resizeAndCenterCrop");
  checkSize("resizeAndCenterCrop", size, size);
  const short = Math.min(img.width, img.height);
  const long = Math.max(img.width, img.height);
  const newLong = Math.max(size, Math.floor((size * long) / short));
  const [w, h] = img.width <= img.height ? [size, newLong] : [newLong, size];
  const mode: ResizeMode = size <= short ? "area" : "bilinear";
  const scaled = w === img.width && h === img.height ? img : resize(img, w, h, mode);
  return centerCrop(scaled, size, size);
}

/** Mirrors an image left-right. */
export function flipHorizontal(img: Image): Image {
  checkImage(img, "flipHorizontal");
  const { width: W, height: H, channels: C } = img;
  const out = new Float32Array(img.data.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const s = (y * W + x) * C;
      const d = (y * W + (W - 1 - x)) * C;
      for (let c = 0; c < C; c++) out[d + c] = img.data[s + c]!;
    }
  }
  return { width: W, height: H, channels: C, data: out };
}

/**
 * Tiles same-sized images row by row into a grid with `pad` pixels between and around the tiles.
 * Image k lands at x = pad + (k % cols) * (width + pad), y = pad + floor(k / cols) * (height + pad).
 * @param opts.cols tiles per row (default ceil(sqrt(n)))
 * @param opts.pad padding in pixels (default 2)
 * @param opts.background fill, one value per channel or a single value for all (default white)
 * @throws ShapeError for an empty list or images of differing size/channels
 */
export function makeGrid(images: Image[], opts: { cols?: number; pad?: number; background?: number[] } = {}): Image {
  if (!Array.isArray(images) || images.length === 0) throw new ShapeError("makeGrid: need at least one image, got 0");
  const first = images[0]!;
  images.forEach((im, k) => {
    checkImage(im, `makeGrid[${k}]`);
    if (im.width !== first.width || im.height !== first.height || im.channels !== first.channels) {
      throw new ShapeError(
        `makeGrid: image ${k} is ${im.width}x${im.height}x${im.channels}, image 0 is ${first.width}x${first.height}x${first.channels}`,
      );
    }
  });
  const n = images.length;
  const cols = opts.cols ?? Math.ceil(Math.sqrt(n));
  const pad = opts.pad ?? 2;
  if (!Number.isInteger(cols) || cols < 1) throw new ShapeError(`makeGrid: cols must be a positive integer, got ${cols}`);
  if (!Number.isInteger(pad) || pad < 0) throw new ShapeError(`makeGrid: pad must be a non-negative integer, got ${pad}`);
  const C = first.channels;
  const bg = opts.background ?? [1];
  if (bg.length !== 1 && bg.length !== C) {
    throw new ShapeError(`makeGrid: background needs 1 or ${C} values, got ${bg.length}`);
  }
  const usedCols = Math.min(cols, n);
  const rows = Math.ceil(n / cols);
  const { width: w, height: h } = first;
  const W = usedCols * (w + pad) + pad;
  const H = rows * (h + pad) + pad;
  const out = new Float32Array(W * H * C);
  for (let i = 0; i < W * H; i++) for (let c = 0; c < C; c++) out[i * C + c] = bg.length === 1 ? bg[0]! : bg[c]!;
  images.forEach((im, k) => {
    const x0 = pad + (k % cols) * (w + pad);
    const y0 = pad + Math.floor(k / cols) * (h + pad);
    for (let y = 0; y < h; y++) out.set(im.data.subarray(y * w * C, (y + 1) * w * C), ((y0 + y) * W + x0) * C);
  });
  return { width: W, height: H, channels: C, data: out };
}

/** Converts HWC [0,1] to CHW [-1,1] (v * 2 - 1), the model's input layout. */
export function imageToCHW(img: Image): Float32Array {
  checkImage(img, "imageToCHW");
  const { width: W, height: H, channels: C } = img;
  const plane = W * H;
  const out = new Float32Array(plane * C);
  for (let i = 0; i < plane; i++) for (let c = 0; c < C; c++) out[c * plane + i] = img.data[i * C + c]! * 2 - 1;
  return out;
}

/** Converts CHW [-1,1] back to an HWC [0,1] image, clamping out-of-range values (NaN becomes 0). */
export function chwToImage(data: Float32Array, channels: number, height: number, width: number): Image {
  checkSize("chwToImage", width, height);
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new ShapeError(`chwToImage: channels must be 1, 3 or 4, got ${channels}`);
  const plane = width * height;
  if (data.length !== plane * channels) {
    throw new ShapeError(`chwToImage: expected ${channels}*${height}*${width} = ${plane * channels} values, got ${data.length}`);
  }
  const out = new Float32Array(plane * channels);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < plane; i++) {
      const v = (data[c * plane + i]! + 1) * 0.5;
      out[i * channels + c] = v > 0 ? (v < 1 ? v : 1) : 0;
    }
  }
  return { width, height, channels, data: out };
}
