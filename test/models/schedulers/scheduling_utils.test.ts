// Scheduler basics: float32-faithful betas and alphas_cumprod, timestep spacings (numpy's rounding),
// add_noise / get_velocity against hand formulas, strict config parsing, save / fromPretrained round trip
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, ShapeError, tensor } from "../../../engine/index.ts";
import { DDIMScheduler, DDPMScheduler, SD1_SCHEDULER_CONFIG, roundHalfEven } from "../../../models/schedulers/index.ts";
import { torchLinspaceGolden } from "./torch_linspace.ts";

const f = Math.fround;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "schedulers-test-"));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** torch's SD-1.x betas (avx2 kernel, test/fixtures/torch_linspace): linspace of sqrt(beta) in float32, squared in float32. */
const SD_BETAS = torchLinspaceGolden("avx2", "sd_scaled_linear_betas");
const sdBetaByHand = (i: number): number => SD_BETAS[i]!;

test("scaled_linear betas: float32 torch.linspace of sqrt(beta), squared in float32, all 1000 as torch gives them", () => {
  const s = DDIMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  assert.equal(Array.from(s.betas), Array.from(SD_BETAS));
  assert.is(s.betas[0], f(f(Math.sqrt(0.00085)) ** 2));
  // the plain float64 formula agrees to float32 precision
  for (const i of [0, 123, 999]) {
    const exact = (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
    assert.ok(Math.abs(s.betas[i] - exact) / exact < 1e-6, `beta[${i}] ${s.betas[i]} vs ${exact}`);
  }
});

test("alphas_cumprod: double accumulator, each output rounded to float32 (torch.cumprod on CPU)", () => {
  const s = DDIMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  let acc = 1;
  const byHand = new Float64Array(1000);
  for (let i = 0; i < 1000; i++) {
    acc *= f(1 - sdBetaByHand(i));
    byHand[i] = f(acc);
  }
  for (const i of [0, 1, 20, 500, 981, 999]) assert.is(s.alphasCumprod[i], byHand[i], `alphas_cumprod[${i}]`);
  assert.is(s.alphasCumprod[0], f(1 - s.betas[0]));
  assert.is(s.alphas[10], f(1 - s.betas[10]));
  // SD-1.x's well-known values: abar_0 = 1 - 0.00085, abar_999 ~= 0.0046601
  assert.ok(Math.abs(s.alphasCumprod[0] - 0.99915) < 1e-7);
  assert.ok(Math.abs(s.alphasCumprod[999] - 0.0046601) < 1e-7, `${s.alphasCumprod[999]}`);
  // against a pure float64 product: float32 rounding costs less than 1e-5 relative
  let p = 1;
  for (let i = 0; i < 1000; i++) {
    p *= 1 - (Math.sqrt(0.00085) + (i / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085))) ** 2;
    if (i % 111 === 0) assert.ok(Math.abs(s.alphasCumprod[i] - p) / p < 1e-5, `abar[${i}]`);
  }
});

test("linear betas with diffusers' class defaults (1e-4..0.02) when keys are absent", () => {
  const s = new DDPMScheduler();
  assert.is(s.config.beta_schedule, "linear");
  assert.is(s.config.clip_sample, true);
  assert.is(s.betas[0], f(0.0001));
  assert.is(s.betas[999], f(0.02));
  const step = f(f(f(0.02) - f(0.0001)) / 999);
  assert.is(s.betas[3], f(f(0.0001) + f(step * 3)));
  assert.is(s.betas[998], f(f(0.02) - f(step * 1)));
  assert.equal(Array.from(s.betas), Array.from(torchLinspaceGolden("avx2", "linear_betas_1e-4_0.02")));
});

test("squaredcos_cap_v2 betas: min(1 - abar(t2)/abar(t1), 0.999) in float64, stored as float32", () => {
  const s = new DDIMScheduler({ beta_schedule: "squaredcos_cap_v2" });
  const abar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  for (const i of [0, 1, 500, 998]) {
    const b = Math.min(1 - abar((i + 1) / 1000) / abar(i / 1000), 0.999);
    assert.ok(Math.abs(s.betas[i] - f(b)) <= 1e-9 * b, `beta[${i}] ${s.betas[i]} vs ${b}`);
    assert.is(s.betas[i], f(s.betas[i]));
  }
  assert.is(s.betas[999], f(0.999)); // abar(1) ~ 0: capped
  assert.ok(Math.abs(s.betas[0] - 4.12842e-5) < 1e-10, `${s.betas[0]}`); // python: 1 - abar(0.001) / abar(0)
});

test("trained_betas are used as given (rounded to float32) and must have num_train_timesteps entries", () => {
  const s = new DDPMScheduler({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.3] });
  assert.equal(Array.from(s.betas), [f(0.1), f(0.2), f(0.3)]);
  assert.is(s.alphasCumprod[2], f(f(0.9) * f(0.8) * f(0.7)));
  assert.throws(
    () => new DDPMScheduler({ num_train_timesteps: 4, trained_betas: [0.1, 0.2, 0.3] }),
    (e: Error) => e instanceof ConfigError && /trained_betas/.test(e.message),
  );
});

test("roundHalfEven is numpy's round", () => {
  assert.equal(
    [0.5, 1.5, 2.5, 499.5, 937.5, 812.5, -0.5, 2.4999, 2.5001].map(roundHalfEven),
    [0, 2, 2, 500, 938, 812, -0, 2, 3],
  );
});

test("timestep spacings: leading (+ steps_offset), trailing, linspace against hand lists", () => {
  const mk = (timestep_spacing: "leading" | "trailing" | "linspace", steps_offset = 0) => {
    const s = new DDPMScheduler({ timestep_spacing, steps_offset });
    return (n: number) => {
      s.setTimesteps(n);
      return Array.from(s.timesteps);
    };
  };
  assert.equal(mk("leading", 1)(5), [801, 601, 401, 201, 1]); // diffusers test_steps_offset
  assert.equal(mk("leading")(3), [666, 333, 0]); // 1000 // 3 = 333
  assert.equal(mk("trailing")(3), [999, 666, 332]); // round(1000, 666.67, 333.33) - 1
  assert.equal(mk("trailing")(4), [999, 749, 499, 249]);
  // 1000 / 16 = 62.5: halves round to even (937.5 -> 938, 812.5 -> 812)
  assert.equal(mk("trailing")(16).slice(0, 6), [999, 937, 874, 811, 749, 687]);
  assert.equal(mk("linspace")(4), [999, 666, 333, 0]);
  assert.equal(mk("linspace")(3), [999, 500, 0]); // 499.5 rounds to even 500
  assert.equal(mk("linspace")(1), [0]);
  assert.equal(mk("trailing")(1), [999]);
});

test("setTimesteps rejects counts outside 1..num_train_timesteps", () => {
  const s = new DDIMScheduler();
  for (const n of [0, 1001, 2.5, -1])
    assert.throws(
      () => s.setTimesteps(n),
      (e: Error) => e instanceof ConfigError,
    );
});

test("addNoise: sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with one timestep per batch element", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const x0 = tensor([[[1.5, -2]], [[0.25, 3]]], undefined, { dtype: "float64" }); // (2, 1, 2)
  const eps = tensor([[[0.5, 1]], [[-1, 2]]], undefined, { dtype: "float64" });
  const y = s.addNoise(x0, eps, [10, 999]);
  assert.equal(y.shape, [2, 1, 2]);
  const a10 = s.alphasCumprod[10],
    a999 = s.alphasCumprod[999];
  const want = [
    Math.sqrt(a10) * 1.5 + Math.sqrt(1 - a10) * 0.5,
    Math.sqrt(a10) * -2 + Math.sqrt(1 - a10) * 1,
    Math.sqrt(a999) * 0.25 + Math.sqrt(1 - a999) * -1,
    Math.sqrt(a999) * 3 + Math.sqrt(1 - a999) * 2,
  ];
  Array.from(y.data).forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-15, `element ${i}: ${v} vs ${want[i]}`));
  // one timestep for the whole batch broadcasts; a tensor of timesteps works too
  const y1 = s.addNoise(x0, eps, tensor([10, 10]));
  assert.equal(Array.from(s.addNoise(x0, eps, [10]).data), Array.from(y1.data));
  assert.ok(Math.abs(y1.data[3] - (Math.sqrt(a10) * 3 + Math.sqrt(1 - a10) * 2)) < 1e-15);
  // float32 samples use float32 coefficients formed as torch does (1 - abar rounded before the sqrt;
  // at t = 359 that rounding changes sqrt(1 - abar) by one float32 ulp)
  const a359 = s.alphasCumprod[359];
  assert.is.not(f(Math.sqrt(f(1 - a359))), f(Math.sqrt(1 - a359)));
  const y32 = s.addNoise(x0.float(), eps.float(), [359]);
  assert.is(y32.dtype, "float32");
  assert.is(y32.data[0], f(f(f(Math.sqrt(a359)) * 1.5) + f(f(Math.sqrt(f(1 - a359))) * 0.5)));
});

test("addNoise / getVelocity check shapes and timesteps", () => {
  const s = new DDPMScheduler();
  const x = tensor([
    [1, 2],
    [3, 4],
  ]);
  assert.throws(
    () => s.addNoise(x, tensor([1, 2]), [1, 2]),
    (e: Error) => e instanceof ShapeError,
  );
  assert.throws(
    () => s.addNoise(x, x, [1, 2, 3]),
    (e: Error) => e instanceof ShapeError,
  );
  assert.throws(
    () => s.addNoise(x, x, [1, 1000]),
    (e: Error) => e instanceof ConfigError && /1000/.test(e.message),
  );
  assert.throws(
    () => s.getVelocity(x, x, [0.5, 1]),
    (e: Error) => e instanceof ConfigError,
  );
});

test("getVelocity: v = sqrt(abar) eps - sqrt(1 - abar) x0", () => {
  const s = DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  const x0 = tensor([0.3, -0.7], [2, 1], { dtype: "float64" });
  const eps = tensor([1.1, 0.2], [2, 1], { dtype: "float64" });
  const v = s.getVelocity(x0, eps, [500, 20]).data;
  const a = s.alphasCumprod[500],
    b = s.alphasCumprod[20];
  assert.ok(Math.abs(v[0] - (Math.sqrt(a) * 1.1 - Math.sqrt(1 - a) * 0.3)) < 1e-15);
  assert.ok(Math.abs(v[1] - (Math.sqrt(b) * 0.2 - Math.sqrt(1 - b) * -0.7)) < 1e-15);
});

test("config errors: unknown key, unsupported values, wrong types each name the key", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ num_train_timesteps: 1000, foo_bar: 1 }, /foo_bar/],
    [{ beta_schedule: "sigmoid" }, /beta_schedule.*sigmoid/],
    [{ thresholding: true }, /thresholding/],
    [{ rescale_betas_zero_snr: true }, /rescale_betas_zero_snr/],
    [{ prediction_type: "x0" }, /prediction_type/],
    [{ timestep_spacing: "karras" }, /timestep_spacing/],
    [{ clip_sample: "yes" }, /clip_sample/],
    [{ num_train_timesteps: [1000] }, /num_train_timesteps/],
    [{ steps_offset: -1 }, /steps_offset/],
    [{ trained_betas: "0.1" }, /trained_betas/],
  ];
  for (const [cfg, re] of bad) {
    for (const ctor of [DDIMScheduler.fromConfig, DDPMScheduler.fromConfig]) {
      assert.throws(
        () => ctor(cfg),
        (e: Error) => e instanceof ConfigError && re.test(e.message),
        JSON.stringify(cfg),
      );
    }
  }
  assert.throws(
    () => DDPMScheduler.fromConfig({ variance_type: "learned_range" }),
    (e: Error) => e instanceof ConfigError && /variance_type/.test(e.message),
  );
  assert.throws(
    () => DDIMScheduler.fromConfig({ set_alpha_to_one: 1 }),
    (e: Error) => e instanceof ConfigError && /set_alpha_to_one/.test(e.message),
  );
  // DDIM has no variance_type of its own, DDPM no set_alpha_to_one: each ignores the other's key
  assert.not.throws(() => DDPMScheduler.fromConfig(SD1_SCHEDULER_CONFIG));
  assert.not.throws(() => DDIMScheduler.fromConfig({ variance_type: "fixed_small" }));
});

test("fromPretrained reads SD-1.x's scheduler_config.json (a PNDMScheduler config) for both schedulers", () => {
  const folder = path.join(dir, "sd", "scheduler");
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(
    path.join(folder, "scheduler_config.json"),
    JSON.stringify({
      _class_name: "PNDMScheduler",
      _diffusers_version: "0.6.0",
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    }),
  );
  const ddim = DDIMScheduler.fromPretrained(path.join(dir, "sd"), { subfolder: "scheduler" });
  const ref = DDIMScheduler.fromConfig(SD1_SCHEDULER_CONFIG);
  assert.equal(Array.from(ddim.alphasCumprod), Array.from(ref.alphasCumprod));
  assert.is(ddim.finalAlphaCumprod, ref.alphasCumprod[0]);
  const ddpm = DDPMScheduler.fromPretrained(folder);
  assert.is(ddpm.config.clip_sample, false);
  assert.is(ddpm.config.steps_offset, 1);
  assert.throws(
    () => DDIMScheduler.fromPretrained(path.join(dir, "nowhere")),
    (e: Error) => e instanceof ConfigError,
  );
});

test("save writes scheduler_config.json with _class_name; fromPretrained restores the same config", () => {
  const s = new DDIMScheduler({
    ...SD1_SCHEDULER_CONFIG,
    timestep_spacing: "trailing",
    prediction_type: "v_prediction",
  });
  const folder = path.join(dir, "saved");
  s.save(folder);
  const raw = JSON.parse(fs.readFileSync(path.join(folder, "scheduler_config.json"), "utf8"));
  assert.is(raw._class_name, "DDIMScheduler");
  assert.is(raw.set_alpha_to_one, false);
  assert.is(raw.thresholding, false);
  const back = DDIMScheduler.fromPretrained(folder);
  assert.equal(back.config, s.config);
  const p = new DDPMScheduler({ variance_type: "fixed_large", clip_sample_range: 2 });
  p.save(path.join(dir, "ddpm"));
  assert.equal(DDPMScheduler.fromPretrained(path.join(dir, "ddpm")).config, p.config);
});

test.run();
