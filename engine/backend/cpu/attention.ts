// fused attention kernels of the cpu backend: chunked softmax(scale Q K^T + mask) V and its backward by
// recomputation; float32 runs the WebAssembly SIMD GEMM per query chunk on the worker pool, other
// dtypes (and runtimes without SIMD) a plain TypeScript loop with the same algorithm.
import { copyOut, takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { AttentionForward as Forward, AttentionGrads as Grads, AttentionParams, SavedState } from "../backend.ts";
import { attnBackward, attnForward, CMD_ATTN_BWD, CMD_ATTN_FWD } from "./wasm/attention_parts.ts";
import { partContext, type PartKernel } from "./wasm/context.ts";
import { getNumThreads, type Job } from "./wasm/pool.ts";
import { WasmRuntime, sgemmKernel, simdAvailable } from "./wasm/sgemm.ts";

export type { AttentionParams } from "../backend.ts";

/** (B, L, H, w) -> (B H, L, w) for the plain path, or back with `pack`. */
function moveHeads(x: TypedArray, H: number, L: number, w: number, pack = false): TypedArray {
  const out = like(x, x.length),
    B = x.length / (H * L * w);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let l = 0; l < L; l++) {
        const packed = ((b * L + l) * H + h) * w,
          split = ((b * H + h) * L + l) * w;
        const [src, dst] = pack ? [split, packed] : [packed, split];
        for (let j = 0; j < w; j++) out[dst + j] = x[src + j]!;
      }
  return out;
}
const unpackHeads = (x: TypedArray, H: number, L: number, w: number) => moveHeads(x, H, L, w);
const packHeads = (x: TypedArray, H: number, L: number, w: number) => moveHeads(x, H, L, w, true);

/**
 * Probabilities the forward kept in WebAssembly memory for the backward (batch x lq x lk floats), so
 * the backward neither recomputes Q K^T nor the exponentials. Kept only when they cost no more than
 * q and o together (lk <= 2 (d + dv): cross-attention over 77 tokens, short self-attention); long
 * sequences recompute chunk by chunk. `release` returns the block (autograd calls it after backward).
 */
export class KeptProbs {
  private ptr: number;
  constructor(
    readonly kern: WasmRuntime,
    ptr: number,
    readonly floats: number,
  ) {
    this.ptr = ptr;
  }
  /** Byte offset of the block, or 0 once released. */
  get pointer(): number {
    return this.ptr;
  }
  release(): void {
    if (this.ptr === 0) return;
    this.kern.arena.free(this.ptr);
    this.ptr = 0;
  }
}

// the kept probabilities may take at most this many bytes
const KEEP_MAX_BYTES = 512 * 2 ** 20;

function keepProbs(p: AttentionParams): boolean {
  return !!p.forBackward && p.lk <= 2 * (p.d + p.dv) && p.batch * p.lq * p.lk * 4 <= KEEP_MAX_BYTES;
}

type AttentionForward = Forward<TypedArray>;
type AttentionGrads = Grads<TypedArray>;

// below this many multiply-adds per batch item the pool is not worth waking
const PARALLEL_MIN_ITEM = 1 << 16;

function like(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n);
}

/** Query rows per chunk: about 64K scores per thread, a multiple of 4, between 4 and 256. */
function chunkRows(lk: number): number {
  return Math.max(4, Math.min(256, Math.floor(65536 / Math.max(1, lk) / 4) * 4));
}

function wasmKernel(): WasmRuntime | null {
  if (!simdAvailable()) return null;
  const k = sgemmKernel();
  return k instanceof WasmRuntime ? k : null;
}

/** Runs `kernel` over the batch items, which the calling thread and the pool take one at a time. */
function runSplit(
  kern: WasmRuntime,
  p: AttentionParams,
  cmd: number,
  kernel: PartKernel,
  scratchFloats: number[],
  args: (b0: number, b1: number, scratch: number[]) => number[],
): void {
  const arena = kern.arena;
  const work = p.lq * p.lk * (p.d + p.dv);
  const threads = Math.max(1, Math.min(getNumThreads(), p.batch, work >= PARALLEL_MIN_ITEM ? p.batch : 1));
  const pool = threads > 1 ? kern.workerPool(threads) : null;
  const nt = pool ? threads : 1;
  const scratch = Array.from({ length: nt }, () => scratchFloats.map((n) => arena.alloc(n)));
  const ctx = partContext(kern, pool);
  try {
    // every thread takes batch items from the shared counter until none is left
    const jobs: Job[] = [];
    for (let t = 1; t < nt; t++) jobs.push({ cmd, args: args(0, p.batch, scratch[t]!) });
    const mine = () => kernel(ctx, args(0, p.batch, scratch[0]!));
    if (pool && jobs.length > 0) pool.run(jobs, mine);
    else mine();
  } finally {
    for (const s of scratch) for (const ptr of s) arena.free(ptr);
  }
}

/** Copies arrays into fresh arena blocks; returns their byte offsets (0 for null). */
function stageIn(kern: WasmRuntime, xs: readonly (TypedArray | null)[]): number[] {
  const arena = kern.arena;
  const ptrs = xs.map((x) => (x ? arena.alloc(x.length) : 0));
  const h = arena.heapF32();
  xs.forEach((x, i) => x && h.set(x, ptrs[i]! / 4));
  return ptrs;
}

function freeAll(kern: WasmRuntime, ptrs: readonly number[]): void {
  for (const p of ptrs) if (p !== 0) kern.arena.free(p);
}

function commonArgs(p: AttentionParams): number[] {
  return [p.lq, p.lk, p.d, p.dv, p.scale, p.causal ? 1 : 0];
}

/** softmax(scale q k^T + mask) v per batch item, with the row log-sum-exp (chunked, never batch x lq x lk). */
export function attentionForward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  p: AttentionParams,
): AttentionForward {
  const kern =
    q instanceof Float32Array &&
    k instanceof Float32Array &&
    v instanceof Float32Array &&
    (!mask || mask instanceof Float32Array)
      ? wasmKernel()
      : null;
  const H = p.heads ?? 1;
  if (!kern) return plainAttentionForward(q, k, v, mask, p);
  const CQ = chunkRows(p.lk);
  const [qP, kP, vP, mP] = stageIn(kern, [q, k, v, mask]);
  const oP = kern.arena.alloc(p.batch * p.lq * p.dv),
    lseP = kern.arena.alloc(p.batch * p.lq);
  const keep = keepProbs(p)
    ? new KeptProbs(kern, kern.arena.alloc(p.batch * p.lq * p.lk), p.batch * p.lq * p.lk)
    : null;
  try {
    runSplit(kern, p, CMD_ATTN_FWD, attnForward, [keep ? 0 : CQ * p.lk, 2 * CQ], (b0, b1, s) => [
      b0,
      b1,
      ...commonArgs(p),
      qP!,
      kP!,
      vP!,
      mP!,
      p.maskStrideB,
      p.maskStrideQ,
      oP,
      lseP,
      s[0]!,
      CQ,
      s[1]!,
      keep ? keep.pointer : 0,
      H,
    ]);
    const h = kern.arena.heapF32();
    return {
      o: copyOut(h.subarray(oP / 4, oP / 4 + p.batch * p.lq * p.dv)),
      lse: copyOut(h.subarray(lseP / 4, lseP / 4 + p.batch * p.lq)),
      saved: keep,
    };
  } catch (e) {
    keep?.release();
    throw e;
  } finally {
    freeAll(kern, [qP!, kP!, vP!, mP!, oP, lseP]);
  }
}

/** Gradients of {@link attentionForward} given its output `o`, row log-sum-exp `lse` and the output gradient. */
export function attentionBackward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  o: TypedArray,
  lse: TypedArray,
  gO: TypedArray,
  p: AttentionParams,
  saved: SavedState | null = null,
): AttentionGrads {
  const f32 = [q, k, v, o, lse, gO].every((x) => x instanceof Float32Array) && (!mask || mask instanceof Float32Array);
  const kern = f32 ? wasmKernel() : null;
  const H = p.heads ?? 1;
  if (!kern) return plainAttentionBackward(q, k, v, mask, o, lse, gO, p);
  const CQ = chunkRows(p.lk);
  const kept =
    saved instanceof KeptProbs && saved.kern === kern && saved.pointer !== 0 && saved.floats === p.batch * p.lq * p.lk
      ? saved.pointer
      : 0;
  const [qP, kP, vP, mP, oP, lseP, gP] = stageIn(kern, [q, k, v, mask, o, lse, gO]);
  const arena = kern.arena;
  const dqP = arena.alloc(q.length),
    dkP = arena.alloc(k.length),
    dvP = arena.alloc(v.length);
  // the kernel accumulates into dK and dV
  arena.heapF32().fill(0, dkP / 4, dkP / 4 + k.length);
  arena.heapF32().fill(0, dvP / 4, dvP / 4 + v.length);
  try {
    runSplit(kern, p, CMD_ATTN_BWD, attnBackward, [kept ? 0 : CQ * p.lk, CQ * p.lk, CQ], (b0, b1, s) => [
      b0,
      b1,
      ...commonArgs(p),
      qP!,
      kP!,
      vP!,
      mP!,
      p.maskStrideB,
      p.maskStrideQ,
      oP!,
      lseP!,
      gP!,
      dqP,
      dkP,
      dvP,
      s[0]!,
      s[1]!,
      s[2]!,
      CQ,
      kept,
      H,
    ]);
    const h = arena.heapF32();
    return {
      dq: copyOut(h.subarray(dqP / 4, dqP / 4 + q.length)),
      dk: copyOut(h.subarray(dkP / 4, dkP / 4 + k.length)),
      dv: copyOut(h.subarray(dvP / 4, dvP / 4 + v.length)),
    };
  } finally {
    freeAll(kern, [qP!, kP!, vP!, mP!, oP!, lseP!, gP!, dqP, dkP, dvP]);
  }
}

/** The plain TypeScript forward (any dtype): the same algorithm row by row, heads unpacked first. */
export function plainAttentionForward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  p: AttentionParams,
): AttentionForward {
  const H = p.heads ?? 1;
  if (H === 1) return plainForward(q, k, v, mask, p);
  const r = plainForward(
    unpackHeads(q, H, p.lq, p.d),
    unpackHeads(k, H, p.lk, p.d),
    unpackHeads(v, H, p.lk, p.dv),
    mask,
    p,
  );
  return { o: packHeads(r.o, H, p.lq, p.dv), lse: r.lse };
}

/** The plain TypeScript backward (any dtype), recomputing the probabilities. */
export function plainAttentionBackward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  o: TypedArray,
  lse: TypedArray,
  gO: TypedArray,
  p: AttentionParams,
): AttentionGrads {
  const H = p.heads ?? 1;
  if (H === 1) return plainBackward(q, k, v, mask, o, lse, gO, p);
  const [uq, uk, uv, uo, ug] = [
    unpackHeads(q, H, p.lq, p.d),
    unpackHeads(k, H, p.lk, p.d),
    unpackHeads(v, H, p.lk, p.dv),
    unpackHeads(o, H, p.lq, p.dv),
    unpackHeads(gO, H, p.lq, p.dv),
  ];
  const r = plainBackward(uq, uk, uv, mask, uo, lse, ug, p);
  return { dq: packHeads(r.dq, H, p.lq, p.d), dk: packHeads(r.dk, H, p.lk, p.d), dv: packHeads(r.dv, H, p.lk, p.dv) };
}

/** Key columns visible to query row i (causal: j <= i + lk - lq). */
function visible(p: AttentionParams, i: number): number {
  return p.causal ? Math.max(0, Math.min(p.lk, i + p.lk - p.lq + 1)) : p.lk;
}

function plainForward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  p: AttentionParams,
): AttentionForward {
  const { batch, lq, lk, d, dv, scale } = p;
  const o = like(q, batch * lq * dv),
    lse = like(q, batch * lq);
  const s = new Float64Array(lk);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < lq; i++) {
      const lim = visible(p, i),
        qi = (b * lq + i) * d,
        m = b * p.maskStrideB + i * p.maskStrideQ;
      let mx = -Infinity;
      for (let j = 0; j < lim; j++) {
        let acc = 0;
        const kj = (b * lk + j) * d;
        for (let c = 0; c < d; c++) acc += q[qi + c] * k[kj + c];
        s[j] = acc * scale + (mask ? mask[m + j] : 0);
        if (s[j] > mx) mx = s[j];
      }
      const oi = (b * lq + i) * dv;
      if (mx === -Infinity) {
        lse[b * lq + i] = -Infinity;
        continue;
      }
      let sum = 0;
      for (let j = 0; j < lim; j++) sum += s[j] = Math.exp(s[j] - mx);
      for (let j = 0; j < lim; j++) {
        const w = s[j] / sum,
          vj = (b * lk + j) * dv;
        for (let c = 0; c < dv; c++) o[oi + c] += w * v[vj + c];
      }
      lse[b * lq + i] = mx + Math.log(sum);
    }
  }
  return { o, lse };
}

function plainBackward(
  q: TypedArray,
  k: TypedArray,
  v: TypedArray,
  mask: TypedArray | null,
  o: TypedArray,
  lse: TypedArray,
  gO: TypedArray,
  p: AttentionParams,
): AttentionGrads {
  const { batch, lq, lk, d, dv, scale } = p;
  const dq = like(q, q.length),
    dk = like(k, k.length),
    dV = like(v, v.length);
  const P = new Float64Array(lk);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < lq; i++) {
      const L = lse[b * lq + i];
      if (L === -Infinity) continue;
      const lim = visible(p, i),
        qi = (b * lq + i) * d,
        oi = (b * lq + i) * dv,
        m = b * p.maskStrideB + i * p.maskStrideQ;
      let D = 0;
      for (let c = 0; c < dv; c++) D += gO[oi + c] * o[oi + c];
      for (let j = 0; j < lim; j++) {
        let acc = 0;
        const kj = (b * lk + j) * d;
        for (let c = 0; c < d; c++) acc += q[qi + c] * k[kj + c];
        P[j] = Math.exp(acc * scale + (mask ? mask[m + j] : 0) - L);
      }
      for (let j = 0; j < lim; j++) {
        const vj = (b * lk + j) * dv,
          kj = (b * lk + j) * d;
        let dp = 0;
        for (let c = 0; c < dv; c++) {
          dp += gO[oi + c] * v[vj + c];
          dV[vj + c] += P[j] * gO[oi + c];
        }
        const ds = P[j] * (dp - D) * scale;
        for (let c = 0; c < d; c++) {
          dq[qi + c] += ds * k[kj + c];
          dk[kj + c] += ds * q[qi + c];
        }
      }
    }
  }
  return { dq, dk, dv: dV };
}
