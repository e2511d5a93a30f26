// CLIP image preprocessing, mirroring transformers models/clip/image_processing_clip.py (CLIPImageProcessor):
// resize the shortest side (PIL-style antialiased bicubic or bilinear), center crop, normalise with CLIP's mean/std.
import { ShapeError } from "../../engine/errors.ts";

/** CLIP's per-channel normalisation (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
/** CLIP's per-channel standard deviation. */
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Options of {@link clipPreprocess}. */
export interface CLIPPreprocessOptions {
  /** target of the shortest side (default 224, `size.shortest_edge`) */
  size?: number;
  /** side of the square center crop (default 224, `crop_size`) */
  cropSize?: number;
  /** resampling filter (default "bicubic", PIL.Image.BICUBIC as CLIPImageProcessor uses) */
  resample?: "bicubic" | "bilinear";
  /** value range of the input, mapped to [0, 1] before normalising (default [0, 1]; the project's imageToCHW gives [-1, 1]) */
  inputRange?: readonly [number, number];
}

// PIL filters (libImaging/Resample.c): support and kernel
const FILTERS = {
  bilinear: { support: 1, f: (x: number) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    f: (x0: number) => {
      const a = -0.5,
        x = Math.abs(x0);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
} as const;

/** Per output index: first input index and normalised weights, as PIL's precompute_coeffs (antialiased when shrinking). */
function coefficients(
  inSize: number,
  outSize: number,
  kind: "bicubic" | "bilinear",
): { start: Int32Array; weights: Float64Array[] } {
  const { support: base, f } = FILTERS[kind];
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = base * filterScale;
  const start = new Int32Array(outSize);
  const weights: Float64Array[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = new Float64Array(hi - lo);
    let total = 0;
    for (let i = 0; i < w.length; i++) {
      w[i] = f((i + lo - center + 0.5) / filterScale);
      total += w[i];
    }
    if (total !== 0) for (let i = 0; i < w.length; i++) w[i] /= total;
    start[o] = lo;
    weights.push(w);
  }
  return { start, weights };
}

/** Resizes a CHW plane stack to (C, outH, outW), horizontal pass then vertical pass (as PIL). */
export function resizeCHW(
  x: Float32Array,
  channels: number,
  height: number,
  width: number,
  outH: number,
  outW: number,
  resample: "bicubic" | "bilinear" = "bicubic",
): Float32Array {
  if (x.length !== channels * height * width)
    throw new ShapeError(`resizeCHW: ${x.length} values do not fill ${channels}x${height}x${width}`);
  if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH > 0 && outW > 0))
    throw new ShapeError(`resizeCHW: output size must be positive integers, got ${outH}x${outW}`);
  const cx = coefficients(width, outW, resample),
    cy = coefficients(height, outH, resample);
  const mid = new Float64Array(height * outW);
  const out = new Float32Array(channels * outH * outW);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    for (let y = 0; y < height; y++) {
      for (let o = 0; o < outW; o++) {
        const w = cx.weights[o],
          s = cx.start[o];
        let acc = 0;
        for (let i = 0; i < w.length; i++) acc += w[i] * x[plane + y * width + s + i];
        mid[y * outW + o] = acc;
      }
    }
    const dst = c * outH * outW;
    for (let o = 0; o < outH; o++) {
      const w = cy.weights[o],
        s = cy.start[o];
      for (let xo = 0; xo < outW; xo++) {
        let acc = 0;
        for (let i = 0; i < w.length; i++) acc += w[i] * mid[(s + i) * outW + xo];
        out[dst + o * outW + xo] = acc;
      }
    }
  }
  return out;
}

/**
 * CLIPImageProcessor on a CHW float image: the shortest side is resized to `size` (the other to
 * floor(size * long / short)), a `cropSize` square is cut at offsets floor((side - crop) / 2), and each
 * channel becomes (v - mean) / std. Returns (3, cropSize, cropSize) for CLIPVisionModel.
 * Unlike transformers on uint8 images, values are not rounded to 8 bits after resizing.
 */
export function clipPreprocess(
  chw: Float32Array,
  channels: number,
  height: number,
  width: number,
  opts: CLIPPreprocessOptions = {},
): Float32Array {
  const size = opts.size ?? 224,
    crop = opts.cropSize ?? 224;
  if (channels !== 3) throw new ShapeError(`clipPreprocess: expects 3 channels (RGB), got ${channels}`);
  if (chw.length !== channels * height * width)
    throw new ShapeError(`clipPreprocess: ${chw.length} values do not fill ${channels}x${height}x${width}`);
  const short = Math.min(height, width),
    long = Math.max(height, width);
  const newLong = Math.floor((size * long) / short);
  const [h, w] = height <= width ? [size, newLong] : [newLong, size];
  if (crop > h || crop > w)
    throw new ShapeError(`clipPreprocess: crop ${crop} is larger than the resized image ${h}x${w}`);
  const resized =
    h === height && w === width ? chw : resizeCHW(chw, channels, height, width, h, w, opts.resample ?? "bicubic");
  const top = Math.floor((h - crop) / 2),
    left = Math.floor((w - crop) / 2);
  const [lo, hi] = opts.inputRange ?? [0, 1];
  const out = new Float32Array(channels * crop * crop);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < crop; y++) {
      for (let x = 0; x < crop; x++) {
        const v = (resized[c * h * w + (top + y) * w + left + x] - lo) / (hi - lo);
        out[c * crop * crop + y * crop + x] = (v - CLIP_MEAN[c]) / CLIP_STD[c];
      }
    }
  }
  return out;
}
