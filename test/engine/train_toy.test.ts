// a small conv + group_norm + attention + linear network trained with Adam drops its loss by 10x or more
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { withInitGenerator } from "../../models/nn/index.ts";
import { Adam } from "../../optim/index.ts";
import { ToyNet } from "../../examples/toy_net.ts";

test("toy network: loss falls by at least 10x in 300 Adam steps", () => {
  const g = new T.Generator(0);
  const net = withInitGenerator(g, () => new ToyNet(2, 8, 2, 4));
  const x = T.randn([8, 2, 6, 6], { generator: g });
  const y = T.randn([8, 4], { generator: g });
  const opt = new Adam(net.parameters(), { lr: 1e-2 });
  let first = 0,
    last = 0;
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
