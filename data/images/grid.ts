// Tiling same-sized images into one grid image.
import { ShapeError } from "../../engine/errors.ts";
import { checkImage } from "./image.ts";
import type { Image } from "./image.ts";

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
  if (!Number.isInteger(cols) || cols < 1)
    throw new ShapeError(`makeGrid: cols must be a positive integer, got ${cols}`);
  if (!Number.isInteger(pad) || pad < 0)
    throw new ShapeError(`makeGrid: pad must be a non-negative integer, got ${pad}`);
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
