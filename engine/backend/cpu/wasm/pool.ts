// Worker pool over the arena's shared WebAssembly.Memory: each worker instantiates the same generated
// SGEMM module on that memory with its own packing buffers; the calling thread posts jobs in a shared
// control block and blocks on Atomics.wait until they are done (the engine API is synchronous).

import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { DRIVER_JS } from "./driver.ts";
import type { WasmMemory } from "./runtime.ts";

/** Per-thread packing buffers (byte offsets into the shared memory). */
export interface ThreadBuffers {
  packA: number;
  packB: number;
  scratch: number;
}

/** Micro-tile and cache-block sizes the driver needs. */
export interface DriverConsts {
  mr: number;
  nr: number;
  mc: number;
  kc: number;
  nc: number;
}

/** A job for one worker: a command registered with the pool and its numeric arguments. */
export interface Job {
  cmd: number;
  args: readonly number[];
}

/** Command 1: `gemmBatched` with the worker's own packing buffers; args as the driver's after `scratch`. */
export const CMD_GEMM = 1;

const SLOT_BYTES = 512; // per thread: 4 int32 words, then float64 arguments from byte 64
const SEQ = 0, DONE = 1, CMD = 2, ERR = 3;
const ARG0 = 8; // float64 index of the first argument within a slot
const MAX_ARGS = SLOT_BYTES / 8 - ARG0;
const EXIT = -1;

let requested: number | undefined;

function envThreads(): number | undefined {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CDIFF_THREADS;
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}

/**
 * Threads the cpu kernels may use (the calling thread included): {@link setNumThreads}, else the
 * CDIFF_THREADS environment variable, else `os.availableParallelism()`.
 */
export function getNumThreads(): number {
  return requested ?? envThreads() ?? Math.max(1, availableParallelism());
}

/** Sets the thread count of the cpu kernels (1 = calling thread only); returns the previous one. */
export function setNumThreads(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: need a positive integer, got ${n}`);
  const prev = getNumThreads();
  requested = n;
  return prev;
}

function workerSource(kernels: Readonly<Record<number, string>>): string {
  const table = Object.entries(kernels).map(([k, src]) => `[${k}]: (${src}),`).join("\n");
  return `"use strict";
const { workerData } = require("node:worker_threads");
const { memory, module, extra, ctrl, slot, bufs, consts, counterAt } = workerData;
const counter = new Int32Array(ctrl, counterAt, 1);
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const modules = {};
for (const name of Object.keys(extra)) modules[name] = new WebAssembly.Instance(extra[name], { env: { memory } }).exports;
const gemmBatched = ${DRIVER_JS};
const { mr, nr, mc, kc, nc } = consts;
const ctx = {
  ex, memory, consts, bufs, ...modules,
  heap: () => new Float32Array(memory.buffer),
  next: () => Atomics.add(counter, 0, 1),
  gemm: (tA, tB, M, N, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch) =>
    gemmBatched(ex, mr, nr, mc, kc, nc, bufs.packA, bufs.packB, bufs.scratch, tA, tB, M, N, K, alpha, a, lda, sA, b, ldb, sB, acc0, c, ldc, sC, batch),
};
const kernels = {
  ${CMD_GEMM}: (ctx, a) => ctx.gemm(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16]),
  ${table}
};
const I = new Int32Array(ctrl, slot * ${SLOT_BYTES}, ${SLOT_BYTES / 4});
const A = new Float64Array(ctrl, slot * ${SLOT_BYTES} + ${ARG0 * 8}, ${MAX_ARGS});
let seq = 0;
for (;;) {
  Atomics.wait(I, ${SEQ}, seq);
  seq = Atomics.load(I, ${SEQ});
  const cmd = I[${CMD}];
  if (cmd === ${EXIT}) break;
  try {
    kernels[cmd](ctx, A);
    I[${ERR}] = 0;
  } catch (e) {
    I[${ERR}] = 1;
  }
  Atomics.store(I, ${DONE}, seq);
  Atomics.notify(I, ${DONE});
}`;
}

/**
 * Worker threads sharing one WebAssembly.Memory. `run` hands job i to worker i, runs `local` on the
 * calling thread meanwhile, then blocks until every job is done. Workers are unref'd, so an idle
 * pool does not keep the process alive.
 */
export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly ctrl: SharedArrayBuffer;
  private readonly ints: Int32Array;
  private readonly args: Float64Array;
  private readonly seqs: number[] = [];
  private readonly counter: Int32Array;

  /**
   * The shared work counter: kernels that take work units dynamically call `next()` (here and as
   * `ctx.next` in the workers) until it passes their unit count, so a thread the system slows down
   * simply takes fewer units. Reset to 0 before each `run`.
   */
  next(): number {
    return Atomics.add(this.counter, 0, 1);
  }

  constructor(
    module: object, memory: WasmMemory, bufs: readonly ThreadBuffers[], consts: DriverConsts,
    kernels: Readonly<Record<number, string>> = {}, extra: Readonly<Record<string, object>> = {},
  ) {
    const counterAt = SLOT_BYTES * Math.max(1, bufs.length);
    this.ctrl = new SharedArrayBuffer(counterAt + 64);
    this.ints = new Int32Array(this.ctrl);
    this.args = new Float64Array(this.ctrl);
    this.counter = new Int32Array(this.ctrl, counterAt, 1);
    const src = workerSource(kernels);
    bufs.forEach((b, slot) => {
      const w = new Worker(src, { eval: true, workerData: { memory, module, extra, ctrl: this.ctrl, slot, bufs: b, consts, counterAt } });
      w.unref();
      this.workers.push(w);
      this.seqs.push(0);
    });
  }

  /** Number of worker threads (the calling thread not included). */
  get size(): number {
    return this.workers.length;
  }

  /** Runs jobs[i] on worker i and `local` on this thread; returns when all are done. */
  run(jobs: readonly Job[], local: () => void): void {
    if (jobs.length > this.workers.length) throw new RangeError(`WorkerPool.run: ${jobs.length} jobs for ${this.workers.length} workers`);
    const I = this.ints;
    Atomics.store(this.counter, 0, 0);
    jobs.forEach((job, w) => {
      const base = (w * SLOT_BYTES) / 4;
      if (job.args.length > MAX_ARGS) throw new RangeError(`WorkerPool.run: at most ${MAX_ARGS} arguments, got ${job.args.length}`);
      this.args.set(job.args, (w * SLOT_BYTES) / 8 + ARG0);
      I[base + CMD] = job.cmd;
      const seq = (this.seqs[w] = (this.seqs[w]! + 1) | 0);
      Atomics.store(I, base + SEQ, seq);
      Atomics.notify(I, base + SEQ);
    });
    let localError: unknown;
    try {
      local();
    } catch (e) {
      localError = e;
    }
    let failed = false;
    jobs.forEach((_, w) => {
      const base = (w * SLOT_BYTES) / 4;
      const seq = this.seqs[w]!;
      for (;;) {
        const d = Atomics.load(I, base + DONE);
        if (d === seq) break;
        Atomics.wait(I, base + DONE, d, 1000);
      }
      if (I[base + ERR] !== 0) failed = true;
    });
    if (localError !== undefined) throw localError;
    if (failed) throw new Error("WorkerPool.run: a worker job threw");
  }

  /** Stops the workers. */
  close(): void {
    this.workers.forEach((w, i) => {
      const base = (i * SLOT_BYTES) / 4;
      this.ints[base + CMD] = EXIT;
      Atomics.store(this.ints, base + SEQ, (this.seqs[i] = (this.seqs[i]! + 1) | 0));
      Atomics.notify(this.ints, base + SEQ);
      void w.terminate();
    });
    this.workers.length = 0;
  }
}
