// The held-out concept benchmark of the small world (the paper's Tables 1 and 3 in miniature): per concept,
// K/V (crossattn_kv), crossattn, full (DreamBooth-like), token-only (Textual-Inversion-like), and the
// ablations without regularisation and without augmentation; then two concepts jointly and by merge.
// Run: npx tsx world/benchmark.ts [--concepts "unicorn face,tiger face"] [--variants kv,full] [--steps 250] [--out out/benchmark] [--resume]
// Grids (one PNG per concept): row 1 the concept's images, row 2 the base model on class prompts, then one row per variant.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { chwToImage, makeGrid, writePng } from "../data/images.ts";
import { writeFileAtomic } from "../data/atomic.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { customise } from "../tune/train.ts";
import type { FreezeModel } from "../tune/params.ts";
import { applyDeltaToUNet, loadDelta } from "../tune/delta.ts";
import { installTokens } from "../tune/tokens.ts";
import { mergeDeltas } from "../tune/merge.ts";
import { imageAlignment, kid, scoringPrompt, textAlignment } from "../tune/evaluate.ts";
import { loadCaptionLines, loadHeldoutConcepts, loadWorldDataset, promptsWithToken } from "./dataset.ts";
import type { HeldoutConcept, WorldDataset } from "./dataset.ts";
import { WORLD_MODEL_DIR, loadWorld } from "./model.ts";
import { loadWorldScorer } from "./scorer.ts";
import type { WorldScorer } from "./scorer.ts";
import { nearestImage } from "./classmatch.ts";
import { pairedDistance, upscale } from "./demo.ts";

interface Variant {
  name: string;
  freezeModel: FreezeModel;
  reg: boolean;
  aug: boolean;
  lr: number;
}

export const VARIANTS: Record<string, Variant> = {
  kv: { name: "Custom Diffusion (K/V)", freezeModel: "crossattn_kv", reg: true, aug: true, lr: 1e-3 },
  crossattn: { name: "cross-attention (Q/K/V/out)", freezeModel: "crossattn", reg: true, aug: true, lr: 1e-3 },
  full: { name: "full UNet (DreamBooth-like)", freezeModel: "full", reg: true, aug: true, lr: 2e-4 },
  token: { name: "token only (Textual-Inversion-like)", freezeModel: "none", reg: false, aug: true, lr: 5e-3 },
  noreg: { name: "K/V without regularisation", freezeModel: "crossattn_kv", reg: false, aug: true, lr: 1e-3 },
  noaug: { name: "K/V without augmentation", freezeModel: "crossattn_kv", reg: true, aug: false, lr: 1e-3 },
};

export interface Metrics {
  textAlignment: number;
  imageAlignment: number;
  classMatch: number;
  kid: number;
  drift: number;
  /** Share of plain "{class}" samples after customising whose nearest training image is still of the class. */
  classKept: number;
}

function samples(
  pipe: StableDiffusionPipeline,
  prompts: string[],
  n: number,
  seed: number,
): { prompt: string; x: Float32Array }[] {
  const { latents } = pipe.generate({
    prompt: prompts,
    numImagesPerPrompt: n,
    numInferenceSteps: 25,
    guidanceScale: 1,
    seed,
  });
  const d = latents.data,
    per = d.length / (prompts.length * n);
  return prompts.flatMap((p, i) =>
    Array.from({ length: n }, (_, k) => ({
      prompt: p,
      x: Float32Array.from(d.subarray((i * n + k) * per, (i * n + k + 1) * per), (v) => Math.max(-1, Math.min(1, v))),
    })),
  );
}

/** The benchmark's measurements for one customised pipeline. */
export function measure(
  pipe: StableDiffusionPipeline,
  scorer: WorldScorer,
  ds: WorldDataset,
  concept: HeldoutConcept,
  prompts: string[],
  classBefore: Float32Array[],
  n: number,
  seed: number,
): { m: Metrics; gen: Float32Array[]; classAfter: Float32Array[] } {
  const gen = samples(pipe, prompts, n, seed);
  const feats = scorer.imageFeaturesCHW(gen.map((g) => g.x));
  const text = scorer.textFeatures(gen.map((g) => scoringPrompt(g.prompt)));
  const targets = scorer.imageFeaturesCHW(concept.images);
  const real = scorer.imageFeaturesCHW(ds.classes[concept.classIndex].imageIndices.map((i) => ds.images[i]));
  const classAfter = samples(pipe, [concept.class], classBefore.length, seed + 1).map((s) => s.x);
  const matched = gen.filter((g) => ds.labels[nearestImage(g.x, ds)] === concept.classIndex).length;
  // KID as the paper's regularisation measure: plain "{class}" samples after customising against real images of the class
  const classFeats = scorer.imageFeaturesCHW(classAfter);
  const k = kid(real, classFeats, { subsets: 20, subsetSize: Math.min(real.length, classFeats.length), seed });
  return {
    m: {
      textAlignment: textAlignment(feats, text).cosine,
      imageAlignment: imageAlignment(feats, targets),
      classMatch: matched / gen.length,
      kid: k.mean * 1e3,
      drift: pairedDistance(classBefore, classAfter),
      classKept:
        classAfter.filter((x) => ds.labels[nearestImage(x, ds)] === concept.classIndex).length / classAfter.length,
    },
    gen: gen.map((g) => g.x),
    classAfter,
  };
}

function conceptDirs(out: string, ds: WorldDataset, c: HeldoutConcept, size: number): { inst: string; cls: string } {
  const inst = path.join(out, "data", c.name.replace(/\W+/g, "_"), "concept"),
    cls = path.join(out, "data", c.name.replace(/\W+/g, "_"), "class");
  for (const [dir, imgs] of [
    [inst, c.images],
    [cls, ds.classes[c.classIndex].imageIndices.map((i) => ds.images[i])],
  ] as const) {
    fs.mkdirSync(dir, { recursive: true });
    imgs.forEach((im, i) => writePng(path.join(dir, `${i}.png`), chwToImage(im, 3, size, size)));
  }
  return { inst, cls };
}

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : "-");

if (process.argv[1] && /world[\\/]benchmark\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: {
      concepts: { type: "string" },
      variants: { type: "string" },
      steps: { type: "string" },
      out: { type: "string" },
      model: { type: "string" },
      n: { type: "string" },
      seed: { type: "string" },
      "no-multi": { type: "boolean" },
      resume: { type: "boolean" },
    },
  });
  const out = v.out ?? "out/benchmark";
  const steps = Number(v.steps ?? 250),
    n = Number(v.n ?? 2),
    seed = Number(v.seed ?? 0);
  const model = v.model ?? WORLD_MODEL_DIR;
  const ds = loadWorldDataset();
  const all = loadHeldoutConcepts(ds);
  const concepts = v.concepts
    ? v.concepts.split(",").map(
        (s) =>
          all.find((c) => c.name === s.trim()) ??
          (() => {
            throw new Error(`no held-out concept "${s}"`);
          })(),
      )
    : all;
  const variants = (v.variants ?? Object.keys(VARIANTS).join(","))
    .split(",")
    .map((k) => [k, VARIANTS[k.trim()]] as const);
  for (const [k, vv] of variants)
    if (!vv) throw new Error(`unknown variant "${k}"; use ${Object.keys(VARIANTS).join(", ")}`);
  const scorer = loadWorldScorer();
  type Row = { concept: string; variant: string; m: Metrics; seconds: number; tiles?: number[][] };
  fs.mkdirSync(out, { recursive: true });
  // every finished run is recorded at once (atomically), so an interrupted benchmark resumes where it stopped
  const partialPath = path.join(out, "rows.partial.json");
  const done: Row[] =
    v.resume && fs.existsSync(partialPath)
      ? (JSON.parse(fs.readFileSync(partialPath, "utf8")) as { steps: number; n: number; seed: number; rows: Row[] })
          .rows
      : [];
  if (v.resume && done.length) {
    const prev = JSON.parse(fs.readFileSync(partialPath, "utf8")) as {
      steps: number;
      n: number;
      seed: number;
      model?: string;
    };
    if (prev.steps !== steps || prev.n !== n || prev.seed !== seed)
      throw new Error(
        `${partialPath} was written with --steps ${prev.steps} --n ${prev.n} --seed ${prev.seed}; resume with the same settings or remove it`,
      );
    console.log(`resuming: ${done.length} runs already in ${partialPath}`);
  }
  const rows: Row[] = [];
  const record = (r: Row) => {
    rows.push(r);
    if (!done.includes(r)) done.push(r);
    writeFileAtomic(partialPath, JSON.stringify({ steps, n, seed, rows: done }));
  };
  const find = (concept: string, variant: string) => done.find((r) => r.concept === concept && r.variant === variant);
  const round = (x: Float32Array[]) => x.map((t) => Array.from(t, (q) => Math.round(q * 1000) / 1000));
  const blank = () => new Float32Array(3 * ds.size * ds.size).fill(1);
  const row6 = (t: Float32Array[]) => [...t.slice(0, 6), ...Array.from({ length: Math.max(0, 6 - t.length) }, blank)];
  for (const c of concepts) {
    const dirs = conceptDirs(out, ds, c, ds.size);
    let classBefore: Float32Array[] | undefined;
    const before = () => (classBefore ??= samples(loadWorld(model), [c.class], 8, seed + 1).map((s) => s.x));
    const baseName = "base model (class prompts)";
    let baseRow = find(c.name, baseName);
    if (baseRow) rows.push(baseRow);
    else {
      const baseM = measure(
        loadWorld(model),
        scorer,
        ds,
        c,
        c.prompts.map((p) => p.replace(c.token, "").replace(/\s+/g, " ").trim()),
        before(),
        n,
        seed,
      );
      record(
        (baseRow = { concept: c.name, variant: baseName, m: baseM.m, seconds: 0, tiles: round(baseM.gen.slice(0, 6)) }),
      );
    }
    // grid: the concept's images, the base model's class samples, then one row per variant
    const grid: Float32Array[] = [...row6(c.images), ...row6((baseRow.tiles ?? []).map((t) => Float32Array.from(t)))];
    for (const [key, vr] of variants) {
      let row = find(c.name, vr!.name);
      if (row) rows.push(row);
      else {
        const ts = performance.now();
        const pipe = loadWorld(model);
        customise(pipe, {
          concepts: [
            {
              instance_prompt: `photo of a ${c.token} ${c.class}`,
              class_prompt: c.class,
              instance_data_dir: dirs.inst,
              ...(vr!.reg ? { class_data_dir: dirs.cls } : {}),
            },
          ],
          outputDir: path.join(out, "deltas", c.name.replace(/\W+/g, "_"), key),
          freezeModel: vr!.freezeModel,
          maxTrainSteps: steps,
          trainBatchSize: 4,
          learningRate: vr!.lr,
          noaug: !vr!.aug,
          hflip: true,
          seed,
          log: () => {},
        });
        const r = measure(pipe, scorer, ds, c, c.prompts, before(), n, seed);
        record(
          (row = {
            concept: c.name,
            variant: vr!.name,
            m: r.m,
            seconds: (performance.now() - ts) / 1000,
            tiles: round(r.gen.slice(0, 6)),
          }),
        );
      }
      grid.push(...row6((row.tiles ?? []).map((t) => Float32Array.from(t))));
      console.log(
        `${c.name} / ${vr!.name}: text ${fmt(row.m.textAlignment)} image ${fmt(row.m.imageAlignment)} class-match ${fmt(row.m.classMatch)} KID ${fmt(row.m.kid)} drift ${fmt(row.m.drift)} (${row.seconds.toFixed(0)} s)`,
      );
    }
    writePng(
      path.join(out, `${c.name.replace(/\W+/g, "_")}.png`),
      upscale(
        makeGrid(
          grid.map((g) => chwToImage(g, 3, ds.size, ds.size)),
          { cols: 6, pad: 1 },
        ),
        4,
      ),
    );
  }
  // two concepts: jointly (two tokens) and by the closed-form merge of the single K/V deltas
  if (!v["no-multi"] && concepts.length >= 2 && variants.some(([k]) => k === "kv")) {
    const [a, b] = concepts;
    const dirsA = conceptDirs(out, ds, a, ds.size),
      dirsB = conceptDirs(out, ds, b, ds.size);
    const labels = ["joint training", "closed-form merge"] as const;
    const names = (c: HeldoutConcept) => `${c.name} (with ${c === a ? b.name : a.name})`;
    const have = labels.every((l) => [a, b].every((c) => find(names(c), l)));
    if (have) for (const l of labels) for (const c of [a, b]) rows.push(find(names(c), l)!);
    else {
      const joint = loadWorld(model);
      const ts = performance.now();
      customise(joint, {
        concepts: [
          {
            instance_prompt: `photo of a <new1> ${a.class}`,
            class_prompt: a.class,
            instance_data_dir: dirsA.inst,
            class_data_dir: dirsA.cls,
          },
          {
            instance_prompt: `photo of a <new2> ${b.class}`,
            class_prompt: b.class,
            instance_data_dir: dirsB.inst,
            class_data_dir: dirsB.cls,
          },
        ],
        outputDir: path.join(out, "deltas", "joint"),
        maxTrainSteps: 2 * steps,
        trainBatchSize: 4,
        learningRate: 1e-3,
        hflip: true,
        seed,
        log: () => {},
      });
      const jointSeconds = (performance.now() - ts) / 1000;
      const merged = loadWorld(model);
      const tm = performance.now();
      const da = loadDelta(path.join(out, "deltas", a.name.replace(/\W+/g, "_"), "kv")),
        db = loadDelta(path.join(out, "deltas", b.name.replace(/\W+/g, "_"), "kv"));
      const mr = mergeDeltas(merged, [da, db], {
        regCaptions: loadCaptionLines().slice(0, 200),
        classWords: [a.class, b.class],
      });
      applyDeltaToUNet(merged.unet, mr.delta);
      installTokens(merged.tokenizer, merged.textEncoder, mr.delta.tokens);
      const mergeSeconds = (performance.now() - tm) / 1000;
      for (const [label, pipe, secs] of [
        [labels[0], joint, jointSeconds],
        [labels[1], merged, mergeSeconds],
      ] as const) {
        for (const [c, tok] of [
          [a, "<new1>"],
          [b, "<new2>"],
        ] as const) {
          const classBefore = samples(loadWorld(model), [c.class], 8, seed + 1).map((s) => s.x);
          const prompts = promptsWithToken(c, tok); // the merge renumbers tokens <new1>, <new2> in input order too
          const r = measure(pipe, scorer, ds, c, prompts, classBefore, n, seed);
          record({ concept: names(c), variant: label, m: r.m, seconds: secs, tiles: round(r.gen.slice(0, 6)) });
        }
      }
    }
    for (const l of labels)
      for (const c of [a, b]) {
        const r = find(names(c), l)!;
        console.log(
          `${c.name} / ${l}: text ${fmt(r.m.textAlignment)} image ${fmt(r.m.imageAlignment)} class-match ${fmt(r.m.classMatch)}`,
        );
      }
  }
  // the mean over concepts of each method (the paper's Table 1 in miniature)
  const methods = [...new Set(rows.filter((r) => !r.concept.includes("(with ")).map((r) => r.variant))];
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const summary = methods.map((variant) => {
    const rs = rows.filter((r) => r.variant === variant && !r.concept.includes("(with "));
    const m = {} as Metrics;
    for (const k of ["textAlignment", "imageAlignment", "classMatch", "kid", "drift", "classKept"] as const)
      m[k] = mean(rs.map((r) => r.m[k]));
    return { variant, concepts: rs.length, m };
  });
  const smd = [
    `| method (mean over concepts) | concepts | text-alignment | image-alignment | class-match | class kept | drift |`,
    `|---|---|---|---|---|---|---|`,
    ...summary.map(
      (r) =>
        `| ${r.variant} | ${r.concepts} | ${fmt(r.m.textAlignment)} | ${fmt(r.m.imageAlignment)} | ${fmt(r.m.classMatch)} | ${fmt(r.m.classKept)} | ${fmt(r.m.drift)} |`,
    ),
  ].join("\n");
  const md = [
    `| concept | method | text-alignment | image-alignment | class-match | class kept | drift | KID x10^3 |`,
    `|---|---|---|---|---|---|---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.concept} | ${r.variant} | ${fmt(r.m.textAlignment)} | ${fmt(r.m.imageAlignment)} | ${fmt(r.m.classMatch)} | ${fmt(r.m.classKept)} | ${fmt(r.m.drift)} | ${fmt(r.m.kid)} |`,
    ),
  ].join("\n");
  const notes = `${steps} steps per run, ${n} samples per prompt; text- and image-alignment are cosines of the world scorer's features (the modifier token is dropped from the prompt for text-alignment); class-match is the share of samples whose nearest training image is of the concept's class; class kept is the same share for 8 plain "{class}" samples after customising (the regularisation measure of this world); drift is the pixel RMS change of those samples with the same seeds; KID (x10^3) compares them with the class's real images, of which this world has only 2, so it is noise and kept for completeness. ${(rows.reduce((s, r) => s + r.seconds, 0) / 60).toFixed(1)} min of customising and measuring in all (2-core machine).`;
  writeFileAtomic(path.join(out, "results.md"), `${smd}\n\n${md}\n\n${notes}\n`);
  writeFileAtomic(
    path.join(out, "results.json"),
    JSON.stringify({ steps, n, seed, summary, rows: rows.map(({ tiles: _t, ...r }) => r) }, null, 2) + "\n",
  );
  console.log(`${smd}\n\n${md}`);
}
