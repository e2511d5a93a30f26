// Tests of Attention (against a naive per-head loop), its processor hook and detachFirstToken,
// GEGLU / FeedForward, and Transformer2DModel (against a conv + permute reference), with float64 gradient checks.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { conv2d, Generator, noGrad, permute, randn, reshape, sum, tensor, ShapeError } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { BasicTransformerBlock, FeedForward, GEGLU, Transformer2DModel } from "../../models/attention.ts";
import { Attention, AttnProcessor, detachFirstToken } from "../../models/attention_processor.ts";
import type { AttentionProcessor } from "../../models/attention_processor.ts";
import { Linear, Module, withInitGenerator } from "../../models/nn/index.ts";
import { assertClose, gradcheck, rnd } from "../helpers.ts";

const f64 = <M extends Module>(seed: number, make: () => M): M =>
  withInitGenerator(new Generator(seed), make).toDType("float64");

/** softmax(q k^T / sqrt(d)) v per head with plain loops: q (B, Lq, H*d), k and v (B, Lk, H*d). */
function naiveAttention(q: Tensor, k: Tensor, v: Tensor, heads: number): Tensor {
  const [b, lq, inner] = q.shape as [number, number, number];
  const lk = k.shape[1],
    d = inner / heads;
  const Q = q.data,
    K = k.data,
    V = v.data;
  const out = new Float64Array(b * lq * inner);
  for (let n = 0; n < b; n++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < lq; i++) {
        const s = new Float64Array(lk);
        for (let j = 0; j < lk; j++) {
          let acc = 0;
          for (let e = 0; e < d; e++) acc += Q[(n * lq + i) * inner + h * d + e] * K[(n * lk + j) * inner + h * d + e];
          s[j] = acc / Math.sqrt(d);
        }
        const m = Math.max(...s);
        let z = 0;
        for (let j = 0; j < lk; j++) z += s[j] = Math.exp(s[j] - m);
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < lk; j++) acc += (s[j] / z) * V[(n * lk + j) * inner + h * d + e];
          out[(n * lq + i) * inner + h * d + e] = acc;
        }
      }
  return tensor(out, [b, lq, inner], { dtype: "float64" });
}

test("Attention: self and cross attention match a naive per-head loop; no bias on to_q/k/v, bias on to_out.0", () => {
  const attn = f64(1, () => new Attention({ queryDim: 6, crossAttentionDim: 5, heads: 2, dimHead: 3 }));
  assert.is(attn.to_q.bias, null);
  assert.is(attn.to_k.bias, null);
  assert.ok(attn.to_out[0].bias);
  assert.is(attn.scale, 3 ** -0.5);
  assert.equal(
    [...attn.stateDict().keys()],
    ["to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"],
  );
  const x = rnd([2, 4, 6], 2),
    ctx = rnd([2, 3, 5], 3);
  const got = noGrad(() => attn.forward(x, ctx));
  const ref = noGrad(() =>
    attn.to_out[0].forward(naiveAttention(attn.to_q.forward(x), attn.to_k.forward(ctx), attn.to_v.forward(ctx), 2)),
  );
  assertClose(got.data, ref.data, 1e-12, 1e-10, "cross");
  const self = f64(4, () => new Attention({ queryDim: 6, heads: 3, dimHead: 2 }));
  assert.not.ok(self.isCrossAttention);
  const ys = noGrad(() => self.forward(x));
  const rs = noGrad(() =>
    self.to_out[0].forward(naiveAttention(self.to_q.forward(x), self.to_k.forward(x), self.to_v.forward(x), 3)),
  );
  assertClose(ys.data, rs.data, 1e-12, 1e-10, "self");
});

test("Attention: sliced attention equals the full computation", () => {
  const attn = f64(5, () => new Attention({ queryDim: 8, heads: 4, dimHead: 2 }));
  const x = rnd([3, 5, 8], 6);
  const full = noGrad(() => attn.forward(x));
  attn.sliceSize = 5; // 12 (batch x head) rows: slices of 5, 5, 2
  assertClose(noGrad(() => attn.forward(x)).data, full.data, 1e-14, 1e-12, "sliced");
});

test("Attention: float64 gradient check through inputs and weights", () => {
  const attn = f64(7, () => new Attention({ queryDim: 4, crossAttentionDim: 3, heads: 2, dimHead: 2 }));
  gradcheck("attention inputs", (x, c) => attn.forward(x, c), [rnd([2, 3, 4], 8), rnd([2, 2, 3], 9)]);
  gradcheck(
    "attention to_k",
    (w) => {
      const k = (c: Tensor) => c.matmul(w.T);
      const c = rnd([1, 2, 3], 10),
        x = rnd([1, 3, 4], 11);
      return attn.attend(attn.to_q.forward(x), k(c), attn.to_v.forward(c));
    },
    [attn.to_k.weight.detach()],
  );
});

test("Attention: wrong widths are ShapeErrors", () => {
  const attn = new Attention({ queryDim: 4, crossAttentionDim: 3, heads: 2, dimHead: 2 });
  assert.throws(
    () => attn.forward(randn([1, 2, 5])),
    (e: Error) => e instanceof ShapeError && e.message.includes("[1,2,5]"),
  );
  assert.throws(
    () => attn.forward(randn([1, 2, 4]), randn([1, 2, 4])),
    (e: Error) => e instanceof ShapeError && e.message.includes("[1,2,4]"),
  );
});

test("detachFirstToken keeps values and stops the gradient of token 0 only", () => {
  const x = rnd([2, 3, 4], 12).requiresGrad_(true);
  const y = detachFirstToken(x);
  assert.equal(Array.from(y.data), Array.from(x.data));
  const r = rnd([2, 3, 4], 13);
  sum(y.mul(r)).backward();
  const g = x.grad!.data,
    rd = r.data;
  for (let i = 0; i < g.length; i++) assert.is(g[i], Math.floor(i / 4) % 3 === 0 ? 0 : rd[i], `element ${i}`);
});

/** A Custom-Diffusion-style processor: own key/value layers for cross-attention, start token detached. */
class KVProcessor extends Module implements AttentionProcessor {
  to_k_custom_diffusion: Linear;
  to_v_custom_diffusion: Linear;
  constructor(crossDim: number, inner: number) {
    super();
    this.to_k_custom_diffusion = new Linear(crossDim, inner, false);
    this.to_v_custom_diffusion = new Linear(crossDim, inner, false);
  }
  call(attn: Attention, hidden: Tensor, ctx: Tensor | null): Tensor {
    if (!ctx) return new AttnProcessor().call(attn, hidden, ctx);
    const k = detachFirstToken(this.to_k_custom_diffusion.forward(ctx));
    const v = detachFirstToken(this.to_v_custom_diffusion.forward(ctx));
    return attn.attend(attn.to_q.forward(hidden), k, v);
  }
}

test("a processor replaces to_k/to_v of attn2, adds its keys under processor., and sees no gradient from token 0", () => {
  const blk = f64(14, () => new BasicTransformerBlock({ dim: 4, heads: 2, dimHead: 2, crossAttentionDim: 3 }));
  const x = rnd([1, 5, 4], 15),
    ctx = rnd([1, 3, 3], 16);
  const before = noGrad(() => blk.forward(x, ctx));
  const p = f64(17, () => new KVProcessor(3, 4));
  // identical weights: the output does not change, only where it comes from
  noGrad(() =>
    p.loadStateDict(
      new Map([
        ["to_k_custom_diffusion.weight", blk.attn2.to_k.weight],
        ["to_v_custom_diffusion.weight", blk.attn2.to_v.weight],
      ]),
    ),
  );
  blk.attn2.setProcessor(p);
  assert.ok([...blk.stateDict().keys()].includes("attn2.processor.to_k_custom_diffusion.weight"));
  assertClose(noGrad(() => blk.forward(x, ctx)).data, before.data, 1e-14, 1e-12, "same weights");
  blk.zeroGrad();
  sum(blk.forward(x, ctx).mul(rnd([1, 5, 4], 18))).backward();
  assert.is(blk.attn2.to_k.weight.grad, null, "attn2.to_k is bypassed");
  assert.ok(p.to_k_custom_diffusion.weight.grad!.data.some((v) => v !== 0));
  // d out / d W_k sums g_t c_t^T over tokens t; with only the start token non-zero nothing is left
  const onlyFirst = tensor([...Array.from(ctx.data).slice(0, 3), 0, 0, 0, 0, 0, 0], [1, 3, 3], { dtype: "float64" });
  blk.zeroGrad();
  sum(blk.forward(x, onlyFirst).mul(rnd([1, 5, 4], 18))).backward();
  assert.ok(
    p.to_k_custom_diffusion.weight.grad!.data.every((v) => v === 0),
    "start token detached (k)",
  );
  assert.ok(
    p.to_v_custom_diffusion.weight.grad!.data.every((v) => v === 0),
    "start token detached (v)",
  );
  // the standard processor does pass that gradient
  blk.attn2.setProcessor(new AttnProcessor());
  blk.zeroGrad();
  sum(blk.forward(x, onlyFirst).mul(rnd([1, 5, 4], 18))).backward();
  assert.ok(
    blk.attn2.to_k.weight.grad!.data.some((v) => v !== 0),
    "standard processor (k)",
  );
  blk.attn2.setProcessor(p);
  gradcheck("block with custom processor", (a) => blk.forward(a, ctx), [x]);
});

test("GEGLU: hidden * gelu(gate) with the exact erf gelu (hand-computed)", () => {
  const g = new GEGLU(1, 3).toDType("float64");
  noGrad(() =>
    g.loadStateDict(
      new Map([
        ["proj.weight", { shape: [6, 1], data: [3, -2, 0.5, 1, -0.5, 2] }],
        ["proj.bias", { shape: [6], data: [0, 0, 0, 0, 0, 0] }],
      ]),
    ),
  );
  const y = noGrad(() => g.forward(tensor([[1]], undefined, { dtype: "float64" })));
  // 3 gelu(1), -2 gelu(-0.5), 0.5 gelu(2), gelu(x) = x (1 + erf(x / sqrt 2)) / 2
  assertClose(y.data, [2.524034238205629, 0.3085375387259869, 0.9772498680518208], 1e-7, 1e-7, "geglu");
});

test("FeedForward keys are net.0.proj and net.2, inner width 4 dim", () => {
  const ff = new FeedForward(8);
  assert.equal(
    [...ff.stateDict()].map(([k, t]) => `${k} ${t.shape}`),
    ["net.0.proj.weight 64,8", "net.0.proj.bias 64", "net.2.weight 8,32", "net.2.bias 8"],
  );
  const ff64 = f64(19, () => new FeedForward(4));
  gradcheck("feed forward", (x) => ff64.forward(x), [rnd([2, 3, 4], 20)]);
});

test("BasicTransformerBlock keys in diffusers order", () => {
  const blk = new BasicTransformerBlock({ dim: 8, heads: 2, dimHead: 4, crossAttentionDim: 6 });
  assert.equal(
    [...blk.stateDict().keys()],
    [
      "norm1.weight",
      "norm1.bias",
      "attn1.to_q.weight",
      "attn1.to_k.weight",
      "attn1.to_v.weight",
      "attn1.to_out.0.weight",
      "attn1.to_out.0.bias",
      "norm2.weight",
      "norm2.bias",
      "attn2.to_q.weight",
      "attn2.to_k.weight",
      "attn2.to_v.weight",
      "attn2.to_out.0.weight",
      "attn2.to_out.0.bias",
      "norm3.weight",
      "norm3.bias",
      "ff.net.0.proj.weight",
      "ff.net.0.proj.bias",
      "ff.net.2.weight",
      "ff.net.2.bias",
    ],
  );
  assert.equal([...blk.attn2.to_k.weight.shape], [8, 6]);
});

/** diffusers' order of operations: norm, 1x1 conv, to tokens, blocks, back to (B, C, H, W), 1x1 conv, residual. */
function transformerReference(t: Transformer2DModel, x: Tensor, ctx: Tensor): Tensor {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const inner = t.innerDim;
  const wIn = reshape(t.proj_in.weight, [inner, c, 1, 1]),
    wOut = reshape(t.proj_out.weight, [c, inner, 1, 1]);
  let y = conv2d(t.norm.forward(x), wIn, t.proj_in.bias); // (B, inner, H, W)
  let tok = reshape(permute(y, [0, 2, 3, 1]), [b, h * w, inner]); // (B, HW, inner)
  for (const blk of t.transformer_blocks) tok = blk.forward(tok, ctx);
  y = permute(reshape(tok, [b, h, w, inner]), [0, 3, 1, 2]); // (B, inner, H, W)
  return conv2d(y, wOut, t.proj_out.bias).add(x);
}

test("Transformer2DModel: conv and linear projections match the conv + permute reference", () => {
  const args = { numAttentionHeads: 2, attentionHeadDim: 3, inChannels: 8, crossAttentionDim: 5, normNumGroups: 4 };
  const conv = f64(21, () => new Transformer2DModel(args));
  const lin = f64(21, () => new Transformer2DModel({ ...args, useLinearProjection: true }));
  assert.equal([...conv.proj_in.weight.shape], [6, 8, 1, 1]);
  assert.equal([...lin.proj_in.weight.shape], [6, 8]);
  assert.is(conv.norm.eps, 1e-6);
  const x = rnd([2, 8, 3, 2], 22),
    ctx = rnd([2, 4, 5], 23);
  for (const t of [conv, lin]) {
    const got = noGrad(() => t.forward(x, ctx));
    assert.equal([...got.shape], [2, 8, 3, 2]);
    assertClose(
      got.data,
      noGrad(() => transformerReference(t, x, ctx)).data,
      1e-12,
      1e-10,
      t.useLinearProjection ? "linear" : "conv",
    );
  }
  gradcheck("transformer2d", (a, c) => conv.forward(a, c), [rnd([1, 8, 2, 2], 24), rnd([1, 3, 5], 25)]);
});

test.run();
