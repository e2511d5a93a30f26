// DDIMScheduler: denoising diffusion implicit models, arXiv:2010.02502 eqs. (12) and (16)
// mirrors diffusers schedulers/scheduling_ddim.py (config keys, set_timesteps, step's order of operations)
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

/** DDIMScheduler's scheduler_config.json keys. */
export interface DDIMSchedulerConfig extends SchedulerConfigBase {
  /** the previous abar of the last step: 1 when true, else alphas_cumprod[0] (SD-1.x: false) */
  set_alpha_to_one: boolean;
}

/** diffusers' DDIMScheduler defaults (linear 1e-4..0.02, clip_sample true, set_alpha_to_one true). */
export const DDIM_DEFAULTS: Readonly<DDIMSchedulerConfig> = Object.freeze({
  ...SCHEDULER_BASE_DEFAULTS,
  set_alpha_to_one: true,
});

// keys of sibling schedulers' configs that diffusers accepts and DDIM does not use
const DDIM_IGNORED = ["skip_prk_steps", "variance_type"] as const;

/** Options of DDIMScheduler.step (diffusers' keyword arguments). */
export interface DDIMStepOptions {
  /** weight of the noise: 0 is DDIM (deterministic), 1 is DDPM-like */
  eta?: number;
  /** re-derive eps from the clipped x0 (Glide) */
  useClippedModelOutput?: boolean;
  /** draws the noise when eta > 0 */
  generator?: Generator;
  /** the noise itself when eta > 0 (instead of a generator) */
  varianceNoise?: Tensor;
}

/**
 * The DDIM sampler. `setTimesteps(n)` picks n of the T training steps; `step` goes from x_t to
 * x_{t - T // n}. Coefficients are float64 scalars formed from the float32 alphas_cumprod.
 */
export class DDIMScheduler extends SchedulerBase<DDIMSchedulerConfig> {
  /** abar used as the "previous" one on the final step (prev timestep < 0). */
  readonly finalAlphaCumprod: number;

  /** Builds from config keys; missing keys take diffusers' class defaults. */
  constructor(config: Partial<DDIMSchedulerConfig> = {}) {
    const c = parseSchedulerConfig("DDIMScheduler", config as RawSchedulerConfig, { ...DDIM_DEFAULTS }, DDIM_IGNORED);
    if (typeof c.set_alpha_to_one !== "boolean")
      throw new ConfigError(
        `DDIMScheduler: set_alpha_to_one must be a boolean, got ${JSON.stringify(c.set_alpha_to_one)}`,
      );
    super("DDIMScheduler", c);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1.0 : this.alphasCumprod[0];
  }

  /** From a raw scheduler_config.json object (strict: unknown keys are ConfigErrors). */
  static fromConfig(raw: RawSchedulerConfig): DDIMScheduler {
    return new DDIMScheduler(raw as Partial<DDIMSchedulerConfig>);
  }

  /** From `folder[/subfolder]/scheduler_config.json`. */
  static fromPretrained(folder: string, opts: { subfolder?: string } = {}): DDIMScheduler {
    return DDIMScheduler.fromConfig(readSchedulerConfig(folder, opts.subfolder));
  }

  /** Picks the inference timesteps by config.timestep_spacing (SD-1.x, 50 steps: 981, 961, ..., 1). */
  setTimesteps(numInferenceSteps: number): void {
    this.timesteps = spacedTimesteps("DDIMScheduler", this.config, numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
  }

  /** sigma_t^2 / eta^2 of eq. (16): (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev). */
  getVariance(timestep: number, prevTimestep: number): number {
    const alphaProdT = this.alphasCumprod[timestep];
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const betaProdT = 1 - alphaProdT;
    const betaProdTPrev = 1 - alphaProdTPrev;
    return (betaProdTPrev / betaProdT) * (1 - alphaProdT / alphaProdTPrev);
  }

  /**
   * One DDIM step from x_t to x_{t-1}, eq. (12) of arXiv:2010.02502. Notation: eps -> e_theta(x_t, t),
   * x0 -> f_theta(x_t, t), sigma_t -> stdDevT.
   * 1. previous timestep  2. alphas, betas  3. predicted x0  4. clip x0  5. sigma_t(eta)
   * 6. direction to x_t  7. x_{t-1} (+ sigma_t z when eta > 0)
   */
  step(modelOutput: Tensor, timestep: number, sample: Tensor, opts: DDIMStepOptions = {}): SchedulerOutput {
    const name = "DDIMScheduler.step";
    if (this.numInferenceSteps === null)
      throw new ConfigError(`${name}: numInferenceSteps is not set, call setTimesteps(n) first`);
    if (modelOutput.shape.join() !== sample.shape.join())
      throw new ShapeError(
        `${name}: modelOutput and sample must have the same shape, got [${modelOutput.shape}] and [${sample.shape}]`,
      );
    const T = this.config.num_train_timesteps;
    checkTimestep(name, timestep, T);
    const eta = opts.eta ?? 0;
    if (!(eta >= 0)) throw new ConfigError(`${name}: eta must be >= 0, got ${eta}`);

    // 1. previous step value (= t - T // n)
    const prevTimestep = timestep - Math.floor(T / this.numInferenceSteps);
    // 2. alphas, betas
    const alphaProdT = this.alphasCumprod[timestep];
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    const betaProdT = 1 - alphaProdT;
    const sqrtAlphaProdT = Math.sqrt(alphaProdT),
      sqrtBetaProdT = Math.sqrt(betaProdT);

    return noGrad(() => {
      // 3. predicted x0 ("predicted x_0" of eq. (12)) and the eps it implies
      let predOriginalSample: Tensor, predEpsilon: Tensor;
      const pt = this.config.prediction_type;
      switch (pt) {
        case "epsilon":
          predOriginalSample = sample.sub(modelOutput.mul(sqrtBetaProdT)).div(sqrtAlphaProdT); // (B, C, H, W)
          predEpsilon = modelOutput;
          break;
        case "sample":
          predOriginalSample = modelOutput;
          predEpsilon = sample.sub(predOriginalSample.mul(sqrtAlphaProdT)).div(sqrtBetaProdT);
          break;
        case "v_prediction":
          predOriginalSample = sample.mul(sqrtAlphaProdT).sub(modelOutput.mul(sqrtBetaProdT));
          predEpsilon = modelOutput.mul(sqrtAlphaProdT).add(sample.mul(sqrtBetaProdT));
          break;
        default:
          return pt satisfies never;
      }
      // 4. clip x0
      if (this.config.clip_sample)
        predOriginalSample = predOriginalSample.clamp(-this.config.clip_sample_range, this.config.clip_sample_range);
      // 5. sigma_t(eta) of eq. (16)
      const variance = this.getVariance(timestep, prevTimestep);
      const stdDevT = eta * Math.sqrt(variance);
      if (opts.useClippedModelOutput)
        predEpsilon = sample.sub(predOriginalSample.mul(sqrtAlphaProdT)).div(sqrtBetaProdT);
      // 6. direction pointing to x_t
      const predSampleDirection = predEpsilon.mul(Math.sqrt(1 - alphaProdTPrev - stdDevT ** 2));
      // 7. x_{t-1} without the random noise, then sigma_t z
      let prevSample = predOriginalSample.mul(Math.sqrt(alphaProdTPrev)).add(predSampleDirection);
      if (eta > 0) {
        if (opts.varianceNoise !== undefined && opts.generator !== undefined)
          throw new ConfigError(`${name}: pass either generator or varianceNoise, not both`);
        let noise = opts.varianceNoise;
        if (noise === undefined)
          noise = randn(modelOutput.shape, {
            dtype: modelOutput.dtype,
            ...(opts.generator ? { generator: opts.generator } : {}),
          });
        else if (noise.shape.join() !== modelOutput.shape.join())
          throw new ShapeError(
            `${name}: varianceNoise must have modelOutput's shape [${modelOutput.shape}], got [${noise.shape}]`,
          );
        prevSample = prevSample.add(noise.mul(stdDevT));
      }
      return { prevSample, predOriginalSample };
    });
  }
}
