// Crops and flips: torchvision's CenterCrop offsets, Resize-then-crop, horizontal mirror.
import { ShapeError } from "../../engine/errors.ts";
import { roundHalfEven } from "../../engine/numeric.ts";
import { checkImage, checkSize } from "./image.ts";
import type { Image, ResizeMode } from "./image.ts";
import { resize } from "./resample.ts";

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
