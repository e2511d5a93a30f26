// The Custom Diffusion training loop: K/V (or wider) fine-tuning of cross-attention plus modifier-token
// rows, masked loss with prior preservation, AdamW, checkpoints that resume exactly, progress and ETA
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, NumericalError, StateDictError } from "../engine/errors.ts";
import { Generator, Tensor, mseLoss, noGrad, randn, tensor, chunk } from "../engine/index.ts";
import { makeGrid, writePng } from "../data/images.ts";
import { AdamW, clipGradNorm, gradNorm, lrLambda } from "../optim/index.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import { CustomDiffusionAttnProcessor } from "../models/custom_diffusion.ts";
import { AttnProcessor } from "../models/attention_processor.ts";
import { prepareOutputDir } from "../data/atomic.ts";
import type { ConceptSpec, TrainExample } from "./dataset.ts";
import { augmentInstance, listImages, loadImages, prepareClassImage } from "./dataset.ts";
import { selectParameters } from "./params.ts";
import type { Delta } from "./delta.ts";
import { baseFingerprint, extractDelta, firstNonFinite, loadDelta, saveDelta } from "./delta.ts";
import { latestCheckpointIn, readOptimizerState, verifyCheckpoint } from "./checkpoint.ts";
import { TrainingLoop, due, formatDuration, resumeFrom } from "./loop.ts";
import { readTrainState, saveCheckpoint } from "./train_state.ts";
import { addModifierTokens, defaultModifierTokens, resolveInitializers, tokenRows } from "./tokens.ts";
import { DEFAULTS } from "./train_options.ts";
import type {
  CustomiseOptions,
  CustomiseResult,
  Data,
  Log,
  LoopState,
  Options,
  Run,
  Sample,
  Tokens,
} from "./train_options.ts";

export type { CustomiseOptions, CustomiseResult } from "./train_options.ts";

/** Class images of a concept: a folder of images, or a folder with images.txt + caption.txt (retrieval output). */
function classSamples(spec: ConceptSpec, resolution: number, max: number, decode: { maxPixels?: number }): Sample[] {
  if (!spec.class_data_dir) return [];
  const dir = spec.class_data_dir;
  const imgList = path.join(dir, "images.txt"),
    capList = path.join(dir, "caption.txt");
  if (fs.existsSync(imgList)) {
    const files = fs
      .readFileSync(imgList, "utf8")
      .split("\n")
      .filter(Boolean)
      .slice(0, max)
      .map((f) => (path.isAbsolute(f) ? f : path.join(dir, f)));
    const caps = fs.existsSync(capList) ? fs.readFileSync(capList, "utf8").split("\n") : [];
    const imgs = loadImages(files, resolution, decode);
    return imgs.map((image, i) => ({ image, prompt: caps[i]?.trim() || spec.class_prompt }));
  }
  const imgs = loadImages(listImages(dir).slice(0, max), resolution, decode);
  return imgs.map((image) => ({ image, prompt: spec.class_prompt }));
}

/** Newest `checkpoint-<step>` folder in `dir/checkpoints`, or null. */
export function latestCheckpoint(dir: string): { step: number; path: string } | null {
  return latestCheckpointIn(path.join(dir, "checkpoints"));
}

/** ", peak memory N GB" (the process's peak resident set), where the runtime reports it. */
function peakMemory(): string {
  const ru = (globalThis as { process?: { resourceUsage?: () => { maxRSS: number } } }).process?.resourceUsage?.();
  return ru ? `, peak memory ${(ru.maxRSS / 2 ** 20).toFixed(2)} GB` : "";
}

/**
 * Customises `pipe` in place on the given concepts (Custom Diffusion) and writes the delta to
 * `outputDir`. The pipeline's UNet keeps the trained weights and its tokenizer/text encoder the new
 * tokens, so it can sample right away.
 */
export function customise(pipe: StableDiffusionPipeline, options: CustomiseOptions): CustomiseResult {
  const o: Options = { ...DEFAULTS, ...options };
  const log = o.log ?? ((s: string) => console.log(s));
  const t0 = performance.now();
  const resolution = checkOptions(pipe, o);
  // the output folder is checked (and stale temporaries of killed runs removed) before any long work
  prepareOutputDir(o.outputDir, "output folder", { also: ["checkpoints"] });
  const tok = setupTokens(pipe, o, log);
  const trained = setupParameters(pipe, o, tok, log);
  const data = loadData(o, resolution, log);
  const { lr, opt, noiseScheduler } = setupOptimizer(pipe, o, trained, tok, data.prior, log);
  const keys = trained.map(([k]) => k);
  const run: Run = {
    pipe,
    o,
    log,
    resolution,
    maskSize: resolution / pipe.vaeScaleFactor,
    tok,
    keys,
    data,
    lr,
    opt,
    noiseScheduler,
    g: new Generator(o.seed),
    state: { step: 0, order: [], cursor: 0, losses: [] },
  };
  if (o.resume) resume(run);
  const stopped = trainLoop(run);
  const delta = checkedDelta(run);
  const seconds = (performance.now() - t0) / 1000;
  save(run, delta, stopped, seconds);
  for (const [, a] of pipe.unet.crossAttentionLayers()) a.setProcessor(new AttnProcessor());
  pipe.unet.requiresGrad_(false);
  tok.rows.requiresGrad = false;
  return { delta, losses: run.state.losses, learningRate: lr, steps: run.state.step, seconds, outputDir: o.outputDir };
}

/** Checks the options that need no file; returns the training resolution. */
function checkOptions(pipe: StableDiffusionPipeline, o: Options): number {
  if (o.concepts.length === 0) throw new ConfigError("customise: no concepts given");
  const factor = pipe.vaeScaleFactor;
  const resolution = o.resolution ?? (pipe.unet.config.sample_size ?? 64) * factor;
  if (resolution % factor !== 0)
    throw new ConfigError(`customise: resolution ${resolution} must be a multiple of ${factor}`);
  if (!Number.isInteger(o.maxTrainSteps) || o.maxTrainSteps < 1)
    throw new ConfigError(`customise: maxTrainSteps must be at least 1, got ${o.maxTrainSteps}`);
  if (!Number.isInteger(o.trainBatchSize) || o.trainBatchSize < 1)
    throw new ConfigError(`customise: trainBatchSize must be at least 1, got ${o.trainBatchSize}`);
  if (!(o.learningRate > 0) || !Number.isFinite(o.learningRate))
    throw new ConfigError(`customise: learningRate must be a positive number, got ${o.learningRate}`);
  return resolution;
}

/** Stage 1: one modifier token per concept, added to the tokenizer and the text encoder. */
function setupTokens(pipe: StableDiffusionPipeline, o: Options, log: Log): Tokens {
  const { unet, textEncoder, tokenizer } = pipe;
  const tokens = o.modifierTokens ?? defaultModifierTokens(o.concepts.length);
  const inits = resolveInitializers(tokenizer, tokens.length, o.initializerTokens ?? [], log);
  for (const t of tokens)
    if (!o.concepts.some((c) => c.instance_prompt.includes(t)))
      log(`warning: no instance prompt mentions ${t}; it will not train`);
  const fingerprint = baseFingerprint(unet);
  const { rows } = addModifierTokens(tokenizer, textEncoder, tokens, inits);
  log(`modifier tokens: ${tokens.map((t, i) => `${t} (from "${inits[i]}")`).join(", ")}`);
  return { tokens, inits, rows, fingerprint };
}

/**
 * Stage 2, what trains: the selected UNet weights and the new token rows; everything else is frozen.
 * Returns the trained UNet weights by name.
 */
function setupParameters(pipe: StableDiffusionPipeline, o: Options, tok: Tokens, log: Log): [string, Tensor][] {
  const { unet, textEncoder, vae } = pipe;
  textEncoder.requiresGrad_(false);
  vae?.requiresGrad_(false);
  const sel = selectParameters(unet, o.freezeModel);
  log(
    `training ${o.freezeModel}: ${sel.count.toLocaleString("en")} of ${sel.total.toLocaleString("en")} UNet parameters (${(100 * sel.share).toFixed(2)}%) in ${sel.params.length} tensors, plus ${tok.rows.size.toLocaleString("en")} token-embedding values`,
  );
  for (const [, a] of unet.crossAttentionLayers()) a.setProcessor(new CustomDiffusionAttnProcessor());
  if (o.gradientCheckpointing) {
    unet.enableGradientCheckpointing();
    log("gradient checkpointing: the UNet's resnets and transformers recompute their activations during backward");
  }
  const half = [unet, textEncoder, ...(vae ? [vae] : [])]
    .flatMap((m) => m.parameters())
    .filter((p) => p.dtype === "bfloat16" || p.dtype === "float16");
  if (half.length > 0)
    log(
      `frozen weights in ${half[0]!.dtype}: ${half.length} tensors, ${(half.reduce((n, p) => n + p.size, 0) / 1e6).toFixed(1)}M values (computed in float32)`,
    );
  return sel.params;
}

/** Stage 3: the data, decoded up front so a bad file stops the run before training. */
function loadData(o: Options, resolution: number, log: Log): Data {
  const decode = o.maxImagePixels !== undefined ? { maxPixels: o.maxImagePixels } : {};
  const instances: Sample[] = o.concepts.flatMap((c) =>
    loadImages(listImages(c.instance_data_dir), resolution, decode).map((image) => ({
      image,
      prompt: c.instance_prompt,
    })),
  );
  const classes: Sample[] = o.concepts.flatMap((c) => classSamples(c, resolution, o.numClassImages, decode));
  const prior = classes.length > 0;
  if (instances.length === 0)
    throw new ConfigError(`customise: no images in ${o.concepts.map((c) => c.instance_data_dir).join(", ")}`);
  log(
    `data: ${instances.length} target image(s), ${classes.length} regularisation image(s)${prior ? ` (prior loss weight ${o.priorLossWeight})` : ""}, resolution ${resolution}, augmentation ${o.noaug ? "off" : "on"}`,
  );
  return { instances, classes, prior };
}

/** Stage 4: the learning rate, AdamW over the UNet weights and the token rows, and the noise scheduler. */
function setupOptimizer(
  pipe: StableDiffusionPipeline,
  o: Options,
  trained: readonly [string, Tensor][],
  tok: Tokens,
  prior: boolean,
  log: Log,
): { lr: number; opt: AdamW; noiseScheduler: DDPMScheduler } {
  const lr = o.scaleLr ? o.learningRate * o.trainBatchSize * (prior ? 2 : 1) : o.learningRate;
  log(
    `learning rate ${lr.toExponential(3)}${o.scaleLr ? ` (${o.learningRate} x batch ${o.trainBatchSize}${prior ? " x 2 for prior preservation" : ""})` : ""}, ${o.maxTrainSteps} steps, batch ${o.trainBatchSize}`,
  );
  const opt = new AdamW(
    [
      ...(trained.length ? [{ params: trained.map(([, p]) => p), name: "unet" }] : []),
      { params: [tok.rows], name: "tokens" },
    ],
    { lr, betas: [o.adamBeta1, o.adamBeta2], eps: o.adamEpsilon, weightDecay: o.adamWeightDecay },
  );
  const noiseScheduler = DDPMScheduler.fromConfig(pipe.scheduler.config as unknown as Record<string, unknown>);
  return { lr, opt, noiseScheduler };
}

/** Stage 5 (with --resume): the weights, token rows, optimizer, generator and data order of the newest intact checkpoint. */
function resume(run: Run): void {
  const { pipe, o, log, keys, tok, opt, g, state } = run;
  const { rows, tokens } = tok;
  const length = Math.max(run.data.instances.length, run.data.classes.length);
  const sd = pipe.unet.stateDict();
  const step = resumeFrom(
    path.join(o.outputDir, "checkpoints"),
    (dir, ckStep) => {
      // everything is read and checked before any state changes, so a damaged checkpoint changes nothing
      verifyCheckpoint(dir, ["state.json", "optimizer.safetensors", "pytorch_custom_diffusion_weights.safetensors"]);
      const st = readTrainState(path.join(dir, "state.json"), ckStep, length);
      const d = loadDelta(dir);
      for (const k of keys) {
        const v = d.unet.get(k),
          p = sd.get(k) as Tensor;
        if (!v) throw new StateDictError(`${dir} lacks ${k} (was it written by a run with another --freeze-model?)`);
        if (v.shape.join() !== p.shape.join())
          throw new StateDictError(`${dir}: ${k} is [${v.shape}], the model's [${p.shape}]`);
      }
      const saved = tokens.map((t) => d.tokens.get(t));
      if (saved.some((r) => !r || r.length !== rows.shape[1]))
        throw new StateDictError(`${dir} lacks token rows for ${tokens.join(", ")}`);
      const os = readOptimizerState(path.join(dir, "optimizer.safetensors"), opt.stateDict());
      if (os.step !== st.step)
        throw new ConfigError(`${dir}: optimizer step ${os.step} differs from state step ${st.step}`);
      return { st, d, saved: saved as Float32Array[], os };
    },
    ({ st, d, saved, os }) => {
      for (const k of keys) (sd.get(k) as Tensor).copy_(d.unet.get(k)!.data);
      const flat = new Float32Array(rows.size);
      saved.forEach((r, i) => flat.set(r, i * rows.shape[1]));
      rows.copy_(flat);
      opt.loadStateDict(os);
      g.setState(st.generator);
      state.order = st.order;
      state.cursor = st.cursor;
      state.step = st.step;
      state.losses.push(...st.losses);
    },
    log,
  );
  if (step === null) log("resume: no checkpoint yet, starting from step 0");
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
function diverged(run: Run, what: string, at: number): never {
  const { o, lr } = run;
  const ck = latestCheckpoint(o.outputDir);
  throw new NumericalError(
    `customise: training diverged at step ${at} of ${o.maxTrainSteps}: ${what} (learning rate ${lr.toExponential(2)}${o.scaleLr ? ", scaled" : ""}); nothing was saved for it${ck ? ` (the newest checkpoint, step ${ck.step}, is intact)` : ""}. Try a learning rate (--lr) 10 or more times lower (the default is 1e-5)${o.scaleLr ? ", or drop --scale-lr" : ""}${o.maxGradNorm > 0 ? "" : ", or clip gradients (maxGradNorm 1)"}`,
  );
}

/** The run's delta now, refused when any value is non-finite. */
function checkedDelta(run: Run): Delta {
  const { unet, textEncoder } = run.pipe;
  const { tokens, fingerprint } = run.tok;
  const d = extractDelta(unet, run.keys, tokenRows(textEncoder, tokens), run.o.freezeModel, fingerprint);
  const named: [string, ArrayLike<number>][] = [
    ...[...d.unet].map(([k, v]) => [k, v.data] as [string, Float32Array]),
    ...d.tokens,
  ];
  for (const [k, data] of named) {
    const bad = firstNonFinite(data);
    if (bad)
      diverged(
        run,
        `the weights of ${k} hold ${bad.count} non-finite value${bad.count > 1 ? "s" : ""} after it`,
        run.state.step,
      );
  }
  return d;
}

function checkpoint(run: Run, delta: Delta): void {
  const { step, order, cursor, losses } = run.state;
  saveCheckpoint(run.o.outputDir, step, delta, run.opt.stateDict(), {
    step,
    generator: run.g.getState(),
    order,
    cursor,
    losses,
  });
}

/** Stage 6, the training loop; returns true when it stopped early (stopAfter). */
function trainLoop(run: Run): boolean {
  const { pipe, o, log, resolution, maskSize, opt, noiseScheduler, g, state, lr } = run;
  const { unet, textEncoder, tokenizer, vae } = pipe;
  const { instances, classes, prior } = run.data;
  const T = noiseScheduler.config.num_train_timesteps;
  const pred = noiseScheduler.config.prediction_type;
  const aug = { resolution, maskSize, aug: !o.noaug, hflip: o.hflip };
  const loop = new TrainingLoop({ start: state.step, steps: o.maxTrainSteps, stopAfter: o.stopAfter });
  while (loop.next(state.step)) {
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
    const step = ++state.step;
    state.losses.push(l);
    if (step === 1 || step % 10 === 0 || step === o.maxTrainSteps) {
      const p = loop.progress(step);
      const recent = state.losses.slice(-10);
      const avg = recent.reduce((s, v) => s + v, 0) / recent.length;
      log(
        `step ${step}/${o.maxTrainSteps}  loss ${l.toFixed(4)} (avg ${avg.toFixed(4)})  ${p.stepsPerSecond.toFixed(2)} steps/s  ETA ${formatDuration(p.eta)}`,
      );
    }
    if (due(step, o.checkpointingSteps) && step < o.maxTrainSteps) checkpoint(run, checkedDelta(run));
    if (o.validationPrompt && due(step, o.validationSteps)) validate(pipe, o, step);
  }
  return loop.stopped;
}

/** Stage 7: the delta and the run's config (as one unit), or a checkpoint when the run stopped early. */
function save(run: Run, delta: Delta, stopped: boolean, seconds: number): void {
  const { o, log, lr, resolution, state } = run;
  const { tokens, inits, fingerprint } = run.tok;
  if (!stopped) {
    saveDelta(
      o.outputDir,
      delta,
      {},
      {
        json: {
          "custom_diffusion_config.json": {
            ...o,
            log: undefined,
            learning_rate_used: lr,
            modifier_tokens: tokens,
            initializer_tokens: inits,
            resolution,
            base_fingerprint: fingerprint,
            steps: state.step,
            seconds: +seconds.toFixed(1),
            final_loss: state.losses[state.losses.length - 1],
          },
        },
      },
    );
    if (o.validationPrompt) validate(run.pipe, o, state.step);
    log(
      `saved delta to ${o.outputDir} (${delta.unet.size} tensors, ${delta.tokens.size} token${delta.tokens.size === 1 ? "" : "s"}) in ${formatDuration(seconds)}${peakMemory()}`,
    );
  } else if (o.checkpointingSteps > 0) {
    checkpoint(run, delta);
  }
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

function validate(pipe: StableDiffusionPipeline, o: typeof DEFAULTS & CustomiseOptions, step: number): void {
  const prompts = o.validationPrompt ?? [];
  if (prompts.length === 0) return;
  const { images } = pipe.generate({
    prompt: prompts,
    numInferenceSteps: o.validationInferenceSteps,
    guidanceScale: o.validationGuidanceScale,
    seed: o.seed,
  });
  const dir = path.join(o.outputDir, "validation");
  fs.mkdirSync(dir, { recursive: true });
  writePng(
    path.join(dir, `step-${String(step).padStart(5, "0")}.png`),
    makeGrid(images, { cols: Math.min(4, images.length), pad: 2 }),
  );
}
