// Closed-form merge of 2 concepts at Stable Diffusion 1.x sizes (16 attn2 layers, to_k and to_v of
// (320|640|1280) x 768, ~3000 regularisation features, 10 targets per concept); run `npx tsx bench/merge.ts [--runs 3]`
// Own timing loop, not tinybench: one run is a whole merge of seconds (the shared factorisation timed
// apart from the 32 matrix solves) and reports its worst constraint residual, so a few runs and their
// median suffice where tinybench's warm-up and minimum iterations would multiply the minutes.
import * as os from "node:os";
import { Generator, randn } from "../engine/index.ts";
import * as la from "../engine/linalg.ts";
import type { Mat } from "../engine/linalg.ts";
import { mergeMatrix, prepareMerge } from "../tune/merge.ts";

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg("--runs", 3);
const nReg = arg("--reg", 3000);
const perConcept = arg("--targets", 10);
const d = 768;
const g = new Generator(0);
const rnd = (r: number, c: number, s = 1): Mat =>
  la.mat(
    r,
    c,
    Float64Array.from(randn([r, c], { generator: g, dtype: "float64" }).data, (x) => x * s),
  );

// SD-1.x attn2 widths: down 320 x2, 640 x2, 1280 x2; mid 1280; up 1280 x3, 640 x3, 320 x3
const widths = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320];
const layers = widths.flatMap((out, i) =>
  ["to_k", "to_v"].map((n) => {
    const w0 = rnd(out, d, 0.03);
    const tuned = [0, 1].map(() => la.add(w0, rnd(out, d, 0.003)));
    return { key: `layer${i}.attn2.${n}.weight`, w0, tuned };
  }),
);
const creg = rnd(nReg, d);
const targets = [rnd(perConcept, d), rnd(perConcept, d)];

function once(regResidual: boolean): { prep: number; total: number; worst: number } {
  const t0 = performance.now();
  const plan = prepareMerge(creg, targets);
  const t1 = performance.now();
  let worst = 0;
  for (const l of layers) {
    const r = mergeMatrix(plan, l.w0, l.tuned, { regResidual });
    worst = Math.max(worst, ...r.targetResidual);
  }
  return { prep: (t1 - t0) / 1000, total: (performance.now() - t0) / 1000, worst };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}); ${layers.length} matrices, ${nReg} regularisation features of width ${d}, ${perConcept} targets per concept, 2 concepts`,
);
for (const reg of [false, true]) {
  const rs = Array.from({ length: runs }, () => once(reg));
  console.log(
    `merge ${reg ? "with" : "without"} the regularisation residual: median ${median(rs.map((r) => r.total)).toFixed(2)} s over ${runs} runs (factorisations ${median(rs.map((r) => r.prep)).toFixed(2)} s); worst relative target error ${Math.max(...rs.map((r) => r.worst)).toExponential(2)}`,
  );
}
