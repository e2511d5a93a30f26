// DDPMScheduler: denoising diffusion probabilistic models, arXiv:2006.11239 eqs. (6), (7) and (15)
// mirrors diffusers schedulers/scheduling_ddpm.py (config keys, set_timesteps, previous_timestep, step)
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { noGrad } from "../../engine/autograd.ts";
import { randn } from "../../engine/creation.ts";
import type { Generator } from "../../engine/random.ts";
import type { Tensor } from "../../engine/tensor.ts";
import {
  checkTimestep,
  parseSchedulerConfig,
  readSchedulerConfig,
  SCHEDULER_BASE_DEFAULTS,
  SchedulerBase,
  spacedTimesteps,
  type RawSchedulerConfig,
  type SchedulerConfigBase,
  type SchedulerOutput,
} from "./scheduling_utils.ts";

/** The fixed variances supported ("learned", "learned_range", "fixed_large_log" are rejected). */
export type VarianceType = "fixed_small" | "fixed_small_log" | "fixed_large";

/** DDPMScheduler's scheduler_config.json keys. */
export interface DDPMSchedulerConfig extends SchedulerConfigBase {
  variance_type: VarianceType;
}

/** diffusers' DDPMScheduler defaults (linear 1e-4..0.02, clip_sample true, fixed_small). */
export const DDPM_DEFAULTS: Readonly<DDPMSchedulerConfig> = Object.freeze({
  ...SCHEDULER_BASE_DEFAULTS,
  variance_type: "fixed_small",
});

// keys of sibling schedulers' configs (SD-1.x ships a PNDMScheduler config) that DDPM does not use
const DDPM_IGNORED = ["skip_prk_steps", "set_alpha_to_one"] as const;

/** Options of DDPMScheduler.step. */
export interface DDPMStepOptions {
  /** draws the noise added for t > 0 */
  generator?: Generator;
  /**
   * the noise z itself (modelOutput's shape), scaled by sigma_t and added for t > 0 instead of a
   * draw, as DDIMScheduler.step's varianceNoise: reproduces a reference step from its recorded noise
   */
  varianceNoise?: Tensor;
}

/**
 * The DDPM sampler and training-noise schedule. Without setTimesteps, step goes from t to t - 1;
 * after setTimesteps(n) (or custom timesteps) it goes to the next timestep in the list.
 */
export class DDPMScheduler extends SchedulerBase<DDPMSchedulerConfig> {
  /** Whether the timesteps were given by hand to setTimesteps. */
  customTimesteps = false;

  /** Builds from config keys; missing keys take diffusers' class defaults. */
  constructor(config: Partial<DDPMSchedulerConfig> = {}) {
    const c = parseSchedulerConfig("DDPMScheduler", config as RawSchedulerConfig, { ...DDPM_DEFAULTS }, DDPM_IGNORED);
    const vt = c.variance_type;
    if (vt !== "fixed_small" && vt !== "fixed_small_log" && vt !== "fixed_large") {
      throw new ConfigError(
        `DDPMScheduler: variance_type must be one of fixed_small, fixed_small_log, fixed_large; got ${JSON.stringify(vt)}`,
      );
    }
    super("DDPMScheduler", c);
  }

  /** From a raw scheduler_config.json object (strict: unknown keys are ConfigErrors). */
  static fromConfig(raw: RawSchedulerConfig): DDPMScheduler {
    return new DDPMScheduler(raw as Partial<DDPMSchedulerConfig>);
  }

  /** From `folder[/subfolder]/scheduler_config.json`. */
  static fromPretrained(folder: string, opts: { subfolder?: string } = {}): DDPMScheduler {
    return DDPMScheduler.fromConfig(readSchedulerConfig(folder, opts.subfolder));
  }

  /**
   * Sets the inference timesteps: a count spaced by config.timestep_spacing, or a strictly
   * descending list of custom timesteps below num_train_timesteps.
   */
  setTimesteps(stepsOrTimesteps: number | readonly number[]): void {
    const T = this.config.num_train_timesteps;
    if (typeof stepsOrTimesteps === "number") {
      this.timesteps = spacedTimesteps("DDPMScheduler", this.config, stepsOrTimesteps);
      this.numInferenceSteps = stepsOrTimesteps;
      this.customTimesteps = false;
      return;
    }
    const ts = stepsOrTimesteps;
    if (ts.length === 0) throw new ConfigError("DDPMScheduler.setTimesteps: custom timesteps must not be empty");
    for (const t of ts) checkTimestep("DDPMScheduler.setTimesteps", t, T);
    for (let i = 1; i < ts.length; i++) {
      if (ts[i] >= ts[i - 1])
        throw new ConfigError(
          `DDPMScheduler.setTimesteps: custom timesteps must be in descending order, got ${ts[i - 1]} then ${ts[i]}`,
        );
    }
    this.timesteps = Int32Array.from(ts);
    this.numInferenceSteps = ts.length;
    this.customTimesteps = true;
  }

  /** The timestep after `timestep` in the inference list (-1 after the last), or t - 1 before setTimesteps. */
  previousTimestep(timestep: number): number {
    if (!this.customTimesteps && this.numInferenceSteps === null) return timestep - 1;
    const index = this.timesteps.indexOf(timestep);
    if (index < 0) throw new ConfigError(`DDPMScheduler: timestep ${timestep} is not among the inference timesteps`);
    return index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1];
  }

  /**
   * The variance of p(x_{t-1} | x_t), eqs. (6)-(7): beta~_t = (1 - abar_prev) / (1 - abar_t) * beta_t,
   * clamped at 1e-20; fixed_small_log returns its square root (a standard deviation), fixed_large beta_t.
   */
  getVariance(timestep: number): number {
    const prevT = this.previousTimestep(timestep);
    const alphaProdT = this.alphasCumprod[timestep];
    const alphaProdTPrev = prevT >= 0 ? this.alphasCumprod[prevT] : 1.0;
    const currentBetaT = 1 - alphaProdT / alphaProdTPrev;
    const variance = Math.max(((1 - alphaProdTPrev) / (1 - alphaProdT)) * currentBetaT, 1e-20);
    const vt = this.config.variance_type;
    switch (vt) {
      case "fixed_small":
        return variance;
      case "fixed_small_log":
        return Math.exp(0.5 * Math.log(variance));
      case "fixed_large":
        return currentBetaT;
      default:
        return vt satisfies never;
    }
  }

  /**
   * One ancestral step from x_t to x_{t-1}:
   * 1. alphas, betas  2. predicted x0 (eq. 15)  3. clip x0  4. coefficients of x0 and x_t (eq. 7)
   * 5. posterior mean mu~_t  6. + sigma_t z for t > 0
   */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, opts: DDPMStepOptions = {}): SchedulerOutput {
    const name = "DDPMScheduler.step";
    if (modelOutput.shape.join() !== sample.shape.join())
      throw new ShapeError(
        `${name}: modelOutput and sample must have the same shape, got [${modelOutput.shape}] and [${sample.shape}]`,
      );
    checkTimestep(name, timestep, this.config.num_train_timesteps);
    if (opts.varianceNoise !== undefined) {
      if (opts.generator !== undefined)
        throw new ConfigError(`${name}: pass either generator or varianceNoise, not both`);
      if (opts.varianceNoise.shape.join() !== modelOutput.shape.join())
        throw new ShapeError(
          `${name}: varianceNoise must have modelOutput's shape [${modelOutput.shape}], got [${opts.varianceNoise.shape}]`,
        );
    }
    const t = timestep;
    const prevT = this.previousTimestep(t);

    // 1. alphas, betas
    const alphaProdT = this.alphasCumprod[t];
    const alphaProdTPrev = prevT >= 0 ? this.alphasCumprod[prevT] : 1.0;
    const betaProdT = 1 - alphaProdT;
    const betaProdTPrev = 1 - alphaProdTPrev;
    const currentAlphaT = alphaProdT / alphaProdTPrev;
    const currentBetaT = 1 - currentAlphaT;

    return noGrad(() => {
      // 2. predicted x0, eq. (15)
      let predOriginalSample: Tensor;
      const pt = this.config.prediction_type;
      switch (pt) {
        case "epsilon":
          predOriginalSample = sample.sub(modelOutput.mul(Math.sqrt(betaProdT))).div(Math.sqrt(alphaProdT)); // (B, C, H, W)
          break;
        case "sample":
          predOriginalSample = modelOutput;
          break;
        case "v_prediction":
          predOriginalSample = sample.mul(Math.sqrt(alphaProdT)).sub(modelOutput.mul(Math.sqrt(betaProdT)));
          break;
        default:
          return pt satisfies never;
      }
      // 3. clip x0
      if (this.config.clip_sample)
        predOriginalSample = predOriginalSample.clamp(-this.config.clip_sample_range, this.config.clip_sample_range);
      // 4. coefficients of x0 and x_t in the posterior mean, eq. (7)
      const predOriginalSampleCoeff = (Math.sqrt(alphaProdTPrev) * currentBetaT) / betaProdT;
      const currentSampleCoeff = (Math.sqrt(currentAlphaT) * betaProdTPrev) / betaProdT;
      // 5. mu~_t(x_t, x0)
      let predPrevSample = predOriginalSample.mul(predOriginalSampleCoeff).add(sample.mul(currentSampleCoeff));
      // 6. noise, none at t = 0
      if (t > 0) {
        let noise = opts.varianceNoise;
        if (noise === undefined)
          noise = randn(modelOutput.shape, {
            dtype: modelOutput.dtype,
            ...(opts.generator ? { generator: opts.generator } : {}),
          });
        const v = this.getVariance(t);
        const std = this.config.variance_type === "fixed_small_log" ? v : Math.sqrt(v);
        predPrevSample = predPrevSample.add(noise.mul(std));
      }
      return { prevSample: predPrevSample, predOriginalSample };
    });
  }
}
