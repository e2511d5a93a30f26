// text-to-image sampling: CLIP text encoding, classifier-free guidance, DDIM/DDPM denoising, VAE decode
// (mirrors diffusers StableDiffusionPipeline for the SD-1.x path; a pipeline without a VAE is pixel-space)
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, ShapeError } from "../../engine/errors.ts";
import { Generator, Tensor, chunk, concat, noGrad, randn, tidy } from "../../engine/index.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import type { Image } from "../../data/images.ts";
import { chwToImage } from "../../data/images.ts";
import { CLIPTextModel } from "../clip/modeling_clip.ts";
import { AutoencoderKL } from "../autoencoders/autoencoder_kl.ts";
import { UNet2DConditionModel } from "../unets/unet_2d_condition.ts";
import { DDIMScheduler } from "../schedulers/scheduling_ddim.ts";
import { DDPMScheduler } from "../schedulers/scheduling_ddpm.ts";
import { readJsonConfig, writeJsonAtomic } from "../modeling_utils.ts";
import type { LoadOptions } from "../modeling_utils.ts";

export type Scheduler = DDIMScheduler | DDPMScheduler;

export interface GenerateOptions {
  /**
   * the prompt(s); or give `promptIds` (token ids) or `promptEmbeds` (text-encoder states) instead,
   * exactly one of the three
   */
  prompt?: string | string[];
  /** token ids per prompt (B, L), each row framed and padded as the tokenizer does; fed to the text encoder as they are */
  promptIds?: readonly (readonly number[])[];
  /** text-encoder last hidden states (B, L, D) used as the UNet's context in place of encoding a prompt (diffusers' prompt_embeds) */
  promptEmbeds?: Tensor;
  /** negative prompt(s) for classifier-free guidance (default ""); or `negativePromptIds` / `negativePromptEmbeds`, at most one of the three */
  negativePrompt?: string | string[];
  /** token ids of the negative prompts (B, L), L as the prompt's */
  negativePromptIds?: readonly (readonly number[])[];
  /** unconditional context (B, L, D), the shape of the prompt's (diffusers' negative_prompt_embeds) */
  negativePromptEmbeds?: Tensor;
  /** classifier-free guidance scale; 1 disables guidance (no unconditional pass) */
  guidanceScale?: number;
  numInferenceSteps?: number;
  /** DDIM eta (0 deterministic, 1 ancestral-like) */
  eta?: number;
  seed?: number;
  generator?: Generator;
  height?: number;
  width?: number;
  /** images per prompt (prompt ids and embeddings are repeated row by row, as diffusers does) */
  numImagesPerPrompt?: number;
  /**
   * starting latents (B * numImagesPerPrompt, C, h, w) in place of the generator's draw; scaled by
   * the scheduler's initNoiseSigma as diffusers does. Height and width follow from them.
   */
  latents?: Tensor;
  /**
   * Called after every denoising step (diffusers' callback_on_step_end): `step` counts from 1,
   * `state` holds the step's latents, guided noise prediction and predicted x0. Returning a Tensor of
   * the latents' shape replaces the latents the next step starts from; any other return value is ignored.
   * On backends that free memory early (gpujs) the tensors in `state` are freed when generate returns:
   * read what you need (`.data`) before then.
   */
  onStep?: (step: number, total: number, timestep: number, state: StepState) => unknown;
  /** return latents instead of decoded images */
  outputLatents?: boolean;
}

/** What onStep sees after a denoising step. */
export interface StepState {
  /** x_{t-1}, the scheduler step's output (B, C, h, w) */
  latents: Tensor;
  /** the model output after classifier-free guidance (B, C, h, w) */
  noisePred: Tensor;
  /** the scheduler's predicted x0 (B, C, h, w) */
  predOriginalSample: Tensor;
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

  /**
   * Loads a diffusers folder: model_index.json with unet/, text_encoder/, tokenizer/, scheduler/ and
   * optional vae/. `weightsDType` holds the Linear and Conv2d weights of all three models in half
   * precision (frozen); `keepFloat32` names UNet weights kept float32 (those a training run updates).
   */
  static fromPretrained(folder: string, opts: LoadOptions = {}): StableDiffusionPipeline {
    const index = fs.existsSync(path.join(folder, "model_index.json"))
      ? readJsonConfig(folder, "model_index.json")
      : {};
    const sub = (n: string) => path.join(folder, n);
    for (const n of ["unet", "text_encoder", "tokenizer", "scheduler"]) {
      if (!fs.existsSync(sub(n)))
        throw new ConfigError(
          `pipeline: ${folder} has no ${n}/ folder (a diffusers layout needs unet/, text_encoder/, tokenizer/, scheduler/ and vae/)`,
        );
    }
    const schedCls = Array.isArray(index.scheduler) ? String(index.scheduler[1]) : "DDIMScheduler";
    const frozen = opts.weightsDType ? { weightsDType: opts.weightsDType } : {};
    const unet = UNet2DConditionModel.fromPretrained(sub("unet"), opts).eval();
    const textEncoder = CLIPTextModel.fromPretrained(sub("text_encoder"), frozen).eval();
    const tokenizer = CLIPTokenizer.fromPretrained(sub("tokenizer"));
    const scheduler =
      schedCls === "DDPMScheduler"
        ? DDPMScheduler.fromPretrained(sub("scheduler"))
        : DDIMScheduler.fromPretrained(sub("scheduler"));
    const vae =
      fs.existsSync(sub("vae")) && index.vae !== null ? AutoencoderKL.fromPretrained(sub("vae"), frozen).eval() : null;
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

  /** Token ids of prompts, padded/truncated to the model's length (or to `maxLength`). */
  tokenize(prompts: readonly string[], maxLength?: number): number[][] {
    const max = maxLength ?? Math.min(this.tokenizer.modelMaxLength, this.textEncoder.config.max_position_embeddings);
    return prompts.map((p) => this.tokenizer.encode(p, { maxLength: max }));
  }

  /** Text-encoder last hidden states (B, L, D) of prompts. */
  encodePrompt(prompts: readonly string[]): Tensor {
    return this.encodeIds(this.tokenize(prompts));
  }

  /** Text-encoder last hidden states (B, L, D) of token ids (B, L). */
  encodeIds(ids: readonly (readonly number[])[]): Tensor {
    if (ids.length === 0 || ids.some((r) => r.length !== ids[0]!.length))
      throw new ShapeError(
        `pipeline: token ids must be a non-empty (B, L) array with rows of one length, got lengths [${ids.map((r) => r.length)}]`,
      );
    return this.textEncoder.forward(ids.map((r) => [...r])).last_hidden_state;
  }

  /**
   * Samples images for prompts (or token ids, or text embeddings), with classifier-free guidance
   * against the negative prompt (default empty).
   */
  generate(opts: GenerateOptions): GenerateResult {
    // everything the run made goes when it returns, except the result (and tensors the caller passed in)
    return tidy(() => noGrad(() => this.generateInner(opts)));
  }

  /** The conditional context (B * per, L, D) and the batch size before repetition. */
  private conditionalContext(o: GenerateOptions, per: number): { cond: Tensor; batch: number } {
    const given = [o.prompt !== undefined, o.promptIds !== undefined, o.promptEmbeds !== undefined].filter(
      Boolean,
    ).length;
    if (given !== 1)
      throw new ConfigError(`pipeline: pass exactly one of prompt, promptIds, promptEmbeds (got ${given})`);
    if (o.prompt !== undefined) {
      const prompts = typeof o.prompt === "string" ? [o.prompt] : [...o.prompt];
      return { cond: this.encodePrompt(prompts.flatMap((p) => new Array<string>(per).fill(p))), batch: prompts.length };
    }
    const raw =
      o.promptIds !== undefined
        ? this.encodeIds(o.promptIds)
        : checkEmbeds("promptEmbeds", o.promptEmbeds!, this.unet.config.cross_attention_dim);
    return { cond: repeatRows(raw, per), batch: raw.shape[0]! };
  }

  /** The unconditional context, the shape of `cond`. */
  private unconditionalContext(o: GenerateOptions, per: number, batch: number, cond: Tensor): Tensor {
    const given = [
      o.negativePrompt !== undefined,
      o.negativePromptIds !== undefined,
      o.negativePromptEmbeds !== undefined,
    ].filter(Boolean).length;
    if (given > 1)
      throw new ConfigError(
        `pipeline: pass at most one of negativePrompt, negativePromptIds, negativePromptEmbeds (got ${given})`,
      );
    let uncond: Tensor;
    if (o.negativePromptIds !== undefined) uncond = repeatRows(this.encodeIds(o.negativePromptIds), per);
    else if (o.negativePromptEmbeds !== undefined)
      uncond = repeatRows(
        checkEmbeds("negativePromptEmbeds", o.negativePromptEmbeds, this.unet.config.cross_attention_dim),
        per,
      );
    else {
      const neg = o.negativePrompt;
      const negs =
        neg === undefined
          ? new Array<string>(batch).fill("")
          : typeof neg === "string"
            ? new Array<string>(batch).fill(neg)
            : Array.from({ length: batch }, (_, i) => neg[i] ?? "");
      // padded to the prompt context's length, as diffusers' encode_prompt does
      uncond = this.encodeIds(
        this.tokenize(
          negs.flatMap((p) => new Array<string>(per).fill(p)),
          cond.shape[1],
        ),
      );
    }
    if (uncond.shape.join() !== cond.shape.join())
      throw new ShapeError(
        `pipeline: the negative context [${uncond.shape}] must have the prompt context's shape [${cond.shape}]`,
      );
    return uncond;
  }

  private generateInner(o: GenerateOptions): GenerateResult {
    const per = o.numImagesPerPrompt ?? 1;
    if (!Number.isInteger(per) || per < 1)
      throw new ConfigError(`pipeline: numImagesPerPrompt must be a positive integer, got ${per}`);
    const scale = o.guidanceScale ?? 7.5;
    const cfg = scale !== 1;
    const steps = o.numInferenceSteps ?? 50;
    const g = o.generator ?? new Generator(o.seed ?? 0);
    const f = this.vaeScaleFactor;
    const { cond, batch } = this.conditionalContext(o, per); // (B, L, D)
    const ctx = cfg ? concat([this.unconditionalContext(o, per, batch, cond), cond], 0) : cond; // (2B or B, L, D)
    const b = batch * per;
    const channels = this.unet.config.in_channels;
    let latents: Tensor;
    if (o.latents !== undefined) {
      const [lb, lc, lh, lw] = o.latents.shape;
      if (o.latents.ndim !== 4 || lb !== b || lc !== channels)
        throw new ShapeError(`pipeline: latents must be (${b}, ${channels}, h, w), got [${o.latents.shape}]`);
      if ((o.height !== undefined && o.height !== lh! * f) || (o.width !== undefined && o.width !== lw! * f)) {
        throw new ShapeError(
          `pipeline: latents [${o.latents.shape}] give ${lh! * f}x${lw! * f} images, but height x width is ${o.height ?? lh! * f}x${o.width ?? lw! * f}`,
        );
      }
      latents = o.latents.mul(this.scheduler.initNoiseSigma);
    } else {
      const sample = (this.unet.config.sample_size ?? 64) * f;
      const height = o.height ?? sample,
        width = o.width ?? sample;
      if (height % f !== 0 || width % f !== 0)
        throw new ConfigError(`pipeline: height and width must be multiples of ${f}, got ${height}x${width}`);
      latents = randn([b, channels, height / f, width / f], { generator: g }).mul(this.scheduler.initNoiseSigma);
    }
    this.scheduler.setTimesteps(steps);
    const ts = Array.from(this.scheduler.timesteps);
    ts.forEach((t, i) => {
      // each step's temporaries go at its end (gpujs textures; see engine/tidy.ts); what onStep saw
      // lives until generate returns
      let state: StepState | null = null;
      latents = tidy(
        () => {
          const inp = cfg ? concat([latents, latents], 0) : latents;
          const out = this.unet.forward(this.scheduler.scaleModelInput(inp, t), t, ctx);
          let eps = out;
          if (cfg) {
            const [u, c] = chunk(out, 2, 0);
            eps = u.add(c.sub(u).mul(scale));
          }
          const res =
            this.scheduler instanceof DDIMScheduler
              ? this.scheduler.step(eps, t, latents, { eta: o.eta ?? 0, generator: g })
              : this.scheduler.step(eps, t, latents, { generator: g });
          state = { latents: res.prevSample, noisePred: eps, predOriginalSample: res.predOriginalSample };
          const replaced = o.onStep?.(i + 1, ts.length, t, state);
          if (!(replaced instanceof Tensor)) return res.prevSample;
          if (replaced.shape.join() !== res.prevSample.shape.join())
            throw new ShapeError(
              `pipeline: onStep returned latents of shape [${replaced.shape}], expected [${res.prevSample.shape}]`,
            );
          return replaced;
        },
        () => (o.onStep ? state : null),
      );
    });
    if (o.outputLatents) return { images: [], latents };
    const pixels = this.vae ? this.vae.decode(latents.div(this.vae.config.scaling_factor)) : latents; // (B, 3, H, W) in [-1, 1]
    return { images: tensorToImages(pixels), latents };
  }
}

/** Checks given text embeddings (B, L, D) against the UNet's cross-attention width. */
function checkEmbeds(name: string, e: Tensor, dim: number): Tensor {
  if (e.ndim !== 3 || e.shape[2] !== dim)
    throw new ShapeError(`pipeline: ${name} must be (B, L, ${dim}), got [${e.shape}]`);
  return e;
}

/** Each row of (B, ...) repeated `n` times in place: rows 0, 0, 1, 1, ... (diffusers' num_images_per_prompt). */
function repeatRows(x: Tensor, n: number): Tensor {
  if (n === 1) return x;
  return x.indexSelect(
    0,
    Array.from({ length: x.shape[0]! * n }, (_, i) => Math.floor(i / n)),
  );
}

/** (B, 3, H, W) in [-1, 1] -> images. */
export function tensorToImages(x: Tensor): Image[] {
  const [b, c, h, w] = x.shape as [number, number, number, number];
  const d = x.data;
  const n = c * h * w;
  return Array.from({ length: b }, (_, i) => chwToImage(Float32Array.from(d.subarray(i * n, (i + 1) * n)), c, h, w));
}
