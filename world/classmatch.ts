// Nearest-neighbour class match: one sample per training class from its caption (fixed seeds, guidance 1,
// DDIM trailing), and the fraction whose nearest training image (pixel L2) is of the prompted class.
// Run: npx tsx world/classmatch.ts [--model world/model] [--steps 25] [--seed 0] [--grid out.png]
import { parseArgs } from "node:util";
import { chwToImage, makeGrid, writePng } from "../data/images.ts";
import type { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { loadWorldDataset } from "./dataset.ts";
import type { WorldDataset } from "./dataset.ts";
import { WORLD_MODEL_DIR, loadWorld } from "./model.ts";

export interface ClassMatch {
  accuracy: number;
  matched: number;
  classes: number;
  /** per class: the class of the nearest training image */
  nearest: number[];
  samples: Float32Array[];
}

/** Index of the nearest training image (squared L2 over CHW pixels). */
export function nearestImage(x: Float32Array, ds: WorldDataset): number {
  let best = -1,
    bestD = Infinity;
  ds.images.forEach((im, i) => {
    let d = 0;
    for (let j = 0; j < im.length; j++) {
      const e = im[j] - x[j];
      d += e * e;
    }
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  });
  return best;
}

/** Samples every class caption once (batched) and scores the nearest-neighbour class match. */
export function classMatch(
  pipe: StableDiffusionPipeline,
  ds: WorldDataset,
  opts: { steps?: number; seed?: number; batch?: number; guidance?: number; log?: (s: string) => void } = {},
): ClassMatch {
  const prompts = ds.classes.map((c) => c.caption);
  const batch = opts.batch ?? 41;
  const samples: Float32Array[] = [];
  for (let i = 0; i < prompts.length; i += batch) {
    const part = prompts.slice(i, i + batch);
    const { latents } = pipe.generate({
      prompt: part,
      numInferenceSteps: opts.steps ?? 25,
      guidanceScale: opts.guidance ?? 1,
      seed: (opts.seed ?? 0) + i,
      outputLatents: true,
    });
    const d = latents.data,
      n = d.length / part.length;
    for (let k = 0; k < part.length; k++)
      samples.push(Float32Array.from(d.subarray(k * n, (k + 1) * n), (v) => Math.max(-1, Math.min(1, v))));
    opts.log?.(`sampled ${Math.min(i + batch, prompts.length)}/${prompts.length}`);
  }
  const nearest = samples.map((s) => ds.labels[nearestImage(s, ds)]);
  const matched = nearest.filter((c, k) => c === k).length;
  return { accuracy: matched / prompts.length, matched, classes: prompts.length, nearest, samples };
}

if (process.argv[1] && /world[\\/]classmatch\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({
    options: {
      model: { type: "string" },
      steps: { type: "string" },
      seed: { type: "string" },
      grid: { type: "string" },
    },
  });
  const pipe = loadWorld(v.model ?? WORLD_MODEL_DIR);
  const ds = loadWorldDataset();
  const t0 = performance.now();
  const r = classMatch(pipe, ds, {
    steps: Number(v.steps ?? 25),
    seed: Number(v.seed ?? 0),
    log: (s) => process.stderr.write(`\r${s}`),
  });
  process.stderr.write("\n");
  const miss = r.nearest
    .map((c, k) => (c === k ? null : `${ds.classes[k].caption} -> ${ds.classes[c].caption}`))
    .filter(Boolean);
  console.log(
    `nearest-neighbour class match: ${r.matched}/${r.classes} = ${(100 * r.accuracy).toFixed(1)}% (chance ${(100 / r.classes).toFixed(1)}%), ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
  if (miss.length) console.log(`mismatches: ${miss.slice(0, 20).join("; ")}${miss.length > 20 ? "; ..." : ""}`);
  if (v.grid) {
    const imgs = r.samples.map((s) => chwToImage(s, 3, ds.size, ds.size));
    writePng(v.grid, makeGrid(imgs, { cols: 16, pad: 1 }));
    console.log(`wrote ${v.grid}`);
  }
}
