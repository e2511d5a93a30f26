// learning-rate schedules: lr multiplier as a function of the step (as diffusers get_scheduler)
import { ConfigError } from "../engine/errors.ts";

export type ScheduleName = "constant" | "constant_with_warmup" | "linear" | "cosine";

/** Multiplier of the base lr at `step` (0-based) for a named schedule. */
export function lrLambda(name: ScheduleName, step: number, warmup = 0, total = 1): number {
  const w = step < warmup ? step / Math.max(1, warmup) : 1; // diffusers: 0 at step 0
  switch (name) {
    case "constant":
      return 1;
    case "constant_with_warmup":
      return w;
    case "linear":
      return step < warmup ? w : Math.max(0, (total - step) / Math.max(1, total - warmup));
    case "cosine": {
      if (step < warmup) return w;
      const p = (step - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * Math.min(1, p))));
    }
    default:
      throw new ConfigError(
        `lr schedule: unknown name "${name satisfies never}"; use constant, constant_with_warmup, linear or cosine`,
      );
  }
}
