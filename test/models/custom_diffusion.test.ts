// Tests of CustomDiffusionAttnProcessor itself: the start-of-text token's key and value carry no
// gradient (float64 attention layer and a tiny UNet with the processor installed as tune/train does)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, sum, tensor } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { Attention, AttnProcessor } from "../../models/attention_processor.ts";
import { CustomDiffusionAttnProcessor } from "../../models/custom_diffusion.ts";
import { Module, withInitGenerator } from "../../models/nn/index.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import { assertClose, rnd } from "../helpers.ts";

const f64 = <M extends Module>(seed: number, make: () => M): M =>
  withInitGenerator(new Generator(seed), make).toDType("float64");

/** A float64 context (B, L, D): `first` as token 0 of every sample, zeros elsewhere (or `rest` there). */
function context(first: Tensor, l: number, rest?: Tensor): Tensor {
  const [b, , d] = first.shape as [number, number, number];
  const out = new Float64Array(b * l * d);
  for (let n = 0; n < b; n++) {
    if (rest) out.set(rest.data.subarray(n * l * d, (n + 1) * l * d), n * l * d);
    out.set(first.data.subarray(n * d, (n + 1) * d), n * l * d);
  }
  return tensor(out, [b, l, d], { dtype: "float64" });
}

const nonZero = (t: Tensor | null) => !!t && t.data.some((v) => v !== 0);
const allZero = (t: Tensor | null) => !!t && t.data.every((v) => v === 0);

test("CustomDiffusionAttnProcessor: with only the start token in the context, to_k/to_v get exactly zero gradient, to_q does not", () => {
  const attn = f64(31, () => new Attention({ queryDim: 6, crossAttentionDim: 5, heads: 2, dimHead: 3 }));
  const x = rnd([2, 4, 6], 32),
    r = rnd([2, 4, 6], 33);
  const ctx = context(rnd([2, 1, 5], 34), 3); // (2, 3, 5): token 0 random, tokens 1 and 2 zero
  const run = () => {
    attn.zeroGrad();
    const y = attn.forward(x, ctx);
    sum(y.mul(r)).backward();
    return y;
  };
  const plain = run();
  // the standard processor does pass a gradient into to_k / to_v through token 0 (so the zeros below mean something)
  assert.ok(nonZero(attn.to_k.weight.grad), "standard processor: to_k gradient");
  assert.ok(nonZero(attn.to_v.weight.grad), "standard processor: to_v gradient");
  attn.setProcessor(new CustomDiffusionAttnProcessor());
  const custom = run();
  assert.equal(Array.from(custom.data), Array.from(plain.data), "the processor changes gradients, not values");
  // d sum(R out) / d W_k = sum_t dK_t c_t^T: tokens >= 1 have c_t = 0 and token 0 is detached
  assert.ok(allZero(attn.to_k.weight.grad), `to_k gradient ${attn.to_k.weight.grad?.data.slice(0, 4)}`);
  assert.ok(allZero(attn.to_v.weight.grad), `to_v gradient ${attn.to_v.weight.grad?.data.slice(0, 4)}`);
  assert.ok(nonZero(attn.to_q.weight.grad), "to_q gradient");
  assert.ok(nonZero(attn.to_out[0].weight.grad), "to_out gradient");
});

test("CustomDiffusionAttnProcessor: self-attention (no encoder states) is not detached", () => {
  const attn = f64(35, () => new Attention({ queryDim: 4, heads: 2, dimHead: 2 }));
  const x = rnd([2, 3, 4], 36),
    r = rnd([2, 3, 4], 37);
  const grads = (p: AttnProcessor | CustomDiffusionAttnProcessor) => {
    attn.setProcessor(p).zeroGrad();
    sum(attn.forward(x).mul(r)).backward();
    return [attn.to_q, attn.to_k, attn.to_v].map((l) => Array.from(l.weight.grad!.data));
  };
  assert.equal(grads(new CustomDiffusionAttnProcessor()), grads(new AttnProcessor()));
});

// a tiny latent UNet: two cross-attention layers down, one in the middle, two up
const TINY = {
  sample_size: 4,
  block_out_channels: [8, 16],
  layers_per_block: 1,
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
  cross_attention_dim: 6,
  attention_head_dim: 2,
  norm_num_groups: 4,
};

test("tiny UNet with the processor on every attn2: to_k/to_v gradients ignore the start token, and exactly its rank-one term is removed", () => {
  const unet = f64(40, () => UNet2DConditionModel.fromConfig(TINY));
  const layers = unet.crossAttentionLayers();
  assert.ok(layers.length >= 3, `${layers.length} cross-attention layers`);
  const x = rnd([1, 4, 4, 4], 41),
    proj = rnd([1, 4, 4, 4], 42);
  const grads = (ctx: Tensor) => {
    unet.zeroGrad();
    sum(unet.forward(x, 321, ctx).mul(proj)).backward();
    return layers.map(([k, a]) => ({ k, q: a.to_q.weight.grad!, kw: a.to_k.weight.grad!, vw: a.to_v.weight.grad! }));
  };
  const install = (cd: boolean) => {
    for (const [, a] of layers) a.setProcessor(cd ? new CustomDiffusionAttnProcessor() : new AttnProcessor());
  };
  install(true); // as tune/train.ts customise() does

  // 1. context zero except the start token: two different start-token states give the same (zero) to_k / to_v gradients
  const s1 = grads(context(rnd([1, 1, 6], 43), 4)),
    s2 = grads(context(rnd([1, 1, 6], 44).mul(3), 4));
  for (let i = 0; i < layers.length; i++) {
    const [a, b] = [s1[i]!, s2[i]!];
    assert.ok(allZero(a.kw) && allZero(a.vw), `${a.k}: to_k/to_v gradients from the start token alone (state 1)`);
    assert.equal(Array.from(b.kw.data), Array.from(a.kw.data), `${a.k}: to_k gradient depends on the start token`);
    assert.equal(Array.from(b.vw.data), Array.from(a.vw.data), `${a.k}: to_v gradient depends on the start token`);
    assert.ok(nonZero(a.q) && nonZero(b.q), `${a.k}: to_q still trains`);
    assert.ok(
      a.q.data.some((v, j) => v !== b.q.data[j]),
      `${a.k}: the start token does reach the network`,
    );
  }

  // 2. a full context: custom = standard minus dK_0 c_0^T (a rank-one term along the start token's row c_0)
  const c0 = rnd([1, 1, 6], 45),
    ctx = context(c0, 4, rnd([1, 4, 6], 46));
  const cd = grads(ctx).map((e) => [Float64Array.from(e.kw.data), Float64Array.from(e.vw.data)]);
  install(false);
  const std = grads(ctx).map((e) => [Float64Array.from(e.kw.data), Float64Array.from(e.vw.data)]);
  install(true);
  const c = Array.from(c0.data),
    cc = c.reduce((s, v) => s + v * v, 0);
  for (let i = 0; i < layers.length; i++)
    for (const w of [0, 1]) {
      const what = `${layers[i]![0]}.${w ? "to_v" : "to_k"}`;
      const a = cd[i]![w]!,
        b = std[i]![w]!,
        d = c.length,
        rows = a.length / d;
      const diff = b.map((v, j) => v - a[j]!);
      // the removed part: g = diff c0 / |c0|^2 per output row; diff must be exactly g c0^T (float64 rounding aside)
      const outer = new Float64Array(diff.length);
      let norm = 0;
      for (let o = 0; o < rows; o++) {
        let g = 0;
        for (let e = 0; e < d; e++) g += diff[o * d + e]! * c[e]!;
        for (let e = 0; e < d; e++) outer[o * d + e] = (g / cc) * c[e]!;
        for (let e = 0; e < d; e++) norm = Math.max(norm, Math.abs(diff[o * d + e]!));
      }
      assert.ok(norm > 1e-6, `${what}: the start token's term (max ${norm}) is removed`);
      assertClose(diff, outer, 1e-12 * norm, 0, `${what}: standard minus custom is rank one along c_0`);
      assert.ok(
        a.some((v) => v !== 0),
        `${what}: tokens 1..3 still train it`,
      );
    }
});

test.run();
