// Adam/AdamW against hand-computed updates, parameter groups, clipping, schedules, state round trip
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { Adam, AdamW, clipGradNorm, lrLambda } from "../../optim/index.ts";
import { assertClose } from "../helpers.ts";

const f64 = { dtype: "float64" as const, requiresGrad: true };

test("Adam: two steps match the hand-computed update", () => {
  const p = T.tensor([1, -2], undefined, f64);
  const opt = new Adam([p], { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8 });
  // step 1: g = [0.5, -1]; m = 0.1 g; v = 0.001 g^2; mhat = g; vhat = g^2 -> update lr * sign(g) (eps aside)
  p.grad = T.tensor([0.5, -1], undefined, { dtype: "float64" });
  opt.step();
  const w1 = [1 - (0.1 * 0.5) / (0.5 + 1e-8), -2 + (0.1 * 1) / (1 + 1e-8)];
  assertClose(p.data, w1, 1e-15, 1e-14);
  // step 2: g = [0.1, 1]
  p.grad = T.tensor([0.1, 1], undefined, { dtype: "float64" });
  opt.step();
  const g1 = [0.5, -1],
    g2 = [0.1, 1];
  const w2 = w1.map((w, i) => {
    const m = 0.9 * (0.1 * g1[i]) + 0.1 * g2[i];
    const v = 0.999 * (0.001 * g1[i] ** 2) + 0.001 * g2[i] ** 2;
    const mh = m / (1 - 0.9 ** 2),
      vh = v / (1 - 0.999 ** 2);
    return w - (0.1 * mh) / (Math.sqrt(vh) + 1e-8);
  });
  assertClose(p.data, w2, 1e-14, 1e-13);
});

test("AdamW decays weights decoupled from the gradient; Adam adds L2 to the gradient", () => {
  const p = T.tensor([2], undefined, f64);
  const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.5 });
  p.grad = T.tensor([0], undefined, { dtype: "float64" });
  opt.step();
  assertClose(p.data, [2 * (1 - 0.05)], 1e-15, 1e-14); // zero gradient: only the decay moves it
  const q = T.tensor([2], undefined, f64);
  const o2 = new Adam([q], { lr: 0.1, weightDecay: 0.5 });
  q.grad = T.tensor([0], undefined, { dtype: "float64" });
  o2.step(); // gradient becomes 0.5*2 = 1 -> moves by lr
  assertClose(q.data, [1.9], 1e-7, 1e-7);
});

test("AdamW: each parameter group decays with its own weightDecay and lr (two steps, hand-computed as torch.optim.AdamW)", () => {
  const a = T.tensor([1.5, -2, 0.25], undefined, f64),
    b = T.tensor([3, -1], undefined, f64);
  const groups = [
    { lr: 0.1, wd: 0.5 },
    { lr: 0.02, wd: 0.05 },
  ];
  // options-level weightDecay differs from both, so a group falling back to it is caught too
  const opt = new AdamW(
    [
      { params: [a], lr: groups[0]!.lr, weightDecay: groups[0]!.wd },
      { params: [b], lr: groups[1]!.lr, weightDecay: groups[1]!.wd },
    ],
    { lr: 1, weightDecay: 0.9, betas: [0.9, 0.999], eps: 1e-8 },
  );
  const grads = [
    [
      [0.5, -1, 0],
      [0.2, 0.3],
    ],
    [
      [-0.25, 2, 0.1],
      [0, -0.4],
    ],
  ]; // [step][group]
  // torch.optim.AdamW: p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr (m / bc1) / (sqrt(v / bc2) + eps)
  const want = [
    [1.5, -2, 0.25],
    [3, -1],
  ];
  const m = want.map((w) => w.map(() => 0)),
    v = want.map((w) => w.map(() => 0));
  for (let step = 1; step <= 2; step++) {
    a.grad = T.tensor(grads[step - 1]![0]!, undefined, { dtype: "float64" });
    b.grad = T.tensor(grads[step - 1]![1]!, undefined, { dtype: "float64" });
    opt.step();
    for (let k = 0; k < 2; k++) {
      const { lr, wd } = groups[k]!;
      for (let i = 0; i < want[k]!.length; i++) {
        const g = grads[step - 1]![k]![i]!;
        want[k]![i] = want[k]![i]! * (1 - lr * wd);
        m[k]![i] = 0.9 * m[k]![i]! + 0.1 * g;
        v[k]![i] = 0.999 * v[k]![i]! + 0.001 * g * g;
        const mh = m[k]![i]! / (1 - 0.9 ** step),
          vh = v[k]![i]! / (1 - 0.999 ** step);
        want[k]![i] = want[k]![i]! - (lr * mh) / (Math.sqrt(vh) + 1e-8);
      }
    }
    assertClose(a.data, want[0]!, 1e-15, 1e-13, `group 0 after step ${step}`);
    assertClose(b.data, want[1]!, 1e-15, 1e-13, `group 1 after step ${step}`);
  }
});

test("parameter groups have their own lr; parameters without grad get no state", () => {
  const a = T.tensor([1], undefined, f64),
    b = T.tensor([1], undefined, f64),
    c = T.tensor([1], undefined, f64);
  const opt = new Adam([
    { params: [a], lr: 0.1 },
    { params: [b, c], lr: 0.01, name: "tokens" },
  ]);
  a.grad = T.tensor([1], undefined, { dtype: "float64" });
  b.grad = T.tensor([1], undefined, { dtype: "float64" });
  opt.step();
  assertClose(a.data, [0.9], 1e-7, 0);
  assertClose(b.data, [0.99], 1e-7, 0);
  assert.equal(c.toArray(), [1]);
  assert.throws(() => new Adam([a, a]), /more than one group/);
  assert.throws(() => new Adam([T.zeros([1])]), /does not require grad/);
});

test("optimizer state saves and restores: resumed updates equal uninterrupted ones", () => {
  const run = (split: boolean) => {
    const p = T.tensor([1, 2, 3], undefined, f64);
    let opt = new Adam([p], { lr: 0.05 });
    for (let i = 0; i < 6; i++) {
      if (split && i === 3) {
        const st = opt.stateDict();
        opt = new Adam([p], { lr: 0.05 });
        opt.loadStateDict(st);
      }
      p.grad = T.tensor([Math.sin(i), Math.cos(i), i / 3], undefined, { dtype: "float64" });
      opt.step();
    }
    return p.toArray();
  };
  assert.equal(run(true), run(false));
});

test("clipGradNorm scales to the max norm and returns the norm before", () => {
  const a = T.tensor([3], undefined, f64),
    b = T.tensor([4], undefined, f64);
  a.grad = T.tensor([3], undefined, { dtype: "float64" });
  b.grad = T.tensor([4], undefined, { dtype: "float64" });
  assert.is(clipGradNorm([a, b], 1), 5);
  assertClose([a.grad!.item(), b.grad!.item()], [0.6, 0.8], 1e-6, 0);
  assert.is(clipGradNorm([a, b], 10) <= 1.0000001, true);
  assertClose([a.grad!.item()], [0.6], 1e-6, 0); // below the max: unchanged
});

test("lr schedules", () => {
  assert.is(lrLambda("constant", 5), 1);
  assert.equal(
    [0, 50, 100, 200].map((s) => lrLambda("constant_with_warmup", s, 100)),
    [0, 0.5, 1, 1],
  );
  assert.equal(
    [0, 5, 10].map((s) => lrLambda("linear", s, 0, 10)),
    [1, 0.5, 0],
  );
  assertClose([lrLambda("cosine", 5, 0, 10)], [0.5], 1e-12, 0);
});

test.run();
