// Image files: decoding by magic bytes (PNG or JPEG), reading with a size limit, PNG encoding and atomic writing.
import { readFileSync, statSync } from "node:fs";
import { encode as fastPngEncode } from "fast-png";
import { FormatError } from "../../engine/errors.ts";
import { writeFileAtomic } from "../atomic.ts";
import { DEFAULT_MAX_FILE_BYTES, PNG_SIGNATURE, checkImage, errText, fail, hexHead } from "./image.ts";
import type { DecodeOptions, Image } from "./image.ts";
import { decodeJpegChecked } from "./jpeg.ts";
import { decodePngChecked } from "./png.ts";

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
