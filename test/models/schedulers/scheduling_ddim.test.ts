// DDIMScheduler: SD-1.x timesteps, single steps against hand-computed float64 eqs. (12) and (16),
// prediction types, clipping, full loops (toy model by hand; diffusers' full-loop goldens)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError, Generator, ShapeError, Tensor, randn, tensor } from "../../../engine/index.ts";
import { DDIMScheduler, SD1_SCHEDULER_CONFIG } from "../../../models/schedulers/index.ts";

const f64 = (data: number[], shape: number[]) => tensor(data, shape, { dtype: "float64" });
const sd = () => DDIMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);

function assertNear(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
}

test("SD-1.x 50-step DDIM timesteps are 981, 961, ..., 1", () => {
  const s = sd();
  s.setTimesteps(50);
  assert.equal(
    Array.from(s.timesteps),
    [
      981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681, 661, 641, 621, 601, 581, 561, 541,
      521, 501, 481, 461, 441, 421, 401, 381, 361, 341, 321, 301, 281, 261, 241, 221, 201, 181, 161, 141, 121, 101, 81,
      61, 41, 21, 1,
    ],
  );
  assert.is(s.numInferenceSteps, 50);
  assert.is(s.initNoiseSigma, 1);
  assert.is(s.finalAlphaCumprod, s.alphasCumprod[0]); // set_alpha_to_one false
  assert.is(new DDIMScheduler().finalAlphaCumprod, 1); // class default true
});

test("before setTimesteps: all training timesteps, and step refuses to run", () => {
  const s = sd();
  assert.is(s.timesteps.length, 1000);
  assert.is(s.timesteps[0], 999);
  assert.is(s.timesteps[999], 0);
  const x = f64([1], [1]);
  assert.throws(
    () => s.step(x, 981, x),
    (e: Error) => e instanceof ConfigError && /setTimesteps/.test(e.message),
  );
});

test("scaleModelInput is the identity", () => {
  const x = f64([1, 2], [2]);
  assert.is(sd().scaleModelInput(x, 981), x);
});

test("one DDIM step, eta 0 (eq. 12) against hand float64", () => {
  const s = sd();
  s.setTimesteps(50);
  const x = [0.8, -1.3, 0.05, 2.2],
    e = [0.1, 0.9, -0.4, -1.7];
  const out = s.step(f64(e, [1, 4]), 981, f64(x, [1, 4]));
  const a = s.alphasCumprod[981],
    ap = s.alphasCumprod[961];
  const x0 = x.map((xi, i) => (xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a));
  const prev = x0.map((x0i, i) => Math.sqrt(ap) * x0i + Math.sqrt(1 - ap) * e[i]);
  assert.equal(out.prevSample.shape, [1, 4]);
  assertNear(out.predOriginalSample.data, x0, 1e-14, "x0");
  assertNear(out.prevSample.data, prev, 1e-14, "x_{t-1}");
});

test("last step uses final_alpha_cumprod: alphas_cumprod[0] (SD) or 1 (set_alpha_to_one)", () => {
  for (const setOne of [false, true]) {
    const s = new DDIMScheduler({ ...SD1_SCHEDULER_CONFIG, set_alpha_to_one: setOne });
    s.setTimesteps(50);
    const x = [0.5, -0.25],
      e = [0.3, 0.6];
    const out = s.step(f64(e, [2]), 1, f64(x, [2])); // prev timestep 1 - 20 < 0
    const a = s.alphasCumprod[1],
      ap = setOne ? 1 : s.alphasCumprod[0];
    const want = x.map(
      (xi, i) => Math.sqrt(ap) * ((xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a)) + Math.sqrt(1 - ap) * e[i],
    );
    assertNear(out.prevSample.data, want, 1e-14, `set_alpha_to_one ${setOne}`);
  }
});

test("one DDIM step, eta 1 with fixed varianceNoise (eq. 16) against hand float64", () => {
  const s = sd();
  s.setTimesteps(10); // 901, 801, ..., 1: prev = t - 100
  const x = [0.8, -1.3, 0.05],
    e = [0.1, 0.9, -0.4],
    z = [1.5, -0.5, 0.25];
  const t = 501,
    eta = 1;
  const out = s.step(f64(e, [3]), t, f64(x, [3]), { eta, varianceNoise: f64(z, [3]) });
  const a = s.alphasCumprod[t],
    ap = s.alphasCumprod[t - 100];
  const sigma = eta * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
  const want = x.map((xi, i) => {
    const x0 = (xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a);
    return Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - sigma * sigma) * e[i] + sigma * z[i];
  });
  assertNear(out.prevSample.data, want, 1e-14, "x_{t-1}");
  assert.ok(Math.abs(s.getVariance(t, t - 100) - sigma * sigma) < 1e-16);
  // eta 0.5 halves sigma
  const half = s.step(f64(e, [3]), t, f64(x, [3]), { eta: 0.5, varianceNoise: f64(z, [3]) }).prevSample.data;
  const s2 = 0.5 * sigma;
  const wantHalf = x.map(
    (xi, i) =>
      Math.sqrt(ap) * ((xi - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a)) + Math.sqrt(1 - ap - s2 * s2) * e[i] + s2 * z[i],
  );
  assertNear(half, wantHalf, 1e-14, "eta 0.5");
});

test("eta > 0 draws the noise from the generator; generator and varianceNoise together are refused", () => {
  const s = sd();
  s.setTimesteps(10);
  const x = f64([0.8, -1.3, 0.05, 1], [2, 2]),
    e = f64([0.1, 0.9, -0.4, 0], [2, 2]);
  const z = randn([2, 2], { dtype: "float64", generator: new Generator(7) });
  const viaGen = s.step(e, 501, x, { eta: 1, generator: new Generator(7) }).prevSample.data;
  const viaNoise = s.step(e, 501, x, { eta: 1, varianceNoise: z }).prevSample.data;
  assert.equal(Array.from(viaGen), Array.from(viaNoise));
  const noNoise = s.step(e, 501, x).prevSample.data;
  assert.ok(Math.abs(viaGen[0] - noNoise[0]) > 1e-3);
  assert.throws(
    () => s.step(e, 501, x, { eta: 1, generator: new Generator(7), varianceNoise: z }),
    (err: Error) => err instanceof ConfigError,
  );
  assert.throws(
    () => s.step(e, 501, x, { eta: 1, varianceNoise: f64([1], [1]) }),
    (err: Error) => err instanceof ShapeError,
  );
  assert.throws(
    () => s.step(e, 501, f64([1, 2], [2])),
    (err: Error) => err instanceof ShapeError,
  );
  assert.throws(
    () => s.step(e, 1000, x),
    (err: Error) => err instanceof ConfigError,
  );
});

test("v_prediction: x0 = sqrt(a) x_t - sqrt(1-a) v, eps = sqrt(a) v + sqrt(1-a) x_t; round trip with getVelocity", () => {
  const s = new DDIMScheduler({ ...SD1_SCHEDULER_CONFIG, prediction_type: "v_prediction" });
  s.setTimesteps(50);
  const x0 = f64([0.4, -0.9, 1.7], [3, 1]),
    eps = f64([-1.2, 0.3, 0.8], [3, 1]);
  const t = 741;
  const xt = s.addNoise(x0, eps, [t]);
  const v = s.getVelocity(x0, eps, [t]);
  const out = s.step(v, t, xt);
  assertNear(out.predOriginalSample.data, x0.data, 1e-13, "x0 recovered");
  const ap = s.alphasCumprod[t - 20];
  const want = Array.from(x0.data).map((x0i, i) => Math.sqrt(ap) * x0i + Math.sqrt(1 - ap) * eps.data[i]);
  assertNear(out.prevSample.data, want, 1e-13, "x_{t-1}");
  // the formula itself on arbitrary numbers
  const a = s.alphasCumprod[t];
  const o2 = s.step(f64([0.5], [1]), t, f64([2], [1]));
  const x0h = Math.sqrt(a) * 2 - Math.sqrt(1 - a) * 0.5,
    epsh = Math.sqrt(a) * 0.5 + Math.sqrt(1 - a) * 2;
  assertNear(o2.prevSample.data, [Math.sqrt(ap) * x0h + Math.sqrt(1 - ap) * epsh], 1e-14, "v step");
});

test("prediction_type sample: x0 is the model output, eps = (x_t - sqrt(a) x0) / sqrt(1-a)", () => {
  const s = new DDIMScheduler({ ...SD1_SCHEDULER_CONFIG, prediction_type: "sample" });
  s.setTimesteps(50);
  const t = 501,
    a = s.alphasCumprod[t],
    ap = s.alphasCumprod[t - 20];
  const out = s.step(f64([0.3], [1]), t, f64([-1.1], [1]));
  const eps = (-1.1 - Math.sqrt(a) * 0.3) / Math.sqrt(1 - a);
  assertNear(out.prevSample.data, [Math.sqrt(ap) * 0.3 + Math.sqrt(1 - ap) * eps], 1e-14, "x_{t-1}");
});

test("clip_sample clamps x0 to +-clip_sample_range; useClippedModelOutput re-derives eps", () => {
  const s = new DDIMScheduler({ ...SD1_SCHEDULER_CONFIG, clip_sample: true, clip_sample_range: 0.5 });
  s.setTimesteps(50);
  const t = 981,
    a = s.alphasCumprod[t],
    ap = s.alphasCumprod[t - 20];
  const x = [3, -3, 0.01],
    e = [0, 0, 0];
  const out = s.step(f64(e, [3]), t, f64(x, [3]));
  const x0 = x.map((xi) => Math.min(0.5, Math.max(-0.5, xi / Math.sqrt(a))));
  assertNear(out.predOriginalSample.data, x0, 1e-15, "clipped x0");
  assert.equal(Array.from(out.predOriginalSample.data).slice(0, 2), [0.5, -0.5]);
  assertNear(
    out.prevSample.data,
    x0.map((v) => Math.sqrt(ap) * v),
    1e-15,
    "x_{t-1} with eps 0",
  );
  const re = s.step(f64(e, [3]), t, f64(x, [3]), { useClippedModelOutput: true });
  const want = x.map(
    (xi, i) => Math.sqrt(ap) * x0[i] + Math.sqrt(1 - ap) * ((xi - Math.sqrt(a) * x0[i]) / Math.sqrt(1 - a)),
  );
  assertNear(re.prevSample.data, want, 1e-14, "clipped eps");
});

test("full DDIM loop, SD-1.x 50 steps, toy model eps = 0.1 x: final sum against plain float64 loops", () => {
  const s = sd();
  s.setTimesteps(50);
  let sample: Tensor = randn([2, 3, 4, 4], { dtype: "float64", generator: new Generator(123) });
  const start = Array.from(sample.data);
  for (const t of s.timesteps) sample = s.step(sample.mul(0.1), t, sample).prevSample;
  // by hand: each element follows the same linear recurrence
  let want = 0;
  for (const x0 of start) {
    let x = x0;
    for (let t = 981; t >= 1; t -= 20) {
      const a = s.alphasCumprod[t];
      const ap = t - 20 >= 0 ? s.alphasCumprod[t - 20] : s.alphasCumprod[0];
      const eps = 0.1 * x;
      const pred = (x - Math.sqrt(1 - a) * eps) / Math.sqrt(a);
      x = Math.sqrt(ap) * pred + Math.sqrt(1 - ap) * eps;
    }
    want += x;
  }
  const got = Array.from(sample.data).reduce((p, v) => p + v, 0);
  assert.ok(Math.abs(got - want) < 1e-10 * (1 + Math.abs(want)), `sum ${got} vs ${want}`);
  assert.ok(Math.abs(want) > 1, `sum ${want} is not trivially small`);
});

// diffusers tests/schedulers/test_scheduler_ddim.py: dummy_sample_deter, dummy_model and the
// full_loop goldens (diffusers checks result_sum within 1e-2; we match within 1e-3), config linear 1e-4..0.02, clip_sample true, 10 steps
function deter(flip: boolean): Tensor {
  const n = 4 * 3 * 8 * 8,
    data = new Float32Array(n);
  for (let b = 0; b < 4; b++)
    for (let c = 0; c < 3; c++)
      for (let h = 0; h < 8; h++)
        for (let w = 0; w < 8; w++) {
          const k = ((c * 8 + h) * 8 + w) * 4 + b; // arange reshaped (3, 8, 8, 4), permuted to (4, 3, 8, 8)
          data[((b * 3 + c) * 8 + h) * 8 + w] = (flip ? n - 1 - k : k) / n;
        }
  return tensor(data, [4, 3, 8, 8]);
}
const dummyModel = (x: Tensor, t: number) => x.mul(t).div(t + 1);
const absSum = (x: Tensor) => Array.from(x.data).reduce((p, v) => p + Math.abs(v), 0);

function fullLoop(cfg: Record<string, unknown>, tStart = 0): number {
  const s = DDIMScheduler.fromConfig({
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: "linear",
    clip_sample: true,
    ...cfg,
  });
  s.setTimesteps(10);
  let sample = deter(false);
  const ts = Array.from(s.timesteps).slice(tStart);
  if (tStart > 0) sample = s.addNoise(sample, deter(true), [ts[0]]);
  for (const t of ts) sample = s.step(dummyModel(sample, t), t, sample, { eta: 0 }).prevSample;
  return absSum(sample);
}

test("diffusers DDIM full-loop goldens (epsilon, v_prediction, set_alpha_to_one, add_noise at t_start)", () => {
  const cases: [Record<string, unknown>, number, number][] = [
    [{}, 0, 172.0067],
    [{ prediction_type: "v_prediction" }, 0, 52.5302],
    [{ set_alpha_to_one: true, beta_start: 0.01 }, 0, 149.8295],
    [{ set_alpha_to_one: false, beta_start: 0.01 }, 0, 149.0784],
    [{}, 8, 354.5418],
  ];
  for (const [cfg, tStart, want] of cases) {
    const got = fullLoop(cfg, tStart);
    assert.ok(Math.abs(got - want) < 1e-3, `${JSON.stringify(cfg)} t_start ${tStart}: ${got} vs ${want}`);
  }
  // and the diffusers variance goldens
  const s = new DDIMScheduler({ clip_sample: true });
  for (const [t, p, v] of [
    [0, 0, 0],
    [420, 400, 0.14771],
    [980, 960, 0.3246],
    [487, 486, 0.00979],
    [999, 998, 0.02],
  ]) {
    assert.ok(Math.abs(s.getVariance(t, p) - v) < 1e-5, `variance(${t}, ${p}) = ${s.getVariance(t, p)}`);
  }
});

test("step runs without recording a graph", () => {
  const s = sd();
  s.setTimesteps(50);
  const x = tensor([1, 2], [2], { dtype: "float64", requiresGrad: true });
  const out = s.step(x.mul(0.1), 981, x);
  assert.is(out.prevSample.gradNode, null);
});

test.run();
