// The GPU programs the gpujs backend composes its kernels from: elementwise expressions, broadcast
// reads, batched matmul over (item, row, col) views, row statistics (log-sum-exp, sums), strided
// copies and the attention and norm pieces.
import type { Shape } from "../../shape.ts";
import type { AttentionParams, BinaryOp, ReduceOp, UnaryOp } from "../backend.ts";
import { broadcastStrides, coalesce } from "../cpu/elementwise.ts";
import { coordLines, f, MAX_GPU_ELEMENTS, offsetExpr } from "./device.ts";
import type { GpuStorage } from "./device.ts";

type S = GpuStorage;
/** Runs one GPU program: `body` over `n` outputs with the named arguments. */
export type Run = (name: string, body: string[], n: number, args: [string, S | number][]) => S;

// ---- elementwise expressions
export const UN: Record<UnaryOp, (x: string) => string> = {
  neg: (x) => `-${x}`,
  exp: (x) => `exp32(${x})`,
  log: (x) => `log32(${x})`,
  sqrt: (x) => `Math.sqrt(${x})`,
  rsqrt: (x) => `1.0 / Math.sqrt(${x})`,
  abs: (x) => `Math.abs(${x})`,
  sign: (x) => `(${x} > 0.0 ? 1.0 : (${x} < 0.0 ? -1.0 : ${x}))`,
  tanh: (x) => `tanh32(${x})`,
  sigmoid: (x) => `1.0 / (1.0 + exp32(-${x}))`,
  relu: (x) => `(${x} > 0.0 ? ${x} : 0.0)`,
  step: (x) => `(${x} > 0.0 ? 1.0 : 0.0)`,
  silu: (x) => `${x} / (1.0 + exp32(-${x}))`,
  gelu: (x) => `0.5 * ${x} * (1.0 + erf32(${x} * 0.7071067811865476))`,
  gelu_tanh: (x) => `0.5 * ${x} * (1.0 + tanh32(0.7978845608028654 * (${x} + 0.044715 * ${x} * ${x} * ${x})))`,
  erf: (x) => `erf32(${x})`,
  sin: (x) => `sincos32(${x}, 0.0)`,
  cos: (x) => `sincos32(${x}, 1.0)`,
  square: (x) => `${x} * ${x}`,
  reciprocal: (x) => `1.0 / ${x}`,
};
export const BIN: Record<BinaryOp, (x: string, y: string) => string> = {
  add: (x, y) => `${x} + ${y}`,
  sub: (x, y) => `${x} - ${y}`,
  mul: (x, y) => `${x} * ${y}`,
  div: (x, y) => `${x} / ${y}`,
  pow: (x, y) => `pow32(${x}, ${y})`,
  // NaN propagates (as on cpu and in torch): both comparisons fail only when one side is NaN, and then
  // x + y is NaN; GLSL's max/min leave NaN undefined
  maximum: (x, y) => `(${x} > ${y} ? ${x} : (${x} <= ${y} ? ${y} : ${x} + ${y}))`,
  minimum: (x, y) => `(${x} < ${y} ? ${x} : (${x} >= ${y} ? ${y} : ${x} + ${y}))`,
  lt: (x, y) => `(${x} < ${y} ? 1.0 : 0.0)`,
  le: (x, y) => `(${x} <= ${y} ? 1.0 : 0.0)`,
  gt: (x, y) => `(${x} > ${y} ? 1.0 : 0.0)`,
  ge: (x, y) => `(${x} >= ${y} ? 1.0 : 0.0)`,
  eq: (x, y) => `(${x} == ${y} ? 1.0 : 0.0)`,
  ne: (x, y) => `(${x} != ${y} ? 1.0 : 0.0)`,
  silu_grad: (x, y) => `${x} * (1.0 / (1.0 + exp32(-${y}))) * (1.0 + ${y} * (1.0 - 1.0 / (1.0 + exp32(-${y}))))`,
  gelu_grad: (x, y) =>
    `${x} * (0.5 * (1.0 + erf32(${y} * 0.7071067811865476)) + ${y} * exp32(-0.5 * ${y} * ${y}) * 0.3989422804014327)`,
  sigmoid_grad: (x, y) => `${x} * ${y} * (1.0 - ${y})`,
  tanh_grad: (x, y) => `${x} * (1.0 - ${y} * ${y})`,
};

/**
 * The running max (or min) `acc` after value `v`, NaN propagating as on the cpu: `acc` is kept when `v`
 * does not beat it (ties keep the earlier value, as the cpu's loop does), and where neither comparison
 * holds one of them is NaN and so is their sum. GLSL's max/min leave NaN undefined.
 */
export function extremum(op: "max" | "min", acc: string, v: string): string {
  return op === "max"
    ? `(${v} <= ${acc} ? ${acc} : (${v} > ${acc} ? ${v} : ${acc} + ${v}))`
    : `(${v} >= ${acc} ? ${acc} : (${v} < ${acc} ? ${v} : ${acc} + ${v}))`;
}

/** Reads of operands broadcast to `outShape`: one index expression per operand, coordinate lines shared. */
export function broadcastReads(shapes: Shape[], outShape: Shape): { lines: string[]; idx: string[] } {
  const n = outShape.reduce((a, b) => a * b, 1);
  const strides = shapes.map((s) => broadcastStrides(s, outShape));
  const { shape, strides: cs } = coalesce(outShape, strides);
  const lines: string[] = [];
  const idx: string[] = [];
  let coords = false;
  shapes.forEach((s, k) => {
    const size = s.reduce((a, b) => a * b, 1);
    if (size === n) idx.push("i");
    else if (size === 1) idx.push("0.0");
    else {
      coords = true;
      idx.push(offsetExpr("c", cs[k]!));
    }
  });
  if (coords) lines.push(...coordLines("i", shape, "c"));
  return { lines, idx };
}

// ---- matmul on device: operands as (item, row, col) views with heads packed per item
export interface View {
  /** item = seq * h + head: offset seq * seq + head * head */
  seq: number;
  head: number;
  h: number;
  row: number;
  col: number;
}
export const flatView = (itemStride: number, row: number, col: number): View => ({
  seq: itemStride,
  head: 0,
  h: 1,
  row,
  col,
});
export const itemOff = (v: View, item: string, p: string): string[] =>
  v.h === 1
    ? [`const ${p} = ${item} * ${f(v.seq)};`]
    : [
        `const ${p}s = idiv(${item}, ${f(v.h)});`,
        `const ${p} = ${p}s * ${f(v.seq)} + (${item} - ${p}s * ${f(v.h)}) * ${f(v.head)};`,
      ];

/** The programs that run on the device through `run`. */
export function programs(run: Run) {
  /**
   * out[item, i, j] = epilogue(sum_k A[item, i, k] B[item, k, j]) for `items` items of (m x n); the output
   * is written with heads `outH` packed: memory order (item / outH, i, item % outH, j).
   */
  function mm(
    name: string,
    a: S,
    av: View,
    b: S,
    bv: View,
    items: number,
    m: number,
    k: number,
    n: number,
    outH = 1,
    extra: [string, S | number][] = [],
    epi?: (acc: string) => string[],
  ): S {
    const body: string[] = ["const i0 = this.thread.x;"];
    if (outH === 1)
      body.push(...coordLines("i0", [items, m, n], "o"), "const item = o0;", "const r = o1;", "const cc = o2;");
    else
      body.push(
        ...coordLines("i0", [items / outH, m, outH, n], "o"),
        `const item = o0 * ${f(outH)} + o2;`,
        "const r = o1;",
        "const cc = o3;",
      );
    body.push(...itemOff(av, "item", "ao"), ...itemOff(bv, "item", "bo"));
    body.push(`const ab = ao + r * ${f(av.row)};`, `const bb = bo + cc * ${f(bv.col)};`, "let acc = 0.0;");
    body.push(`for (let t = 0; t < ${k}; t++) { acc += a[ab + t * ${f(av.col)}] * b[bb + t * ${f(bv.row)}]; }`);
    if (epi) body.push(...epi("acc"));
    else body.push("return acc;");
    return run(name, body, items * m * n, [["a", a], ["b", b], ...extra]);
  }

  // ---- row statistics: rows of `len` elements at base(row) + j * stride
  /** per row: max, then log(sum(exp(x - max))) + max (or -inf for an all -inf row) */
  function rowLse(
    name: string,
    x: S,
    rows: number,
    len: number,
    rowShape: number[],
    base: (p: string) => string,
    stride: number,
  ): S {
    const body = ["const i = this.thread.x;", ...coordLines("i", rowShape, "c"), `const base = ${base("c")};`];
    body.push(
      "let mx = -1.0 / 0.0;",
      `for (let j = 0; j < ${len}; j++) { const v = x[base + j * ${f(stride)}]; mx = ${extremum("max", "mx", "v")}; }`,
    );
    body.push("if (mx == -1.0 / 0.0) { return -1.0 / 0.0; }");
    body.push(
      "let s = 0.0;",
      `for (let j = 0; j < ${len}; j++) { s += exp32(x[base + j * ${f(stride)}] - mx); }`,
      "return mx + log32(s);",
    );
    return run(name, body, rows, [["x", x]]);
  }

  const softmaxGpu = (x: S, shape: Shape, axis: number, log: boolean): S => {
    let outer = 1,
      inner = 1;
    for (let d = 0; d < axis; d++) outer *= shape[d]!;
    for (let d = axis + 1; d < shape.length; d++) inner *= shape[d]!;
    const len = shape[axis]!;
    const lse = rowLse("softmax", x, outer * inner, len, [outer, inner], (c) => `c0 * ${f(len * inner)} + c1`, inner);
    const body = [
      "const i = this.thread.x;",
      ...coordLines("i", [outer, len, inner], "c"),
      `const row = c0 * ${f(inner)} + c2;`,
      "const l = lse[row];",
    ];
    body.push(log ? "return x[i] - l;" : "return exp32(x[i] - l);");
    return run("softmax", body, x.size, [
      ["x", x],
      ["lse", lse],
    ]);
  };

  /** sums of `len` elements per output (strided rows), in two passes when long */
  function rowSum(
    name: string,
    x: S,
    rows: number,
    len: number,
    rowShape: number[],
    base: (p: string) => string,
    stride: number,
    op: ReduceOp = "sum",
  ): S {
    const init = op === "sum" ? "0.0" : op === "max" ? "-1.0 / 0.0" : "1.0 / 0.0";
    const acc = (v: string): string => (op === "sum" ? `s += ${v};` : `const v = ${v}; s = ${extremum(op, "s", "v")};`);
    const CH = 1024;
    if (len <= 2 * CH || rows * Math.ceil(len / CH) > MAX_GPU_ELEMENTS) {
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", rowShape, "c"),
        `const base = ${base("c")};`,
        `let s = ${init};`,
      ];
      body.push(`for (let j = 0; j < ${len}; j++) { ${acc(`x[base + j * ${f(stride)}]`)} }`, "return s;");
      return run(name, body, rows, [["x", x]]);
    }
    const parts = Math.ceil(len / CH);
    const body = [
      "const i = this.thread.x;",
      `const row = idiv(i, ${f(parts)});`,
      `const part = i - row * ${f(parts)};`,
      ...coordLines("row", rowShape, "c"),
    ];
    body.push(`const base = ${base("c")};`, `let s = ${init};`, `const j0 = part * ${f(CH)};`);
    body.push(
      `for (let t = 0; t < ${CH}; t++) { const j = j0 + t; if (j < ${f(len)}) { ${acc(`x[base + j * ${f(stride)}]`)} } }`,
      "return s;",
    );
    const partial = run(name, body, rows * parts, [["x", x]]);
    return rowSum(name, partial, rows, parts, [rows], (c) => `c0 * ${f(parts)}`, 1, op);
  }

  /** A strided copy: out[i] = x[base + sum coord_d * stride_d] over outShape, or `fillv` where `inRange` fails. */
  function gatherView(
    name: string,
    x: S,
    outShape: number[],
    strides: number[],
    base: number,
    guard?: { lo: number[]; hi: number[] },
    fill = 0,
  ): S {
    const n = outShape.reduce((a, b) => a * b, 1);
    const {
      shape,
      strides: [st],
    } = coalesce(outShape, [strides]);
    if (!guard) {
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", shape, "c"),
        `return x[${offsetExpr("c", st!, base)}];`,
      ];
      return run(name, body, n, [["x", x]]);
    }
    const body = ["const i = this.thread.x;", ...coordLines("i", outShape, "c")];
    const conds = outShape.map((_, d) => `c${d} < ${f(guard.lo[d]!)} || c${d} >= ${f(guard.hi[d]!)}`);
    body.push(`if (${conds.join(" || ")}) { return fv; }`, `return x[${offsetExpr("c", strides, base)}];`);
    return run(name, body, n, [
      ["x", x],
      ["fv", fill],
    ]);
  }

  // ---- attention pieces
  function qkView(p: AttentionParams, rows: number, d: number): View {
    const Hh = p.heads ?? 1;
    return Hh === 1 ? flatView(rows * d, d, 1) : { seq: rows * Hh * d, head: d, h: Hh, row: Hh * d, col: 1 };
  }
  function vView(p: AttentionParams): View {
    const Hh = p.heads ?? 1;
    return Hh === 1
      ? flatView(p.lk * p.dv, p.dv, 1)
      : { seq: p.lk * Hh * p.dv, head: p.dv, h: Hh, row: Hh * p.dv, col: 1 };
  }
  /**
   * scores scale q k^T + mask (and -inf where causal hides key cc from query row r: cc > r + causalShift,
   * which is lk - lq for whole rows and moves with a block's first row) per item, and their row log-sum-exp
   */
  function attnScores(
    q: S,
    k: S,
    mask: S | null,
    p: AttentionParams,
    withLse = true,
    causalShift = p.lk - p.lq,
  ): { S: S; lse: S } {
    const { batch, lq, lk, d } = p;
    const kv = qkView(p, lk, d);
    const epi = (acc: string): string[] => {
      const lines = [`let s = ${acc} * sc;`];
      if (mask) lines.push(`s += mk[item * ${f(p.maskStrideB)} + r * ${f(p.maskStrideQ)} + cc];`);
      if (p.causal) lines.push(`if (cc > r + (${f(causalShift)})) { s = -1.0 / 0.0; }`);
      lines.push("return s;");
      return lines;
    };
    const extra: [string, S | number][] = [["sc", p.scale]];
    if (mask) extra.push(["mk", mask]);
    const sc = mm("attention", q, qkView(p, lq, d), k, { ...kv, row: 1, col: kv.row }, batch, lq, d, lk, 1, extra, epi);
    const lse = withLse ? rowLse("attention", sc, batch * lq, lk, [batch * lq], (c) => `c0 * ${f(lk)}`, 1) : sc;
    return { S: sc, lse };
  }
  function probs(sc: S, lse: S, p: AttentionParams): S {
    const body = [
      "const i = this.thread.x;",
      `const row = idiv(i, ${f(p.lk)});`,
      "const l = lse[row];",
      "if (l == -1.0 / 0.0) { return 0.0; }",
      "return exp32(s[i] - l);",
    ];
    return run("attention", body, sc.size, [
      ["s", sc],
      ["lse", lse],
    ]);
  }
  function normStats(name: string, x: S, rows: number, len: number, eps: number): { mean: S; rstd: S } {
    const mean = run(
      name,
      [
        "const base = this.thread.x * " + f(len) + ";",
        "let t = 0.0;",
        `for (let j = 0; j < ${len}; j++) { t += x[base + j]; }`,
        `return t / ${f(len)};`,
      ],
      rows,
      [["x", x]],
    );
    const rstd = run(
      name,
      [
        "const r = this.thread.x;",
        `const base = r * ${f(len)};`,
        "const m = mu[r];",
        "let t = 0.0;",
        `for (let j = 0; j < ${len}; j++) { const e = x[base + j] - m; t += e * e; }`,
        `return 1.0 / Math.sqrt(t / ${f(len)} + eps);`,
      ],
      rows,
      [
        ["x", x],
        ["mu", mean],
        ["eps", eps],
      ],
    );
    return { mean, rstd };
  }

  return { mm, rowLse, softmaxGpu, rowSum, gatherView, qkView, vView, attnScores, probs, normStats };
}
