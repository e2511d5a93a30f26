// Separable resampling (area, bilinear, nearest) of HWC images.
import { ShapeError } from "../../engine/errors.ts";
import { checkImage, checkSize } from "./image.ts";
import type { Image, ResizeMode } from "./image.ts";

/** Per-output-index taps of a separable 1-D resampler. */
interface Taps {
  start: Int32Array;
  count: Int32Array;
  weights: Float64Array[];
}

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
      start[o] = i0;
      count[o] = w.length;
      weights.push(w);
    } else if (mode === "bilinear") {
      // half-pixel centres, negative source coordinates clamped to 0 (align_corners=False)
      const src = Math.max(0, (o + 0.5) * scale - 0.5);
      const i0 = Math.min(Math.floor(src), inSize - 1);
      const lambda = src - i0;
      if (i0 < inSize - 1 && lambda > 0) {
        start[o] = i0;
        count[o] = 2;
        weights.push(Float64Array.of(1 - lambda, lambda));
      } else {
        start[o] = i0;
        count[o] = 1;
        weights.push(Float64Array.of(1));
      }
    } else {
      // nearest with half-pixel centres
      start[o] = Math.min(inSize - 1, Math.floor((o + 0.5) * scale));
      count[o] = 1;
      weights.push(Float64Array.of(1));
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
      const s = tx.start[x]!,
        k = tx.count[x]!,
        w = tx.weights[x]!;
      for (let c = 0; c < C; c++) {
        let acc = 0;
        for (let j = 0; j < k; j++) acc += w[j]! * src[(y * W + s + j) * C + c]!;
        mid[(y * width + x) * C + c] = acc;
      }
    }
  }
  const out = new Float32Array(height * width * C);
  const rowLen = width * C;
  for (let y = 0; y < height; y++) {
    const s = ty.start[y]!,
      k = ty.count[y]!,
      w = ty.weights[y]!;
    for (let i = 0; i < rowLen; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += w[j]! * mid[(s + j) * rowLen + i]!;
      out[y * rowLen + i] = acc;
    }
  }
  return { width, height, channels: C, data: out };
}
