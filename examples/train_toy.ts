// Train a small conv + group-norm + attention network with the engine and watch the loss fall.
// Run: npx tsx examples/train_toy.ts [--steps 300] [--lr 0.01] [--seed 0]
import * as T from "../engine/index.ts";
import { withInitGenerator } from "../models/nn/index.ts";
import { Adam } from "../optim/index.ts";
import { ToyNet } from "./toy_net.ts";

// ---- config -------------------------------------------------------------------------------
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const steps = arg("steps", 300);
const lr = arg("lr", 1e-2);
const seed = arg("seed", 0);
const batch = 16;

// ---- model: conv -> group norm -> SiLU -> self-attention over pixels -> pooled linear head -----
// (ToyNet in examples/toy_net.ts: 3 colour channels + 2 coordinate channels in, 16 wide, 2 outputs)

// ---- data: 8x8 images with one bright square; the target is its (row, col) centre in [-1, 1] ---
const gen = new T.Generator(seed);
function makeBatch(n: number): { x: T.Tensor; y: T.Tensor } {
  const x = new Float32Array(n * 5 * 64),
    y = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const r = gen.randint(0, 6),
      c = gen.randint(0, 6),
      ch = gen.randint(0, 3);
    for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) x[i * 320 + ch * 64 + (r + dy) * 8 + c + dx] = 1;
    for (let p = 0; p < 64; p++) {
      x[i * 320 + 192 + p] = Math.floor(p / 8) / 3.5 - 1; // row coordinate
      x[i * 320 + 256 + p] = (p % 8) / 3.5 - 1; // column coordinate
    }
    y[i * 2] = ((r + 1) / 7) * 2 - 1;
    y[i * 2 + 1] = ((c + 1) / 7) * 2 - 1;
  }
  return { x: T.tensor(x, [n, 5, 8, 8]), y: T.tensor(y, [n, 2]) };
}

// ---- training loop ----------------------------------------------------------------------------
const net = withInitGenerator(gen, () => new ToyNet(5, 16, 4, 2));
const opt = new Adam(net.parameters(), { lr });
console.log(`toy network: ${net.numParameters()} parameters, ${steps} steps of batch ${batch}, Adam lr ${lr}`);
const t0 = performance.now();
let first = NaN,
  avg = 0;
for (let step = 1; step <= steps; step++) {
  // one step in a tidy scope: on the gpujs backend its temporaries (textures) are freed at its end,
  // keeping the optimizer's parameters and moments; on cpu it frees nothing
  const l = T.tidy(
    () => {
      const { x, y } = makeBatch(batch);
      const loss = T.mseLoss(net.forward(x), y);
      opt.zeroGrad();
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss.item();
    },
    () => opt.tensors(),
  );
  if (step === 1) first = l;
  avg = step === 1 ? l : 0.9 * avg + 0.1 * l;
  if (step % 25 === 0 || step === 1) {
    const el = (performance.now() - t0) / 1000;
    const eta = (el / step) * (steps - step);
    console.log(
      `step ${String(step).padStart(4)}  loss ${l.toFixed(5)}  (smoothed ${avg.toFixed(5)})  ${(step / el).toFixed(1)} steps/s  ETA ${eta.toFixed(1)} s`,
    );
  }
}
const { x, y } = makeBatch(256);
const test = T.noGrad(() => T.mseLoss(net.forward(x), y)).item();
console.log(`first loss ${first.toFixed(4)} -> held-out loss ${test.toFixed(4)} (${(first / test).toFixed(1)}x lower)`);
