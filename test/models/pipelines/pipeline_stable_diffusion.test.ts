// StableDiffusionPipeline.generate driven from research code: prompt embeddings and token ids in place of
// prompts, starting latents, and the onStep callback that sees (and may replace) each step's latents
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, Generator, ShapeError, Tensor, randn, zeros } from "../../../engine/index.ts";
import type { StepState } from "../../../models/pipelines/pipeline_stable_diffusion.ts";
import { tinyPipeline } from "../../tune/tiny.ts";

const pipe = tinyPipeline(0);
const base = { numInferenceSteps: 3, guidanceScale: 3, seed: 11, outputLatents: true } as const;
const same = (a: Tensor, b: Tensor, what: string) => {
  assert.equal(a.shape, b.shape, `${what}: shape`);
  assert.equal(Array.from(a.data), Array.from(b.data), what);
};

test("promptEmbeds / promptIds give the prompt's result; negative embeddings and ids the negative prompt's", () => {
  const ref = pipe.generate({ ...base, prompt: ["a red square", "a blue circle"], negativePrompt: "blurry" }).latents;
  const embeds = pipe.encodePrompt(["a red square", "a blue circle"]);
  const negEmbeds = pipe.encodePrompt(["blurry", "blurry"]);
  same(pipe.generate({ ...base, promptEmbeds: embeds, negativePrompt: "blurry" }).latents, ref, "promptEmbeds");
  same(
    pipe.generate({ ...base, promptEmbeds: embeds, negativePromptEmbeds: negEmbeds }).latents,
    ref,
    "both embeddings",
  );
  const ids = pipe.tokenize(["a red square", "a blue circle"]);
  same(
    pipe.generate({ ...base, promptIds: ids, negativePromptIds: pipe.tokenize(["blurry", "blurry"]) }).latents,
    ref,
    "token ids",
  );
  // without a negative, the empty prompt is the unconditional context, as for a text prompt
  same(
    pipe.generate({ ...base, promptEmbeds: embeds }).latents,
    pipe.generate({ ...base, prompt: ["a red square", "a blue circle"] }).latents,
    "default negative",
  );
  // numImagesPerPrompt repeats each embedding row in place (p0, p0, p1, p1), as diffusers does
  same(
    pipe.generate({ ...base, promptEmbeds: embeds, numImagesPerPrompt: 2 }).latents,
    pipe.generate({ ...base, prompt: ["a red square", "a blue circle"], numImagesPerPrompt: 2 }).latents,
    "numImagesPerPrompt",
  );
  // a shorter context: the negative prompt is padded to its length, as diffusers does
  const short = pipe.textEncoder.forward(pipe.tokenize(["a red square"], 12)).last_hidden_state;
  const viaShort = pipe.generate({ ...base, promptEmbeds: short, negativePrompt: "blurry" }).latents;
  same(
    viaShort,
    pipe.generate({
      ...base,
      promptIds: pipe.tokenize(["a red square"], 12),
      negativePromptIds: pipe.tokenize(["blurry"], 12),
    }).latents,
    "length 12",
  );
  // edited embeddings change the result
  assert.not.equal(
    Array.from(pipe.generate({ ...base, promptEmbeds: embeds.mul(0.5) }).latents.data),
    Array.from(ref.data),
  );
});

test("starting latents replace the generator's draw (scaled by initNoiseSigma); height and width follow from them", () => {
  const ref = pipe.generate({ ...base, prompt: "a cat" });
  const drawn = randn([1, 3, 8, 8], { generator: new Generator(11) });
  same(pipe.generate({ ...base, prompt: "a cat", latents: drawn }).latents, ref.latents, "the same draw given");
  const small = randn([2, 3, 4, 4], { generator: new Generator(2) });
  const out = pipe.generate({ ...base, prompt: "a cat", numImagesPerPrompt: 2, latents: small, outputLatents: false });
  assert.equal(out.latents.shape, [2, 3, 4, 4]);
  assert.is(out.images.length, 2);
  assert.is(out.images[0]!.width, 4);
  assert.throws(
    () => pipe.generate({ ...base, prompt: "a cat", latents: small }),
    (e: Error) => e instanceof ShapeError && /latents must be \(1, 3, h, w\)/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, prompt: "a cat", latents: drawn, height: 16 }),
    (e: Error) => e instanceof ShapeError && /height x width/.test(e.message),
  );
});

test("onStep receives each step's latents, guided noise prediction and x0, and a returned tensor replaces the latents", () => {
  const seen: { step: number; total: number; t: number; latents: Float32Array | Float64Array; state: StepState }[] = [];
  const ref = pipe.generate({
    ...base,
    prompt: "a cat",
    onStep: (step, total, t, state) => {
      seen.push({ step, total, t, latents: Float32Array.from(state.latents.data), state });
    },
  });
  assert.equal(
    seen.map((s) => s.step),
    [1, 2, 3],
  );
  assert.equal(
    seen.map((s) => s.total),
    [3, 3, 3],
  );
  assert.equal(
    seen.map((s) => s.t),
    Array.from(pipe.scheduler.timesteps),
  );
  assert.equal(Array.from(seen[2]!.latents), Array.from(ref.latents.data), "the last step's latents are the result");
  for (const s of seen) {
    assert.equal(s.state.noisePred.shape, [1, 3, 8, 8]);
    assert.equal(s.state.predOriginalSample.shape, [1, 3, 8, 8]);
  }
  // returning the latents unchanged (or nothing, or a non-tensor) leaves the run as it was
  same(
    pipe.generate({ ...base, prompt: "a cat", onStep: (_s, _n, _t, st) => st.latents }).latents,
    ref.latents,
    "identity",
  );
  same(
    pipe.generate({ ...base, prompt: "a cat", onStep: () => true }).latents,
    ref.latents,
    "non-tensor return ignored",
  );
  // steering: replace the latents after step 2; step 3 starts from them
  const steered = pipe.generate({
    ...base,
    prompt: "a cat",
    onStep: (step, _n, _t, st) => (step === 2 ? zeros(st.latents.shape) : undefined),
  });
  assert.not.equal(Array.from(steered.latents.data), Array.from(ref.latents.data));
  const fromZero: number[] = [];
  pipe.generate({
    ...base,
    prompt: "a cat",
    onStep: (step, _n, _t, st) => {
      if (step === 3) fromZero.push(...st.latents.data);
      return step === 2 ? zeros(st.latents.shape) : undefined;
    },
  });
  assert.equal(fromZero, Array.from(steered.latents.data));
  assert.throws(
    () => pipe.generate({ ...base, prompt: "a cat", onStep: () => zeros([1, 3, 4, 4]) }),
    (e: Error) => e instanceof ShapeError && /onStep returned latents/.test(e.message),
  );
});

test("errors: one of prompt / promptIds / promptEmbeds, embedding width, negative context shape", () => {
  const embeds = pipe.encodePrompt(["a cat"]);
  assert.throws(
    () => pipe.generate({ ...base }),
    (e: Error) => e instanceof ConfigError && /exactly one of prompt, promptIds, promptEmbeds/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, prompt: "a cat", promptEmbeds: embeds }),
    (e: Error) => e instanceof ConfigError && /exactly one/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, promptEmbeds: zeros([1, 77, 8]) }),
    (e: Error) => e instanceof ShapeError && /promptEmbeds must be \(B, L, 16\)/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, promptEmbeds: embeds, negativePrompt: "x", negativePromptEmbeds: embeds }),
    (e: Error) => e instanceof ConfigError && /at most one/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, promptEmbeds: embeds, negativePromptEmbeds: zeros([1, 10, 16]) }),
    (e: Error) => e instanceof ShapeError && /negative context/.test(e.message),
  );
  assert.throws(
    () => pipe.generate({ ...base, promptIds: [[49406, 49407], [49406]] }),
    (e: Error) => e instanceof ShapeError && /rows of one length/.test(e.message),
  );
});

test.run();
