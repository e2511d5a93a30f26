// Tests of data/images.ts: PNG/JPEG decoding and its failure modes, PNG writing, compositing,
// resizing (area, bilinear, nearest), crops, grids and CHW conversion, against hand-computed values.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import { encode as fastPngEncode } from "fast-png";
import jpeg from "jpeg-js";
import { FormatError, ShapeError } from "../../engine/errors.ts";
import {
  centerCrop,
  chwToImage,
  decodeImage,
  encodePng,
  flipHorizontal,
  imageToCHW,
  makeGrid,
  readImage,
  resize,
  resizeAndCenterCrop,
  toRGB,
  writePng,
  type Image,
} from "../../data/images.ts";

function img(width: number, height: number, channels: 1 | 3 | 4, values: number[]): Image {
  return { width, height, channels, data: Float32Array.from(values) };
}

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = "values"): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i]! - expected[i]!) <= tol)) {
      assert.unreachable(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
    }
  }
}

function throwsFormat(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  try {
    fn();
  } catch (e) {
    assert.instance(e, FormatError);
    const msg = (e as Error).message;
    for (const p of parts)
      assert.ok(typeof p === "string" ? msg.includes(p) : p.test(msg), `message "${msg}" lacks ${String(p)}`);
    return;
  }
  assert.unreachable("expected a FormatError");
}

/** A PNG assembled chunk by chunk with correct CRCs. */
function pngFile(chunks: Array<[string, Uint8Array]>): Uint8Array {
  const parts: Buffer[] = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])];
  for (const [type, body] of chunks) {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, "latin1");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
    parts.push(head, Buffer.from(body), crc);
  }
  return new Uint8Array(Buffer.concat(parts));
}

function ihdr(width: number, height: number, depth: number, colorType: number): Uint8Array {
  const b = Buffer.alloc(13);
  b.writeUInt32BE(width, 0);
  b.writeUInt32BE(height, 4);
  b[8] = depth;
  b[9] = colorType;
  return b;
}

// a 3x2 RGB image with every 8-bit level distinct
const rgb8 = img(
  3,
  2,
  3,
  [0, 1, 2, 50, 100, 150, 200, 250, 255, 7, 77, 177, 30, 60, 90, 128, 129, 127].map((v) => v / 255),
);

test("PNG encode/decode round trip is exact at 8 bits (RGB, RGBA, gray)", () => {
  const back = decodeImage(encodePng(rgb8), "rgb.png");
  assert.is(back.width, 3);
  assert.is(back.height, 2);
  assert.is(back.channels, 3);
  assert.equal(Array.from(back.data), Array.from(rgb8.data));
  const rgba = img(
    2,
    1,
    4,
    [10, 20, 30, 0, 40, 50, 60, 255].map((v) => v / 255),
  );
  assert.equal(Array.from(decodeImage(encodePng(rgba), "a.png").data), Array.from(rgba.data));
  const gray = img(
    2,
    2,
    1,
    [0, 64, 128, 255].map((v) => v / 255),
  );
  const g = decodeImage(encodePng(gray), "g.png");
  assert.is(g.channels, 1);
  assert.equal(Array.from(g.data), Array.from(gray.data));
});

test("encodePng clamps out-of-range and NaN values and rounds to the nearest level", () => {
  const back = decodeImage(encodePng(img(4, 1, 1, [-0.5, 1.7, Number.NaN, 0.5])), "c.png");
  assert.equal(Array.from(back.data), [0, 1, 0, 128 / 255].map(Math.fround));
});

test("RGBA composited over white and over a given background", () => {
  // alpha 128/255 over white: 200/255 * a + 1 * (1 - a)
  const a = 128 / 255;
  const px = img(1, 1, 4, [200 / 255, 0, 1, a]);
  const white = toRGB(px);
  assert.is(white.channels, 3);
  close(white.data, [(200 / 255) * a + (1 - a), 1 - a, 1], 1e-6, "over white");
  close(white.data, [0.8917339, 0.4980392, 1], 1e-6, "over white, numeric");
  const black = toRGB(px, [0, 0, 0]);
  close(black.data, [(200 / 255) * a, 0, a], 1e-6, "over black");
  // gray is replicated, RGB copied
  assert.equal(Array.from(toRGB(img(1, 1, 1, [0.25])).data), [0.25, 0.25, 0.25]);
  // decoded RGBA PNG: fully transparent pixel becomes the background
  const dec = decodeImage(encodePng(img(2, 1, 4, [0, 0, 0, 0, 1, 0, 0, 1])), "t.png");
  assert.equal(Array.from(toRGB(dec).data), [1, 1, 1, 1, 0, 0]);
});

test("gray PNG: 8-bit, 1-bit and 4-bit samples; gray+alpha becomes RGBA", () => {
  const g8 = fastPngEncode({ width: 3, height: 1, data: Uint8Array.of(0, 51, 255), depth: 8, channels: 1 });
  const d8 = decodeImage(g8, "g8.png");
  assert.is(d8.channels, 1);
  close(d8.data, [0, 0.2, 1], 1e-7, "8-bit gray");
  // 1-bit, width 10 (rows padded to 2 bytes): bits 1011001110 / 0000000001
  const rows = [0b10110011, 0b10000000, 0b00000000, 0b01000000];
  const raw = Buffer.from([0, rows[0]!, rows[1]!, 0, rows[2]!, rows[3]!]);
  const g1 = pngFile([
    ["IHDR", ihdr(10, 2, 1, 0)],
    ["IDAT", deflateSync(raw)],
    ["IEND", new Uint8Array(0)],
  ]);
  const d1 = decodeImage(g1, "g1.png");
  assert.is(d1.channels, 1);
  assert.equal(Array.from(d1.data), [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  // 4-bit, width 3: samples 15, 0, 5
  const g4 = pngFile([
    ["IHDR", ihdr(3, 1, 4, 0)],
    ["IDAT", deflateSync(Buffer.from([0, 0xf0, 0x50]))],
    ["IEND", new Uint8Array(0)],
  ]);
  close(decodeImage(g4, "g4.png").data, [1, 0, 1 / 3], 1e-7, "4-bit gray");
  const ga = fastPngEncode({ width: 1, height: 1, data: Uint8Array.of(102, 51), depth: 8, channels: 2 });
  const dga = decodeImage(ga, "ga.png");
  assert.is(dga.channels, 4);
  close(dga.data, [0.4, 0.4, 0.4, 0.2], 1e-7, "gray+alpha");
});

test("16-bit PNG samples are scaled by 1/65535", () => {
  const rgb16 = fastPngEncode({
    width: 2,
    height: 1,
    data: Uint16Array.of(0, 1000, 65535, 32768, 257, 12345),
    depth: 16,
    channels: 3,
  });
  const d = decodeImage(rgb16, "deep.png");
  assert.is(d.channels, 3);
  close(d.data, [0, 1000 / 65535, 1, 32768 / 65535, 257 / 65535, 12345 / 65535], 1e-7, "16-bit RGB");
  const g16 = fastPngEncode({ width: 1, height: 1, data: Uint16Array.of(300), depth: 16, channels: 1 });
  close(decodeImage(g16, "g16.png").data, [300 / 65535], 1e-9, "16-bit gray");
});

test("palette PNG, with and without tRNS alpha; tRNS colour key on RGB", () => {
  const plte = Uint8Array.of(255, 0, 0, 0, 255, 0, 0, 0, 255);
  // 2-bit indices 2, 0, 1 packed into one byte: 10 00 01 00
  const idat = deflateSync(Buffer.from([0, 0b10000100]));
  const p = pngFile([
    ["IHDR", ihdr(3, 1, 2, 3)],
    ["PLTE", plte],
    ["IDAT", idat],
    ["IEND", new Uint8Array(0)],
  ]);
  const d = decodeImage(p, "pal.png");
  assert.is(d.channels, 3);
  assert.equal(Array.from(d.data), [0, 0, 1, 1, 0, 0, 0, 1, 0]);
  const pt = pngFile([
    ["IHDR", ihdr(3, 1, 2, 3)],
    ["PLTE", plte],
    ["tRNS", Uint8Array.of(0, 51)],
    ["IDAT", idat],
    ["IEND", new Uint8Array(0)],
  ]);
  const dt = decodeImage(pt, "palt.png");
  assert.is(dt.channels, 4);
  close(dt.data, [0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0.2], 1e-7, "palette + tRNS");
  // index 3 is outside a 3-entry palette
  const bad = pngFile([
    ["IHDR", ihdr(1, 1, 2, 3)],
    ["PLTE", plte],
    ["IDAT", deflateSync(Buffer.from([0, 0b11000000]))],
    ["IEND", new Uint8Array(0)],
  ]);
  throwsFormat(() => decodeImage(bad, "badpal.png"), "badpal.png", "palette index 3");
  // RGB with colour key (0, 255, 0): the green pixel turns transparent
  const key = Uint8Array.of(0, 0, 0, 255, 0, 0);
  const raw = Buffer.from([0, 0, 255, 0, 9, 9, 9]);
  const k = pngFile([
    ["IHDR", ihdr(2, 1, 8, 2)],
    ["tRNS", key],
    ["IDAT", deflateSync(raw)],
    ["IEND", new Uint8Array(0)],
  ]);
  const dk = decodeImage(k, "key.png");
  assert.is(dk.channels, 4);
  close(dk.data, [0, 1, 0, 0, 9 / 255, 9 / 255, 9 / 255, 1], 1e-7, "colour key");
});

test("JPEG encoded with jpeg-js decodes within tolerance; gray JPEG stays 1-channel", () => {
  const W = 16,
    H = 16;
  const rgba = new Uint8Array(W * H * 4);
  const expected: number[] = [];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const r = 40 + x * 8,
        g = 60 + y * 6,
        b = 120;
      rgba.set([r, g, b, 255], (y * W + x) * 4);
      expected.push(r / 255, g / 255, b / 255);
    }
  }
  const file = new Uint8Array(jpeg.encode({ width: W, height: H, data: rgba }, 95).data);
  const d = decodeImage(file, "smooth.jpg");
  assert.is(d.width, W);
  assert.is(d.height, H);
  assert.is(d.channels, 3);
  close(d.data, expected, 8 / 255, "JPEG");
  // flat mid-gray encoded as RGB must also come back close
  const flat = new Uint8Array(8 * 8 * 4).fill(128);
  const f = decodeImage(new Uint8Array(jpeg.encode({ width: 8, height: 8, data: flat }, 90).data), "flat.jpg");
  close(f.data, new Array(8 * 8 * 3).fill(128 / 255), 3 / 255, "flat JPEG");
});

test("area downsample 4x4 -> 2x2 equals the 2x2 block means exactly", () => {
  // values are multiples of 1/16 so every mean is exact in float32
  const v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0].map((x) => x / 16);
  const out = resize(img(4, 4, 1, v), 2, 2, "area");
  const means = [(1 + 2 + 5 + 6) / 64, (3 + 4 + 7 + 8) / 64, (9 + 10 + 13 + 14) / 64, (11 + 12 + 15 + 0) / 64];
  assert.equal(Array.from(out.data), means);
  // default mode when shrinking is area too; channels stay interleaved
  const two = img(2, 1, 3, [0, 0.5, 1, 1, 0.5, 0]);
  assert.equal(Array.from(resize(two, 1, 1).data), [0.5, 0.5, 0.5]);
});

test("area downsample with a non-integer ratio 3 -> 2 weighs pixels 2/3 and 1/3", () => {
  const out = resize(img(3, 1, 1, [0.3, 0.6, 0.9]), 2, 1, "area");
  close(out.data, [(2 / 3) * 0.3 + (1 / 3) * 0.6, (1 / 3) * 0.6 + (2 / 3) * 0.9], 1e-7, "3->2");
  close(out.data, [0.4, 0.8], 1e-7, "3->2 numeric");
  // 5 -> 2 on the vertical axis: cells [0,2.5) and [2.5,5): weights 0.4, 0.4, 0.2 / 0.2, 0.4, 0.4
  const col = resize(img(1, 5, 1, [0, 0.25, 0.5, 0.75, 1]), 1, 2, "area");
  close(col.data, [0.4 * 0 + 0.4 * 0.25 + 0.2 * 0.5, 0.2 * 0.5 + 0.4 * 0.75 + 0.4 * 1], 1e-7, "5->2");
});

test("bilinear upsample 2x2 -> 4x4 matches half-pixel-centre hand values", () => {
  // source coordinates of outputs 0..3: -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel)
  const out = resize(img(2, 2, 1, [0, 0.25, 0.5, 0.75]), 4, 4, "bilinear");
  const at = (x: number, y: number): number => out.data[y * 4 + x]!;
  close([at(0, 0)], [0], 1e-7, "(0,0)");
  close([at(1, 0)], [0.25 * 0.25], 1e-7, "(1,0)");
  close([at(1, 1)], [0.75 * 0.75 * 0 + 0.75 * 0.25 * 0.25 + 0.25 * 0.75 * 0.5 + 0.25 * 0.25 * 0.75], 1e-7, "(1,1)");
  close([at(1, 1)], [0.1875], 1e-7, "(1,1) numeric");
  close([at(2, 1)], [0.3125], 1e-7, "(2,1)");
  close([at(3, 3)], [0.75], 1e-7, "(3,3)");
  close([at(0, 2)], [0.375], 1e-7, "(0,2)");
  // default mode when growing is bilinear
  assert.equal(Array.from(resize(img(2, 2, 1, [0, 0.25, 0.5, 0.75]), 4, 4).data), Array.from(out.data));
  // nearest picks the pixel under the output centre
  assert.equal(Array.from(resize(img(3, 1, 1, [0.1, 0.2, 0.3]), 2, 1, "nearest").data), [0.1, 0.3].map(Math.fround));
});

test("resize rejects bad sizes and images with ShapeError", () => {
  assert.throws(
    () => resize(rgb8, 0, 2),
    (e: unknown) => e instanceof ShapeError,
  );
  assert.throws(
    () => resize(img(2, 2, 1, [0, 0, 0]), 1, 1),
    (e: unknown) => e instanceof ShapeError,
  );
});

test("centerCrop offsets use round-half-even like torchvision", () => {
  // 7x5 gray image whose value encodes x + 10 y
  const vals: number[] = [];
  for (let y = 0; y < 5; y++) for (let x = 0; x < 7; x++) vals.push((x + 10 * y) / 100);
  const im = img(7, 5, 1, vals);
  // left = round(3/2) = 2, top = round(1/2) = 0
  const c = centerCrop(im, 4, 4);
  assert.is(c.width, 4);
  assert.is(c.height, 4);
  close([c.data[0]!], [0.02], 1e-7, "top-left of 4x4");
  close([c.data[15]!], [0.35], 1e-7, "bottom-right of 4x4");
  // left = round(5/2) = 2, top = round(3/2) = 2
  const d = centerCrop(im, 2, 2);
  close(d.data, [0.22, 0.23, 0.32, 0.33], 1e-7, "2x2");
  assert.throws(
    () => centerCrop(im, 8, 2),
    (e: unknown) => e instanceof ShapeError,
  );
});

test("resizeAndCenterCrop: shorter side to size, then centre crop", () => {
  // 6x4 -> short side 4 -> 2, long side int(2 * 6 / 4) = 3 -> 3x2 by 2x2 block means, then crop left = round(0.5) = 0
  const vals: number[] = [];
  for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) vals.push((x + 6 * y) / 32);
  const out = resizeAndCenterCrop(img(6, 4, 1, vals), 2);
  assert.is(out.width, 2);
  assert.is(out.height, 2);
  const block = (bx: number, by: number): number =>
    (vals[by * 12 + bx * 2]! +
      vals[by * 12 + bx * 2 + 1]! +
      vals[by * 12 + 6 + bx * 2]! +
      vals[by * 12 + 6 + bx * 2 + 1]!) /
    4;
  close(out.data, [block(0, 0), block(1, 0), block(0, 1), block(1, 1)], 1e-7, "6x4 -> 2");
  // portrait 2x3 upscaled to 4: 4x6 bilinear, crop top = 1
  const up = resizeAndCenterCrop(img(2, 3, 1, [0, 0, 0.5, 0.5, 1, 1]), 4);
  assert.is(up.width, 4);
  assert.is(up.height, 4);
  const full = resize(img(2, 3, 1, [0, 0, 0.5, 0.5, 1, 1]), 4, 6, "bilinear");
  assert.equal(Array.from(up.data), Array.from(full.data.subarray(4, 20)));
});

test("flipHorizontal mirrors each row and keeps channels together", () => {
  const f = flipHorizontal(
    img(
      2,
      2,
      3,
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((v) => v / 16),
    ),
  );
  assert.equal(
    Array.from(f.data),
    [4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9].map((v) => v / 16),
  );
});

test("makeGrid places image k at pad + (k % cols)(w + pad), pad + floor(k / cols)(h + pad)", () => {
  const tiles = [0.1, 0.2, 0.3].map((v) => img(2, 1, 1, [v, v + 0.05]));
  const g = makeGrid(tiles, { cols: 2, pad: 1, background: [0] });
  assert.is(g.width, 2 * (2 + 1) + 1);
  assert.is(g.height, 2 * (1 + 1) + 1);
  const at = (x: number, y: number): number => g.data[y * g.width + x]!;
  close([at(1, 1), at(2, 1)], [0.1, 0.15], 1e-7, "tile 0");
  close([at(4, 1), at(5, 1)], [0.2, 0.25], 1e-7, "tile 1");
  close([at(1, 3), at(2, 3)], [0.3, 0.35], 1e-7, "tile 2");
  for (const [x, y] of [
    [0, 0],
    [3, 1],
    [6, 1],
    [1, 2],
    [4, 3],
    [5, 3],
    [6, 4],
  ] as const)
    assert.is(at(x, y), 0, `background at ${x},${y}`);
  // defaults: ceil(sqrt(4)) = 2 columns, pad 2, white; RGB background per channel
  const d = makeGrid([0, 1, 2, 3].map(() => img(1, 1, 3, [0, 0, 0])));
  assert.is(d.width, 2 * 3 + 2);
  assert.equal(Array.from(d.data.subarray(0, 3)), [1, 1, 1]);
  const c = makeGrid([img(1, 1, 3, [0, 0, 0])], { pad: 1, background: [0.5, 0.25, 0] });
  assert.equal(Array.from(c.data.subarray(0, 3)), [0.5, 0.25, 0]);
  assert.throws(
    () => makeGrid([img(1, 1, 1, [0]), img(2, 1, 1, [0, 0])]),
    (e: unknown) => e instanceof ShapeError,
  );
  assert.throws(
    () => makeGrid([]),
    (e: unknown) => e instanceof ShapeError,
  );
});

test("CHW conversion maps [0,1] to [-1,1] planes and back, clamping", () => {
  const im = img(2, 1, 3, [0, 0.25, 0.5, 0.75, 1, 0.125]);
  const chw = imageToCHW(im);
  assert.equal(Array.from(chw), [-1, 0.5, -0.5, 1, 0, -0.75]);
  const back = chwToImage(chw, 3, 1, 2);
  assert.equal(back, im);
  const clamped = chwToImage(Float32Array.of(-3, 2, Number.NaN), 1, 1, 3);
  assert.equal(Array.from(clamped.data), [0, 1, 0]);
  assert.throws(
    () => chwToImage(Float32Array.of(0, 0), 3, 1, 1),
    (e: unknown) => e instanceof ShapeError,
  );
});

test("garbage bytes and an empty file throw FormatError naming the file", () => {
  throwsFormat(
    () => decodeImage(new TextEncoder().encode("<html>no</html>"), "cat.png"),
    "cat.png",
    "not a PNG or JPEG",
    "3c 68 74 6d",
  );
  throwsFormat(() => decodeImage(new Uint8Array(0), "empty.png"), "empty.png", "empty file");
  throwsFormat(() => decodeImage(Uint8Array.of(0x89, 0x50), "short.png"), "short.png");
});

test("truncated PNGs throw FormatError naming the file", () => {
  const bytes = encodePng(rgb8);
  for (const cut of [10, 20, 40, bytes.length - 12, bytes.length - 1]) {
    throwsFormat(() => decodeImage(bytes.subarray(0, cut), "cut.png"), "cut.png", "truncated PNG");
  }
  // a complete chunk list whose compressed image data stops early
  const raw = Buffer.alloc(2 * (1 + 9), 7);
  raw[0] = raw[10] = 0;
  const z = deflateSync(raw);
  const short = pngFile([
    ["IHDR", ihdr(3, 2, 8, 2)],
    ["IDAT", z.subarray(0, z.length - 6)],
    ["IEND", new Uint8Array(0)],
  ]);
  throwsFormat(() => decodeImage(short, "shortdata.png"), "shortdata.png", "PNG image data");
  // valid zlib stream holding too few rows
  const fewRows = pngFile([
    ["IHDR", ihdr(3, 2, 8, 2)],
    ["IDAT", deflateSync(raw.subarray(0, 10))],
    ["IEND", new Uint8Array(0)],
  ]);
  throwsFormat(() => decodeImage(fewRows, "rows.png"), "rows.png", "10 of 20 bytes");
  // flipped byte inside IDAT fails the CRC
  const flipped = Uint8Array.from(bytes);
  flipped[45] = flipped[45]! ^ 0xff;
  throwsFormat(() => decodeImage(flipped, "crc.png"), "crc.png");
});

test("a PNG header declaring 100000x100000 is rejected before decoding", () => {
  const hostile = pngFile([
    ["IHDR", ihdr(100000, 100000, 8, 6)],
    ["IDAT", deflateSync(Buffer.alloc(64))],
    ["IEND", new Uint8Array(0)],
  ]);
  throwsFormat(() => decodeImage(hostile, "huge.png"), "huge.png", "100000x100000");
  // limits are overridable
  const small = encodePng(img(4, 4, 1, new Array(16).fill(0.5)));
  throwsFormat(() => decodeImage(small, "lim.png", { maxWidth: 3 }), "lim.png", "4x4");
  throwsFormat(() => decodeImage(small, "lim.png", { maxPixels: 15 }), "lim.png", "4x4");
  assert.is(decodeImage(small, "lim.png", { maxPixels: 16, maxWidth: 4, maxHeight: 4 }).width, 4);
});

test("a zlib bomb inflating past the declared size is rejected", () => {
  // 1x1 RGB needs 4 bytes of image data; this stream inflates to 1 MiB
  const bomb = pngFile([
    ["IHDR", ihdr(1, 1, 8, 2)],
    ["IDAT", deflateSync(Buffer.alloc(1 << 20))],
    ["IEND", new Uint8Array(0)],
  ]);
  throwsFormat(() => decodeImage(bomb, "bomb.png"), "bomb.png", "inflates past");
});

test("truncated, oversized and corrupt JPEGs throw FormatError naming the file", () => {
  const rgba = new Uint8Array(16 * 16 * 4).fill(90);
  const file = new Uint8Array(jpeg.encode({ width: 16, height: 16, data: rgba }, 90).data);
  for (const cut of [3, 30, Math.floor(file.length * 0.6), file.length - 2]) {
    throwsFormat(() => decodeImage(file.subarray(0, cut), "cut.jpg"), "cut.jpg", "truncated JPEG");
  }
  // patch the frame header (SOF0) to declare 60000x60000
  const big = Uint8Array.from(file);
  let p = 2;
  while (!(big[p] === 0xff && big[p + 1] === 0xc0)) p += 2 + ((big[p + 2]! << 8) | big[p + 3]!);
  big[p + 5] = big[p + 7] = 0xea;
  big[p + 6] = big[p + 8] = 0x60;
  throwsFormat(() => decodeImage(big, "huge.jpg"), "huge.jpg", "60000x60000");
  throwsFormat(() => decodeImage(Uint8Array.of(0xff, 0xd8, 0xff, 0xd9), "eoi.jpg"), "eoi.jpg");
  throwsFormat(() => decodeImage(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0, 0x00, 0x00), "len.jpg"), "len.jpg");
});

test("readImage/writePng: atomic write leaves no temp file; read errors name the path", () => {
  const dir = mkdtempSync(join(tmpdir(), "images-test-"));
  try {
    const path = join(dir, "out.png");
    writePng(path, rgb8);
    writePng(path, rgb8); // overwrite in place
    assert.equal(readdirSync(dir), ["out.png"]);
    assert.equal(Array.from(readImage(path).data), Array.from(rgb8.data));
    const bad = join(dir, "notes.png");
    writeFileSync(bad, "<html>");
    throwsFormat(() => readImage(bad), bad, "not a PNG or JPEG");
    throwsFormat(() => readImage(path, { maxFileBytes: 10 }), path, "above the limit");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
