// Generated regularisation on the tiny pipeline: fixed seeds, the on-disk cache (a second call samples
// nothing), partial reuse after an interruption, a key that changes with the inputs, and use as class_data_dir
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { readImage } from "../../data/images.ts";
import { ConfigError } from "../../engine/errors.ts";
import type { StableDiffusionPipeline } from "../../models/pipelines/pipeline_stable_diffusion.ts";
import { generateRegularisation } from "../../tune/generate_reg.ts";
import { customise } from "../../tune/train.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "./tiny.ts";

/** Counts pipeline.generate calls (and the images they asked for). */
function counted(pipe: StableDiffusionPipeline): { calls: number; images: number } {
  const c = { calls: 0, images: 0 };
  const gen = pipe.generate.bind(pipe);
  pipe.generate = (o) => {
    c.calls++;
    c.images += o.numImagesPerPrompt ?? 1;
    return gen(o);
  };
  return c;
}

const opts = { classPrompt: "square", numImages: 3, batchSize: 2, steps: 2, guidanceScale: 1, seed: 5 };
const bytes = (files: string[]) => files.map((f) => Array.from(readImage(f).data));

test("samples 'photo of a {class}' once; a second call reuses the cached images without sampling", () => {
  const cache = tmpDir();
  const pipe = tinyPipeline();
  const c = counted(pipe);
  const logs: string[] = [];
  const a = generateRegularisation({ ...opts, pipeline: pipe, cacheDir: cache, log: (s) => logs.push(s) });
  assert.is(a.prompt, "photo of a square");
  assert.is(c.calls, 2, "3 images in batches of 2");
  assert.is(c.images, 3);
  assert.is(a.generated, 3);
  assert.equal(
    fs
      .readdirSync(a.dir)
      .filter((f) => f.endsWith(".png"))
      .sort(),
    ["0.png", "1.png", "2.png"],
  );
  assert.ok(a.dir.startsWith(cache));
  const b = generateRegularisation({ ...opts, pipeline: pipe, cacheDir: cache, log: (s) => logs.push(s) });
  assert.is(c.calls, 2, "no sampling on the second call");
  assert.is(b.dir, a.dir);
  assert.is(b.reused, 3);
  assert.ok(
    logs.some((l) => /reusing 3 cached images/.test(l)),
    logs.join("\n"),
  );
  // fixed seeds: a fresh cache gives the same pixels
  const fresh = generateRegularisation({ ...opts, pipeline: tinyPipeline(), cacheDir: tmpDir(), log: () => {} });
  assert.equal(bytes(fresh.files), bytes(a.files));
});

test("the key changes with the seed, N, steps, guidance, prompt and the base model", () => {
  const cache = tmpDir();
  const pipe = tinyPipeline();
  const key = (o: Partial<typeof opts>, p: StableDiffusionPipeline = pipe) =>
    generateRegularisation({ ...opts, numImages: 1, ...o, pipeline: p, cacheDir: cache, log: () => {} }).key;
  const k0 = key({});
  const keys = [
    key({ seed: 6 }),
    key({ numImages: 2 }),
    key({ steps: 3 }),
    key({ guidanceScale: 2 }),
    key({ classPrompt: "circle" }),
    key({}, tinyPipeline(1)),
  ];
  assert.is(new Set([k0, ...keys]).size, 7);
  assert.is(key({}), k0);
});

test("an interrupted run keeps its finished batches and samples only the rest", () => {
  const cache = tmpDir();
  const first = generateRegularisation({ ...opts, pipeline: tinyPipeline(), cacheDir: cache, log: () => {} });
  const want = bytes(first.files);
  fs.rmSync(path.join(first.dir, "generation.json"));
  fs.rmSync(first.files[2]!); // the second batch is missing
  const pipe = tinyPipeline();
  const c = counted(pipe);
  const logs: string[] = [];
  const again = generateRegularisation({ ...opts, pipeline: pipe, cacheDir: cache, log: (s) => logs.push(s) });
  assert.is(c.calls, 1);
  assert.is(again.generated, 1);
  assert.is(again.reused, 2);
  assert.ok(
    logs.some((l) => /reusing 2 cached images/.test(l)),
    logs.join("\n"),
  );
  assert.equal(bytes(again.files), want, "the re-sampled batch has its fixed seed");
});

test("bad options are named", () => {
  assert.throws(
    () =>
      generateRegularisation({ ...opts, numImages: 0, pipeline: tinyPipeline(), cacheDir: tmpDir(), log: () => {} }),
    (e: Error) => e instanceof ConfigError && /numImages/.test(e.message),
  );
  assert.throws(
    () =>
      generateRegularisation({
        ...opts,
        promptTemplate: "photo",
        pipeline: tinyPipeline(),
        cacheDir: tmpDir(),
        log: () => {},
      }),
    /\{\}/,
  );
});

test("the folder is a class_data_dir for customise", () => {
  const reg = generateRegularisation({ ...opts, pipeline: tinyPipeline(), cacheDir: tmpDir(), log: () => {} });
  const logs: string[] = [];
  const r = customise(tinyPipeline(), {
    concepts: [
      {
        instance_prompt: "photo of a <new1> square",
        class_prompt: "square",
        instance_data_dir: conceptFolder([0, 0, 1]),
        class_data_dir: reg.dir,
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
