// Custom Diffusion training data: concept folders, the resize augmentation with its valid-region mask
// and caption prefixes (as the reference training script does), regularisation images, batching
import * as fs from "node:fs";
import * as path from "node:path";
import type { Generator } from "../engine/index.ts";
import { ConfigError, FormatError } from "../engine/errors.ts";
import type { DecodeOptions, Image } from "../data/images.ts";
import {
  centerCrop,
  flipHorizontal,
  imageToCHW,
  readImage,
  resize,
  resizeAndCenterCrop,
  toRGB,
} from "../data/images.ts";

/** One concept, with the fields of the diffusers example's `concepts_list`. */
export interface ConceptSpec {
  instance_prompt: string;
  class_prompt: string;
  instance_data_dir: string;
  /** a folder of regularisation images, or a text file of image paths (one a line) */
  class_data_dir?: string;
}

const IMAGE_EXT = new Set([".png", ".jpg", ".jpeg"]);

/** Image files of a folder (PNG and JPEG), sorted by name. */
export function listImages(dir: string): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ConfigError(`dataset: ${dir} is not a folder`);
  return fs
    .readdirSync(dir)
    .filter((f) => IMAGE_EXT.has(path.extname(f).toLowerCase()))
    .sort()
    .map((f) => path.join(dir, f));
}

/**
 * Decodes every file up front, as RGB on white, resized and center-cropped to `resolution`. All files
 * that fail are reported together by name, so a run stops before training, not after. `decode` sets
 * the size limits checked before decoding (see {@link DecodeOptions}).
 */
export function loadImages(files: readonly string[], resolution: number, decode: DecodeOptions = {}): Image[] {
  const out: Image[] = [];
  const bad: string[] = [];
  for (const f of files) {
    try {
      const img = readImage(f, decode);
      out.push(resizeAndCenterCrop(img.channels === 3 ? img : toRGB(img), resolution));
    } catch (e) {
      bad.push(`${f}: ${(e as Error).message}`);
    }
  }
  if (bad.length)
    throw new FormatError(
      `dataset: ${bad.length} image${bad.length > 1 ? "s" : ""} could not be read:\n  ${bad.join("\n  ")}`,
    );
  return out;
}

export interface AugmentOptions {
  /** model resolution in pixels */
  resolution: number;
  /** resolution of the loss mask (latent size: resolution / 8 for Stable Diffusion, = resolution in pixel space) */
  maskSize: number;
  /** apply the resize augmentation (the reference's default; `--noaug` turns it off) */
  aug: boolean;
  /** random horizontal flip with p = 0.5 */
  hflip: boolean;
}

export interface TrainExample {
  /** (3, R, R) in [-1, 1] */
  pixels: Float32Array;
  /** (maskSize, maskSize), 1 on the valid region */
  mask: Float32Array;
  prompt: string;
}

/**
 * The reference augmentation for a target image: with p = 0.66 a scale in [R/3, R], else in
 * [1.2R, 1.4R); smaller images are pasted at a random place on a zero canvas with a mask of the
 * pasted box shrunk by one mask pixel on each side; larger ones are randomly cropped (mask all ones).
 * Captions get "a far away " / "very small " below 0.6R and "zoomed in " / "close up " above R.
 */
export function augmentInstance(img: Image, prompt: string, o: AugmentOptions, g: Generator): TrainExample {
  const R = o.resolution;
  const factor = Math.floor(R / o.maskSize);
  let im = img.width === R && img.height === R ? img : resizeAndCenterCrop(img, R);
  if (o.hflip && g.random() < 0.5) im = flipHorizontal(im);
  let scale = R;
  if (o.aug)
    scale =
      g.random() < 0.66 ? g.randint(Math.floor(R / 3), R + 1) : g.randint(Math.floor(1.2 * R), Math.floor(1.4 * R));
  let outer = R,
    inner = scale;
  if (scale > R) [outer, inner] = [scale, R];
  const top = g.randint(0, outer - inner + 1),
    left = g.randint(0, outer - inner + 1);
  const scaled = scale === R ? im : resize(im, scale, scale);
  const canvas: Image = { width: R, height: R, channels: 3, data: new Float32Array(R * R * 3) };
  const mask = new Float32Array(o.maskSize * o.maskSize);
  if (scale > R) {
    const c = cropAt(scaled, left, top, R);
    canvas.data.set(c.data);
    mask.fill(1);
  } else {
    // paste; the canvas is 0 in [-1, 1] space, i.e. mid-grey 0.5 in [0, 1]
    canvas.data.fill(0.5);
    for (let y = 0; y < scale; y++) {
      const src = y * scale * 3,
        dst = ((top + y) * R + left) * 3;
      canvas.data.set(scaled.data.subarray(src, src + scale * 3), dst);
    }
    const y0 = Math.floor(top / factor) + 1,
      y1 = Math.floor((top + scale) / factor) - 1;
    const x0 = Math.floor(left / factor) + 1,
      x1 = Math.floor((left + scale) / factor) - 1;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) mask[y * o.maskSize + x] = 1;
  }
  let p = prompt;
  if (scale < 0.6 * R) p = (g.random() < 0.5 ? "a far away " : "very small ") + prompt;
  else if (scale > R) p = (g.random() < 0.5 ? "zoomed in " : "close up ") + prompt;
  return { pixels: imageToCHW(canvas), mask, prompt: p };
}

function cropAt(img: Image, left: number, top: number, size: number): Image {
  const out: Image = { width: size, height: size, channels: 3, data: new Float32Array(size * size * 3) };
  for (let y = 0; y < size; y++) {
    const src = ((top + y) * img.width + left) * 3;
    out.data.set(img.data.subarray(src, src + size * 3), y * size * 3);
  }
  return out;
}

/** A regularisation image: resized + center-cropped (or randomly cropped), optional flip, mask all ones. */
export function prepareClassImage(
  img: Image,
  prompt: string,
  o: AugmentOptions,
  g: Generator,
  randomCrop = false,
): TrainExample {
  const R = o.resolution;
  let im = img;
  if (o.hflip && g.random() < 0.5) im = flipHorizontal(im);
  if (im.width !== R || im.height !== R) {
    if (randomCrop) {
      const s = R / Math.min(im.width, im.height);
      const w = Math.max(R, Math.round(im.width * s)),
        h = Math.max(R, Math.round(im.height * s));
      const r = resize(im, w, h);
      im = cropAt(r, g.randint(0, w - R + 1), g.randint(0, h - R + 1), R);
    } else im = centerCrop(resizeAndCenterCrop(im, R), R, R);
  }
  return { pixels: imageToCHW(im), mask: new Float32Array(o.maskSize * o.maskSize).fill(1), prompt };
}
