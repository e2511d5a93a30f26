// Custom Diffusion training on a tiny model: what changes, exact save/load, exact resume, falling loss, three concepts
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, noGrad, randn, mseLoss, tensor } from "../../engine/index.ts";
import { imageToCHW } from "../../data/images.ts";
import { listImages, loadImages } from "../../tune/dataset.ts";
import { setWeightsDType } from "../../models/nn/layers.ts";
import { isTrained } from "../../tune/params.ts";
import { customise } from "../../tune/train.ts";
import { applyDeltaToUNet, loadDelta } from "../../tune/delta.ts";
import { installTokens } from "../../tune/tokens.ts";
import { conceptFolder, tinyPipeline, tmpDir } from "./tiny.ts";

const quiet = () => {};
const base = { maxTrainSteps: 4, trainBatchSize: 2, learningRate: 5e-3, log: quiet, seed: 3 };

function snapshot(m: { namedParameters(): [string, { data: ArrayLike<number> }][] }): Map<string, number[]> {
  return new Map(m.namedParameters().map(([k, p]) => [k, Array.from(p.data)]));
}

test("only attn2 to_k/to_v and the new token row change; everything else is bit-identical", () => {
  const pipe = tinyPipeline();
  const u0 = snapshot(pipe.unet),
    t0 = snapshot(pipe.textEncoder);
  const dir = conceptFolder([1, 0, 0]);
  const r = customise(pipe, {
    ...base,
    concepts: [{ instance_prompt: "photo of a <new1> square", class_prompt: "square", instance_data_dir: dir }],
    outputDir: tmpDir(),
  });
  let changed = 0;
  for (const [k, p] of pipe.unet.namedParameters()) {
    const same = Array.from(p.data).every((v, i) => v === u0.get(k)![i]);
    if (/\.attn2\.to_[kv]\.weight$/.test(k)) {
      assert.not.ok(same, `${k} should have trained`);
      changed++;
    } else assert.ok(same, `${k} must not change`);
  }
  assert.is(changed, r.delta.unet.size);
  for (const [k, p] of pipe.textEncoder.namedParameters())
    assert.ok(
      Array.from(p.data).every((v, i) => v === t0.get(k)![i]),
      `${k} must not change`,
    );
  const init = t0.get("text_model.embeddings.token_embedding.weight")!;
  const ktn = pipe.tokenizer.idsForTokenString("pll")[0]; // "ktn" is two CLIP tokens, so the first single-token default is used
  const row = r.delta.tokens.get("<new1>")!;
  assert.ok(
    row.some((v, i) => v !== init[ktn * 16 + i]),
    "the <new1> row trained away from its initializer",
  );
});

test("save -> load into a fresh base reproduces the trained model's outputs exactly (and differs from the base)", () => {
  const pipe = tinyPipeline();
  const out = tmpDir();
  customise(pipe, {
    ...base,
    concepts: [
      {
        instance_prompt: "photo of a <new1> square",
        class_prompt: "square",
        instance_data_dir: conceptFolder([0, 0, 1]),
      },
    ],
    outputDir: out,
  });
  const x = randn([1, 3, 8, 8], { generator: new Generator(1) });
  const run = (p: ReturnType<typeof tinyPipeline>) =>
    noGrad(() => p.unet.forward(x, 500, p.encodePrompt(["photo of a <new1> square"])).toArray());
  const trained = run(pipe);
  const fresh = tinyPipeline();
  const baseOut = noGrad(() => fresh.unet.forward(x, 500, fresh.encodePrompt(["photo of a square"])).toArray());
  const delta = loadDelta(out);
  applyDeltaToUNet(fresh.unet, delta);
  installTokens(fresh.tokenizer, fresh.textEncoder, delta.tokens);
  assert.equal(run(fresh), trained);
  assert.not.equal(baseOut, trained);
  // a delta from another base model is refused
  const other = tinyPipeline(99);
  assert.throws(() => applyDeltaToUNet(other.unet, delta), /trained on a different base model/);
});

test("resume from a checkpoint gives the same final delta as an uninterrupted run", () => {
  const dir = conceptFolder([0, 1, 0]);
  const spec = {
    concepts: [{ instance_prompt: "a <new1> square", class_prompt: "square", instance_data_dir: dir }],
    ...base,
    maxTrainSteps: 6,
    checkpointingSteps: 3,
  };
  const a = customise(tinyPipeline(), { ...spec, outputDir: tmpDir() });
  const out = tmpDir();
  customise(tinyPipeline(), { ...spec, outputDir: out, stopAfter: 3 });
  const b = customise(tinyPipeline(), { ...spec, outputDir: out, resume: true });
  assert.equal(b.losses, a.losses);
  for (const [k, v] of a.delta.unet) assert.equal(Array.from(b.delta.unet.get(k)!.data), Array.from(v.data), k);
  assert.equal(Array.from(b.delta.tokens.get("<new1>")!), Array.from(a.delta.tokens.get("<new1>")!));
});

test("the training loss on one concept falls (fixed noise and timesteps before and after)", () => {
  const dir = conceptFolder([1, 0, 1]);
  const x0 = tensor(
    Float32Array.from(loadImages(listImages(dir), 8).flatMap((im) => Array.from(imageToCHW(im)))),
    [2, 3, 8, 8],
  );
  const prompt = ["photo of a <new1> square", "photo of a <new1> square"];
  const probe = (p: ReturnType<typeof tinyPipeline>) =>
    noGrad(() => {
      const g = new Generator(11);
      let total = 0;
      for (let i = 0; i < 8; i++) {
        const t = 100 + i * 100;
        const noise = randn([2, 3, 8, 8], { generator: g });
        const noisy = p.scheduler.addNoise(x0, noise, [t, t]);
        const target = p.scheduler.getVelocity(x0, noise, [t, t]);
        total += mseLoss(p.unet.forward(noisy, t, p.encodePrompt(prompt)), target).item();
      }
      return total / 8;
    });
  const pipe = tinyPipeline();
  const r = customise(pipe, {
    ...base,
    maxTrainSteps: 60,
    learningRate: 1e-2,
    noaug: true,
    concepts: [{ instance_prompt: prompt[0], class_prompt: "square", instance_data_dir: dir }],
    outputDir: tmpDir(),
  });
  const after = probe(pipe);
  // the base model with the same token rows (so only the UNet differs)
  const p0 = tinyPipeline();
  installTokens(p0.tokenizer, p0.textEncoder, r.delta.tokens);
  const before = probe(p0);
  assert.ok(after < 0.85 * before, `loss before ${before.toFixed(4)}, after ${after.toFixed(4)}`);
});

test("token-only (freeze_model none) changes only the token row", () => {
  const pipe = tinyPipeline();
  const u0 = snapshot(pipe.unet);
  const r = customise(pipe, {
    ...base,
    freezeModel: "none",
    concepts: [
      {
        instance_prompt: "photo of a <new1> square",
        class_prompt: "square",
        instance_data_dir: conceptFolder([1, 1, 0]),
      },
    ],
    outputDir: tmpDir(),
  });
  for (const [k, p] of pipe.unet.namedParameters())
    assert.ok(
      Array.from(p.data).every((v, i) => v === u0.get(k)![i]),
      `${k} must not change`,
    );
  assert.is(r.delta.unet.size, 0);
  const init = pipe.textEncoder.text_model.embeddings.token_embedding.weight.data;
  const id = pipe.tokenizer.idsForTokenString("pll")[0];
  assert.ok(r.delta.tokens.get("<new1>")!.some((v, j) => v !== init[id * 16 + j]));
  const back = loadDelta(r.outputDir);
  assert.is(back.freezeModel, "none");
  assert.is(back.tokens.size, 1);
});

test("three concepts train jointly, each with its own token", () => {
  const pipe = tinyPipeline();
  const te0 = pipe.textEncoder.text_model.embeddings.token_embedding.weight.data;
  const concepts = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ].map((c, i) => ({
    instance_prompt: `photo of a <new${i + 1}> square`,
    class_prompt: "square",
    instance_data_dir: conceptFolder(c as [number, number, number]),
  }));
  const r = customise(pipe, { ...base, maxTrainSteps: 6, trainBatchSize: 3, concepts, outputDir: tmpDir() });
  assert.equal([...r.delta.tokens.keys()], ["<new1>", "<new2>", "<new3>"]);
  ["pll", "ucd", "sks"].forEach((w, i) => {
    const id = pipe.tokenizer.idsForTokenString(w)[0];
    const row = r.delta.tokens.get(`<new${i + 1}>`)!;
    assert.ok(
      row.some((v, j) => v !== te0[id * 16 + j]),
      `<new${i + 1}> trained`,
    );
  });
});

test("gradientCheckpointing: the same trained delta bit for bit as without it", () => {
  const dir = conceptFolder([0, 0, 1]);
  const run = (gradientCheckpointing: boolean) =>
    customise(tinyPipeline(), {
      ...base,
      maxTrainSteps: 2,
      gradientCheckpointing,
      concepts: [{ instance_prompt: "photo of a <new1> square", class_prompt: "square", instance_data_dir: dir }],
      outputDir: tmpDir(),
    }).delta;
  const a = run(false),
    b = run(true);
  for (const [k, v] of a.unet) assert.equal(Array.from(b.unet.get(k)!.data), Array.from(v.data), k);
  assert.equal(Array.from(b.tokens.get("<new1>")!), Array.from(a.tokens.get("<new1>")!));
});

test("bfloat16 frozen weights (and checkpointing): trains the float32 K/V and the token, leaves the half weights as they were", () => {
  const dir = conceptFolder([0, 1, 0]);
  const pipe = tinyPipeline();
  setWeightsDType(pipe.unet, "bfloat16", (k) => isTrained(k, "crossattn_kv"));
  setWeightsDType(pipe.textEncoder, "bfloat16");
  const before = new Map(pipe.unet.namedParameters().map(([k, p]) => [k, Array.from(p.data)]));
  const f32 = customise(tinyPipeline(), {
    ...base,
    maxTrainSteps: 2,
    concepts: [{ instance_prompt: "photo of a <new1> square", class_prompt: "square", instance_data_dir: dir }],
    outputDir: tmpDir(),
  }).delta;
  const r = customise(pipe, {
    ...base,
    maxTrainSteps: 2,
    gradientCheckpointing: true,
    concepts: [{ instance_prompt: "photo of a <new1> square", class_prompt: "square", instance_data_dir: dir }],
    outputDir: tmpDir(),
  });
  for (const [k, p] of pipe.unet.namedParameters()) {
    if (isTrained(k, "crossattn_kv")) {
      assert.is(p.dtype, "float32", k);
      assert.ok(
        p.data.some((v, i) => v !== before.get(k)![i]),
        `${k} trained`,
      );
    } else assert.equal(Array.from(p.data), before.get(k), `${k} unchanged`);
  }
  // the same steps as with float32 weights, up to the weights' rounding: each K/V delta close to it
  for (const [k, v] of f32.unet) {
    const a = v.data,
      b = r.delta.unet.get(k)!.data;
    let d = 0,
      m = 0;
    for (let i = 0; i < a.length; i++) {
      d = Math.max(d, Math.abs(a[i]! - b[i]!));
      m = Math.max(m, Math.abs(a[i]!));
    }
    assert.ok(d <= 0.5 * m, `${k}: delta off by ${d} of ${m}`);
  }
  assert.ok(r.delta.tokens.get("<new1>")!.some((v) => v !== 0));
});

test.run();
