// closed-form merge (paper eq. 4-5): constraints hold, it is the constrained minimiser, M-orthogonal
// directions stay at W0, shared targets, N = 3 end to end on a tiny model, mismatched bases refused
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, noGrad, randn } from "../../engine/index.ts";
import * as la from "../../engine/linalg.ts";
import { gram, matmulNT } from "../../engine/linalg.ts";
import type { Mat } from "../../engine/linalg.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { withInitGenerator } from "../../models/nn/module.ts";
import { CLIPTextModel } from "../../models/clip/modeling_clip.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import type { Delta } from "../../tune/delta.ts";
import { baseFingerprint, rewritePrompt } from "../../tune/delta.ts";
import { mergeDeltas, mergeMatrix, prepareMerge, tokenFeatures } from "../../tune/merge.ts";
import { TINY_PIXEL_UNET } from "./tiny.ts";

const g = new Generator(7);
const rnd = (r: number, c: number, s = 1): Mat =>
  la.mat(
    r,
    c,
    Float64Array.from(randn([r, c], { generator: g, dtype: "float64" }).data, (x) => x * s),
  );
const rel = (a: Mat, b: Mat): number => la.norm(la.sub(a, b)) / la.norm(b);
const regObjective = (w: Mat, w0: Mat, creg: Mat): number => la.norm(matmulNT(la.sub(w, w0), creg)); // ||(W - W0) C_reg^T||

test("gram and the tiled matmulNT agree with engine/linalg", () => {
  const a = rnd(37, 13),
    b = rnd(9, 13);
  assert.ok(rel(gram(a), la.matmulTN(a, a)) < 1e-13);
  assert.ok(rel(matmulNT(a, b), la.matmul(a, la.transpose(b))) < 1e-13);
});

test("W C^T = V to 1e-8 and W is the constrained minimiser of ||(W - W0) C_reg^T||", () => {
  const d = 24,
    out = 10;
  const creg = rnd(90, d),
    targets = [rnd(5, d), rnd(4, d)];
  const w0 = rnd(out, d),
    tuned = [la.add(w0, rnd(out, d, 0.3)), la.add(w0, rnd(out, d, 0.3))];
  const plan = prepareMerge(creg, targets);
  const r = mergeMatrix(plan, w0, tuned);
  // constraints: each concept's targets map to what its own matrix gives them
  targets.forEach((c, n) => assert.ok(rel(matmulNT(r.w, c), matmulNT(tuned[n]!, c)) < 1e-8, `concept ${n + 1}`));
  assert.ok(rel(matmulNT(r.w, plan.c), r.v) < 1e-8);
  r.targetResidual.forEach((x) => assert.ok(x < 1e-8, `residual ${x}`));
  // the reported regularisation residual is the direct one
  const direct = regObjective(r.w, w0, creg) / la.norm(matmulNT(w0, creg));
  assert.ok(Math.abs(r.regResidual! - direct) < 1e-9 * direct, `${r.regResidual} vs ${direct}`);
  // feasible perturbations E (E C^T = 0): E = Z (I - C^T (C C^T)^-1 C)
  const c = plan.c;
  const proj = la.sub(la.eye(d), la.matmul(la.transpose(c), la.solve(la.matmulNT(c, c), c)));
  const f0 = regObjective(r.w, w0, creg);
  for (let t = 0; t < 20; t++) {
    const e = la.scale(la.matmul(rnd(out, d), proj), 10 ** (-3 + (t % 4)));
    assert.ok(la.norm(matmulNT(e, c)) < 1e-9 * la.norm(e), "E C^T = 0");
    const f = regObjective(la.add(r.w, e), w0, creg);
    assert.ok(f > f0, `perturbation ${t}: ${f} <= ${f0}`);
  }
  // the unconstrained-looking alternative (W0 plus the least-norm fix, identity instead of M) is worse
  const naive = la.add(
    w0,
    la.matmul(la.transpose(la.solve(la.matmulNT(c, c), la.transpose(la.sub(r.v, matmulNT(w0, c))))), c),
  );
  assert.ok(rel(matmulNT(naive, c), r.v) < 1e-8);
  assert.ok(regObjective(naive, w0, creg) > f0);
});

test("one concept: a direction M-orthogonal to the targets (u = M y with C y = 0) keeps W0 there", () => {
  const d = 16,
    out = 6;
  const creg = rnd(60, d),
    c = rnd(3, d);
  const w0 = rnd(out, d),
    w1 = la.add(w0, rnd(out, d));
  const r = mergeMatrix(prepareMerge(creg, [c]), w0, [w1]);
  // y in the null space of C: remove C's row-space component from a random vector
  let y = rnd(d, 1);
  y = la.sub(y, la.matmul(la.transpose(c), la.solve(la.matmulNT(c, c), la.matmul(c, y))));
  assert.ok(la.norm(la.matmul(c, y)) < 1e-10 * la.norm(y));
  const u = la.matmul(la.matmulTN(creg, creg), y); // M y
  assert.ok(rel(la.matmul(r.w, u), la.matmul(w0, u)) < 1e-10);
  // while along the targets it moved to W1
  assert.ok(rel(matmulNT(r.w, c), matmulNT(w1, c)) < 1e-9);
  assert.ok(rel(matmulNT(r.w, c), matmulNT(w0, c)) > 0.1);
});

test("three concepts with a shared target: de-duplicated, value first or mean", () => {
  const d = 30,
    out = 8;
  const creg = rnd(120, d),
    shared = rnd(1, d);
  const t = [rnd(4, d), rnd(4, d), rnd(4, d)].map((m) => la.mat(5, d, [...shared.data, ...m.data]));
  const w0 = rnd(out, d),
    tuned = [0, 1, 2].map(() => la.add(w0, rnd(out, d, 0.5)));
  const mean = prepareMerge(creg, t);
  assert.is(mean.c.rows, 13);
  assert.is(mean.duplicatesRemoved, 2);
  const rm = mergeMatrix(mean, w0, tuned);
  const ws = tuned.map((w) => matmulNT(w, shared));
  const avg = la.scale(la.add(la.add(ws[0]!, ws[1]!), ws[2]!), 1 / 3);
  assert.ok(rel(matmulNT(rm.w, shared), avg) < 1e-8);
  const rf = mergeMatrix(prepareMerge(creg, t, { duplicates: "first" }), w0, tuned);
  assert.ok(rel(matmulNT(rf.w, shared), ws[0]!) < 1e-8);
  // non-shared targets of every concept hold exactly
  t.forEach((c, n) => {
    const own = la.mat(4, d, c.data.subarray(d));
    assert.ok(rel(matmulNT(rm.w, own), matmulNT(tuned[n]!, own)) < 1e-8, `concept ${n + 1}`);
  });
  // too many distinct targets for the width is a clear error
  assert.throws(
    () => prepareMerge(rnd(50, 6), [rnd(4, 6), rnd(4, 6)]),
    /distinct target features but the feature width is 6/,
  );
  // rank-deficient regularisation features
  assert.throws(() => prepareMerge(rnd(3, 6), [rnd(2, 6)]), /do not span/);
});

// a tiny pixel-space UNet and text encoder of width 32 (room for 3 concepts' 21 target features)
// (the final layer norm gets a random affine part as a trained one has: with weight 1 and bias 0 every
// feature would sum to zero and M = C_reg^T C_reg would be singular)
function tinyBase(seed = 0) {
  return withInitGenerator(new Generator(seed), () => {
    const textEncoder = CLIPTextModel.fromConfig({
      hidden_size: 32,
      intermediate_size: 37,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      vocab_size: 49408,
      max_position_embeddings: 77,
      bos_token_id: 49406,
      eos_token_id: 49407,
      pad_token_id: 49407,
    });
    const ln = textEncoder.text_model.final_layer_norm;
    const gg = new Generator(seed + 1000);
    ln.weight!.copy_(Float32Array.from(randn([32], { generator: gg }).data, (x) => 1 + 0.3 * x));
    ln.bias!.copy_(Float32Array.from(randn([32], { generator: gg }).data, (x) => 0.3 * x));
    return {
      unet: UNet2DConditionModel.fromConfig({ ...TINY_PIXEL_UNET, cross_attention_dim: 32 }),
      textEncoder,
      tokenizer: CLIPTokenizer.default(),
    };
  });
}

function fakeDelta(base: ReturnType<typeof tinyBase>, seed: number, tokens: string[] = ["<new1>"]): Delta {
  const gg = new Generator(seed);
  const unet = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, p] of base.unet.namedParameters()) {
    if (!/\.attn2\.to_[kv]\.weight$/.test(k)) continue;
    const n = randn(p.shape, { generator: gg }).data;
    unet.set(k, { shape: [...p.shape], data: Float32Array.from(p.data, (x, i) => x + 0.05 * n[i]!) });
  }
  const rows = new Map(tokens.map((t) => [t, Float32Array.from(randn([32], { generator: gg }).data, (x) => 0.02 * x)]));
  return { unet, tokens: rows, freezeModel: "crossattn_kv", baseFingerprint: baseFingerprint(base.unet) };
}

const CAPTIONS = [
  "a photo of a cat sitting on a wooden table",
  "two people walking along a beach at sunset",
  "a red car parked in front of an old house",
  "a bowl of fruit on a kitchen counter",
  "a dog running through a grassy field",
  "a city street at night with neon signs",
  "a mountain lake surrounded by pine trees",
  "an old man reading a newspaper on a bench",
];

test("mergeDeltas: three deltas end to end, renumbered tokens, constraints hold on the real text features", () => {
  const base = tinyBase();
  const before = base.textEncoder.text_model.embeddings._addedRows;
  const deltas = [fakeDelta(base, 1), fakeDelta(base, 2), fakeDelta(base, 3)];
  const lines: string[] = [];
  const r = mergeDeltas(base, deltas, {
    regCaptions: CAPTIONS,
    classWords: ["square", "circle", "dog"],
    log: (l) => lines.push(l),
  });
  assert.is(base.textEncoder.text_model.embeddings._addedRows, before, "the text encoder is restored");
  assert.equal([...r.delta.tokens.keys()], ["<new1>", "<new2>", "<new3>"]);
  assert.equal(Array.from(r.delta.tokens.get("<new3>")!), Array.from(deltas[2]!.tokens.get("<new1>")!));
  assert.equal(
    r.tokenMap.map((m) => Object.fromEntries(m)),
    [{ "<new1>": "<new1>" }, { "<new1>": "<new2>" }, { "<new1>": "<new3>" }],
  );
  assert.is(rewritePrompt("a <new1> dog", r.tokenMap[2]!), "a <new3> dog");
  assert.is(r.delta.unet.size, deltas[0]!.unet.size);
  assert.is(r.delta.baseFingerprint, baseFingerprint(base.unet));
  // "photo of a" prefix features are shared: 3 per extra concept removed
  assert.is(r.report.duplicatesRemoved, 6);
  assert.is(r.report.targets, 21);
  // shared prefix rows take the mean of the concepts' values, so no concept's residual is zero, but all are moderate
  for (const c of r.report.concepts)
    assert.ok(c.maxResidual < 0.5 && c.maxResidual > 1e-6, `concept ${c.index} residual ${c.maxResidual}`);
  assert.ok(r.report.rcondM > 1e-8, `rcond(M) ${r.report.rcondM}`);
  // with duplicates "first", concept 1 owns the shared rows and meets all its targets
  const rf = mergeDeltas(base, deltas, {
    regCaptions: CAPTIONS,
    classWords: ["square", "circle", "dog"],
    duplicates: "first",
    regResidual: false,
  });
  assert.ok(rf.report.concepts[0]!.maxResidual < 1e-8, `first: ${rf.report.concepts[0]!.maxResidual}`);
  assert.ok(rf.report.concepts[1]!.maxResidual > 1e-6);
  assert.is(rf.report.maxRegResidual, null);
  assert.ok(r.report.maxRegResidual! > 0);
  assert.ok(lines.some((l) => /merged 3 deltas/.test(l)));
  // independent check on the stored (float32) matrices: each concept's "<tok> class" features map like its own delta
  const cls = ["square", "circle", "dog"];
  deltas.forEach((d, n) => {
    const f = tokenFeatures(base.textEncoder, base.tokenizer, [`<new1> ${cls[n]}`], d.tokens).features;
    for (const [k, v] of r.delta.unet) {
      const w = la.mat(v.shape[0]!, v.shape[1]!, v.data),
        wn = la.mat(v.shape[0]!, v.shape[1]!, d.unet.get(k)!.data);
      assert.ok(rel(matmulNT(w, f), matmulNT(wn, f)) < 1e-4, `${k} concept ${n + 1}`);
    }
  });
  // the reported regularisation residual matches a direct computation over every caption's features
  const fr = tokenFeatures(base.textEncoder, base.tokenizer, CAPTIONS).features;
  assert.is(fr.rows, r.report.regFeatures);
  const k0 = [...r.delta.unet.keys()][0]!;
  const p0 = base.unet.stateDict().get(k0)!;
  const w0 = la.mat(p0.shape[0]!, p0.shape[1]!, p0.data);
  const wm = la.mat(p0.shape[0]!, p0.shape[1]!, r.delta.unet.get(k0)!.data);
  const direct = rel(matmulNT(wm, fr), matmulNT(w0, fr));
  const reported = r.report.layers.find((l) => l.key === k0)!.regResidual!;
  assert.ok(Math.abs(direct - reported) < 1e-4 * reported, `${direct} vs ${reported}`);
});

test("tokenFeatures: rows 1..eos of each prompt, equal to the encoder's output with the token installed", () => {
  const base = tinyBase();
  const row = Float32Array.from(randn([32], { generator: new Generator(5) }).data);
  const { features, counts } = tokenFeatures(
    base.textEncoder,
    base.tokenizer,
    ["<new1> dog", "photo of a <new1> dog"],
    new Map([["<new1>", row]]),
  );
  assert.equal(counts, [3, 6]);
  // reference: a second encoder with the token really added
  const other = tinyBase();
  other.tokenizer.addTokens(["<new1>"]);
  const emb = other.textEncoder.text_model.embeddings;
  const t = randn([1, 32], { generator: new Generator(5) });
  emb.addTokenRows(t);
  const ids = other.tokenizer.encode("photo of a <new1> dog", { padding: "none" });
  const h = noGrad(() => other.textEncoder.forward([ids]).last_hidden_state.data);
  const got = features.data.subarray(3 * 32);
  for (let i = 0; i < 6 * 32; i++) assert.ok(Math.abs(got[i]! - h[32 + i]!) < 1e-5, `element ${i}`);
});

test("mismatched bases and bad inputs are clear errors", () => {
  const base = tinyBase();
  const other = tinyBase(99);
  const good = fakeDelta(base, 1);
  const foreign = fakeDelta(other, 2);
  assert.throws(
    () => mergeDeltas(base, [good, foreign], { regCaptions: CAPTIONS, classWords: ["a", "b"] }),
    /different base model/,
  );
  const noFp = { ...fakeDelta(base, 3), baseFingerprint: "" };
  const k = [...noFp.unet.keys()][0]!;
  noFp.unet.set(k, { shape: [1, 2], data: new Float32Array(2) });
  assert.throws(
    () => mergeDeltas(base, [good, noFp], { regCaptions: CAPTIONS, classWords: ["a", "b"] }),
    /is \[1,2\], the base/,
  );
  assert.throws(() => mergeDeltas(base, [good], { regCaptions: CAPTIONS, classWords: ["a"] }), /at least 2 deltas/);
  assert.throws(
    () => mergeDeltas(base, [good, fakeDelta(base, 4)], { regCaptions: CAPTIONS, classWords: ["a"] }),
    /2 deltas but 1 class words/,
  );
  const wide = fakeDelta(base, 5);
  const q = [...base.unet.namedParameters()].find(([n]) => /attn2\.to_q\.weight$/.test(n))!;
  wide.unet.set(q[0], { shape: [...q[1].shape], data: Float32Array.from(q[1].data) });
  assert.throws(
    () => mergeDeltas(base, [good, wide], { regCaptions: CAPTIONS, classWords: ["a", "b"] }),
    /to_k\/to_v only/,
  );
});

test.run();
