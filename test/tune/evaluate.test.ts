// metrics: cosine text/image alignment and CLIPScore against hand values, KID's unbiased MMD^2 against a
// hand-computed example, KID of identical sets ~0, a custom scorer and a tiny CLIPModel through evaluate()
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, randn } from "../../engine/index.ts";
import type { Image } from "../../data/images.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { withInitGenerator } from "../../models/nn/module.ts";
import { CLIPModel } from "../../models/clip/modeling_clip.ts";
import {
  clipScorer,
  cosine,
  evaluate,
  formatEvaluation,
  imageAlignment,
  kid,
  mmdUnbiased,
  polyKernel,
  scoringPrompt,
  textAlignment,
} from "../../tune/evaluate.ts";

const close = (a: number, b: number, tol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test("cosine metrics and CLIPScore against hand values", () => {
  close(cosine([1, 0], [1, 1]), Math.SQRT1_2);
  close(cosine([0, 0], [1, 1]), 0);
  const ta = textAlignment(
    [
      [1, 0],
      [1, 1],
      [-1, 0],
    ],
    [
      [2, 0],
      [0, 3],
      [1, 0],
    ],
  );
  close(ta.cosine, (1 + Math.SQRT1_2 - 1) / 3);
  close(ta.clipScore, (2.5 * 1 + 2.5 * Math.SQRT1_2 + 0) / 3); // negative cosine clipped to 0
  close(
    imageAlignment(
      [
        [1, 0],
        [0, 1],
      ],
      [
        [1, 1],
        [1, 0],
      ],
    ),
    (Math.SQRT1_2 + 1 + Math.SQRT1_2 + 0) / 4,
  );
  assert.throws(() => textAlignment([[1, 0]], []), /one text per image/);
});

test("KID: the unbiased MMD^2 of a hand-computed example", () => {
  // k(a, b) = (a.b / 2 + 1)^3; Kxx off-diagonal 1, Kyy off-diagonal 1, Kxy: 3.375, 1, 3.375, 1
  const x = [
      [1, 0],
      [0, 1],
    ],
    y = [
      [1, 1],
      [0, 0],
    ];
  close(polyKernel([1, 0], [1, 1]), 3.375);
  close(mmdUnbiased(x, y), 1 + 1 - (2 * 8.75) / 4);
  const r = kid(x, y, { subsets: 5 });
  close(r.mean, -2.375);
  close(r.std, 0);
  close(r.x1000.mean, -2375);
  assert.is(r.subsetSize, 2);
  // different set sizes: (sum_{i!=j} Kxx)/(m(m-1)) + (sum Kyy)/(n(n-1)) - 2 sum Kxy/(mn)
  const z = [
    [1, 0],
    [0, 1],
    [1, 1],
  ];
  const kzz = (2 * (polyKernel(z[0]!, z[1]!) + polyKernel(z[0]!, z[2]!) + polyKernel(z[1]!, z[2]!))) / 6;
  let kzy = 0;
  for (const a of z) for (const b of y) kzy += polyKernel(a, b);
  close(mmdUnbiased(z, y), kzz + 1 - (2 * kzy) / 6);
});

test("KID: explicit subsets (another implementation's draws), a given generator, and the draws returned", () => {
  const g = new Generator(3);
  const feats = (n: number, shift: number) =>
    Array.from({ length: n }, () => Array.from(randn([8], { generator: g }).data, (v) => v + shift));
  const real = feats(12, 0),
    fake = feats(10, 0.3);
  // e.g. torchmetrics' torch.randperm(n)[:m] per subset, recorded there and replayed here
  const indices = {
    real: [
      [3, 0, 7, 11],
      [5, 2, 9, 1],
      [10, 4, 6, 8],
    ],
    fake: [
      [9, 1, 4, 0],
      [2, 8, 3, 6],
      [7, 5, 0, 9],
    ],
  };
  const r = kid(real, fake, { indices });
  const vals = indices.real.map((ri, k) =>
    mmdUnbiased(
      ri.map((i) => real[i]!),
      indices.fake[k]!.map((i) => fake[i]!),
    ),
  );
  const mu = vals.reduce((a, b) => a + b, 0) / 3;
  close(r.mean, mu, 1e-15);
  close(r.std, Math.sqrt(vals.reduce((a, v) => a + (v - mu) ** 2, 0) / 3), 1e-15);
  assert.is(r.subsets, 3);
  assert.is(r.subsetSize, 4);
  assert.is(r.indices, undefined);
  // the draws of a seeded run, returned and replayed, give the same figure
  const drawn = kid(real, fake, { subsets: 5, subsetSize: 6, seed: 4, returnIndices: true });
  assert.is(drawn.indices!.real.length, 5);
  assert.ok(
    drawn.indices!.fake.every((f) => f.length === 6 && new Set(f).size === 6 && f.every((i) => i >= 0 && i < 10)),
  );
  const { indices: _drawnIndices, ...withoutIndices } = drawn;
  assert.equal(kid(real, fake, { indices: drawn.indices! }), withoutIndices);
  // a generator in place of the seed: Generator(4) draws what seed 4 draws, and its state advances
  const gen = new Generator(4);
  assert.equal(kid(real, fake, { subsets: 5, subsetSize: 6, generator: gen }), withoutIndices);
  assert.not.equal(kid(real, fake, { subsets: 5, subsetSize: 6, generator: gen }).mean, drawn.mean);
  // errors
  assert.throws(() => kid(real, fake, { indices: { real: [[0, 1]], fake: [] } }), /as many real as fake subsets/);
  assert.throws(
    () =>
      kid(real, fake, {
        indices: {
          real: [
            [0, 1],
            [0, 1, 2],
          ],
          fake: [
            [0, 1],
            [0, 1],
          ],
        },
      }),
    /one size/,
  );
  assert.throws(() => kid(real, fake, { indices: { real: [[0, 12]], fake: [[0, 1]] } }), /index 12, outside \[0, 12\)/);
  assert.throws(() => kid(real, fake, { indices: { real: [[0]], fake: [[1]] } }), /at least 2/);
  assert.throws(() => kid(real, fake, { indices, seed: 1 }), /do not apply/);
});

test("KID: identical sets are ~0 (slightly negative), a shifted set is clearly positive; subsets are seeded", () => {
  const g = new Generator(1);
  const feats = (n: number, shift: number) =>
    Array.from({ length: n }, () => Array.from(randn([16], { generator: g }).data, (v) => v + shift));
  const a = feats(120, 0),
    b = feats(120, 0),
    c = feats(120, 0.5);
  const same = kid(a, a, { subsets: 10, subsetSize: 120 });
  const alike = kid(a, b, { subsets: 20, subsetSize: 60 });
  const far = kid(a, c, { subsets: 20, subsetSize: 60 });
  // identical full sets: 2 (S_off / (m (m - 1)) - (S_off + S_diag) / m^2), a small negative number of order 1/m
  let off = 0,
    diag = 0;
  for (let i = 0; i < a.length; i++)
    for (let j = 0; j < a.length; j++) i === j ? (diag += polyKernel(a[i]!, a[j]!)) : (off += polyKernel(a[i]!, a[j]!));
  close(same.mean, 2 * (off / (120 * 119) - (off + diag) / 120 ** 2), 1e-9);
  assert.ok(same.mean < 0 && Math.abs(same.mean) < 0.2 * far.mean, `same ${same.mean}, far ${far.mean}`);
  assert.ok(Math.abs(alike.mean) < 3 * alike.std + 0.05 * far.mean, `alike ${alike.mean} +- ${alike.std}`);
  assert.ok(far.mean > 10 * far.stderr, `far ${far.mean} +- ${far.stderr}`);
  assert.equal(kid(a, c, { subsets: 3, subsetSize: 30, seed: 4 }), kid(a, c, { subsets: 3, subsetSize: 30, seed: 4 }));
  assert.not.equal(
    kid(a, c, { subsets: 3, subsetSize: 30, seed: 4 }).mean,
    kid(a, c, { subsets: 3, subsetSize: 30, seed: 5 }).mean,
  );
  assert.throws(() => kid([[1]], [[1], [2]]), /at least 2/);
});

const solid = (r: number, gr: number, b: number, size = 20): Image => {
  const data = new Float32Array(size * size * 3);
  for (let i = 0; i < size * size; i++) data.set([r, gr, b], i * 3);
  return { width: size, height: size, channels: 3, data };
};

test("evaluate() with a custom scorer: tokens dropped from prompts, all three metrics", () => {
  const seen: string[] = [];
  const scorer = {
    imageFeatures: (ims: readonly Image[]) => ims.map((im) => [im.data[0]!, im.data[1]!, im.data[2]!]),
    textFeatures: (ts: readonly string[]) =>
      ts.map((t) => {
        seen.push(t);
        return t.includes("red") ? [1, 0, 0] : [0, 1, 0];
      }),
  };
  const gen = [solid(1, 0, 0), solid(0, 1, 0), solid(1, 0, 0)];
  const r = evaluate({
    scorer,
    generated: gen,
    prompts: ["a <new1> red cup", "a <new1> green cup", "a <new2> green cup"],
    targets: [solid(1, 0, 0)],
    real: [solid(1, 0, 0), solid(0.9, 0.1, 0), solid(0, 1, 0)],
    kid: { subsets: 4 },
  });
  assert.equal(seen, ["a red cup", "a green cup", "a green cup"]);
  close(r.textAlignment, 2 / 3);
  close(r.clipScore, (2.5 * 2) / 3);
  close(r.imageAlignment!, 2 / 3);
  assert.ok(r.kid !== null && Number.isFinite(r.kid.mean));
  assert.match(formatEvaluation(r).join("\n"), /text-alignment 0\.6667[\s\S]*image-alignment 0\.6667[\s\S]*KID x10\^3/);
  assert.is(scoringPrompt("photo of <new1> dog", { "<new1>": "sks" }), "photo of sks dog");
  assert.throws(() => evaluate({ scorer, generated: gen, prompts: ["x"] }), /3 images but 1 prompts/);
});

test("clipScorer over a tiny CLIPModel: features of the projection width; the same image scores 1", () => {
  const model = withInitGenerator(new Generator(0), () =>
    CLIPModel.fromConfig({
      text_config: {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        vocab_size: 49408,
        max_position_embeddings: 77,
        bos_token_id: 49406,
        eos_token_id: 49407,
        pad_token_id: 49407,
      },
      vision_config: {
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        image_size: 16,
        patch_size: 8,
      },
      projection_dim: 8,
    }),
  );
  const s = clipScorer(model, CLIPTokenizer.default(), { batchSize: 2 });
  const imgs = [solid(1, 0, 0, 24), solid(0, 0, 1, 24), solid(1, 0, 0, 24)];
  const f = s.imageFeatures(imgs);
  assert.is(f.length, 3);
  assert.is(f[0]!.length, 8);
  close(cosine(f[0]!, f[2]!), 1, 1e-6);
  assert.ok(cosine(f[0]!, f[1]!) < 0.9999);
  const t = s.textFeatures(["a red square", "a blue square", "a red square"]);
  assert.is(t[1]!.length, 8);
  close(cosine(t[0]!, t[2]!), 1, 1e-6);
  const r = evaluate({
    scorer: s,
    generated: imgs,
    prompts: ["a red square", "a blue square", "a red square"],
    targets: imgs.slice(0, 1),
  });
  assert.ok(Number.isFinite(r.textAlignment) && r.textAlignment >= -1 && r.textAlignment <= 1);
  close(r.imageAlignment!, (2 + cosine(f[1]!, f[0]!)) / 3, 1e-6);
});

test.run();
