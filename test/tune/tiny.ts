// a tiny pixel-space pipeline (random weights, real CLIP tokenizer) and synthetic concept images for tune tests
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator } from "../../engine/index.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { writePng } from "../../data/images.ts";
import type { Image } from "../../data/images.ts";
import { withInitGenerator } from "../../models/nn/module.ts";
import { CLIPTextModel } from "../../models/clip/modeling_clip.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import { DDIMScheduler } from "../../models/schedulers/scheduling_ddim.ts";
import { StableDiffusionPipeline } from "../../models/pipelines/pipeline_stable_diffusion.ts";

export const TINY_PIXEL_UNET = {
  in_channels: 3,
  out_channels: 3,
  sample_size: 8,
  block_out_channels: [16, 32],
  layers_per_block: 1,
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
  cross_attention_dim: 16,
  attention_head_dim: 2,
  norm_num_groups: 8,
};

/** Same seed, same weights. */
export function tinyPipeline(seed = 0): StableDiffusionPipeline {
  return withInitGenerator(new Generator(seed), () => {
    const unet = UNet2DConditionModel.fromConfig(TINY_PIXEL_UNET);
    const te = CLIPTextModel.fromConfig({
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      vocab_size: 49408,
      max_position_embeddings: 77,
      bos_token_id: 49406,
      eos_token_id: 49407,
      pad_token_id: 49407,
    });
    const sched = new DDIMScheduler({
      num_train_timesteps: 1000,
      beta_schedule: "squaredcos_cap_v2",
      prediction_type: "v_prediction",
      clip_sample: false,
      set_alpha_to_one: true,
      timestep_spacing: "trailing",
    });
    return new StableDiffusionPipeline(unet, te, CLIPTokenizer.default(), sched, null);
  });
}

/** A folder with `n` 8x8 PNGs of a coloured square on white. */
export function conceptFolder(color: [number, number, number], n = 2): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cd-concept-"));
  for (let k = 0; k < n; k++) {
    const img: Image = { width: 8, height: 8, channels: 3, data: new Float32Array(8 * 8 * 3).fill(1) };
    for (let y = 2 + (k % 2); y < 6 + (k % 2); y++) for (let x = 2; x < 6; x++) img.data.set(color, (y * 8 + x) * 3);
    writePng(path.join(dir, `img${k}.png`), img);
  }
  return dir;
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "cd-out-"));
}
