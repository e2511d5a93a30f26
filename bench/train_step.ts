// One Custom Diffusion training step (batch 2) of the small UNet config: crossattn_kv against full,
// time per step (median) and memory held at the step's high points, measured in the same process.
// Run: node --expose-gc --import tsx bench/train_step.ts [--json]
// Own timing loop, not tinybench: memory is read inside the step (after forward, after the optimizer)
// with a forced GC before each, and the first step (allocations, JIT) is left out of the median.
import * as os from "node:os";
import { Generator, mseLoss, randn } from "../engine/index.ts";
import { withInitGenerator } from "../models/nn/module.ts";
import { TINY_UNET_CONFIG, UNet2DConditionModel } from "../models/unets/unet_2d_condition.ts";
import { CustomDiffusionAttnProcessor } from "../models/custom_diffusion.ts";
import { AdamW } from "../optim/index.ts";
import { selectParameters } from "../tune/params.ts";
import type { FreezeModel } from "../tune/params.ts";

const json = process.argv.includes("--json");
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.error("note: run with node --expose-gc for memory figures");
const mb = () => process.memoryUsage().arrayBuffers / 2 ** 20;

function run(
  mode: FreezeModel,
  size: number,
  steps = 3,
): { ms: number; peakMB: number; trained: number; stateMB: number } {
  const unet = withInitGenerator(new Generator(0), () =>
    UNet2DConditionModel.fromConfig({ ...TINY_UNET_CONFIG, sample_size: size }),
  );
  const sel = selectParameters(unet, mode);
  for (const [, a] of unet.crossAttentionLayers()) a.setProcessor(new CustomDiffusionAttnProcessor());
  const opt = new AdamW(
    sel.params.map(([, p]) => p),
    { lr: 1e-5 },
  );
  const g = new Generator(1);
  const x = randn([2, 4, size, size], { generator: g }),
    c = randn([2, 77, 32], { generator: g }),
    target = randn([2, 4, size, size], { generator: g });
  const times: number[] = [];
  let peak = 0;
  for (let s = 0; s < steps + 1; s++) {
    gc?.();
    const base = mb();
    const t0 = performance.now();
    const loss = mseLoss(unet.forward(x, [10, 500], c), target);
    const afterFwd = mb();
    opt.zeroGrad();
    loss.backward();
    opt.step();
    const afterStep = mb();
    if (s > 0) times.push(performance.now() - t0);
    // what the step holds: activations kept for backward at the end of forward; gradients and moments after
    peak = Math.max(peak, afterFwd - base + (afterStep - base));
    if (process.env.BENCH_DEBUG)
      console.error(
        mode,
        s,
        (performance.now() - t0).toFixed(0),
        "ms",
        (afterFwd - base).toFixed(1),
        (afterStep - base).toFixed(1),
      );
  }
  times.sort((a, b) => a - b);
  // what training keeps per trained parameter: its gradient and Adam's two moments (float32 each)
  const gradBytes = unet.parameters().reduce((s, p) => s + (p.grad ? p.grad.size * 4 : 0), 0);
  const st = opt.stateDict();
  const momentBytes = st.moments.flat().reduce((s, m) => s + (m.m.byteLength + m.v.byteLength), 0);
  return {
    ms: times[Math.floor(times.length / 2)],
    peakMB: peak,
    trained: sel.count,
    stateMB: (gradBytes + momentBytes) / 2 ** 20,
  };
}

const size = 32;
const modeArg = process.argv.indexOf("--child");
if (modeArg >= 0) {
  // child: one mode, report time and the process's peak resident memory
  const mode = process.argv[modeArg + 1] as FreezeModel;
  const r = run(mode, size);
  console.log(JSON.stringify({ ...r, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
} else {
  // each mode in its own process, so peak memory is that mode's alone
  const { execFileSync } = await import("node:child_process");
  const child = (mode: string) =>
    JSON.parse(
      execFileSync(
        process.execPath,
        ["--expose-gc", "--import", "tsx", new URL(import.meta.url).pathname, "--child", mode],
        { encoding: "utf8" },
      )
        .trim()
        .split("\n")
        .pop() as string,
    ) as { ms: number; peakMB: number; trained: number; maxRssMB: number; stateMB: number };
  const kv = child("crossattn_kv"),
    full = child("full");
  for (const [name, r] of [
    ["crossattn_kv", kv],
    ["full", full],
  ] as const) {
    const row = {
      name: `train step ${name}`,
      shape: `tiny UNet (32,64) B2 ${size}x${size}`,
      backend: "cpu-js",
      threads: 1,
      ms: +r.ms.toFixed(1),
      trained_params: r.trained,
      peak_rss_mb: +r.maxRssMB.toFixed(0),
      grad_and_optimizer_mb: +r.stateMB.toFixed(2),
      baseline: "full",
      baseline_ms: +full.ms.toFixed(1),
      ratio: +(full.ms / r.ms).toFixed(3),
    };
    if (json) console.log(JSON.stringify(row));
    else
      console.log(
        `${row.name.padEnd(26)} ${String(row.ms).padStart(8)} ms  peak RSS ${String(row.peak_rss_mb).padStart(5)} MB  gradients + Adam state ${row.grad_and_optimizer_mb.toFixed(2).padStart(6)} MB  trained ${r.trained.toLocaleString("en")} params  speed vs full ${row.ratio}x`,
      );
  }
  if (!json)
    console.log(
      `\nmachine: ${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, node ${process.version}; median of 3 steps after one warm-up; each mode in its own process`,
    );
}
