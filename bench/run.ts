// Engine benchmarks (tinybench): ms (median) and GFLOP/s per kernel; `--json` prints one object per line.
// Run: npm run bench [-- --json] [-- --filter matmul] [-- --quick]
import * as os from "node:os";
import { Bench } from "tinybench";
import * as T from "../engine/index.ts";

interface Case {
  name: string;
  shape: string;
  flops: number;
  setup: () => () => void;
}

const json = process.argv.includes("--json");
const quick = process.argv.includes("--quick");
const fi = process.argv.indexOf("--filter");
const filter = fi >= 0 ? process.argv[fi + 1] : "";
const g = new T.Generator(0);
const r = (shape: number[], grad = false) => T.randn(shape, { generator: g }).requiresGrad_(grad);

function matmul(n: number): Case {
  return { name: "matmul", shape: `${n}x${n}x${n}`, flops: 2 * n ** 3, setup: () => { const a = r([n, n]), b = r([n, n]); return () => void T.matmul(a, b); } };
}
function mm(m: number, k: number, n: number): Case {
  return { name: "matmul", shape: `${m}x${k} @ ${k}x${n}`, flops: 2 * m * k * n, setup: () => { const a = r([m, k]), b = r([k, n]); return () => void T.matmul(a, b); } };
}
function conv(n: number, c: number, o: number, hw: number, backward: boolean): Case {
  const f = 2 * n * o * c * 9 * hw * hw;
  return {
    name: backward ? "conv2d fwd+bwd" : "conv2d fwd",
    shape: `N${n} ${c}->${o} 3x3 ${hw}x${hw} pad1`,
    flops: backward ? 3 * f : f,
    setup: () => {
      const x = r([n, c, hw, hw], backward), w = r([o, c, 3, 3], backward);
      return backward ? () => { T.sum(T.conv2d(x, w, null, { padding: 1 })).backward(); x.grad = null; w.grad = null; } : () => void T.conv2d(x, w, null, { padding: 1 });
    },
  };
}
function attention(b: number, lq: number, lk: number, d: number, backward: boolean): Case {
  const f = 4 * b * lq * lk * d;
  return {
    name: backward ? "attention fwd+bwd" : "attention fwd",
    shape: `${b}x${lq}x${lk}x${d}`,
    flops: backward ? 3 * f : f,
    setup: () => {
      const q = r([b, lq, d], backward), k = r([b, lk, d], backward), v = r([b, lk, d], backward);
      return backward
        ? () => { T.sum(T.scaledDotProductAttention(q, k, v)).backward(); q.grad = k.grad = v.grad = null; }
        : () => void T.scaledDotProductAttention(q, k, v);
    },
  };
}
const gnSilu: Case = {
  name: "group_norm+silu", shape: "2x320x32x32 g32", flops: 2 * 320 * 32 * 32 * 10,
  setup: () => { const x = r([2, 320, 32, 32]), w = r([320]), b = r([320]); return () => void T.silu(T.groupNorm(x, 32, w, b)); },
};

const cases: Case[] = [
  matmul(512), matmul(1024), mm(4096, 320, 320), mm(4096, 320, 1280),
  conv(2, 64, 64, 64, false), conv(2, 64, 64, 64, true),
  attention(16, 1024, 77, 40, false), attention(16, 1024, 77, 40, true),
  attention(16, 1024, 1024, 40, false), attention(16, 1024, 1024, 40, true),
  gnSilu,
].filter((c) => !filter || `${c.name} ${c.shape}`.includes(filter));

const threads = 1;
const rows: Record<string, unknown>[] = [];
for (const c of cases) {
  const fn = c.setup();
  fn(); // warm up (and JIT)
  const bench = new Bench({ iterations: quick ? 2 : 5, time: 0, warmupIterations: 0 });
  bench.add(`${c.name} ${c.shape}`, fn);
  await bench.run();
  const res = bench.tasks[0].result as { latency?: { p50?: number } ; period?: number } | undefined;
  const ms = res?.latency?.p50 ?? res?.period ?? NaN;
  const row = { name: c.name, shape: c.shape, backend: "cpu-js", threads, ms: +ms.toFixed(3), gflops: +(c.flops / (ms * 1e6)).toFixed(3), baseline: null, baseline_ms: null, ratio: null };
  rows.push(row);
  if (json) console.log(JSON.stringify(row));
  else console.log(`${(c.name + " " + c.shape).padEnd(44)} ${ms.toFixed(1).padStart(10)} ms ${row.gflops.toFixed(2).padStart(8)} GFLOP/s`);
}
if (!json) console.log(`\nmachine: ${os.cpus()[0]?.model ?? "unknown"} x${os.cpus().length}, node ${process.version}; median of ${quick ? 2 : 5} runs`);
