// Writes a Stable-Diffusion-1.5-shaped pipeline folder with random weights (UNet 860M, CLIP ViT-L/14
// text encoder 123M, VAE 84M parameters, the real CLIP tokenizer, SD's scheduler): what a full-size
// run needs, made here with no download. Weights are made tensor by tensor in their final dtype, so
// writing never holds a float32 copy of a whole model.
//
// Run: npx tsx bench/sd15_folder.ts --out DIR [--weights-dtype bf16|f16|f32] [--seed N]
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Generator, noGrad, randn } from "../engine/index.ts";
import type { Module, WeightsDType } from "../models/nn/index.ts";
import { parseWeightsDType, setWeightsDType, withShapeOnly } from "../models/nn/index.ts";
import { SD15_UNET_CONFIG, UNet2DConditionModel } from "../models/unets/unet_2d_condition.ts";
import { CLIPTextModel, SD15_TEXT_CONFIG } from "../models/clip/index.ts";
import { AutoencoderKL, SD15_VAE_CONFIG } from "../models/autoencoders/autoencoder_kl.ts";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { DDPMScheduler, SD1_SCHEDULER_CONFIG } from "../models/schedulers/index.ts";
import { writeJsonAtomic } from "../models/modeling_utils.ts";

/**
 * Gives every parameter of a shape-only `model` random values in its dtype, one tensor at a time:
 * matrices and kernels ~ N(0, 1/fan_in), norm scales 1 + N(0, 0.02), everything else N(0, 0.02).
 * Values are tiled from one block of 2^20 normals at random offsets (drawing a billion normals would
 * take minutes; the values only have to be plausible).
 */
export function fillRandom(model: Module, seed = 0): void {
  const pool = randn([1 << 20], { generator: new Generator(seed) }).data;
  const offsets = new Generator(seed + 1);
  noGrad(() => {
    for (const [k, p] of model.namedParameters()) {
      const fan = p.shape.slice(1).reduce((a, b) => a * b, 1);
      const norm = p.ndim === 1 && /norm/.test(k) && k.endsWith(".weight");
      const [scale, shift] = p.ndim > 1 ? [1 / Math.sqrt(fan), 0] : norm ? [0.02, 1] : [0.02, 0];
      const v = new Float32Array(p.size);
      let at = Math.floor(offsets.uniform() * pool.length);
      for (let i = 0; i < v.length; i++, at = at + 1 === pool.length ? 0 : at + 1) v[i] = shift + pool[at]! * scale;
      p.copy_(v);
    }
  });
}

/** Writes the folder; returns the parameter counts. */
export function writeSd15Folder(
  out: string,
  weightsDType: WeightsDType = "bfloat16",
  seed = 0,
): Record<string, number> {
  fs.mkdirSync(out, { recursive: true });
  const counts: Record<string, number> = {};
  const parts: [string, () => Module & { save(dir: string): void }][] = [
    ["unet", () => withShapeOnly(() => UNet2DConditionModel.fromConfig(SD15_UNET_CONFIG))],
    ["text_encoder", () => withShapeOnly(() => CLIPTextModel.fromConfig(SD15_TEXT_CONFIG))],
    ["vae", () => withShapeOnly(() => AutoencoderKL.fromConfig(SD15_VAE_CONFIG))],
  ];
  parts.forEach(([name, make], i) => {
    const m = make();
    setWeightsDType(m, weightsDType);
    fillRandom(m, seed + 10 * i);
    m.save(path.join(out, name));
    counts[name] = m.numParameters();
  });
  CLIPTokenizer.default().savePretrained(path.join(out, "tokenizer"));
  new DDPMScheduler(SD1_SCHEDULER_CONFIG).save(path.join(out, "scheduler"));
  writeJsonAtomic(path.join(out, "model_index.json"), {
    _class_name: "StableDiffusionPipeline",
    _diffusers_version: "0.21.0",
    unet: ["diffusers", "UNet2DConditionModel"],
    text_encoder: ["transformers", "CLIPTextModel"],
    tokenizer: ["transformers", "CLIPTokenizer"],
    scheduler: ["diffusers", "DDPMScheduler"],
    vae: ["diffusers", "AutoencoderKL"],
  });
  return counts;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const argv = process.argv.slice(2);
  const opt = (n: string) => (argv.indexOf(`--${n}`) >= 0 ? argv[argv.indexOf(`--${n}`) + 1] : undefined);
  const out = opt("out");
  if (!out) {
    console.error("usage: npx tsx bench/sd15_folder.ts --out DIR [--weights-dtype bf16|f16|f32] [--seed N]");
    process.exit(2);
  }
  const t0 = performance.now();
  const counts = writeSd15Folder(
    out,
    parseWeightsDType(opt("weights-dtype") ?? "bf16", "--weights-dtype"),
    Number(opt("seed") ?? 0),
  );
  console.log(
    `wrote ${out}: ${Object.entries(counts)
      .map(([k, n]) => `${k} ${(n / 1e6).toFixed(1)}M`)
      .join(
        ", ",
      )} parameters in ${((performance.now() - t0) / 1000).toFixed(0)} s, peak memory ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GB`,
  );
}
