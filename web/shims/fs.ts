// Browser stand-in for node:fs: an in-memory file system (files and folders in Maps), enough for the
// library's loaders and writers (pipeline folders, safetensors, images, atomic delta writes) to run
// unchanged in a worker. The page puts fetched files in with `vfsPut` and reads written ones back.
import { Buffer } from "./buffer.ts";
import { normalize, dirname } from "./path.ts";

const files = new Map<string, Uint8Array>();
const dirs = new Set<string>(["/"]);
const fds = new Map<number, { path: string; chunks: Uint8Array[] }>();
let nextFd = 3;

function err(code: string, op: string, p: string): Error {
  const e = new Error(`${code}: ${op} '${p}' (in-memory file system of the page)`) as Error & { code: string };
  e.code = code;
  return e;
}
const abs = (p: string | URL): string =>
  normalize(typeof p === "string" ? (p.startsWith("/") ? p : "/" + p) : p.pathname);
function ensureParents(p: string): void {
  for (let d = dirname(p); !dirs.has(d); d = dirname(d)) dirs.add(d);
}

/** Puts a file (its folders are created). */
export function vfsPut(p: string, bytes: Uint8Array): void {
  const a = abs(p);
  ensureParents(a);
  files.set(a, bytes);
}
/** The files under a folder, by path. */
export function vfsList(prefix: string): Map<string, Uint8Array> {
  const a = abs(prefix) + "/";
  return new Map([...files].filter(([k]) => k.startsWith(a)));
}
export function vfsRemoveTree(p: string): void {
  rmSync(p, { recursive: true, force: true });
}

class Stats {
  constructor(
    private readonly file: boolean,
    readonly size: number,
  ) {}
  isFile(): boolean {
    return this.file;
  }
  isDirectory(): boolean {
    return !this.file;
  }
  isSymbolicLink(): boolean {
    return false;
  }
  mtimeMs = 0;
  mode = 0o644;
}
export type { Stats };

export function existsSync(p: string | URL): boolean {
  const a = abs(p);
  return files.has(a) || dirs.has(a);
}
export function statSync(p: string | URL, opts?: { throwIfNoEntry?: boolean }): Stats | undefined {
  const a = abs(p);
  if (files.has(a)) return new Stats(true, files.get(a)!.length);
  if (dirs.has(a)) return new Stats(false, 0);
  if (opts?.throwIfNoEntry === false) return undefined;
  throw err("ENOENT", "stat", a);
}
export const lstatSync = statSync;
export function realpathSync(p: string): string {
  if (!existsSync(p)) throw err("ENOENT", "realpath", p);
  return abs(p);
}
export function readFileSync(p: string | URL | number, enc?: string | { encoding?: string }): Buffer | string {
  const a = typeof p === "number" ? (fds.get(p)?.path ?? "") : abs(p);
  const b = files.get(a);
  if (!b) throw err(dirs.has(a) ? "EISDIR" : "ENOENT", "open", a);
  const e = typeof enc === "string" ? enc : enc?.encoding;
  const buf = Buffer.from(b);
  return e ? buf.toString(e) : buf;
}
export function writeFileSync(p: string | number, data: string | Uint8Array): void {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
  if (typeof p === "number") {
    const f = fds.get(p);
    if (!f) throw err("EBADF", "write", String(p));
    f.chunks.push(bytes);
    return;
  }
  const a = abs(p);
  if (!dirs.has(dirname(a))) throw err("ENOENT", "open", a);
  files.set(a, bytes);
}
export function mkdirSync(p: string, opts?: { recursive?: boolean }): void {
  const a = abs(p);
  if (files.has(a)) throw err("EEXIST", "mkdir", a);
  if (dirs.has(a)) {
    if (opts?.recursive) return;
    throw err("EEXIST", "mkdir", a);
  }
  if (!opts?.recursive && !dirs.has(dirname(a))) throw err("ENOENT", "mkdir", a);
  ensureParents(a);
  dirs.add(a);
}
export function readdirSync(p: string, opts?: { withFileTypes?: boolean }): unknown[] {
  const a = abs(p);
  if (!dirs.has(a)) throw err("ENOENT", "scandir", a);
  const pre = a === "/" ? "/" : a + "/";
  const names = new Map<string, boolean>();
  for (const k of files.keys())
    if (k.startsWith(pre) && !k.slice(pre.length).includes("/")) names.set(k.slice(pre.length), true);
  for (const k of dirs)
    if (k !== a && k.startsWith(pre) && !k.slice(pre.length).includes("/")) names.set(k.slice(pre.length), false);
  const sorted = [...names.keys()].sort();
  if (opts?.withFileTypes)
    return sorted.map((name) => ({
      name,
      isFile: () => names.get(name)!,
      isDirectory: () => !names.get(name),
      isSymbolicLink: () => false,
    }));
  return sorted;
}
export function rmSync(p: string, opts?: { recursive?: boolean; force?: boolean }): void {
  const a = abs(p);
  if (files.delete(a)) return;
  if (dirs.has(a)) {
    if (!opts?.recursive) throw err("EISDIR", "rm", a);
    for (const k of [...files.keys()]) if (k.startsWith(a + "/")) files.delete(k);
    for (const k of [...dirs]) if (k === a || k.startsWith(a + "/")) dirs.delete(k);
    return;
  }
  if (!opts?.force) throw err("ENOENT", "rm", a);
}
export function unlinkSync(p: string): void {
  const a = abs(p);
  if (!files.delete(a)) throw err("ENOENT", "unlink", a);
}
export function rmdirSync(p: string): void {
  dirs.delete(abs(p));
}
export function renameSync(from: string, to: string): void {
  const a = abs(from),
    b = abs(to);
  if (files.has(a)) {
    if (dirs.has(b)) throw err("EISDIR", "rename", b);
    files.set(b, files.get(a)!);
    files.delete(a);
    return;
  }
  if (!dirs.has(a)) throw err("ENOENT", "rename", a);
  if (dirs.has(b)) rmSync(b, { recursive: true });
  for (const k of [...dirs])
    if (k === a || k.startsWith(a + "/")) {
      dirs.delete(k);
      dirs.add(b + k.slice(a.length));
    }
  for (const [k, v] of [...files])
    if (k.startsWith(a + "/")) {
      files.delete(k);
      files.set(b + k.slice(a.length), v);
    }
}
export function openSync(p: string, flags = "r"): number {
  const a = abs(p);
  if (flags.startsWith("r")) {
    if (!files.has(a)) throw err("ENOENT", "open", a);
  } else {
    if (flags.includes("x") && files.has(a)) throw err("EEXIST", "open", a);
    if (!dirs.has(dirname(a))) throw err("ENOENT", "open", a);
    files.set(a, new Uint8Array(0));
  }
  const fd = nextFd++;
  fds.set(fd, { path: a, chunks: [] });
  return fd;
}
export function writeSync(fd: number, data: string | Uint8Array, ...rest: unknown[]): number {
  const f = fds.get(fd);
  if (!f) throw err("EBADF", "write", String(fd));
  let bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  if (typeof data !== "string" && typeof rest[0] === "number")
    bytes = data.subarray(rest[0], rest[0] + ((rest[1] as number | undefined) ?? data.length - rest[0]));
  f.chunks.push(new Uint8Array(bytes));
  return bytes.length;
}
export function readSync(fd: number, buf: Uint8Array, offset: number, length: number, position: number | null): number {
  const f = fds.get(fd);
  if (!f) throw err("EBADF", "read", String(fd));
  const b = files.get(f.path)!;
  const pos = position ?? 0;
  const n = Math.max(0, Math.min(length, b.length - pos));
  buf.set(b.subarray(pos, pos + n), offset);
  return n;
}
export function fstatSync(fd: number): Stats {
  const f = fds.get(fd);
  if (!f) throw err("EBADF", "fstat", String(fd));
  return statSync(f.path)!;
}
export function fsyncSync(fd: number): void {
  flush(fd);
}
function flush(fd: number): void {
  const f = fds.get(fd);
  if (!f || f.chunks.length === 0) return;
  const old = files.get(f.path) ?? new Uint8Array(0);
  const out = new Uint8Array(old.length + f.chunks.reduce((s, c) => s + c.length, 0));
  out.set(old);
  let o = old.length;
  for (const c of f.chunks) {
    out.set(c, o);
    o += c.length;
  }
  files.set(f.path, out);
  f.chunks = [];
}
export function closeSync(fd: number): void {
  flush(fd);
  fds.delete(fd);
}
export default {
  existsSync,
  statSync,
  lstatSync,
  realpathSync,
  readFileSync,
  writeFileSync,
  mkdirSync,
  readdirSync,
  rmSync,
  unlinkSync,
  rmdirSync,
  renameSync,
  openSync,
  writeSync,
  readSync,
  fstatSync,
  fsyncSync,
  closeSync,
};
