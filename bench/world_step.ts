// One pretraining step of the small world (UNet + text encoder, batch 64, AdamW) against PyTorch on the
// same architecture (bench/torch_world_step.py; skipped with a note when `import torch` fails).
// Run: npx tsx bench/world_step.ts [--json] [--batch 64] [--threads 1] [--relaxed] (both sides use the same thread count)
// --relaxed switches on relaxed SIMD (fused multiply-add) before the engine loads, as `npm run bench`
// does: Node 22 and later have it by default, Node 20 only behind --experimental-wasm-relaxed-simd.
// Own timing loop, not tinybench: the step is timed exactly as bench/torch_world_step.py times its
// PyTorch twin (four steps, the first left out, the median), so the two numbers compare like for like.
import { execFileSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import * as v8 from "node:v8";
import { fileURLToPath } from "node:url";

if (process.argv.includes("--relaxed")) {
  try {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    /* unknown flag: the plain SIMD kernel is used */
  }
}
const { bestVariant, setNumThreads } = await import("../engine/backend/cpu/wasm/index.ts");
const { worldTrainingStep } = await import("./world_setup.ts");

const json = process.argv.includes("--json");
const bi = process.argv.indexOf("--batch");
const batch = bi >= 0 ? Number(process.argv[bi + 1]) : 64;
const ti = process.argv.indexOf("--threads");
const threads = ti >= 0 ? Number(process.argv[ti + 1]) : 1;
setNumThreads(threads);
const here = path.dirname(fileURLToPath(import.meta.url));

const { step: trainingStep, vocabSize } = worldTrainingStep(batch);
const times: number[] = [];
for (let step = 0; step < 4; step++) {
  const t0 = performance.now();
  trainingStep();
  if (step > 0) times.push(performance.now() - t0);
}
times.sort((a, b) => a - b);
const ms = times[1];
let torchMs: number | null = null;
let note = "";
try {
  const out = execFileSync(
    "/usr/bin/python3",
    [path.join(here, "torch_world_step.py"), String(threads), String(batch), String(vocabSize)],
    {
      encoding: "utf8",
      env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  torchMs = (JSON.parse(out.trim().split("\n").pop() as string) as { ms: number }).ms;
} catch {
  note = "PyTorch baseline skipped: `import torch` failed in /usr/bin/python3 (Debian's python3-torch provides it)";
}
const row = {
  name: "world training step",
  shape: `UNet (32,64,128) + text encoder, B${batch} 16x16`,
  backend: `cpu-wasm-${bestVariant()}`,
  threads,
  ms: +ms.toFixed(0),
  gflops: null,
  baseline: torchMs === null ? null : "pytorch",
  baseline_ms: torchMs === null ? null : +torchMs.toFixed(0),
  ratio: torchMs === null ? null : +(torchMs / ms).toFixed(3),
};
if (json) console.log(JSON.stringify(row));
else {
  console.log(
    `${row.name} (${row.shape}): ours ${row.ms} ms${torchMs === null ? "" : `, PyTorch ${row.baseline_ms} ms (ratio ${row.ratio}, above 1 means faster than PyTorch)`}`,
  );
  if (note) console.log(note);
  console.log(
    `machine: ${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, node ${process.version}; ours on ${row.backend}${bestVariant() === "relaxed" ? " (fused multiply-add)" : ""}; ${threads} thread(s) on both sides; median of 3 steps after one warm-up`,
  );
}
