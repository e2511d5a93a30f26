// the small world's models: a pixel-space UNet2DConditionModel, a small CLIPTextModel whose vocabulary is
// restricted to the tokens the corpus uses (plus spare initializer tokens), and a v-prediction cosine schedule
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Generator } from "../engine/index.ts";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { withInitGenerator } from "../models/nn/module.ts";
import { CLIPTextModel } from "../models/clip/modeling_clip.ts";
import { UNet2DConditionModel } from "../models/unets/unet_2d_condition.ts";
import { DDIMScheduler } from "../models/schedulers/scheduling_ddim.ts";
import { StableDiffusionPipeline } from "../models/pipelines/pipeline_stable_diffusion.ts";
import { writeJsonAtomic } from "../data/atomic.ts";
import { DEFAULT_INITIALIZERS } from "../tune/tokens.ts";

/** Where the shipped world model lives (a diffusers-layout folder). */
export const WORLD_MODEL_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "model");

/** Tokens per prompt: captions are short ("a far away photo of a <new1> horse face" is 11). */
export const WORLD_MAX_TOKENS = 16;

export const WORLD_UNET_CONFIG = {
  in_channels: 3,
  out_channels: 3,
  sample_size: 16,
  block_out_channels: [32, 64, 128],
  layers_per_block: 1,
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  cross_attention_dim: 64,
  attention_head_dim: 4,
  norm_num_groups: 16,
};

export const WORLD_SCHEDULER_CONFIG = {
  num_train_timesteps: 1000,
  beta_schedule: "squaredcos_cap_v2",
  prediction_type: "v_prediction",
  clip_sample: false,
  set_alpha_to_one: true,
  steps_offset: 0,
  timestep_spacing: "trailing",
};

/**
 * A tokenizer folder whose vocab.json keeps only `ids` (renumbered 0..n-1 in id order) with CLIP's
 * full merges: BPE is unchanged, pieces outside the kept set map to the unknown (end-of-text) token.
 */
export function writeRestrictedTokenizer(folder: string, ids: readonly number[]): CLIPTokenizer {
  const full = CLIPTokenizer.default();
  full.savePretrained(folder);
  const byId = new Map<number, string>();
  for (const [t, id] of Object.entries(full.getVocab())) byId.set(id, t);
  const keep = [...new Set([...ids, full.bosTokenId, full.eosTokenId])].sort((a, b) => a - b);
  const vocab: Record<string, number> = {};
  keep.forEach((id, i) => {
    const t = byId.get(id);
    if (t === undefined) throw new Error(`restricted tokenizer: id ${id} is not in the CLIP vocabulary`);
    vocab[t] = i;
  });
  writeJsonAtomic(path.join(folder, "vocab.json"), vocab);
  const cfgPath = path.join(folder, "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? (JSON.parse(fs.readFileSync(cfgPath, "utf8")) as Record<string, unknown>) : {};
  writeJsonAtomic(cfgPath, { ...cfg, model_max_length: WORLD_MAX_TOKENS });
  return CLIPTokenizer.fromPretrained(folder);
}

/** Corpus token ids plus the default initializer tokens (spare rows that new tokens start from). */
export function worldTokenIds(corpusIds: readonly number[]): number[] {
  const full = CLIPTokenizer.default();
  const spare = DEFAULT_INITIALIZERS.flatMap((w) => full.idsForTokenString(w)).filter((_, i, a) => a.indexOf(_) === i);
  return [...new Set([...corpusIds, ...spare])].sort((a, b) => a - b);
}

/** A freshly initialised world pipeline (no VAE: the UNet works on 16x16 RGB pixels). */
export function buildWorldPipeline(tokenizer: CLIPTokenizer, seed = 0): StableDiffusionPipeline {
  return withInitGenerator(new Generator(seed), () => {
    const unet = UNet2DConditionModel.fromConfig(WORLD_UNET_CONFIG);
    const te = CLIPTextModel.fromConfig({
      hidden_size: 64,
      intermediate_size: 256,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      vocab_size: tokenizer.vocabSize,
      max_position_embeddings: WORLD_MAX_TOKENS,
      bos_token_id: tokenizer.bosTokenId,
      eos_token_id: tokenizer.eosTokenId,
      pad_token_id: tokenizer.padTokenId,
      hidden_act: "quick_gelu",
    });
    return new StableDiffusionPipeline(unet, te, tokenizer, new DDIMScheduler(WORLD_SCHEDULER_CONFIG as never), null);
  });
}

/** Loads the shipped world model (or another world folder). */
export function loadWorld(folder: string = WORLD_MODEL_DIR): StableDiffusionPipeline {
  if (!fs.existsSync(path.join(folder, "model_index.json"))) {
    throw new Error(`world: no model at ${folder}; train one with \`npx tsx world/train.ts\``);
  }
  return StableDiffusionPipeline.fromPretrained(folder);
}
