// The toy network of examples/train_toy.ts (and of its test): conv -> group norm -> SiLU ->
// self-attention over pixels -> pooled linear head.
import * as T from "../engine/index.ts";
import { Conv2d, GroupNorm, Linear, Module } from "../models/nn/index.ts";

/** (B, inChannels, H, W) -> (B, outputs); `width` channels after the convolution, in `groups` norm groups. */
export class ToyNet extends Module {
  conv: Conv2d;
  norm: GroupNorm;
  to_q: Linear;
  to_k: Linear;
  to_v: Linear;
  head: Linear;
  constructor(
    readonly inChannels: number,
    readonly width: number,
    groups: number,
    outputs: number,
  ) {
    super();
    this.conv = new Conv2d(inChannels, width, 3, { padding: 1 });
    this.norm = new GroupNorm(groups, width);
    this.to_q = new Linear(width, width);
    this.to_k = new Linear(width, width);
    this.to_v = new Linear(width, width);
    this.head = new Linear(width, outputs);
  }
  forward(x: T.Tensor): T.Tensor {
    const [b, , h, w] = x.shape;
    const f = T.silu(this.norm.forward(this.conv.forward(x))); // (B, width, H, W)
    const tokens = T.transpose(T.reshape(f, [b!, this.width, h! * w!]), 1, 2); // (B, HW, width)
    const a = T.scaledDotProductAttention(
      this.to_q.forward(tokens),
      this.to_k.forward(tokens),
      this.to_v.forward(tokens),
    );
    return this.head.forward(T.mean(T.add(a, tokens), 1)); // (B, outputs)
  }
}
