// Channel and layout conversions: to RGB (alpha composited), HWC [0,1] <-> CHW [-1,1].
import { ShapeError } from "../../engine/errors.ts";
import { checkImage, checkSize } from "./image.ts";
import type { Image } from "./image.ts";

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
  if (channels !== 1 && channels !== 3 && channels !== 4)
    throw new ShapeError(`chwToImage: channels must be 1, 3 or 4, got ${channels}`);
  const plane = width * height;
  if (data.length !== plane * channels) {
    throw new ShapeError(
      `chwToImage: expected ${channels}*${height}*${width} = ${plane * channels} values, got ${data.length}`,
    );
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
