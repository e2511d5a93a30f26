// the float32 fast path of the cpu backend: WebAssembly SIMD GEMM (relaxed FMA where the runtime has
// it), convolutions, softmax rows, norms and activations, staged through the shared arena by
// WasmRuntime.withBlocks; convolutions run their part kernels (wasm/conv_parts.ts) on the worker
// pool. Every function returns null (or takes the plain path) where it does not apply.
import type { TypedArray } from "../../dtype.ts";
import { take } from "./buffers.ts";
import type { MatmulParams } from "../backend.ts";
import { gemm as plainGemm, matmul as plainMatmul } from "./matmul.ts";
import { matmulF32Batched, simdAvailable, bestVariant, sgemmKernel, PARALLEL_MIN_WORK, WasmRuntime } from "./wasm/sgemm.ts";
import type { Shape } from "../../shape.ts";
import type { Conv2dParams } from "../backend.ts";
import { geometry, isPointwise } from "./conv.ts";
import { broadcastStrides, coalesce } from "./elementwise.ts";
import type { AdamHyper, BinaryOp } from "../backend.ts";
import { UnsupportedKernelError } from "../../errors.ts";
import {
  CMD_CONV_BWD_INPUT, CMD_CONV_BWD_INPUT_BATCHED, CMD_CONV_BWD_WEIGHT, CMD_CONV_BWD_WEIGHT_BATCHED, CMD_CONV_FWD, CMD_CONV_FWD_BATCHED, CMD_CONV_WINOGRAD, CMD_CONV_WINOGRAD_WGRAD,
} from "./wasm/conv_parts.ts";
import { getNumThreads } from "./wasm/pool.ts";

/**
 * Channel runs for `threads` threads, one per thread: a finer split repacks the shared GEMM operand
 * once more per run, which cost more than the balancing gained on an idle machine.
 */
function channelUnits(c: number, threads: number): { threads: number; cs: number; units: number } {
  const cs = Math.ceil(c / Math.min(c, threads));
  return { threads, cs, units: Math.ceil(c / cs) };
}
/** Parts worth running for `work` multiply-adds over at most `units` independent units. */
function partCount(work: number, units: number): number {
  return Math.max(1, Math.min(getNumThreads(), units, Math.floor(work / PARALLEL_MIN_WORK)));
}

// below this many multiply-adds the copies into WebAssembly memory cost more than they save
const MIN_WORK = 16 * 16 * 16;

/** C[M,N] += A[M,K] @ B[K,N] through the SIMD kernel. */
function gemm(A: TypedArray, aOff: number, B: TypedArray, bOff: number, C: TypedArray, cOff: number, M: number, K: number, N: number): void {
  if (M * N * K < MIN_WORK || !(A instanceof Float32Array) || !(B instanceof Float32Array)) {
    plainGemm(A, aOff, B, bOff, C, cOff, M, K, N);
    return;
  }
  const t = matmulF32Batched(A.subarray(aOff, aOff + M * K), B.subarray(bOff, bOff + K * N), 1, M, N, K, false, false);
  for (let i = 0; i < M * N; i++) C[cOff + i] += t[i];
}

function matmul(a: TypedArray, b: TypedArray, p: MatmulParams): TypedArray {
  if (p.m * p.n * p.k < MIN_WORK || !(a instanceof Float32Array) || !(b instanceof Float32Array)) return plainMatmul(a, b, p);
  return matmulF32Batched(a, b, p.batch, p.m, p.n, p.k, p.transA, p.transB, undefined, { strideA: p.strideA, strideB: p.strideB, strideC: p.m * p.n });
}

/** The SIMD kernels, or null where WebAssembly SIMD is unavailable. */
export function wasmFastKernels(): {
  gemm: typeof gemm; matmul: typeof matmul; variant: string;
  conv2d: typeof conv2dF32; conv2dBackwardInput: typeof conv2dBackwardInputF32; conv2dBackwardWeight: typeof conv2dBackwardWeightF32;
  softmaxRows: typeof softmaxRowsF32; unary: typeof unaryF32; siluGrad: typeof siluGradF32; groupNorm: typeof groupNormF32; layerNorm: typeof layerNormF32; geglu: typeof gegluF32;
  binary: typeof binaryF32; reduceSum: typeof reduceSumF32; adam: typeof adamF32;
  groupNormBackward: typeof groupNormBackwardF32; layerNormBackward: typeof layerNormBackwardF32;
} | null {
  if (!simdAvailable()) return null;
  return {
    gemm, matmul, variant: bestVariant(), conv2d: conv2dF32, conv2dBackwardInput: conv2dBackwardInputF32, conv2dBackwardWeight: conv2dBackwardWeightF32,
    softmaxRows: softmaxRowsF32, unary: unaryF32, siluGrad: siluGradF32, groupNorm: groupNormF32, layerNorm: layerNormF32, geglu: gegluF32,
    binary: binaryF32, reduceSum: reduceSumF32, adam: adamF32, groupNormBackward: groupNormBackwardF32, layerNormBackward: layerNormBackwardF32,
  };
}

// elementwise ops on fewer floats than this stay in JavaScript (the staging would cost more)
const VECTOR_MIN = 2048;
const VECTOR_BLOCK = 1 << 18;
// output floats per block of the binary ops (three blocks of this size stay in L2)
const BINARY_BLOCK = 1 << 16;

/** The WebAssembly runtime where the default kernel is one (WebAssembly SIMD available), else null. */
function fastRuntime(): WasmRuntime | null {
  const k = sgemmKernel();
  return k instanceof WasmRuntime ? k : null;
}

/** The exp-based activations in WebAssembly SIMD, through a cache-sized block; null if not handled. */
export function unaryF32(op: string, x: Float32Array): Float32Array | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN) return null;
  const r = rt.rows;
  const fn = op === "silu" ? r.vSilu : op === "sigmoid" ? r.vSigmoid : op === "exp" ? r.vExp : op === "gelu" ? r.vGelu : null;
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
export function binaryF32(op: BinaryOp, a: Float32Array, aShape: Shape, b: Float32Array, bShape: Shape, outShape: Shape): Float32Array | null {
  const rt = fastRuntime();
  if (!rt) return null;
  const r = rt.rows;
  const fn = op === "add" ? r.binAdd : op === "sub" ? r.binSub : op === "mul" ? r.binMul : op === "div" ? r.binDiv : null;
  let total = 1;
  for (const d of outShape) total *= d;
  if (!fn || total < VECTOR_MIN) return null;
  const { shape, strides: [sa, sb] } = coalesce(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)]);
  const nd = shape.length, n = shape[nd - 1]!, ia = sa![nd - 1]!, ib = sb![nd - 1]!;
  // the innermost stride is 1 or 0 (broadcast) for each operand, never 0 for both
  if ((ia !== 0 && ia !== 1) || (ib !== 0 && ib !== 1) || ia + ib === 0) return null;
  const R = nd >= 2 ? shape[nd - 2]! : 1, aRS = nd >= 2 ? sa![nd - 2]! : 0, bRS = nd >= 2 ? sb![nd - 2]! : 0;
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
  const span = (s: number[], inner: number, r0: number, r1: number): [number, number] => [offset(s, r0), offset(s, r1 - 1) + (inner ? n : 1)];
  let aMax = 1, bMax = 1;
  for (let r0 = 0; r0 < rowsTotal; r0 += per) {
    const r1 = Math.min(rowsTotal, r0 + per), [a0, a1] = span(sa!, ia, r0, r1), [b0, b1] = span(sb!, ib, r0, r1);
    aMax = Math.max(aMax, a1 - a0);
    bMax = Math.max(bMax, b1 - b0);
  }
  const out = take(Float32Array, total, true);
  return rt.withBlocks([aMax, bMax, Math.min(per, rowsTotal) * n], ([aP, bP, oP]) => {
    for (let r0 = 0; r0 < rowsTotal; r0 += per) {
      const r1 = Math.min(rowsTotal, r0 + per), [a0, a1] = span(sa!, ia, r0, r1), [b0, b1] = span(sb!, ib, r0, r1);
      rt.write(aP!, a.subarray(a0, a1));
      rt.write(bP!, b.subarray(b0, b1));
      // runs of rows that stay within one run of the second-innermost dimension
      for (let row = r0; row < r1;) {
        const end = Math.min(r1, (Math.floor(row / R) + 1) * R);
        fn(aP! + (offset(sa!, row) - a0) * 4, aRS * 4, ia, bP! + (offset(sb!, row) - b0) * 4, bRS * 4, ib, oP! + (row - r0) * n * 4, end - row, n);
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
  const sh = [...shape], stages: [number, number, number][] = [];
  for (let i = axes.length - 1; i >= 0;) {
    let j = i;
    while (j > 0 && axes[j - 1] === axes[j]! - 1) j--;
    let outer = 1, len = 1, inner = 1;
    for (let d = 0; d < axes[j]!; d++) outer *= sh[d]!;
    for (let d = axes[j]!; d <= axes[i]!; d++) len *= sh[d]!;
    for (let d = axes[i]! + 1; d < sh.length; d++) inner *= sh[d]!;
    stages.push([outer, len, inner]);
    for (let d = axes[j]!; d <= axes[i]!; d++) sh[d] = 1;
    i = j - 1;
  }
  const sizes = stages.map(([o, , inner]) => o * inner), accFloats = 2 * Math.max(1, ...stages.map(([, , inner]) => inner));
  return rt.withBlocks([x, ...sizes, accFloats], (ptrs) => {
    const acc = ptrs[ptrs.length - 1]!;
    let cur = ptrs[0]!;
    stages.forEach(([outer, len, inner], k) => {
      const dst = ptrs[k + 1]!;
      if (inner === 1) rt.rows.sumRows4(cur, outer, len, dst);
      else for (let o = 0; o < outer; o++) rt.rows.sumCols(cur + o * len * inner * 4, len, inner, acc, dst + o * inner * 4);
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
export function adamF32(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, size: number, h: AdamHyper): boolean {
  const rt = fastRuntime();
  if (!rt || size < VECTOR_MIN) return false;
  const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = h;
  const stepSize = lr / (1 - Math.pow(b1, h.t)), sq = Math.sqrt(1 - Math.pow(b2, h.t));
  const c = decoupled && wd !== 0 ? 1 - lr * wd : 1, l2 = !decoupled && wd !== 0 ? 1 : 0;
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
  x: Float32Array, weight: Float32Array | null, bias: Float32Array | null,
  p: { n: number; c: number; s: number; groups: number; eps: number }, silu = false,
): { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null {
  const rt = fastRuntime();
  if (!rt || x.length < VECTOR_MIN) return null;
  const { n, c, s, groups, eps } = p;
  const cg = c / groups;
  const mean = new Float64Array(n * groups), rstd = new Float64Array(n * groups);
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
  x: Float32Array, weight: Float32Array | null, gy: Float32Array, mean: Float64Array, rstd: Float64Array,
  p: { n: number; c: number; s: number; groups: number }, affine: boolean,
): NormGrads | null {
  const rt = fastRuntime();
  const { n, c, s, groups } = p, ng = n * groups;
  if (!rt || x.length < VECTOR_MIN || mean.length < ng || rstd.length < ng) return null;
  return rt.withBlocks([x, gy, x.length, weight ?? 1, 2 * ng, 2 * ng, 2 * c, 2 * c], ([xP, gP, dP, wP, mP, rP, dwP, dbP]) => {
    const buf = rt.arena.memory.buffer;
    new Float64Array(buf, mP!, ng).set(mean.subarray(0, ng));
    new Float64Array(buf, rP!, ng).set(rstd.subarray(0, ng));
    new Float64Array(buf, dwP!, c).fill(0);
    new Float64Array(buf, dbP!, c).fill(0);
    rt.rows.groupNormBwd(xP!, gP!, dP!, ng, groups, c / groups, s, weight ? wP! : 0, mP!, rP!, dwP!, dbP!);
    const dx = rt.read(dP!, x.length);
    return affine ? { dx, dw: f64Out(rt, dwP!, c), db: f64Out(rt, dbP!, c) } : { dx, dw: null, db: null };
  });
}

/**
 * Float32 layer norm backward in WebAssembly SIMD over rows of d floats: the row sums of g w and
 * g w xhat in float32 lanes, dx in float32 arithmetic, the weight and bias gradients summed over rows
 * in float64. Agrees with the plain kernel to float32 rounding; null if not handled.
 */
export function layerNormBackwardF32(
  x: Float32Array, weight: Float32Array | null, gy: Float32Array, mean: Float64Array, rstd: Float64Array,
  p: { rows: number; d: number }, affine: boolean,
): NormGrads | null {
  const rt = fastRuntime();
  const { rows, d } = p;
  if (!rt || x.length < VECTOR_MIN || d === 0 || mean.length < rows || rstd.length < rows) return null;
  return rt.withBlocks([x, gy, x.length, weight ?? 1, 2 * rows, 2 * rows, 2 * d, 2 * d], ([xP, gP, dP, wP, mP, rP, dwP, dbP]) => {
    const buf = rt.arena.memory.buffer;
    new Float64Array(buf, mP!, rows).set(mean.subarray(0, rows));
    new Float64Array(buf, rP!, rows).set(rstd.subarray(0, rows));
    new Float64Array(buf, dwP!, d).fill(0);
    new Float64Array(buf, dbP!, d).fill(0);
    rt.rows.layerNormBwd(xP!, gP!, dP!, rows, d, weight ? wP! : 0, mP!, rP!, affine ? dwP! : 0, dbP!);
    const dx = rt.read(dP!, x.length);
    return affine ? { dx, dw: f64Out(rt, dwP!, d), db: f64Out(rt, dbP!, d) } : { dx, dw: null, db: null };
  });
}

/**
 * Float32 layer norm over contiguous rows of d floats in one WebAssembly call (statistics as the group
 * norm's; absent affine terms as ones and zeros). Same outputs as the plain kernel; null if not handled.
 */
export function layerNormF32(
  x: Float32Array, weight: Float32Array | null, bias: Float32Array | null, p: { rows: number; d: number; eps: number },
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
    return { y: rt.read(xP!, x.length), mean: new Float64Array(buf, mP!, rows).slice(), rstd: new Float64Array(buf, rP!, rows).slice() };
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
        const mx = h[stats! / 4 + r]!, sum = h[stats! / 4 + nr + r]!, base = (r0 + r) * n;
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

/** The runtime the convolutions need (installed only where WebAssembly SIMD is, see wasmFastKernels). */
function convRuntime(): WasmRuntime {
  const rt = fastRuntime();
  if (!rt) throw new UnsupportedKernelError("conv2d (fast path)", "wasm-simd");
  return rt;
}

// floats of the patch matrix per block of output rows: the block is still in cache when the GEMM packs it
const COL_BLOCK_FLOATS = 1 << 18;

/** The geometry arguments a[2..16] of the conv part kernels (see wasm/conv_parts.ts). */
function geoArgs(q: ReturnType<typeof geometry>, rb: number): number[] {
  return [q.n, q.c, q.h, q.w, q.o, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.ho, q.wo, q.g, rb];
}

/** Output rows per patch-matrix block. */
function rowsPerBlock(q: ReturnType<typeof geometry>): number {
  return Math.max(1, Math.min(q.ho, Math.floor(COL_BLOCK_FLOATS / (q.cg * q.kh * q.kw * q.wo))));
}

// columns one GEMM of the batched convolutions aims for (images of L output positions side by side)
const BATCH_COLUMNS = 256;
// bound on the floats of the batched patch matrix
const BATCH_COL_FLOATS = 1 << 19;

/**
 * Images per GEMM for the batched convolution kernels, or 0 for the per-image kernels: whole images
 * per patch block, groups = 1, at least min(n, 8) groups of images so threads have units, and one
 * image per group only where the stride-1 im2col applies. It depends on the geometry only, so the
 * same images are grouped whatever the thread count.
 */
function imagesPerGemm(q: ReturnType<typeof geometry>): number {
  if (q.g !== 1 || rowsPerBlock(q) < q.ho) return 0;
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw;
  const nb = Math.max(1, Math.min(Math.floor(BATCH_COLUMNS / L), Math.ceil(q.n / 8), Math.floor(BATCH_COL_FLOATS / (R * L))));
  return nb > 1 || (q.sh === 1 && q.sw === 1) ? nb : 0;
}

// Winograd F(2x2, 3x3): below these channel counts the transforms cost more than they save
const WINOGRAD_MIN_CHANNELS = 8;
// bound on the floats of one part's transformed tiles (16 x channels x tiles)
const WINOGRAD_TILE_FLOATS = 1 << 19;

/**
 * Groups of Winograd tiles: nb images at a time (small images), or with nb = 1 blocks of rb tile rows
 * of one image (even with w = 4), so that one part's transformed tiles stay within the scratch bound
 * and, with `spread`, there are at least min(n, 8) x ... units for the threads. Fixed by the sizes.
 */
function tileGroups(n: number, th: number, tw: number, perTile: number, spread: boolean): { nb: number; rb: number } {
  const nb = Math.max(1, Math.min(Math.ceil(n / 8), Math.floor(WINOGRAD_TILE_FLOATS / (perTile * th * tw))));
  if (nb > 1) return { nb, rb: th };
  let rb = Math.max(1, Math.min(th, Math.floor(WINOGRAD_TILE_FLOATS / (perTile * tw)), spread && n < 8 ? Math.ceil(th / Math.ceil(8 / n)) : th));
  // 2 x 2 blocks of tiles (w = 4) need whole pairs of tile rows
  if (tw === 2 && rb < th) rb = Math.max(2, rb - (rb % 2));
  return { nb: 1, rb };
}

/** Whether a convolution (and its two gradients) runs as Winograd F(2x2, 3x3). */
function winograd(q: ReturnType<typeof geometry>): boolean {
  return q.kh === 3 && q.kw === 3 && q.sh === 1 && q.sw === 1 && q.ph === 1 && q.pw === 1 && q.g === 1 &&
    q.h % 2 === 0 && q.w % 2 === 0 && q.h > 0 && q.w > 0 && q.c >= WINOGRAD_MIN_CHANNELS && q.o >= WINOGRAD_MIN_CHANNELS;
}

/**
 * A 3x3 stride-1 padding-1 convolution of x (n, cIn, h, w) by Winograd F(2x2, 3x3) into (n, cOut, h, w):
 * the kernels read w[a sA + b sB + k] (rot: turned by 180 degrees) for output channel a and input
 * channel b, transformed once on this thread; the groups of tiles (see tileGroups) are the parts' units.
 */
function winogradConv(rt: WasmRuntime, x: Float32Array, n: number, cIn: number, h: number, w: number, cOut: number,
  wts: Float32Array, sA: number, sB: number, rot: boolean): Float32Array {
  const th = h / 2, tw = w / 2, tiles = th * tw, ny = n * cOut * h * w, perTile = 16 * Math.max(cIn, cOut);
  const { nb, rb } = tileGroups(n, th, tw, perTile, true);
  const units = rb < th ? n * Math.ceil(th / rb) : Math.ceil(n / nb), T = rb < th ? rb * tw : nb * tiles;
  const threads = partCount(n * cOut * cIn * tiles * 16, units);
  // plane strides a cache line past the matrices, so the 16 planes do not share cache sets
  const vPlane = cIn * T + 16, mPlane = cOut * T + 16;
  return rt.withBlocks([x, wts, 16 * cOut * cIn, ny, ...scratch(threads, 16 * vPlane), ...scratch(threads, 16 * mPlane), ...scratch(threads, (h + 2) * (w + 2))],
    ([xP, wP, uP, oP, ...s]) => {
      rt.rows.winoWeights(wP!, cOut, cIn, sA, sB, rot ? 1 : 0, uP!);
      rt.runParts(CMD_CONV_WINOGRAD, s.slice(0, threads).map((vP, i) => [nb, units, n, cIn, h, w, cOut, xP!, uP!, oP!, vP, s[threads + i]!, s[2 * threads + i]!, vPlane, mPlane, rb]));
      return rt.read(oP!, ny);
    });
}

/**
 * The weight gradient of a Winograd convolution: dU[xi] = sum over tiles of (A gy A^T)[xi] V[xi]^T by
 * parts over runs of input channels (the groups of tiles, fixed by the sizes, in order), then
 * G^T dU G per kernel.
 */
function winogradWeightGrad(rt: WasmRuntime, x: Float32Array, gy: Float32Array, q: ReturnType<typeof geometry>): Float32Array {
  const { n, c, h, w, o } = q, th = h / 2, tw = w / 2, tiles = th * tw, nw = o * c * 9, perTile = 16 * Math.max(c, o);
  const { nb, rb } = tileGroups(n, th, tw, perTile, false);
  const T = rb < th ? rb * tw : nb * tiles;
  const u = channelUnits(c, partCount(n * o * c * tiles * 16, c));
  const vPlane = u.cs * T + 16, gPlane = o * T + 16, uPlane = o * c + 16;
  return rt.withBlocks([x, gy, 16 * uPlane, nw, ...scratch(u.threads, 16 * vPlane), ...scratch(u.threads, 16 * gPlane), ...scratch(u.threads, (h + 2) * (w + 2))],
    ([xP, gyP, duP, gwP, ...s]) => {
      rt.runParts(CMD_CONV_WINOGRAD_WGRAD, s.slice(0, u.threads).map((vP, i) =>
        [u.cs, u.units, n, c, h, w, o, xP!, gyP!, duP!, vP, s[u.threads + i]!, s[2 * u.threads + i]!, vPlane, gPlane, uPlane, nb, rb]));
      rt.rows.winoKernelGrad(duP!, o, c, gwP!, uPlane);
      return rt.read(gwP!, nw);
    });
}

/** Floats of the padded-channel scratch of the stride-1 im2col / col2im, or 0 where the stride is not 1. */
const padFloats = (q: ReturnType<typeof geometry>): number => (q.sh === 1 && q.sw === 1 ? (q.h + 2 * q.ph) * (q.w + 2 * q.pw) : 0);

/** `count` scratch blocks of `floats` floats each, one per part. */
const scratch = (count: number, floats: number): number[] => Array.from({ length: count }, () => floats);

/**
 * Float32 conv2d forward entirely in the arena: per image, group and block of output rows, the
 * generated im2col writes the patch block and one (threaded) GEMM multiplies it.
 */
export function conv2dF32(x: Float32Array, xShape: Shape, w: Float32Array, wShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, ny = q.n * q.o * L;
  const rt = convRuntime();
  if (winograd(q)) return winogradConv(rt, x, q.n, q.c, q.h, q.w, q.o, w, R, 9, false);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    const units = Math.ceil(q.n / nb), threads = partCount(q.n * q.o * L * R, units);
    const pf = padFloats(q);
    return rt.withBlocks([x, w, ny, ...scratch(threads, R * nb * L), ...scratch(threads, q.o * nb * L), ...scratch(threads, pf)], ([xP, wP, oP, ...s]) => {
      rt.runParts(CMD_CONV_FWD_BATCHED, s.slice(0, threads).map((col, i) => [nb, units, ...geoArgs(q, q.ho), xP!, wP!, oP!, col, s[threads + i]!, pf ? s[2 * threads + i]! : 0]));
      return rt.read(oP!, ny);
    });
  }
  if (!isPointwise(q)) {
    const rb = rowsPerBlock(q), items = q.n * q.g * Math.ceil(q.ho / rb);
    const threads = partCount(q.n * q.o * L * R, items);
    return rt.withBlocks([x, w, ny, ...scratch(threads, R * rb * q.wo)], ([xP, wP, oP, ...cols]) => {
      // runs of consecutive items (one image's rows stay with one thread), two runs per thread
      const run = Math.ceil(items / (2 * threads));
      rt.runParts(CMD_CONV_FWD, cols.map((col) => [run, items, ...geoArgs(q, rb), xP!, wP!, oP!, col]));
      return rt.read(oP!, ny);
    });
  }
  // pointwise: the input is its own patch matrix
  return rt.withBlocks([x, w, ny], ([xP, wP, oP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        // out[og, L] = W[og, R] @ x[R, L]
        rt.sgemm(false, false, q.og, L, R, 1, wP! + g * q.og * R * 4, R, xP! + (b * q.c + g * q.cg) * L * 4, L, 0, oP! + (b * q.o + g * q.og) * L * 4, L);
      }
    }
    return rt.read(oP!, ny);
  });
}

/** Float32 gradient of conv2d with respect to its input: col = W^T gy by GEMM (no transpose copy), then col2im. */
export function conv2dBackwardInputF32(gy: Float32Array, gyShape: Shape, w: Float32Array, wShape: Shape, xShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, hw = q.h * q.w, nx = q.n * q.c * hw;
  const rt = convRuntime();
  // stride 1, padding 1: the input gradient is the convolution of gy with the turned kernels, in and out channels swapped
  if (winograd(q)) return winogradConv(rt, gy, q.n, q.o, q.h, q.w, q.c, w, 9, R, true);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    const units = Math.ceil(q.n / nb), threads = partCount(q.n * q.o * L * R, units);
    const pf = padFloats(q);
    return rt.withBlocks([gy, w, nx, ...scratch(threads, R * nb * L), ...scratch(threads, q.o * nb * L), ...scratch(threads, pf)], ([gyP, wP, gxP, ...s]) => {
      // the stride-1 col2im writes every element of gx; the general one adds into it
      if (!pf) rt.arena.heapF32().fill(0, gxP! / 4, gxP! / 4 + nx);
      rt.runParts(CMD_CONV_BWD_INPUT_BATCHED, s.slice(0, threads).map((col, i) => [nb, units, ...geoArgs(q, q.ho), gyP!, wP!, gxP!, col, s[threads + i]!, pf ? s[2 * threads + i]! : 0]));
      return rt.read(gxP!, nx);
    });
  }
  if (!isPointwise(q)) {
    // per block of output rows: col = W^T gy_block by GEMM, then the generated col2im adds it into gx;
    // parts take input channels (groups = 1) or run one after another per group
    const rb = rowsPerBlock(q);
    // units: whole images when there are enough (no operand packed twice), else runs of channels
    const threads = q.g === 1 ? partCount(q.n * q.o * L * R, Math.max(q.n, q.c)) : 1;
    const byImage = q.g === 1 && threads > 1 && q.n >= threads;
    const u = byImage ? { threads, cs: q.c, units: q.n } : q.g === 1 ? channelUnits(q.c, Math.min(threads, q.c)) : { threads: 1, cs: q.c, units: 1 };
    const colFloats = (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo;
    return rt.withBlocks([gy, w, nx, ...scratch(u.threads, colFloats)], ([gyP, wP, gxP, ...cols]) => {
      rt.arena.heapF32().fill(0, gxP! / 4, gxP! / 4 + nx);
      if (q.g === 1) rt.runParts(CMD_CONV_BWD_INPUT, cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), gyP!, wP!, gxP!, col, byImage ? 1 : 0]));
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb), Lc = (oy1 - oy0) * q.wo;
              rt.sgemm(true, false, R, Lc, q.og, 1, wP! + g * q.og * R * 4, R, gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4, L, 0, cols[0]!, Lc);
              rt.rows.col2im(gxP! + (b * q.c + g * q.cg) * hw * 4, q.cg, q.h, q.w, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.wo, cols[0]!, Lc, oy0, oy1);
            }
          }
        }
      }
      return rt.read(gxP!, nx);
    });
  }
  // pointwise: gx[R, L] = W_g^T[R, og] @ gy[og, L] directly
  return rt.withBlocks([gy, w, nx], ([gyP, wP, gxP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        rt.sgemm(true, false, R, L, q.og, 1, wP! + g * q.og * R * 4, R, gyP! + (b * q.o + g * q.og) * L * 4, L, 0, gxP! + (b * q.c + g * q.cg) * L * 4, L);
      }
    }
    return rt.read(gxP!, nx);
  });
}

/** Float32 gradient of conv2d with respect to its weight: gW += gy col^T by GEMM with a transposed operand. */
export function conv2dBackwardWeightF32(x: Float32Array, xShape: Shape, gy: Float32Array, gyShape: Shape, wShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, nw = q.o * R;
  const rt = convRuntime();
  if (winograd(q)) return winogradWeightGrad(rt, x, gy, q);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    // parts take runs of input channels (their columns of gW), every group of images in order
    const u = channelUnits(q.c, partCount(q.n * q.o * L * R, q.c)), kk = q.kh * q.kw;
    const pf = padFloats(q);
    return rt.withBlocks([x, gy, nw, ...scratch(u.threads, u.cs * kk * nb * L), ...scratch(u.threads, q.o * nb * L), ...scratch(u.threads, pf)], ([xP, gyP, gwP, ...s]) => {
      rt.runParts(CMD_CONV_BWD_WEIGHT_BATCHED, s.slice(0, u.threads).map((col, i) => [u.cs, u.units, ...geoArgs(q, q.ho), xP!, gyP!, gwP!, col, s[u.threads + i]!, nb, pf ? s[2 * u.threads + i]! : 0]));
      return rt.read(gwP!, nw);
    });
  }
  if (!isPointwise(q)) {
    // gW[og, R] += gy[og, block] @ col[R, block]^T over the blocks of output rows of every image;
    // parts take the columns of gW of their input channels (groups = 1) or groups run one after another
    const rb = rowsPerBlock(q), hw = q.h * q.w;
    const u = q.g === 1 ? channelUnits(q.c, partCount(q.n * q.o * L * R, q.c)) : { threads: 1, cs: q.c, units: 1 };
    const colFloats = (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo;
    return rt.withBlocks([x, gy, nw, ...scratch(u.threads, colFloats)], ([xP, gyP, gwP, ...cols]) => {
      if (q.g === 1) rt.runParts(CMD_CONV_BWD_WEIGHT, cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), xP!, gyP!, gwP!, col]));
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb), Lc = (oy1 - oy0) * q.wo;
              rt.rows.im2col(xP! + (b * q.c + g * q.cg) * hw * 4, q.cg, q.h, q.w, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.wo, cols[0]!, Lc, oy0, oy1);
              rt.sgemm(false, true, q.og, R, Lc, 1, gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4, L, cols[0]!, Lc, b === 0 && oy0 === 0 ? 0 : 1, gwP! + g * q.og * R * 4, R);
            }
          }
        }
      }
      return rt.read(gwP!, nw);
    });
  }
  // pointwise: gW[og, R] (+)= gy[og, L] @ x^T[L, R]
  return rt.withBlocks([x, gy, nw], ([xP, gyP, gwP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        rt.sgemm(false, true, q.og, R, L, 1, gyP! + (b * q.o + g * q.og) * L * 4, L, xP! + (b * q.c + g * q.cg) * L * 4, L, b === 0 ? 0 : 1, gwP! + g * q.og * R * 4, R);
      }
    }
    return rt.read(gwP!, nw);
  });
}
