// a small conv + group_norm + attention + linear network trained with Adam drops its loss by 10x or more
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { Conv2d, GroupNorm, Linear, Module, withInitGenerator } from "../../models/nn/index.ts";
import { Adam } from "../../optim/index.ts";

class ToyNet extends Module {
  conv = new Conv2d(2, 8, 3, { padding: 1 });
  norm = new GroupNorm(2, 8);
  to_q = new Linear(8, 8);
  to_k = new Linear(8, 8);
  to_v = new Linear(8, 8);
  head = new Linear(8, 4);
  forward(x: T.Tensor): T.Tensor {
    const h = T.silu(this.norm.forward(this.conv.forward(x))); // (B, 8, 6, 6)
    const tokens = T.transpose(T.reshape(h, [h.shape[0], 8, 36]), 1, 2); // (B, 36, 8)
    const a = T.scaledDotProductAttention(this.to_q.forward(tokens), this.to_k.forward(tokens), this.to_v.forward(tokens));
    return this.head.forward(T.mean(T.add(a, tokens), 1)); // (B, 4)
  }
}

test("toy network: loss falls by at least 10x in 300 Adam steps", () => {
  const g = new T.Generator(0);
  const net = withInitGenerator(g, () => new ToyNet());
  const x = T.randn([8, 2, 6, 6], { generator: g });
  const y = T.randn([8, 4], { generator: g });
  const opt = new Adam(net.parameters(), { lr: 1e-2 });
  let first = 0, last = 0;
  for (let step = 0; step < 300; step++) {
    const loss = T.mseLoss(net.forward(x), y);
    if (step === 0) first = loss.item();
    last = loss.item();
    opt.zeroGrad();
    loss.backward();
    opt.step();
  }
  assert.ok(first / last >= 10, `loss went from ${first} to ${last} (ratio ${(first / last).toFixed(1)})`);
});

test.run();
