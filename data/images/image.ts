// The plain HWC float image, the decoding limits and the checks shared by the codecs and pixel operations.
import { FormatError, ShapeError } from "../../engine/errors.ts";

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

export const DEFAULT_MAX_SIDE = 16384;
/** Default {@link DecodeOptions.maxPixels}. */
export const DEFAULT_MAX_PIXELS = 25_000_000;
export const DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024;
export const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function fail(name: string, problem: string): never {
  throw new FormatError(`images: ${name}: ${problem}`);
}

export function hexHead(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ");
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function checkImage(img: Image, op: string): void {
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

export function checkSize(op: string, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ShapeError(`${op}: target size must be positive integers, got ${width}x${height}`);
  }
}

export function checkLimits(name: string, kind: string, width: number, height: number, opts: DecodeOptions): void {
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
