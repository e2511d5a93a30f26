// Retrieval regularisation: ranking and threshold on a fake text encoder with hand-set features, the
// corpus formats, clear errors, and output that tune/train.ts reads as class_data_dir
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { writePng } from "../../data/images.ts";
import type { Image } from "../../data/images.ts";
import { ConfigError } from "../../engine/errors.ts";
import { readCorpus, retrieveRegularisation } from "../../tune/retrieve.ts";
import { customise } from "../../tune/train.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "./tiny.ts";

// hand-set features: cosine with "dog" = the first coordinate of a unit vector
const unitAt = (c: number): number[] => [c, Math.sqrt(1 - c * c), 0];
const FEATURES: Record<string, number[]> = {
  dog: [2, 0, 0], // not unit: cosine must normalise
  "a dog": unitAt(0.95),
  puppy: unitAt(0.9),
  "a dog in snow": unitAt(0.86),
  wolf: unitAt(0.8),
  cat: [0, 1, 0],
  fish: [0, 0, 1],
  bird: [0, 0.6, 0.8], // closest caption: fish at 0.8
};
let calls: string[][] = [];
const fake = (texts: readonly string[]): number[][] => {
  calls.push([...texts]);
  return texts.map((t) => {
    const f = FEATURES[t];
    if (!f) throw new Error(`fake encoder: unknown text ${t}`);
    return f;
  });
};

function png(file: string, v: number): void {
  const img: Image = { width: 4, height: 4, channels: 3, data: new Float32Array(48).fill(v) };
  writePng(file, img);
}

/** A folder corpus; files are named so that sorted order differs from the order captions are listed here. */
function folderCorpus(): { dir: string; byCaption: Map<string, string> } {
  const dir = tmpDir();
  const caps = ["wolf", "a dog", "cat", "puppy", "dog", "a dog in snow", "dog", "fish"];
  const names = caps.map((_, i) => `img-${String.fromCharCode(104 - i)}.png`); // h, g, f, ... : reverse sorted
  const order = names.map((n, i) => ({ n, c: caps[i]! })).sort((a, b) => (a.n < b.n ? -1 : 1));
  order.forEach(({ n }, i) => png(path.join(dir, n), i / 10));
  fs.writeFileSync(path.join(dir, "captions.txt"), order.map((o) => o.c).join("\n") + "\n");
  return { dir, byCaption: new Map(order.map((o) => [o.c, path.join(dir, o.n)])) };
}

const lines = (f: string) => fs.readFileSync(f, "utf8").split("\n").filter(Boolean);

test("ranks captions by cosine to the class prompt, keeps those above the threshold, best first, and writes the lists", () => {
  const { dir } = folderCorpus();
  const out = tmpDir();
  const logs: string[] = [];
  calls = [];
  const r = retrieveRegularisation({
    corpus: dir,
    classPrompt: "dog",
    textFeatures: fake,
    out,
    log: (s) => logs.push(s),
  });
  assert.is(r.total, 8);
  assert.is(r.passed, 5);
  assert.equal(
    r.kept.map((e) => e.caption),
    ["dog", "dog", "a dog", "puppy", "a dog in snow"],
  );
  assert.ok(Math.abs(r.kept[0]!.score - 1) < 1e-9 && Math.abs(r.kept[2]!.score - 0.95) < 1e-9);
  // the two "dog" images keep corpus order; every caption was encoded once
  const imgs = lines(path.join(out, "images.txt"));
  assert.equal(
    imgs,
    r.kept.map((e) => e.image),
  );
  assert.ok(imgs.every((f) => path.isAbsolute(f) && fs.existsSync(f)));
  assert.ok(imgs[0]! < imgs[1]!, "equal scores keep corpus order");
  assert.equal(lines(path.join(out, "caption.txt")), ["dog", "dog", "a dog", "puppy", "a dog in snow"]);
  assert.is(calls.flat().filter((t) => t === "dog").length, 2, "the prompt once, the caption once");
  const json = JSON.parse(fs.readFileSync(path.join(out, "retrieval.json"), "utf8"));
  assert.is(json.passed, 5);
  assert.is(json.scores.length, 8);
  assert.is(json.scores[7].caption, "cat"); // cat and fish both score 0: fish comes first in the corpus
  assert.ok(
    logs.some((l) => /5 of 8 captions/.test(l) && /0\.85/.test(l)),
    logs.join("\n"),
  );
});

test("captions pair with images in sorted file order", () => {
  const { dir, byCaption } = folderCorpus();
  const entries = readCorpus(dir);
  for (const e of entries) if (e.caption !== "dog") assert.is(e.image, byCaption.get(e.caption), e.caption);
});

test("threshold and max are options", () => {
  const { dir } = folderCorpus();
  const low = retrieveRegularisation({
    corpus: dir,
    classPrompt: "dog",
    textFeatures: fake,
    threshold: 0.7,
    out: tmpDir(),
    log: () => {},
  });
  assert.is(low.passed, 6);
  assert.is(low.kept[5]!.caption, "wolf");
  const capped = retrieveRegularisation({
    corpus: dir,
    classPrompt: "dog",
    textFeatures: fake,
    max: 2,
    out: tmpDir(),
    log: () => {},
  });
  assert.is(capped.passed, 5);
  assert.equal(
    capped.kept.map((e) => e.caption),
    ["dog", "dog"],
  );
  const strict = retrieveRegularisation({
    corpus: dir,
    classPrompt: "dog",
    textFeatures: fake,
    threshold: 0.9,
    out: tmpDir(),
    log: () => {},
  });
  assert.equal(
    strict.kept.map((e) => e.caption),
    ["dog", "dog", "a dog"],
    "cosine > threshold: 0.9 itself is out",
  );
});

test("JSON, JSONL and TSV manifests with relative image paths give the same ranking", () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, "imgs"));
  const rows = [
    ["imgs/a.png", "cat"],
    ["imgs/b.png", "puppy"],
    ["imgs/c.png", "a dog"],
  ];
  rows.forEach(([f], i) => png(path.join(dir, f!), i / 4));
  fs.writeFileSync(path.join(dir, "m.json"), JSON.stringify(rows.map(([image, caption]) => ({ image, caption }))));
  fs.writeFileSync(
    path.join(dir, "m.jsonl"),
    rows.map(([image, caption]) => JSON.stringify({ image, caption })).join("\n") + "\n",
  );
  fs.writeFileSync(path.join(dir, "m.tsv"), "image\tcaption\n" + rows.map((r) => r.join("\t")).join("\n") + "\n");
  for (const m of ["m.json", "m.jsonl", "m.tsv"]) {
    const r = retrieveRegularisation({
      corpus: path.join(dir, m),
      classPrompt: "dog",
      textFeatures: fake,
      out: tmpDir(),
      log: () => {},
    });
    assert.equal(
      r.kept.map((e) => [path.relative(dir, e.image), e.caption]),
      [
        ["imgs/c.png", "a dog"],
        ["imgs/b.png", "puppy"],
      ],
      m,
    );
  }
});

test("clear errors: nothing passes, missing files, caption count mismatch, no corpus", () => {
  const { dir } = folderCorpus();
  const out = tmpDir();
  retrieveRegularisation({ corpus: dir, classPrompt: "dog", textFeatures: fake, out, log: () => {} });
  assert.ok(fs.existsSync(path.join(out, "images.txt")));
  // nothing passes: the error names the corpus, the prompt and the best captions; no stale list stays behind
  assert.throws(
    () => retrieveRegularisation({ corpus: dir, classPrompt: "bird", textFeatures: fake, out, log: () => {} }),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message.includes(dir) &&
      e.message.includes('"bird"') &&
      /best: "fish" 0\.800/.test(e.message),
  );
  assert.not.ok(fs.existsSync(path.join(out, "images.txt")));
  assert.ok(fs.existsSync(path.join(out, "retrieval.json")), "scores kept for choosing a threshold");
  const m = path.join(tmpDir(), "m.json");
  fs.writeFileSync(m, JSON.stringify([{ image: "nope.png", caption: "dog" }]));
  assert.throws(
    () => retrieveRegularisation({ corpus: m, classPrompt: "dog", textFeatures: fake, out: tmpDir(), log: () => {} }),
    (e: Error) => e instanceof ConfigError && e.message.includes(m) && e.message.includes("nope.png"),
  );
  fs.appendFileSync(path.join(dir, "captions.txt"), "cat\n");
  assert.throws(
    () => readCorpus(dir),
    (e: Error) => e instanceof ConfigError && e.message.includes(dir) && /8 images but 9 captions/.test(e.message),
  );
  const bare = tmpDir();
  png(path.join(bare, "x.png"), 0.5);
  assert.throws(() => readCorpus(bare), /without captions\.txt/);
  assert.throws(() => readCorpus(path.join(bare, "missing")), /does not exist/);
});

test("the output is a class_data_dir that customise trains with (its images and captions)", () => {
  const { dir } = folderCorpus();
  const reg = retrieveRegularisation({
    corpus: dir,
    classPrompt: "dog",
    textFeatures: fake,
    max: 3,
    out: tmpDir(),
    log: () => {},
  });
  // retrieval output is itself a corpus (images.txt + caption.txt)
  assert.equal(
    readCorpus(reg.out).map((e) => e.caption),
    ["dog", "dog", "a dog"],
  );
  const logs: string[] = [];
  const r = customise(tinyPipeline(), {
    concepts: [
      {
        instance_prompt: "photo of a <new1> dog",
        class_prompt: "dog",
        instance_data_dir: conceptFolder([1, 0, 0]),
        class_data_dir: reg.out,
      },
    ],
    outputDir: tmpDir(),
    maxTrainSteps: 2,
    trainBatchSize: 1,
    learningRate: 1e-3,
    log: (s) => logs.push(s),
  });
  assert.is(r.steps, 2);
  assert.ok(
    logs.some((l) => /3 regularisation image\(s\)/.test(l)),
    logs.join("\n"),
  );
});

test.run();
