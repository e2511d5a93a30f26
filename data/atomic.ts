// Writing files so that nothing is lost and nothing is half-written: one temporary-file naming
// scheme, atomic single files, several files of one folder committed as one unit (a journal written
// last, rolled forward by readers and by the next writer), whole folders replaced by rename, stale
// temporaries of dead processes removed, output folders checked before any long work.
//
// Temporary names: `.<name>.<pid>.<random>.tmp` (and `.old` for a folder being replaced), in the
// folder of the file they become, so the final rename never crosses a file system.
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, FormatError } from "../engine/errors.ts";

/** Hook for tests: names each point at which a write could be interrupted (see {@link crashPoint}). */
export const crashHooks: { trace?: (point: string) => void } = {};

/**
 * A named point of a multi-step write. With `CDIFF_CRASH_AT=<point>` in the environment the process
 * kills itself there (SIGKILL, no cleanup), which is how the tests interrupt a writer at each step.
 */
export function crashPoint(point: string): void {
  crashHooks.trace?.(point);
  if (process.env.CDIFF_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}

/** A temporary path beside `file`: `.<name>.<pid>.<random>.<ext>`. */
export function tempPath(file: string, ext: "tmp" | "old" = "tmp"): string {
  return path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 10) || "0"}.${ext}`,
  );
}

/** What a file is written from: bytes, text, or a function that writes to an open descriptor. */
export type FileContent = Uint8Array | string | ((fd: number) => void);

/** Writes all of `data` to the open descriptor `fd` (in requests of at most 1 GiB). */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, Math.min(1 << 30, data.length - done));
}

/** Writes `content` to a new file at `file` (which must not exist), flushed to disk; removes it on failure. */
function writeNew(file: string, content: FileContent): void {
  let fd: number | undefined = fs.openSync(file, "wx");
  try {
    if (typeof content === "function") content(fd);
    else writeAll(fd, typeof content === "string" ? Buffer.from(content, "utf8") : content);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
  } catch (e) {
    if (fd !== undefined)
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing */
      }
    try {
      fs.unlinkSync(file);
    } catch {
      /* nothing to remove */
    }
    throw e;
  }
}

/** Flushes a folder's entries (the renames in it) to disk where the platform allows; best effort. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // not supported here (Windows) or not needed
  } finally {
    if (fd !== undefined)
      try {
        fs.closeSync(fd);
      } catch {
        /* ignore */
      }
  }
}

/**
 * Writes a file atomically: a temporary file in the same folder is written and flushed, then renamed
 * over `file`. A failure or a kill leaves the old file (or none) and at most a temporary, which
 * {@link cleanStaleTemps} removes later.
 */
export function writeFileAtomic(file: string, content: FileContent): void {
  const tmp = tempPath(file);
  writeNew(tmp, content);
  crashPoint(`atomic:written:${path.basename(file)}`);
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* nothing to remove */
    }
    throw e;
  }
}

/** Writes pretty-printed JSON atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n");
}

// ---------------------------------------------------------------------------------------------
// several files of one folder as one unit

/** Name of the journal a unit commit writes once all its new files are complete. */
export const COMMIT_JOURNAL = ".cdiff-commit.json";

interface Journal {
  files: { tmp: string; name: string }[];
  remove: string[];
}

const plainName = (s: unknown): s is string =>
  typeof s === "string" && s.length > 0 && s !== "." && s !== ".." && !/[\\/]/.test(s);

function readJournal(dir: string): Journal | null {
  const p = path.join(dir, COMMIT_JOURNAL);
  let text: string;
  try {
    text = fs.readFileSync(p, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new FormatError(`${p}: commit journal is not valid JSON`);
  }
  const o = j as Journal;
  if (
    !o ||
    !Array.isArray(o.files) ||
    !Array.isArray(o.remove) ||
    !o.files.every((f) => f && plainName(f.tmp) && plainName(f.name)) ||
    !o.remove.every(plainName)
  ) {
    throw new FormatError(`${p}: commit journal is malformed`);
  }
  return o;
}

/**
 * Replaces a set of files in `dir` as one unit: every new file is written to a temporary first; then
 * a journal listing the renames (and the names to remove: `remove(name)` is asked for each current
 * entry not among the new files) is written atomically; then the renames and removals run and the
 * journal goes. Interrupted before the journal exists, the folder still reads as before (the
 * temporaries are ignored and cleaned later); after, it reads as the new set ({@link committedPath}),
 * and the next writer finishes the job ({@link recoverCommit}).
 */
export function commitFiles(
  dir: string,
  files: ReadonlyMap<string, FileContent>,
  remove: (name: string) => boolean = () => false,
): void {
  fs.mkdirSync(dir, { recursive: true });
  recoverCommit(dir);
  const written: { tmp: string; name: string }[] = [];
  try {
    for (const [name, content] of files) {
      if (!plainName(name)) throw new ConfigError(`commitFiles: "${name}" is not a plain file name`);
      const tmp = tempPath(path.join(dir, name));
      writeNew(tmp, content);
      written.push({ tmp: path.basename(tmp), name });
      crashPoint(`commit:temp:${name}`);
    }
  } catch (e) {
    for (const w of written)
      try {
        fs.unlinkSync(path.join(dir, w.tmp));
      } catch {
        /* gone */
      }
    throw e;
  }
  const drop = fs.readdirSync(dir).filter((n) => !files.has(n) && !n.startsWith(".") && remove(n));
  writeJsonAtomic(path.join(dir, COMMIT_JOURNAL), { files: written, remove: drop } satisfies Journal);
  fsyncDir(dir);
  crashPoint("commit:journal");
  rollForward(dir, { files: written, remove: drop });
}

function rollForward(dir: string, j: Journal): void {
  for (const f of j.files) {
    try {
      fs.renameSync(path.join(dir, f.tmp), path.join(dir, f.name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e; // already renamed
    }
    crashPoint(`commit:rename:${f.name}`);
  }
  for (const n of j.remove) {
    fs.rmSync(path.join(dir, n), { recursive: true, force: true });
    crashPoint(`commit:remove:${n}`);
  }
  fsyncDir(dir);
  crashPoint("commit:done");
  fs.rmSync(path.join(dir, COMMIT_JOURNAL), { force: true });
}

/** Finishes a unit commit that was interrupted after its journal was written; true when there was one. */
export function recoverCommit(dir: string): boolean {
  const j = readJournal(dir);
  if (!j) return false;
  rollForward(dir, j);
  return true;
}

/**
 * The names in `dir` as of its last complete unit commit, without writing anything: a pending
 * journal's new files are in, its removed names out; temporaries are never listed.
 */
export function committedNames(dir: string): string[] {
  const j = readJournal(dir);
  const names = new Set(fs.readdirSync(dir).filter((n) => n !== COMMIT_JOURNAL && !isTempName(n)));
  if (j) {
    for (const n of j.remove) names.delete(n);
    for (const f of j.files)
      if (fs.existsSync(path.join(dir, f.tmp)) || fs.existsSync(path.join(dir, f.name))) names.add(f.name);
  }
  return [...names].sort();
}

/** Where `dir/name` is to be read as of the last complete unit commit (a pending temporary, or the file itself); null when absent. */
export function committedPath(dir: string, name: string): string | null {
  const j = readJournal(dir);
  if (j) {
    if (j.remove.includes(name)) return null;
    const f = j.files.find((x) => x.name === name);
    if (f && fs.existsSync(path.join(dir, f.tmp))) return path.join(dir, f.tmp);
  }
  const p = path.join(dir, name);
  return fs.existsSync(p) ? p : null;
}

// ---------------------------------------------------------------------------------------------
// whole folders

/**
 * Writes the folder `final` as one unit: `fill` writes into a temporary folder beside it, which is
 * renamed into place (an existing `final` is moved aside first and removed after). Returns `final`.
 */
export function replaceDir(final: string, fill: (dir: string) => void): string {
  fs.mkdirSync(path.dirname(final), { recursive: true });
  const tmp = tempPath(final);
  fs.mkdirSync(tmp);
  try {
    fill(tmp);
    fsyncDir(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  crashPoint(`dir:filled:${path.basename(final)}`);
  let old: string | null = null;
  if (fs.existsSync(final)) {
    old = tempPath(final, "old");
    fs.renameSync(final, old);
    crashPoint(`dir:moved-aside:${path.basename(final)}`);
  }
  fs.renameSync(tmp, final);
  fsyncDir(path.dirname(final));
  if (old) fs.rmSync(old, { recursive: true, force: true });
  return final;
}

// ---------------------------------------------------------------------------------------------
// stale temporaries

const TEMP = /^\.(.+)\.(\d+)\.[a-z0-9]+\.(tmp|old)$/;
const LEGACY_TEMPS = [/^(.+)\.(\d+)\.tmp$/, /^(checkpoint-\d+)\.tmp-(\d+)$/];

/** Whether `name` is one of the temporary names this project writes (current or older schemes). */
export function isTempName(name: string): boolean {
  return TEMP.test(name) || LEGACY_TEMPS.some((r) => r.test(name));
}

/** Whether process `pid` is running (another user's process counts as running). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the temporaries that processes no longer running left in `dir` (and in `also`, sub-folders
 * of it): first an interrupted unit commit is finished, then `.x.<pid>.*.tmp` files and folders whose
 * process is gone are removed, and a folder moved aside as `.x.<pid>.*.old` is put back when `x` is
 * missing. `ownToo` treats this process's own temporaries as stale (right at start, before it wrote
 * any). Returns the names removed.
 */
export function cleanStaleTemps(dir: string, opts: { ownToo?: boolean; also?: readonly string[] } = {}): string[] {
  const removed: string[] = [];
  for (const d of [dir, ...(opts.also ?? []).map((s) => path.join(dir, s))]) {
    if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) continue;
    try {
      recoverCommit(d);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      fs.rmSync(path.join(d, COMMIT_JOURNAL), { force: true }); // written atomically, so a bad one is not ours
    }
    for (const name of fs.readdirSync(d)) {
      let m = TEMP.exec(name);
      let base: string,
        pid: number,
        kind = "tmp";
      if (m) [base, pid, kind] = [m[1]!, Number(m[2]), m[3]!];
      else {
        m = LEGACY_TEMPS.map((r) => r.exec(name)).find((x) => x) ?? null;
        if (!m) continue;
        [base, pid] = [m[1]!, Number(m[2])];
      }
      if (pidAlive(pid) && !(opts.ownToo && pid === process.pid)) continue;
      const p = path.join(d, name);
      if (kind === "old" && !fs.existsSync(path.join(d, base))) fs.renameSync(p, path.join(d, base));
      else fs.rmSync(p, { recursive: true, force: true });
      removed.push(path.join(path.relative(dir, d), name));
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// output folders

const SYSTEM_FS = /^\/(proc|sys|dev)(\/|$)/;

function describe(e: unknown): string {
  const x = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EROFS: "read-only file system",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    ENOSPC: "no space left on the device",
    EDQUOT: "disk quota exceeded",
    ENOTDIR: "a part of the path is a file",
    EEXIST: "exists",
    ENAMETOOLONG: "name too long",
    ELOOP: "too many symbolic links",
  };
  return x.code ? `${x.code}: ${why[x.code] ?? x.message}` : String((e as Error).message ?? e);
}

/**
 * Makes sure `dir` is a folder this process can write, before any long work: refuses paths on
 * /proc, /sys and /dev (where a recursive mkdir can loop forever), creates the missing folders one
 * by one, writes and removes a probe file, and removes stale temporaries (see {@link cleanStaleTemps};
 * `also` names sub-folders to clean too). `label` names the folder in errors ("--out", "output folder").
 * Throws ConfigError naming the folder and the reason. Returns the absolute path.
 */
export function prepareOutputDir(
  dir: string,
  label = "output folder",
  opts: { also?: readonly string[] } = {},
): string {
  if (typeof dir !== "string" || dir.length === 0) throw new ConfigError(`${label}: no folder given`);
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let p = abs;
  let st: fs.Stats;
  for (;;) {
    try {
      st = fs.statSync(p);
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR")
        throw new ConfigError(`${label} ${dir}: cannot use it (${describe(e)} at ${p})`);
      const up = path.dirname(p);
      if (up === p) throw new ConfigError(`${label} ${dir}: no part of the path exists`);
      missing.unshift(path.basename(p));
      p = up;
    }
  }
  if (!st.isDirectory()) throw new ConfigError(`${label} ${dir}: ${p} is a file, not a folder`);
  const real = fs.realpathSync(p);
  if (SYSTEM_FS.test(real))
    throw new ConfigError(
      `${label} ${dir}: ${real} is on a system file system (/proc, /sys, /dev); choose a folder on disk`,
    );
  for (const m of missing) {
    p = path.join(p, m);
    try {
      fs.mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST")
        throw new ConfigError(`${label} ${dir}: cannot create ${p} (${describe(e)})`);
    }
  }
  if (!fs.statSync(abs).isDirectory()) throw new ConfigError(`${label} ${dir}: it is a file, not a folder`);
  const probe = tempPath(path.join(abs, ".cdiff-write-test"));
  try {
    fs.writeFileSync(probe, "probe");
    fs.unlinkSync(probe);
  } catch (e) {
    try {
      fs.unlinkSync(probe);
    } catch {
      /* not created */
    }
    throw new ConfigError(`${label} ${dir} is not writable (${describe(e)}); choose another folder`);
  }
  cleanStaleTemps(abs, { ownToo: false, ...(opts.also ? { also: opts.also } : {}) });
  return abs;
}
