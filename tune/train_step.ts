// One Custom Diffusion training step (the body of customise's loop) and what it needs: the epoch
// order of examples, the batch's pixels and masks, and the stop on a non-finite loss or gradient
import * as path from "node:path";
import { NumericalError } from "../engine/errors.ts";
import { Tensor, chunk, mseLoss, noGrad, randn, tensor } from "../engine/index.ts";
import { clipGradNorm, gradNorm, lrLambda } from "../optim/index.ts";
import type { TrainExample } from "./dataset.ts";
import { augmentInstance, prepareClassImage } from "./dataset.ts";
import { latestCheckpointIn } from "./checkpoint.ts";
import type { Run } from "./train_options.ts";

/** One training step (a batch of targets and regularisation examples): forward, loss, backward, update; the loss. */
export function trainStep(run: Run, aug: Parameters<typeof augmentInstance>[2]): number {
  const { pipe, o, opt, noiseScheduler, g, state, lr } = run;
  const { unet, textEncoder, tokenizer, vae } = pipe;
  const { instances, classes, prior } = run.data;
  const { resolution, maskSize } = run;
  const T = noiseScheduler.config.num_train_timesteps;
  const pred = noiseScheduler.config.prediction_type;
  // batch: B target examples, then B regularisation examples
  const ex: TrainExample[] = [];
  const idx = Array.from({ length: o.trainBatchSize }, () => nextIndex(run));
  for (const i of idx) {
    const s = instances[i % instances.length];
    ex.push(augmentInstance(s.image, s.prompt, aug, g));
  }
  if (prior)
    for (const i of idx) {
      const s = classes[i % classes.length];
      ex.push(prepareClassImage(s.image, s.prompt, aug, g));
    }
  const b = ex.length;
  const pixels = tensor(concatF32(ex.map((e) => e.pixels)), [b, 3, resolution, resolution]);
  const mask = tensor(concatF32(ex.map((e) => e.mask)), [b, 1, maskSize, maskSize]);
  const latents = noGrad(() => (vae ? vae.encode(pixels).sample(g).mul(vae.config.scaling_factor) : pixels));
  const noise = randn(latents.shape, { generator: g });
  const ts = Array.from({ length: b }, () => g.randint(0, T));
  const noisy = noiseScheduler.addNoise(latents, noise, ts);
  const target =
    pred === "v_prediction" ? noiseScheduler.getVelocity(latents, noise, ts) : pred === "epsilon" ? noise : latents;
  const ids = ex.map((e) =>
    tokenizer.encode(e.prompt, {
      maxLength: Math.min(tokenizer.modelMaxLength, textEncoder.config.max_position_embeddings),
    }),
  );
  const ehs = textEncoder.forward(ids).last_hidden_state; // (b, L, D)
  const out = unet.forward(noisy, ts, ehs);
  let loss: Tensor;
  if (prior) {
    const [pi, pc] = chunk(out, 2, 0),
      [ti, tc] = chunk(target, 2, 0),
      [mi] = chunk(mask, 2, 0);
    loss = mseLoss(pi, ti, mi).add(mseLoss(pc, tc).mul(o.priorLossWeight));
  } else loss = mseLoss(out, target, mask);
  const l = loss.item();
  if (!Number.isFinite(l)) diverged(run, `the loss is ${l}`, state.step + 1);
  opt.zeroGrad();
  loss.backward();
  const norm = o.maxGradNorm > 0 ? clipGradNorm(opt.params(), o.maxGradNorm) : gradNorm(opt.params());
  if (!Number.isFinite(norm)) diverged(run, `the gradient norm is ${norm} (loss ${l})`, state.step + 1);
  opt.setLr(lr * lrLambda(o.lrScheduler, state.step, o.lrWarmupSteps, o.maxTrainSteps));
  opt.step();
  opt.zeroGrad(); // the gradients go with the step's other temporaries (customise tidies each step)
  return l;
}

/** The next training index: a fresh shuffle of all of them each epoch. */
function nextIndex(run: Run): number {
  const { state, g } = run;
  if (state.cursor >= state.order.length) {
    const order = Array.from({ length: Math.max(run.data.instances.length, run.data.classes.length) }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = g.randint(0, i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    state.order = order;
    state.cursor = 0;
  }
  return state.order[state.cursor++];
}

/** A diverged run stops with the step and what to try; nothing non-finite is ever written. */
export function diverged(run: Run, what: string, at: number): never {
  const { o, lr } = run;
  const ck = latestCheckpointIn(path.join(o.outputDir, "checkpoints"));
  throw new NumericalError(
    `customise: training diverged at step ${at} of ${o.maxTrainSteps}: ${what} (learning rate ${lr.toExponential(2)}${o.scaleLr ? ", scaled" : ""}); nothing was saved for it${ck ? ` (the newest checkpoint, step ${ck.step}, is intact)` : ""}. Try a learning rate (--lr) 10 or more times lower (the default is 1e-5)${o.scaleLr ? ", or drop --scale-lr" : ""}${o.maxGradNorm > 0 ? "" : ", or clip gradients (maxGradNorm 1)"}`,
  );
}

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
