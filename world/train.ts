// Pretrains the small world (UNet + text encoder jointly) on the emoji corpus; resumable.
// Run: npx tsx world/train.ts [--steps 1150] [--batch 64] [--out runs/world] [--resume] [--checkpoint-every 50] [--seed 0]
// Recipe: v-prediction, cosine (squaredcos_cap_v2) schedule, AdamW lr 1e-3 with 100 warm-up steps, weight
// decay 0.01, grad clip 1, random h-flip, 10% caption dropout, EMA of the weights (used for sampling).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Generator, Tensor, mseLoss, noGrad, randn, tensor, tidy } from "../engine/index.ts";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import { AdamW, clipGradNorm, lrLambda } from "../optim/index.ts";
import type { AdamState } from "../optim/index.ts";
import { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import { readOptimizerState, verifyCheckpoint, writeCheckpoint, writeOptimizerState } from "../tune/checkpoint.ts";
import { TrainingLoop, due, resumeFrom, writeStateFile } from "../tune/loop.ts";
import { NumericalError } from "../engine/errors.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { loadWorldDataset } from "./dataset.ts";
import {
  WORLD_MAX_TOKENS,
  WORLD_SCHEDULER_CONFIG,
  buildWorldPipeline,
  worldTokenIds,
  writeRestrictedTokenizer,
} from "./model.ts";

export interface WorldTrainOptions {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  captionDropout: number;
  seed: number;
  out: string;
  checkpointEvery: number;
  resume: boolean;
  /** stop after this many steps of this process (the run stays resumable) */
  stopAfter?: number;
  log?: (s: string) => void;
}

export const WORLD_RECIPE: Omit<WorldTrainOptions, "out" | "resume"> = {
  steps: 1150,
  batch: 64,
  lr: 1e-3,
  warmup: 100,
  weightDecay: 0.01,
  captionDropout: 0.1,
  seed: 0,
  checkpointEvery: 50,
};

function emaDecay(n: number): number {
  return Math.min(0.999, (1 + n) / (10 + n));
}

function hflip(img: Float32Array, size: number): Float32Array {
  const out = new Float32Array(img.length);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) out[(c * size + y) * size + x] = img[(c * size + y) * size + size - 1 - x];
  return out;
}

interface State {
  step: number;
  generator: number[];
  losses: number[];
  seconds: number;
}

/** Trains (or resumes) the world; returns the pipeline holding the EMA weights. */
export function trainWorld(opts: WorldTrainOptions): {
  pipe: StableDiffusionPipeline;
  losses: number[];
  seconds: number;
} {
  const log = opts.log ?? ((s: string) => console.log(s));
  const ds = loadWorldDataset();
  fs.mkdirSync(opts.out, { recursive: true });
  const tokDir = path.join(opts.out, "tokenizer");
  const tokenizer = writeRestrictedTokenizer(tokDir, worldTokenIds(ds.tokenIds));
  const pipe = buildWorldPipeline(tokenizer, opts.seed);
  const { unet, textEncoder } = pipe;
  const named: [string, Tensor][] = [
    ...unet.namedParameters().map(([k, p]) => [`unet.${k}`, p] as [string, Tensor]),
    ...textEncoder.namedParameters().map(([k, p]) => [`text_encoder.${k}`, p] as [string, Tensor]),
  ];
  const params = named.map(([, p]) => p);
  const decay = params.filter((p) => p.ndim >= 2),
    noDecay = params.filter((p) => p.ndim < 2);
  const opt = new AdamW(
    [
      { params: decay, name: "decay" },
      { params: noDecay, name: "no_decay", weightDecay: 0 },
    ],
    { lr: opts.lr, weightDecay: opts.weightDecay },
  );
  const ema = named.map(([, p]) => Float32Array.from(p.data));
  const sched = DDPMScheduler.fromConfig(WORLD_SCHEDULER_CONFIG as never);
  const g = new Generator(opts.seed);
  let state: State = { step: 0, generator: g.getState(), losses: [], seconds: 0 };
  const ckRoot = path.join(opts.out, "checkpoints");
  if (opts.resume) {
    // the newest checkpoint that verifies and parses; everything is read before any state changes
    resumeFrom(
      ckRoot,
      (dir, step) => {
        verifyCheckpoint(dir, ["weights.safetensors", "ema.safetensors", "optimizer.safetensors", "state.json"]);
        const w = readSafetensors(path.join(dir, "weights.safetensors")).tensors;
        const e = readSafetensors(path.join(dir, "ema.safetensors")).tensors;
        for (const [k] of named) if (!w.get(k) || !e.get(k)) throw new Error(`${dir} lacks ${k}`);
        const os = readOptimizerState(path.join(dir, "optimizer.safetensors"), opt.stateDict());
        const st = JSON.parse(fs.readFileSync(path.join(dir, "state.json"), "utf8")) as State;
        if (st.step !== step || !Array.isArray(st.losses) || !Array.isArray(st.generator))
          throw new Error(`${dir}/state.json: fields do not match step ${step}`);
        return { w, e, os, st };
      },
      ({ w, e, os, st }) => {
        named.forEach(([k, p], i) => {
          p.copy_(w.get(k)!.data);
          ema[i] = Float32Array.from(e.get(k)!.data);
        });
        opt.loadStateDict(os);
        state = st;
        g.setState(state.generator);
      },
      log,
    );
  }
  log(
    `world: UNet ${unet.numParameters().toLocaleString("en")} + text encoder ${textEncoder.numParameters().toLocaleString("en")} parameters; ${ds.images.length} images of ${ds.classes.length} classes; batch ${opts.batch}, ${opts.steps} steps`,
  );
  const size = ds.size;
  const templates = ds.captionTemplates;
  const secondsBefore = state.seconds;
  const loop = new TrainingLoop({ start: state.step, steps: opts.steps, stopAfter: opts.stopAfter });
  while (loop.next(state.step)) {
    const B = opts.batch;
    const px = new Float32Array(B * 3 * size * size);
    const prompts: string[] = [];
    for (let i = 0; i < B; i++) {
      const k = g.randint(0, ds.images.length);
      const img = g.random() < 0.5 ? hflip(ds.images[k], size) : ds.images[k];
      px.set(img, i * 3 * size * size);
      const tpl = templates[g.randint(0, templates.length)];
      const cap = tpl.replace("{}", ds.captions[k]).replace(/^a ([aeiou])/, "an $1");
      prompts.push(g.random() < opts.captionDropout ? "" : cap);
    }
    // one step in a tidy scope: its temporaries go at its end (gpujs textures; engine/tidy.ts)
    const l = tidy(
      () => {
        const x0 = tensor(px, [B, 3, size, size]);
        const noise = randn(x0.shape, { generator: g });
        const ts = Array.from({ length: B }, () => g.randint(0, sched.config.num_train_timesteps));
        const noisy = sched.addNoise(x0, noise, ts);
        const target = sched.getVelocity(x0, noise, ts);
        const ehs = textEncoder.forward(
          prompts.map((p) => tokenizer.encode(p, { maxLength: WORLD_MAX_TOKENS })),
        ).last_hidden_state;
        const loss = mseLoss(unet.forward(noisy, ts, ehs), target);
        if (!Number.isFinite(loss.item()))
          throw new NumericalError(
            `world: the loss is ${loss.item()} at step ${state.step + 1}; training diverged (the newest checkpoint is intact) - lower the learning rate`,
          );
        opt.zeroGrad();
        loss.backward();
        clipGradNorm(params, 1);
        opt.setLr(opts.lr * lrLambda("constant_with_warmup", state.step, opts.warmup));
        opt.step();
        opt.zeroGrad();
        return loss.item();
      },
      () => opt.tensors(),
    );
    state.step++;
    const d = emaDecay(state.step);
    noGrad(() =>
      named.forEach(([, p], i) => {
        const e = ema[i],
          w = p.data;
        for (let j = 0; j < e.length; j++) e[j] = d * e[j] + (1 - d) * w[j];
      }),
    );
    state.losses.push(+l.toFixed(5));
    const p = loop.progress(state.step);
    if (state.step % 10 === 0 || p.done === 1) {
      const recent = state.losses.slice(-20);
      log(
        `step ${state.step}/${opts.steps}  loss ${l.toFixed(4)} (avg20 ${(recent.reduce((a, b) => a + b, 0) / recent.length).toFixed(4)})  ${p.secondsPerStep.toFixed(2)} s/step  ETA ${(p.eta / 60).toFixed(1)} min`,
      );
    }
    if (due(state.step, opts.checkpointEvery)) {
      state.generator = g.getState();
      state.seconds = secondsBefore + loop.seconds();
      writeWorldCheckpoint(ckRoot, state, named, ema, opt.stateDict());
    }
  }
  const seconds = secondsBefore + loop.seconds();
  // sampling uses the EMA weights
  named.forEach(([, p], i) => p.copy_(ema[i]!));
  unet.eval();
  textEncoder.eval();
  return { pipe, losses: state.losses, seconds };
}

function writeWorldCheckpoint(
  root: string,
  state: State,
  named: [string, Tensor][],
  ema: Float32Array[],
  opt: AdamState,
): void {
  writeCheckpoint(root, state.step, (tmp) => {
    writeSafetensors(
      path.join(tmp, "weights.safetensors"),
      new Map(named.map(([k, p]) => [k, { shape: p.shape, data: p.data }])),
    );
    writeSafetensors(
      path.join(tmp, "ema.safetensors"),
      new Map(named.map(([k, p], i) => [k, { shape: p.shape, data: ema[i] }])),
    );
    writeOptimizerState(path.join(tmp, "optimizer.safetensors"), opt);
    writeStateFile(tmp, state);
  });
}

if (process.argv[1] && /world[\\/]train\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: {
      steps: { type: "string" },
      batch: { type: "string" },
      out: { type: "string" },
      resume: { type: "boolean" },
      "checkpoint-every": { type: "string" },
      seed: { type: "string" },
      "stop-after": { type: "string" },
      save: { type: "string" },
    },
  });
  const o: WorldTrainOptions = {
    ...WORLD_RECIPE,
    out: v.out ?? "runs/world",
    resume: v.resume ?? false,
    ...(v.steps ? { steps: Number(v.steps) } : {}),
    ...(v.batch ? { batch: Number(v.batch) } : {}),
    ...(v["checkpoint-every"] ? { checkpointEvery: Number(v["checkpoint-every"]) } : {}),
    ...(v.seed ? { seed: Number(v.seed) } : {}),
    ...(v["stop-after"] ? { stopAfter: Number(v["stop-after"]) } : {}),
  };
  const r = trainWorld(o);
  if (r.losses.length >= o.steps) {
    const dest = v.save ?? path.join(o.out, "model");
    r.pipe.save(dest);
    writeJsonAtomic(path.join(dest, "training.json"), {
      recipe: { ...o, log: undefined },
      steps: r.losses.length,
      seconds: +r.seconds.toFixed(0),
      final_loss_avg50: +(r.losses.slice(-50).reduce((a, b) => a + b, 0) / Math.min(50, r.losses.length)).toFixed(5),
      machine: `${os.cpus()[0]?.model} x${os.cpus().length}`,
      node: process.version,
    });
    console.log(`saved the EMA model to ${dest}`);
  }
}
