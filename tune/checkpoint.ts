// resumable checkpoints: optimizer state as safetensors, checkpoint-<step> folders written atomically with
// a manifest of checksums, and the newest intact one found on resume
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, FormatError } from "../engine/errors.ts";
import type { HostTensor } from "../engine/host.ts";
import { replaceDir, writeJsonAtomic } from "../data/atomic.ts";
import { readSafetensors, writeSafetensors } from "../data/safetensors.ts";
import type { AdamState } from "../optim/index.ts";

/** Writes Adam's moments (keys `<group>.<param>.m|v`) with the step and groups in the metadata. */
export function writeOptimizerState(file: string, s: AdamState): void {
  const mom = new Map<string, HostTensor>();
  s.moments.forEach((grp, gi) =>
    grp.forEach((m, pi) => {
      mom.set(`${gi}.${pi}.m`, { shape: [m.m.length], data: Float32Array.from(m.m) });
      mom.set(`${gi}.${pi}.v`, { shape: [m.v.length], data: Float32Array.from(m.v) });
    }),
  );
  writeSafetensors(file, mom, { metadata: { step: String(s.step), groups: JSON.stringify(s.groups) } });
}

/** Reads what {@link writeOptimizerState} wrote, shaped like `like` (the optimizer's current state). */
export function readOptimizerState(file: string, like: AdamState): AdamState {
  const { tensors, metadata } = readSafetensors(file);
  const step = Number(metadata.step);
  if (!Number.isSafeInteger(step) || step < 0)
    throw new FormatError(`resume: ${file}: metadata step ${JSON.stringify(metadata.step)} is not a step count`);
  return {
    step,
    groups: metadata.groups ? (JSON.parse(metadata.groups) as AdamState["groups"]) : like.groups,
    moments: like.moments.map((grp, gi) =>
      grp.map((_, pi) => {
        const m = tensors.get(`${gi}.${pi}.m`),
          v = tensors.get(`${gi}.${pi}.v`);
        if (!m || !v) throw new ConfigError(`resume: ${file} lacks the moments of group ${gi} parameter ${pi}`);
        const n = like.moments[gi]![pi]!.m.length;
        if (m.data.length !== n || v.data.length !== n)
          throw new FormatError(
            `resume: ${file}: the moments of group ${gi} parameter ${pi} hold ${m.data.length} values, the model's parameter ${n}`,
          );
        return { m: m.data, v: v.data };
      }),
    ),
  };
}

/** Steps of the `checkpoint-<step>` folders under `root`, newest first. */
export function checkpointSteps(root: string): number[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => !!m)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a);
}

/** The newest checkpoint folder under `root`, or null. */
export function latestCheckpointIn(root: string): { step: number; path: string } | null {
  const [s] = checkpointSteps(root);
  return s === undefined ? null : { step: s, path: path.join(root, `checkpoint-${s}`) };
}

/** The manifest every checkpoint ends with: size and sha256 of each of its files. */
export const CHECKPOINT_MANIFEST = "manifest.json";

function sha256File(file: string): string {
  const h = createHash("sha256");
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

/**
 * Writes `root/checkpoint-<step>`: `fill` writes into a temporary folder, a manifest of the files'
 * sizes and checksums is added last, and the folder is renamed into place, so a checkpoint is whole or
 * absent; the `keep` newest checkpoints are kept.
 */
export function writeCheckpoint(root: string, step: number, fill: (dir: string) => void, keep = 2): string {
  const final = replaceDir(path.join(root, `checkpoint-${step}`), (tmp) => {
    fill(tmp);
    const files: Record<string, { bytes: number; sha256: string }> = {};
    for (const n of fs.readdirSync(tmp).sort()) {
      const p = path.join(tmp, n);
      if (fs.statSync(p).isFile()) files[n] = { bytes: fs.statSync(p).size, sha256: sha256File(p) };
    }
    writeJsonAtomic(path.join(tmp, CHECKPOINT_MANIFEST), { step, files });
  });
  for (const s of checkpointSteps(root).slice(keep))
    fs.rmSync(path.join(root, `checkpoint-${s}`), { recursive: true, force: true });
  return final;
}

/**
 * Checks a checkpoint folder against its manifest (every file present, same size and checksum);
 * throws FormatError naming the first problem. A checkpoint from before manifests were written is
 * only checked for `required` files.
 */
export function verifyCheckpoint(dir: string, required: readonly string[] = []): void {
  for (const r of required) if (!fs.existsSync(path.join(dir, r))) throw new FormatError(`${dir}: ${r} is missing`);
  const mf = path.join(dir, CHECKPOINT_MANIFEST);
  if (!fs.existsSync(mf)) return;
  let m: { files?: Record<string, { bytes: number; sha256: string }> };
  try {
    m = JSON.parse(fs.readFileSync(mf, "utf8")) as typeof m;
  } catch {
    throw new FormatError(`${mf} is not valid JSON`);
  }
  if (!m || typeof m.files !== "object" || m.files === null) throw new FormatError(`${mf} lists no files`);
  for (const [n, want] of Object.entries(m.files)) {
    const p = path.join(dir, n);
    if (!fs.existsSync(p)) throw new FormatError(`${dir}: ${n} is missing`);
    const size = fs.statSync(p).size;
    if (size !== want.bytes)
      throw new FormatError(`${dir}: ${n} is ${size} bytes, the manifest says ${want.bytes} (truncated?)`);
    if (sha256File(p) !== want.sha256) throw new FormatError(`${dir}: ${n} does not match its checksum`);
  }
}

/**
 * Loads the newest checkpoint under `root` that `load` accepts (it should verify and parse everything
 * before changing any state, throwing on damage); damaged newer ones are skipped and reported through
 * `log`. Returns null when there is no checkpoint; throws ConfigError listing the reasons when none is intact.
 */
export function loadNewestIntact<T>(
  root: string,
  load: (dir: string, step: number) => T,
  log: (line: string) => void,
): { step: number; path: string; value: T } | null {
  const steps = checkpointSteps(root);
  if (steps.length === 0) return null;
  const bad: string[] = [];
  for (const s of steps) {
    const dir = path.join(root, `checkpoint-${s}`);
    try {
      const value = load(dir, s);
      if (bad.length)
        log(`resume: skipped damaged ${bad.join("; ")}; resuming from the newest intact checkpoint, checkpoint-${s}`);
      return { step: s, path: dir, value };
    } catch (e) {
      bad.push(`checkpoint-${s} (${(e as Error).message.replace(/\s*\n\s*/g, " ")})`);
    }
  }
  throw new ConfigError(`resume: no intact checkpoint in ${root}: ${bad.join("; ")}; remove the folder to start over`);
}
