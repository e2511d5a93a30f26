// Worker pool over the arena's shared WebAssembly.Memory: each worker (worker.ts, started through
// thread.ts) instantiates the same generated modules on that memory with its own packing buffers;
// the calling thread posts jobs in the shared control block (protocol.ts) and blocks on Atomics.wait
// until they are done (the engine API is synchronous).

import type { WasmMemory } from "./api.ts";
import type { DriverConsts, ThreadBuffers } from "./driver.ts";
import {
  ARG0,
  CMD,
  DONE,
  ERR,
  EXIT,
  FAILED,
  MAX_ARGS,
  READY,
  SEQ,
  SLOT_BYTES,
  STARTING,
  STATE,
  controlBytes,
  counterOffset,
  type WorkerInit,
} from "./protocol.ts";
import { envVar, hardwareThreads, siblingModule, spawnThread, type Thread } from "./thread.ts";

/** A job for one worker: a part-kernel command (parts.ts) and its numeric arguments. */
export interface Job {
  cmd: number;
  args: readonly number[];
}

/** A worker that shows no sign of life this long after its start is given up on (ms). */
const STARTUP_TIMEOUT_MS = 30_000;

let requested: number | undefined;

function envThreads(): number | undefined {
  const v = envVar("CDIFF_THREADS");
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}

/**
 * Threads the cpu kernels may use (the calling thread included): {@link setNumThreads}, else the
 * CDIFF_THREADS environment variable, else the hardware threads available to the process.
 */
export function getNumThreads(): number {
  return requested ?? envThreads() ?? hardwareThreads();
}

/** Sets the thread count of the cpu kernels (1 = calling thread only); returns the previous one. */
export function setNumThreads(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: need a positive integer, got ${n}`);
  const prev = getNumThreads();
  requested = n;
  return prev;
}

const livePools = new Set<WorkerPool>();

/**
 * Stops every worker pool; the next threaded call starts a new one. Node workers never keep the
 * process alive, but Web Workers (Deno, browsers) do: call this before a script is meant to end.
 */
export function closeThreads(): void {
  for (const p of [...livePools]) p.close();
}

/** What a pool's workers are built from. */
export interface PoolSpec {
  memory: WasmMemory;
  gemmModule: object;
  rowModule: object;
  consts: DriverConsts;
  /** one set of packing buffers per worker */
  bufs: readonly ThreadBuffers[];
  /** runs a job on the calling thread, for a worker that failed to start */
  fallback: (job: Job) => void;
}

const workerEntry = siblingModule("worker", import.meta.url);
let warned = false;

/**
 * Worker threads sharing one WebAssembly.Memory. `run` hands job i to worker i, runs `local` on the
 * calling thread meanwhile, then blocks until every job is done. A worker that fails to start (or is
 * not running 30 s after its start) has its jobs run on the calling thread, and the pool is marked
 * {@link WorkerPool.broken}.
 */
export class WorkerPool {
  private readonly threads: Thread[] = [];
  private readonly ctrl: SharedArrayBuffer;
  private readonly ints: Int32Array;
  private readonly args: Float64Array;
  private readonly seqs: number[] = [];
  private readonly counter: Int32Array;
  private readonly fallback: (job: Job) => void;
  private readonly started: number;
  /** Why a worker could not be used, once one could not; the pool still completes every run. */
  broken: string | null = null;

  constructor(spec: PoolSpec) {
    const slots = spec.bufs.length;
    this.ctrl = new SharedArrayBuffer(controlBytes(slots));
    this.ints = new Int32Array(this.ctrl);
    this.args = new Float64Array(this.ctrl);
    this.counter = new Int32Array(this.ctrl, counterOffset(slots), 1);
    this.fallback = spec.fallback;
    this.started = performance.now();
    spec.bufs.forEach((bufs, slot) => {
      const init: WorkerInit = {
        memory: spec.memory,
        gemmModule: spec.gemmModule,
        rowModule: spec.rowModule,
        ctrl: this.ctrl,
        slot,
        slots,
        bufs,
        consts: spec.consts,
      };
      const status = new Int32Array(this.ctrl, slot * SLOT_BYTES + STATE * 4, 1);
      this.threads.push(spawnThread(workerEntry, init, status, `cdiff-cpu-${slot + 1}`));
      this.seqs.push(0);
    });
    livePools.add(this);
  }

  /** Number of worker threads (the calling thread not included); 0 once closed. */
  get size(): number {
    return this.threads.length;
  }

  /** Workers that have started and serve jobs. */
  get running(): number {
    let n = 0;
    for (let w = 0; w < this.threads.length; w++)
      if (Atomics.load(this.ints, (w * SLOT_BYTES) / 4 + STATE) === READY) n++;
    return n;
  }

  /**
   * The shared work counter: kernels that take work units dynamically call `next()` (here and as
   * `ctx.next` in the workers) until it passes their unit count, so a thread the system slows down
   * simply takes fewer units. Reset to 0 before each `run`.
   */
  next(): number {
    return Atomics.add(this.counter, 0, 1);
  }

  /** Runs jobs[i] on worker i and `local` on this thread; returns when all are done. */
  run(jobs: readonly Job[], local: () => void): void {
    if (jobs.length > this.threads.length)
      throw new RangeError(`WorkerPool.run: ${jobs.length} jobs for ${this.threads.length} workers`);
    const I = this.ints;
    Atomics.store(this.counter, 0, 0);
    jobs.forEach((job, w) => {
      const base = (w * SLOT_BYTES) / 4;
      if (job.args.length > MAX_ARGS)
        throw new RangeError(`WorkerPool.run: at most ${MAX_ARGS} arguments, got ${job.args.length}`);
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
    jobs.forEach((job, w) => {
      if (!this.await(w)) {
        // the worker never started: its job runs here (a unit-taking kernel finds no units left)
        this.fallback(job);
      } else if (I[(w * SLOT_BYTES) / 4 + ERR] !== 0) failed = true;
    });
    if (localError !== undefined) throw localError;
    if (failed) throw new Error("WorkerPool.run: a worker job threw");
  }

  /** Blocks until worker w has finished its job; false if the worker failed to start (never ran it). */
  private await(w: number): boolean {
    const I = this.ints,
      base = (w * SLOT_BYTES) / 4,
      seq = this.seqs[w]!;
    for (;;) {
      const d = Atomics.load(I, base + DONE);
      if (d === seq) return true;
      const state = Atomics.load(I, base + STATE);
      if (state === READY) {
        Atomics.wait(I, base + DONE, d, 1000);
        continue;
      }
      const late = state === STARTING && performance.now() - this.started > STARTUP_TIMEOUT_MS;
      // give up on a worker that has not claimed its slot; one that claims it meanwhile is waited for
      if (state === FAILED || (late && Atomics.compareExchange(I, base + STATE, STARTING, FAILED) === STARTING)) {
        this.markBroken(
          `worker ${w + 1} ${state === FAILED ? "failed to start" : `did not start within ${STARTUP_TIMEOUT_MS / 1000} s`}`,
        );
        return false;
      }
      Atomics.wait(I, base + DONE, d, 20);
    }
  }

  private markBroken(reason: string): void {
    this.broken ??= reason;
    if (!warned) {
      warned = true;
      console.warn(`cpu kernels: ${reason} (${workerEntry.href}); running on the calling thread instead`);
    }
  }

  /** Stops the workers. */
  close(): void {
    this.threads.forEach((t, i) => {
      const base = (i * SLOT_BYTES) / 4;
      this.ints[base + CMD] = EXIT;
      Atomics.store(this.ints, base + SEQ, (this.seqs[i] = (this.seqs[i]! + 1) | 0));
      Atomics.notify(this.ints, base + SEQ);
      t.terminate();
    });
    this.threads.length = 0;
    livePools.delete(this);
  }
}
