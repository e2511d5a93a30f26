// the resize augmentation: mask geometry, caption prefixes, paste/crop, and up-front decode errors
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator } from "../../engine/index.ts";
import { writePng } from "../../data/images.ts";
import type { Image } from "../../data/images.ts";
import { augmentInstance, listImages, loadImages, prepareClassImage } from "../../tune/dataset.ts";

const R = 32;
const white: Image = { width: R, height: R, channels: 3, data: new Float32Array(R * R * 3).fill(1) };

test("augmentation: small scales paste with a 1-pixel-inset mask and a far-away prefix", () => {
  const g = new Generator(1);
  let seenSmall = 0,
    seenLarge = 0,
    seenSame = 0;
  for (let i = 0; i < 300; i++) {
    const ex = augmentInstance(
      white,
      "photo of a <new1> dog",
      { resolution: R, maskSize: 8, aug: true, hflip: true },
      g,
    );
    const ones = ex.mask.reduce((s, v) => s + v, 0);
    // count canvas pixels that hold the image (value 1 in [-1, 1])
    let img = 0;
    for (let p = 0; p < R * R; p++) if (ex.pixels[p] === 1) img++;
    const scale = Math.round(Math.sqrt(img));
    if (ex.prompt.startsWith("a far away ") || ex.prompt.startsWith("very small ")) {
      assert.ok(scale < 0.6 * R, `prefix for scale ${scale}`);
      seenSmall++;
    } else if (ex.prompt.startsWith("zoomed in ") || ex.prompt.startsWith("close up ")) {
      assert.is(img, R * R);
      assert.is(ones, 64);
      seenLarge++;
    } else {
      assert.is(ex.prompt, "photo of a <new1> dog");
      if (img < R * R) {
        // pasted: the mask lies strictly inside the pasted box at mask resolution
        assert.ok(ones < 64);
        for (let y = 0; y < 8; y++)
          for (let x = 0; x < 8; x++) {
            if (ex.mask[y * 8 + x] !== 1) continue;
            for (let dy = 0; dy < 4; dy++)
              for (let dx = 0; dx < 4; dx++)
                assert.is(ex.pixels[(y * 4 + dy) * R + x * 4 + dx], 1, "masked-in pixel lies on the image");
          }
      } else seenSame++;
    }
  }
  assert.ok(seenSmall > 20 && seenLarge > 40, `small ${seenSmall}, large ${seenLarge}, same ${seenSame}`);
});

test("augmentation: a pasted box at a known place gives the mask the reference formula gives", () => {
  // find a draw with scale 16 (R/2) and check mask rows/cols top//f+1 .. (top+16)//f-1
  const g = new Generator(5);
  for (let i = 0; i < 2000; i++) {
    const ex = augmentInstance(white, "x", { resolution: R, maskSize: R, aug: true, hflip: false }, g);
    let top = -1,
      left = -1,
      img = 0;
    for (let p = 0; p < R * R; p++)
      if (ex.pixels[p] === 1) {
        img++;
        if (top < 0) {
          top = Math.floor(p / R);
          left = p % R;
        }
      }
    if (img !== 256) continue;
    // factor 1: mask covers rows top+1 .. top+14 and the same columns
    for (let y = 0; y < R; y++)
      for (let x = 0; x < R; x++) {
        const inside = y >= top + 1 && y < top + 15 && x >= left + 1 && x < left + 15;
        assert.is(ex.mask[y * R + x], inside ? 1 : 0, `mask at ${y},${x} (box at ${top},${left})`);
      }
    return;
  }
  assert.unreachable("no draw of scale 16 in 2000 tries");
});

test("augmentation off: the image is unchanged, prompt unchanged, mask inset by one pixel (as the reference at scale = R)", () => {
  const img: Image = {
    width: R,
    height: R,
    channels: 3,
    data: Float32Array.from({ length: R * R * 3 }, (_, i) => (i % 7) / 7),
  };
  const ex = augmentInstance(img, "p", { resolution: R, maskSize: 4, aug: false, hflip: false }, new Generator(0));
  assert.is(ex.prompt, "p");
  assert.equal(Array.from(ex.mask), [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  for (let c = 0; c < 3; c++)
    for (let q = 0; q < R * R; q++) {
      const want = img.data[q * 3 + c] * 2 - 1;
      if (Math.abs(ex.pixels[c * R * R + q] - want) > 1e-6)
        assert.unreachable(`pixel ${c},${q}: ${ex.pixels[c * R * R + q]} vs ${want}`);
    }
  const cls = prepareClassImage(img, "dog", { resolution: R, maskSize: 4, aug: true, hflip: false }, new Generator(0));
  assert.ok(cls.mask.every((v) => v === 1));
});

test("unreadable images are all reported by file name before training", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cd-ds-"));
  writePng(path.join(dir, "a.png"), white);
  fs.writeFileSync(path.join(dir, "b.png"), "not a png");
  fs.writeFileSync(path.join(dir, "c.jpg"), new Uint8Array([0xff, 0xd8, 0xff]));
  fs.writeFileSync(path.join(dir, "notes.txt"), "ignored");
  const files = listImages(dir);
  assert.equal(
    files.map((f) => path.basename(f)),
    ["a.png", "b.png", "c.jpg"],
  );
  assert.throws(
    () => loadImages(files, 16),
    (e: Error) =>
      e.name === "FormatError" &&
      /2 images could not be read/.test(e.message) &&
      e.message.includes("b.png") &&
      e.message.includes("c.jpg"),
  );
  assert.is(loadImages(files.slice(0, 1), 16)[0].width, 16);
});

test.run();
