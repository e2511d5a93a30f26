// The page's module worker: runs the library (cpu backend, WebAssembly worker pool) on the world model,
// which it fetches from the server into the in-memory file system (shims/fs.ts), so the library's own
// loaders, Custom Diffusion loop (tune/train.ts customise) and delta writer run unchanged.
// Messages in: init, sample, train, loadDelta; out: ready, log, progress, samples, trained, error.
import { vfsList, vfsPut, vfsRemoveTree } from "./shims/fs.ts";
import { getDefaultBackend } from "../engine/tensor.ts";
import { getNumThreads, setNumThreads } from "../engine/backend/cpu/wasm/pool.ts";
import { sgemmKernel } from "../engine/backend/cpu/wasm/sgemm.ts";
import { WasmRuntime } from "../engine/backend/cpu/wasm/runtime.ts";
import { decodeImage, encodePng, chwToImage } from "../data/images.ts";
import { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { AdamW } from "../optim/index.ts";
import { customise } from "../tune/train.ts";
import { applyDeltaToUNet, loadDelta } from "../tune/delta.ts";
import { installTokens } from "../tune/tokens.ts";
import { loadWorldDataset, type WorldDataset } from "../world/dataset.ts";
import { WEB_TRAIN_DEFAULTS, instancePrompt, type SampleRequest, type TrainRequest } from "./protocol.ts";

const MODEL_FILES = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "text_encoder/model.safetensors",
  "tokenizer/merges.txt",
  "tokenizer/special_tokens_map.json",
  "tokenizer/tokenizer_config.json",
  "tokenizer/vocab.json",
  "unet/config.json",
  "unet/diffusion_pytorch_model.safetensors",
];
const DATA_FILES = ["train.json", "train.png"];
const MODEL = "/world/model",
  DATA = "/world/data";

const post = (m: unknown, transfer: Transferable[] = []): void =>
  (self as unknown as { postMessage(m: unknown, t: Transferable[]): void }).postMessage(m, transfer);
let pipe: StableDiffusionPipeline;
let ds: WorldDataset;

async function fetchInto(url: string, dest: string): Promise<void> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetch ${url}: ${r.status} ${r.statusText}`);
  vfsPut(dest, new Uint8Array(await r.arrayBuffer()));
}

function backendLine(): { backend: string; variant: string; threads: number; isolated: boolean } {
  return {
    backend: getDefaultBackend().name,
    variant: sgemmKernel().variant,
    threads: getNumThreads(),
    isolated: (self as unknown as { crossOriginIsolated?: boolean }).crossOriginIsolated === true,
  };
}

function sample(
  p: StableDiffusionPipeline,
  prompt: string,
  n: number,
  steps: number,
  seed: number,
): { images: Float32Array[]; msPerStep: number } {
  const t0 = performance.now();
  const { latents } = p.generate({ prompt, numImagesPerPrompt: n, numInferenceSteps: steps, guidanceScale: 1, seed });
  const ms = (performance.now() - t0) / steps;
  const d = latents.data,
    per = d.length / n;
  return {
    images: Array.from({ length: n }, (_, i) =>
      Float32Array.from(d.subarray(i * per, (i + 1) * per), (v) => Math.max(-1, Math.min(1, v))),
    ),
    msPerStep: ms,
  };
}

/** The world class whose caption is `word` (its images regularise training), or null. */
function worldClass(word: string): number[] | null {
  const c = ds.classes.find((k) => k.caption === word.trim().toLowerCase());
  return c ? c.imageIndices : null;
}

/**
 * Starts the cpu backend's worker pool and waits, yielding to the event loop, until its threads run:
 * a browser starts a worker made inside a worker only once the creating thread returns to its event
 * loop, and the pool's first job would otherwise block this thread in Atomics.wait before they can
 * (they would time out after 30 s and everything would run on one thread).
 */
async function startPool(timeoutMs = 20_000): Promise<number> {
  const k = sgemmKernel();
  if (!(k instanceof WasmRuntime)) return 0;
  const pool = k.workerPool();
  if (!pool) return 0;
  const t0 = performance.now();
  while (pool.running < pool.size && performance.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 5));
  return pool.running;
}

const handlers: Record<string, (m: Record<string, unknown>) => Promise<void> | void> = {
  async init(m) {
    const t0 = performance.now();
    if (typeof m.threads === "number" && m.threads >= 1) setNumThreads(m.threads);
    await Promise.all([
      ...MODEL_FILES.map((f) => fetchInto(`/model/${f}`, `${MODEL}/${f}`)),
      ...DATA_FILES.map((f) => fetchInto(`/data/${f}`, `${DATA}/${f}`)),
    ]);
    const running = await startPool();
    if (running === 0 && getNumThreads() > 1) post({ type: "log", line: "the worker pool did not start: one thread" });
    pipe = StableDiffusionPipeline.fromPretrained(MODEL);
    ds = loadWorldDataset(DATA);
    post({ type: "ready", ms: performance.now() - t0, ...backendLine(), classes: ds.classes.map((c) => c.caption) });
  },
  sample(m) {
    const r = m as unknown as SampleRequest;
    const out = sample(pipe, r.prompt, r.n, r.steps, r.seed);
    post({
      type: "samples",
      id: r.id,
      prompt: r.prompt,
      images: out.images,
      msPerStep: out.msPerStep,
      ...backendLine(),
    });
  },
  train(m) {
    const r = m as unknown as TrainRequest;
    const o = { ...WEB_TRAIN_DEFAULTS, ...r.options };
    // every file is decoded first, so a bad one is named before any work
    const bad: string[] = [];
    r.files.forEach((f) => {
      try {
        decodeImage(f.bytes, f.name);
      } catch (e) {
        bad.push(`${f.name}: ${(e as Error).message}`);
      }
    });
    if (bad.length)
      throw new Error(
        `${bad.length} file${bad.length > 1 ? "s" : ""} could not be read as PNG or JPEG:\n${bad.join("\n")}`,
      );
    const run = "/run";
    vfsRemoveTree(run);
    r.files.forEach((f, i) =>
      vfsPut(`${run}/data/concept/${String(i).padStart(3, "0")}${/\.jpe?g$/i.test(f.name) ? ".jpg" : ".png"}`, f.bytes),
    );
    const cls = worldClass(r.classWord);
    if (cls)
      cls.forEach((idx, i) =>
        vfsPut(
          `${run}/data/class/${String(i).padStart(3, "0")}.png`,
          encodePng(chwToImage(ds.images[idx], 3, ds.size, ds.size)),
        ),
      );
    const fresh = StableDiffusionPipeline.fromPretrained(MODEL);
    const prompts = { before: [r.classWord], after: [`<new1> ${r.classWord}`, r.classWord, ...r.prompts] };
    const n = o.samples,
      steps = o.sampleSteps;
    const before = prompts.before.map((p) => ({ prompt: p, images: sample(fresh, p, n, steps, o.seed).images }));
    post({
      type: "log",
      line: `regularisation: ${cls ? `${cls.length} world images of "${r.classWord.trim().toLowerCase()}"` : `none (no world class is called "${r.classWord}")`}`,
    });
    // progress on every optimizer step (the loop itself logs every 10 steps, with the loss)
    let done = 0;
    const t0 = performance.now();
    const stepProto = AdamW.prototype as unknown as { step: () => void };
    const origStep = stepProto.step;
    stepProto.step = function (this: unknown) {
      origStep.call(this);
      done++;
      post({ type: "progress", step: done, total: o.steps, seconds: (performance.now() - t0) / 1000 });
    };
    let result;
    try {
      result = customise(fresh, {
        concepts: [
          {
            instance_prompt: instancePrompt(r.classWord),
            class_prompt: r.classWord,
            instance_data_dir: `${run}/data/concept`,
            ...(cls ? { class_data_dir: `${run}/data/class` } : {}),
          },
        ],
        outputDir: `${run}/delta`,
        freezeModel: o.freezeModel,
        maxTrainSteps: o.steps,
        trainBatchSize: o.batch,
        learningRate: o.lr,
        seed: o.seed,
        hflip: true,
        log: (line) => post({ type: "log", line }),
      });
    } finally {
      stepProto.step = origStep;
    }
    const after = prompts.after.map((p) => ({ prompt: p, images: sample(fresh, p, n, steps, o.seed).images }));
    pipe = fresh;
    const files = [...vfsList(`${run}/delta`)]
      .filter(([k]) => !k.slice(`${run}/delta/`.length).includes("/") && !k.includes("/."))
      .map(([k, v]) => ({ name: k.slice(`${run}/delta/`.length), bytes: v }));
    post({ type: "trained", losses: result.losses, seconds: result.seconds, before, after, files, ...backendLine() });
  },
  loadDelta(m) {
    const files = m.files as { name: string; bytes: Uint8Array }[];
    vfsRemoveTree("/loaded");
    for (const f of files) vfsPut(`/loaded/${f.name}`, f.bytes);
    const fresh = StableDiffusionPipeline.fromPretrained(MODEL);
    const d = loadDelta("/loaded");
    applyDeltaToUNet(fresh.unet, d);
    installTokens(fresh.tokenizer, fresh.textEncoder, d.tokens);
    pipe = fresh;
    post({
      type: "log",
      line: `loaded a delta: ${d.unet.size} tensors, tokens ${[...d.tokens.keys()].join(", ") || "none"}; sampling now uses it`,
    });
    post({ type: "deltaLoaded", tokens: [...d.tokens.keys()] });
  },
};

let queue = Promise.resolve();
self.addEventListener("message", (e: MessageEvent) => {
  const m = e.data as Record<string, unknown> & { type: string };
  queue = queue.then(async () => {
    try {
      await handlers[m.type](m);
    } catch (err) {
      post({ type: "error", of: m.type, message: (err as Error).message });
    }
  });
});
