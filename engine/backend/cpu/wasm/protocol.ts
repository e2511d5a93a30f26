// The control block the calling thread and the pool's workers share (a SharedArrayBuffer): one slot
// per worker, then the work counter. A slot holds int32 words (job sequence number, completed
// sequence number, command, error flag, start state) and from byte 64 the job's float64 arguments.
// The calling thread writes a job and bumps SEQ; the worker, blocked in Atomics.wait on SEQ, runs it
// and stores the sequence number in DONE.

import type { WasmMemory } from "./api.ts";
import type { DriverConsts, ThreadBuffers } from "./driver.ts";

export const SLOT_BYTES = 512;
export const SEQ = 0,
  DONE = 1,
  CMD = 2,
  ERR = 3,
  STATE = 4;
/** float64 index of the first argument within a slot */
export const ARG0 = 8;
export const MAX_ARGS = SLOT_BYTES / 8 - ARG0;
/** The command that stops a worker. */
export const EXIT = -1;
/** STATE: the worker has not claimed its slot yet / serves jobs / failed or was given up on. */
export const STARTING = 0,
  READY = 1,
  FAILED = -1;

/** Bytes of a control block for `slots` workers (the counter included). */
export function controlBytes(slots: number): number {
  return counterOffset(slots) + 64;
}

/** Byte offset of the shared work counter. */
export function counterOffset(slots: number): number {
  return SLOT_BYTES * Math.max(1, slots);
}

/** The int32 words of a slot. */
export function slotWords(ctrl: SharedArrayBuffer, slot: number): Int32Array {
  return new Int32Array(ctrl, slot * SLOT_BYTES, SLOT_BYTES / 4);
}

/** What a worker is started with (structured-cloned; the memory and the control block stay shared). */
export interface WorkerInit {
  memory: WasmMemory;
  /** the compiled SGEMM and row modules, instantiated by the worker on `memory` */
  gemmModule: object;
  rowModule: object;
  ctrl: SharedArrayBuffer;
  slot: number;
  slots: number;
  bufs: ThreadBuffers;
  consts: DriverConsts;
}

/**
 * Worker side: claims the slot (returns at once if the pool gave up on this worker), then runs each
 * job as `run(cmd, args)` until the EXIT command.
 */
export function serveJobs(ctrl: SharedArrayBuffer, slot: number, run: (cmd: number, args: Float64Array) => void): void {
  const I = slotWords(ctrl, slot);
  const A = new Float64Array(ctrl, slot * SLOT_BYTES + ARG0 * 8, MAX_ARGS);
  if (Atomics.compareExchange(I, STATE, STARTING, READY) !== STARTING) return;
  let seq = 0;
  for (;;) {
    Atomics.wait(I, SEQ, seq);
    seq = Atomics.load(I, SEQ);
    const cmd = I[CMD]!;
    if (cmd === EXIT) break;
    try {
      run(cmd, A);
      I[ERR] = 0;
    } catch {
      I[ERR] = 1;
    }
    Atomics.store(I, DONE, seq);
    Atomics.notify(I, DONE);
  }
}
