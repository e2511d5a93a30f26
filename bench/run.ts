// Engine benchmarks against PyTorch (python3 subprocess, same shapes and thread count) and tfjs
// (wasm and cpu backends, in-process), all measured in this run: ms is the median of timed runs.
// Run: npm run bench [-- --json] [-- --filter matmul] [-- --quick] [-- --threads 1,2] [-- --no-relaxed]
// Own timing loop, not tinybench: the PyTorch column comes from a warm-up-then-median loop in its own
// process (bench/torch_baseline.py); the engine and tfjs columns use one matching loop (`time` below,
// with a time budget per case), so the three columns are measured alike.
import { execFileSync } from "node:child_process";
import * as os from "node:os";
import * as v8 from "node:v8";

// relaxed SIMD (fused multiply-add) is behind a flag on Node 20: enable it before the kernels probe
const relaxedFlag = !process.argv.includes("--no-relaxed");
if (relaxedFlag) {
  try {
    v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
  } catch {
    /* unknown flag: the plain SIMD kernel is used */
  }
}
const T = await import("../engine/index.ts");
const { bestVariant, setNumThreads } = await import("../engine/backend/cpu/wasm/index.ts");

const json = process.argv.includes("--json");
const quick = process.argv.includes("--quick");
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const filter = arg("--filter") ?? "";
const threadList = (arg("--threads") ?? "1,2").split(",").map(Number);
const repeats = quick ? 3 : 7;

type TF = typeof import("@tensorflow/tfjs-core");
type TFTensor = import("@tensorflow/tfjs-core").Tensor;

interface Case {
  name: string;
  shape: string;
  flops: number;
  /** what the PyTorch script runs, or null for no PyTorch baseline */
  torch: { kind: string; args: (number | boolean)[] } | null;
  ours: () => () => void;
  /** the same computation in tfjs, or null where tfjs has no kernel for it */
  tfjs: ((tf: TF) => () => void) | null;
  /** tfjs's plain cpu backend is slow (0.5 GFLOP/s); skip it where it would take minutes */
  tfjsCpu: boolean;
}

const g = new T.Generator(0);
const r = (shape: number[], grad = false) => T.randn(shape, { generator: g }).requiresGrad_(grad);

function matmul(m: number, k: number, n: number): Case {
  return {
    name: "matmul",
    shape: m === k && k === n ? `${n}x${n}x${n}` : `${m}x${k} @ ${k}x${n}`,
    flops: 2 * m * k * n,
    torch: { kind: "matmul", args: [m, k, n] },
    ours: () => {
      const a = r([m, k]),
        b = r([k, n]);
      return () => void T.matmul(a, b);
    },
    tfjs: (tf) => {
      const a = tf.randomNormal([m, k]),
        b = tf.randomNormal([k, n]);
      return () => tf.tidy(() => void tf.matMul(a, b).dataSync());
    },
    tfjsCpu: 2 * m * k * n <= 2.2e9,
  };
}

function conv(n: number, c: number, o: number, hw: number, backward: boolean): Case {
  const f = 2 * n * o * c * 9 * hw * hw;
  return {
    name: backward ? "conv2d fwd+bwd" : "conv2d fwd",
    shape: `N${n} ${c}->${o} 3x3 ${hw}x${hw} pad1`,
    flops: backward ? 3 * f : f,
    torch: { kind: "conv", args: [n, c, o, hw, backward] },
    ours: () => {
      const x = r([n, c, hw, hw], backward),
        w = r([o, c, 3, 3], backward);
      return backward
        ? () => {
            T.sum(T.conv2d(x, w, null, { padding: 1 })).backward();
            x.grad = null;
            w.grad = null;
          }
        : () => void T.conv2d(x, w, null, { padding: 1 });
    },
    tfjs: (tf) => {
      const x = tf.randomNormal([n, hw, hw, c]) as import("@tensorflow/tfjs-core").Tensor4D,
        w = tf.randomNormal([3, 3, c, o]) as import("@tensorflow/tfjs-core").Tensor4D;
      if (!backward) return () => tf.tidy(() => void tf.conv2d(x, w, 1, "same").dataSync());
      const gradFn = tf.grads((a: TFTensor, b: TFTensor) => tf.sum(tf.conv2d(a as typeof x, b as typeof w, 1, "same")));
      return () => tf.tidy(() => gradFn([x, w]).forEach((t) => t.dataSync()));
    },
    tfjsCpu: f <= 2e9 && !backward,
  };
}

function attention(b: number, lq: number, lk: number, d: number, backward: boolean): Case {
  const f = 4 * b * lq * lk * d;
  return {
    name: backward ? "attention fwd+bwd" : "attention fwd",
    shape: `${b}x${lq}x${lk}x${d}`,
    flops: backward ? 3 * f : f,
    torch: { kind: "attention", args: [b, lq, lk, d, backward] },
    ours: () => {
      const q = r([b, lq, d], backward),
        k = r([b, lk, d], backward),
        v = r([b, lk, d], backward);
      return backward
        ? () => {
            T.sum(T.scaledDotProductAttention(q, k, v)).backward();
            q.grad = k.grad = v.grad = null;
          }
        : () => void T.scaledDotProductAttention(q, k, v);
    },
    tfjs: (tf) => {
      const q = tf.randomNormal([b, lq, d]),
        k = tf.randomNormal([b, lk, d]),
        v = tf.randomNormal([b, lk, d]);
      const fwd = (q_: TFTensor, k_: TFTensor, v_: TFTensor) =>
        tf.matMul(tf.softmax(tf.mul(tf.matMul(q_, k_, false, true), 1 / Math.sqrt(d))), v_);
      if (!backward) return () => tf.tidy(() => void fwd(q, k, v).dataSync());
      const gradFn = tf.grads((a: TFTensor, b_: TFTensor, c: TFTensor) => tf.sum(fwd(a, b_, c)));
      return () => tf.tidy(() => gradFn([q, k, v]).forEach((t) => t.dataSync()));
    },
    tfjsCpu: f <= 2e9 && !backward,
  };
}

const gnSilu: Case = {
  name: "group_norm+silu",
  shape: "2x320x32x32 g32",
  flops: 2 * 320 * 32 * 32 * 10,
  torch: { kind: "groupnorm_silu", args: [2, 320, 32, 32] },
  // ours: the fused primitive the ResNet blocks call (PyTorch and tfjs run the two ops)
  ours: () => {
    const x = r([2, 320, 32, 32]),
      w = r([320]),
      b = r([320]);
    return () => void T.groupNormSilu(x, 32, w, b);
  },
  tfjs: (tf) => {
    const x = tf.randomNormal([2, 320, 32, 32]),
      w = tf.randomNormal([1, 320, 1, 1]),
      b = tf.randomNormal([1, 320, 1, 1]);
    return () =>
      tf.tidy(() => {
        const gx = tf.reshape(x, [2, 32, -1]);
        const { mean, variance } = tf.moments(gx, 2, true);
        const y = tf.add(
          tf.mul(tf.reshape(tf.div(tf.sub(gx, mean), tf.sqrt(tf.add(variance, 1e-5))), [2, 320, 32, 32]), w),
          b,
        );
        void tf.mul(y, tf.sigmoid(y)).dataSync();
      });
  },
  tfjsCpu: true,
};

async function unetCase(): Promise<Case> {
  const { withInitGenerator } = await import("../models/nn/module.ts");
  const { TINY_UNET_CONFIG, UNet2DConditionModel } = await import("../models/unets/unet_2d_condition.ts");
  return {
    name: "tiny UNet fwd+bwd",
    shape: "TINY_UNET_CONFIG B2 32x32",
    flops: NaN,
    torch: null,
    tfjs: null,
    tfjsCpu: false,
    ours: () => {
      const unet = withInitGenerator(new T.Generator(0), () =>
        UNet2DConditionModel.fromConfig({ ...TINY_UNET_CONFIG, sample_size: 32 }),
      );
      const x = r([2, 4, 32, 32]),
        c = r([2, 77, 32]),
        target = r([2, 4, 32, 32]);
      return () => {
        T.mseLoss(unet.forward(x, [10, 500], c), target).backward();
        for (const [, p] of unet.namedParameters()) p.grad = null;
      };
    },
  };
}

const cases: Case[] = [
  matmul(512, 512, 512),
  matmul(1024, 1024, 1024),
  matmul(2048, 2048, 2048),
  matmul(4096, 320, 320),
  matmul(4096, 320, 1280),
  conv(2, 64, 64, 64, false),
  conv(2, 64, 64, 64, true),
  conv(1, 320, 320, 64, false),
  attention(16, 1024, 77, 40, false),
  attention(16, 1024, 77, 40, true),
  attention(16, 1024, 1024, 40, false),
  attention(16, 1024, 1024, 40, true),
  gnSilu,
].filter((c) => !filter || `${c.name} ${c.shape}`.includes(filter));
if (!filter || "tiny UNet fwd+bwd".includes(filter)) cases.push(await unetCase());

/**
 * Median ms: one warm-up, then `repeats` runs (fewer when one run is slow), continued up to 4x
 * `repeats` while under a third of the budget, so fast cases get a median of many runs (2-thread
 * timings on a small VM swing with its neighbours).
 */
async function time(fn: () => void | Promise<void>, budgetMs = quick ? 2000 : 5000): Promise<number> {
  await fn();
  const times: number[] = [];
  const t0 = performance.now();
  const more = () => times.length < 4 * repeats && performance.now() - t0 < budgetMs / 3;
  while ((times.length < repeats && (times.length < 1 || performance.now() - t0 < budgetMs)) || more()) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor((times.length - 1) / 2)]!;
}

// PyTorch: one subprocess per thread count, all cases at once, with the first python that imports torch
const notes: string[] = [];
function torchPython(): string | null {
  for (const py of [process.env.CDIFF_PYTHON, "python3", "/usr/bin/python3"]) {
    if (!py) continue;
    try {
      execFileSync(py, ["-c", "import torch"], { stdio: "ignore" });
      return py;
    } catch {
      /* next */
    }
  }
  return null;
}
const python = torchCases().length > 0 ? torchPython() : null;
if (!python)
  notes.push(
    "PyTorch baseline skipped: no python3 here imports torch (Debian: apt-get install python3-torch, or set CDIFF_PYTHON)",
  );
const torchMs = new Map<string, number>(); // key `${threads}|${case}`
function torchCases() {
  return cases.filter((c) => c.torch).map((c) => ({ key: `${c.name} ${c.shape}`, ...c.torch }));
}
for (const th of python ? threadList : []) {
  try {
    const env = {
      ...process.env,
      OMP_NUM_THREADS: String(th),
      OPENBLAS_NUM_THREADS: String(th),
      MKL_NUM_THREADS: String(th),
    };
    const outText = execFileSync(
      python!,
      [new URL("./torch_baseline.py", import.meta.url).pathname, String(th), String(repeats)],
      {
        input: JSON.stringify(torchCases()),
        env,
        encoding: "utf8",
        stdio: ["pipe", "pipe", "pipe"],
        maxBuffer: 1 << 24,
      },
    );
    for (const line of outText.trim().split("\n")) {
      const o = JSON.parse(line) as { key: string; ms?: number; error?: string };
      if (o.ms !== undefined) torchMs.set(`${th}|${o.key}`, o.ms);
      else notes.push(`PyTorch ${o.key}: ${o.error}`);
    }
  } catch (e) {
    notes.push(
      `PyTorch baseline skipped (python3 with torch not usable: ${String((e as Error).message).split("\n")[0]})`,
    );
    break;
  }
}

// tfjs, in-process, one thread (its wasm threads do not start in Node)
const tfjsMs = new Map<string, number>(); // key `${backend}|${case}`
const log = console.log;
console.log = (...a: unknown[]) => console.error(...a); // tfjs prints a banner; keep stdout for results
try {
  const tf = await import("@tensorflow/tfjs-core");
  await import("@tensorflow/tfjs-backend-wasm");
  await import("@tensorflow/tfjs-backend-cpu");
  for (const backend of ["wasm", "cpu"] as const) {
    if (!(await tf.setBackend(backend))) {
      notes.push(`tfjs-${backend}: backend did not start`);
      continue;
    }
    await tf.ready();
    for (const c of cases) {
      const key = `${c.name} ${c.shape}`;
      if (!c.tfjs || (backend === "cpu" && !c.tfjsCpu)) continue;
      try {
        const fn = c.tfjs(tf);
        tfjsMs.set(`${backend}|${key}`, await time(fn, backend === "cpu" ? 3000 : undefined));
      } catch (e) {
        notes.push(`tfjs-${backend} ${key}: ${String((e as Error).message).split("\n")[0]}`);
      }
    }
    tf.disposeVariables();
  }
} catch (e) {
  notes.push(`tfjs baselines skipped: ${(e as Error).message}`);
} finally {
  console.log = log;
}

const rows: Record<string, unknown>[] = [];
const fmt = (x: number | undefined, w: number, d = 1) =>
  (x === undefined || Number.isNaN(x) ? "-" : x.toFixed(d)).padStart(w);
if (!json) {
  console.log(
    `${"case".padEnd(44)} ${"thr".padStart(3)} ${"ms".padStart(9)} ${"GFLOP/s".padStart(8)} | ${"torch ms".padStart(9)} ${"x".padStart(5)} | ${"tfjs-wasm".padStart(9)} ${"x".padStart(5)} | ${"tfjs-cpu".padStart(9)} ${"x".padStart(6)}`,
  );
}
for (const c of cases) {
  const key = `${c.name} ${c.shape}`;
  for (const th of threadList) {
    setNumThreads(th);
    const ms = await time(c.ours());
    const gflops = c.flops / (ms * 1e6);
    const base = [
      ["pytorch", torchMs.get(`${th}|${key}`)],
      ["tfjs-wasm", tfjsMs.get(`wasm|${key}`)],
      ["tfjs-cpu", tfjsMs.get(`cpu|${key}`)],
    ] as const;
    const common = {
      name: c.name,
      shape: c.shape,
      backend: `cpu-wasm-${bestVariant()}`,
      threads: th,
      ms: +ms.toFixed(3),
      gflops: Number.isNaN(gflops) ? null : +gflops.toFixed(2),
    };
    const present = base.filter(([, b]) => b !== undefined);
    if (present.length === 0) rows.push({ ...common, baseline: null, baseline_ms: null, ratio: null });
    for (const [name, b] of present)
      rows.push({ ...common, baseline: name, baseline_ms: +b!.toFixed(3), ratio: +(b! / ms).toFixed(3) });
    if (json) {
      for (const row of rows.splice(0)) console.log(JSON.stringify(row));
    } else {
      const cell = (b: number | undefined, w: number) =>
        `${fmt(b, 9)} ${fmt(b === undefined ? undefined : b / ms, w, 2)}`;
      console.log(
        `${key.padEnd(44)} ${String(th).padStart(3)} ${fmt(ms, 9)} ${fmt(gflops, 8)} | ${cell(base[0][1], 5)} | ${cell(base[1][1], 5)} | ${cell(base[2][1], 6)}`,
      );
    }
  }
}
setNumThreads(threadList[threadList.length - 1]!);
const machine = `${os.cpus()[0]?.model ?? "unknown"} x${os.availableParallelism()}, node ${process.version}, kernel ${bestVariant()}; load average ${os.loadavg()[0]!.toFixed(2)}`;
if (json) {
  console.error(`machine: ${machine}`);
  for (const n of notes) console.error(`note: ${n}`);
} else {
  console.log(
    `\nx = baseline ms / our ms (above 1: we are faster). ms: median of ${repeats} (more when fast, fewer when slow) runs after a warm-up.`,
  );
  console.log(`machine: ${machine}`);
  for (const n of notes) console.log(`note: ${n}`);
}
