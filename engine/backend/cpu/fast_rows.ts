// The float32 fast path's elementwise, reduction, norm, softmax and Adam kernels (WebAssembly SIMD over
// blocks of the shared arena); each returns null where it does not apply.
import { take } from "./buffers.ts";
import { sgemmKernel, WasmRuntime } from "./wasm/sgemm.ts";
import type { Shape } from "../../shape.ts";
import { broadcastStrides, coalesce } from "./elementwise.ts";
import type { AdamHyper, BinaryOp } from "../backend.ts";

// elementwise ops on fewer floats than this stay in JavaScript (the staging would cost more)
const VECTOR_MIN = 2048;
const VECTOR_BLOCK = 1 << 18;
// output floats per block of the binary ops (three blocks of this size stay in L2)
const BINARY_BLOCK = 1 << 16;

/** The WebAssembly runtime where the default kernel is one (WebAssembly SIMD available), else null. */
export function fastRuntime(): WasmRuntime | null {
  const k = sgemmKernel();
  return k instanceof WasmRuntime ? k : null;
}

/** The exp-based activations in WebAssembly SIMD, through a cache-sized block; null if not handled. */
export function unaryF32(op: string, x: Float32Array): Float32Array | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN) return null;
  const r = rt.rows;
  const fn =
    op === "silu" ? r.vSilu : op === "sigmoid" ? r.vSigmoid : op === "exp" ? r.vExp : op === "gelu" ? r.vGelu : null;
  if (!fn) return null;
  const out = take(Float32Array, x.length, true);
  return rt.withBlocks([Math.min(VECTOR_BLOCK, x.length)], ([bP]) => {
    for (let i = 0; i < x.length; i += VECTOR_BLOCK) {
      const n = Math.min(VECTOR_BLOCK, x.length - i);
      rt.write(bP!, x.subarray(i, i + n));
      fn(bP!, bP!, n);
      out.set(rt.view(bP!, n), i);
    }
    return out;
  });
}

/**
 * add, sub, mul, div with broadcasting in WebAssembly SIMD: the coalesced output is walked as rows of
 * its innermost dimension, a block of rows at a time (each operand's span for those rows copied in),
 * runs of rows along the second-innermost dimension in one call. Float32 operations round as the
 * plain path's doubles do, so results are the same bit for bit; null if not handled.
 */
export function binaryF32(
  op: BinaryOp,
  a: Float32Array,
  aShape: Shape,
  b: Float32Array,
  bShape: Shape,
  outShape: Shape,
): Float32Array | null {
  const rt = fastRuntime();
  if (!rt) return null;
  const r = rt.rows;
  const fn =
    op === "add" ? r.binAdd : op === "sub" ? r.binSub : op === "mul" ? r.binMul : op === "div" ? r.binDiv : null;
  let total = 1;
  for (const d of outShape) total *= d;
  if (!fn || total < VECTOR_MIN) return null;
  const {
    shape,
    strides: [sa, sb],
  } = coalesce(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
  const nd = shape.length,
    n = shape[nd - 1]!,
    ia = sa![nd - 1]!,
    ib = sb![nd - 1]!;
  // the innermost stride is 1 or 0 (broadcast) for each operand, never 0 for both
  if ((ia !== 0 && ia !== 1) || (ib !== 0 && ib !== 1) || ia + ib === 0) return null;
  const R = nd >= 2 ? shape[nd - 2]! : 1,
    aRS = nd >= 2 ? sa![nd - 2]! : 0,
    bRS = nd >= 2 ? sb![nd - 2]! : 0;
  const rowsTotal = total / n;
  // element offset of row `row` (an index over every dimension but the innermost) in an operand
  const offset = (s: number[], row: number): number => {
    let o = 0;
    for (let d = nd - 2; d >= 0 && row > 0; d--) {
      o += (row % shape[d]!) * s[d]!;
      row = Math.floor(row / shape[d]!);
    }
    return o;
  };
  const per = Math.max(1, Math.floor(BINARY_BLOCK / n));
  // each operand's span over a block of rows (offsets grow with the row: strides are not negative)
  const span = (s: number[], inner: number, r0: number, r1: number): [number, number] => [
    offset(s, r0),
    offset(s, r1 - 1) + (inner ? n : 1),
  ];
  let aMax = 1,
    bMax = 1;
  for (let r0 = 0; r0 < rowsTotal; r0 += per) {
    const r1 = Math.min(rowsTotal, r0 + per),
      [a0, a1] = span(sa!, ia, r0, r1),
      [b0, b1] = span(sb!, ib, r0, r1);
    aMax = Math.max(aMax, a1 - a0);
    bMax = Math.max(bMax, b1 - b0);
  }
  const out = take(Float32Array, total, true);
  return rt.withBlocks([aMax, bMax, Math.min(per, rowsTotal) * n], ([aP, bP, oP]) => {
    for (let r0 = 0; r0 < rowsTotal; r0 += per) {
      const r1 = Math.min(rowsTotal, r0 + per),
        [a0, a1] = span(sa!, ia, r0, r1),
        [b0, b1] = span(sb!, ib, r0, r1);
      rt.write(aP!, a.subarray(a0, a1));
      rt.write(bP!, b.subarray(b0, b1));
      // runs of rows that stay within one run of the second-innermost dimension
      for (let row = r0; row < r1;) {
        const end = Math.min(r1, (Math.floor(row / R) + 1) * R);
        fn(
          aP! + (offset(sa!, row) - a0) * 4,
          aRS * 4,
          ia,
          bP! + (offset(sb!, row) - b0) * 4,
          bRS * 4,
          ib,
          oP! + (row - r0) * n * 4,
          end - row,
          n,
        );
        row = end;
      }
      out.set(rt.view(oP!, (r1 - r0) * n), r0 * n);
    }
    return out;
  });
}

/**
 * Sum over sorted unique `axes` as the plain reduce computes it (runs of adjacent axes last first,
 * float64 sums rounded to float32 after each run), each run in one WebAssembly pass with float64
 * lanes: the same results bit for bit; null if not handled.
 */
export function reduceSumF32(x: Float32Array, shape: Shape, axes: readonly number[]): Float32Array | null {
  const rt = fastRuntime();
  if (!rt || axes.length === 0 || x.length < VECTOR_MIN) return null;
  const sh = [...shape],
    stages: [number, number, number][] = [];
  for (let i = axes.length - 1; i >= 0;) {
    let j = i;
    while (j > 0 && axes[j - 1] === axes[j]! - 1) j--;
    let outer = 1,
      len = 1,
      inner = 1;
    for (let d = 0; d < axes[j]!; d++) outer *= sh[d]!;
    for (let d = axes[j]!; d <= axes[i]!; d++) len *= sh[d]!;
    for (let d = axes[i]! + 1; d < sh.length; d++) inner *= sh[d]!;
    stages.push([outer, len, inner]);
    for (let d = axes[j]!; d <= axes[i]!; d++) sh[d] = 1;
    i = j - 1;
  }
  const sizes = stages.map(([o, , inner]) => o * inner),
    accFloats = 2 * Math.max(1, ...stages.map(([, , inner]) => inner));
  return rt.withBlocks([x, ...sizes, accFloats], (ptrs) => {
    const acc = ptrs[ptrs.length - 1]!;
    let cur = ptrs[0]!;
    stages.forEach(([outer, len, inner], k) => {
      const dst = ptrs[k + 1]!;
      if (inner === 1) rt.rows.sumRows4(cur, outer, len, dst);
      else
        for (let o = 0; o < outer; o++)
          rt.rows.sumCols(cur + o * len * inner * 4, len, inner, acc, dst + o * inner * 4);
      cur = dst;
    });
    return rt.read(cur, sizes[sizes.length - 1]!);
  });
}

// elements per block of the Adam update (four arrays of it staged)
const ADAM_BLOCK = 1 << 15;

/**
 * One Adam/AdamW step in place over float32 parameter and moments, in WebAssembly with float64 lanes
 * and the plain kernel's operations in its order: the same results bit for bit; false if not handled.
 */
export function adamF32(
  w: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  size: number,
  h: AdamHyper,
): boolean {
  const rt = fastRuntime();
  if (!rt || size < VECTOR_MIN) return false;
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = h;
  const stepSize = lr / (1 - Math.pow(b1, h.t)),
    sq = Math.sqrt(1 - Math.pow(b2, h.t));
  const c = decoupled && wd !== 0 ? 1 - lr * wd : 1,
    l2 = !decoupled && wd !== 0 ? 1 : 0;
  const bl = Math.min(ADAM_BLOCK, size);
  rt.withBlocks([bl, bl, bl, bl], ([wP, gP, mP, vP]) => {
    for (let i = 0; i < size; i += ADAM_BLOCK) {
      const n = Math.min(ADAM_BLOCK, size - i);
      rt.write(wP!, w.subarray(i, i + n));
      rt.write(gP!, g.subarray(i, i + n));
      rt.write(mP!, m.subarray(i, i + n));
      rt.write(vP!, v.subarray(i, i + n));
      rt.rows.adamF32(wP!, gP!, mP!, vP!, n, c, l2, wd, b1, 1 - b1, b2, 1 - b2, stepSize, sq, eps);
      w.set(rt.view(wP!, n), i);
      m.set(rt.view(mP!, n), i);
      v.set(rt.view(vP!, n), i);
    }
  });
  return true;
}

/** silu's (or gelu's) gradient g * f'(x) for same-shape operands in WebAssembly SIMD; null if not handled. */
export function siluGradF32(g: Float32Array, x: Float32Array, gelu = false): Float32Array | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN || g.length !== x.length) return null;
  const out = take(Float32Array, x.length, true);
  const m = Math.min(VECTOR_BLOCK, x.length);
  return rt.withBlocks([m, m], ([gP, xP]) => {
    for (let i = 0; i < x.length; i += VECTOR_BLOCK) {
      const n = Math.min(VECTOR_BLOCK, x.length - i);
      rt.write(gP!, g.subarray(i, i + n));
      rt.write(xP!, x.subarray(i, i + n));
      (gelu ? rt.rows.vGeluGrad : rt.rows.vSiluGrad)(gP!, xP!, gP!, n);
      out.set(rt.view(gP!, n), i);
    }
    return out;
  });
}

/**
 * Float32 group norm forward in WebAssembly SIMD (optionally followed by silu): per (sample, group) a
 * blocked sum for the mean and one for the squared deviations (float64 across blocks), then one
 * affine (+ silu) pass per channel. Same outputs as the plain kernel; null if not handled.
 */
export function groupNormF32(
  x: Float32Array,
  weight: Float32Array | null,
  bias: Float32Array | null,
  p: { n: number; c: number; s: number; groups: number; eps: number },
  silu = false,
): { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN) return null;
  const { n, c, s, groups, eps } = p;
  const cg = c / groups;
  const mean = new Float64Array(n * groups),
    rstd = new Float64Array(n * groups);
  return rt.withBlocks([x, weight ?? 1, bias ?? 1, 2 * n * groups, 2 * n * groups], ([xP, wP, bP, mP, rP]) => {
    if (weight) rt.write(wP!, weight);
    if (bias) rt.write(bP!, bias);
    rt.rows.groupNormFwd(xP!, n * groups, groups, cg, s, weight ? wP! : 0, bias ? bP! : 0, eps, silu ? 1 : 0, mP!, rP!);
    const buf = rt.arena.memory.buffer;
    mean.set(new Float64Array(buf, mP!, n * groups));
    rstd.set(new Float64Array(buf, rP!, n * groups));
    return { y: rt.read(xP!, x.length), mean, rstd };
  });
}

type NormGrads = { dx: Float32Array; dw: Float32Array | null; db: Float32Array | null };

/** The float64 sums at byte offset `ptr` rounded into a pooled float32 array. */
function f64Out(rt: WasmRuntime, ptr: number, n: number): Float32Array {
  const out = take(Float32Array, n, true);
  out.set(new Float64Array(rt.arena.memory.buffer, ptr, n));
  return out;
}

/**
 * Float32 group norm backward in WebAssembly SIMD: per (sample, group) the blocked sums of gy and
 * gy (x - mean) per channel (float64 across blocks and channels), then dx in float32 arithmetic; the
 * weight and bias gradients summed in float64. Agrees with the plain kernel to float32 rounding; null
 * if not handled.
 */
export function groupNormBackwardF32(
  x: Float32Array,
  weight: Float32Array | null,
  gy: Float32Array,
  mean: Float64Array,
  rstd: Float64Array,
  p: { n: number; c: number; s: number; groups: number },
  affine: boolean,
): NormGrads | null {
  const rt = fastRuntime();
  const { n, c, s, groups } = p,
    ng = n * groups;
  if (!rt || x.length < VECTOR_MIN || mean.length < ng || rstd.length < ng) return null;
  return rt.withBlocks(
    [x, gy, x.length, weight ?? 1, 2 * ng, 2 * ng, 2 * c, 2 * c],
    ([xP, gP, dP, wP, mP, rP, dwP, dbP]) => {
      const buf = rt.arena.memory.buffer;
      new Float64Array(buf, mP!, ng).set(mean.subarray(0, ng));
      new Float64Array(buf, rP!, ng).set(rstd.subarray(0, ng));
      new Float64Array(buf, dwP!, c).fill(0);
      new Float64Array(buf, dbP!, c).fill(0);
      rt.rows.groupNormBwd(xP!, gP!, dP!, ng, groups, c / groups, s, weight ? wP! : 0, mP!, rP!, dwP!, dbP!);
      const dx = rt.read(dP!, x.length);
      return affine ? { dx, dw: f64Out(rt, dwP!, c), db: f64Out(rt, dbP!, c) } : { dx, dw: null, db: null };
    },
  );
}

/**
 * Float32 layer norm backward in WebAssembly SIMD over rows of d floats: the row sums of g w and
 * g w xhat in float32 lanes, dx in float32 arithmetic, the weight and bias gradients summed over rows
 * in float64. Agrees with the plain kernel to float32 rounding; null if not handled.
 */
export function layerNormBackwardF32(
  x: Float32Array,
  weight: Float32Array | null,
  gy: Float32Array,
  mean: Float64Array,
  rstd: Float64Array,
  p: { rows: number; d: number },
  affine: boolean,
): NormGrads | null {
  const rt = fastRuntime();
  const { rows, d } = p;
  if (!rt || x.length < VECTOR_MIN || d === 0 || mean.length < rows || rstd.length < rows) return null;
  return rt.withBlocks(
    [x, gy, x.length, weight ?? 1, 2 * rows, 2 * rows, 2 * d, 2 * d],
    ([xP, gP, dP, wP, mP, rP, dwP, dbP]) => {
      const buf = rt.arena.memory.buffer;
      new Float64Array(buf, mP!, rows).set(mean.subarray(0, rows));
      new Float64Array(buf, rP!, rows).set(rstd.subarray(0, rows));
      new Float64Array(buf, dwP!, d).fill(0);
      new Float64Array(buf, dbP!, d).fill(0);
      rt.rows.layerNormBwd(xP!, gP!, dP!, rows, d, weight ? wP! : 0, mP!, rP!, affine ? dwP! : 0, dbP!);
      const dx = rt.read(dP!, x.length);
      return affine ? { dx, dw: f64Out(rt, dwP!, d), db: f64Out(rt, dbP!, d) } : { dx, dw: null, db: null };
    },
  );
}

/**
 * Float32 layer norm over contiguous rows of d floats in one WebAssembly call (statistics as the group
 * norm's; absent affine terms as ones and zeros). Same outputs as the plain kernel; null if not handled.
 */
export function layerNormF32(
  x: Float32Array,
  weight: Float32Array | null,
  bias: Float32Array | null,
  p: { rows: number; d: number; eps: number },
): { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN || p.d === 0) return null;
  const { rows, d, eps } = p;
  return rt.withBlocks([x, weight ?? d, bias ?? d, 2 * rows, 2 * rows], ([xP, wP, bP, mP, rP]) => {
    const h = rt.arena.heapF32();
    if (!weight) h.fill(1, wP! / 4, wP! / 4 + d);
    if (!bias) h.fill(0, bP! / 4, bP! / 4 + d);
    rt.rows.rowsLayerNorm(xP!, xP!, rows, d, wP!, bP!, eps, mP!, rP!);
    const buf = rt.arena.memory.buffer;
    return {
      y: rt.read(xP!, x.length),
      mean: new Float64Array(buf, mP!, rows).slice(),
      rstd: new Float64Array(buf, rP!, rows).slice(),
    };
  });
}

/** GEGLU forward (rows of 2d -> rows of d) or its gradient in WebAssembly SIMD; null if not handled. */
export function gegluF32(h: Float32Array, g: Float32Array | null, rows: number, d: number): Float32Array | null {
  const rt = fastRuntime();
  if (!rt || h.length < VECTOR_MIN) return null;
  const outLen = g ? h.length : rows * d;
  return rt.withBlocks([h, g ?? 0, outLen], ([hP, gP, oP]) => {
    if (g) rt.rows.rowsGegluGrad(hP!, gP!, oP!, rows, d);
    else rt.rows.rowsGeglu(hP!, oP!, rows, d);
    return rt.read(oP!, outLen);
  });
}

// rows per call of the row kernels, so the staging block stays cache-sized (~1 MiB)
const SOFTMAX_BLOCK_FLOATS = 1 << 18;
const SOFTMAX_MAX_ROW = 4096;

/**
 * Softmax (or log-softmax) over contiguous rows of n floats with the SIMD row kernels: max, exp with
 * its sum and the scaling run in WebAssembly, a block of rows at a time; null where unavailable.
 */
export function softmaxRowsF32(x: Float32Array, rows: number, n: number, log: boolean): Float32Array | null {
  const rt = fastRuntime();
  // the row sums accumulate in float32: past a few thousand terms the plain path's float64 sum is kept
  if (!rt || n === 0 || n > SOFTMAX_MAX_ROW) return null;
  const out = take(Float32Array, rows * n, true);
  const per = Math.max(1, Math.floor(SOFTMAX_BLOCK_FLOATS / n));
  return rt.withBlocks([Math.min(rows, per) * n, 2 * Math.min(rows, per)], ([sP, stats]) => {
    for (let r0 = 0; r0 < rows; r0 += per) {
      const nr = Math.min(per, rows - r0);
      rt.write(sP!, x.subarray(r0 * n, (r0 + nr) * n));
      rt.rows.rowsSoftmax(sP!, nr, n * 4, n, stats!, stats! + nr * 4);
      const h = rt.arena.heapF32();
      if (!log) out.set(h.subarray(sP! / 4, sP! / 4 + nr * n), r0 * n);
      for (let r = 0; r < nr; r++) {
        const mx = h[stats! / 4 + r]!,
          sum = h[stats! / 4 + nr + r]!,
          base = (r0 + r) * n;
        // a row of -Infinity has no softmax: NaN, as the plain path and PyTorch give
        if (sum === 0) out.fill(NaN, base, base + n);
        else if (log) {
          const lse = mx + Math.log(sum);
          for (let j = 0; j < n; j++) out[base + j] = x[base + j]! - lse;
        }
      }
    }
    return out;
  });
}
