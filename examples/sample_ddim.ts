// The text-to-image denoising loop spelled out: what StableDiffusionPipeline.generate does, step by
// step, on the shipped world model (pixel space, no VAE): encode the prompt and the empty prompt,
// start from noise, and at each DDIM step predict with and without the text, mix them
// (classifier-free guidance), and take the DDIM step (eta = 0) written out here: the scheduler only
// supplies the timesteps and the noise schedule. Writes the samples and the trajectory as PNGs.
// Run: npx tsx examples/sample_ddim.ts [--prompt "red apple"] [--steps 25] [--guidance 4] [--n 4] [--seed 0] [--out out/sample_ddim]
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { Generator, add, concat, div, mul, noGrad, randn, sub, type Tensor } from "../engine/index.ts";
import { chwToImage, makeGrid, resize, writePng } from "../data/images.ts";
import { DDIMScheduler } from "../models/schedulers/scheduling_ddim.ts";
import { loadWorld } from "../world/model.ts";

const { values: a } = parseArgs({
  options: {
    prompt: { type: "string", default: "red apple" },
    steps: { type: "string", default: "25" },
    guidance: { type: "string", default: "4" },
    n: { type: "string", default: "4" },
    seed: { type: "string", default: "0" },
    out: { type: "string", default: "out/sample_ddim" },
  },
});
const steps = Number(a.steps),
  guidance = Number(a.guidance),
  n = Number(a.n);

// ---- the model: UNet + CLIP text encoder + tokenizer, and a DDIM scheduler with the model's config
const pipe = loadWorld();
const scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config as never);
scheduler.setTimesteps(steps); // e.g. 25 of the 1000 training steps, "trailing" spacing: 999, 959, ...
const size = pipe.unet.config.sample_size ?? 16,
  channels = pipe.unet.config.in_channels;

noGrad(() => {
  // ---- 1. text: the prompt and the empty prompt, each (n, L, D) hidden states of the text encoder
  const cond = pipe.encodePrompt(Array(n).fill(a.prompt));
  const uncond = pipe.encodePrompt(Array(n).fill(""));
  const text = concat([uncond, cond], 0); // one batch of 2n: unconditional first, as diffusers does

  // ---- 2. start from Gaussian noise, scaled by the scheduler's initial sigma (1 for DDIM)
  const g = new Generator(Number(a.seed));
  let x: Tensor = mul(randn([n, channels, size, size], { generator: g }), scheduler.initNoiseSigma);

  // ---- 3. the loop: predict, guide, step
  const T = scheduler.config.num_train_timesteps;
  const vPrediction = scheduler.config.prediction_type === "v_prediction"; // the world model's; else epsilon
  const strip: Tensor[] = [];
  for (const [i, t] of scheduler.timesteps.entries()) {
    // scheduler.scaleModelInput(x, t) would go here; for DDIM it is x itself
    const both = pipe.unet.forward(concat([x, x], 0), t, text); // (2n, C, H, W): the model's prediction
    const [u, c] = both.chunk(2, 0) as [Tensor, Tensor];
    const guided = add(u, mul(sub(c, u), guidance)); // u + w (c - u): classifier-free guidance

    // the DDIM step x_t -> x_{t-1} (what scheduler.step(guided, t, x) computes with eta = 0):
    // abar_t and abar_prev from the schedule; abar = 1 past the last step (set_alpha_to_one)
    const tPrev = t - Math.floor(T / steps);
    const abar = scheduler.alphasCumprod[t]!;
    const abarPrev = tPrev >= 0 ? scheduler.alphasCumprod[tPrev]! : scheduler.finalAlphaCumprod;
    const sa = Math.sqrt(abar),
      sb = Math.sqrt(1 - abar);
    // the model's guess of x_0 and of the noise: from v = sqrt(abar) eps - sqrt(1 - abar) x_0, or from eps
    const x0 = vPrediction ? sub(mul(x, sa), mul(guided, sb)) : div(sub(x, mul(guided, sb)), sa);
    const eps = vPrediction ? add(mul(guided, sa), mul(x, sb)) : guided;
    x = add(mul(x0, Math.sqrt(abarPrev)), mul(eps, Math.sqrt(1 - abarPrev))); // x_{t-1} = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev) eps
    if (i % Math.max(1, Math.floor(steps / 8)) === 0 || i === steps - 1) strip.push(x0.slice(0, 0, 1));
    console.log(
      `step ${String(i + 1).padStart(3)}/${steps}  t=${String(t).padStart(4)}  |x| ${Math.sqrt(x.square().mean().item()).toFixed(3)}`,
    );
  }

  // ---- 4. pixels in [-1, 1] -> PNG
  fs.mkdirSync(a.out!, { recursive: true });
  // 16x16 pictures, shown 4x larger with nearest-neighbour pixels
  const toImage = (t: Tensor) =>
    resize(chwToImage(Float32Array.from(t.data), channels, size, size), 4 * size, 4 * size, "nearest");
  const samples = x.chunk(n, 0).map(toImage);
  writePng(path.join(a.out!, "samples.png"), makeGrid(samples, { cols: n }));
  writePng(path.join(a.out!, "trajectory.png"), makeGrid(strip.map(toImage), { cols: strip.length }));
  console.log(
    `wrote ${path.join(a.out!, "samples.png")} and trajectory.png (the predicted x0 along the way, first sample)`,
  );
});
