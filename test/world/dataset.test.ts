// Tests of the small world's corpus: the committed built files (counts, vendors, captions through the
// real CLIP tokenizer, held-out concepts), the loader's checks, and the builder on a fake package folder.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { writePng } from "../../data/images.ts";
import { FormatError } from "../../engine/errors.ts";
import {
  CAPTION_TEMPLATES,
  applyTemplate,
  buildDataset,
  corpusTokenIds,
  readClassList,
} from "../../world/build_dataset.ts";
import {
  WORLD_DATA_DIR,
  loadCaptionLines,
  loadHeldoutConcepts,
  loadWorldDataset,
  promptsWithToken,
  splitTrainValidation,
  stackImages,
} from "../../world/dataset.ts";

const ds = loadWorldDataset();
const held = loadHeldoutConcepts(ds);
const list = readClassList();

test("built corpus: ~120 classes, in the curated order, two vendors each", () => {
  assert.ok(ds.classes.length >= 110 && ds.classes.length <= 130, `${ds.classes.length} classes`);
  assert.equal(
    ds.classes.map((c) => c.caption),
    list.train.map((c) => c.caption),
    "world/data is out of date with classes.json",
  );
  assert.equal(
    ds.classes.map((c) => c.emoji),
    list.train.map((c) => c.emoji),
  );
  assert.is(new Set(ds.classes.map((c) => c.caption)).size, ds.classes.length);
  for (const c of ds.classes) {
    assert.equal(c.imageIndices.map((i) => ds.vendors[i]).sort(), ["google", "twitter"], c.caption);
    for (const i of c.imageIndices) assert.is(ds.captions[i], c.caption);
  }
  assert.is(ds.images.length, 2 * ds.classes.length);
  assert.is(ds.size, 16);
});

test("images: (3,16,16) CHW in [-1,1], not blank, vendors differ, classes differ", () => {
  const seen = new Set<string>();
  ds.images.forEach((img, i) => {
    assert.is(img.length, 3 * 16 * 16);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of img) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    assert.ok(lo >= -1 && hi <= 1, `image ${i} in [${lo}, ${hi}]`);
    assert.ok(hi - lo > 0.3, `image ${i} (${ds.captions[i]}) is nearly blank`);
    // composited on white: the one-pixel border is mostly background
    let border = 0;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++) if (x % 15 === 0 || y % 15 === 0) border += img[c * 256 + y * 16 + x]!;
    assert.ok(border / (3 * 60) > 0.3, `image ${i} (${ds.captions[i]}) border mean ${border / 180} is not white`);
    const key = Array.from(img, (v) => Math.round((v + 1) * 127.5)).join(",");
    assert.not.ok(seen.has(key), `image ${i} (${ds.captions[i]}) duplicates another image`);
    seen.add(key);
  });
});

test("every caption tokenizes and round-trips; tokenIds is the corpus's id set", () => {
  const tok = CLIPTokenizer.default();
  const ids = new Set(ds.tokenIds);
  for (const c of ds.classes) {
    const enc = tok.encode(c.caption, { padding: "none" });
    assert.is(enc[0], tok.bosTokenId);
    assert.is(enc[enc.length - 1], tok.eosTokenId);
    assert.ok(enc.length <= 8, `${c.caption}: ${enc.length} tokens`);
    assert.is(tok.decode(enc), c.caption);
    for (const id of enc) assert.ok(ids.has(id), `${c.caption}: id ${id} not in tokenIds`);
  }
  const lines = loadCaptionLines();
  assert.is(lines.length, CAPTION_TEMPLATES.length * ds.classes.length);
  assert.ok(
    lines.includes("dog face") && lines.includes("an emoji of an owl") && lines.includes("photo of a red apple"),
  );
  assert.equal(ds.tokenIds, corpusTokenIds(lines));
  assert.ok(ds.tokenIds.length < 400, `${ds.tokenIds.length} token ids`);
  assert.ok(ids.has(49406) && ids.has(49407));
});

test("held-out concepts: disjoint from training, class word is a training caption, prompts expressible", () => {
  assert.ok(held.length >= 6 && held.length <= 10, `${held.length} concepts`);
  const trainEmoji = new Set(ds.classes.flatMap((c) => [c.emoji, c.unified]));
  const trainCaptions = new Set(ds.classes.map((c) => c.caption));
  const tok = CLIPTokenizer.default();
  tok.addTokens(["<new1>"]);
  const newId = tok.convertTokensToIds("<new1>") as number;
  const ids = new Set(ds.tokenIds);
  const trainImages = new Set(ds.images.map((im) => Array.from(im).join(",")));
  for (const h of held) {
    assert.not.ok(trainEmoji.has(h.emoji) || trainEmoji.has(h.unified), `${h.name} is a training class`);
    assert.not.ok(trainCaptions.has(h.name), `${h.name} is a training caption`);
    assert.ok(trainCaptions.has(h.class), `${h.name}: class "${h.class}" is not a training caption`);
    assert.is(ds.classes[h.classIndex]!.caption, h.class);
    assert.ok(h.images.length >= 2 && h.images.length <= 4, `${h.name}: ${h.images.length} images`);
    for (const im of h.images) {
      assert.is(im.length, 3 * 16 * 16);
      assert.ok(im.every((v) => v >= -1 && v <= 1));
      assert.not.ok(trainImages.has(Array.from(im).join(",")), `${h.name}: image equals a training image`);
    }
    assert.ok(h.prompts.length >= 5 && h.prompts.length <= 10);
    for (const p of h.prompts) {
      assert.ok(p.includes(h.token));
      const enc = tok.encode(p, { padding: "none" });
      assert.is(enc.filter((id) => id === newId).length, 1, p);
      for (const id of enc)
        assert.ok(id === newId || ids.has(id), `"${p}": token ${tok.convertIdsToTokens([id])[0]} is not in the corpus`);
    }
  }
  assert.is(new Set(held.map((h) => h.emoji)).size, held.length);
  assert.equal(promptsWithToken(held[0]!, "<new2>")[0], held[0]!.prompts[0]!.replace("<new1>", "<new2>"));
});

test("splitTrainValidation: deterministic, disjoint, one validation image per class, vendors alternate", () => {
  const a = splitTrainValidation(ds);
  const b = splitTrainValidation(ds);
  assert.equal(a, b);
  assert.is(a.validation.length, ds.classes.length);
  assert.is(a.train.length + a.validation.length, ds.images.length);
  const v = new Set(a.validation);
  assert.ok(a.train.every((i) => !v.has(i)));
  assert.equal(new Set(a.validation.map((i) => ds.labels[i])).size, ds.classes.length);
  const vendors = a.validation.map((i) => ds.vendors[i]);
  assert.ok(vendors.includes("twitter") && vendors.includes("google"));
  const stacked = stackImages(ds.images, a.validation.slice(0, 3));
  assert.is(stacked.length, 3 * 768);
  assert.equal(Array.from(stacked.subarray(768, 1536)), Array.from(ds.images[a.validation[1]!]!));
});

test("applyTemplate uses 'an' before a vowel", () => {
  assert.is(applyTemplate("a {}", "owl"), "an owl");
  assert.is(applyTemplate("photo of a {}", "dog face"), "photo of a dog face");
  assert.is(applyTemplate("{}", "apple"), "apple");
});

function copyData(to: string): void {
  for (const f of ["train.json", "train.png", "heldout.json", "heldout.png", "captions.txt"]) {
    writeFileSync(join(to, f), readFileSync(join(WORLD_DATA_DIR, f)));
  }
}

test("loader rejects inconsistent files with FormatError", () => {
  const dir = mkdtempSync(join(tmpdir(), "world-ds-"));
  try {
    copyData(dir);
    const meta = JSON.parse(readFileSync(join(dir, "train.json"), "utf8"));
    writeFileSync(
      join(dir, "train.json"),
      JSON.stringify({ ...meta, images: [...meta.images, { class: 9999, vendor: "google", tile: 0 }] }),
    );
    assert.throws(
      () => loadWorldDataset(dir),
      (e: unknown) => e instanceof FormatError && /images\[\d+\]/.test(e.message),
    );
    writeFileSync(
      join(dir, "train.json"),
      JSON.stringify({ ...meta, images: [...meta.images, { class: 0, vendor: "google", tile: 100000 }] }),
    );
    assert.throws(
      () => loadWorldDataset(dir),
      (e: unknown) => e instanceof FormatError && /tile 100000/.test(e.message),
    );
    writeFileSync(join(dir, "train.json"), JSON.stringify({ ...meta, format: "other" }));
    assert.throws(
      () => loadWorldDataset(dir),
      (e: unknown) => e instanceof FormatError && /not a small-world-dataset/.test(e.message),
    );
    const hm = JSON.parse(readFileSync(join(dir, "heldout.json"), "utf8"));
    hm.concepts[0].class = "unicorn";
    writeFileSync(join(dir, "heldout.json"), JSON.stringify(hm));
    assert.throws(
      () => loadHeldoutConcepts(ds, dir),
      (e: unknown) => e instanceof FormatError && /not a training caption/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A fake node_modules with both emoji packages: 64x64 RGBA PNGs of coloured discs on transparency. */
function fakePackages(root: string, emojis: { short: string; unified: string; rgb: [number, number, number] }[]): void {
  for (const v of ["twitter", "google"]) {
    const pkg = join(root, `emoji-datasource-${v}`);
    mkdirSync(join(pkg, "img", v, "64"), { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: `emoji-datasource-${v}`, version: "16.0.0" }));
    const table = emojis.map((e) => ({
      name: e.short.toUpperCase(),
      unified: e.unified,
      image: `${e.unified.toLowerCase()}.png`,
      short_names: [e.short],
      has_img_twitter: true,
      has_img_google: true,
    }));
    writeFileSync(join(pkg, "emoji.json"), JSON.stringify(table));
    for (const e of emojis) {
      const data = new Float32Array(64 * 64 * 4);
      for (let y = 0; y < 64; y++) {
        for (let x = 0; x < 64; x++) {
          const r = v === "twitter" ? 28 : 20; // vendors draw different sizes
          const inside = (x - 31.5) ** 2 + (y - 31.5) ** 2 < r * r;
          data.set([...e.rgb, inside ? 1 : 0], (y * 64 + x) * 4);
        }
      }
      writePng(join(pkg, "img", v, "64", `${e.unified.toLowerCase()}.png`), {
        width: 64,
        height: 64,
        channels: 4,
        data,
      });
    }
  }
}

test("buildDataset on fake packages: deterministic files that the loader reads back", () => {
  const root = mkdtempSync(join(tmpdir(), "world-build-"));
  try {
    fakePackages(join(root, "nm"), [
      { short: "red_thing", unified: "1F534", rgb: [1, 0, 0] },
      { short: "blue_thing", unified: "1F535", rgb: [0, 0, 1] },
      { short: "green_thing", unified: "1F7E2", rgb: [0, 1, 0] },
    ]);
    const classes = join(root, "classes.json");
    writeFileSync(
      classes,
      JSON.stringify({
        train: [
          { emoji: "red_thing", caption: "red circle" },
          { emoji: "blue_thing", caption: "blue circle" },
        ],
        heldout: [
          {
            emoji: "green_thing",
            name: "green circle",
            class: "red circle",
            prompts: [
              "<new1> red circle",
              "a <new1> red circle",
              "a <new1> blue circle",
              "photo of a <new1> circle",
              "an emoji of a <new1> circle",
            ],
          },
        ],
      }),
    );
    const r1 = buildDataset({ from: join(root, "nm"), out: join(root, "a"), classes });
    buildDataset({ from: join(root, "nm"), out: join(root, "b"), classes });
    assert.equal(r1, {
      classes: 2,
      images: 4,
      heldout: 1,
      tokenIds: corpusTokenIds(
        readFileSync(join(root, "a", "captions.txt"), "utf8")
          .trim()
          .split("\n"),
      ).length,
    });
    for (const f of ["train.json", "train.png", "heldout.json", "heldout.png", "captions.txt"]) {
      assert.ok(
        readFileSync(join(root, "a", f)).equals(readFileSync(join(root, "b", f))),
        `${f} differs between builds`,
      );
    }
    const small = loadWorldDataset(join(root, "a"));
    assert.equal(small.captions, ["red circle", "red circle", "blue circle", "blue circle"]);
    assert.equal(small.vendors, ["twitter", "google", "twitter", "google"]);
    // centre pixel of the red disc is pure red, the corner is the white background
    const red = small.images[0]!;
    const centre = 8 * 16 + 8;
    assert.equal([red[centre], red[256 + centre], red[512 + centre]], [1, -1, -1]);
    assert.equal([red[0], red[256], red[512]], [1, 1, 1]);
    // the larger twitter disc covers more pixels than the google one
    const redCount = (img: Float32Array): number => Array.from(img.subarray(256, 512)).filter((g) => g < 0).length;
    assert.ok(redCount(small.images[0]!) > redCount(small.images[1]!));
    const h = loadHeldoutConcepts(small, join(root, "a"));
    assert.is(h.length, 1);
    assert.is(h[0]!.classIndex, 0);
    assert.is(h[0]!.images[0]![256 + centre], 1); // green channel of the green disc
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("readClassList rejects a held-out emoji in training, a class word that is not a caption, duplicates", () => {
  const root = mkdtempSync(join(tmpdir(), "world-classes-"));
  try {
    const p = join(root, "c.json");
    const prompts = ["<new1> dog", "a <new1> dog", "b <new1> dog", "c <new1> dog", "d <new1> dog"];
    const write = (o: unknown): void => writeFileSync(p, JSON.stringify(o));
    write({
      train: [{ emoji: "dog", caption: "dog" }],
      heldout: [{ emoji: "dog", name: "wolf", class: "dog", prompts }],
    });
    assert.throws(() => readClassList(p), /also a training class/);
    write({
      train: [{ emoji: "dog", caption: "dog" }],
      heldout: [{ emoji: "wolf", name: "wolf", class: "canine", prompts }],
    });
    assert.throws(() => readClassList(p), /not a training caption/);
    write({
      train: [
        { emoji: "dog", caption: "dog" },
        { emoji: "cat", caption: "dog" },
      ],
      heldout: [],
    });
    assert.throws(() => readClassList(p), /used twice/);
    write({ train: [{ emoji: "dog", caption: "Dog" }], heldout: [] });
    assert.throws(() => readClassList(p), /lowercase/);
    write({
      train: [{ emoji: "dog", caption: "dog" }],
      heldout: [{ emoji: "wolf", name: "wolf", class: "dog", prompts: ["dog"] }],
    });
    assert.throws(() => readClassList(p), /5-10 prompts/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test.run();
