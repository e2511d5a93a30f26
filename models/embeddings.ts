// sinusoidal timestep features and the MLP that embeds them
// mirrors diffusers models/embeddings.py get_timestep_embedding, Timesteps, TimestepEmbedding
import { ShapeError, Tensor, tensor } from "../engine/index.ts";
import type { DType } from "../engine/index.ts";
import { Linear, Module } from "./nn/index.ts";
import { getActivation } from "./resnet.ts";

export interface TimestepEmbeddingOptions {
  flipSinToCos?: boolean;
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
  dtype?: DType;
}

/**
 * Sinusoidal features (N, dim) of timesteps t: half = dim/2 frequencies
 * f_i = exp(-ln(maxPeriod) i / (half - shift)), features [sin(s t f), cos(s t f)] ([cos, sin] when
 * flipped), a zero column appended for odd dim. In float32 each step rounds to float32 as torch does.
 */
export function getTimestepEmbedding(
  timesteps: ArrayLike<number>,
  dim: number,
  opts: TimestepEmbeddingOptions = {},
): Tensor {
  if (!Number.isInteger(dim) || dim < 2)
    throw new ShapeError(`getTimestepEmbedding: embedding dim must be an integer >= 2, got ${dim}`);
  const dtype = opts.dtype ?? "float32";
  const r = dtype === "float32" ? Math.fround : (v: number) => v;
  const half = Math.floor(dim / 2);
  const shift = opts.downscaleFreqShift ?? 1;
  const scale = opts.scale ?? 1;
  const logMax = Math.log(opts.maxPeriod ?? 10000);
  const freqs = Array.from({ length: half }, (_, i) => r(Math.exp(r(r(r(-logMax) * i) / (half - shift)))));
  const n = timesteps.length;
  const out = new Float64Array(n * dim);
  for (let b = 0; b < n; b++) {
    const t = r(timesteps[b]);
    for (let i = 0; i < half; i++) {
      const arg = r(scale * r(t * freqs[i]));
      const s = Math.sin(arg),
        c = Math.cos(arg);
      out[b * dim + i] = opts.flipSinToCos ? c : s;
      out[b * dim + half + i] = opts.flipSinToCos ? s : c;
    }
  }
  return tensor(out, [n, dim], { dtype }); // (N, dim)
}

/** Parameter-free module around getTimestepEmbedding (SD-1.x: flip_sin_to_cos true, shift 0). */
export class Timesteps extends Module {
  constructor(
    readonly numChannels: number,
    readonly flipSinToCos: boolean,
    readonly downscaleFreqShift: number,
  ) {
    super();
  }
  /** timesteps (N) -> (N, numChannels) */
  forward(timesteps: ArrayLike<number> | Tensor, dtype: DType = "float32"): Tensor {
    const t = timesteps instanceof Tensor ? timesteps.data : timesteps;
    return getTimestepEmbedding(t, this.numChannels, {
      flipSinToCos: this.flipSinToCos,
      downscaleFreqShift: this.downscaleFreqShift,
      dtype,
    });
  }
}

/** linear_1 -> act -> linear_2 (keys time_embedding.linear_1.*, time_embedding.linear_2.*). */
export class TimestepEmbedding extends Module {
  linear_1: Linear;
  linear_2: Linear;
  private readonly act: (x: Tensor) => Tensor;
  constructor(inChannels: number, timeEmbedDim: number, actFn = "silu", outDim?: number) {
    super();
    this.linear_1 = new Linear(inChannels, timeEmbedDim);
    this.act = getActivation(actFn);
    this.linear_2 = new Linear(timeEmbedDim, outDim ?? timeEmbedDim);
  }
  /** (N, inChannels) -> (N, timeEmbedDim) */
  forward(x: Tensor): Tensor {
    return this.linear_2.forward(this.act(this.linear_1.forward(x)));
  }
}
