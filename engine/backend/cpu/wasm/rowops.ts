// Generated WebAssembly SIMD row kernels for softmax-like passes over float32 rows in the arena: max,
// exp(x - c) with its sum (Cody-Waite range reduction + degree-6 polynomial, ~2 ulp), scaling, and
// the attention backward's P * (dP - D) * scale.

import { F32, F64, Func, I32, V128, buildModule, type MemoryImport } from "./emitter.ts";
import { col2imFunc, col2imS1Func, im2colFunc, im2colS1Func, type Im2colExports } from "./im2col.ts";
import { adamF32, sumCols, sumRows4, type F64Exports } from "./f64ops.ts";
import {
  winoGradTilesFunc,
  winoInputFunc,
  winoKernelGradFunc,
  winoOutputFunc,
  winoWeightsFunc,
  type WinogradExports,
} from "./winograd.ts";

/** Exports of the row module; pointers are byte offsets, n counts floats. */
export interface RowExports extends Im2colExports, F64Exports, WinogradExports {
  /** sum of p[0..n), accumulated in float32 over blocks of 64 and in float64 across blocks. */
  sumF32(p: number, n: number): number;
  /** sum of (p[j] - c)^2, accumulated as {@link sumF32}. */
  sumSqDev(p: number, n: number, c: number): number;
  /**
   * Layer norm of `rows` contiguous rows of d floats: dst = (x - mean) rstd w + b (w, b: d floats),
   * mean and rstd per row stored as float64 at meanOut / rstdOut; sums as {@link sumF32}.
   */
  rowsLayerNorm(
    x: number,
    dst: number,
    rows: number,
    d: number,
    w: number,
    b: number,
    eps: number,
    meanOut: number,
    rstdOut: number,
  ): void;
  /** dst[j] = p[j] * a + b, then silu when act = 1 (dst may equal p). */
  affineAct(p: number, dst: number, n: number, a: number, b: number, act: number): void;
  /** dst[j] = exp(src[j]), sigmoid(src[j]), src[j] sigmoid(src[j]) (dst may equal src). */
  vExp(src: number, dst: number, n: number): void;
  vSigmoid(src: number, dst: number, n: number): void;
  vSilu(src: number, dst: number, n: number): void;
  /** GEGLU: out[r][j] = h[r][j] gelu(h[r][d + j]) for rows of 2d floats (out rows of d). */
  rowsGeglu(h: number, out: number, rows: number, d: number): void;
  /** GEGLU's gradient: dh (rows of 2d) from h and the output gradient g (rows of d). */
  rowsGegluGrad(h: number, g: number, dh: number, rows: number, d: number): void;
  /** dst[j] = 0.5 src[j] (1 + erf(src[j] / sqrt 2)) with the plain path's erf approximation. */
  vGelu(src: number, dst: number, n: number): void;
  /** dst[j] = g[j] * d/dx gelu(x) at x[j]. */
  vGeluGrad(g: number, x: number, dst: number, n: number): void;
  /** dst[j] = g[j] * d/dx (x sigmoid(x)) at x[j]. */
  vSiluGrad(g: number, x: number, dst: number, n: number): void;
  /** max of p[0..n) (-Infinity for n = 0). */
  rowMax(p: number, n: number): number;
  /** p[j] = exp(p[j] - c) in place; returns the sum (inputs below c - 87 give ~0). */
  rowExp(p: number, n: number, c: number): number;
  /** p[j] *= c. */
  rowScale(p: number, n: number, c: number): void;
  /** p[j] = s[j] * (p[j] - d) * c. */
  rowDs(s: number, p: number, n: number, d: number, c: number): void;
  /** p[j] = c. */
  rowFill(p: number, n: number, c: number): void;
  /** sum of a[j] * b[j]. */
  rowDot(a: number, b: number, n: number): number;
  /** s[j] += m[j]. */
  rowAdd(s: number, m: number, n: number): void;
  // Batched forms: `rows` rows of n floats, row r at p + r * stride (stride in bytes), one call for all.
  /** Softmax of each row in place; writes the row max to mx[r] and the sum of exp(x - max) to sm[r]. A row of -Infinity becomes zeros with sum 0. */
  rowsSoftmax(p: number, rows: number, stride: number, n: number, mx: number, sm: number): void;
  /** p[r][j] = exp(p[r][j] - c[r]); a row with c[r] = -Infinity becomes zeros. */
  rowsExpSub(p: number, rows: number, stride: number, n: number, c: number): void;
  /** p[r][j] = s[r][j] * (p[r][j] - d[r]) * c (s and p share the stride). */
  rowsDs(s: number, p: number, rows: number, stride: number, n: number, d: number, c: number): void;
  /** out[r] = sum_j a[r][j] * b[r][j] for rows of n floats, `stride` bytes apart in both. */
  rowsDot(a: number, b: number, rows: number, n: number, stride: number, out: number): void;
  /** s[r][j] += m[r][j], m's rows mStride bytes apart (0 adds one row to every row). */
  rowsAdd(s: number, rows: number, stride: number, n: number, m: number, mStride: number): void;
  /**
   * out[r][j] = a[r][j] op b[r][j] for `rows` rows of n floats (out rows contiguous): row r of a at
   * a + r * aStride bytes, element j at + j * 4 when ia = 1, or the row's one float when ia = 0 (b
   * likewise; not both 0). Float32 arithmetic, so the same results as JavaScript's rounded doubles.
   */
  binAdd(
    a: number,
    aStride: number,
    ia: number,
    b: number,
    bStride: number,
    ib: number,
    out: number,
    rows: number,
    n: number,
  ): void;
  binSub(
    a: number,
    aStride: number,
    ia: number,
    b: number,
    bStride: number,
    ib: number,
    out: number,
    rows: number,
    n: number,
  ): void;
  binMul(
    a: number,
    aStride: number,
    ia: number,
    b: number,
    bStride: number,
    ib: number,
    out: number,
    rows: number,
    n: number,
  ): void;
  binDiv(
    a: number,
    aStride: number,
    ia: number,
    b: number,
    bStride: number,
    ib: number,
    out: number,
    rows: number,
    n: number,
  ): void;
  /** sum of g[j] (x[j] - mu), accumulated as {@link sumF32}. */
  dotDev(g: number, x: number, n: number, mu: number): number;
  /**
   * Group norm backward over ng = n x groups groups of cg channels of s floats: dx, and the float64
   * per-channel sums dbAcc += sum gy, dwAcc += rstd sum gy (x - mean) (c entries each); w = 0 for no
   * weight; mean and rstd float64 per group. Sums as {@link sumF32}, dx in float32 arithmetic.
   */
  groupNormBwd(
    x: number,
    gy: number,
    dx: number,
    ng: number,
    groups: number,
    cg: number,
    s: number,
    w: number,
    mean: number,
    rstd: number,
    dwAcc: number,
    dbAcc: number,
  ): void;
  /**
   * Layer norm backward over rows of d floats: dx, and when dwAcc is not 0 the float64 per-column
   * sums dbAcc += gy, dwAcc += gy xhat; w = 0 for no weight; mean and rstd float64 per row.
   */
  layerNormBwd(
    x: number,
    gy: number,
    dx: number,
    rows: number,
    d: number,
    w: number,
    mean: number,
    rstd: number,
    dwAcc: number,
    dbAcc: number,
  ): void;
  /**
   * Group norm forward in place over ng groups of cg channels of s floats (then silu when silu = 1),
   * as the per-group calls of sumF32, sumSqDev and affineAct: mean = sum / len, rstd = 1 / sqrt(sumSqDev
   * / len + eps), per channel a = rstd w, b = bias - mean a (float64, rounded to float32); w, b = 0 for
   * none; mean and rstd stored as float64 per group.
   */
  groupNormFwd(
    x: number,
    ng: number,
    groups: number,
    cg: number,
    s: number,
    w: number,
    b: number,
    eps: number,
    silu: number,
    mean: number,
    rstd: number,
  ): void;
  /** dst[r][j] = src[r][j] for `rows` rows of n floats, rows srcStride and dstStride bytes apart. */
  copyRows(src: number, srcStride: number, dst: number, dstStride: number, rows: number, n: number): void;
}

/**
 * Emits `for (i = 0; i + 4 <= n; i += 4) vec(off); for (; i < n; i++) lane(off)` where `off` is a
 * local holding the byte offset i * 4; `body(wide)` emits the step for 4 lanes or for 1.
 */
function rows(f: Func, n: number, body: (off: number, wide: boolean) => void): void {
  const off = f.local(I32),
    end = f.local(I32);
  f.i32(0).set(off); // the loop may sit inside another one
  f.get(n).i32(-4).i32And().i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  body(off, true);
  f.get(off).i32(16).i32Add().set(off);
  f.br(0).end().end();
  f.get(n).i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  body(off, false);
  f.get(off).i32(4).i32Add().set(off);
  f.br(0).end().end();
}

/** Loads 4 floats at base + off (wide) or splats one. */
function load(f: Func, base: number, off: number, wide: boolean): Func {
  f.get(base).get(off).i32Add();
  return wide ? f.v128Load() : f.v128Load32Splat();
}

/** Stores the v128 in local `v` to base + off: 4 lanes (wide) or lane 0. */
function store(f: Func, base: number, off: number, v: number, wide: boolean): void {
  f.get(base).get(off).i32Add();
  if (wide) f.get(v).v128Store();
  else f.get(v).f32x4ExtractLane(0).f32Store();
}

function splat(f: Func, c: number): number {
  const l = f.local(V128);
  f.f32(c).f32x4Splat().set(l);
  return l;
}

function rowMax(): Func {
  const f = new Func("rowMax", [I32, I32], [F32]);
  const [P, N] = [0, 1];
  const m = splat(f, -Infinity);
  rows(f, N, (off, wide) => {
    f.get(m);
    load(f, P, off, wide).f32x4Max().set(m);
  });
  f.get(m)
    .f32x4ExtractLane(0)
    .get(m)
    .f32x4ExtractLane(1)
    .f32Max()
    .get(m)
    .f32x4ExtractLane(2)
    .get(m)
    .f32x4ExtractLane(3)
    .f32Max()
    .f32Max();
  return f;
}

/** Locals holding the constants of {@link expInto}. */
interface ExpConsts {
  lo: number;
  hi: number;
  log2e: number;
  ln2hi: number;
  ln2lo: number;
  k: number[];
  bias: number;
  magic: number;
  kk: number;
  r: number;
  t: number;
}

function expConsts(f: Func): ExpConsts {
  const lo = splat(f, -87.3),
    hi = splat(f, 88.7),
    log2e = splat(f, Math.LOG2E),
    ln2hi = splat(f, 0.693359375),
    ln2lo = splat(f, -2.1219444e-4);
  const k = [1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720].map((x) => splat(f, x));
  const bias = f.local(V128);
  f.i32(127).i32x4Splat().set(bias);
  return {
    lo,
    hi,
    log2e,
    ln2hi,
    ln2lo,
    k,
    bias,
    magic: splat(f, 12582912),
    kk: f.local(V128),
    r: f.local(V128),
    t: f.local(V128),
  };
}

/**
 * out = exp(x) for the v128 in local x (overwritten with its clamp to [-87.3, 88.7]): Cody-Waite
 * reduction x = k ln2 + r, a degree-6 polynomial for exp(r), times 2^k from its exponent bits (~2 ulp).
 * k = round-to-even(x log2e) comes from adding 1.5 * 2^23, whose low mantissa bits then hold k (so
 * no nearest / truncating conversion, which V8 emits as long sequences); the clamp is pmax / pmin
 * (a NaN x stays NaN either way).
 */
function expInto(f: Func, x: number, out: number, c: ExpConsts): void {
  f.get(x).get(c.lo).f32x4Pmax().get(c.hi).f32x4Pmin().set(x);
  f.get(x).get(c.log2e).f32x4Mul().get(c.magic).f32x4Add().set(c.t);
  f.get(c.t).get(c.magic).f32x4Sub().set(c.kk);
  f.get(x).get(c.kk).get(c.ln2hi).f32x4Mul().f32x4Sub().get(c.kk).get(c.ln2lo).f32x4Mul().f32x4Sub().set(c.r);
  // 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r (1/120 + r/720)))))
  f.get(c.r).get(c.k[5]!).f32x4Mul();
  for (let i = 4; i >= 0; i--) f.get(c.k[i]!).f32x4Add().get(c.r).f32x4Mul();
  f.get(c.k[0]!).f32x4Add();
  // 2^k: the bits of t are those of 1.5 * 2^23 plus k; (k + 127) << 23 drops the rest
  f.get(c.t).get(c.bias).i32x4Add().i32(23).i32x4Shl().f32x4Mul().set(out);
}

function rowExp(): Func {
  const f = new Func("rowExp", [I32, I32, F32], [F32]);
  const [P, N, C] = [0, 1, 2];
  const c = f.local(V128);
  f.get(C).f32x4Splat().set(c);
  const ec = expConsts(f);
  const x = f.local(V128),
    acc = splat(f, 0),
    accTail = splat(f, 0);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(c).f32x4Sub().set(x);
    expInto(f, x, x, ec);
    store(f, P, off, x, wide);
    if (wide) f.get(acc).get(x).f32x4Add().set(acc);
    else f.get(accTail).get(x).f32x4Add().set(accTail);
  });
  f.get(acc)
    .f32x4ExtractLane(0)
    .get(acc)
    .f32x4ExtractLane(1)
    .f32Add()
    .get(acc)
    .f32x4ExtractLane(2)
    .get(acc)
    .f32x4ExtractLane(3)
    .f32Add()
    .f32Add();
  f.get(accTail).f32x4ExtractLane(0).f32Add();
  return f;
}

/** dst[j] = op(src[j]) for the exp-based activations (src and dst may be the same). */
function vUnary(name: string, op: "exp" | "sigmoid" | "silu"): Func {
  const f = new Func(name, [I32, I32, I32]);
  const [S, D, N] = [0, 1, 2];
  const ec = expConsts(f),
    one = splat(f, 1);
  const x = f.local(V128),
    e = f.local(V128),
    y = f.local(V128);
  rows(f, N, (off, wide) => {
    load(f, S, off, wide).set(x);
    if (op === "exp") {
      f.get(x).set(e);
      expInto(f, e, y, ec);
    } else {
      f.get(x).f32x4Neg().set(e);
      expInto(f, e, e, ec);
      // sigmoid = 1 / (1 + exp(-x)), silu = x / (1 + exp(-x))
      f.get(op === "silu" ? x : one)
        .get(one)
        .get(e)
        .f32x4Add()
        .f32x4Div()
        .set(y);
    }
    store(f, D, off, y, wide);
  });
  return f;
}

/** Locals of {@link erfInto}: the Abramowitz-Stegun 7.1.26 constants and a sign mask. */
interface ErfConsts {
  p: number;
  a: number[];
  one: number;
  sign: number;
  t: number;
  ax: number;
}

function erfConsts(f: Func): ErfConsts {
  const sign = f.local(V128);
  f.i32(-2147483648).i32x4Splat().set(sign);
  return {
    p: splat(f, 0.3275911),
    a: [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429].map((v) => splat(f, v)),
    one: splat(f, 1),
    sign,
    t: f.local(V128),
    ax: f.local(V128),
  };
}

/**
 * out = erf(x) for the v128 in local x (x kept), Abramowitz-Stegun 7.1.26 as the plain path's erf32:
 * 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2), t = 1 / (1 + p |x|), sign of x (~2e-7).
 */
function erfInto(f: Func, x: number, out: number, c: ErfConsts, ec: ExpConsts, e: number): void {
  f.get(x).f32x4Abs().set(c.ax);
  f.get(c.one).get(c.one).get(c.p).get(c.ax).f32x4Mul().f32x4Add().f32x4Div().set(c.t);
  f.get(c.ax).get(c.ax).f32x4Mul().f32x4Neg().set(e);
  expInto(f, e, e, ec);
  // polynomial in t, times t
  f.get(c.a[4]!);
  for (let i = 3; i >= 0; i--) f.get(c.t).f32x4Mul().get(c.a[i]!).f32x4Add();
  f.get(c.t).f32x4Mul().get(e).f32x4Mul();
  f.set(out);
  f.get(c.one).get(out).f32x4Sub().get(x).get(c.sign).v128And().v128Or().set(out);
}

/** dst[j] = 0.5 x (1 + erf(x / sqrt 2)): GELU as the plain path computes it. */
function vGelu(): Func {
  const f = new Func("vGelu", [I32, I32, I32]);
  const [S, D, N] = [0, 1, 2];
  const ec = expConsts(f),
    c = erfConsts(f),
    half = splat(f, 0.5),
    rs2 = splat(f, Math.SQRT1_2);
  const x = f.local(V128),
    z = f.local(V128),
    e = f.local(V128),
    y = f.local(V128);
  rows(f, N, (off, wide) => {
    load(f, S, off, wide).set(x);
    f.get(x).get(rs2).f32x4Mul().set(z);
    erfInto(f, z, y, c, ec, e);
    f.get(half).get(x).f32x4Mul().get(c.one).get(y).f32x4Add().f32x4Mul().set(y);
    store(f, D, off, y, wide);
  });
  return f;
}

/** dst[j] = g[j] (Phi(x) + x phi(x)) at x[j]: the gradient of GELU. */
function vGeluGrad(): Func {
  const f = new Func("vGeluGrad", [I32, I32, I32, I32]);
  const [G, X, D, N] = [0, 1, 2, 3];
  const ec = expConsts(f),
    c = erfConsts(f),
    half = splat(f, 0.5),
    rs2 = splat(f, Math.SQRT1_2),
    invSqrt2Pi = splat(f, 0.3989422804014327);
  const x = f.local(V128),
    z = f.local(V128),
    e = f.local(V128),
    y = f.local(V128),
    q = f.local(V128);
  rows(f, N, (off, wide) => {
    load(f, X, off, wide).set(x);
    f.get(x).get(rs2).f32x4Mul().set(z);
    erfInto(f, z, y, c, ec, e);
    // phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    f.get(x).get(x).f32x4Mul().get(half).f32x4Mul().f32x4Neg().set(q);
    expInto(f, q, q, ec);
    f.get(half).get(c.one).get(y).f32x4Add().f32x4Mul();
    f.get(x).get(q).f32x4Mul().get(invSqrt2Pi).f32x4Mul().f32x4Add();
    load(f, G, off, wide).f32x4Mul().set(y);
    store(f, D, off, y, wide);
  });
  return f;
}

/**
 * GEGLU over rows of 2d floats: out[r][j] = h[r][j] gelu(h[r][d + j]) (out rows d floats). With
 * `grad` = 1, g holds the output gradient (rows of d) and out receives dh (rows of 2d):
 * dh[r][j] = g gelu(gate), dh[r][d + j] = g h[r][j] gelu'(gate).
 */
function rowsGeglu(grad: boolean): Func {
  const f = new Func(grad ? "rowsGegluGrad" : "rowsGeglu", grad ? [I32, I32, I32, I32, I32] : [I32, I32, I32, I32]);
  const [H, G, O, ROWS, D] = grad ? [0, 1, 2, 3, 4] : [0, -1, 1, 2, 3];
  const ec = expConsts(f),
    c = erfConsts(f),
    half = splat(f, 0.5),
    rs2 = splat(f, Math.SQRT1_2),
    invSqrt2Pi = splat(f, 0.3989422804014327);
  const x = f.local(V128),
    z = f.local(V128),
    e = f.local(V128),
    y = f.local(V128),
    q = f.local(V128),
    a = f.local(V128),
    gv = f.local(V128);
  const hRow = f.local(I32),
    gRow = f.local(I32),
    oRow = f.local(I32),
    gate = f.local(I32),
    oGate = f.local(I32);
  forRows(f, ROWS, (r) => {
    // byte offsets of this row: h and dh rows are 2d floats, out and g rows d floats
    f.get(H).get(r).get(D).i32Mul().i32(3).i32Shl().i32Add().set(hRow);
    f.get(hRow).get(D).i32(2).i32Shl().i32Add().set(gate);
    if (grad) {
      f.get(G).get(r).get(D).i32Mul().i32(2).i32Shl().i32Add().set(gRow);
      f.get(O).get(r).get(D).i32Mul().i32(3).i32Shl().i32Add().set(oRow);
      f.get(oRow).get(D).i32(2).i32Shl().i32Add().set(oGate);
    } else f.get(O).get(r).get(D).i32Mul().i32(2).i32Shl().i32Add().set(oRow);
    rows(f, D, (off, wide) => {
      load(f, gate, off, wide).set(x);
      f.get(x).get(rs2).f32x4Mul().set(z);
      erfInto(f, z, y, c, ec, e);
      // Phi(x) = (1 + erf) / 2; gelu = x Phi
      f.get(half).get(c.one).get(y).f32x4Add().f32x4Mul().set(y);
      load(f, hRow, off, wide).set(a);
      if (!grad) {
        f.get(a).get(x).get(y).f32x4Mul().f32x4Mul().set(q);
        store(f, oRow, off, q, wide);
        return;
      }
      load(f, gRow, off, wide).set(gv);
      // dh_a = g x Phi
      f.get(gv).get(x).get(y).f32x4Mul().f32x4Mul().set(q);
      store(f, oRow, off, q, wide);
      // dh_gate = g a (Phi + x phi), phi = exp(-x^2 / 2) / sqrt(2 pi)
      f.get(x).get(x).f32x4Mul().get(half).f32x4Mul().f32x4Neg().set(e);
      expInto(f, e, e, ec);
      f.get(y).get(x).get(e).f32x4Mul().get(invSqrt2Pi).f32x4Mul().f32x4Add();
      f.get(gv).f32x4Mul().get(a).f32x4Mul().set(q);
      store(f, oGate, off, q, wide);
    });
  });
  return f;
}

/** dst[j] = g[j] s (1 + x[j] (1 - s)) with s = sigmoid(x[j]): the gradient of silu. */
function vSiluGrad(): Func {
  const f = new Func("vSiluGrad", [I32, I32, I32, I32]);
  const [G, X, D, N] = [0, 1, 2, 3];
  const ec = expConsts(f),
    one = splat(f, 1);
  const x = f.local(V128),
    e = f.local(V128),
    s = f.local(V128),
    y = f.local(V128);
  rows(f, N, (off, wide) => {
    load(f, X, off, wide).set(x);
    f.get(x).f32x4Neg().set(e);
    expInto(f, e, e, ec);
    f.get(one).get(one).get(e).f32x4Add().f32x4Div().set(s);
    load(f, G, off, wide).get(s).f32x4Mul();
    f.get(one).get(x).get(one).get(s).f32x4Sub().f32x4Mul().f32x4Add();
    f.f32x4Mul().set(y);
    store(f, D, off, y, wide);
  });
  return f;
}

function rowScale(): Func {
  const f = new Func("rowScale", [I32, I32, F32]);
  const [P, N, C] = [0, 1, 2];
  const c = f.local(V128),
    x = f.local(V128);
  f.get(C).f32x4Splat().set(c);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(c).f32x4Mul().set(x);
    store(f, P, off, x, wide);
  });
  return f;
}

function rowDs(): Func {
  const f = new Func("rowDs", [I32, I32, I32, F32, F32]);
  const [S, P, N, D, C] = [0, 1, 2, 3, 4];
  const d = f.local(V128),
    c = f.local(V128),
    x = f.local(V128);
  f.get(D).f32x4Splat().set(d);
  f.get(C).f32x4Splat().set(c);
  rows(f, N, (off, wide) => {
    load(f, S, off, wide);
    load(f, P, off, wide).get(d).f32x4Sub().f32x4Mul().get(c).f32x4Mul().set(x);
    store(f, P, off, x, wide);
  });
  return f;
}

function rowFill(): Func {
  const f = new Func("rowFill", [I32, I32, F32]);
  const [P, N, C] = [0, 1, 2];
  const c = f.local(V128);
  f.get(C).f32x4Splat().set(c);
  rows(f, N, (off, wide) => store(f, P, off, c, wide));
  return f;
}

function rowDot(): Func {
  const f = new Func("rowDot", [I32, I32, I32], [F32]);
  const [A, B, N] = [0, 1, 2];
  const acc = splat(f, 0),
    accTail = splat(f, 0);
  rows(f, N, (off, wide) => {
    const a = wide ? acc : accTail;
    load(f, A, off, wide);
    load(f, B, off, wide).f32x4Mul().get(a).f32x4Add().set(a);
  });
  f.get(acc)
    .f32x4ExtractLane(0)
    .get(acc)
    .f32x4ExtractLane(1)
    .f32Add()
    .get(acc)
    .f32x4ExtractLane(2)
    .get(acc)
    .f32x4ExtractLane(3)
    .f32Add()
    .f32Add();
  f.get(accTail).f32x4ExtractLane(0).f32Add();
  return f;
}

function rowAdd(): Func {
  const f = new Func("rowAdd", [I32, I32, I32]);
  const [S, M, N] = [0, 1, 2];
  const x = f.local(V128);
  rows(f, N, (off, wide) => {
    load(f, S, off, wide);
    load(f, M, off, wide).f32x4Add().set(x);
    store(f, S, off, x, wide);
  });
  return f;
}

/**
 * The blocked sum: 16 vector steps (64 floats) into a float32 vector, whose lanes go into a float64
 * total; the tail one float at a time. `term(x)` maps the loaded vector (or splat) in local x.
 */
function blockedSum(name: string, params: number[], term: (f: Func, x: number) => void): Func {
  const f = new Func(name, params as never, [F64]);
  const [P, N] = [0, 1];
  const total = f.local(F64),
    acc = f.local(V128),
    x = f.local(V128),
    j = f.local(I32),
    end = f.local(I32),
    blockEnd = f.local(I32);
  // vector part: j over floats, in blocks of 64
  f.get(N).i32(-4).i32And().set(end);
  f.block().loop();
  f.get(j).get(end).i32GeS().brIf(1);
  f.v128Zero().set(acc);
  f.get(j).i32(64).i32Add().set(blockEnd);
  f.get(end).get(blockEnd).get(blockEnd).get(end).i32GtS().select().set(blockEnd);
  f.block().loop();
  f.get(j).get(blockEnd).i32GeS().brIf(1);
  f.get(P).get(j).i32(2).i32Shl().i32Add().v128Load().set(x);
  term(f, x);
  f.get(acc).f32x4Add().set(acc);
  f.get(j).i32(4).i32Add().set(j);
  f.br(0).end().end();
  for (let l = 0; l < 4; l++) f.get(total).get(acc).f32x4ExtractLane(l).f64PromoteF32().f64Add().set(total);
  f.br(0).end().end();
  // tail
  f.block().loop();
  f.get(j).get(N).i32GeS().brIf(1);
  f.get(P).get(j).i32(2).i32Shl().i32Add().v128Load32Splat().set(x);
  term(f, x);
  f.f32x4ExtractLane(0).f64PromoteF32().get(total).f64Add().set(total);
  f.get(j).i32(1).i32Add().set(j);
  f.br(0).end().end();
  f.get(total);
  return f;
}

function sumF32(): Func {
  return blockedSum("sumF32", [I32, I32], (f, x) => void f.get(x));
}

function sumSqDev(): Func {
  return blockedSum("sumSqDev", [I32, I32, F32], (f, x) => {
    const c = 2;
    f.get(x).get(c).f32x4Splat().f32x4Sub().set(x);
    f.get(x).get(x).f32x4Mul();
  });
}

function affineAct(): Func {
  const f = new Func("affineAct", [I32, I32, I32, F32, F32, I32]);
  const [P, D, N, A, B, ACT] = [0, 1, 2, 3, 4, 5];
  const a = f.local(V128),
    b = f.local(V128),
    x = f.local(V128),
    e = f.local(V128);
  f.get(A).f32x4Splat().set(a);
  f.get(B).f32x4Splat().set(b);
  const ec = expConsts(f),
    one = splat(f, 1);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(a).f32x4Mul().get(b).f32x4Add().set(x);
    f.get(ACT).if_();
    f.get(x).f32x4Neg().set(e);
    expInto(f, e, e, ec);
    f.get(x).get(one).get(e).f32x4Add().f32x4Div().set(x);
    f.end();
    store(f, D, off, x, wide);
  });
  return f;
}

function rowNormAffine(): Func {
  const f = new Func("rowNormAffine", [I32, I32, I32, F32, F32, I32, I32]);
  const [P, D, N, MU, RS, W, B] = [0, 1, 2, 3, 4, 5, 6];
  const mu = f.local(V128),
    rs = f.local(V128),
    x = f.local(V128);
  f.get(MU).f32x4Splat().set(mu);
  f.get(RS).f32x4Splat().set(rs);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(mu).f32x4Sub().get(rs).f32x4Mul();
    load(f, W, off, wide).f32x4Mul();
    load(f, B, off, wide).f32x4Add().set(x);
    store(f, D, off, x, wide);
  });
  return f;
}

function rowsLayerNorm(): Func {
  const f = new Func("rowsLayerNorm", [I32, I32, I32, I32, I32, I32, F32, I32, I32]);
  const [X, D, ROWS, N, W, B, EPS, MEAN, RSTD] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const p = f.local(I32),
    mu = f.local(F64),
    rs = f.local(F64),
    dn = f.local(F64);
  f.get(N).f64ConvertI32S().set(dn);
  forRows(f, ROWS, (r) => {
    f.get(X).get(r).get(N).i32Mul().i32(2).i32Shl().i32Add().set(p);
    f.get(p).get(N).call(SUM_F32).get(dn).f64Div().set(mu);
    // rstd = 1 / sqrt(sum (x - mean)^2 / d + eps)
    f.f64(1)
      .get(p)
      .get(N)
      .get(mu)
      .f32DemoteF64()
      .call(SUM_SQ_DEV)
      .get(dn)
      .f64Div()
      .get(EPS)
      .f64PromoteF32()
      .f64Add()
      .f64Sqrt()
      .f64Div()
      .set(rs);
    f.get(MEAN).get(r).i32(3).i32Shl().i32Add().get(mu).f64Store();
    f.get(RSTD).get(r).i32(3).i32Shl().i32Add().get(rs).f64Store();
    f.get(p)
      .get(D)
      .get(r)
      .get(N)
      .i32Mul()
      .i32(2)
      .i32Shl()
      .i32Add()
      .get(N)
      .get(mu)
      .f32DemoteF64()
      .get(rs)
      .f32DemoteF64()
      .get(W)
      .get(B)
      .call(ROW_NORM_AFFINE);
  });
  return f;
}

// function indices in the module (array position in rowModuleBytes)
const ROW_MAX = 0,
  ROW_EXP = 1,
  ROW_SCALE = 2,
  ROW_DS = 3,
  ROW_FILL = 4,
  ROW_DOT = 5,
  ROW_ADD = 6;
const SUM_F32 = 18,
  SUM_SQ_DEV = 19,
  ROW_NORM_AFFINE = 21,
  DOT_DEV = 37,
  AFFINE_ACT = 20;

/** `for (r = 0; r < rows; r++) body(r)` with local `r`. */
function forRows(f: Func, rowsArg: number, body: (r: number) => void): void {
  const r = f.local(I32);
  f.block().loop();
  f.get(r).get(rowsArg).i32GeS().brIf(1);
  body(r);
  f.get(r).i32(1).i32Add().set(r);
  f.br(0).end().end();
}

/** Pushes base + r * stride (all i32 locals). */
function rowPtr(f: Func, base: number, r: number, stride: number): Func {
  return f.get(base).get(r).get(stride).i32Mul().i32Add();
}

/** Pushes the address of the r-th float at base. */
function at(f: Func, base: number, r: number): Func {
  return f.get(base).get(r).i32(2).i32Shl().i32Add();
}

function rowsSoftmax(): Func {
  const f = new Func("rowsSoftmax", [I32, I32, I32, I32, I32, I32]);
  const [P, ROWS, STRIDE, N, MX, SM] = [0, 1, 2, 3, 4, 5];
  const p = f.local(I32),
    m = f.local(F32),
    sum = f.local(F32);
  forRows(f, ROWS, (r) => {
    rowPtr(f, P, r, STRIDE).set(p);
    f.get(p).get(N).call(ROW_MAX).set(m);
    at(f, MX, r).get(m).f32Store();
    f.block().block();
    f.get(m).f32(-Infinity).f32Eq().brIf(0);
    f.get(p).get(N).get(m).call(ROW_EXP).set(sum);
    f.get(p).get(N).f32(1).get(sum).f32Div().call(ROW_SCALE);
    at(f, SM, r).get(sum).f32Store();
    f.br(1).end();
    f.get(p).get(N).f32(0).call(ROW_FILL);
    at(f, SM, r).f32(0).f32Store();
    f.end();
  });
  return f;
}

function rowsExpSub(): Func {
  const f = new Func("rowsExpSub", [I32, I32, I32, I32, I32]);
  const [P, ROWS, STRIDE, N, C] = [0, 1, 2, 3, 4];
  const p = f.local(I32),
    c = f.local(F32);
  forRows(f, ROWS, (r) => {
    rowPtr(f, P, r, STRIDE).set(p);
    at(f, C, r).f32Load().set(c);
    f.block().block();
    f.get(c).f32(-Infinity).f32Eq().brIf(0);
    f.get(p).get(N).get(c).call(ROW_EXP).drop();
    f.br(1).end();
    f.get(p).get(N).f32(0).call(ROW_FILL);
    f.end();
  });
  return f;
}

function rowsDs(): Func {
  const f = new Func("rowsDs", [I32, I32, I32, I32, I32, I32, F32]);
  const [S, P, ROWS, STRIDE, N, D, C] = [0, 1, 2, 3, 4, 5, 6];
  forRows(f, ROWS, (r) => {
    rowPtr(f, S, r, STRIDE);
    rowPtr(f, P, r, STRIDE);
    f.get(N);
    at(f, D, r).f32Load();
    f.get(C).call(ROW_DS);
  });
  return f;
}

function rowsDot(): Func {
  const f = new Func("rowsDot", [I32, I32, I32, I32, I32, I32]);
  const [A, B, ROWS, N, stride, OUT] = [0, 1, 2, 3, 4, 5];
  forRows(f, ROWS, (r) => {
    at(f, OUT, r);
    rowPtr(f, A, r, stride);
    rowPtr(f, B, r, stride);
    f.get(N).call(ROW_DOT).f32Store();
  });
  return f;
}

function rowsAdd(): Func {
  const f = new Func("rowsAdd", [I32, I32, I32, I32, I32, I32]);
  const [S, ROWS, STRIDE, N, M, MSTRIDE] = [0, 1, 2, 3, 4, 5];
  forRows(f, ROWS, (r) => {
    rowPtr(f, S, r, STRIDE);
    rowPtr(f, M, r, MSTRIDE);
    f.get(N).call(ROW_ADD);
  });
  return f;
}

/**
 * out[r][j] = a op b over rows (see RowExports.binAdd): per row, one loop for the three cases (both
 * operands along the row, a or b one float splatted over it).
 */
function binRows(name: string, op: (f: Func) => Func): Func {
  const f = new Func(name, [I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [A, AS, IA, B, BS, IB, OUT, ROWS, N] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const pa = f.local(I32),
    pb = f.local(I32),
    po = f.local(I32),
    va = f.local(V128),
    vb = f.local(V128),
    y = f.local(V128);
  forRows(f, ROWS, (r) => {
    rowPtr(f, A, r, AS).set(pa);
    rowPtr(f, B, r, BS).set(pb);
    f.get(OUT).get(r).get(N).i32Mul().i32(2).i32Shl().i32Add().set(po);
    const loop = (wa: boolean, wb: boolean): void =>
      rows(f, N, (off, wide) => {
        if (wa) load(f, pa, off, wide);
        else f.get(va);
        if (wb) load(f, pb, off, wide);
        else f.get(vb);
        op(f).set(y);
        store(f, po, off, y, wide);
      });
    f.get(IA).get(IB).i32And().if_();
    loop(true, true);
    f.else_();
    f.get(IA).if_();
    f.get(pb).v128Load32Splat().set(vb);
    loop(true, false);
    f.else_();
    f.get(pa).v128Load32Splat().set(va);
    loop(false, true);
    f.end();
    f.end();
  });
  return f;
}

function copyRows(): Func {
  const f = new Func("copyRows", [I32, I32, I32, I32, I32, I32]);
  const [S, SS, D, DS, ROWS, N] = [0, 1, 2, 3, 4, 5];
  const ps = f.local(I32),
    pd = f.local(I32),
    v = f.local(V128);
  forRows(f, ROWS, (r) => {
    rowPtr(f, S, r, SS).set(ps);
    rowPtr(f, D, r, DS).set(pd);
    rows(f, N, (off, wide) => {
      load(f, ps, off, wide).set(v);
      store(f, pd, off, v, wide);
    });
  });
  return f;
}

/** sum of g[j] (x[j] - mu) in float32 blocks of 64, float64 across blocks (as blockedSum). */
function dotDev(): Func {
  const f = new Func("dotDev", [I32, I32, I32, F32], [F64]);
  const [G, X, N, MU] = [0, 1, 2, 3];
  const total = f.local(F64),
    acc = f.local(V128),
    mu = f.local(V128),
    j = f.local(I32),
    end = f.local(I32),
    blockEnd = f.local(I32),
    o = f.local(I32);
  f.get(MU).f32x4Splat().set(mu);
  f.get(N).i32(-4).i32And().set(end);
  f.block().loop();
  f.get(j).get(end).i32GeS().brIf(1);
  f.v128Zero().set(acc);
  f.get(j).i32(64).i32Add().set(blockEnd);
  f.get(end).get(blockEnd).get(blockEnd).get(end).i32GtS().select().set(blockEnd);
  f.block().loop();
  f.get(j).get(blockEnd).i32GeS().brIf(1);
  f.get(j).i32(2).i32Shl().set(o);
  f.get(acc)
    .get(G)
    .get(o)
    .i32Add()
    .v128Load()
    .get(X)
    .get(o)
    .i32Add()
    .v128Load()
    .get(mu)
    .f32x4Sub()
    .f32x4Mul()
    .f32x4Add()
    .set(acc);
  f.get(j).i32(4).i32Add().set(j);
  f.br(0).end().end();
  for (let l = 0; l < 4; l++) f.get(total).get(acc).f32x4ExtractLane(l).f64PromoteF32().f64Add().set(total);
  f.br(0).end().end();
  f.block().loop();
  f.get(j).get(N).i32GeS().brIf(1);
  f.get(j).i32(2).i32Shl().set(o);
  f.get(total)
    .get(G)
    .get(o)
    .i32Add()
    .f32Load()
    .get(X)
    .get(o)
    .i32Add()
    .f32Load()
    .get(MU)
    .f32Sub()
    .f32Mul()
    .f64PromoteF32()
    .f64Add()
    .set(total);
  f.get(j).i32(1).i32Add().set(j);
  f.br(0).end().end();
  f.get(total);
  return f;
}

function groupNormBwd(): Func {
  const f = new Func("groupNormBwd", [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [X, GY, DX, NG, GROUPS, CG, S, W, MEAN, RSTD, DWACC, DBACC] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const ch = f.local(I32),
    o = f.local(I32),
    q = f.local(I32),
    c = f.local(I32),
    cb = f.local(I32);
  const mu = f.local(F64),
    r = f.local(F64),
    muF = f.local(F32),
    wv = f.local(F64),
    a = f.local(F64),
    b = f.local(F64),
    sg = f.local(F64),
    sgx = f.local(F64),
    len = f.local(F64);
  const A = f.local(V128),
    B = f.local(V128),
    C = f.local(V128),
    M = f.local(V128),
    y = f.local(V128),
    px = f.local(I32),
    pg = f.local(I32),
    pd = f.local(I32);
  f.get(CG).get(S).i32Mul().f64ConvertI32S().set(len);
  const weightOf = (): void => {
    // wv = w ? w[c] : 1
    f.f64(1).set(wv);
    f.get(W).if_();
    f.get(W).get(c).i32(2).i32Shl().i32Add().f32Load().f64PromoteF32().set(wv);
    f.end();
  };
  forRows(f, NG, (ng) => {
    f.get(ng).get(CG).i32Mul().get(S).i32Mul().i32(2).i32Shl().set(o);
    f.get(MEAN).get(ng).i32(3).i32Shl().i32Add().f64Load().set(mu);
    f.get(RSTD).get(ng).i32(3).i32Shl().i32Add().f64Load().set(r);
    f.get(mu).f32DemoteF64().set(muF);
    // first channel of the group: (ng % groups) * cg
    f.get(ng).get(ng).get(GROUPS).i32DivS().get(GROUPS).i32Mul().i32Sub().get(CG).i32Mul().set(cb);
    f.f64(0).set(sg);
    f.f64(0).set(sgx);
    f.i32(0).set(ch);
    f.block().loop();
    f.get(ch).get(CG).i32GeS().brIf(1);
    f.get(cb).get(ch).i32Add().set(c);
    weightOf();
    f.get(o).get(ch).get(S).i32Mul().i32(2).i32Shl().i32Add().set(q);
    f.get(GY).get(q).i32Add().get(S).call(SUM_F32).set(a);
    f.get(GY).get(q).i32Add().get(X).get(q).i32Add().get(S).get(muF).call(DOT_DEV).get(r).f64Mul().set(b);
    f.get(DBACC).get(c).i32(3).i32Shl().i32Add().tee(px).get(px).f64Load().get(a).f64Add().f64Store();
    f.get(DWACC).get(c).i32(3).i32Shl().i32Add().tee(px).get(px).f64Load().get(b).f64Add().f64Store();
    f.get(sg).get(a).get(wv).f64Mul().f64Add().set(sg);
    f.get(sgx).get(b).get(wv).f64Mul().f64Add().set(sgx);
    f.get(ch).i32(1).i32Add().set(ch);
    f.br(0).end().end();
    // dx = r (g w - mg - (x - mu) r mgx) = g (r w) - (x - mu) (r r mgx) - r mg
    f.get(r).get(sg).get(len).f64Div().f64Mul().f32DemoteF64().f32x4Splat().set(B);
    f.get(r).get(r).f64Mul().get(sgx).get(len).f64Div().f64Mul().f32DemoteF64().f32x4Splat().set(C);
    f.get(muF).f32x4Splat().set(M);
    f.i32(0).set(ch);
    f.block().loop();
    f.get(ch).get(CG).i32GeS().brIf(1);
    f.get(cb).get(ch).i32Add().set(c);
    weightOf();
    f.get(r).get(wv).f64Mul().f32DemoteF64().f32x4Splat().set(A);
    f.get(o).get(ch).get(S).i32Mul().i32(2).i32Shl().i32Add().set(q);
    f.get(X).get(q).i32Add().set(px);
    f.get(GY).get(q).i32Add().set(pg);
    f.get(DX).get(q).i32Add().set(pd);
    rows(f, S, (off, wide) => {
      load(f, pg, off, wide).get(A).f32x4Mul();
      load(f, px, off, wide).get(M).f32x4Sub().get(C).f32x4Mul().f32x4Sub().get(B).f32x4Sub().set(y);
      store(f, pd, off, y, wide);
    });
    f.get(ch).i32(1).i32Add().set(ch);
    f.br(0).end().end();
  });
  return f;
}

function groupNormFwd(): Func {
  const f = new Func("groupNormFwd", [I32, I32, I32, I32, I32, I32, I32, F64, I32, I32, I32]);
  const [X, NG, GROUPS, CG, S, W, B, EPS, SILU, MEAN, RSTD] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const o = f.local(I32),
    n = f.local(I32),
    ch = f.local(I32),
    c = f.local(I32),
    cb = f.local(I32),
    q = f.local(I32);
  const len = f.local(F64),
    mu = f.local(F64),
    rs = f.local(F64),
    a = f.local(F64),
    bb = f.local(F64);
  f.get(CG).get(S).i32Mul().set(n);
  f.get(n).f64ConvertI32S().set(len);
  forRows(f, NG, (ng) => {
    f.get(X).get(ng).get(n).i32Mul().i32(2).i32Shl().i32Add().set(o);
    f.get(o).get(n).call(SUM_F32).get(len).f64Div().set(mu);
    f.f64(1)
      .get(o)
      .get(n)
      .get(mu)
      .f32DemoteF64()
      .call(SUM_SQ_DEV)
      .get(len)
      .f64Div()
      .get(EPS)
      .f64Add()
      .f64Sqrt()
      .f64Div()
      .set(rs);
    f.get(MEAN).get(ng).i32(3).i32Shl().i32Add().get(mu).f64Store();
    f.get(RSTD).get(ng).i32(3).i32Shl().i32Add().get(rs).f64Store();
    f.get(ng).get(ng).get(GROUPS).i32DivS().get(GROUPS).i32Mul().i32Sub().get(CG).i32Mul().set(cb);
    f.i32(0).set(ch);
    f.block().loop();
    f.get(ch).get(CG).i32GeS().brIf(1);
    f.get(cb).get(ch).i32Add().set(c);
    // a = rs * (w ? w[c] : 1), b = (bias ? bias[c] : 0) - mu * a
    f.get(rs).set(a);
    f.get(W).if_();
    f.get(rs).get(W).get(c).i32(2).i32Shl().i32Add().f32Load().f64PromoteF32().f64Mul().set(a);
    f.end();
    f.f64(0).set(bb);
    f.get(B).if_();
    f.get(B).get(c).i32(2).i32Shl().i32Add().f32Load().f64PromoteF32().set(bb);
    f.end();
    f.get(bb).get(mu).get(a).f64Mul().f64Sub().set(bb);
    f.get(o).get(ch).get(S).i32Mul().i32(2).i32Shl().i32Add().set(q);
    f.get(q).get(q).get(S).get(a).f32DemoteF64().get(bb).f32DemoteF64().get(SILU).call(AFFINE_ACT);
    f.get(ch).i32(1).i32Add().set(ch);
    f.br(0).end().end();
  });
  return f;
}

function layerNormBwd(): Func {
  const f = new Func("layerNormBwd", [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [X, GY, DX, ROWS, D, W, MEAN, RSTD, DWACC, DBACC] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const px = f.local(I32),
    pg = f.local(I32),
    pd = f.local(I32),
    pa = f.local(I32),
    t = f.local(I32);
  const mu = f.local(V128),
    rs = f.local(V128),
    xh = f.local(V128),
    gw = f.local(V128),
    g = f.local(V128),
    sg = f.local(V128),
    sgx = f.local(V128),
    sgT = f.local(V128),
    sgxT = f.local(V128);
  const mg = f.local(V128),
    mgx = f.local(V128),
    y = f.local(V128),
    dn = f.local(F32);
  f.get(D).f64ConvertI32S().f32DemoteF64().set(dn);
  const hsum = (v: number, tail: number): Func =>
    f
      .get(v)
      .f32x4ExtractLane(0)
      .get(v)
      .f32x4ExtractLane(1)
      .f32Add()
      .get(v)
      .f32x4ExtractLane(2)
      .get(v)
      .f32x4ExtractLane(3)
      .f32Add()
      .f32Add()
      .get(tail)
      .f32x4ExtractLane(0)
      .f32Add();
  /** xh = (x - mu) rs, g, gw = g w (or g) at off. */
  const terms = (off: number, wide: boolean): void => {
    load(f, px, off, wide).get(mu).f32x4Sub().get(rs).f32x4Mul().set(xh);
    load(f, pg, off, wide).set(g);
    f.get(g).set(gw);
    f.get(W).if_();
    f.get(g);
    load(f, W, off, wide).f32x4Mul().set(gw);
    f.end();
  };
  forRows(f, ROWS, (r) => {
    f.get(r).get(D).i32Mul().i32(2).i32Shl().set(t);
    f.get(X).get(t).i32Add().set(px);
    f.get(GY).get(t).i32Add().set(pg);
    f.get(DX).get(t).i32Add().set(pd);
    f.get(MEAN).get(r).i32(3).i32Shl().i32Add().f64Load().f32DemoteF64().f32x4Splat().set(mu);
    f.get(RSTD).get(r).i32(3).i32Shl().i32Add().f64Load().f32DemoteF64().f32x4Splat().set(rs);
    f.v128Zero().set(sg);
    f.v128Zero().set(sgx);
    f.v128Zero().set(sgT);
    f.v128Zero().set(sgxT);
    rows(f, D, (off, wide) => {
      terms(off, wide);
      f.get(wide ? sg : sgT)
        .get(gw)
        .f32x4Add()
        .set(wide ? sg : sgT);
      f.get(wide ? sgx : sgxT)
        .get(gw)
        .get(xh)
        .f32x4Mul()
        .f32x4Add()
        .set(wide ? sgx : sgxT);
      // per-column float64 sums of g and g xhat (two f64x2 per 4 floats, one lane for the tail)
      f.get(DWACC).if_();
      for (const [acc, v] of [
        [DBACC, g],
        [DWACC, -1],
      ] as const) {
        if (v === -1) f.get(g).get(xh).f32x4Mul().set(y);
        const src = v === -1 ? y : g;
        f.get(acc).get(off).i32(1).i32Shl().i32Add().set(pa);
        if (wide) {
          f.get(pa).get(pa).v128Load().get(src).f64x2PromoteLowF32x4().f64x2Add().v128Store();
          f.get(pa)
            .get(pa)
            .v128Load(16)
            .get(src)
            .get(src)
            .f32x4Shuffle([2, 3, 2, 3])
            .f64x2PromoteLowF32x4()
            .f64x2Add()
            .v128Store(16);
        } else f.get(pa).get(pa).f64Load().get(src).f32x4ExtractLane(0).f64PromoteF32().f64Add().f64Store();
      }
      f.end();
    });
    hsum(sg, sgT).get(dn).f32Div().f32x4Splat().set(mg);
    hsum(sgx, sgxT).get(dn).f32Div().f32x4Splat().set(mgx);
    rows(f, D, (off, wide) => {
      terms(off, wide);
      f.get(rs).get(gw).get(mg).f32x4Sub().get(xh).get(mgx).f32x4Mul().f32x4Sub().f32x4Mul().set(y);
      store(f, pd, off, y, wide);
    });
  });
  return f;
}

/** Module bytes of the row kernels, importing `env.memory` as described. */
export function rowModuleBytes(memory: Omit<MemoryImport, "module" | "name">): Uint8Array {
  const fns = [
    rowMax(),
    rowExp(),
    rowScale(),
    rowDs(),
    rowFill(),
    rowDot(),
    rowAdd(),
    rowsSoftmax(),
    rowsExpSub(),
    rowsDs(),
    rowsDot(),
    rowsAdd(),
    im2colFunc(),
    col2imFunc(),
    vUnary("vExp", "exp"),
    vUnary("vSigmoid", "sigmoid"),
    vUnary("vSilu", "silu"),
    vSiluGrad(),
    sumF32(),
    sumSqDev(),
    affineAct(),
    rowNormAffine(),
    rowsLayerNorm(),
    vGelu(),
    vGeluGrad(),
    rowsGeglu(false),
    rowsGeglu(true),
    binRows("binAdd", (f) => f.f32x4Add()),
    binRows("binSub", (f) => f.f32x4Sub()),
    binRows("binMul", (f) => f.f32x4Mul()),
    binRows("binDiv", (f) => f.f32x4Div()),
    copyRows(),
    im2colS1Func(),
    col2imS1Func(),
    sumRows4(),
    sumCols(),
    adamF32(),
    dotDev(),
    groupNormBwd(),
    layerNormBwd(),
    groupNormFwd(),
    winoWeightsFunc(),
    winoInputFunc(),
    winoOutputFunc(),
    winoGradTilesFunc(),
    winoKernelGradFunc(),
  ];
  const idx: [number, string][] = [
    [ROW_MAX, "rowMax"],
    [ROW_EXP, "rowExp"],
    [ROW_SCALE, "rowScale"],
    [ROW_DS, "rowDs"],
    [ROW_FILL, "rowFill"],
    [ROW_DOT, "rowDot"],
    [ROW_ADD, "rowAdd"],
    [SUM_F32, "sumF32"],
    [SUM_SQ_DEV, "sumSqDev"],
    [ROW_NORM_AFFINE, "rowNormAffine"],
    [DOT_DEV, "dotDev"],
    [AFFINE_ACT, "affineAct"],
  ];
  for (const [i, name] of idx)
    if (fns[i]?.name !== name) throw new Error(`rowops: function ${i} is ${fns[i]?.name}, expected ${name}`);
  return buildModule({ module: "env", name: "memory", ...memory }, fns);
}
