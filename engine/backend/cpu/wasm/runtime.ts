// The WebAssembly runtime of the cpu kernels: one arena (shared memory), the generated SGEMM and row
// modules instantiated on it, this thread's packing buffers and the worker pool whose threads
// instantiate the same modules. It is the SIMD GEMM (cache-blocked driver, split across threads by
// rows, columns or batch items) and runs the part kernels (attention, convolution) on the pool.

import { copyOut } from "../buffers.ts";
import { requireWasm } from "./api.ts";
import type { WasmArena } from "./arena.ts";
import { checkBatch, validate } from "./checks.ts";
import { partContext } from "./context.ts";
import { gemmDriver, type DriverConsts, type ThreadBuffers } from "./driver.ts";
import { sgemmModuleBytes, type MicroKernelConfig, type SgemmExports } from "./kernels.ts";
import { CMD_GEMM, partKernel } from "./parts.ts";
import { WorkerPool, getNumThreads, type Job } from "./pool.ts";
import { rowModuleBytes, type RowExports } from "./rowops.ts";
import type { BlockSizes, SgemmKernel, SgemmKernelOptions, SgemmVariant } from "./sgemm.ts";

// Measured on x86-64 (V8 11.3): 4x8 keeps 8 accumulators + 6 loaded vectors within the 15 usable
// xmm registers; wider tiles or k-unrolling spill because TurboFan hoists all loads of the loop body.
// kc = 384 keeps K = 320 in one block; the A block (128 x 384 floats = 192 KiB) stays in L2.
const DEFAULT_MICRO = { mr: 4, nv: 2, unroll: 1 };
const DEFAULT_BLOCKS: BlockSizes = { mc: 128, kc: 384, nc: 2048 };

const roundUp = (x: number, m: number): number => Math.ceil(x / m) * m;

/** Multiply-adds per thread below which a GEMM is not split (waking a worker costs ~20-50 us). */
export const PARALLEL_MIN_WORK = 1 << 21;

/** An arena block for {@link WasmRuntime.withBlocks}: an array to copy in, or a float count. */
export type BlockSpec = Float32Array | number;

/** The WebAssembly SIMD runtime on one arena: modules, packing buffers, worker pool. */
export class WasmRuntime implements SgemmKernel {
  readonly variant: SgemmVariant;
  readonly arena: WasmArena;
  private readonly ex: SgemmExports;
  private readonly mr: number;
  private readonly nr: number;
  private readonly blocks: BlockSizes;
  private readonly gemmModule: object;
  private readonly rowModule: object;
  /** Row kernels (softmax passes, norms, activations, im2col) on the same memory; workers have their own instance. */
  readonly rows: RowExports;
  private pool: WorkerPool | null = null;
  private poolBuffers: ThreadBuffers[] = [];
  /** Set once a worker failed to start: everything then runs on the calling thread. */
  private threadsFailed = false;
  private packA = 0;
  private packB = 0;
  private packAFloats = 0;
  private packBFloats = 0;
  private scratch = 0;

  constructor(arena: WasmArena, fma: boolean, opts: SgemmKernelOptions) {
    this.arena = arena;
    const micro: MicroKernelConfig = { ...DEFAULT_MICRO, ...opts.micro, fma };
    this.variant = fma ? "relaxed" : "simd";
    this.mr = micro.mr;
    this.nr = micro.nv * 4;
    const b = { ...DEFAULT_BLOCKS, ...opts.blocks };
    this.blocks = { mc: roundUp(b.mc, this.mr), kc: b.kc, nc: roundUp(b.nc, this.nr) };
    const memory = { initial: 0, maximum: arena.maximumPages, shared: arena.shared };
    const api = requireWasm();
    this.gemmModule = new api.Module(sgemmModuleBytes(micro, memory));
    this.rowModule = new api.Module(rowModuleBytes(memory));
    this.rows = new api.Instance(this.rowModule, { env: { memory: arena.memory } }).exports as unknown as RowExports;
    this.ex = new api.Instance(this.gemmModule, { env: { memory: arena.memory } }).exports as unknown as SgemmExports;
  }

  /** Packing buffers of the largest block sizes for one thread. */
  private threadBuffers(): ThreadBuffers {
    const { mc, kc, nc } = this.blocks;
    return {
      packA: this.arena.alloc(mc * kc),
      packB: this.arena.alloc(kc * nc),
      scratch: this.arena.alloc(this.mr * this.nr),
    };
  }

  /**
   * The worker pool sized for `threads` (the calling thread included), or null for one thread, a
   * non-shared memory or after a worker failed to start. Workers start on first use; extra workers
   * from a larger setting are kept.
   */
  workerPool(threads: number = getNumThreads()): WorkerPool | null {
    if (threads <= 1 || !this.arena.shared || this.threadsFailed) return null;
    if (this.pool?.broken) {
      this.threadsFailed = true;
      this.closePool();
      return null;
    }
    if (this.pool && this.pool.size >= threads - 1) return this.pool;
    this.closePool();
    this.poolBuffers = Array.from({ length: threads - 1 }, () => this.threadBuffers());
    const pool: WorkerPool = new WorkerPool({
      memory: this.arena.memory,
      gemmModule: this.gemmModule,
      rowModule: this.rowModule,
      consts: this.consts,
      bufs: this.poolBuffers,
      // a job whose worker never started runs here, drawing units from the pool's counter
      fallback: (job) => partKernel(job.cmd)(partContext(this, pool), job.args),
    });
    this.pool = pool;
    return pool;
  }

  private closePool(): void {
    this.pool?.close();
    this.pool = null;
    for (const b of this.poolBuffers) for (const p of [b.packA, b.packB, b.scratch]) this.arena.free(p);
    this.poolBuffers = [];
  }

  /**
   * Runs part kernel `cmd` (parts.ts) with arguments parts[0] on this thread and parts[i] on worker i
   * (they differ in their scratch pointers); every participant takes units from one shared counter,
   * so with fewer threads the same units run, each with the same sums.
   */
  runParts(cmd: number, parts: readonly (readonly number[])[]): void {
    const pool = parts.length > 1 ? this.workerPool(parts.length) : null;
    const ctx = partContext(this, pool);
    const fn = partKernel(cmd);
    if (!pool) fn(ctx, parts[0]!);
    else
      pool.run(
        parts.slice(1).map((args) => ({ cmd, args })),
        () => fn(ctx, parts[0]!),
      );
  }

  /**
   * Runs `body` with one arena block per entry of `spec` (byte offsets; arrays are copied in, counts
   * left as they are; at least one float each) and frees the blocks when it returns or throws.
   */
  withBlocks<R>(spec: readonly BlockSpec[], body: (ptrs: number[]) => R): R {
    const arena = this.arena;
    const ptrs: number[] = [];
    try {
      for (const s of spec) ptrs.push(arena.alloc(Math.max(1, typeof s === "number" ? s : s.length)));
      const h = arena.heapF32();
      spec.forEach((s, i) => typeof s !== "number" && h.set(s, ptrs[i]! / 4));
      return body(ptrs);
    } finally {
      for (const p of ptrs) arena.free(p);
    }
  }

  /** Copies `src` into the arena at byte offset `ptr`. */
  write(ptr: number, src: Float32Array): void {
    this.arena.heapF32().set(src, ptr / 4);
  }

  /** A view of the n floats at byte offset `ptr` (valid until the memory grows). */
  view(ptr: number, n: number): Float32Array {
    return this.arena.heapF32().subarray(ptr / 4, ptr / 4 + n);
  }

  /** A copy (from the buffer pool) of the n floats at byte offset `ptr`. */
  read(ptr: number, n: number): Float32Array {
    return copyOut(this.arena.heapF32().subarray(ptr / 4, ptr / 4 + n));
  }

  /** The calling thread's packing buffers. */
  localBuffers(): ThreadBuffers {
    this.buffers(this.blocks.mc * this.blocks.kc, this.blocks.kc * this.blocks.nc);
    return { packA: this.packA, packB: this.packB, scratch: this.scratch };
  }

  /** Micro-tile and block sizes. */
  get consts(): DriverConsts {
    return { mr: this.mr, nr: this.nr, ...this.blocks };
  }

  /** The SGEMM module's exports (for kernels that drive packing and macro-kernels themselves). */
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
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    bPtr: number,
    ldb: number,
    beta: number,
    cPtr: number,
    ldc: number,
  ): void {
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, this.arena.byteLength);
    this.run(transA, transB, M, N, K, alpha, aPtr, lda, 0, bPtr, ldb, 0, beta, cPtr, ldc, 0);
  }

  sgemmBatched(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    strideA: number,
    bPtr: number,
    ldb: number,
    strideB: number,
    beta: number,
    cPtr: number,
    ldc: number,
    strideC: number,
    batch: number,
  ): void {
    checkBatch(batch, strideA, strideB, strideC);
    if (batch === 0) return;
    const last = batch - 1;
    const bytes = this.arena.byteLength;
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, bytes);
    validate(
      transA,
      transB,
      M,
      N,
      K,
      aPtr + last * strideA * 4,
      lda,
      bPtr + last * strideB * 4,
      ldb,
      cPtr + last * strideC * 4,
      ldc,
      bytes,
    );
    this.run(transA, transB, M, N, K, alpha, aPtr, lda, strideA, bPtr, ldb, strideB, beta, cPtr, ldc, strideC, batch);
  }

  private run(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    sA: number,
    bPtr: number,
    ldb: number,
    sB: number,
    beta: number,
    cPtr: number,
    ldc: number,
    sC: number,
    batch = 1,
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
      gemmDriver(
        ex,
        mr,
        nr,
        mc,
        kc,
        nc,
        local.packA,
        local.packB,
        local.scratch,
        transA,
        transB,
        m,
        n,
        K,
        alpha,
        a,
        lda,
        sA,
        b,
        ldb,
        sB,
        acc0,
        c,
        ldc,
        sC,
        bt,
      );
    const work = M * N * K * batch;
    const threads = Math.min(getNumThreads(), Math.floor(work / PARALLEL_MIN_WORK));
    const pool = threads > 1 ? this.workerPool(threads) : null;
    if (!pool) {
      drive(M, N, aPtr, bPtr, cPtr, batch);
      return;
    }
    const job = (m: number, n: number, a: number, b: number, c: number, bt: number): Job => ({
      cmd: CMD_GEMM,
      args: [+transA, +transB, m, n, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, bt],
    });
    // op(A)[i, k] and op(B)[k, j] byte strides along i and j
    const aIs = transA ? 4 : lda * 4,
      bJs = transB ? ldb * 4 : 4;
    if (batch >= threads) {
      // whole batch items per thread
      const per = Math.ceil(batch / threads);
      const jobs: Job[] = [];
      for (let t0 = per; t0 < batch; t0 += per)
        jobs.push(job(M, N, aPtr + t0 * sA * 4, bPtr + t0 * sB * 4, cPtr + t0 * sC * 4, Math.min(per, batch - t0)));
      pool.run(jobs, () => drive(M, N, aPtr, bPtr, cPtr, per));
      return;
    }
    // split the larger of M and N into `threads` parts of whole micro-tiles, for every batch item at once
    const byN = N >= M;
    const len = byN ? N : M,
      mult = byN ? nr : mr;
    const part = roundUp(Math.ceil(len / threads), mult);
    const jobs: Job[] = [];
    for (let s = part; s < len; s += part) {
      const w = Math.min(part, len - s);
      jobs.push(
        byN
          ? job(M, w, aPtr, bPtr + s * bJs, cPtr + s * 4, batch)
          : job(w, N, aPtr + s * aIs, bPtr, cPtr + s * ldc * 4, batch),
      );
    }
    pool.run(jobs, () =>
      byN ? drive(M, Math.min(part, N), aPtr, bPtr, cPtr, batch) : drive(Math.min(part, M), N, aPtr, bPtr, cPtr, batch),
    );
  }
}
