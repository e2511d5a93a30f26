// Gradient checkpointing: the recomputed backward gives bit-identical gradients (inputs, parameters,
// tensors shared between checkpointed and plain parts), for K/V training and for full training.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { checkpoint, Generator, mseLoss, randn, type Tensor } from "../../../engine/index.ts";
import { TINY_UNET_CONFIG, UNet2DConditionModel, withInitGenerator } from "../../../models/index.ts";

const bits = (t: Tensor | null): number[] => Array.from(new Uint32Array(Float32Array.from(t ? t.data : []).buffer));

test("checkpoint(): same value, and the same gradients bit for bit, for inputs used inside and outside it", () => {
  const g = new Generator(1);
  const run = (ck: boolean) => {
    const x = randn([5, 7], { generator: new Generator(2) }).requiresGrad_();
    const w = randn([7, 7], { generator: new Generator(3) }).requiresGrad_();
    const v = randn([7, 3], { generator: new Generator(4) }).requiresGrad_();
    const h = x.mul(1.5).tanh(); // shared: used by the checkpointed part twice and by a plain op
    const inner = (a: Tensor, b: Tensor) => a.matmul(w).silu().add(a).matmul(v).mul(b.sum());
    const y = ck ? checkpoint(inner, [h, h], [w, v]) : inner(h, h);
    const z = y.add(h.matmul(v)).square().mean();
    z.backward();
    return { z: z.item(), x: bits(x.grad), w: bits(w.grad), v: bits(v.grad) };
  };
  void g;
  const a = run(false),
    b = run(true);
  assert.is(b.z, a.z);
  assert.equal(b.x, a.x, "input gradient");
  assert.equal(b.w, a.w, "parameter gradient");
  assert.equal(b.v, a.v, "parameter used inside and outside");
});

function unetGrads(ck: boolean, mode: "kv" | "full") {
  const unet = withInitGenerator(new Generator(0), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG));
  for (const [k, p] of unet.namedParameters()) p.requiresGrad = mode === "full" || /attn2\.to_[kv]\.weight$/.test(k);
  if (ck) unet.enableGradientCheckpointing();
  const g = new Generator(5);
  const x = randn([2, 4, 16, 16], { generator: g });
  // the text states stand for the text encoder's output with a trainable token row: a leaf that requires grad
  const ehs = randn([2, 6, TINY_UNET_CONFIG.cross_attention_dim], { generator: g }).requiresGrad_();
  const target = randn([2, 4, 16, 16], { generator: g });
  const loss = mseLoss(unet.forward(x, [3, 700], ehs.mul(1)), target);
  loss.backward();
  return {
    loss: loss.item(),
    ehs: bits(ehs.grad),
    params: unet
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([k, p]) => [k, bits(p.grad)] as const),
  };
}

for (const mode of ["kv", "full"] as const) {
  test(`tiny UNet, ${mode === "kv" ? "K/V + token" : "full"} training: gradients with checkpointing equal those without, bit for bit`, () => {
    const a = unetGrads(false, mode),
      b = unetGrads(true, mode);
    assert.is(b.loss, a.loss);
    assert.ok(a.params.length > 0 && a.params.every(([, g]) => g.length > 0));
    assert.equal(b.ehs, a.ehs, "gradient of the text states (the token row's path)");
    a.params.forEach(([k, g], i) => assert.equal(b.params[i]![1], g, k));
  });
}

test("enableGradientCheckpointing switches every block, and a forward without grad does not record", () => {
  const unet = withInitGenerator(new Generator(0), () =>
    UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG),
  ).enableGradientCheckpointing();
  assert.ok(unet.isGradientCheckpointing);
  for (const b of [...unet.down_blocks, unet.mid_block, ...unet.up_blocks]) assert.ok(b._gradientCheckpointing);
  unet.requiresGrad_(false);
  const out = unet.forward(randn([1, 4, 8, 8]), 1, randn([1, 3, TINY_UNET_CONFIG.cross_attention_dim]));
  assert.not.ok(out.requiresGrad);
  assert.not.ok(unet.disableGradientCheckpointing().isGradientCheckpointing);
});

test.run();
