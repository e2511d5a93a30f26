// tests of models/clip/image_processing_clip.ts: PIL-style resampling weights, crop offsets, normalisation
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ShapeError } from "../../../engine/errors.ts";
import { CLIP_MEAN, CLIP_STD, clipPreprocess, resizeCHW } from "../../../models/clip/index.ts";
import { assertClose } from "../../helpers.ts";

test("resizeCHW: same size is the identity for bicubic and bilinear", () => {
  const x = Float32Array.from({ length: 2 * 3 * 5 }, (_, i) => Math.sin(i));
  assertClose(resizeCHW(x, 2, 3, 5, 3, 5, "bicubic"), x, 1e-7, 0, "bicubic");
  assertClose(resizeCHW(x, 2, 3, 5, 3, 5, "bilinear"), x, 1e-7, 0, "bilinear");
});

test("resizeCHW: antialiased bilinear 4 -> 2 uses PIL's widened triangle (weights 3/7, 3/7, 1/7)", () => {
  // out 0: centre 1, support 2 -> inputs 0..2 with tri(-0.25), tri(0.25), tri(0.75) = 0.75, 0.75, 0.25
  const y = resizeCHW(Float32Array.from([0, 1, 2, 3]), 1, 1, 4, 1, 2, "bilinear");
  assertClose(y, [5 / 7, 16 / 7], 1e-6, 0);
});

test("resizeCHW: bicubic 2x upscale of a ramp keeps interior values on the line", () => {
  const x = Float32Array.from({ length: 8 }, (_, i) => i);
  const y = resizeCHW(x, 1, 1, 8, 1, 16, "bicubic");
  // output centre o maps to input coordinate (o + 0.5) / 2 - 0.5; cubic a=-0.5 reproduces linear functions
  for (let o = 4; o < 12; o++) assertClose([y[o]], [(o + 0.5) / 2 - 0.5], 1e-6, 0, `o=${o}`);
});

test("clipPreprocess: constant image normalises to (v - mean) / std per channel, shape 3 x 224 x 224", () => {
  const h = 300,
    w = 400;
  const x = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) x.fill([0.2, 0.5, 0.9][c], c * h * w, (c + 1) * h * w);
  const y = clipPreprocess(x, 3, h, w);
  assert.is(y.length, 3 * 224 * 224);
  for (let c = 0; c < 3; c++) {
    const want = ([0.2, 0.5, 0.9][c] - CLIP_MEAN[c]) / CLIP_STD[c];
    assertClose(
      y.subarray(c * 224 * 224, (c + 1) * 224 * 224),
      new Float32Array(224 * 224).fill(want),
      1e-5,
      1e-6,
      `channel ${c}`,
    );
  }
  const signed = clipPreprocess(
    x.map((v) => v * 2 - 1),
    3,
    h,
    w,
    { inputRange: [-1, 1] },
  );
  assertClose(signed, y, 1e-5, 1e-6, "[-1, 1] input");
});

test("clipPreprocess: center crop offset is floor((side - crop) / 2), as transformers' center_crop", () => {
  const h = 4,
    w = 7;
  const x = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) x[c * h * w + i * w + j] = j / 10;
  const y = clipPreprocess(x, 3, h, w, { size: 4, cropSize: 4 });
  // no resize (shortest side is 4); left = floor(3 / 2) = 1
  for (let j = 0; j < 4; j++)
    assertClose([y[j]], [((j + 1) / 10 - CLIP_MEAN[0]) / CLIP_STD[0]], 1e-6, 0, `column ${j}`);
  assert.throws(
    () => clipPreprocess(new Float32Array(12), 1, 3, 4),
    (e: Error) => e instanceof ShapeError,
  );
});

test.run();
