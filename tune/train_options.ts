// customise(): its options, their defaults, its result, and the state the training stages share
import type { Generator, Tensor } from "../engine/index.ts";
import type { Image } from "../data/images.ts";
import type { AdamW, ScheduleName } from "../optim/index.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import type { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import type { ConceptSpec } from "./dataset.ts";
import type { FreezeModel } from "./params.ts";
import type { Delta } from "./delta.ts";

export interface CustomiseOptions {
  concepts: ConceptSpec[];
  outputDir: string;
  /** one per concept; default <new1>, <new2>, ... */
  modifierTokens?: string[];
  /** one per token; default ktn, pll, ucd, then other rare single tokens */
  initializerTokens?: string[];
  freezeModel?: FreezeModel;
  /** training resolution in pixels (default: the UNet's sample size times the VAE factor) */
  resolution?: number;
  maxTrainSteps?: number;
  trainBatchSize?: number;
  /** per-sample lr when scaleLr, else the lr used */
  learningRate?: number;
  /** lr x batch size (x2 with prior preservation), as the reference scripts */
  scaleLr?: boolean;
  lrScheduler?: ScheduleName;
  lrWarmupSteps?: number;
  adamBeta1?: number;
  adamBeta2?: number;
  adamWeightDecay?: number;
  adamEpsilon?: number;
  maxGradNorm?: number;
  priorLossWeight?: number;
  numClassImages?: number;
  hflip?: boolean;
  noaug?: boolean;
  seed?: number;
  /** write a resumable checkpoint every N steps (0: none) */
  checkpointingSteps?: number;
  /** continue from the newest checkpoint in outputDir */
  resume?: boolean;
  validationPrompt?: string[];
  /** validation grid every N steps (0: only at the end when prompts are given) */
  validationSteps?: number;
  validationInferenceSteps?: number;
  validationGuidanceScale?: number;
  log?: (line: string) => void;
  /** stop after this many steps of this process (simulates an interruption; the run stays resumable) */
  stopAfter?: number;
  /** largest image accepted, in pixels (width x height, checked before decoding; default 25 megapixels) */
  maxImagePixels?: number;
  /** recompute the UNet blocks' activations during backward instead of keeping them (less memory, same gradients bit for bit) */
  gradientCheckpointing?: boolean;
}

export interface CustomiseResult {
  delta: Delta;
  losses: number[];
  learningRate: number;
  steps: number;
  seconds: number;
  outputDir: string;
}

export interface Sample {
  image: Image;
  prompt: string;
}

export const DEFAULTS = {
  freezeModel: "crossattn_kv" as FreezeModel,
  maxTrainSteps: 250,
  trainBatchSize: 2,
  learningRate: 1e-5,
  scaleLr: false,
  lrScheduler: "constant" as ScheduleName,
  lrWarmupSteps: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamWeightDecay: 1e-2,
  adamEpsilon: 1e-8,
  maxGradNorm: 1,
  priorLossWeight: 1,
  numClassImages: 200,
  hflip: false,
  noaug: false,
  seed: 42,
  checkpointingSteps: 0,
  resume: false,
  validationSteps: 0,
  validationInferenceSteps: 25,
  validationGuidanceScale: 1,
};

export type Options = typeof DEFAULTS & CustomiseOptions;
export type Log = (line: string) => void;

/** The modifier tokens a run adds and trains. */
export interface Tokens {
  tokens: string[];
  inits: string[];
  /** the token-embedding rows that train */
  rows: Tensor;
  /** the base UNet's fingerprint, taken before anything changes */
  fingerprint: string;
}

export interface Data {
  instances: Sample[];
  classes: Sample[];
  /** prior preservation: regularisation images are given */
  prior: boolean;
}

/** The state a checkpoint holds besides the weights and the optimizer: data order, generator, step, losses. */
export interface LoopState {
  step: number;
  order: number[];
  cursor: number;
  losses: number[];
}

/** Everything the training loop and the final save need. */
export interface Run {
  pipe: StableDiffusionPipeline;
  o: Options;
  log: Log;
  resolution: number;
  maskSize: number;
  tok: Tokens;
  /** the UNet weights that train */
  keys: string[];
  data: Data;
  lr: number;
  opt: AdamW;
  noiseScheduler: DDPMScheduler;
  g: Generator;
  state: LoopState;
}
