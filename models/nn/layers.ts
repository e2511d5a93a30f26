// basic layers mirroring torch.nn: Linear, Conv2d, GroupNorm, LayerNorm, Embedding, Dropout, Identity
import { conv2d, dropout, embedding, groupNorm, groupNormSilu, layerNorm, linear } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { Module, parameter } from "./module.ts";

/** y = x W^T + b, weight (out, in); init as torch (uniform +-1/sqrt(in)). */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
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
  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, args: Conv2dArgs = {}) {
    super();
    this.stride = args.stride ?? 1;
    this.padding = args.padding ?? 0;
    this.groups = args.groups ?? 1;
    const fanIn = (inChannels / this.groups) * kernelSize * kernelSize;
    const bound = 1 / Math.sqrt(fanIn);
    this.weight = parameter([outChannels, inChannels / this.groups, kernelSize, kernelSize], { kind: "uniform", bound });
    this.bias = args.bias ?? true ? parameter([outChannels], { kind: "uniform", bound }) : null;
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, groups: this.groups });
  }
}

export class GroupNorm extends Module {
  weight: Tensor | null;
  bias: Tensor | null;
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, affine = true) {
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
  constructor(readonly dim: number, readonly eps = 1e-5, affine = true) {
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
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
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
