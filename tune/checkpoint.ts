// resumable checkpoints: optimizer state as safetensors, checkpoint-<step> folders written atomically
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../engine/errors.ts";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import type { AdamState } from "../optim/index.ts";

/** Writes Adam's moments (keys `<group>.<param>.m|v`) with the step and groups in the metadata. */
export function writeOptimizerState(file: string, s: AdamState): void {
  const mom = new Map<string, { shape: number[]; data: Float32Array }>();
  s.moments.forEach((grp, gi) => grp.forEach((m, pi) => {
    mom.set(`${gi}.${pi}.m`, { shape: [m.m.length], data: Float32Array.from(m.m) });
    mom.set(`${gi}.${pi}.v`, { shape: [m.v.length], data: Float32Array.from(m.v) });
  }));
  writeSafetensors(file, mom, { metadata: { step: String(s.step), groups: JSON.stringify(s.groups) } });
}

/** Reads what {@link writeOptimizerState} wrote, shaped like `like` (the optimizer's current state). */
export function readOptimizerState(file: string, like: AdamState): AdamState {
  const { tensors, metadata } = readSafetensors(file);
  return {
    step: Number(metadata.step),
    groups: metadata.groups ? (JSON.parse(metadata.groups) as AdamState["groups"]) : like.groups,
    moments: like.moments.map((grp, gi) => grp.map((_, pi) => {
      const m = tensors.get(`${gi}.${pi}.m`), v = tensors.get(`${gi}.${pi}.v`);
      if (!m || !v) throw new ConfigError(`resume: ${file} lacks the moments of group ${gi} parameter ${pi}`);
      return { m: m.data, v: v.data };
    })),
  };
}

/** Steps of the `checkpoint-<step>` folders under `root`, newest first. */
export function checkpointSteps(root: string): number[] {
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => b - a);
}

/** The newest checkpoint folder under `root`, or null. */
export function latestCheckpointIn(root: string): { step: number; path: string } | null {
  const [s] = checkpointSteps(root);
  return s === undefined ? null : { step: s, path: path.join(root, `checkpoint-${s}`) };
}

/**
 * Writes `root/checkpoint-<step>`: `fill` writes into a temporary folder that is then renamed into
 * place, so a checkpoint is whole or absent; the `keep` newest checkpoints are kept.
 */
export function writeCheckpoint(root: string, step: number, fill: (dir: string) => void, keep = 2): string {
  fs.mkdirSync(root, { recursive: true });
  const final = path.join(root, `checkpoint-${step}`);
  const tmp = `${final}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  fill(tmp);
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  for (const s of checkpointSteps(root).slice(keep)) fs.rmSync(path.join(root, `checkpoint-${s}`), { recursive: true, force: true });
  return final;
}
