// basic layers mirroring torch.nn: Linear, Conv2d, GroupNorm, LayerNorm, Embedding, Dropout, Identity
import { conv2d, dropout, embedding, groupNorm, groupNormSilu, layerNorm, linear } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { Module, parameter } from "./module.ts";
import { ConfigError } from "../../engine/errors.ts";

/** y = x W^T + b, weight (out, in); init as torch (uniform +-1/sqrt(in)). */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = parameter([outFeatures, inFeatures], { kind: "uniform", bound });
    this.bias = bias ? parameter([outFeatures], { kind: "uniform", bound }) : null;
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

export interface Conv2dArgs {
  stride?: number;
  padding?: number;
  groups?: number;
  bias?: boolean;
}

/** 2-D convolution, weight (out, in/groups, k, k). */
export class Conv2d extends Module {
  weight: Tensor;
  bias: Tensor | null;
  readonly stride: number;
  readonly padding: number;
  readonly groups: number;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    args: Conv2dArgs = {},
  ) {
    super();
    this.stride = args.stride ?? 1;
    this.padding = args.padding ?? 0;
    this.groups = args.groups ?? 1;
    const fanIn = (inChannels / this.groups) * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = parameter([outChannels, inChannels / this.groups, kernelSize, kernelSize], {
      kind: "uniform",
      bound,
    });
    this.bias = (args.bias ?? true) ? parameter([outChannels], { kind: "uniform", bound }) : null;
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, groups: this.groups });
  }
}

export class GroupNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
    affine = true,
  ) {
    super();
    this.weight = affine ? parameter([numChannels], { kind: "ones" }) : null;
    this.bias = affine ? parameter([numChannels], { kind: "zeros" }) : null;
  }
  forward(x: Tensor): Tensor {
    return groupNorm(x, this.numGroups, this.weight, this.bias, this.eps);
  }
  /** silu(forward(x)) as one fused op. */
  forwardSilu(x: Tensor): Tensor {
    return groupNormSilu(x, this.numGroups, this.weight, this.bias, this.eps);
  }
}

export class LayerNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    affine = true,
  ) {
    super();
    this.weight = affine ? parameter([dim], { kind: "ones" }) : null;
    this.bias = affine ? parameter([dim], { kind: "zeros" }) : null;
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, [this.dim], this.weight, this.bias, this.eps);
  }
}

export class Embedding extends Module {
  weight: Tensor;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
  ) {
    super();
    this.weight = parameter([numEmbeddings, embeddingDim], { kind: "normal", std: 1 });
  }
  /** rows at integer ids; result ids.shape + [dim] */
  forward(ids: ArrayLike<number>, shape?: readonly number[]): Tensor {
    return embedding(this.weight, ids, shape);
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}

/** dtype of a model's Linear and Conv2d weights: float32, or half precision for frozen weights. */
export type WeightsDType = "float32" | "bfloat16" | "float16";

/** Reads a weights dtype name: float32 / bfloat16 / float16, or f32 / bf16 / f16. */
export function parseWeightsDType(s: string, where = "weights dtype"): WeightsDType {
  const m: Record<string, WeightsDType> = {
    f32: "float32",
    float32: "float32",
    bf16: "bfloat16",
    bfloat16: "bfloat16",
    f16: "float16",
    float16: "float16",
  };
  const d = m[s];
  if (!d) throw new ConfigError(`${where}: must be f32, bf16 or f16 (or float32, bfloat16, float16), got "${s}"`);
  return d;
}

/**
 * Holds the weight of every Linear and Conv2d of `model` in `dtype`, frozen: the weights that carry
 * nearly all of a UNet's bytes. Biases, norms and embeddings stay float32, and so does every weight
 * `keepFloat32(key)` names (those a training run updates). Works on shape-only modules too (before
 * a load). Returns how many weights changed dtype.
 */
export function setWeightsDType(
  model: Module,
  dtype: WeightsDType,
  keepFloat32: (key: string) => boolean = () => false,
): number {
  let n = 0;
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof Linear || m instanceof Conv2d)) continue;
    const key = name ? `${name}.weight` : "weight";
    const target = keepFloat32(key) ? "float32" : dtype;
    if (m.weight.dtype === target) continue;
    if (target !== "float32") m.weight.requiresGrad_(false);
    m.weight.to_(target);
    n++;
  }
  return n;
}
