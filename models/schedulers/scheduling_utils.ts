// shared scheduler pieces: config parsing, beta schedules, alphas_cumprod, timestep spacing, add_noise
// mirrors diffusers schedulers/scheduling_utils.py (SchedulerMixin) and the parts that
// scheduling_ddpm.py and scheduling_ddim.py share ("Copied from" blocks)
//
// float32 fidelity: diffusers builds betas with torch.linspace(..., dtype=float32), squares and
// subtracts in float32, and runs torch.cumprod on CPU, which accumulates in double and rounds each
// output to float32. We store float64 arrays whose values are those float32 numbers, rounding with
// Math.fround at the same points, so alphasCumprod[t] equals diffusers' value digit for digit. A
// torch build that fuses start + step * i into one FMA may move a beta by one float32 ulp; that is
// far below the float32 ulp of 1 - beta, so alphas and alphasCumprod do not move.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { noGrad } from "../../engine/autograd.ts";
import { tensor } from "../../engine/creation.ts";
import { roundHalfEven } from "../../engine/numeric.ts";
export { roundHalfEven };
import type { Tensor } from "../../engine/tensor.ts";
import { parseConfig, readJsonConfig, writeJsonAtomic } from "../modeling_utils.ts";

/** File name diffusers uses for a scheduler's config. */
export const SCHEDULER_CONFIG_NAME = "scheduler_config.json";

export type BetaSchedule = "linear" | "scaled_linear" | "squaredcos_cap_v2";
export type PredictionType = "epsilon" | "v_prediction" | "sample";
export type TimestepSpacing = "leading" | "trailing" | "linspace";

/** Config keys DDPMScheduler and DDIMScheduler share, named as in scheduler_config.json. */
export interface SchedulerConfigBase {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  clip_sample: boolean;
  clip_sample_range: number;
  steps_offset: number;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  /** must be false (dynamic thresholding is not for latent diffusion) */
  thresholding: boolean;
  /** kept so that configs saved by diffusers load; unused since thresholding is false */
  dynamic_thresholding_ratio: number;
  /** kept so that configs saved by diffusers load; unused since thresholding is false */
  sample_max_value: number;
  /** must be false */
  rescale_betas_zero_snr: boolean;
}

/** diffusers' class defaults (note: not Stable Diffusion's values; see SD1_SCHEDULER_CONFIG). */
export const SCHEDULER_BASE_DEFAULTS: Readonly<SchedulerConfigBase> = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  clip_sample: true,
  clip_sample_range: 1.0,
  steps_offset: 0,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  rescale_betas_zero_snr: false,
});

/**
 * The scheduler config of Stable Diffusion 1.x (runwayml/stable-diffusion-v1-5 scheduler/,
 * CompVis/stable-diffusion-v1-4): 1000 steps, scaled_linear 0.00085..0.012, steps_offset 1.
 * Pass it to `DDIMScheduler.fromConfig` or `DDPMScheduler.fromConfig` (DDPM ignores set_alpha_to_one).
 */
export const SD1_SCHEDULER_CONFIG = Object.freeze({
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null,
  set_alpha_to_one: false,
  steps_offset: 1,
  clip_sample: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
} as const);

/** A raw config object as read from JSON (keys starting with "_" are skipped). */
export type RawSchedulerConfig = Readonly<Record<string, unknown>>;

/** Parses a raw config strictly (unknown keys are ConfigErrors), then validates the shared keys. */
export function parseSchedulerConfig<C extends SchedulerConfigBase>(
  name: string,
  raw: RawSchedulerConfig,
  defaults: C,
  ignored: readonly string[],
): C {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ConfigError(`${name}: config must be an object, got ${JSON.stringify(raw)}`);
  const c = parseConfig(name, raw as Record<string, unknown>, defaults, ignored);
  validateBase(name, c);
  return c;
}

function oneOf<T extends string>(name: string, key: string, v: unknown, allowed: readonly T[]): void {
  if (!allowed.includes(v as T))
    throw new ConfigError(`${name}: ${key} must be one of ${allowed.join(", ")}; got ${JSON.stringify(v)}`);
}

function isNum(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** Validates the shared keys; throws a ConfigError naming the key. */
function validateBase(name: string, c: SchedulerConfigBase): void {
  const bad = (key: string, what: string, v: unknown) =>
    new ConfigError(`${name}: ${key} must be ${what}, got ${JSON.stringify(v)}`);
  if (!Number.isInteger(c.num_train_timesteps) || c.num_train_timesteps < 1)
    throw bad("num_train_timesteps", "a positive integer", c.num_train_timesteps);
  if (!isNum(c.beta_start)) throw bad("beta_start", "a finite number", c.beta_start);
  if (!isNum(c.beta_end)) throw bad("beta_end", "a finite number", c.beta_end);
  oneOf(name, "beta_schedule", c.beta_schedule, ["linear", "scaled_linear", "squaredcos_cap_v2"]);
  if (c.trained_betas !== null) {
    const tb: unknown = c.trained_betas;
    if (!Array.isArray(tb) || !tb.every(isNum)) throw bad("trained_betas", "null or an array of finite numbers", tb);
    if (tb.length !== c.num_train_timesteps)
      throw bad(
        "trained_betas",
        `an array of num_train_timesteps (${c.num_train_timesteps}) betas`,
        `${tb.length} betas`,
      );
  }
  if (typeof c.clip_sample !== "boolean") throw bad("clip_sample", "a boolean", c.clip_sample);
  if (!isNum(c.clip_sample_range) || c.clip_sample_range <= 0)
    throw bad("clip_sample_range", "a positive number", c.clip_sample_range);
  if (!Number.isInteger(c.steps_offset) || c.steps_offset < 0)
    throw bad("steps_offset", "a non-negative integer", c.steps_offset);
  oneOf(name, "prediction_type", c.prediction_type, ["epsilon", "v_prediction", "sample"]);
  oneOf(name, "timestep_spacing", c.timestep_spacing, ["leading", "trailing", "linspace"]);
  if (c.thresholding !== false)
    throw new ConfigError(
      `${name}: thresholding (dynamic thresholding) is not supported, it must be false; got ${JSON.stringify(c.thresholding)}`,
    );
  if (!isNum(c.dynamic_thresholding_ratio))
    throw bad("dynamic_thresholding_ratio", "a finite number", c.dynamic_thresholding_ratio);
  if (!isNum(c.sample_max_value)) throw bad("sample_max_value", "a finite number", c.sample_max_value);
  if (c.rescale_betas_zero_snr !== false)
    throw new ConfigError(
      `${name}: rescale_betas_zero_snr is not supported, it must be false; got ${JSON.stringify(c.rescale_betas_zero_snr)}`,
    );
}

/**
 * Which of torch's CPU linspace kernels {@link linspaceFloat32} reproduces. ATen compiles the kernel
 * once per CPU capability and picks one at run time (`torch.backends.cpu.get_cpu_capability()`,
 * `ATEN_CPU_CAPABILITY`); their float32 values differ by an ulp here and there:
 * - "avx2": x86-64 with AVX2 (the usual desktop/laptop dispatch), 8-wide vectors, fused multiply-adds;
 * - "avx512": x86-64 machines torch dispatches to AVX-512, 16-wide, fused multiply-adds;
 * - "default": no SIMD capability (ATEN_CPU_CAPABILITY=default), 8-wide, no fused multiply-adds.
 * Other builds (aarch64, other compilers) may round differently; they were not checked.
 */
export type TorchLinspaceKernel = "avx2" | "avx512" | "default";

/** a * b + c rounded once to float32 (a, b, c float32 values; a * b is exact in float64). */
function fmaf32(a: number, b: number, c: number): number {
  const p = a * b;
  const sum = p + c;
  const bb = sum - p;
  const err = p - (sum - bb) + (c - bb); // sum + err = p + c exactly (TwoSum)
  const r = Math.fround(sum);
  if (err === 0 || r === sum) return r;
  // only a sum that lies exactly halfway between two float32 values can round the wrong way
  const other = nextFloat32(r, sum > r ? 1 : -1);
  if ((r + other) / 2 !== sum) return r;
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** The float32 next to `x` (a float32 value) towards +inf (dir 1) or -inf (dir -1). */
function nextFloat32(x: number, dir: 1 | -1): number {
  if (x === 0) return dir * 1.401298464324817e-45;
  F32[0] = x;
  U32[0] += x > 0 === dir > 0 ? 1 : -1;
  return F32[0];
}

/**
 * torch.linspace(start, end, steps, dtype=torch.float32) on CPU, value for value, for steps up to
 * 32768 (one parallel chunk; longer ranges are split across threads by torch). Checked bit for bit
 * against torch 1.13 for each kernel (test/fixtures/torch_linspace). torch's kernel: start and end
 * rounded to float32, step = (end - start) / (steps - 1) in float32; blocks of two vectors of W
 * values, each vector from a base (start + step * i below steps / 2, else end - step * (steps - 1 - i),
 * a fused multiply-add on the SIMD builds) counting up by base + k * step; the values left after the
 * last pair of vectors from the same base formula one by one. Default kernel: "avx2".
 */
export function linspaceFloat32(
  start: number,
  end: number,
  steps: number,
  opts: { kernel?: TorchLinspaceKernel } = {},
): Float64Array {
  const kernel = opts.kernel ?? "avx2";
  if (kernel !== "avx2" && kernel !== "avx512" && kernel !== "default")
    throw new ConfigError(
      `linspaceFloat32: kernel must be one of avx2, avx512, default; got ${JSON.stringify(kernel)}`,
    );
  const f = Math.fround;
  const out = new Float64Array(steps);
  const s = f(start),
    e = f(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const width = kernel === "avx512" ? 16 : 8;
  const fused = kernel !== "default";
  const step = f(f(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const at = (i: number): number => {
    if (i < halfway) return fused ? fmaf32(step, i, s) : f(s + f(step * i));
    const back = steps - i - 1;
    return fused ? fmaf32(-step, back, e) : f(e - f(step * back));
  };
  let i = 0;
  for (; i + 2 * width <= steps; i += 2 * width) {
    for (const b of [i, i + width]) {
      const base = at(b);
      out[b] = base;
      for (let k = 1; k < width; k++) out[b + k] = f(base + f(k * step));
    }
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

/** The "squaredcos_cap_v2" (Glide cosine) betas: min(1 - abar(t2) / abar(t1), 0.999) in float64, then float32. */
export function betasForAlphaBar(numDiffusionTimesteps: number, maxBeta = 0.999): Float64Array {
  const alphaBar = (t: number) => {
    const c = Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2);
    return c * c;
  };
  const out = new Float64Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps,
      t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.fround(Math.min(1 - alphaBar(t2) / alphaBar(t1), maxBeta));
  }
  return out;
}

/** The betas of a validated config, as float32 values held in a Float64Array. */
export function makeBetas(c: SchedulerConfigBase): Float64Array {
  const T = c.num_train_timesteps;
  if (c.trained_betas !== null) return Float64Array.from(c.trained_betas, Math.fround);
  switch (c.beta_schedule) {
    case "linear":
      return linspaceFloat32(c.beta_start, c.beta_end, T);
    case "scaled_linear":
      // this schedule is specific to latent diffusion: linspace of sqrt(beta), squared in float32
      return linspaceFloat32(Math.sqrt(c.beta_start), Math.sqrt(c.beta_end), T).map((b) => Math.fround(b * b));
    case "squaredcos_cap_v2":
      return betasForAlphaBar(T);
    default:
      return c.beta_schedule satisfies never;
  }
}

/** alphas = 1 - betas (float32) and alphas_cumprod (double accumulator, each output float32, as torch.cumprod on CPU). */
export function alphasAndCumprod(betas: Float64Array): { alphas: Float64Array; alphasCumprod: Float64Array } {
  const alphas = betas.map((b) => Math.fround(1 - b));
  const alphasCumprod = new Float64Array(alphas.length);
  let acc = 1;
  for (let i = 0; i < alphas.length; i++) {
    acc *= alphas[i];
    alphasCumprod[i] = Math.fround(acc);
  }
  return { alphas, alphasCumprod };
}

/**
 * `set_timesteps(n)` of diffusers for "linspace", "leading" (plus steps_offset) and "trailing",
 * descending; numpy's float arithmetic and half-to-even rounding are reproduced.
 */
export function spacedTimesteps(name: string, c: SchedulerConfigBase, numInferenceSteps: number): Int32Array {
  const T = c.num_train_timesteps;
  const n = numInferenceSteps;
  if (!Number.isInteger(n) || n < 1)
    throw new ConfigError(`${name}.setTimesteps: numInferenceSteps must be a positive integer, got ${n}`);
  if (n > T)
    throw new ConfigError(
      `${name}.setTimesteps: numInferenceSteps (${n}) cannot be larger than num_train_timesteps (${T})`,
    );
  const out = new Int32Array(n);
  switch (c.timestep_spacing) {
    case "linspace": {
      // np.linspace(0, T - 1, n).round()[::-1]: y_i = i * ((T - 1) / (n - 1)), the last is exactly T - 1
      const step = n > 1 ? (T - 1) / (n - 1) : 0;
      for (let i = 0; i < n; i++) out[n - 1 - i] = roundHalfEven(n > 1 && i === n - 1 ? T - 1 : i * step);
      return out;
    }
    case "leading": {
      // arange(n) * (T // n), reversed, + steps_offset
      const ratio = Math.floor(T / n);
      for (let i = 0; i < n; i++) out[n - 1 - i] = i * ratio + c.steps_offset;
      return out;
    }
    case "trailing": {
      // np.round(np.arange(T, 0, -T / n)) - 1: numpy fills start + i * ((start + step) - start)
      const step = -T / n;
      const len = Math.ceil((0 - T) / step);
      const delta = T + step - T;
      const ts = new Int32Array(len);
      for (let i = 0; i < len; i++) ts[i] = roundHalfEven(i === 0 ? T : T + i * delta) - 1;
      return ts;
    }
    default:
      return c.timestep_spacing satisfies never;
  }
}

/** Reads timesteps given as numbers or as a tensor, checking each is an integer in [0, T). */
export function timestepList(name: string, timesteps: ArrayLike<number> | Tensor, T: number): number[] {
  const arr = Array.from(isTensor(timesteps) ? timesteps.data : timesteps);
  for (const t of arr) checkTimestep(name, t, T);
  return arr;
}

function isTensor(x: ArrayLike<number> | Tensor): x is Tensor {
  return typeof (x as Tensor).shape === "object" && typeof (x as Tensor).dtype === "string";
}

/** Throws a ConfigError unless `t` is an integer timestep in [0, T). */
export function checkTimestep(name: string, t: number, T: number): void {
  if (!Number.isInteger(t) || t < 0 || t >= T)
    throw new ConfigError(`${name}: timestep must be an integer in [0, ${T}), got ${t}`);
}

/** Common state and methods of DDPMScheduler and DDIMScheduler (diffusers SchedulerMixin). */
export abstract class SchedulerBase<C extends SchedulerConfigBase> {
  /** The validated config, keys as in scheduler_config.json. */
  readonly config: Readonly<C>;
  /** beta_t for t = 0..T-1 (float32 values). */
  readonly betas: Float64Array;
  /** alpha_t = 1 - beta_t (float32 values). */
  readonly alphas: Float64Array;
  /** abar_t = prod_{s <= t} alpha_s (float32 values, as diffusers' alphas_cumprod). */
  readonly alphasCumprod: Float64Array;
  /** Standard deviation of the initial noise. */
  readonly initNoiseSigma = 1.0;
  /** Set by setTimesteps; null until then. */
  numInferenceSteps: number | null = null;
  /** The timesteps to denoise over, descending; all T train steps until setTimesteps. */
  timesteps: Int32Array;

  protected constructor(
    readonly className: string,
    config: C,
  ) {
    this.config = Object.freeze(config);
    this.betas = makeBetas(config);
    ({ alphas: this.alphas, alphasCumprod: this.alphasCumprod } = alphasAndCumprod(this.betas));
    const T = config.num_train_timesteps;
    this.timesteps = new Int32Array(T);
    for (let i = 0; i < T; i++) this.timesteps[i] = T - 1 - i;
  }

  /** Identity: DDPM and DDIM do not scale the model input. */
  scaleModelInput(sample: Tensor, _timestep?: number): Tensor {
    return sample;
  }

  /**
   * Forward diffusion q(x_t | x_0): sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise, one timestep per
   * batch element (or one for all). Coefficients are formed in the sample's dtype, as diffusers does.
   */
  addNoise(originalSamples: Tensor, noise: Tensor, timesteps: ArrayLike<number> | Tensor): Tensor {
    const [sqrtAlphaProd, sqrtOneMinusAlphaProd] = this.batchCoefficients(
      "addNoise",
      originalSamples,
      noise,
      timesteps,
    );
    return noGrad(() => sqrtAlphaProd.mul(originalSamples).add(sqrtOneMinusAlphaProd.mul(noise))); // (B, C, H, W)
  }

  /** The v-prediction target (Imagen Video sec. 2.4): sqrt(abar_t) * noise - sqrt(1 - abar_t) * x0. */
  getVelocity(sample: Tensor, noise: Tensor, timesteps: ArrayLike<number> | Tensor): Tensor {
    const [sqrtAlphaProd, sqrtOneMinusAlphaProd] = this.batchCoefficients("getVelocity", sample, noise, timesteps);
    return noGrad(() => sqrtAlphaProd.mul(noise).sub(sqrtOneMinusAlphaProd.mul(sample))); // (B, C, H, W)
  }

  /** Writes `folder/scheduler_config.json` (with `_class_name`), atomically. */
  save(folder: string): void {
    fs.mkdirSync(folder, { recursive: true });
    writeJsonAtomic(path.join(folder, SCHEDULER_CONFIG_NAME), { _class_name: this.className, ...this.config });
  }

  /** sqrt(abar) and sqrt(1 - abar) per batch element, shaped (n, 1, ..., 1), in x's dtype. */
  private batchCoefficients(
    op: string,
    x: Tensor,
    other: Tensor,
    timesteps: ArrayLike<number> | Tensor,
  ): [Tensor, Tensor] {
    const name = `${this.className}.${op}`;
    if (x.shape.length < 1) throw new ShapeError(`${name}: samples need a batch axis, got shape [${x.shape}]`);
    if (x.shape.join() !== other.shape.join())
      throw new ShapeError(
        `${name}: samples and noise must have the same shape, got [${x.shape}] and [${other.shape}]`,
      );
    const ts = timestepList(name, timesteps, this.config.num_train_timesteps);
    if (ts.length !== x.shape[0] && ts.length !== 1)
      throw new ShapeError(
        `${name}: need one timestep per batch element (${x.shape[0]}) or one for all, got ${ts.length}`,
      );
    // torch casts alphas_cumprod to the sample dtype and takes ** 0.5 and 1 - a there
    const r = x.dtype === "float32" ? Math.fround : (v: number) => v;
    const a = new Float64Array(ts.length),
      b = new Float64Array(ts.length);
    ts.forEach((t, i) => {
      const abar = this.alphasCumprod[t];
      a[i] = r(Math.sqrt(abar));
      b[i] = r(Math.sqrt(r(1 - abar)));
    });
    const shape = [ts.length, ...x.shape.slice(1).map(() => 1)];
    return [tensor(a, shape, { dtype: x.dtype }), tensor(b, shape, { dtype: x.dtype })]; // (n, 1, 1, 1)
  }
}

/** Reads `folder[/subfolder]/scheduler_config.json`. */
export function readSchedulerConfig(folder: string, subfolder?: string): Record<string, unknown> {
  return readJsonConfig(subfolder === undefined ? folder : path.join(folder, subfolder), SCHEDULER_CONFIG_NAME);
}

/** Output of a scheduler step. */
export interface SchedulerOutput {
  /** x_{t-1}, the next model input. */
  prevSample: Tensor;
  /** The predicted x_0 (after clipping). */
  predOriginalSample: Tensor;
}
