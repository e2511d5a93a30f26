// The skeleton the training loops share (customise, the world model, the world scorer): resuming from
// the newest intact checkpoint, when to stop, progress timing with an ETA, when a periodic action is
// due, and the checkpoint's state file. Each loop keeps its body (batch, loss, backward, step) explicit.
import * as fs from "node:fs";
import * as path from "node:path";
import { loadNewestIntact } from "./checkpoint.ts";

/** A duration for progress lines: "4.2s", "3m07s"; "?" when not finite. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

/**
 * Resumes from the newest intact checkpoint under `root`: `load` reads and checks one (throwing on
 * damage, changing no state; damaged newer ones are skipped and reported), `apply` then sets the run's
 * state from what it returned. Logs `resumed from <folder> at step <n>` and returns that step, or null
 * when there is no checkpoint yet.
 */
export function resumeFrom<T>(
  root: string,
  load: (dir: string, step: number) => T,
  apply: (value: T) => void,
  log: (line: string) => void,
): number | null {
  const ck = loadNewestIntact(root, load, log);
  if (!ck) return null;
  apply(ck.value);
  log(`resumed from ${ck.path} at step ${ck.step}`);
  return ck.step;
}

/** Whether a periodic action (a checkpoint, a log line, a validation grid) is due after `step` steps: every `n` steps, never when `n` is 0. */
export function due(step: number, n: number): boolean {
  return n > 0 && step % n === 0;
}

/** Where a loop stands after a step, for its progress line. */
export interface Progress {
  /** steps this process ran */
  done: number;
  /** seconds since the loop began */
  seconds: number;
  secondsPerStep: number;
  stepsPerSecond: number;
  /** seconds left to the last step at this process's pace */
  eta: number;
}

/**
 * The loop's clock and stopping rule, from `start` (0, or the step a resumed run continues from) to
 * `steps`; `stopAfter` ends the process early after that many of its own steps (the run stays
 * resumable), which `stopped` then reports.
 */
export class TrainingLoop {
  readonly start: number;
  readonly steps: number;
  readonly stopAfter: number | undefined;
  /** true when the loop ended at `stopAfter` rather than at `steps` */
  stopped = false;
  private readonly t0 = performance.now();

  constructor(o: { start: number; steps: number; stopAfter?: number | undefined }) {
    this.start = o.start;
    this.steps = o.steps;
    this.stopAfter = o.stopAfter;
  }

  /** Whether another step runs after `step` steps. */
  next(step: number): boolean {
    if (step >= this.steps) return false;
    if (this.stopAfter !== undefined && step - this.start >= this.stopAfter) {
      this.stopped = true;
      return false;
    }
    return true;
  }

  /** Seconds since the loop began. */
  seconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** Timing after `step` steps (at least one of them run by this process). */
  progress(step: number): Progress {
    const done = step - this.start;
    const seconds = this.seconds();
    const secondsPerStep = seconds / done;
    return { done, seconds, secondsPerStep, stepsPerSecond: done / seconds, eta: secondsPerStep * (this.steps - step) };
  }
}

/** Writes a checkpoint's `state.json` into the folder being filled (renamed into place whole by writeCheckpoint). */
export function writeStateFile(dir: string, state: object): void {
  fs.writeFileSync(path.join(dir, "state.json"), JSON.stringify(state, null, 2) + "\n");
}
