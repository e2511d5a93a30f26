// The Node side of test/web/page.test.ts: `customise` on the world model with the page's settings,
// run as its own process so V8 flags can match the browser's WebAssembly (Chromium compiles relaxed
// SIMD, whose fused multiply-add rounds differently from Node 20's default plain SIMD kernels).
// Usage: node --experimental-wasm-relaxed-simd --import tsx test/web/node_customise.ts JSON
import { setNumThreads } from "../../engine/backend/cpu/wasm/pool.ts";
import { sgemmKernel } from "../../engine/backend/cpu/wasm/sgemm.ts";
import { customise } from "../../tune/train.ts";
import { loadWorld } from "../../world/model.ts";
import { WEB_TRAIN_DEFAULTS, instancePrompt } from "../../web/protocol.ts";

if (!/node_customise\.ts$/.test(process.argv[1] ?? ""))
  throw new Error("test/web/node_customise.ts is a script of test/web/page.test.ts, not a test file");
const a = JSON.parse(process.argv[2]!) as {
  concept: string;
  class: string | null;
  classWord: string;
  out: string;
  steps: number;
  threads: number;
};
setNumThreads(a.threads);
const o = { ...WEB_TRAIN_DEFAULTS, steps: a.steps };
customise(loadWorld(), {
  concepts: [
    {
      instance_prompt: instancePrompt(a.classWord),
      class_prompt: a.classWord,
      instance_data_dir: a.concept,
      ...(a.class ? { class_data_dir: a.class } : {}),
    },
  ],
  outputDir: a.out,
  freezeModel: o.freezeModel,
  maxTrainSteps: o.steps,
  trainBatchSize: o.batch,
  learningRate: o.lr,
  seed: o.seed,
  hflip: true,
  log: () => {},
});
console.log(JSON.stringify({ variant: sgemmKernel().variant }));
