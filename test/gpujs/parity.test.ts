// Parity of the gpujs backend with the cpu backend: every kernel of the contract, forward and backward,
// on the same float32 inputs, within a tolerance stated per kernel; each call is checked to have run
// on the GPU (not a host fallback). Then the tiny UNet forward and one Custom Diffusion K/V training
// step (loss, backward, Adam) on both backends.
//
// Tolerances (|gpu - cpu| <= atol + rtol |cpu|) and why:
// - movement and copies (permute, expand, slice, pad, concat, gather, upsample, cast, fill, where), max/min: exact;
//   NaN propagates through max/min reductions and maximum/minimum as on the cpu (and in torch).
// - one IEEE operation (add, sub, mul, div, comparisons, relu, neg, abs, square, sqrt, step, sign): 1 ulp
//   (rtol 2^-23) - exact on SwiftShader; a GPU's division may be off by 1 ulp.
// - special functions (exp, log, tanh, sigmoid, silu, gelu, erf, sin, cos, reciprocal sqrt) and the fused
//   activation gradients: atol 1e-6, rtol 2e-6. GLSL's own exp/log/sin are off by up to 56/823/10^5 ulp
//   on SwiftShader, so the backend uses its own (1-2 ulp); the cpu computes in float64 and rounds once.
// - pow: rtol 2e-6 (exp(y log x) in float32).
// - sums (reduce, indexAdd, poolSum), softmax, norms, matmul, conv, attention: float32 accumulation on the
//   GPU against float64 accumulation (or another order) on the cpu: atol 1e-5 + rtol 1e-4 scaled by
//   sqrt(terms) / 8 for long sums. GL cannot match float32 results bit for bit here: the order of a GPU
//   thread's sum differs from the cpu's blocked loops.
// - Adam: atol 1e-7 + rtol 1e-6: b1 m + (1 - b1) g cancels in float32 on the GPU (the cpu rounds a
//   float64 result once); bias corrections are computed on the host.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  cpuBackend,
  getBackend,
  Generator,
  matmul,
  mseLoss,
  mul,
  noGrad,
  randn,
  setDefaultBackend,
  sum,
  tanh,
} from "../../engine/index.ts";
import type { AttentionParams, Backend, Storage, Tensor, TypedArray } from "../../engine/index.ts";
import { gpujsReport } from "../../engine/backend/gpujs/index.ts";
import { setAttentionScoreLimit } from "../../engine/backend/gpujs/attention.ts";
import { withInitGenerator } from "../../models/nn/index.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import { CustomDiffusionAttnProcessor } from "../../models/custom_diffusion.ts";
import { Adam } from "../../optim/index.ts";
import { gpuOrSkip } from "./gpu.ts";

const probe = gpuOrSkip("gpujs parity");

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
let seed = 1;
/** uniform in [lo, hi) as float32 */
const rand = (n: number, lo = -3, hi = 3): Float32Array => {
  const r = rng(seed++);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
};
const size = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

interface Tol {
  atol: number;
  rtol: number;
}
const EXACT: Tol = { atol: 0, rtol: 0 };
const ULP: Tol = { atol: 0, rtol: 2 ** -23 };
const SPECIAL: Tol = { atol: 1e-6, rtol: 2e-6 };
const sumTol = (terms: number): Tol => ({ atol: 1e-5 * Math.max(1, Math.sqrt(terms) / 8), rtol: 1e-4 });

const results: { kernel: string; worst: number }[] = [];

/** Runs `f` and checks it took the four-outputs-per-thread programs of vec4.ts (a pack4 pass) exactly when `want`. */
function fourWide(label: string, want: boolean, f: () => void): void {
  const packs = (): number => gpujsReport().stats?.gpu.pack4 ?? 0;
  const before = packs();
  f();
  assert.is(packs() > before, want, `${label}: four outputs per thread ${want ? "not taken" : "taken"}`);
}

/**
 * Runs `call` on both backends with the same host inputs (fresh copies on each) and compares every
 * returned storage; checks that `kernel` ran on the GPU for each call.
 */
function parity(
  kernel: string,
  label: string,
  tol: Tol,
  inputs: (TypedArray | null)[],
  call: (b: Backend, s: (Storage | null)[]) => (Storage | null)[],
): void {
  const g = getBackend("gpujs");
  const before = gpujsReport().stats?.gpu[kernel] ?? 0;
  const hostBefore = gpujsReport().stats?.host[kernel] ?? 0;
  const cpuOut = call(
    cpuBackend as unknown as Backend,
    inputs.map((x) => (x ? cpuBackend.fromHost(x.slice() as TypedArray) : null)),
  );
  const gpuOut = call(
    g,
    inputs.map((x) => (x ? g.fromHost(Float32Array.from(x)) : null)),
  );
  const st = gpujsReport().stats!;
  assert.ok((st.gpu[kernel] ?? 0) > before, `${kernel} ${label}: did not run on the GPU`);
  assert.is(st.host[kernel] ?? 0, hostBefore, `${kernel} ${label}: took the host fallback`);
  let worst = 0;
  cpuOut.forEach((c, k) => {
    const gq = gpuOut[k];
    if (c === null) {
      assert.is(gq, null, `${kernel} ${label}: output ${k} should be null`);
      return;
    }
    const a = cpuBackend.toHost(c as TypedArray),
      b = g.toHost(gq!);
    assert.is(b.length, a.length, `${kernel} ${label}: output ${k} length`);
    for (let i = 0; i < a.length; i++) {
      const want = a[i]!,
        got = b[i]!;
      if (Number.isNaN(want) && Number.isNaN(got)) continue;
      if (want === got) continue;
      const err = Math.abs(got - want);
      const lim = tol.atol + tol.rtol * Math.abs(want);
      worst = Math.max(worst, lim > 0 ? err / lim : err === 0 ? 0 : Infinity);
      if (!(err <= lim))
        assert.unreachable(`${kernel} ${label}: output ${k}[${i}] gpu ${got} cpu ${want} (|diff| ${err} > ${lim})`);
    }
  });
  results.push({ kernel: `${kernel} ${label}`, worst });
}

if (probe) {
  test("storage: fill, zeros, cast, fromHost/toHost round trip", () => {
    const x = rand(1000);
    parity("fill", "2.5", EXACT, [], (b) => [b.fill("float32", 37, 2.5), b.zeros("float32", 5)]);
    parity("cast", "f32 copy", EXACT, [x], (b, [s]) => [b.cast(s!, "float32", "float32")]);
    // half dtypes: gpujs holds float32 values rounded to them (the rounding runs on the host, once per
    // conversion: half weights are made when a model loads), cpu 16-bit words: the values agree exactly
    for (const h of ["bfloat16", "float16"] as const) {
      const g0 = getBackend("gpujs");
      const hostBefore = gpujsReport().stats?.host.cast ?? 0;
      const viaGpu = g0.toHost(g0.cast(g0.cast(g0.fromHost(x.slice()), "float32", h), h, "float32"));
      assert.is((gpujsReport().stats?.host.cast ?? 0) - hostBefore, 1, `${h}: one host rounding`);
      const viaCpu = cpuBackend.toHost(cpuBackend.cast(cpuBackend.cast(x.slice(), "float32", h), h, "float32"));
      assert.equal(Array.from(viaGpu), Array.from(viaCpu), h);
    }
    const g = getBackend("gpujs");
    assert.equal(Array.from(g.toHost(g.fromHost(x.slice()))), Array.from(x));
    const d = g.fromHost(Float64Array.from([1.5, 2.25]));
    assert.ok(g.toHost(d) instanceof Float64Array, "float64 stays float64 (on the host)");
  });

  test("unary: every op", () => {
    const ops = [
      "neg",
      "exp",
      "log",
      "sqrt",
      "rsqrt",
      "abs",
      "sign",
      "tanh",
      "sigmoid",
      "relu",
      "step",
      "silu",
      "gelu",
      "gelu_tanh",
      "erf",
      "sin",
      "cos",
      "square",
      "reciprocal",
    ] as const;
    for (const op of ops) {
      const positive = op === "log" || op === "sqrt" || op === "rsqrt";
      const x = positive
        ? rand(777, 0.01, 20)
        : op === "reciprocal"
          ? rand(777, 0.1, 4).map((v, i) => (i % 2 ? v : -v))
          : rand(777, -6, 6);
      if (!positive && op !== "reciprocal") x[0] = 0;
      const tol = ["neg", "abs", "sign", "relu", "step", "square", "sqrt", "reciprocal"].includes(op) ? ULP : SPECIAL;
      parity("unary", op, tol, [x], (b, [s]) => [b.unary(op, s!)]);
    }
  });

  test("binary: every op, same shape, broadcast both ways, scalar", () => {
    const ops = [
      "add",
      "sub",
      "mul",
      "div",
      "pow",
      "maximum",
      "minimum",
      "lt",
      "le",
      "gt",
      "ge",
      "eq",
      "ne",
      "silu_grad",
      "gelu_grad",
      "sigmoid_grad",
      "tanh_grad",
    ] as const;
    const cases: [number[], number[], number[]][] = [
      [
        [3, 4, 5],
        [3, 4, 5],
        [3, 4, 5],
      ],
      [
        [3, 1, 5],
        [4, 1],
        [3, 4, 5],
      ],
      [[7], [1], [7]],
      [
        [2, 1, 3, 1],
        [1, 5, 1, 4],
        [2, 5, 3, 4],
      ],
    ];
    for (const op of ops) {
      for (const [as, bs, os] of cases) {
        const a = op === "pow" ? rand(size(as), 0.1, 3) : rand(size(as));
        const bb = op === "pow" ? rand(size(bs), -2, 2) : op === "div" ? rand(size(bs), 0.5, 3) : rand(size(bs));
        if (["eq", "ne", "le", "ge"].includes(op)) bb[0] = a[0]!;
        const tol = ["pow"].includes(op) ? { atol: 0, rtol: 2e-6 } : op.endsWith("_grad") ? SPECIAL : ULP;
        parity("binary", `${op} ${as}x${bs}`, tol, [a, bb], (b, [x, y]) => [b.binary(op, x!, as, y!, bs, os)]);
      }
    }
    // pow of negative bases with integer exponents
    parity(
      "binary",
      "pow negative base",
      { atol: 0, rtol: 2e-6 },
      [Float32Array.from([-2, -1.5, -3, 0, 2]), Float32Array.from([2, 3, -1, 2, 0.5])],
      (b, [x, y]) => [b.binary("pow", x!, [5], y!, [5], [5])],
    );
  });

  test("where, geglu and its backward", () => {
    const c = rand(4).map((v) => (v > 0 ? 1 : 0));
    parity("where", "broadcast", EXACT, [c, rand(60), rand(5)], (b, [cc, x, y]) => [
      b.where(cc!, [4, 1], x!, [3, 4, 5], y!, [5], [3, 4, 5]),
    ]);
    const h = rand(6 * 10);
    parity("geglu", "6x5", SPECIAL, [h], (b, [x]) => [b.geglu(x!, 6, 5)]);
    parity("gegluBackward", "6x5", SPECIAL, [h, rand(30)], (b, [x, g]) => [b.gegluBackward(x!, g!, 6, 5)]);
  });

  test("reduce: sum, max, min over one axis, a run, separate axes, all; a long two-pass sum", () => {
    const shape = [4, 6, 5];
    const x = rand(size(shape));
    for (const op of ["sum", "max", "min"] as const) {
      for (const axes of [[0], [1], [2], [1, 2], [0, 2], [0, 1, 2]]) {
        const terms = axes.reduce((s, a) => s * shape[a]!, 1);
        parity("reduce", `${op} ${axes}`, op === "sum" ? sumTol(terms) : EXACT, [x], (b, [s]) => [
          b.reduce(op, s!, shape, axes),
        ]);
      }
    }
    const long = rand(3 * 5000);
    parity("reduce", "sum 5000 (two passes)", sumTol(5000), [long], (b, [s]) => [b.reduce("sum", s!, [3, 5000], [1])]);
    parity("reduce", "max 5000 (two passes)", EXACT, [long], (b, [s]) => [b.reduce("max", s!, [3, 5000], [1])]);
  });

  test("NaN propagates through max/min reductions, maximum/minimum and softmax, as on the cpu", () => {
    const shape = [4, 6, 5];
    const x = rand(size(shape));
    // NaN first, in the middle and last along different axes, and a row with no NaN
    for (const i of [0, 37, 59, 64, 119]) x[i] = NaN;
    for (const op of ["max", "min"] as const) {
      for (const axes of [[0], [1], [2], [1, 2], [0, 2], [0, 1, 2]])
        parity("reduce", `${op} ${axes} with NaN`, EXACT, [x], (b, [s]) => [b.reduce(op, s!, shape, axes)]);
      const long = rand(3 * 5000);
      long[4321] = NaN; // second row, one chunk of the two-pass reduction
      parity("reduce", `${op} 5000 with NaN (two passes)`, EXACT, [long], (b, [s]) => [
        b.reduce(op, s!, [3, 5000], [1]),
      ]);
    }
    const a = Float32Array.from([NaN, 1, 2, NaN, -0, Infinity, -Infinity, 3]),
      c = Float32Array.from([0, NaN, 1, NaN, 0, NaN, 5, 3]);
    for (const op of ["maximum", "minimum"] as const)
      parity("binary", `${op} with NaN`, EXACT, [a, c], (b, [p, q]) => [b.binary(op, p!, [8], q!, [8], [8])]);
    const sx = rand(3 * 7 * 4, -8, 8);
    sx[5] = NaN;
    for (const log of [false, true])
      parity("softmax", `last log=${log} with NaN`, { atol: 1e-6, rtol: 1e-5 }, [sx], (b, [s]) => [
        b.softmax(s!, [3, 7, 4], 2, log),
      ]);
  });

  test("softmax and log-softmax over the last and a middle axis", () => {
    const x = rand(3 * 7 * 4, -8, 8);
    for (const log of [false, true]) {
      parity("softmax", `last log=${log}`, { atol: 1e-6, rtol: 1e-5 }, [x], (b, [s]) => [
        b.softmax(s!, [3, 7, 4], 2, log),
      ]);
      parity("softmax", `middle log=${log}`, { atol: 1e-6, rtol: 1e-5 }, [x], (b, [s]) => [
        b.softmax(s!, [3, 7, 4], 1, log),
      ]);
    }
  });

  test("movement: permute, expand, slice, pad, concat, gather, indexAdd", () => {
    const x = rand(2 * 3 * 4);
    parity("permute", "[2,0,1]", EXACT, [x], (b, [s]) => [b.permute(s!, [2, 3, 4], [2, 0, 1])]);
    parity("expand", "[3,1]->[2,3,4]", EXACT, [rand(3)], (b, [s]) => [b.expand(s!, [3, 1], [2, 3, 4])]);
    parity("slice", "steps", EXACT, [x], (b, [s]) => [b.slice(s!, [2, 3, 4], [0, 1, 0], [2, 3, 4], [1, 1, 2])]);
    parity("slice", "negative step", EXACT, [x], (b, [s]) => [
      b.slice(s!, [2, 3, 4], [1, 2, 3], [-1, -1, -1], [-1, -1, -2]),
    ]);
    parity("pad", "value 1.5", EXACT, [x], (b, [s]) => [
      b.pad(
        s!,
        [2, 3, 4],
        [
          [0, 1],
          [2, 0],
          [1, 1],
        ],
        1.5,
      ),
    ]);
    parity("concat", "axis 1, three inputs", EXACT, [rand(2 * 1 * 4), rand(2 * 3 * 4), rand(2 * 2 * 4)], (b, xs) => [
      b.concat(
        xs as Storage[],
        [
          [2, 1, 4],
          [2, 3, 4],
          [2, 2, 4],
        ],
        1,
      ),
    ]);
    parity("gather", "axis 1", EXACT, [x], (b, [s]) => [b.gather(s!, [2, 3, 4], 1, Int32Array.from([2, 0, 2, 1]))]);
    parity("indexAdd", "axis 1, repeated indices", sumTol(4), [rand(2 * 4 * 4)], (b, [s]) => [
      b.indexAdd([2, 3, 4], 1, Int32Array.from([2, 0, 2, 1]), s!),
    ]);
  });

  test("matmul: transposes, batch broadcast, odd sizes", () => {
    const cases: [
      string,
      {
        batch: number;
        m: number;
        k: number;
        n: number;
        transA: boolean;
        transB: boolean;
        strideA: number;
        strideB: number;
      },
    ][] = [
      ["plain", { batch: 1, m: 5, k: 7, n: 3, transA: false, transB: false, strideA: 35, strideB: 21 }],
      ["transA", { batch: 2, m: 5, k: 7, n: 3, transA: true, transB: false, strideA: 35, strideB: 21 }],
      ["transB", { batch: 2, m: 5, k: 7, n: 3, transA: false, transB: true, strideA: 35, strideB: 21 }],
      ["both", { batch: 3, m: 4, k: 9, n: 6, transA: true, transB: true, strideA: 36, strideB: 54 }],
      ["broadcast B", { batch: 3, m: 4, k: 9, n: 6, transA: false, transB: false, strideA: 36, strideB: 0 }],
      ["33x65x17", { batch: 1, m: 33, k: 65, n: 17, transA: false, transB: false, strideA: 0, strideB: 0 }],
      ["k=1", { batch: 1, m: 8, k: 1, n: 8, transA: false, transB: false, strideA: 0, strideB: 0 }],
      // n a multiple of 4: four columns per thread (vec4.ts), every layout
      ["plain n=8", { batch: 2, m: 5, k: 7, n: 8, transA: false, transB: false, strideA: 35, strideB: 56 }],
      ["transA n=4", { batch: 2, m: 3, k: 6, n: 4, transA: true, transB: false, strideA: 18, strideB: 24 }],
      // k a multiple of 4 too: A read four terms per texel
      ["plain n=4 k=8", { batch: 2, m: 3, k: 8, n: 4, transA: false, transB: false, strideA: 24, strideB: 32 }],
      ["transA n=8 k=4", { batch: 2, m: 5, k: 4, n: 8, transA: true, transB: false, strideA: 20, strideB: 32 }],
      ["both n=4 k=12", { batch: 2, m: 3, k: 12, n: 4, transA: true, transB: true, strideA: 36, strideB: 48 }],
      ["broadcast A n=4 k=8", { batch: 3, m: 3, k: 8, n: 4, transA: false, transB: true, strideA: 0, strideB: 32 }],
      ["transB n=12", { batch: 2, m: 5, k: 7, n: 12, transA: false, transB: true, strideA: 35, strideB: 84 }],
      ["both n=8", { batch: 3, m: 4, k: 9, n: 8, transA: true, transB: true, strideA: 36, strideB: 72 }],
      ["broadcast B n=8", { batch: 3, m: 4, k: 9, n: 8, transA: false, transB: true, strideA: 36, strideB: 0 }],
    ];
    for (const [label, p] of cases) {
      const a = rand(p.strideA ? p.batch * p.strideA : p.m * p.k),
        bb = rand(p.strideB ? p.batch * p.strideB : p.k * p.n);
      fourWide(`matmul ${label}`, p.n % 4 === 0, () =>
        parity("matmul", label, sumTol(p.k), [a, bb], (b, [x, y]) => [b.matmul(x!, y!, p)]),
      );
    }
  });

  test("conv2d forward and both backwards: stride, padding, groups, 1x1", () => {
    const cases: [
      string,
      number[],
      number[],
      { stride: [number, number]; padding: [number, number]; groups: number },
    ][] = [
      ["3x3 s1 p1", [2, 3, 6, 5], [4, 3, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }],
      ["3x3 s2 p1 g2", [2, 4, 7, 6], [6, 2, 3, 3], { stride: [2, 2], padding: [1, 1], groups: 2 }],
      ["1x1", [1, 5, 4, 4], [3, 5, 1, 1], { stride: [1, 1], padding: [0, 0], groups: 1 }],
      ["2x3 s(2,1) p(0,2)", [1, 2, 5, 5], [2, 2, 2, 3], { stride: [2, 1], padding: [0, 2], groups: 1 }],
      // channels per group a multiple of 4: four channels per thread (vec4.ts) forward and input gradient
      ["3x3 s2 p1 g2, 4 per group", [2, 8, 7, 6], [8, 4, 3, 3], { stride: [2, 2], padding: [1, 1], groups: 2 }],
      ["1x1 8 -> 12", [1, 8, 4, 5], [12, 8, 1, 1], { stride: [1, 1], padding: [0, 0], groups: 1 }],
      ["3x3 s1 p1 4 -> 4", [2, 4, 5, 5], [4, 4, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }],
      ["3x3 s1 p1 8 -> 6", [1, 8, 5, 4], [6, 8, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }],
    ];
    for (const [label, xs, ws, p] of cases) {
      const [n, , h, w] = xs as [number, number, number, number];
      const [o, cg, kh, kw] = ws as [number, number, number, number];
      const ho = Math.floor((h + 2 * p.padding[0] - kh) / p.stride[0]) + 1,
        wo = Math.floor((w + 2 * p.padding[1] - kw) / p.stride[1]) + 1;
      const gys = [n, o, ho, wo];
      const x = rand(size(xs)),
        wt = rand(size(ws)),
        gy = rand(size(gys));
      fourWide(`conv2d ${label}`, (o / p.groups) % 4 === 0, () =>
        parity("conv2d", label, sumTol(cg * kh * kw), [x, wt], (b, [a, c]) => [b.conv2d(a!, xs, c!, ws, p)]),
      );
      fourWide(`conv2dBackwardInput ${label}`, cg % 4 === 0, () =>
        parity("conv2dBackwardInput", label, sumTol(o * kh * kw), [gy, wt], (b, [a, c]) => [
          b.conv2dBackwardInput(a!, gys, c!, ws, xs, p),
        ]),
      );
      fourWide(`conv2dBackwardWeight ${label}`, (o / p.groups) % 4 === 0, () =>
        parity("conv2dBackwardWeight", label, sumTol(n * ho * wo), [x, gy], (b, [a, c]) => [
          b.conv2dBackwardWeight(a!, xs, c!, gys, ws, p),
        ]),
      );
    }
  });

  test("upsampleNearest and poolSum", () => {
    parity("upsampleNearest", "x2", EXACT, [rand(2 * 3 * 4 * 5)], (b, [s]) => [b.upsampleNearest(s!, [2, 3, 4, 5], 2)]);
    parity("poolSum", "k2 avg", sumTol(4), [rand(2 * 3 * 4 * 6)], (b, [s]) => [b.poolSum(s!, [2, 3, 4, 6], 2, 0.25)]);
  });

  /**
   * Attention forward (output, log-sum-exp) and backward (dq, dk, dv) on both backends with the same
   * random q, k, v (and mask, where `masked`: values over 2 become -1e9); `afterForward` runs between.
   */
  function attentionParity(label: string, p: AttentionParams, masked: boolean, afterForward?: () => void): void {
    const q = rand(p.batch * p.lq * p.d),
      k = rand(p.batch * p.lk * p.d),
      v = rand(p.batch * p.lk * p.dv);
    const maskLen = Math.max((p.batch - 1) * p.maskStrideB + (p.lq - 1) * p.maskStrideQ + p.lk, 1);
    const mask = masked ? rand(maskLen).map((x) => (x > 2 ? -1e9 : x)) : null;
    const tol = sumTol(p.lk * Math.max(p.d, p.dv));
    parity("attention", label, tol, [q, k, v, mask], (b, [a, c, e, m]) => {
      const r = b.attention(a!, c!, e!, m ?? null, p);
      return [r.o, r.lse];
    });
    afterForward?.();
    const fw = cpuBackend.attention(q.slice(), k.slice(), v.slice(), mask ? mask.slice() : null, p);
    const o = cpuBackend.toHost(fw.o),
      lse = cpuBackend.toHost(fw.lse),
      gO = rand(o.length);
    parity("attentionBackward", label, tol, [q, k, v, mask, o, lse, gO], (b, [a, c, e, m, oo, l, g]) => {
      const r = b.attentionBackward(a!, c!, e!, m ?? null, oo!, l!, g!, p, null);
      return [r.dq, r.dk, r.dv];
    });
  }

  test("attention forward and backward: heads, causal, masks, lq != lk", () => {
    const cases: [string, AttentionParams, boolean][] = [
      [
        "plain",
        { batch: 2, lq: 5, lk: 7, d: 4, dv: 3, scale: 0.5, causal: false, maskStrideB: 0, maskStrideQ: 0 },
        false,
      ],
      [
        "causal",
        { batch: 2, lq: 6, lk: 6, d: 4, dv: 4, scale: 0.5, causal: true, maskStrideB: 0, maskStrideQ: 0 },
        false,
      ],
      [
        "mask per item and row",
        { batch: 2, lq: 3, lk: 5, d: 2, dv: 3, scale: 0.7, causal: false, maskStrideB: 15, maskStrideQ: 5 },
        true,
      ],
      [
        "mask broadcast rows",
        { batch: 2, lq: 3, lk: 5, d: 2, dv: 3, scale: 0.7, causal: false, maskStrideB: 5, maskStrideQ: 0 },
        true,
      ],
      [
        "2 heads",
        { batch: 4, lq: 5, lk: 3, d: 4, dv: 2, scale: 0.5, causal: false, maskStrideB: 0, maskStrideQ: 0, heads: 2 },
        false,
      ],
      [
        "2 heads causal lq<lk",
        { batch: 4, lq: 3, lk: 5, d: 2, dv: 2, scale: 0.5, causal: true, maskStrideB: 0, maskStrideQ: 0, heads: 2 },
        false,
      ],
    ];
    for (const [label, p, masked] of cases) attentionParity(label, p, masked);
  });

  test("attention over the score limit: query rows in blocks on the GPU, joined and summed there", () => {
    // the limit lowered to 2 rows of scores per block: every case runs blocked, the 19-row one in 10
    // blocks (two rounds of joining, 8 blocks per kernel); causal and per-row masks move with the block
    const cases: [string, AttentionParams, boolean][] = [
      [
        "plain",
        { batch: 2, lq: 5, lk: 7, d: 4, dv: 3, scale: 0.5, causal: false, maskStrideB: 0, maskStrideQ: 0 },
        false,
      ],
      [
        "causal lq>lk",
        { batch: 2, lq: 7, lk: 5, d: 3, dv: 3, scale: 0.5, causal: true, maskStrideB: 0, maskStrideQ: 0 },
        false,
      ],
      [
        "mask per item and row, 19 rows",
        { batch: 2, lq: 19, lk: 5, d: 2, dv: 3, scale: 0.7, causal: false, maskStrideB: 95, maskStrideQ: 5 },
        true,
      ],
      [
        "mask per row broadcast over items",
        { batch: 2, lq: 4, lk: 5, d: 2, dv: 3, scale: 0.7, causal: false, maskStrideB: 0, maskStrideQ: 5 },
        true,
      ],
      [
        "2 heads causal, mask broadcast rows",
        { batch: 4, lq: 5, lk: 5, d: 2, dv: 4, scale: 0.5, causal: true, maskStrideB: 5, maskStrideQ: 0, heads: 2 },
        true,
      ],
    ];
    try {
      for (const [label, p, masked] of cases) {
        setAttentionScoreLimit(2 * p.batch * p.lk);
        const blocks = Math.ceil(p.lq / 2);
        const calls = (): number => gpujsReport().stats?.gpu.attention ?? 0;
        const c0 = calls();
        // whole rows: 4 kernel calls (scores, lse, probabilities, output); blocked: those per block + copies + joins
        attentionParity(`blocked ${label}`, p, masked, () =>
          assert.ok(calls() - c0 >= 4 * blocks, `${label}: ${calls() - c0} attention kernels for ${blocks} blocks`),
        );
      }
    } finally {
      setAttentionScoreLimit(null);
    }
  });

  test("group norm and layer norm, forward and backward, affine or not, with silu", () => {
    const gp = { n: 2, c: 6, s: 10, groups: 3, eps: 1e-5 };
    const x = rand(2 * 6 * 10),
      w = rand(6),
      bb = rand(6),
      gy = rand(120);
    for (const affine of [true, false]) {
      for (const silu of [false, true]) {
        const p = { ...gp, silu };
        parity(
          "groupNorm",
          `affine=${affine} silu=${silu}`,
          sumTol(20),
          affine ? [x, w, bb] : [x, null, null],
          (b, [a, c, e]) => {
            const r = b.groupNorm(a!, c ?? null, e ?? null, p);
            return [r.y, r.mean, r.rstd];
          },
        );
      }
      const fw = cpuBackend.groupNorm(x.slice(), affine ? w.slice() : null, affine ? bb.slice() : null, gp);
      const mean = Float32Array.from(cpuBackend.toHost(fw.mean)),
        rstd = Float32Array.from(cpuBackend.toHost(fw.rstd));
      parity(
        "groupNormBackward",
        `affine=${affine}`,
        sumTol(40),
        [x, affine ? w : null, gy, mean, rstd],
        (b, [a, c, g, m, r]) => {
          const o = b.groupNormBackward(a!, c ?? null, g!, m!, r!, gp, affine);
          return [o.dx, o.dw, o.db];
        },
      );
    }
    const lp = { rows: 7, d: 9, eps: 1e-5 };
    const lx = rand(63),
      lw = rand(9),
      lb = rand(9),
      lg = rand(63);
    for (const affine of [true, false]) {
      parity("layerNorm", `affine=${affine}`, sumTol(9), affine ? [lx, lw, lb] : [lx, null, null], (b, [a, c, e]) => {
        const r = b.layerNorm(a!, c ?? null, e ?? null, lp);
        return [r.y, r.mean, r.rstd];
      });
      const fw = cpuBackend.layerNorm(lx.slice(), affine ? lw.slice() : null, affine ? lb.slice() : null, lp);
      const mean = Float32Array.from(cpuBackend.toHost(fw.mean)),
        rstd = Float32Array.from(cpuBackend.toHost(fw.rstd));
      parity(
        "layerNormBackward",
        `affine=${affine}`,
        sumTol(9),
        [lx, affine ? lw : null, lg, mean, rstd],
        (b, [a, c, g, m, r]) => {
          const o = b.layerNormBackward(a!, c ?? null, g!, m!, r!, lp, affine);
          return [o.dx, o.dw, o.db];
        },
      );
    }
  });

  test("adamUpdate: AdamW (decoupled) and Adam with L2, step 3", () => {
    for (const decoupled of [true, false]) {
      const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled, t: 3 };
      const m = rand(300, -0.1, 0.1),
        v = rand(300, 0, 0.01);
      parity(
        "adamUpdate",
        `decoupled=${decoupled}`,
        { atol: 1e-7, rtol: 1e-6 },
        [rand(300), rand(300), m, v],
        (b, [p, g, mm, vv]) => {
          const r = b.adamUpdate(p!, g!, mm!, vv!, 300, h);
          return [r.p, r.m, r.v];
        },
      );
    }
  });

  test("over 2^24 elements: fill, cast, unary, binary and where run chunk by chunk on the GPU", () => {
    const N = 2 ** 24 + 5000; // one full chunk and a partial one
    const x = rand(N, -4, 4),
      y = rand(N, 0.5, 3),
      c = rand(N).map((v) => (v > 0 ? 1 : 0));
    const one = Float32Array.of(0.75);
    parity("fill", "2^24 + 5000", EXACT, [], (b) => [b.fill("float32", N, 1.25)]);
    parity("cast", "f32 copy, 2^24 + 5000", EXACT, [x], (b, [s]) => [b.cast(s!, "float32", "float32")]);
    parity("unary", "exp, 2^24 + 5000", SPECIAL, [x], (b, [s]) => [b.unary("exp", s!)]);
    // a chunked result feeds the next chunked kernel without leaving the GPU
    // two roundings (1 ulp each on a GPU that divides by reciprocal), of values up to 8 in size
    parity(
      "binary",
      "div full / full then add a single element, 2^24 + 5000",
      { atol: 1e-6, rtol: 2 ** -23 },
      [x, y, one],
      (b, [p, q, r]) => [b.binary("add", b.binary("div", p!, [N], q!, [N], [N]), [N], r!, [1], [N])],
    );
    parity("where", "full, full, single element, 2^24 + 5000", EXACT, [c, x, one], (b, [cc, p, r]) => [
      b.where(cc!, [N], p!, [N], r!, [1], [N]),
    ]);
  });

  const TINY = {
    sample_size: 4,
    block_out_channels: [8, 16],
    layers_per_block: 1,
    down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim: 6,
    attention_head_dim: 2,
    norm_num_groups: 4,
  };
  const onBackend = <T>(name: string, fn: () => T): T => {
    setDefaultBackend(name);
    try {
      return fn();
    } finally {
      setDefaultBackend("cpu");
    }
  };
  const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
    let m = 0,
      s = 0;
    for (let i = 0; i < a.length; i++) {
      m = Math.max(m, Math.abs(a[i]! - b[i]!));
      s = Math.max(s, Math.abs(b[i]!));
    }
    return m / (s || 1);
  };

  test("tiny UNet forward: gpujs vs cpu within 1e-5 of the output's largest value", () => {
    const run = (name: string): Float32Array =>
      onBackend(name, () => {
        const unet = withInitGenerator(new Generator(7), () => UNet2DConditionModel.fromConfig(TINY));
        const x = randn([2, 4, 4, 4], { generator: new Generator(8) }),
          ctx = randn([2, 5, 6], { generator: new Generator(9) });
        assert.is(x.backend.name, name);
        return Float32Array.from(noGrad(() => unet.forward(x, 321, ctx)).data);
      });
    const c = run("cpu"),
      g = run("gpujs");
    const r = maxRel(g, c);
    results.push({ kernel: "tiny UNet forward (max |diff| / max |cpu|)", worst: r });
    assert.ok(r < 1e-5, `tiny UNet forward differs by ${r} of its largest value`);
  });

  test("one Custom Diffusion K/V training step (loss, backward, Adam on to_k/to_v): gpujs vs cpu", () => {
    const step = (name: string): { loss: number; weights: Float32Array[] } =>
      onBackend(name, () => {
        const unet = withInitGenerator(new Generator(11), () => UNet2DConditionModel.fromConfig(TINY));
        for (const p of unet.parameters()) p.requiresGrad_(false);
        const trained: Tensor[] = [];
        for (const [, a] of unet.crossAttentionLayers()) {
          a.setProcessor(new CustomDiffusionAttnProcessor());
          trained.push(a.to_k.weight.requiresGrad_(true), a.to_v.weight.requiresGrad_(true));
        }
        const opt = new Adam(trained, { lr: 1e-3 });
        const x = randn([2, 4, 4, 4], { generator: new Generator(12) }),
          ctx = randn([2, 5, 6], { generator: new Generator(13) });
        const target = randn([2, 4, 4, 4], { generator: new Generator(14) });
        const loss = mseLoss(unet.forward(x, 500, ctx), target);
        loss.backward();
        opt.step();
        for (const w of trained) assert.is(w.backend.name, name);
        return { loss: loss.item(), weights: trained.map((w) => Float32Array.from(w.data)) };
      });
    const c = step("cpu"),
      g = step("gpujs");
    const dl = Math.abs(g.loss - c.loss) / Math.abs(c.loss);
    assert.ok(dl < 1e-5, `loss ${g.loss} vs ${c.loss}`);
    // Adam's first step moves each weight by about lr: compare the updates with 1e-3 of lr
    let worst = 0;
    c.weights.forEach((cw, i) => (worst = Math.max(worst, maxRel(g.weights[i]!, cw))));
    results.push(
      { kernel: "K/V step: loss (rel)", worst: dl },
      { kernel: "K/V step: updated to_k/to_v (max |diff| / max |w|)", worst },
    );
    assert.ok(worst < 1e-5, `updated weights differ by ${worst}`);
  });

  test("scratch scopes: release deletes what the scope (or a closed inner one) made, nothing else", () => {
    const g = getBackend("gpujs");
    const before = g.fill("float32", 64, 1),
      uploaded = g.fromHost(rand(64));
    const outer = g.beginScratch(),
      inner = g.beginScratch();
    const kept = g.fill("float32", 64, 2),
      dropped = g.unary("neg", uploaded);
    const r0 = gpujsReport().stats!.releasedTextures;
    inner.release(dropped);
    assert.is(gpujsReport().stats!.releasedTextures - r0, 1, "the inner scope deletes its own result");
    assert.throws(() => g.toHost(dropped), /released/);
    inner.release(before); // made before any scope: ignored
    inner.release(uploaded); // an upload of host data: ignored
    inner.end();
    inner.release(kept); // closed: ignored
    assert.is(gpujsReport().stats!.releasedTextures - r0, 1);
    assert.equal(Array.from(g.toHost(kept)).slice(0, 2), [2, 2]);
    outer.release(kept);
    assert.is(gpujsReport().stats!.releasedTextures - r0, 2, "the outer scope deletes what the inner one kept");
    outer.release(kept); // twice: ignored
    outer.end();
    assert.equal(Array.from(g.toHost(before)).slice(0, 2), [1, 1]);
    assert.is(g.toHost(uploaded).length, 64);
  });

  test("backward deletes consumed gradient textures as it goes (scratch scope); gradients match the cpu", () => {
    const run = (name: string): { gx: Float32Array; gw: Float32Array; released: number } =>
      onBackend(name, () => {
        const x = randn([8, 16], { generator: new Generator(21) }).requiresGrad_(true);
        const w = randn([16, 16], { generator: new Generator(22) })
          .mul(0.25)
          .requiresGrad_(true);
        let h = x;
        for (let i = 0; i < 4; i++) h = tanh(matmul(h, w));
        const loss = sum(mul(h, h));
        const r0 = gpujsReport().stats?.releasedTextures ?? 0;
        loss.backward();
        // the leaf gradients outlive the pass and stay readable
        return {
          gx: Float32Array.from(x.grad!.data),
          gw: Float32Array.from(w.grad!.data),
          released: (gpujsReport().stats?.releasedTextures ?? 0) - r0,
        };
      });
    const c = run("cpu"),
      g = run("gpujs");
    const worst = Math.max(maxRel(g.gx, c.gx), maxRel(g.gw, c.gw));
    results.push({ kernel: "backward with early release: grads (max |diff| / max |cpu|)", worst });
    assert.ok(worst < 1e-5, `gradients differ by ${worst}`);
    // 4 x (tanh, matmul) + mul + sum: most intermediate gradients are consumed inside the pass
    assert.ok(g.released >= 8, `only ${g.released} textures were released during backward`);
    process.stdout.write(
      `\n[gpujs parity] backward released ${g.released} textures early; live now ${gpujsReport().stats!.liveTextures}\n`,
    );
  });

  test("report", () => {
    const r = gpujsReport();
    const s = r.stats!;
    process.stdout.write(
      `\n[gpujs parity] renderer: ${r.probe.renderer}; textures ${r.packed ? "packed (four values per texel)" : "one value per texel"}\n[gpujs parity] ${results.length} comparisons; worst error / tolerance per kernel:\n`,
    );
    const byKernel = new Map<string, number>();
    for (const { kernel, worst } of results) {
      const k = kernel.split(" ")[0]!;
      if (!kernel.includes(":") && !kernel.startsWith("tiny")) byKernel.set(k, Math.max(byKernel.get(k) ?? 0, worst));
      else process.stdout.write(`  ${kernel}: ${worst.toExponential(2)}\n`);
    }
    process.stdout.write(`  ${[...byKernel.entries()].map(([k, w]) => `${k} ${w.toFixed(2)}`).join(", ")}\n`);
    process.stdout.write(
      `[gpujs parity] kernels compiled ${s.compiled}; uploads ${s.uploads} (${s.uploadMs.toFixed(0)} ms), downloads ${s.downloads} (${s.downloadMs.toFixed(0)} ms); textures released early ${s.releasedTextures}, live ${s.liveTextures}; host fallbacks: ${JSON.stringify(s.host)}\n`,
    );
  });
}

test.run();
