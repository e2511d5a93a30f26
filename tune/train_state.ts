// Customise's checkpoints: the delta, the optimizer state and state.json (generator, data order, step,
// losses), and the checked read of that state on resume
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";
import type { AdamState } from "../optim/index.ts";
import type { Delta } from "./delta.ts";
import { saveDelta } from "./delta.ts";
import { writeCheckpoint, writeOptimizerState } from "./checkpoint.ts";
import { writeStateFile } from "./loop.ts";

/** Writes `dir/checkpoints/checkpoint-<step>`: the delta, the optimizer's state and the loop's state. */
export function saveCheckpoint(dir: string, step: number, delta: Delta, optState: AdamState, state: object): void {
  writeCheckpoint(path.join(dir, "checkpoints"), step, (tmp) => {
    saveDelta(tmp, delta);
    writeOptimizerState(path.join(tmp, "optimizer.safetensors"), optState);
    writeStateFile(tmp, state);
  });
}

export interface TrainState {
  step: number;
  generator: number[];
  order: number[];
  cursor: number;
  losses: number[];
}

/** Reads and checks a checkpoint's `state.json` (field by field, against the folder's step and the data's length). */
export function readTrainState(file: string, step: number, length: number): TrainState {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  const st = raw as Record<string, unknown>;
  const bad = (field: string, want: string): never => {
    throw new ConfigError(`${file}: "${field}" should be ${want}, got ${JSON.stringify(st?.[field])?.slice(0, 60)}`);
  };
  const isInt = (v: unknown, lo: number, hi: number) =>
    Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
  if (!st || typeof st !== "object") bad("state", "an object");
  if (st.step !== step) bad("step", `${step} (the folder's step)`);
  const gen = st.generator;
  if (
    !Array.isArray(gen) ||
    gen.length !== 5 ||
    !gen.slice(0, 4).every((x) => isInt(x, -0x80000000, 0xffffffff)) ||
    !(gen[4] === null || typeof gen[4] === "number")
  )
    bad("generator", "four 32-bit integers and a spare value (null or a number)");
  if (
    !Array.isArray(st.order) ||
    !st.order.every((x) => isInt(x, 0, length - 1)) ||
    (st.order.length !== 0 && st.order.length !== length)
  )
    bad("order", `a permutation of the ${length} training indices (did the data change?)`);
  if (!isInt(st.cursor, 0, (st.order as number[]).length)) bad("cursor", `an index into order`);
  if (
    !Array.isArray(st.losses) ||
    st.losses.length !== step ||
    !st.losses.every((x) => typeof x === "number" && Number.isFinite(x))
  )
    bad("losses", `${step} finite numbers`);
  return {
    step,
    generator: (gen as (number | null)[]).map((x) => (x === null ? NaN : x)),
    order: st.order as number[],
    cursor: st.cursor as number,
    losses: st.losses as number[],
  };
}
