// text-to-image sampling: CLIP text encoding, classifier-free guidance, DDIM/DDPM denoising, VAE decode
// (mirrors diffusers StableDiffusionPipeline for the SD-1.x path; a pipeline without a VAE is pixel-space)
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../../engine/errors.ts";
import { Generator, Tensor, chunk, concat, noGrad, randn } from "../../engine/index.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import type { Image } from "../../data/images.ts";
import { chwToImage } from "../../data/images.ts";
import { CLIPTextModel } from "../clip/modeling_clip.ts";
import { AutoencoderKL } from "../autoencoders/autoencoder_kl.ts";
import { UNet2DConditionModel } from "../unets/unet_2d_condition.ts";
import { DDIMScheduler } from "../schedulers/scheduling_ddim.ts";
import { DDPMScheduler } from "../schedulers/scheduling_ddpm.ts";
import { readJsonConfig, writeJsonAtomic } from "../modeling_utils.ts";

export type Scheduler = DDIMScheduler | DDPMScheduler;

export interface GenerateOptions {
  prompt: string | string[];
  negativePrompt?: string | string[];
  /** classifier-free guidance scale; 1 disables guidance (no unconditional pass) */
  guidanceScale?: number;
  numInferenceSteps?: number;
  /** DDIM eta (0 deterministic, 1 ancestral-like) */
  eta?: number;
  seed?: number;
  generator?: Generator;
  height?: number;
  width?: number;
  /** images per prompt */
  numImagesPerPrompt?: number;
  /** called after every denoising step */
  onStep?: (step: number, total: number, timestep: number) => void;
  /** return latents instead of decoded images */
  outputLatents?: boolean;
}

export interface GenerateResult {
  images: Image[];
  /** final latents (B, C, h, w) (the image itself in pixel space) */
  latents: Tensor;
}

/** A Stable-Diffusion-style pipeline over this project's models. */
export class StableDiffusionPipeline {
  constructor(
    public unet: UNet2DConditionModel,
    public textEncoder: CLIPTextModel,
    public tokenizer: CLIPTokenizer,
    public scheduler: Scheduler,
    public vae: AutoencoderKL | null = null,
  ) {}

  /** Loads a diffusers folder: model_index.json with unet/, text_encoder/, tokenizer/, scheduler/ and optional vae/. */
  static fromPretrained(folder: string): StableDiffusionPipeline {
    const index = fs.existsSync(path.join(folder, "model_index.json")) ? readJsonConfig(folder, "model_index.json") : {};
    const sub = (n: string) => path.join(folder, n);
    for (const n of ["unet", "text_encoder", "tokenizer", "scheduler"]) {
      if (!fs.existsSync(sub(n))) throw new ConfigError(`pipeline: ${folder} has no ${n}/ folder (a diffusers layout needs unet/, text_encoder/, tokenizer/, scheduler/ and vae/)`);
    }
    const schedCls = Array.isArray(index.scheduler) ? String(index.scheduler[1]) : "DDIMScheduler";
    const unet = UNet2DConditionModel.fromPretrained(sub("unet")).eval();
    const textEncoder = CLIPTextModel.fromPretrained(sub("text_encoder")).eval();
    const tokenizer = CLIPTokenizer.fromPretrained(sub("tokenizer"));
    const scheduler = schedCls === "DDPMScheduler" ? DDPMScheduler.fromPretrained(sub("scheduler")) : DDIMScheduler.fromPretrained(sub("scheduler"));
    const vae = fs.existsSync(sub("vae")) && index.vae !== null ? AutoencoderKL.fromPretrained(sub("vae")).eval() : null;
    return new StableDiffusionPipeline(unet, textEncoder, tokenizer, scheduler, vae);
  }

  /** Writes the pipeline in the diffusers layout. */
  save(folder: string): void {
    fs.mkdirSync(folder, { recursive: true });
    this.unet.save(path.join(folder, "unet"));
    this.textEncoder.save(path.join(folder, "text_encoder"));
    this.tokenizer.savePretrained(path.join(folder, "tokenizer"));
    this.scheduler.save(path.join(folder, "scheduler"));
    if (this.vae) this.vae.save(path.join(folder, "vae"));
    writeJsonAtomic(path.join(folder, "model_index.json"), {
      _class_name: "StableDiffusionPipeline",
      unet: ["diffusers", "UNet2DConditionModel"],
      text_encoder: ["transformers", "CLIPTextModel"],
      tokenizer: ["transformers", "CLIPTokenizer"],
      scheduler: ["diffusers", this.scheduler instanceof DDPMScheduler ? "DDPMScheduler" : "DDIMScheduler"],
      vae: this.vae ? ["diffusers", "AutoencoderKL"] : null,
    });
  }

  /** Spatial downscale from pixels to latents (1 without a VAE). */
  get vaeScaleFactor(): number {
    return this.vae ? 2 ** (this.vae.config.block_out_channels.length - 1) : 1;
  }

  /** Token ids of prompts, padded/truncated to the model's length. */
  tokenize(prompts: readonly string[]): number[][] {
    const max = Math.min(this.tokenizer.modelMaxLength, this.textEncoder.config.max_position_embeddings);
    return prompts.map((p) => this.tokenizer.encode(p, { maxLength: max }));
  }

  /** Text-encoder last hidden states (B, L, D) of prompts. */
  encodePrompt(prompts: readonly string[]): Tensor {
    return this.textEncoder.forward(this.tokenize(prompts)).last_hidden_state;
  }

  /** Samples images for prompts, with classifier-free guidance against the negative (default empty) prompt. */
  generate(opts: GenerateOptions): GenerateResult {
    return noGrad(() => this.generateInner(opts));
  }

  private generateInner(o: GenerateOptions): GenerateResult {
    const prompts = typeof o.prompt === "string" ? [o.prompt] : [...o.prompt];
    const per = o.numImagesPerPrompt ?? 1;
    const all = prompts.flatMap((p) => new Array<string>(per).fill(p));
    const negs = o.negativePrompt === undefined ? all.map(() => "") : typeof o.negativePrompt === "string" ? all.map(() => o.negativePrompt as string) : prompts.flatMap((_, i) => new Array<string>(per).fill((o.negativePrompt as string[])[i] ?? ""));
    const scale = o.guidanceScale ?? 7.5;
    const cfg = scale !== 1;
    const steps = o.numInferenceSteps ?? 50;
    const g = o.generator ?? new Generator(o.seed ?? 0);
    const f = this.vaeScaleFactor;
    const sample = (this.unet.config.sample_size ?? 64) * f;
    const height = o.height ?? sample, width = o.width ?? sample;
    if (height % f !== 0 || width % f !== 0) throw new ConfigError(`pipeline: height and width must be multiples of ${f}, got ${height}x${width}`);
    const cond = this.encodePrompt(all); // (B, L, D)
    const ctx = cfg ? concat([this.encodePrompt(negs), cond], 0) : cond; // (2B or B, L, D)
    const b = all.length;
    let latents = randn([b, this.unet.config.in_channels, height / f, width / f], { generator: g }).mul(this.scheduler.initNoiseSigma);
    this.scheduler.setTimesteps(steps);
    const ts = Array.from(this.scheduler.timesteps);
    ts.forEach((t, i) => {
      const inp = cfg ? concat([latents, latents], 0) : latents;
      const out = this.unet.forward(this.scheduler.scaleModelInput(inp, t), t, ctx);
      let eps = out;
      if (cfg) {
        const [u, c] = chunk(out, 2, 0);
        eps = u.add(c.sub(u).mul(scale));
      }
      const res = this.scheduler instanceof DDIMScheduler
        ? this.scheduler.step(eps, t, latents, { eta: o.eta ?? 0, generator: g })
        : this.scheduler.step(eps, t, latents, { generator: g });
      latents = res.prevSample;
      o.onStep?.(i + 1, ts.length, t);
    });
    if (o.outputLatents) return { images: [], latents };
    const pixels = this.vae ? this.vae.decode(latents.div(this.vae.config.scaling_factor)) : latents; // (B, 3, H, W) in [-1, 1]
    return { images: tensorToImages(pixels), latents };
  }
}

/** (B, 3, H, W) in [-1, 1] -> images. */
export function tensorToImages(x: Tensor): Image[] {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const d = x.data;
  const n = c * h * w;
  return Array.from({ length: b }, (_, i) => chwToImage(Float32Array.from(d.subarray(i * n, (i + 1) * n)), c, h, w));
}
