// Four outputs per thread: conv2d, its two gradients and matmul computed four channels (or columns) at
// a time. Each thread keeps four sums and reads the operand they share (the weight, gy, B) as one vec4
// texel of a repacked copy, so a multiply-add costs half a texture read instead of two; where the summed
// axis is a multiple of 4 the other operand is repacked too and one of its reads feeds sixteen
// multiply-adds. Texture reads are what a fragment shader pays for most (on SwiftShader, and in memory
// traffic on a GPU). The result comes out as four floats per texel and one more pass unpacks it into
// the backend's one-value-per-texel layout. Each sum is float32 in the one-output kernels' term order,
// or in blocks of four terms where the other operand is packed: within the same parity tolerances.
import { coordLines, f, stridesOf } from "./codegen.ts";
import { MAX_GPU_ELEMENTS } from "./device.ts";
import type { GpuStorage } from "./device.ts";
import type { Run, View } from "./programs.ts";
import { itemOff } from "./programs.ts";

type S = GpuStorage;
/** Runs a program returning four values over `texels` threads: an ArrayTexture(4), released by the caller. */
export type Run4 = (name: string, body: string[], texels: number, args: [string, S | number][]) => S;

/** Conv2d geometry as `geometry()` of cpu/conv.ts gives it. */
export interface ConvGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  cg: number;
  og: number;
  kh: number;
  kw: number;
  ho: number;
  wo: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
}

const fits = (...sizes: number[]): boolean => sizes.every((s) => s > 0 && s <= MAX_GPU_ELEMENTS);

/** s_u += a * b[u] for the four sums */
const fma4 = (a: string, b: string): string =>
  `s0 += ${a} * ${b}[0]; s1 += ${a} * ${b}[1]; s2 += ${a} * ${b}[2]; s3 += ${a} * ${b}[3];`;
const SUMS = ["let s0 = 0.0;", "let s1 = 0.0;", "let s2 = 0.0;", "let s3 = 0.0;"];

/**
 * The inner step of a sum read four terms at a time: `av` (vec4 of terms v = 0..3 of one operand) times
 * the vec4 `b(v)` of the other operand's four outputs per term.
 */
function block4(av: string, b: (v: number) => string): string[] {
  const out: string[] = [];
  for (let v = 0; v < 4; v++) out.push(`const b${v} = ${b(v)};`, fma4(`${av}[${v}]`, `b${v}`));
  return out;
}

/** The vec4 programs on `run` (one value per thread) and `run4` (four). */
export function vec4Programs(run: Run, run4: Run4) {
  /** texel p of `shape` (coordinates c0..) holds x[offset(u)] for u = 0..3 */
  function pack(x: S, shape: number[], offset: (u: number) => string): S {
    const texels = shape.reduce((a, b) => a * b, 1);
    const body = ["const i = this.thread.x;", ...coordLines("i", shape, "c")];
    for (let u = 0; u < 4; u++) body.push(`const v${u} = x[${offset(u)}];`);
    body.push("return [v0, v1, v2, v3];");
    return run4("pack4", body, texels, [["x", x]]);
  }

  /** x of shape (n, c, h, w) four channels per texel: texel (b, c4, y, x) holds x[b, 4 c4 + v, y, x] */
  const channels4 = (x: S, n: number, c: number, h: number, w: number): S =>
    pack(x, [n, c / 4, h, w], (v) => `((c0 * ${f(c)} + c1 * 4.0 + ${f(v)}) * ${f(h * w)}) + c2 * ${f(w)} + c3`);

  /**
   * Runs `body` (four sums per thread) and unpacks its result: the output of `shape` whose axis `axis`
   * the threads cover four at a time (texel coordinates: that axis divided by 4). `temps`, the packed
   * operands, are released once the program has run.
   */
  function four(
    name: string,
    body: string[],
    shape: number[],
    axis: number,
    args: [string, S][],
    temps: (S | null)[],
  ): S {
    const n = shape.reduce((a, b) => a * b, 1);
    const out4 = run4(name, body, n / 4, args);
    for (const t of temps) t?.release();
    const st = stridesOf(shape.map((d, k) => (k === axis ? d / 4 : d)));
    const texel = shape.map((_, k) => `${k === axis ? `idiv(c${k}, 4.0)` : `c${k}`} * ${f(st[k]!)}`).join(" + ");
    const unpackBody = [
      "const i = this.thread.x;",
      ...coordLines("i", shape, "c"),
      `const v = q[${texel}];`,
      `const ch = c${axis} - idiv(c${axis}, 4.0) * 4.0;`,
      "return ch == 0.0 ? v[0] : (ch == 1.0 ? v[1] : (ch == 2.0 ? v[2] : v[3]));",
    ];
    const out = run(name, unpackBody, n, [["q", out4]]);
    out4.release();
    return out;
  }

  /**
   * conv2d four output channels per thread; null where the output channels per group are not a
   * multiple of 4. Where the input channels per group are too, x is read four channels per texel.
   */
  function conv2d4(x: S, w: S, q: ConvGeometry): S | null {
    const o4 = q.og / 4;
    const n = q.n * q.o * q.ho * q.wo;
    if (q.og % 4 !== 0 || !fits(n, w.size)) return null;
    // wq[g, ci, ky, kx, o4] = w[g * og + 4 o4 + u, ci, ky, kx]
    const wq = pack(w, [q.o / q.og, q.cg, q.kh, q.kw, o4], (u) =>
      [`((c0 * ${f(q.og)} + c4 * 4.0 + ${f(u)}) * ${f(q.cg)} + c1) * ${f(q.kh * q.kw)}`, `c2 * ${f(q.kw)} + c3`].join(
        " + ",
      ),
    );
    const hw = q.h * q.w;
    const wAt = (ci: string): string => `wq[wb + ((${ci} * ${f(q.kh)} + ky) * ${f(q.kw)} + kx) * ${f(o4)}]`;
    const xq = q.cg % 4 === 0 ? channels4(x, q.n, q.c, q.h, q.w) : null;
    const body = [
      "const i = this.thread.x;",
      ...coordLines("i", [q.n, q.o / 4, q.ho, q.wo], "c"),
      `const g = idiv(c1, ${f(o4)});`,
      xq
        ? `const xb = (c0 * ${f(q.c / 4)} + g * ${f(q.cg / 4)}) * ${f(hw)};`
        : `const xb = (c0 * ${f(q.c)} + g * ${f(q.cg)}) * ${f(hw)};`,
      `const wb = g * ${f(q.cg * q.kh * q.kw * o4)} + c1 - g * ${f(o4)};`,
      `const y0 = c2 * ${f(q.sh)} - ${f(q.ph)};`,
      `const x0 = c3 * ${f(q.sw)} - ${f(q.pw)};`,
      ...SUMS,
      `for (let ci = 0; ci < ${xq ? q.cg / 4 : q.cg}; ci++) { for (let ky = 0; ky < ${q.kh}; ky++) { const iy = y0 + ky; if (iy >= 0.0 && iy < ${f(q.h)}) {`,
      `for (let kx = 0; kx < ${q.kw}; kx++) { const ix = x0 + kx; if (ix >= 0.0 && ix < ${f(q.w)}) {`,
      `const xv = xx[xb + ci * ${f(hw)} + iy * ${f(q.w)} + ix];`,
      ...(xq ? block4("xv", (v) => wAt(`(ci * 4.0 + ${f(v)})`)) : [`const wv = ${wAt("ci")};`, fma4("xv", "wv")]),
      "} } } } }",
      "return [s0, s1, s2, s3];",
    ];
    return four(
      "conv2d",
      body,
      [q.n, q.o, q.ho, q.wo],
      1,
      [
        ["xx", xq ?? x],
        ["wq", wq],
      ],
      [wq, xq],
    );
  }

  /**
   * conv2d's input gradient four input channels per thread; null where the input channels per group
   * are not a multiple of 4. Where the output channels per group are too, gy is read four channels per texel.
   */
  function conv2dBackwardInput4(gy: S, w: S, q: ConvGeometry): S | null {
    const c4 = q.cg / 4;
    const n = q.n * q.c * q.h * q.w;
    if (q.cg % 4 !== 0 || !fits(n, w.size)) return null;
    // wq[co, ky, kx, c4] = w[co, 4 c4 + u, ky, kx]
    const wq = pack(
      w,
      [q.o, q.kh, q.kw, c4],
      (u) => `((c0 * ${f(q.cg)} + c3 * 4.0 + ${f(u)}) * ${f(q.kh)} + c1) * ${f(q.kw)} + c2`,
    );
    const wAt = (co: string): string => `wq[((${co} * ${f(q.kh)} + ky) * ${f(q.kw)} + kx) * ${f(c4)} + ci4]`;
    const gq = q.og % 4 === 0 ? channels4(gy, q.n, q.o, q.ho, q.wo) : null;
    const og = gq ? q.og / 4 : q.og;
    const body = [
      "const i = this.thread.x;",
      ...coordLines("i", [q.n, q.c / 4, q.h, q.w], "c"),
      `const g = idiv(c1, ${f(c4)});`,
      `const ci4 = c1 - g * ${f(c4)};`,
      ...SUMS,
      `for (let oc = 0; oc < ${og}; oc++) { const co = g * ${f(og)} + oc; for (let ky = 0; ky < ${q.kh}; ky++) {`,
      `const ty = c2 + ${f(q.ph)} - ky; const oy = idiv(ty + ${f(q.sh * (q.kh + q.h))}, ${f(q.sh)}) - ${f(q.kh + q.h)};`,
      `if (ty >= 0.0 && oy * ${f(q.sh)} == ty && oy < ${f(q.ho)}) { for (let kx = 0; kx < ${q.kw}; kx++) {`,
      `const tx = c3 + ${f(q.pw)} - kx; const ox = idiv(tx + ${f(q.sw * (q.kw + q.w))}, ${f(q.sw)}) - ${f(q.kw + q.w)};`,
      `if (tx >= 0.0 && ox * ${f(q.sw)} == tx && ox < ${f(q.wo)}) {`,
      `const gv = gg[((c0 * ${f(gq ? q.o / 4 : q.o)} + co) * ${f(q.ho)} + oy) * ${f(q.wo)} + ox];`,
      ...(gq ? block4("gv", (v) => wAt(`(co * 4.0 + ${f(v)})`)) : [`const wv = ${wAt("co")};`, fma4("gv", "wv")]),
      "} } } } }",
      "return [s0, s1, s2, s3];",
    ];
    return four(
      "conv2dBackwardInput",
      body,
      [q.n, q.c, q.h, q.w],
      1,
      [
        ["gg", gq ?? gy],
        ["wq", wq],
      ],
      [wq, gq],
    );
  }

  /**
   * conv2d's weight gradient four output channels per thread (gy read four channels per texel); null
   * where the output channels per group are not a multiple of 4
   */
  function conv2dBackwardWeight4(x: S, gy: S, q: ConvGeometry): S | null {
    const o4 = q.og / 4;
    const n = q.o * q.cg * q.kh * q.kw;
    if (q.og % 4 !== 0 || !fits(n)) return null;
    const hwo = q.ho * q.wo;
    const gq = channels4(gy, q.n, q.o, q.ho, q.wo);
    const body = [
      "const i = this.thread.x;",
      ...coordLines("i", [q.o / 4, q.cg, q.kh, q.kw], "c"),
      `const g = idiv(c0, ${f(o4)});`,
      ...SUMS,
      `for (let b = 0; b < ${q.n}; b++) { const xb = (b * ${f(q.c)} + g * ${f(q.cg)} + c1) * ${f(q.h * q.w)}; const gb = (b * ${f(q.o / 4)} + c0) * ${f(hwo)};`,
      `for (let oy = 0; oy < ${q.ho}; oy++) { const iy = oy * ${f(q.sh)} - ${f(q.ph)} + c2; if (iy >= 0.0 && iy < ${f(q.h)}) {`,
      `for (let ox = 0; ox < ${q.wo}; ox++) { const ix = ox * ${f(q.sw)} - ${f(q.pw)} + c3; if (ix >= 0.0 && ix < ${f(q.w)}) {`,
      `const xv = xx[xb + iy * ${f(q.w)} + ix]; const gv = gq[gb + oy * ${f(q.wo)} + ox];`,
      fma4("xv", "gv"),
      "} } } } }",
      "return [s0, s1, s2, s3];",
    ];
    return four(
      "conv2dBackwardWeight",
      body,
      [q.o, q.cg, q.kh, q.kw],
      0,
      [
        ["xx", x],
        ["gq", gq],
      ],
      [gq],
    );
  }

  /**
   * out[item, i, j] = sum_t A[item, i, t] B[item, t, j] four columns per thread (flat views, heads 1);
   * null where n is not a multiple of 4. Where k is too, A is read four terms per texel.
   */
  function mm4(a: S, av: View, b: S, bv: View, items: number, m: number, k: number, n: number): S | null {
    const n4 = n / 4;
    const itemsB = bv.seq === 0 ? 1 : items;
    const itemsA = av.seq === 0 ? 1 : items;
    if (n % 4 !== 0 || av.h !== 1 || bv.h !== 1 || !fits(items * m * n, itemsB * k * n)) return null;
    // bq[item, t, c4] = B[item, t, 4 c4 + u]
    const bq = pack(
      b,
      [itemsB, k, n4],
      (u) => `c0 * ${f(bv.seq)} + c1 * ${f(bv.row)} + (c2 * 4.0 + ${f(u)}) * ${f(bv.col)}`,
    );
    // aq[item, i, t4] = A[item, i, 4 t4 + v]
    const aq =
      k % 4 === 0 && fits(itemsA * m * k)
        ? pack(
            a,
            [itemsA, m, k / 4],
            (v) => `c0 * ${f(av.seq)} + c1 * ${f(av.row)} + (c2 * 4.0 + ${f(v)}) * ${f(av.col)}`,
          )
        : null;
    const bItem = itemsB === 1 ? "0.0" : `o0 * ${f(k * n4)}`;
    const body = [
      "const i0 = this.thread.x;",
      ...coordLines("i0", [items, m, n4], "o"),
      `const bb = ${bItem} + o2;`,
      ...SUMS,
    ];
    if (aq)
      body.push(
        `const ab = (${itemsA === 1 ? "0.0" : `o0 * ${f(m)}`} + o1) * ${f(k / 4)};`,
        `for (let t = 0; t < ${k / 4}; t++) { const av = a[ab + t];`,
        ...block4("av", (v) => `bq[bb + (t * 4.0 + ${f(v)}) * ${f(n4)}]`),
        "}",
      );
    else
      body.push(
        ...itemOff(av, "o0", "ao"),
        `const ab = ao + o1 * ${f(av.row)};`,
        `for (let t = 0; t < ${k}; t++) { const av = a[ab + t * ${f(av.col)}]; const bv = bq[bb + t * ${f(n4)}];`,
        fma4("av", "bv"),
        "}",
      );
    body.push("return [s0, s1, s2, s3];");
    // a thread's four columns are four consecutive elements: the flat output, four per texel
    return four(
      "matmul",
      body,
      [items * m * n],
      0,
      [
        ["a", aq ?? a],
        ["bq", bq],
      ],
      [aq, bq],
    );
  }

  return { conv2d4, conv2dBackwardInput4, conv2dBackwardWeight4, mm4 };
}
