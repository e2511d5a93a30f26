// Parity of UNet2DConditionModel with diffusers 0.21.4 on the fixture test/fixtures/unet2d_condition
// (diffusers' unit-test config, perturbed F16-grid weights, 32x32 inputs): outputs and attn2 to_k/to_v grads.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { narrowSlice, noGrad } from "../../../engine/index.ts";
import { UNet2DConditionModel } from "../../../models/unets/unet_2d_condition.ts";
import { assertAllClose, assertRelToMax, Golden, rows, TOL } from "./golden.ts";

const G = new Golden("unet2d_condition");
const load = () => UNet2DConditionModel.fromPretrained(G.dir);

test("fixture inputs are the recorded ones", () => {
  assert.equal([...G.data("input.timestep")], [10]);
  assert.equal([...G.data("input.timesteps")], [10, 500]);
  assert.equal(G.shape("input.sample"), [2, 4, 32, 32]);
  assert.equal(G.shape("input.encoder_hidden_states"), [2, 77, 32]);
});

// intermediates are kept as statistics only: a cheap first place to look when the outputs differ
test("float32 stem: time_embedding(10) and conv_in match the recorded statistics", () => {
  const model = load();
  const x = G.tensor("input.sample");
  const got = noGrad(() => ({
    time_embedding: model.time_embedding.forward(model.time_proj.forward([10, 10])), // (2, 128)
    conv_in: model.conv_in.forward(x), // (2, 32, 32, 32)
  }));
  for (const [k, t] of Object.entries(got)) {
    const ref = G.json.entries[`intermediate.${k}`];
    assert.equal([...t.shape], ref.shape, `${k} shape`);
    assertAllClose(
      `intermediate.${k} first8`,
      Array.from(t.data.subarray(0, 8)),
      ref.first8,
      TOL.f32.atol,
      TOL.f32.rtol,
    );
    let sum = 0,
      absSum = 0,
      maxAbs = 0;
    for (const v of t.data) {
      sum += v;
      absSum += Math.abs(v);
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    assertAllClose(`intermediate.${k} sum, abs_sum`, [sum, absSum], [ref.sum, ref.abs_sum], 1e-6 * ref.abs_sum, 0);
    assertAllClose(`intermediate.${k} max_abs`, [maxAbs], [ref.max_abs], TOL.f32.atol, TOL.f32.rtol);
  }
});

// the one backward at this size (~5 s forward + ~5 s backward): only the weights Custom Diffusion
// trains keep requiresGrad, which leaves their gradients unchanged and skips the others
test("float32, timestep 10: output, loss and the gradient of every attn2.to_k/to_v weight", () => {
  const model = load();
  const trained = model.crossAttentionLayers().flatMap(
    ([k, a]) =>
      [
        [`${k}.to_k.weight`, a.to_k.weight],
        [`${k}.to_v.weight`, a.to_v.weight],
      ] as const,
  );
  const gradKeys = G.keys("grad.").map((k) => k.slice("grad.".length));
  assert.equal(
    trained.map(([k]) => k).sort(),
    [...gradKeys].sort(),
    "the fixture holds one gradient per attn2 to_k/to_v",
  );
  for (const p of model.parameters()) p.requiresGrad_(false);
  for (const [, w] of trained) w.requiresGrad_(true);

  const x = G.tensor("input.sample"),
    ctx = G.tensor("input.encoder_hidden_states");
  const y = model.forward(x, 10, ctx); // (2, 4, 32, 32)
  assertAllClose("output.sample", y, G.data("output.sample"), TOL.f32.atol, TOL.f32.rtol, G.shape("output.sample"));
  assertAllClose("output.sample vs ref64", y, G.data("ref64.output.sample"), TOL.f32.atol, TOL.f32.rtol);
  const loss = y.mul(y).mean();
  assertAllClose("output.loss", loss, G.data("output.loss"), 0, 1e-5);

  loss.backward();
  for (const [key, w] of trained) {
    assert.ok(w.grad, `${key} has a gradient`);
    assertRelToMax(`grad.${key}`, w.grad!, G.data(`grad.${key}`), TOL.grad32);
    assertRelToMax(`grad.${key} vs ref64`, w.grad!, G.data(`ref64.grad.${key}`), TOL.grad32);
  }
});

// the float32 sinusoidal features at a large timestep (diffusers forms them in float32)
test("float32, timestep 500: the second sample of the per-sample case", () => {
  const model = load();
  const x = narrowSlice(G.tensor("input.sample"), 0, 1, 2),
    ctx = narrowSlice(G.tensor("input.encoder_hidden_states"), 0, 1, 2);
  const y = noGrad(() => model.forward(x, 500, ctx)); // (1, 4, 32, 32)
  const shape = G.shape("output.sample_timesteps");
  assertAllClose(
    "output.sample_timesteps[1]",
    y,
    rows(G.data("output.sample_timesteps"), shape, 1, 2),
    TOL.f32.atol,
    TOL.f32.rtol,
    [1, ...shape.slice(1)],
  );
  assertAllClose(
    "ref64.output.sample_timesteps[1]",
    y,
    rows(G.data("ref64.output.sample_timesteps"), shape, 1, 2),
    TOL.f32.atol,
    TOL.f32.rtol,
  );
});

// float64 separates real differences from float32 rounding: ref64 is exact to ~6e-8 relative
test("float64, per-sample timesteps [10, 500]: both samples to 1e-6 relative", () => {
  const model = load().toDType("float64");
  const x = G.tensor("input.sample", "float64"),
    ctx = G.tensor("input.encoder_hidden_states", "float64");
  const y = noGrad(() => model.forward(x, [10, 500], ctx)); // (2, 4, 32, 32)
  assert.is(y.dtype, "float64");
  assertAllClose(
    "ref64.output.sample_timesteps",
    y,
    G.data("ref64.output.sample_timesteps"),
    TOL.f64.atol,
    TOL.f64.rtol,
    G.shape("ref64.output.sample_timesteps"),
  );
  // sample 0 at timestep 10 is case A's first sample
  const shape = G.shape("ref64.output.sample");
  assertAllClose(
    "ref64.output.sample[0]",
    rows(y.data, shape, 0, 1),
    rows(G.data("ref64.output.sample"), shape, 0, 1),
    TOL.f64.atol,
    TOL.f64.rtol,
  );
});

test.run();
