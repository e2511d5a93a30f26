// DDPMScheduler: one ancestral step against the hand formulas (eqs. 7 and 15 of arXiv:2006.11239),
// variance types and the 1e-20 clamp, previous_timestep with inference and custom timesteps
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, Generator, randn, tensor } from "../../../engine/index.ts";
import { DDPMScheduler, SD1_SCHEDULER_CONFIG } from "../../../models/schedulers/index.ts";

const f64 = (data: number[], shape: number[]) => tensor(data, shape, { dtype: "float64" });

function assertNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

/** The DDPM posterior mean and std by hand, for prev = t - 1 (or a given prev). */
function byHand(s: DDPMScheduler, t: number, prev: number, x: number[], x0: number[]) {
  const a = s.alphasCumprod[t],
    ap = prev >= 0 ? s.alphasCumprod[prev] : 1;
  const betaT = 1 - a / ap;
  const mean = x.map(
    (xi, i) => ((Math.sqrt(ap) * betaT) / (1 - a)) * x0[i] + ((Math.sqrt(a / ap) * (1 - ap)) / (1 - a)) * xi,
  );
  const variance = Math.max(((1 - ap) / (1 - a)) * betaT, 1e-20);
  return { mean, variance, betaT };
}

test("one DDPM step (epsilon, fixed_small) against the hand formula, noise from the generator", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const x = [0.8, -1.3, 0.05, 2.2],
    e = [0.1, 0.9, -0.4, -1.7];
  const t = 500,
    a = s.alphasCumprod[t];
  const x0 = x.map((xi, i) => (xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a));
  const { mean, variance } = byHand(s, t, t - 1, x, x0);
  const z = randn([2, 2], { dtype: "float64", generator: new Generator(5) }).data;
  const out = s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { generator: new Generator(5) });
  assertNear(out.predOriginalSample.data, x0, 1e-14, "x0");
  assertNear(
    out.prevSample.data,
    mean.map((m, i) => m + Math.sqrt(variance) * z[i]),
    1e-14,
    "x_{t-1}",
  );
  assert.equal(out.prevSample.shape, [2, 2]);
});

test("step with given varianceNoise: sigma_t z added for t > 0, the generator's draw reproduced, errors", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const x = [0.8, -1.3, 0.05, 2.2],
    e = [0.1, 0.9, -0.4, -1.7],
    zs = [0.5, -2, 1.25, 0];
  const t = 700,
    a = s.alphasCumprod[t];
  const x0 = x.map((xi, i) => (xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a));
  const { mean, variance } = byHand(s, t, t - 1, x, x0);
  const out = s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { varianceNoise: f64(zs, [2, 2]) });
  assertNear(
    out.prevSample.data,
    mean.map((m, i) => m + Math.sqrt(variance) * zs[i]),
    1e-14,
    "x_{t-1}",
  );
  // the generator's own draw, passed as noise, gives the generator's step bit for bit
  const z = randn([2, 2], { dtype: "float64", generator: new Generator(5) });
  const viaGen = s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { generator: new Generator(5) });
  const viaNoise = s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { varianceNoise: z });
  assert.equal(Array.from(viaNoise.prevSample.data), Array.from(viaGen.prevSample.data));
  // no noise at t = 0
  const at0 = s.step(f64(e, [2, 2]), 0, f64(x, [2, 2]), { varianceNoise: f64(zs, [2, 2]) });
  assert.equal(Array.from(at0.prevSample.data), Array.from(s.step(f64(e, [2, 2]), 0, f64(x, [2, 2])).prevSample.data));
  assert.throws(
    () => s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { varianceNoise: f64(zs, [4]) }),
    /varianceNoise must have modelOutput's shape/,
  );
  assert.throws(
    () => s.step(f64(e, [2, 2]), t, f64(x, [2, 2]), { varianceNoise: z, generator: new Generator(1) }),
    (err: Error) => err instanceof ConfigError && /not both/.test(err.message),
  );
});

test("no noise at t = 0; the variance there is clamped to 1e-20", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const x = [0.3, -0.6],
    e = [0.2, 0.1];
  const a = s.alphasCumprod[0];
  const x0 = x.map((xi, i) => (xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a));
  const r1 = s.step(f64(e, [2]), 0, f64(x, [2]), { generator: new Generator(1) }).prevSample.data;
  const r2 = s.step(f64(e, [2]), 0, f64(x, [2]), { generator: new Generator(2) }).prevSample.data;
  assert.equal(Array.from(r1), Array.from(r2));
  // abar_prev = 1: the mean is x0 itself
  assertNear(r1, x0, 1e-14, "x_{-1} = x0");
  assert.is(s.getVariance(0), 1e-20);
});

test("diffusers variance goldens (linear 1e-4..0.02): 0 at t=0, 0.00979 at 487, 0.02 at 999", () => {
  const s = new DDPMScheduler();
  assert.ok(Math.abs(s.getVariance(0) - 0) < 1e-5);
  assert.ok(Math.abs(s.getVariance(487) - 0.00979) < 1e-5, `${s.getVariance(487)}`);
  assert.ok(Math.abs(s.getVariance(999) - 0.02) < 1e-5, `${s.getVariance(999)}`);
});

test("variance types: fixed_small_log gives the std, fixed_large gives beta_t", () => {
  const small = new DDPMScheduler({ ...SD1_SCHEDULER_CONFIG, variance_type: "fixed_small" });
  const log = new DDPMScheduler({ ...SD1_SCHEDULER_CONFIG, variance_type: "fixed_small_log" });
  const large = new DDPMScheduler({ ...SD1_SCHEDULER_CONFIG, variance_type: "fixed_large" });
  const { variance, betaT } = byHand(small, 300, 299, [0], [0]);
  assert.ok(Math.abs(small.getVariance(300) - variance) < 1e-18);
  assert.ok(Math.abs(log.getVariance(300) - Math.sqrt(variance)) < 1e-15);
  assert.ok(Math.abs(large.getVariance(300) - betaT) < 1e-18);
  assert.ok(large.getVariance(300) > small.getVariance(300));
  // each step adds std * z with the matching std
  const x = [1.0],
    e = [0.5];
  const z = randn([1], { dtype: "float64", generator: new Generator(9) }).data[0];
  const a = small.alphasCumprod[300];
  const x0 = [(x[0] - Math.sqrt(1 - a) * e[0]) / Math.sqrt(a)];
  const m = byHand(small, 300, 299, x, x0).mean[0];
  for (const [s, std] of [
    [small, Math.sqrt(variance)],
    [log, Math.sqrt(variance)],
    [large, Math.sqrt(betaT)],
  ] as const) {
    const got = s.step(f64(e, [1]), 300, f64(x, [1]), { generator: new Generator(9) }).prevSample.data[0];
    assert.ok(Math.abs(got - (m + std * z)) < 1e-14, `${s.config.variance_type}: ${got} vs ${m + std * z}`);
  }
});

test("v_prediction and sample prediction types give x0 as in diffusers", () => {
  const v = new DDPMScheduler({ ...SD1_SCHEDULER_CONFIG, prediction_type: "v_prediction" });
  const t = 0; // no noise, so the result is the mean
  const a = v.alphasCumprod[t];
  const x0 = Math.sqrt(a) * 0.7 - Math.sqrt(1 - a) * 0.2;
  const out = v.step(f64([0.2], [1]), t, f64([0.7], [1]));
  assertNear(out.predOriginalSample.data, [x0], 1e-15, "v x0");
  const samp = new DDPMScheduler({ ...SD1_SCHEDULER_CONFIG, prediction_type: "sample" });
  const o2 = samp.step(f64([0.25], [1]), 10, f64([0.7], [1]), { generator: new Generator(0) });
  assert.equal(Array.from(o2.predOriginalSample.data), [0.25]);
  // training targets: v = getVelocity(x0, eps) makes the v-step recover x0 exactly
  const x0t = f64([0.4, -0.9], [2, 1]),
    eps = f64([-1.2, 0.3], [2, 1]);
  const xt = v.addNoise(x0t, eps, [640, 640]);
  assertNear(
    v.step(v.getVelocity(x0t, eps, [640, 640]), 640, xt).predOriginalSample.data,
    x0t.data,
    1e-13,
    "v round trip",
  );
});

test("clip_sample (class default true) clamps x0 to [-1, 1]", () => {
  const s = new DDPMScheduler(); // linear betas, clip_sample true
  const a = s.alphasCumprod[100];
  const out = s.step(f64([0, 0, 0], [3]), 100, f64([5, -5, 0.1], [3]), { generator: new Generator(0) });
  assertNear(out.predOriginalSample.data, [1, -1, 0.1 / Math.sqrt(a)], 1e-15, "clipped x0");
  assert.ok(0.1 / Math.sqrt(a) < 1);
});

test("previous_timestep: t - 1 by default, the next inference timestep after setTimesteps, -1 at the end", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  assert.is(s.previousTimestep(500), 499);
  s.setTimesteps(50);
  assert.is(s.timesteps[0], 981);
  assert.is(s.previousTimestep(981), 961);
  assert.is(s.previousTimestep(1), -1);
  assert.throws(
    () => s.previousTimestep(500),
    (e: Error) => e instanceof ConfigError,
  );
  // the step uses that previous timestep
  const t = 981,
    x = [0.5],
    e = [0.25];
  const a = s.alphasCumprod[t];
  const x0 = [(x[0] - Math.sqrt(1 - a) * e[0]) / Math.sqrt(a)];
  const { mean, variance } = byHand(s, t, 961, x, x0);
  const z = randn([1], { dtype: "float64", generator: new Generator(3) }).data[0];
  const got = s.step(f64(e, [1]), t, f64(x, [1]), { generator: new Generator(3) }).prevSample.data[0];
  assert.ok(Math.abs(got - (mean[0] + Math.sqrt(variance) * z)) < 1e-14);
});

test("custom timesteps (diffusers test_custom_timesteps) and their errors", () => {
  const s = new DDPMScheduler();
  s.setTimesteps([100, 87, 50, 1, 0]);
  assert.equal(
    [100, 87, 50, 1, 0].map((t) => s.previousTimestep(t)),
    [87, 50, 1, 0, -1],
  );
  assert.ok(s.customTimesteps);
  assert.throws(
    () => s.setTimesteps([100, 87, 50, 51, 0]),
    (e: Error) => e instanceof ConfigError && /descending/.test(e.message),
  );
  assert.throws(
    () => s.setTimesteps([1000]),
    (e: Error) => e instanceof ConfigError,
  );
  assert.throws(
    () => s.setTimesteps([]),
    (e: Error) => e instanceof ConfigError,
  );
  s.setTimesteps(4);
  assert.not.ok(s.customTimesteps);
  assert.equal(Array.from(s.timesteps), [750, 500, 250, 0]);
});

test("float32 samples stay float32 through a step", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const out = s.step(tensor([0.1, 0.2]), 10, tensor([0.3, 0.4]), { generator: new Generator(0) });
  assert.is(out.prevSample.dtype, "float32");
  assert.is(out.predOriginalSample.dtype, "float32");
});

test.run();
