// stacking deltas: W0 + sum_i (W_i - W0) per key, tokens renumbered with a prompt mapping, bases checked
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, randn } from "../../engine/index.ts";
import type { Delta } from "../../tune/delta.ts";
import { baseFingerprint } from "../../tune/delta.ts";
import { rewritePrompt, stackDeltas } from "../../tune/stack.ts";
import { tinyPipeline } from "./tiny.ts";

function fakeDelta(unet: ReturnType<typeof tinyPipeline>["unet"], seed: number, keys: RegExp, tokens: string[]): Delta {
  const g = new Generator(seed);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, p] of unet.namedParameters()) {
    if (!keys.test(k)) continue;
    const n = randn(p.shape, { generator: g }).data;
    out.set(k, { shape: [...p.shape], data: Float32Array.from(p.data, (x, i) => x + 0.1 * n[i]!) });
  }
  return {
    unet: out,
    tokens: new Map(tokens.map((t) => [t, Float32Array.from(randn([16], { generator: g }).data)])),
    freezeModel: "crossattn_kv",
    baseFingerprint: baseFingerprint(unet),
  };
}

test("stack equals the hand sum, keys of either delta included, tokens renumbered in order", () => {
  const pipe = tinyPipeline();
  const a = fakeDelta(pipe.unet, 1, /\.attn2\.to_[kv]\.weight$/, ["<new1>"]);
  const b = fakeDelta(pipe.unet, 2, /\.attn2\.to_k\.weight$/, ["<new1>", "<new2>"]);
  const r = stackDeltas(pipe.unet, [a, b]);
  const sd = pipe.unet.stateDict();
  assert.is(r.delta.unet.size, a.unet.size);
  for (const [k, v] of r.delta.unet) {
    const w0 = sd.get(k)!.data,
      wa = a.unet.get(k)!.data,
      wb = b.unet.get(k)?.data;
    for (let i = 0; i < w0.length; i++) {
      const want = Math.fround(w0[i]! + (wa[i]! - w0[i]!) + (wb ? wb[i]! - w0[i]! : 0));
      assert.ok(Math.abs(v.data[i]! - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${k}[${i}]`);
    }
  }
  // a to_v key only in `a` is a's value; a to_k key differs from both
  const kv = [...a.unet.keys()].find((k) => k.endsWith("to_v.weight"))!;
  assert.equal(Array.from(r.delta.unet.get(kv)!.data), Array.from(a.unet.get(kv)!.data));
  assert.equal([...r.delta.tokens.keys()], ["<new1>", "<new2>", "<new3>"]);
  assert.equal(Array.from(r.delta.tokens.get("<new3>")!), Array.from(b.tokens.get("<new2>")!));
  assert.is(rewritePrompt("<new1> next to <new2>", r.tokenMap[1]!), "<new2> next to <new3>");
  assert.is(rewritePrompt("a <new1>", r.tokenMap[0]!), "a <new1>");
  // weights scale each change
  const half = stackDeltas(pipe.unet, [a], [0.5]);
  const w0 = sd.get(kv)!.data;
  assert.ok(Math.abs(half.delta.unet.get(kv)!.data[0]! - (w0[0]! + 0.5 * (a.unet.get(kv)!.data[0]! - w0[0]!))) < 1e-6);
});

test("deltas from another base are refused", () => {
  const pipe = tinyPipeline();
  const other = tinyPipeline(9);
  const a = fakeDelta(pipe.unet, 1, /\.attn2\.to_k\.weight$/, ["<new1>"]);
  const b = fakeDelta(other.unet, 2, /\.attn2\.to_k\.weight$/, ["<new1>"]);
  assert.throws(() => stackDeltas(pipe.unet, [a, b]), /different base model/);
  assert.throws(() => stackDeltas(pipe.unet, []), /no deltas/);
});

test.run();
