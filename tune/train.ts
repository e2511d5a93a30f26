// The Custom Diffusion training loop: K/V (or wider) fine-tuning of cross-attention plus modifier-token
// rows, masked loss with prior preservation, AdamW, checkpoints that resume exactly, progress and ETA
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, StateDictError } from "../engine/errors.ts";
import { Generator, Tensor, tidy } from "../engine/index.ts";
import { makeGrid, writePng } from "../data/images.ts";
import { AdamW } from "../optim/index.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { DDPMScheduler } from "../models/schedulers/scheduling_ddpm.ts";
import { CustomDiffusionAttnProcessor } from "../models/custom_diffusion.ts";
import { AttnProcessor } from "../models/attention_processor.ts";
import { prepareOutputDir } from "../data/atomic.ts";
import type { ConceptSpec } from "./dataset.ts";
import { listImages, loadImages } from "./dataset.ts";
import { selectParameters } from "./params.ts";
import type { Delta } from "./delta.ts";
import { baseFingerprint, extractDelta, firstNonFinite, loadDelta, saveDelta } from "./delta.ts";
import { latestCheckpointIn, readOptimizerState, verifyCheckpoint } from "./checkpoint.ts";
import { TrainingLoop, due, formatDuration, resumeFrom } from "./loop.ts";
import { readTrainState, saveCheckpoint } from "./train_state.ts";
import { addModifierTokens, defaultModifierTokens, resolveInitializers, tokenRows } from "./tokens.ts";
import { DEFAULTS } from "./train_options.ts";
import { diverged, trainStep } from "./train_step.ts";
import type { CustomiseOptions, CustomiseResult, Data, Log, Options, Run, Sample, Tokens } from "./train_options.ts";

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
  const { pipe, o, log, resolution, maskSize, opt, state } = run;
  const aug = { resolution, maskSize, aug: !o.noaug, hflip: o.hflip };
  const loop = new TrainingLoop({ start: state.step, steps: o.maxTrainSteps, stopAfter: o.stopAfter });
  while (loop.next(state.step)) {
    // one step; its temporaries go at its end (gpujs textures, see engine/tidy.ts), the optimizer's
    // parameters, gradients and moments stay
    const l = tidy(
      () => trainStep(run, aug),
      () => opt.tensors(),
    );
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
