// Single-threaded float32 GEMM driver: cache blocking (NC x KC panels of B, MC x KC blocks of A packed
// into the arena) around the generated WebAssembly micro-kernel, with a plain TypeScript fallback.

import { ShapeError, UnsupportedKernelError } from "../../../errors.ts";
import { WasmArena } from "./arena.ts";
import { take } from "../buffers.ts";
import { probeRelaxedSimd, probeSimd, sgemmModuleBytes, type MicroKernelConfig, type SgemmExports } from "./kernels.ts";
import { sgemmTS } from "./reference.ts";
import { requireWasm } from "./runtime.ts";
import { gemmDriver } from "./driver.ts";
import { rowModuleBytes, type RowExports } from "./rowops.ts";
import { ATTN_BWD_JS, ATTN_FWD_JS, CMD_ATTN_BWD, CMD_ATTN_FWD } from "./attention_src.ts";
import { CMD_CONV_BWD_INPUT, CMD_CONV_BWD_WEIGHT, CMD_CONV_FWD, CONV_BWD_INPUT_JS, CONV_BWD_WEIGHT_JS, CONV_FWD_JS } from "./conv_src.ts";
import { CMD_GEMM, WorkerPool, getNumThreads, type Job, type ThreadBuffers } from "./pool.ts";

/** Kernel flavours: fused relaxed-SIMD wasm, plain wasm SIMD (mul + add), plain TypeScript. */
export type SgemmVariant = "relaxed" | "simd" | "ts";

/** Cache-block sizes in elements: A blocks are mc x kc, B panels kc x nc. */
export interface BlockSizes {
  mc: number;
  kc: number;
  nc: number;
}

/** Options for {@link sgemmKernel}; defaults are tuned for 128-bit SIMD on a 512 KiB L2. */
export interface SgemmKernelOptions {
  arena?: WasmArena;
  micro?: Partial<Omit<MicroKernelConfig, "fma">>;
  blocks?: Partial<BlockSizes>;
}

/** A GEMM bound to one arena; pointers are byte offsets into `arena.memory`, strides in elements. */
export interface SgemmKernel {
  readonly variant: SgemmVariant;
  readonly arena: WasmArena;
  /**
   * C = alpha * op(A) op(B) + beta * C, row-major; op(A) is M x K, op(B) is K x N, C is M x N.
   * beta = 0 overwrites C (NaNs in C are not propagated); alpha = 0 or K = 0 only scales C.
   * C must not overlap A or B. Throws ShapeError on bad sizes or leading dimensions, RangeError
   * when an operand runs past the memory.
   */
  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, bPtr: number, ldb: number, beta: number, cPtr: number, ldc: number,
  ): void;
  /** `batch` GEMMs with element strides between consecutive A, B, C (a stride of 0 broadcasts). */
  sgemmBatched(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, strideA: number, bPtr: number, ldb: number, strideB: number,
    beta: number, cPtr: number, ldc: number, strideC: number, batch: number,
  ): void;
}

// Measured on x86-64 (V8 11.3): 4x8 keeps 8 accumulators + 6 loaded vectors within the 15 usable
// xmm registers; wider tiles or k-unrolling spill because TurboFan hoists all loads of the loop body.
// kc = 384 keeps K = 320 in one block; the A block (128 x 384 floats = 192 KiB) stays in L2.
const DEFAULT_MICRO = { mr: 4, nv: 2, unroll: 1 };
const DEFAULT_BLOCKS: BlockSizes = { mc: 128, kc: 384, nc: 2048 };

let simdCache: boolean | undefined;
let relaxedCache: boolean | undefined;

/** Whether this runtime compiles WebAssembly 128-bit SIMD. */
export function simdAvailable(): boolean {
  return (simdCache ??= probeSimd());
}

/**
 * Whether this runtime compiles relaxed SIMD (f32x4.relaxed_madd). Probed once, at first call;
 * on Node 20 it needs `--experimental-wasm-relaxed-simd`.
 */
export function relaxedSimdAvailable(): boolean {
  return (relaxedCache ??= simdAvailable() && probeRelaxedSimd());
}

/** The fastest variant this runtime supports. */
export function bestVariant(): SgemmVariant {
  return relaxedSimdAvailable() ? "relaxed" : simdAvailable() ? "simd" : "ts";
}

let arenaSingleton: WasmArena | undefined;

/** The process-wide arena used by {@link sgemm} and {@link matmulF32}. */
export function defaultArena(): WasmArena {
  return (arenaSingleton ??= new WasmArena());
}

function checkDim(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new ShapeError(`sgemm: ${name} must be a non-negative integer, got ${v}`);
}

/** Checks that a rows x cols operand with leading dimension ld at byte offset ptr fits the memory. */
function checkOperand(name: string, ptr: number, rows: number, cols: number, ld: number, bytes: number): void {
  if (!Number.isInteger(ld) || ld < Math.max(1, cols)) {
    throw new ShapeError(`sgemm: ld${name} must be an integer >= ${Math.max(1, cols)}, got ${ld}`);
  }
  if (!Number.isInteger(ptr) || ptr < 0 || ptr % 4 !== 0) {
    throw new RangeError(`sgemm: ${name} pointer must be a non-negative multiple of 4, got ${ptr}`);
  }
  if (rows > 0 && cols > 0 && ptr + ((rows - 1) * ld + cols) * 4 > bytes) {
    throw new RangeError(`sgemm: ${name} (${rows}x${cols}, ld ${ld}) at ${ptr} runs past memory of ${bytes} bytes`);
  }
}

function validate(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  aPtr: number, lda: number, bPtr: number, ldb: number, cPtr: number, ldc: number, bytes: number,
): void {
  checkDim("M", M);
  checkDim("N", N);
  checkDim("K", K);
  checkOperand("A", aPtr, transA ? K : M, transA ? M : K, lda, bytes);
  checkOperand("B", bPtr, transB ? N : K, transB ? K : N, ldb, bytes);
  checkOperand("C", cPtr, M, N, ldc, bytes);
}

const roundUp = (x: number, m: number): number => Math.ceil(x / m) * m;

/** Multiply-adds per thread below which a GEMM is not split (waking a worker costs ~20-50 us). */
export const PARALLEL_MIN_WORK = 1 << 21;

/** The WebAssembly SIMD GEMM on one arena, with its worker pool. */
export class WasmSgemm implements SgemmKernel {
  readonly variant: SgemmVariant;
  private readonly ex: SgemmExports;
  private readonly mr: number;
  private readonly nr: number;
  private readonly blocks: BlockSizes;
  private readonly module: object;
  private readonly rowModule: object;
  /** Row kernels (softmax passes) on the same memory; workers see them as `ctx.row`. */
  readonly rows: RowExports;
  private pool: WorkerPool | null = null;
  private packA = 0;
  private packB = 0;
  private packAFloats = 0;
  private packBFloats = 0;
  private scratch = 0;

  constructor(readonly arena: WasmArena, fma: boolean, opts: SgemmKernelOptions) {
    const micro: MicroKernelConfig = { ...DEFAULT_MICRO, ...opts.micro, fma };
    this.variant = fma ? "relaxed" : "simd";
    this.mr = micro.mr;
    this.nr = micro.nv * 4;
    const b = { ...DEFAULT_BLOCKS, ...opts.blocks };
    this.blocks = { mc: roundUp(b.mc, this.mr), kc: b.kc, nc: roundUp(b.nc, this.nr) };
    const bytes = sgemmModuleBytes(micro, { initial: 0, maximum: arena.maximumPages, shared: arena.shared });
    const api = requireWasm();
    this.module = new api.Module(bytes);
    this.rowModule = new api.Module(rowModuleBytes({ initial: 0, maximum: arena.maximumPages, shared: arena.shared }));
    this.rows = new api.Instance(this.rowModule, { env: { memory: arena.memory } }).exports as unknown as RowExports;
    const inst = new api.Instance(this.module, { env: { memory: arena.memory } });
    this.ex = inst.exports as unknown as SgemmExports;
  }

  /** Packing buffers of the largest block sizes for one thread. */
  private threadBuffers(): ThreadBuffers {
    const { mc, kc, nc } = this.blocks;
    return { packA: this.arena.alloc(mc * kc), packB: this.arena.alloc(kc * nc), scratch: this.arena.alloc(this.mr * this.nr) };
  }

  /**
   * The worker pool sized for `threads` (the calling thread included), or null for one thread or
   * a non-shared memory. Workers start on first use; extra workers from a larger setting are kept.
   */
  workerPool(threads: number = getNumThreads()): WorkerPool | null {
    if (threads <= 1 || !this.arena.shared) return null;
    if (this.pool && this.pool.size >= threads - 1) return this.pool;
    this.pool?.close();
    const bufs = Array.from({ length: threads - 1 }, () => this.threadBuffers());
    const { mr, nr } = this;
    this.pool = new WorkerPool(this.module, this.arena.memory, bufs, { mr, nr, ...this.blocks }, this.kernels, { row: this.rowModule });
    return this.pool;
  }

  /** Extra JavaScript kernels (command id to function source) the workers register. */
  readonly kernels: Record<number, string> = {
    [CMD_ATTN_FWD]: ATTN_FWD_JS, [CMD_ATTN_BWD]: ATTN_BWD_JS,
    [CMD_CONV_FWD]: CONV_FWD_JS, [CMD_CONV_BWD_INPUT]: CONV_BWD_INPUT_JS, [CMD_CONV_BWD_WEIGHT]: CONV_BWD_WEIGHT_JS,
  };

  /** The calling thread's packing buffers. */
  localBuffers(): ThreadBuffers {
    this.buffers(this.blocks.mc * this.blocks.kc, this.blocks.kc * this.blocks.nc);
    return { packA: this.packA, packB: this.packB, scratch: this.scratch };
  }

  /** Micro-tile and block sizes. */
  get consts(): { mr: number; nr: number; mc: number; kc: number; nc: number } {
    return { mr: this.mr, nr: this.nr, ...this.blocks };
  }

  /** The module's exports (for kernels that drive packing and macro-kernels themselves). */
  get exports(): SgemmExports {
    return this.ex;
  }

  /** Grows the packing buffers to at least the given float counts (they are kept between calls). */
  private buffers(aFloats: number, bFloats: number): void {
    const arena = this.arena;
    if (this.scratch === 0) this.scratch = arena.alloc(this.mr * this.nr);
    if (aFloats > this.packAFloats) {
      if (this.packA !== 0) arena.free(this.packA);
      this.packA = arena.alloc(aFloats);
      this.packAFloats = aFloats;
    }
    if (bFloats > this.packBFloats) {
      if (this.packB !== 0) arena.free(this.packB);
      this.packB = arena.alloc(bFloats);
      this.packBFloats = bFloats;
    }
  }

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, bPtr: number, ldb: number, beta: number, cPtr: number, ldc: number,
  ): void {
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, this.arena.byteLength);
    this.run(transA, transB, M, N, K, alpha, aPtr, lda, 0, bPtr, ldb, 0, beta, cPtr, ldc, 0);
  }

  sgemmBatched(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, strideA: number, bPtr: number, ldb: number, strideB: number,
    beta: number, cPtr: number, ldc: number, strideC: number, batch: number,
  ): void {
    checkBatch(batch, strideA, strideB, strideC);
    if (batch === 0) return;
    const last = batch - 1;
    const bytes = this.arena.byteLength;
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, bytes);
    validate(transA, transB, M, N, K, aPtr + last * strideA * 4, lda, bPtr + last * strideB * 4, ldb, cPtr + last * strideC * 4, ldc, bytes);
    this.run(transA, transB, M, N, K, alpha, aPtr, lda, strideA, bPtr, ldb, strideB, beta, cPtr, ldc, strideC, batch);
  }

  private run(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, sA: number, bPtr: number, ldb: number, sB: number,
    beta: number, cPtr: number, ldc: number, sC: number, batch = 1,
  ): void {
    if (M === 0 || N === 0 || batch === 0) return;
    const ex = this.ex;
    const ldcB = ldc * 4;
    if (K === 0 || alpha === 0) {
      if (beta !== 1) for (let t = 0; t < batch; t++) ex.scale(cPtr + t * sC * 4, ldcB, M, N, beta, beta === 0 ? 1 : 0);
      return;
    }
    let acc0 = 1;
    if (beta === 0) acc0 = 0;
    else if (beta !== 1) for (let t = 0; t < batch; t++) ex.scale(cPtr + t * sC * 4, ldcB, M, N, beta, 0);
    const { mr, nr } = this;
    const { mc, kc, nc } = this.blocks;
    const local = this.localBuffers();
    const drive = (m: number, n: number, a: number, b: number, c: number, bt: number): void =>
      gemmDriver(ex, mr, nr, mc, kc, nc, local.packA, local.packB, local.scratch, transA, transB, m, n, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, bt);
    const work = M * N * K * batch;
    const threads = Math.min(getNumThreads(), Math.floor(work / PARALLEL_MIN_WORK));
    const pool = threads > 1 ? this.workerPool(threads) : null;
    if (!pool) {
      drive(M, N, aPtr, bPtr, cPtr, batch);
      return;
    }
    const job = (m: number, n: number, a: number, b: number, c: number, bt: number): Job => ({
      cmd: CMD_GEMM, args: [+transA, +transB, m, n, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, bt],
    });
    // op(A)[i, k] and op(B)[k, j] byte strides along i and j
    const aIs = transA ? 4 : lda * 4, bJs = transB ? ldb * 4 : 4;
    if (batch >= threads) {
      // whole batch items per thread
      const per = Math.ceil(batch / threads);
      const jobs: Job[] = [];
      for (let t0 = per; t0 < batch; t0 += per) jobs.push(job(M, N, aPtr + t0 * sA * 4, bPtr + t0 * sB * 4, cPtr + t0 * sC * 4, Math.min(per, batch - t0)));
      pool.run(jobs, () => drive(M, N, aPtr, bPtr, cPtr, per));
      return;
    }
    // split the larger of M and N into `threads` parts of whole micro-tiles, for every batch item at once
    const byN = N >= M;
    const len = byN ? N : M, mult = byN ? nr : mr;
    const part = roundUp(Math.ceil(len / threads), mult);
    const jobs: Job[] = [];
    for (let s = part; s < len; s += part) {
      const w = Math.min(part, len - s);
      jobs.push(byN
        ? job(M, w, aPtr, bPtr + s * bJs, cPtr + s * 4, batch)
        : job(w, N, aPtr + s * aIs, bPtr, cPtr + s * ldc * 4, batch));
    }
    pool.run(jobs, () => (byN ? drive(M, Math.min(part, N), aPtr, bPtr, cPtr, batch) : drive(Math.min(part, M), N, aPtr, bPtr, cPtr, batch)));
  }
}

function checkBatch(batch: number, sa: number, sb: number, sc: number): void {
  if (!Number.isInteger(batch) || batch < 0) throw new ShapeError(`sgemmBatched: batch must be a non-negative integer, got ${batch}`);
  for (const [n, s] of [["strideA", sa], ["strideB", sb], ["strideC", sc]] as const) {
    if (!Number.isInteger(s) || s < 0) throw new ShapeError(`sgemmBatched: ${n} must be a non-negative integer, got ${s}`);
  }
}

class TsSgemm implements SgemmKernel {
  readonly variant = "ts" as const;
  constructor(readonly arena: WasmArena) {}

  sgemm(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, bPtr: number, ldb: number, beta: number, cPtr: number, ldc: number,
  ): void {
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, this.arena.byteLength);
    const h = this.arena.heapF32();
    sgemmTS(transA, transB, M, N, K, alpha, h, aPtr / 4, lda, h, bPtr / 4, ldb, beta, h, cPtr / 4, ldc);
  }

  sgemmBatched(
    transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    aPtr: number, lda: number, strideA: number, bPtr: number, ldb: number, strideB: number,
    beta: number, cPtr: number, ldc: number, strideC: number, batch: number,
  ): void {
    checkBatch(batch, strideA, strideB, strideC);
    for (let t = 0; t < batch; t++) {
      this.sgemm(transA, transB, M, N, K, alpha, aPtr + t * strideA * 4, lda, bPtr + t * strideB * 4, ldb, beta, cPtr + t * strideC * 4, ldc);
    }
  }
}

const kernelCache = new WeakMap<WasmArena, Map<SgemmVariant, SgemmKernel>>();

/**
 * A GEMM of the given variant (default: the fastest available) on an arena (default: the shared
 * {@link defaultArena}). Kernels with default options are cached per arena and variant.
 * Throws UnsupportedKernelError if the variant is not supported by this runtime.
 */
export function sgemmKernel(variant: SgemmVariant = bestVariant(), opts: SgemmKernelOptions = {}): SgemmKernel {
  const arena = opts.arena ?? defaultArena();
  const custom = opts.micro !== undefined || opts.blocks !== undefined;
  let perArena = kernelCache.get(arena);
  if (!custom) {
    const hit = perArena?.get(variant);
    if (hit) return hit;
  }
  if (variant === "relaxed" && !relaxedSimdAvailable()) throw new UnsupportedKernelError("sgemm", "wasm-relaxed-simd");
  if (variant === "simd" && !simdAvailable()) throw new UnsupportedKernelError("sgemm", "wasm-simd");
  const k = variant === "ts" ? new TsSgemm(arena) : new WasmSgemm(arena, variant === "relaxed", opts);
  if (!custom) {
    if (!perArena) kernelCache.set(arena, (perArena = new Map()));
    perArena.set(variant, k);
  }
  return k;
}

/**
 * C = alpha * op(A) op(B) + beta * C on byte offsets into {@link defaultArena}, row-major, with the
 * fastest available kernel. See {@link SgemmKernel.sgemm}.
 */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  aPtr: number, lda: number, bPtr: number, ldb: number, beta: number, cPtr: number, ldc: number,
): void {
  sgemmKernel().sgemm(transA, transB, M, N, K, alpha, aPtr, lda, bPtr, ldb, beta, cPtr, ldc);
}

/** Strided batched {@link sgemm} on {@link defaultArena}; strides in elements, 0 broadcasts. */
export function sgemmBatched(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  aPtr: number, lda: number, strideA: number, bPtr: number, ldb: number, strideB: number,
  beta: number, cPtr: number, ldc: number, strideC: number, batch: number,
): void {
  sgemmKernel().sgemmBatched(transA, transB, M, N, K, alpha, aPtr, lda, strideA, bPtr, ldb, strideB, beta, cPtr, ldc, strideC, batch);
}

/** Options of {@link matmulF32Batched}: element strides between batch items (0 broadcasts). */
export interface BatchedMatmulOptions {
  strideA?: number;
  strideB?: number;
  strideC?: number;
  variant?: SgemmVariant;
}

/** Staging blocks in the arena reused by the copying wrappers, keyed by arena. */
const staging = new WeakMap<WasmArena, { ptr: number; floats: number }>();

function stage(arena: WasmArena, floats: number): number {
  const s = staging.get(arena);
  if (s && s.floats >= floats) return s.ptr;
  if (s) arena.free(s.ptr);
  const grown = Math.max(floats, s ? s.floats * 1.5 : 0);
  const ptr = arena.alloc(Math.ceil(grown));
  staging.set(arena, { ptr, floats: Math.ceil(grown) });
  return ptr;
}

/**
 * out[M x N] = op(a) op(b) for dense row-major arrays: `a` is M x K (K x M when transA), `b` is
 * K x N (N x K when transB). Copies through the arena, runs the kernel, copies out; returns `out`
 * (allocated when omitted).
 */
export function matmulF32(
  a: Float32Array, b: Float32Array, M: number, N: number, K: number,
  transA = false, transB = false, out?: Float32Array, variant: SgemmVariant = bestVariant(),
): Float32Array {
  return matmulF32Batched(a, b, 1, M, N, K, transA, transB, out, { variant });
}

/**
 * Batched {@link matmulF32}: item t uses a[t*strideA ...], b[t*strideB ...], out[t*strideC ...]
 * (defaults: dense M*K, K*N, M*N; a stride of 0 broadcasts that operand).
 */
export function matmulF32Batched(
  a: Float32Array, b: Float32Array, batch: number, M: number, N: number, K: number,
  transA = false, transB = false, out?: Float32Array, opts: BatchedMatmulOptions = {},
): Float32Array {
  for (const [n, v] of [["M", M], ["N", N], ["K", K], ["batch", batch]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ShapeError(`matmulF32: ${n} must be a non-negative integer, got ${v}`);
  }
  const sa = opts.strideA ?? M * K, sb = opts.strideB ?? K * N, sc = opts.strideC ?? M * N;
  checkBatch(batch, sa, sb, sc);
  const needA = batch === 0 ? 0 : (batch - 1) * sa + M * K;
  const needB = batch === 0 ? 0 : (batch - 1) * sb + K * N;
  const needC = batch === 0 ? 0 : (batch - 1) * sc + M * N;
  if (a.length < needA) throw new ShapeError(`matmulF32: a needs ${needA} elements, got ${a.length}`);
  if (b.length < needB) throw new ShapeError(`matmulF32: b needs ${needB} elements, got ${b.length}`);
  // every element is written unless the output items have gaps between them (kept as zeros)
  const c = out ?? take(Float32Array, needC, sc === M * N);
  if (c.length < needC) throw new ShapeError(`matmulF32: out needs ${needC} elements, got ${c.length}`);
  if (batch === 0 || M === 0 || N === 0) return c;
  const lda = transA ? M : K, ldb = transB ? K : N;
  if ((opts.variant ?? bestVariant()) === "ts") {
    for (let t = 0; t < batch; t++) sgemmTS(transA, transB, M, N, K, 1, a, t * sa, Math.max(1, lda), b, t * sb, Math.max(1, ldb), 0, c, t * sc, Math.max(1, N));
    return c;
  }
  const kern = sgemmKernel(opts.variant ?? bestVariant());
  const arena = kern.arena;
  const base = stage(arena, needA + needB + needC);
  const pa = base, pb = base + needA * 4, pc = pb + needB * 4;
  const h = arena.heapF32();
  h.set(a.subarray(0, needA), pa / 4);
  h.set(b.subarray(0, needB), pb / 4);
  // gaps between output items keep their contents
  if (sc > M * N && batch > 1) h.set(c.subarray(0, needC), pc / 4);
  kern.sgemmBatched(transA, transB, M, N, K, 1, pa, Math.max(1, lda), sa, pb, Math.max(1, ldb), sb, 0, pc, Math.max(1, N), sc, batch);
  c.set(arena.heapF32().subarray(pc / 4, pc / 4 + needC));
  return c;
}
