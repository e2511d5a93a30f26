// low-rank compression: full rank reproduces the delta, error falls with rank, the ratio picks the right
// rank on a constructed spectrum, save/load round trip against the base, other bases refused
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, randn } from "../../engine/index.ts";
import * as la from "../../engine/linalg.ts";
import type { Delta } from "../../tune/delta.ts";
import { baseFingerprint } from "../../tune/delta.ts";
import { compressDelta, formatCompression, loadCompressed, rankForRatio, saveCompressed } from "../../tune/compress.ts";
import { tinyPipeline, tmpDir } from "./tiny.ts";

function fakeDelta(unet: ReturnType<typeof tinyPipeline>["unet"], seed: number, withBias = false): Delta {
  const g = new Generator(seed);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, p] of unet.namedParameters()) {
    if (!/\.attn2\.(to_[kv]\.weight|to_out\.0\.bias)$/.test(k) || (!withBias && k.endsWith("bias"))) continue;
    const n = randn(p.shape, { generator: g }).data;
    out.set(k, { shape: [...p.shape], data: Float32Array.from(p.data, (x, i) => x + 0.1 * n[i]!) });
  }
  return {
    unet: out,
    tokens: new Map([["<new1>", Float32Array.from(randn([16], { generator: g }).data)]]),
    freezeModel: withBias ? "crossattn" : "crossattn_kv",
    baseFingerprint: baseFingerprint(unet),
  };
}

const maxRelDiff = (a: Float32Array, b: Float32Array): number => {
  let m = 0,
    s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / s;
};

test("rankForRatio: the smallest k whose singular-value share reaches the ratio", () => {
  const s = [4, 3, 2, 1];
  assert.equal(
    [0.35, 0.4, 0.41, 0.65, 0.7, 0.71, 0.9, 0.95, 1].map((r) => rankForRatio(s, r)),
    [1, 1, 2, 2, 2, 3, 3, 4, 4],
  );
  assert.is(rankForRatio([0, 0], 0.6), 1);
});

test("ratio picks the right k on a constructed spectrum (4, 3, 2, 1)", () => {
  const pipe = tinyPipeline();
  const [key, p] = pipe.unet.namedParameters().find(([k]) => /attn2\.to_k\.weight$/.test(k))!;
  const [out, inn] = p.shape as [number, number];
  const g = new Generator(3);
  const q1 = la.qr(la.mat(out, 4, randn([out, 4], { generator: g, dtype: "float64" }).data)).q;
  const q2 = la.qr(la.mat(inn, 4, randn([inn, 4], { generator: g, dtype: "float64" }).data)).q;
  const dw = la.matmul(la.matmul(q1, la.mat(4, 4, [4, 0, 0, 0, 0, 3, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1])), la.transpose(q2));
  const delta: Delta = {
    unet: new Map([[key, { shape: [out, inn], data: Float32Array.from(p.data, (x, i) => x + dw.data[i]!) }]]),
    tokens: new Map(),
    freezeModel: "crossattn_kv",
    baseFingerprint: "",
  };
  const ranks = [0.35, 0.65, 0.85, 0.95].map(
    (ratio) => compressDelta(delta, pipe.unet, { ratio }).layers.get(key)!.rank,
  );
  assert.equal(ranks, [1, 2, 3, 4]);
  const c = compressDelta(delta, pipe.unet, { ratio: 0.6 });
  const l = c.layers.get(key)!;
  // error of rank 2 = sqrt(2^2 + 1^2) / sqrt(30) (float32 storage of W limits the agreement)
  assert.ok(Math.abs(l.error - Math.sqrt(5 / 30)) < 1e-4, `error ${l.error}`);
});

test("full rank reproduces the delta to float32 precision; the error falls monotonically with rank", () => {
  const pipe = tinyPipeline();
  const delta = fakeDelta(pipe.unet, 1);
  const full = compressDelta(delta, pipe.unet, { rank: 1000 });
  const dir = tmpDir();
  saveCompressed(dir, full);
  const back = loadCompressed(dir, pipe.unet);
  assert.equal([...back.unet.keys()].sort(), [...delta.unet.keys()].sort());
  for (const [k, v] of delta.unet) assert.ok(maxRelDiff(back.unet.get(k)!.data, v.data) < 1e-6, k);
  assert.equal(Array.from(back.tokens.get("<new1>")!), Array.from(delta.tokens.get("<new1>")!));
  assert.is(back.baseFingerprint, delta.baseFingerprint);
  const key = [...delta.unet.keys()][0]!;
  const fr = full.layers.get(key)!.fullRank;
  const errs = Array.from(
    { length: fr },
    (_, i) => compressDelta(delta, pipe.unet, { rank: i + 1 }).layers.get(key)!.error,
  );
  for (let i = 1; i < errs.length; i++)
    assert.ok(errs[i]! < errs[i - 1]!, `rank ${i + 1}: ${errs[i]} >= ${errs[i - 1]}`);
  assert.ok(errs[fr - 1]! < 1e-6);
  // a partial rank loads to W0 + u v, not to the delta
  const half = compressDelta(delta, pipe.unet, { rank: 2 });
  saveCompressed(dir, half);
  const b2 = loadCompressed(dir, pipe.unet);
  assert.ok(maxRelDiff(b2.unet.get(key)!.data, delta.unet.get(key)!.data) > 1e-4);
  const lines = formatCompression(half);
  assert.match(lines[0]!, /compressed \d+ tensors \(rank 2\)/);
  assert.match(lines[1]!, /rank 2\/\d+/);
});

test("default ratio 0.6, biases stored in full, another base refused", () => {
  const pipe = tinyPipeline();
  const delta = fakeDelta(pipe.unet, 2, true);
  const c = compressDelta(delta, pipe.unet);
  assert.is(c.ratio, 0.6);
  const bias = [...c.layers.entries()].find(([k]) => k.endsWith("bias"))!;
  assert.ok(bias[1].full !== null && bias[1].u === null);
  for (const [k, l] of c.layers)
    if (!l.full) assert.ok(l.rank >= 1 && l.rank < l.fullRank, `${k} rank ${l.rank}/${l.fullRank}`);
  const dir = tmpDir();
  saveCompressed(dir, c);
  const back = loadCompressed(dir, pipe.unet);
  assert.equal(Array.from(back.unet.get(bias[0])!.data), Array.from(delta.unet.get(bias[0])!.data));
  assert.is(back.freezeModel, "crossattn");
  const other = tinyPipeline(5);
  assert.throws(() => loadCompressed(dir, other.unet), /different base model/);
  assert.throws(() => compressDelta(delta, other.unet), /different base model/);
  assert.throws(() => compressDelta(delta, pipe.unet, { ratio: 1.5 }), /ratio must be in/);
});

test.run();
