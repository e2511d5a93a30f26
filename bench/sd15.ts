// Stable Diffusion 1.5 at full size (860M-parameter UNet, random weights, batch 1): UNet forward and one
// Custom Diffusion K/V training step (CustomDiffusionAttnProcessor, AdamW on the attn2 to_k/to_v
// weights) at 256 and 512 px, with the memory options: weights in bfloat16 and gradient checkpointing.
// Every case runs in its own process (so its peak RSS is its own); diffusers' UNet in PyTorch runs
// the same cases when python3 can import torch and diffusers (skipped with a message otherwise).
// Each case times its own steps (one warm-up, then the median of the rest): a step lasts seconds to
// a minute, so tinybench's many-iteration sampling would multiply the run for nothing.
//
// Run: npx tsx bench/sd15.ts [--sizes 256,512] [--cases fwd,step,step-bf16,step-ckpt,step-bf16-ckpt]
//                            [--steps 2] [--threads N] [--json]
import { execFileSync, spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const json = argv.includes("--json");

export const CASES = ["fwd", "step", "step-bf16", "step-ckpt", "step-bf16-ckpt", "fwd-bf16"] as const;
type Case = (typeof CASES)[number];
interface Result {
  case: Case;
  size: number;
  engine: string;
  ms: number;
  peakRssMB: number;
  steps: number;
  loss?: number;
  threads?: number;
  device?: string;
}

async function child(c: Case, size: number, steps: number): Promise<Result> {
  const { Generator, getNumThreads, mseLoss, noGrad, randn } = await import("../engine/index.ts");
  const { SD15_UNET_CONFIG, UNet2DConditionModel } = await import("../models/unets/unet_2d_condition.ts");
  const { withShapeOnly, setWeightsDType } = await import("../models/nn/index.ts");
  const { CustomDiffusionAttnProcessor } = await import("../models/custom_diffusion.ts");
  const { isTrained, selectParameters } = await import("../tune/params.ts");
  const { AdamW } = await import("../optim/index.ts");
  const { fillRandom } = await import("./sd15_folder.ts");
  const { defaultArena } = await import("../engine/backend/cpu/wasm/sgemm.ts");
  const bf16 = c.includes("bf16"),
    ckpt = c.includes("ckpt"),
    train = c.startsWith("step");
  // random weights tensor by tensor, each converted to its dtype at once: no float32 copy of the
  // whole model is ever held (as when loading a checkpoint)
  const unet = withShapeOnly(() => UNet2DConditionModel.fromConfig(SD15_UNET_CONFIG));
  if (bf16) setWeightsDType(unet, "bfloat16", (k) => isTrained(k, "crossattn_kv"));
  // random values tensor by tensor in each parameter's dtype (as the SD-1.5 folder writer makes them)
  fillRandom(unet, 0);
  const g = new Generator(2);
  const debug = process.env.BENCH_DEBUG
    ? (what: string) => {
        const m = process.memoryUsage();
        const gc = (globalThis as { gc?: () => void }).gc;
        if (gc && process.env.BENCH_DEBUG === "gc") {
          const m0 = process.memoryUsage().arrayBuffers;
          gc();
          console.error(
            `  (gc: arrays ${(m0 / 2 ** 30).toFixed(2)} -> ${(process.memoryUsage().arrayBuffers / 2 ** 30).toFixed(2)} GB)`,
          );
        }
        const arena = defaultArena().stats();
        console.error(
          `${what}: arena ${(arena.reserved / 2 ** 30).toFixed(2)} GB (of ${(arena.capacity / 2 ** 30).toFixed(2)}), rss ${(m.rss / 2 ** 30).toFixed(2)} GB, arrays ${(m.arrayBuffers / 2 ** 30).toFixed(2)} GB, peak ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GB`,
        );
      }
    : () => {};
  debug("weights made");
  unet.eval();
  if (ckpt) unet.enableGradientCheckpointing();
  const lat = size / 8;
  const x = randn([1, 4, lat, lat], { generator: g }),
    ctx = randn([1, 77, 768], { generator: g }),
    target = randn([1, 4, lat, lat], { generator: g });
  const times: number[] = [];
  let loss = NaN;
  if (train) {
    const sel = selectParameters(unet, "crossattn_kv");
    for (const [, a] of unet.crossAttentionLayers()) a.setProcessor(new CustomDiffusionAttnProcessor());
    const opt = new AdamW(
      sel.params.map(([, p]) => p),
      { lr: 1e-5 },
    );
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const l = mseLoss(unet.forward(x, [500], ctx), target);
      debug("forward");
      opt.zeroGrad();
      l.backward();
      debug("backward");
      opt.step();
      loss = l.item();
      times.push(performance.now() - t0);
    }
  } else {
    unet.requiresGrad_(false);
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      const y = noGrad(() => unet.forward(x, [500], ctx));
      loss = y.data[0]!;
      times.push(performance.now() - t0);
    }
  }
  const timed = times.length > 1 ? times.slice(1).sort((a, b) => a - b) : times;
  return {
    case: c,
    size,
    engine: "ours",
    ms: timed[Math.floor(timed.length / 2)]!,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    steps,
    loss,
    threads: getNumThreads(),
  };
}

const isChild = argv.indexOf("--child");
if (isChild >= 0) {
  const r = await child(argv[isChild + 1] as Case, Number(argv[isChild + 2]), Number(opt("steps", "2")));
  console.log(JSON.stringify(r));
  process.exit(0);
}

const sizes = opt("sizes", "256,512").split(",").map(Number);
const cases = opt("cases", "fwd,step,step-bf16,step-ckpt,step-bf16-ckpt").split(",") as Case[];
for (const c of cases)
  if (!CASES.includes(c)) throw new Error(`--cases: unknown case "${c}" (known: ${CASES.join(", ")})`);
const steps = opt("steps", "2");
const env = { ...process.env, ...(argv.includes("--threads") ? { CDIFF_THREADS: opt("threads", "2") } : {}) };
// the first interpreter that imports both (CDIFF_PYTHON, python3, Debian's /usr/bin/python3)
const python = [process.env.CDIFF_PYTHON, "python3", "/usr/bin/python3"].find(
  (py) => py && spawnSync(py, ["-c", "import torch, diffusers"], { encoding: "utf8" }).status === 0,
);
const torchOk = python !== undefined;
if (!torchOk && !json)
  console.log(
    "PyTorch side skipped: no python3 here imports torch and diffusers (set CDIFF_PYTHON to one that does)\n",
  );

const rows: Result[] = [];
for (const size of sizes) {
  for (const c of cases) {
    const out = execFileSync(
      process.execPath,
      ["--import", "tsx", fileURLToPath(import.meta.url), "--child", c, String(size), "--steps", steps],
      { encoding: "utf8", env, maxBuffer: 1 << 24 },
    );
    const r = JSON.parse(out.trim().split("\n").pop()!) as Result;
    rows.push(r);
    if (json) console.log(JSON.stringify(r));
    else
      console.log(
        `${`${c} ${size}px`.padEnd(22)} ours    ${(r.ms / 1000).toFixed(1).padStart(6)} s  peak RSS ${(r.peakRssMB / 1024).toFixed(2)} GB`,
      );
    if (torchOk && (c === "fwd" || c === "step" || c === "step-ckpt")) {
      const py = spawnSync(python!, [path.join(here, "torch_sd15.py"), c, String(size), steps], {
        encoding: "utf8",
        env,
      });
      if (py.status !== 0) {
        console.log(`  PyTorch ${c} ${size}px failed: ${py.stderr.trim().split("\n").pop()}`);
        continue;
      }
      const t = JSON.parse(py.stdout.trim().split("\n").pop()!) as Result;
      rows.push(t);
      if (json) console.log(JSON.stringify(t));
      else
        console.log(
          `${`${c} ${size}px`.padEnd(22)} PyTorch ${(t.ms / 1000).toFixed(1).padStart(6)} s  peak RSS ${(t.peakRssMB / 1024).toFixed(2)} GB  (PyTorch time / ours: ${(t.ms / r.ms).toFixed(2)})`,
        );
    }
  }
}
if (!json)
  console.log(
    `\nmachine: ${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, node ${process.version}; batch 1, random weights; median of the steps after one warm-up (--steps ${steps}); each case in its own process`,
  );
