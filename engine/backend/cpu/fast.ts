// the float32 fast path of the cpu backend: WebAssembly SIMD GEMM (relaxed FMA where the runtime has
// it), convolutions, softmax rows, norms and activations, staged through the shared arena; every
// function returns null (or takes the plain path) where it does not apply
import type { TypedArray } from "../../dtype.ts";
import { copyOut, take } from "./buffers.ts";
import type { MatmulParams } from "../backend.ts";
import { gemm as plainGemm, matmul as plainMatmul } from "./matmul.ts";
import { matmulF32Batched, simdAvailable, bestVariant, sgemmKernel, PARALLEL_MIN_WORK, WasmSgemm, type SgemmKernel } from "./wasm/sgemm.ts";
import type { Shape } from "../../shape.ts";
import type { Conv2dParams } from "../backend.ts";
import { geometry, isPointwise } from "./conv.ts";
import { UnsupportedKernelError } from "../../errors.ts";
import { CMD_CONV_BWD_INPUT, CMD_CONV_BWD_WEIGHT, CMD_CONV_FWD, CONV_BWD_INPUT_JS, CONV_BWD_WEIGHT_JS, CONV_FWD_JS } from "./wasm/conv_src.ts";
import { partContext } from "./wasm/context.ts";
import { getNumThreads } from "./wasm/pool.ts";

type PartKernel = (ctx: object, a: ArrayLike<number>) => void;
const convFwdJS = new Function(`return ${CONV_FWD_JS}`)() as PartKernel;
const convBwdInputJS = new Function(`return ${CONV_BWD_INPUT_JS}`)() as PartKernel;
const convBwdWeightJS = new Function(`return ${CONV_BWD_WEIGHT_JS}`)() as PartKernel;

/**
 * Runs a unit-taking kernel on this thread with args parts[0] and on worker i with parts[i] (their
 * scratch pointers differ); every participant takes units from the pool's shared counter.
 */
function runParts(kern: WasmSgemm, cmd: number, fn: PartKernel, parts: readonly number[][]): void {
  const pool = parts.length > 1 ? kern.workerPool(parts.length) : null;
  const ctx = partContext(kern, pool);
  if (!pool) fn(ctx, parts[0]!);
  else pool.run(parts.slice(1).map((args) => ({ cmd, args })), () => fn(ctx, parts[0]!));
}

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
} | null {
  if (!simdAvailable()) return null;
  return {
    gemm, matmul, variant: bestVariant(), conv2d: conv2dF32, conv2dBackwardInput: conv2dBackwardInputF32, conv2dBackwardWeight: conv2dBackwardWeightF32,
    softmaxRows: softmaxRowsF32, unary: unaryF32, siluGrad: siluGradF32, groupNorm: groupNormF32, layerNorm: layerNormF32, geglu: gegluF32,
  };
}

// elementwise ops on fewer floats than this stay in JavaScript (the staging would cost more)
const VECTOR_MIN = 2048;
const VECTOR_BLOCK = 1 << 18;

/** The exp-based activations in WebAssembly SIMD, through a cache-sized block; null if not handled. */
export function unaryF32(op: string, x: Float32Array): Float32Array | null {
  const kern = sgemmKernel();
  if (!(kern instanceof WasmSgemm) || x.length < VECTOR_MIN) return null;
  const r = kern.rows;
  const fn = op === "silu" ? r.vSilu : op === "sigmoid" ? r.vSigmoid : op === "exp" ? r.vExp : op === "gelu" ? r.vGelu : null;
  if (!fn) return null;
  const out = take(Float32Array, x.length, true);
  const [bP] = blocks(kern, [Math.min(VECTOR_BLOCK, x.length)]);
  try {
    for (let i = 0; i < x.length; i += VECTOR_BLOCK) {
      const n = Math.min(VECTOR_BLOCK, x.length - i);
      kern.arena.heapF32().set(x.subarray(i, i + n), bP! / 4);
      fn(bP!, bP!, n);
      out.set(kern.arena.heapF32().subarray(bP! / 4, bP! / 4 + n), i);
    }
    return out;
  } finally {
    release(kern, [bP!]);
  }
}

/** silu's (or gelu's) gradient g * f'(x) for same-shape operands in WebAssembly SIMD; null if not handled. */
export function siluGradF32(g: Float32Array, x: Float32Array, gelu = false): Float32Array | null {
  const kern = sgemmKernel();
  if (!(kern instanceof WasmSgemm) || x.length < VECTOR_MIN || g.length !== x.length) return null;
  const out = take(Float32Array, x.length, true);
  const m = Math.min(VECTOR_BLOCK, x.length);
  const [gP, xP] = blocks(kern, [m, m]);
  try {
    for (let i = 0; i < x.length; i += VECTOR_BLOCK) {
      const n = Math.min(VECTOR_BLOCK, x.length - i);
      const h = kern.arena.heapF32();
      h.set(g.subarray(i, i + n), gP! / 4);
      h.set(x.subarray(i, i + n), xP! / 4);
      (gelu ? kern.rows.vGeluGrad : kern.rows.vSiluGrad)(gP!, xP!, gP!, n);
      out.set(kern.arena.heapF32().subarray(gP! / 4, gP! / 4 + n), i);
    }
    return out;
  } finally {
    release(kern, [gP!, xP!]);
  }
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
  const kern = sgemmKernel();
  if (!(kern instanceof WasmSgemm) || x.length < VECTOR_MIN) return null;
  const { n, c, s, groups, eps } = p;
  const cg = c / groups, len = cg * s;
  const mean = new Float64Array(n * groups), rstd = new Float64Array(n * groups);
  const [xP] = blocks(kern, [x.length]);
  try {
    kern.arena.heapF32().set(x, xP! / 4);
    const r = kern.rows;
    for (let ng = 0; ng < n * groups; ng++) {
      const o = xP! + ng * len * 4;
      const mu = r.sumF32(o, len) / len;
      const rs = 1 / Math.sqrt(r.sumSqDev(o, len, mu) / len + eps);
      mean[ng] = mu;
      rstd[ng] = rs;
      const c0 = (ng % groups) * cg;
      for (let ch = 0; ch < cg; ch++) {
        const a = rs * (weight ? weight[c0 + ch]! : 1), b = (bias ? bias[c0 + ch]! : 0) - mu * a;
        r.affineAct(o + ch * s * 4, o + ch * s * 4, s, a, b, silu ? 1 : 0);
      }
    }
    return { y: copyOut(kern.arena.heapF32().subarray(xP! / 4, xP! / 4 + x.length)), mean, rstd };
  } finally {
    release(kern, [xP!]);
  }
}

/**
 * Float32 layer norm over contiguous rows of d floats in one WebAssembly call (statistics as the group
 * norm's; absent affine terms as ones and zeros). Same outputs as the plain kernel; null if not handled.
 */
export function layerNormF32(
  x: Float32Array, weight: Float32Array | null, bias: Float32Array | null, p: { rows: number; d: number; eps: number },
): { y: Float32Array; mean: Float64Array; rstd: Float64Array } | null {
  const kern = sgemmKernel();
  if (!(kern instanceof WasmSgemm) || x.length < VECTOR_MIN || p.d === 0) return null;
  const { rows, d, eps } = p;
  const [xP, wP, bP, mP, rP] = blocks(kern, [x.length, d, d, 2 * rows, 2 * rows]);
  try {
    const h = kern.arena.heapF32();
    h.set(x, xP! / 4);
    if (weight) h.set(weight, wP! / 4);
    else h.fill(1, wP! / 4, wP! / 4 + d);
    if (bias) h.set(bias, bP! / 4);
    else h.fill(0, bP! / 4, bP! / 4 + d);
    kern.rows.rowsLayerNorm(xP!, xP!, rows, d, wP!, bP!, eps, mP!, rP!);
    const buf = kern.arena.memory.buffer;
    return {
      y: copyOut(kern.arena.heapF32().subarray(xP! / 4, xP! / 4 + x.length)),
      mean: new Float64Array(buf, mP!, rows).slice(),
      rstd: new Float64Array(buf, rP!, rows).slice(),
    };
  } finally {
    release(kern, [xP!, wP!, bP!, mP!, rP!]);
  }
}

/** GEGLU forward (rows of 2d -> rows of d) or its gradient in WebAssembly SIMD; null if not handled. */
export function gegluF32(h: Float32Array, g: Float32Array | null, rows: number, d: number): Float32Array | null {
  const kern = sgemmKernel();
  if (!(kern instanceof WasmSgemm) || h.length < VECTOR_MIN) return null;
  const outLen = g ? h.length : rows * d;
  const [hP, gP, oP] = blocks(kern, [h.length, g ? g.length : 0, outLen]);
  try {
    const hp = kern.arena.heapF32();
    hp.set(h, hP! / 4);
    if (g) {
      hp.set(g, gP! / 4);
      kern.rows.rowsGegluGrad(hP!, gP!, oP!, rows, d);
    } else kern.rows.rowsGeglu(hP!, oP!, rows, d);
    return copyOut(kern.arena.heapF32().subarray(oP! / 4, oP! / 4 + outLen));
  } finally {
    release(kern, [hP!, gP!, oP!]);
  }
}

// rows per call of the row kernels, so the staging block stays cache-sized (~1 MiB)
const SOFTMAX_BLOCK_FLOATS = 1 << 18;
const SOFTMAX_MAX_ROW = 4096;

/**
 * Softmax (or log-softmax) over contiguous rows of n floats with the SIMD row kernels: max, exp with
 * its sum and the scaling run in WebAssembly, a block of rows at a time; null where unavailable.
 */
export function softmaxRowsF32(x: Float32Array, rows: number, n: number, log: boolean): Float32Array | null {
  const kern = sgemmKernel();
  // the row sums accumulate in float32: past a few thousand terms the plain path's float64 sum is kept
  if (!(kern instanceof WasmSgemm) || n === 0 || n > SOFTMAX_MAX_ROW) return null;
  const out = take(Float32Array, rows * n, true);
  const per = Math.max(1, Math.floor(SOFTMAX_BLOCK_FLOATS / n));
  const [sP, stats] = blocks(kern, [Math.min(rows, per) * n, 2 * Math.min(rows, per)]);
  try {
    for (let r0 = 0; r0 < rows; r0 += per) {
      const nr = Math.min(per, rows - r0);
      let h = kern.arena.heapF32();
      h.set(x.subarray(r0 * n, (r0 + nr) * n), sP! / 4);
      kern.rows.rowsSoftmax(sP!, nr, n * 4, n, stats!, stats! + nr * 4);
      h = kern.arena.heapF32();
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
  } finally {
    release(kern, [sP!, stats!]);
  }
}

/** The SIMD kernel the convolutions need (installed only where WebAssembly SIMD is, see wasmFastKernels). */
function simdKernel(): WasmSgemm {
  const k = sgemmKernel();
  if (!(k instanceof WasmSgemm)) throw new UnsupportedKernelError("conv2d (fast path)", "wasm-simd");
  return k;
}

/** Arena blocks for one call: allocated together, freed together. */
function blocks(kern: SgemmKernel, sizes: readonly number[]): number[] {
  return sizes.map((n) => kern.arena.alloc(Math.max(1, n)));
}

function release(kern: SgemmKernel, ptrs: readonly number[]): void {
  for (const p of ptrs) kern.arena.free(p);
}

// floats of the patch matrix per block of output rows: the block is still in cache when the GEMM packs it
const COL_BLOCK_FLOATS = 1 << 18;

/** The geometry arguments a[2..16] of the conv part kernels (see wasm/conv_src.ts). */
function geoArgs(q: ReturnType<typeof geometry>, rb: number): number[] {
  return [q.n, q.c, q.h, q.w, q.o, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.ho, q.wo, q.g, rb];
}

/** Output rows per patch-matrix block. */
function rowsPerBlock(q: ReturnType<typeof geometry>): number {
  return Math.max(1, Math.min(q.ho, Math.floor(COL_BLOCK_FLOATS / (q.cg * q.kh * q.kw * q.wo))));
}

/**
 * Float32 conv2d forward entirely in the arena: per image, group and block of output rows, the
 * generated im2col writes the patch block and one (threaded) GEMM multiplies it.
 */
export function conv2dF32(x: Float32Array, xShape: Shape, w: Float32Array, wShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, pw = isPointwise(q);
  const kern = simdKernel();
  if (!pw) {
    const rb = rowsPerBlock(q), items = q.n * q.g * Math.ceil(q.ho / rb);
    const threads = partCount(q.n * q.o * L * R, items);
    const [xP, wP, oP, ...cols] = blocks(kern, [x.length, w.length, q.n * q.o * L, ...Array.from({ length: threads }, () => R * rb * q.wo)]);
    try {
      const h = kern.arena.heapF32();
      h.set(x, xP! / 4);
      h.set(w, wP! / 4);
      // runs of consecutive items (one image's rows stay with one thread), two runs per thread
      const run = Math.ceil(items / (2 * threads));
      runParts(kern, CMD_CONV_FWD, convFwdJS, cols.map((col) => [run, items, ...geoArgs(q, rb), xP!, wP!, oP!, col]));
      return copyOut(kern.arena.heapF32().subarray(oP! / 4, oP! / 4 + q.n * q.o * L));
    } finally {
      release(kern, [xP!, wP!, oP!, ...cols]);
    }
  }
  // pointwise: the input is its own patch matrix
  const [xP, wP, oP] = blocks(kern, [x.length, w.length, q.n * q.o * L]);
  try {
    const h = kern.arena.heapF32();
    h.set(w, wP! / 4);
    h.set(x, xP! / 4);
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        // out[og, L] = W[og, R] @ x[R, L]
        kern.sgemm(false, false, q.og, L, R, 1, wP! + g * q.og * R * 4, R, xP! + (b * q.c + g * q.cg) * L * 4, L, 0, oP! + (b * q.o + g * q.og) * L * 4, L);
      }
    }
    return copyOut(kern.arena.heapF32().subarray(oP! / 4, oP! / 4 + q.n * q.o * L));
  } finally {
    release(kern, [xP!, wP!, oP!]);
  }
}

/** Float32 gradient of conv2d with respect to its input: col = W^T gy by GEMM (no transpose copy), then col2im. */
export function conv2dBackwardInputF32(gy: Float32Array, gyShape: Shape, w: Float32Array, wShape: Shape, xShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, pw = isPointwise(q);
  const kern = simdKernel();
  if (!pw) {
    // per block of output rows: col = W^T gy_block by GEMM, then the generated col2im adds it into gx;
    // parts take input channels (groups = 1) or run one after another per group
    const rb = rowsPerBlock(q), hw = q.h * q.w, nx = q.n * q.c * hw;
    // units: whole images when there are enough (no operand packed twice), else runs of channels
    const threads = q.g === 1 ? partCount(q.n * q.o * L * R, Math.max(q.n, q.c)) : 1;
    const byImage = q.g === 1 && threads > 1 && q.n >= threads;
    const u = byImage ? { threads, cs: q.c, units: q.n } : q.g === 1 ? channelUnits(q.c, Math.min(threads, q.c)) : { threads: 1, cs: q.c, units: 1 };
    const [gyP, wP, gxP, ...cols] = blocks(kern, [gy.length, w.length, nx, ...Array.from({ length: u.threads }, () => (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo)]);
    try {
      const h = kern.arena.heapF32();
      h.set(gy, gyP! / 4);
      h.set(w, wP! / 4);
      h.fill(0, gxP! / 4, gxP! / 4 + nx);
      if (q.g === 1) runParts(kern, CMD_CONV_BWD_INPUT, convBwdInputJS, cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), gyP!, wP!, gxP!, col, byImage ? 1 : 0]));
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb), Lc = (oy1 - oy0) * q.wo;
              kern.sgemm(true, false, R, Lc, q.og, 1, wP! + g * q.og * R * 4, R, gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4, L, 0, cols[0]!, Lc);
              kern.rows.col2im(gxP! + (b * q.c + g * q.cg) * hw * 4, q.cg, q.h, q.w, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.wo, cols[0]!, Lc, oy0, oy1);
            }
          }
        }
      }
      return copyOut(kern.arena.heapF32().subarray(gxP! / 4, gxP! / 4 + nx));
    } finally {
      release(kern, [gyP!, wP!, gxP!, ...cols]);
    }
  }
  // pointwise: gx[R, L] = W_g^T[R, og] @ gy[og, L] directly
  const nx = q.n * q.c * q.h * q.w;
  const [gyP, wP, gxP] = blocks(kern, [gy.length, w.length, nx]);
  try {
    const h0 = kern.arena.heapF32();
    h0.set(gy, gyP! / 4);
    h0.set(w, wP! / 4);
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        kern.sgemm(true, false, R, L, q.og, 1, wP! + g * q.og * R * 4, R, gyP! + (b * q.o + g * q.og) * L * 4, L, 0, gxP! + (b * q.c + g * q.cg) * L * 4, L);
      }
    }
    return copyOut(kern.arena.heapF32().subarray(gxP! / 4, gxP! / 4 + nx));
  } finally {
    release(kern, [gyP!, wP!, gxP!]);
  }
}

/** Float32 gradient of conv2d with respect to its weight: gW += gy col^T by GEMM with a transposed operand. */
export function conv2dBackwardWeightF32(x: Float32Array, xShape: Shape, gy: Float32Array, gyShape: Shape, wShape: Shape, p: Conv2dParams): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo, R = q.cg * q.kh * q.kw, pw = isPointwise(q);
  const kern = simdKernel();
  if (!pw) {
    // gW[og, R] += gy[og, block] @ col[R, block]^T over the blocks of output rows of every image;
    // parts take the columns of gW of their input channels (groups = 1) or groups run one after another
    const rb = rowsPerBlock(q), hw = q.h * q.w;
    const u = q.g === 1 ? channelUnits(q.c, partCount(q.n * q.o * L * R, q.c)) : { threads: 1, cs: q.c, units: 1 };
    const [xP, gyP, gwP, ...cols] = blocks(kern, [x.length, gy.length, q.o * R, ...Array.from({ length: u.threads }, () => (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo)]);
    try {
      const h = kern.arena.heapF32();
      h.set(x, xP! / 4);
      h.set(gy, gyP! / 4);
      if (q.g === 1) runParts(kern, CMD_CONV_BWD_WEIGHT, convBwdWeightJS, cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), xP!, gyP!, gwP!, col]));
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb), Lc = (oy1 - oy0) * q.wo;
              kern.rows.im2col(xP! + (b * q.c + g * q.cg) * hw * 4, q.cg, q.h, q.w, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.wo, cols[0]!, Lc, oy0, oy1);
              kern.sgemm(false, true, q.og, R, Lc, 1, gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4, L, cols[0]!, Lc, b === 0 && oy0 === 0 ? 0 : 1, gwP! + g * q.og * R * 4, R);
            }
          }
        }
      }
      return copyOut(kern.arena.heapF32().subarray(gwP! / 4, gwP! / 4 + q.o * R));
    } finally {
      release(kern, [xP!, gyP!, gwP!, ...cols]);
    }
  }
  // pointwise: gW[og, R] (+)= gy[og, L] @ x^T[L, R]
  const [xP, gyP, gwP] = blocks(kern, [x.length, gy.length, q.o * R]);
  try {
    const h0 = kern.arena.heapF32();
    h0.set(gy, gyP! / 4);
    h0.set(x, xP! / 4);
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        kern.sgemm(false, true, q.og, R, L, 1, gyP! + (b * q.o + g * q.og) * L * 4, L, xP! + (b * q.c + g * q.cg) * L * 4, L, b === 0 ? 0 : 1, gwP! + g * q.og * R * 4, R);
      }
    }
    return copyOut(kern.arena.heapF32().subarray(gwP! / 4, gwP! / 4 + q.o * R));
  } finally {
    release(kern, [xP!, gyP!, gwP!]);
  }
}
