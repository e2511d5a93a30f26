// Parity of DDIMScheduler and DDPMScheduler with diffusers 0.21.4 on test/fixtures/ddim_scheduler and
// ddpm_scheduler (SD-1.x betas): schedules, timesteps, single steps, add_noise and a 50-step DDIM loop.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator } from "../../../engine/index.ts";
import { DDIMScheduler, DDPMScheduler } from "../../../models/schedulers/index.ts";
import { assertAllClose, Golden } from "./golden.ts";

const DDIM = new Golden("ddim_scheduler");
const DDPM = new Golden("ddpm_scheduler");
// float64 coefficients (this project) vs diffusers' float32 ones: abs 1e-5 (test/fixtures/README.md),
// plus 1e-6 relative for the large x0 predictions at t = 999 (|x0| up to 74)
const STEP = { atol: 1e-5, rtol: 1e-6 };
const DTYPES = ["float32", "float64"] as const;

test("DDIM: betas, alphas_cumprod and final_alpha_cumprod (float32 values) to 2e-6 relative", () => {
  const s = DDIMScheduler.fromPretrained(DDIM.dir);
  assertAllClose("betas", s.betas, DDIM.data("betas"), 0, 2e-6);
  assertAllClose("alphas_cumprod", s.alphasCumprod, DDIM.data("alphas_cumprod"), 0, 2e-6);
  assertAllClose("final_alpha_cumprod", [s.finalAlphaCumprod], DDIM.data("final_alpha_cumprod"), 0, 2e-6);
});

test("DDIM: leading timesteps with steps_offset 1 are exact", () => {
  const s = DDIMScheduler.fromPretrained(DDIM.dir);
  for (const n of [50, 25]) {
    s.setTimesteps(n);
    assert.equal(Array.from(s.timesteps), Array.from(DDIM.data(`timesteps_${n}`)), `timesteps_${n}`);
  }
});

for (const dtype of DTYPES) {
  test(`DDIM ${dtype}: step at t=781 and t=1 (final alpha), eta 0 and 1`, () => {
    const s = DDIMScheduler.fromPretrained(DDIM.dir);
    s.setTimesteps(50);
    const sample = DDIM.tensor("input.sample", dtype),
      eps = DDIM.tensor("input.model_output", dtype);
    const noise = DDIM.tensor("input.variance_noise", dtype);
    for (const t of [781, 1]) {
      for (const eta of [0, 1]) {
        const out = s.step(eps, t, sample, { eta, varianceNoise: noise });
        assert.is(out.prevSample.dtype, dtype);
        const k = `step.t${t}.eta${eta}`;
        assertAllClose(
          `${k}.prev_sample`,
          out.prevSample,
          DDIM.data(`${k}.prev_sample`),
          STEP.atol,
          STEP.rtol,
          DDIM.shape(`${k}.prev_sample`),
        );
        assertAllClose(
          `${k}.pred_original_sample`,
          out.predOriginalSample,
          DDIM.data(`${k}.pred_original_sample`),
          STEP.atol,
          STEP.rtol,
        );
      }
    }
  });

  test(`DDIM ${dtype}: 50-step loop with the model x * t / (t + 1)`, () => {
    const s = DDIMScheduler.fromPretrained(DDIM.dir);
    s.setTimesteps(50);
    let x = DDIM.tensor("input.sample", dtype);
    for (const t of s.timesteps) x = s.step(x.mul(t).div(t + 1), t, x).prevSample;
    assertAllClose("loop50.eta0.sample", x, DDIM.data("loop50.eta0.sample"), STEP.atol, STEP.rtol);
  });
}

test("DDPM: alphas_cumprod to 2e-6 relative; set_timesteps(50) is exact", () => {
  const s = DDPMScheduler.fromPretrained(DDPM.dir);
  assertAllClose("alphas_cumprod", s.alphasCumprod, DDPM.data("alphas_cumprod"), 0, 2e-6);
  s.setTimesteps(50);
  assert.equal(Array.from(s.timesteps), Array.from(DDPM.data("timesteps_50")));
});

for (const dtype of DTYPES) {
  test(`DDPM ${dtype}: add_noise at [10, 500] and [0, 999]`, () => {
    const s = DDPMScheduler.fromPretrained(DDPM.dir);
    const x0 = DDPM.tensor("input.sample", dtype),
      noise = DDPM.tensor("input.variance_noise", dtype);
    assert.equal(Array.from(DDPM.data("input.add_noise_timesteps")), [10, 500]);
    assertAllClose("add_noise", s.addNoise(x0, noise, [10, 500]), DDPM.data("add_noise"), STEP.atol, STEP.rtol);
    assertAllClose(
      "add_noise_t0_t999",
      s.addNoise(x0, noise, [0, 999]),
      DDPM.data("add_noise_t0_t999"),
      STEP.atol,
      STEP.rtol,
    );
  });

  // the fixture's noise is torch's Generator(7) draw, passed to the step as varianceNoise
  test(`DDPM ${dtype}: step at t = 500, 999, 1, 0 (1000-step schedule, fixed_small variance) with torch's noise`, () => {
    const s = DDPMScheduler.fromPretrained(DDPM.dir);
    const sample = DDPM.tensor("input.sample", dtype),
      eps = DDPM.tensor("input.model_output", dtype);
    const zTorch = DDPM.tensor("input.step_noise_seed7", dtype);
    for (const t of [500, 999, 1, 0]) {
      const out = s.step(eps, t, sample, { varianceNoise: zTorch });
      const k = `step.t${t}`;
      assertAllClose(
        `${k}.pred_original_sample`,
        out.predOriginalSample,
        DDPM.data(`${k}.pred_original_sample`),
        STEP.atol,
        STEP.rtol,
      );
      if (t > 0) {
        // diffusers forms 1 - abar_t / abar_{t-1} in float32: at t = 1 that cancellation leaves 1.3e-5 relative
        // error in its variance (a float32 replay of diffusers' arithmetic reproduces the fixture exactly)
        assertAllClose(`${k}.variance`, [s.getVariance(t)], DDPM.data(`${k}.variance`), 0, 2e-5);
      }
      // the same float32 cancellation scales the x0 coefficient of the posterior mean: 2.7e-5 abs at t = 1
      const atol = t === 1 ? 5e-5 : STEP.atol;
      assertAllClose(`${k}.prev_sample`, out.prevSample, DDPM.data(`${k}.prev_sample`), atol, STEP.rtol);
      if (t === 0) {
        const other = s.step(eps, t, sample, { generator: new Generator(8) });
        assert.equal(Array.from(other.prevSample.data), Array.from(out.prevSample.data), "t = 0 adds no noise");
      }
    }
  });
}

test.run();
