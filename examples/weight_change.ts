// Paper Fig. 3 on the small world: fine-tune the whole UNet on a held-out concept, then measure how much
// each parameter tensor moved, Delta_l = ||theta'_l - theta_l|| / ||theta_l||, grouped as cross-attention,
// self-attention and other. Run: npx tsx examples/weight_change.ts [--steps 250] [--concept "unicorn face"] [--out docs]
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { chwToImage, writePng } from "../data/images.ts";
import { customise } from "../tune/train.ts";
import { analyzeWeights, formatAnalysis, writeAnalysis } from "../tune/analyze.ts";
import { loadHeldoutConcepts, loadWorldDataset } from "../world/dataset.ts";
import { WORLD_MODEL_DIR, loadWorld } from "../world/model.ts";

// ---- config -------------------------------------------------------------------------------
const { values: v } = parseArgs({
  options: {
    steps: { type: "string" },
    concept: { type: "string" },
    out: { type: "string" },
    model: { type: "string" },
    lr: { type: "string" },
  },
});
const steps = Number(v.steps ?? 250);
const conceptName = v.concept ?? "unicorn face";
const out = v.out ?? "docs";
const model = v.model ?? WORLD_MODEL_DIR;
const lr = Number(v.lr ?? 2e-4);

// ---- data: the concept's images and its class's training images ------------------------------
const ds = loadWorldDataset();
const concept = loadHeldoutConcepts(ds).find((c) => c.name === conceptName);
if (!concept) throw new Error(`no held-out concept "${conceptName}"`);
const work = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? "/tmp"), "weight-change-"));
const write = (dir: string, imgs: Float32Array[]) => {
  fs.mkdirSync(dir, { recursive: true });
  imgs.forEach((im, i) => writePng(path.join(dir, `${i}.png`), chwToImage(im, 3, ds.size, ds.size)));
};
write(path.join(work, "concept"), concept.images);
write(
  path.join(work, "class"),
  ds.classes[concept.classIndex].imageIndices.map((i) => ds.images[i]),
);

// ---- full fine-tune, then compare every tensor with the base ----------------------------------
const base = loadWorld(model);
const tuned = loadWorld(model);
customise(tuned, {
  concepts: [
    {
      instance_prompt: `photo of a <new1> ${concept.class}`,
      class_prompt: concept.class,
      instance_data_dir: path.join(work, "concept"),
      class_data_dir: path.join(work, "class"),
    },
  ],
  outputDir: path.join(work, "delta"),
  freezeModel: "full",
  maxTrainSteps: steps,
  trainBatchSize: 4,
  learningRate: lr,
  hflip: true,
  seed: 0,
});
const a = analyzeWeights(base.unet, tuned.unet, { by: "layer" }); // weight and bias of a module pooled, as the paper's layers
for (const line of formatAnalysis(a)) console.log(line);
const files = writeAnalysis(a, out, {
  name: "weight_change",
  chart: "layers",
  title: `Delta_l after ${steps} full fine-tuning steps on ${concept.name}`,
});
console.log(`wrote ${Object.values(files).join(", ")}`);
