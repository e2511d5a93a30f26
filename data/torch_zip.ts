// A restricted reader of PyTorch's zip checkpoints (torch.save since 1.6: `.bin`, `.pt`, `.ckpt`):
// the zip central directory, validated, and a pickle-opcode interpreter that builds plain values and
// tensors and never runs code. Only an allow-list of globals is accepted (OrderedDict, the tensor and
// parameter rebuild functions, the float storage types); any other global is refused by name.
//
// The format, as torch.save writes it: a zip archive of stored (uncompressed) entries under one folder
// `<name>/`: `data.pkl` (a protocol-2 pickle of the saved object), `data/<key>` (the raw little-endian
// bytes of each storage), `version`, and in newer releases `byteorder` and `.data/serialization_id`.
// In the pickle a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
// requires_grad, hooks)` where `storage` is a persistent id `("storage", <torch.XStorage>, key,
// location, numel)` resolved by BINPERSID; `_rebuild_parameter(tensor, requires_grad, hooks)` wraps a
// parameter; a state dict is `collections.OrderedDict` with its items and a `_metadata` BUILD state.
import * as fs from "node:fs";
import type { HostTensor } from "../engine/host.ts";
import { writeFileAtomic } from "./atomic.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";
import { FormatError } from "../engine/errors.ts";

/** A tensor read from a checkpoint: contiguous values (float32, or float64 for double storages). */
export interface TorchTensor {
  readonly kind: "tensor";
  /** the storage's dtype in the file */
  readonly dtype: "float32" | "float16" | "bfloat16" | "float64";
  readonly shape: number[];
  readonly data: Float32Array | Float64Array;
}

/** A Python tuple (a list is a plain array). */
export class PyTuple extends Array<PyValue> {}

/** What a checkpoint's pickle can hold here. Dicts keep their insertion order. */
export type PyValue = null | boolean | number | bigint | string | PyValue[] | PyTuple | Map<PyValue, PyValue> | TorchTensor;

export interface TorchZipOptions {
  /** refuse checkpoints whose tensors hold more elements than this in total (default 2^31) */
  maxElements?: number;
  /** refuse pickles nested deeper than this (default 256) */
  maxDepth?: number;
}

interface Entry {
  name: string;
  offset: number; // data start
  size: number;
}

const STORAGE_TYPES: Record<string, { dtype: TorchTensor["dtype"]; bytes: number }> = {
  FloatStorage: { dtype: "float32", bytes: 4 },
  HalfStorage: { dtype: "float16", bytes: 2 },
  BFloat16Storage: { dtype: "bfloat16", bytes: 2 },
  DoubleStorage: { dtype: "float64", bytes: 8 },
};

/**
 * What a file holds, from its first bytes: a bare pickle (torch.save before 1.6, pickle.dump), a zip
 * archive (PyTorch's format since 1.6), or neither (null).
 */
export function sniffTorchFile(file: string): "pickle" | "torch-zip" | null {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(4);
    const n = fs.readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x80 && b[1]! >= 2 && b[1]! <= 5) return "pickle";
    if (n >= 4 && b.readUInt32LE(0) === 0x04034b50) return "torch-zip";
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/** Whether `file` starts like a zip archive (PyTorch's format since 1.6). */
export function isTorchZip(file: string): boolean {
  return sniffTorchFile(file) === "torch-zip";
}

/**
 * Reads a PyTorch zip checkpoint without executing its pickle: the saved object as plain values,
 * with tensors as {@link TorchTensor}. Malformed or hostile files are a FormatError naming the file.
 */
export function readTorchZip(file: string, opts: TorchZipOptions = {}): PyValue {
  const fd = openOrFail(file);
  try {
    const size = fs.fstatSync(fd).size;
    const entries = centralDirectory(fd, size, file);
    const pkl = [...entries.values()].filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pkl.length !== 1) throw new FormatError(`${file}: expected one <archive>/data.pkl in the zip, found ${pkl.length}`);
    const root = pkl[0]!.name.slice(0, -"data.pkl".length);
    const order = entries.get(`${root}byteorder`);
    if (order && readEntry(fd, order, file).toString("latin1").trim() !== "little") throw new FormatError(`${file}: big-endian checkpoints are not read`);
    const storages = new Map<string, { dtype: TorchTensor["dtype"]; values: Float32Array | Float64Array }>();
    const budget = { elements: opts.maxElements ?? 2 ** 31 };
    const storage = (key: string, type: string, numel: number) => {
      const st = STORAGE_TYPES[type];
      if (!st) throw new FormatError(`${file}: storage type torch.${type} is not read (float32, float16, bfloat16 and float64 are)`);
      if (!Number.isInteger(numel) || numel < 0) throw new FormatError(`${file}: storage ${key} declares ${numel} elements`);
      const hit = storages.get(key);
      if (hit) return hit;
      const e = entries.get(`${root}data/${key}`);
      if (!e) throw new FormatError(`${file}: storage ${key} has no entry ${root}data/${key}`);
      if (numel * st.bytes > e.size) throw new FormatError(`${file}: storage ${key} declares ${numel} ${st.dtype} elements (${numel * st.bytes} bytes) but its entry holds ${e.size} bytes`);
      const s = { dtype: st.dtype, values: decode(readEntry(fd, { ...e, size: numel * st.bytes }, file), st.dtype, numel) };
      storages.set(key, s);
      return s;
    };
    return unpickle(readEntry(fd, pkl[0]!, file), file, storage, budget, opts.maxDepth ?? 256);
  } finally {
    fs.closeSync(fd);
  }
}

function openOrFail(file: string): number {
  try {
    return fs.openSync(file, "r");
  } catch (e) {
    throw new FormatError(`${file}: cannot open (${(e as Error).message})`);
  }
}

function readAt(fd: number, pos: number, n: number, file: string): Buffer {
  const b = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    const r = fs.readSync(fd, b, got, n - got, pos + got);
    if (r === 0) throw new FormatError(`${file}: truncated (wanted ${n} bytes at ${pos})`);
    got += r;
  }
  return b;
}

function readEntry(fd: number, e: Entry, file: string): Buffer {
  return readAt(fd, e.offset, e.size, file);
}

/** The zip's entries by name, validated: stored (not compressed), in bounds, not overlapping, safe names. */
function centralDirectory(fd: number, size: number, file: string): Map<string, Entry> {
  if (size < 22) throw new FormatError(`${file}: not a zip archive (${size} bytes)`);
  const tailLen = Math.min(size, 22 + 65535);
  const tail = readAt(fd, size - tailLen, tailLen, file);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) throw new FormatError(`${file}: no zip end-of-central-directory record (truncated or not a zip)`);
  let count = tail.readUInt16LE(eocd + 10), cdSize = tail.readUInt32LE(eocd + 12), cdOff = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOff === 0xffffffff) {
    // zip64: the locator sits just before the end record
    const loc = eocd - 20;
    if (loc < 0 || tail.readUInt32LE(loc) !== 0x07064b50) throw new FormatError(`${file}: zip64 end record locator missing`);
    const recOff = Number(tail.readBigUInt64LE(loc + 8));
    if (recOff + 56 > size) throw new FormatError(`${file}: zip64 end record out of bounds`);
    const rec = readAt(fd, recOff, 56, file);
    if (rec.readUInt32LE(0) !== 0x06064b50) throw new FormatError(`${file}: zip64 end record missing`);
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdOff = Number(rec.readBigUInt64LE(48));
  }
  if (cdOff + cdSize > size || count * 46 > cdSize) throw new FormatError(`${file}: central directory (${count} entries, ${cdSize} bytes at ${cdOff}) does not fit the ${size}-byte file`);
  const cd = readAt(fd, cdOff, cdSize, file);
  const out = new Map<string, Entry>();
  const spans: [number, number, string][] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw new FormatError(`${file}: central directory entry ${i} is damaged`);
    const method = cd.readUInt16LE(p + 10);
    let comp = cd.readUInt32LE(p + 20), raw = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28), extraLen = cd.readUInt16LE(p + 30), commentLen = cd.readUInt16LE(p + 32);
    let local = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw new FormatError(`${file}: central directory entry ${i} overruns the directory`);
    const name = cd.toString("utf8", p + 46, p + 46 + nameLen);
    // zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in order
    for (let x = p + 46 + nameLen; x + 4 <= p + 46 + nameLen + extraLen;) {
      const id = cd.readUInt16LE(x), len = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const next = () => {
          if (q + 8 > x + 4 + len) throw new FormatError(`${file}: zip64 field of ${name} is short`);
          const v = Number(cd.readBigUInt64LE(q));
          q += 8;
          return v;
        };
        if (raw === 0xffffffff) raw = next();
        if (comp === 0xffffffff) comp = next();
        if (local === 0xffffffff) local = next();
      }
      x += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;
    if (name.split("/").some((s) => s === "..") || name.startsWith("/") || name.includes("\\") || name.includes("\0")) throw new FormatError(`${file}: unsafe entry name "${name}"`);
    if (method !== 0) throw new FormatError(`${file}: entry ${name} is compressed (method ${method}); PyTorch stores entries uncompressed`);
    if (comp !== raw) throw new FormatError(`${file}: entry ${name} has compressed size ${comp} but size ${raw}`);
    if (local + 30 > cdOff) throw new FormatError(`${file}: entry ${name} starts outside the archive`);
    const lh = readAt(fd, local, 30, file);
    if (lh.readUInt32LE(0) !== 0x04034b50) throw new FormatError(`${file}: entry ${name} has no local header`);
    const start = local + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    if (start + raw > cdOff) throw new FormatError(`${file}: entry ${name} (${raw} bytes at ${start}) runs past the archive`);
    if (out.has(name)) throw new FormatError(`${file}: entry ${name} appears twice`);
    out.set(name, { name, offset: start, size: raw });
    spans.push([local, start + raw, name]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) if (spans[i]![0] < spans[i - 1]![1]) throw new FormatError(`${file}: entries ${spans[i - 1]![2]} and ${spans[i]![2]} overlap`);
  return out;
}

function decode(b: Buffer, dtype: TorchTensor["dtype"], n: number): Float32Array | Float64Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dtype === "float64") {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
    return out;
  }
  const out = new Float32Array(n);
  if (dtype === "float32") for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (dtype === "bfloat16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16;
  } else for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(2 * i, true));
  return out;
}

// ---- the pickle machine

const MARK = Symbol("mark");
type Global = { kind: "global"; module: string; name: string };
type Storage = { kind: "storage"; dtype: TorchTensor["dtype"]; values: Float32Array | Float64Array };
type Item = PyValue | Global | Storage | typeof MARK;

const ALLOWED = new Set([
  "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
  ...Object.keys(STORAGE_TYPES).map((s) => `torch ${s}`),
]);

function unpickle(
  buf: Buffer, file: string, storage: (key: string, type: string, numel: number) => { dtype: TorchTensor["dtype"]; values: Float32Array | Float64Array },
  budget: { elements: number }, maxDepth: number,
): PyValue {
  const stack: Item[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Item>();
  let p = 0;
  const fail = (msg: string): never => {
    throw new FormatError(`${file}: data.pkl ${msg} (at byte ${p})`);
  };
  const need = (n: number) => {
    if (p + n > buf.length) fail("is truncated");
  };
  const u8 = () => (need(1), buf[p++]!);
  const u16 = () => (need(2), (p += 2), buf.readUInt16LE(p - 2));
  const u32 = () => (need(4), (p += 4), buf.readUInt32LE(p - 4));
  const i32 = () => (need(4), (p += 4), buf.readInt32LE(p - 4));
  const str = (n: number, enc: BufferEncoding) => (need(n), (p += n), buf.toString(enc, p - n, p));
  const line = () => {
    const e = buf.indexOf(0x0a, p);
    if (e < 0) fail("has an unterminated line");
    const s = buf.toString("latin1", p, e);
    p = e + 1;
    return s;
  };
  const pop = (): Item => (stack.length === 0 ? fail("pops an empty stack") : stack.pop()!);
  const popMark = (): Item[] => {
    const m = marks.pop();
    if (m === undefined) fail("has no MARK to pop to");
    const items = stack.splice(m!);
    if (items[0] !== MARK) fail("lost its MARK");
    return items.slice(1);
  };
  // containers may hold globals and storages while the pickle runs (a persistent id, a call's
  // arguments); the result is checked for them at STOP
  const value = (x: Item, what: string): PyValue => {
    if (x === MARK) fail(`uses a MARK as ${what}`);
    return x as PyValue;
  };
  const global = (module: string, name: string): Global => {
    if (!ALLOWED.has(`${module} ${name}`)) fail(`refers to ${module}.${name}, which is not allowed (only tensors, storages and dicts are read; nothing in a checkpoint is executed)`);
    return { kind: "global", module, name };
  };
  const setItems = (d: Item, items: Item[]) => {
    if (!(d instanceof Map)) fail("sets items on a non-dict");
    if (items.length % 2) fail("has an odd SETITEMS list");
    for (let i = 0; i < items.length; i += 2) (d as Map<PyValue, PyValue>).set(value(items[i]!, "a key"), value(items[i + 1]!, "a value"));
  };
  const int = (b: bigint): number | bigint => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b);
  const asInts = (x: Item, what: string): number[] => {
    if (!Array.isArray(x) || !x.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0)) fail(`has a ${what} that is not a tuple of non-negative integers`);
    return x as number[];
  };
  const call = (f: Item, args: Item): Item => {
    if (typeof f !== "object" || f === null || !("kind" in f) || f.kind !== "global") fail("calls something that is not an allowed global");
    if (!Array.isArray(args)) fail("calls with arguments that are not a tuple");
    const g = f as Global, a = args as Item[];
    const key = `${g.module} ${g.name}`;
    if (key === "collections OrderedDict") {
      if (a.length !== 0) fail("builds an OrderedDict with arguments");
      return new Map();
    }
    if (key === "torch._utils _rebuild_parameter") {
      if (!(a[0] && typeof a[0] === "object" && "kind" in a[0] && a[0].kind === "tensor")) fail("rebuilds a parameter from something that is not a tensor");
      return a[0]!;
    }
    if (key === "torch._utils _rebuild_tensor_v2") {
      const st = a[0];
      if (!(st && typeof st === "object" && "kind" in st && st.kind === "storage")) fail("rebuilds a tensor without a storage");
      const s = st as Storage, off = a[1], shape = asInts(a[2]!, "size"), stride = asInts(a[3]!, "stride");
      if (typeof off !== "number" || !Number.isInteger(off) || off < 0) fail("rebuilds a tensor at a bad storage offset");
      if (shape.length !== stride.length) fail(`rebuilds a tensor with size [${shape}] and stride [${stride}] of different ranks`);
      const numel = shape.reduce((x, y) => x * y, 1);
      let last = off as number;
      for (let i = 0; i < shape.length; i++) if (shape[i]! > 0) last += (shape[i]! - 1) * stride[i]!;
      if (numel > 0 && last >= s.values.length) fail(`has a tensor [${shape}] (offset ${String(off)}, stride [${stride}]) reaching past its storage of ${s.values.length} elements`);
      if (numel > Math.max(1, s.values.length)) fail(`has a tensor of ${numel} elements over a storage of ${s.values.length} (broadcast views are not read)`);
      budget.elements -= numel;
      if (budget.elements < 0) fail("holds more tensor elements than allowed");
      return { kind: "tensor", dtype: s.dtype, shape: [...shape], data: gatherStrided(s.values, off as number, shape, stride) };
    }
    return fail(`calls ${g.module}.${g.name}`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME
      case 0x2e: { // STOP
        if (stack.length !== 1) fail(`stops with ${stack.length} items on the stack`);
        return plain(value(stack[0]!, "the result"), fail);
      }
      case 0x28: // MARK
        if (marks.length >= maxDepth) fail(`nests deeper than ${maxDepth}`);
        marks.push(stack.length);
        stack.push(MARK);
        break;
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push(new PyTuple()); break; // EMPTY_TUPLE
      case 0x74: stack.push(PyTuple.from(popMark().map((x) => value(x, "a tuple item"))) as PyTuple); break; // TUPLE
      case 0x85: case 0x86: case 0x87: { // TUPLE1..3
        const n = op - 0x84;
        if (stack.length < n) fail("builds a tuple from too few items");
        stack.push(PyTuple.from(stack.splice(stack.length - n).map((x) => value(x, "a tuple item"))) as PyTuple);
        break;
      }
      case 0x6c: stack.push(popMark().map((x) => value(x, "a list item"))); break; // LIST
      case 0x64: { const d = new Map(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x8a: { // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]!);
        if (n > 0 && buf[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(int(v));
        break;
      }
      case 0x49: { // INT (text)
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : /^-?\d+$/.test(s) ? int(BigInt(s)) : fail(`has a bad INT "${s}"`));
        break;
      }
      case 0x47: need(8); stack.push(buf.readDoubleBE(p)); p += 8; break; // BINFLOAT
      case 0x58: stack.push(str(u32(), "utf8")); break; // BINUNICODE
      case 0x8c: stack.push(str(u8(), "utf8")); break; // SHORT_BINUNICODE
      case 0x8d: { need(8); const n = Number(buf.readBigUInt64LE(p)); p += 8; stack.push(str(n, "utf8")); break; } // BINUNICODE8
      case 0x55: stack.push(str(u8(), "latin1")); break; // SHORT_BINSTRING
      case 0x54: stack.push(str(i32(), "latin1")); break; // BINSTRING
      case 0x63: { const module = line(), name = line(); stack.push(global(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof name !== "string" || typeof module !== "string") fail("has a STACK_GLOBAL without names");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const f = pop(); stack.push(call(f, args)); break; } // REDUCE
      case 0x81: fail("creates an object with NEWOBJ"); break;
      case 0x62: { // BUILD: only a dict's attribute state (an OrderedDict's _metadata), which is dropped
        const state = pop();
        const obj = stack[stack.length - 1];
        if (!(obj instanceof Map) || !(state instanceof Map || state === null)) fail("sets state on something other than a dict");
        break;
      }
      case 0x51: { // BINPERSID: ("storage", <torch.XStorage>, key, location, numel)
        const pid = pop();
        if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) fail("has a persistent id that is not a storage");
        const t = (pid as Item[])[1] as Global;
        if (!t || typeof t !== "object" || !("kind" in t) || t.kind !== "global" || t.module !== "torch") fail("has a storage without a torch storage type");
        const key = (pid as Item[])[2], numel = (pid as Item[])[4];
        if (typeof key !== "string" || !/^[A-Za-z0-9_]+$/.test(key)) fail("has a storage with a bad key");
        if (typeof numel !== "number") fail(`has storage ${key as string} with a bad element count`);
        const s = storage(key as string, t.name, numel as number);
        stack.push({ kind: "storage", dtype: s.dtype, values: s.values });
        break;
      }
      case 0x71: memo.set(u8(), stack[stack.length - 1] ?? fail("memoizes an empty stack")); break; // BINPUT
      case 0x72: memo.set(u32(), stack[stack.length - 1] ?? fail("memoizes an empty stack")); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, stack[stack.length - 1] ?? fail("memoizes an empty stack")); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`reads memo ${k}, which was never set`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x73: { const v = pop(), k = pop(); setItems(stack[stack.length - 1]!, [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(stack[stack.length - 1]!, items); break; } // SETITEMS
      case 0x61: { const v = pop(); const l = stack[stack.length - 1]; if (!Array.isArray(l) || l instanceof PyTuple) fail("appends to a non-list"); (l as PyValue[]).push(value(v, "a list item")); break; } // APPEND
      case 0x65: { const items = popMark(); const l = stack[stack.length - 1]; if (!Array.isArray(l) || l instanceof PyTuple) fail("appends to a non-list"); (l as PyValue[]).push(...items.map((x) => value(x, "a list item"))); break; } // APPENDS
      case 0x30: pop(); break; // POP
      case 0x32: stack.push(stack[stack.length - 1] ?? fail("duplicates an empty stack")); break; // DUP
      default:
        fail(`uses opcode 0x${op.toString(16)} ("${String.fromCharCode(op)}"), which is not read`);
    }
  }
}

/** Checks that the result holds only plain values and tensors (no global, no bare storage); cycles are fine. */
function plain(root: PyValue, fail: (m: string) => never): PyValue {
  const seen = new Set<object>();
  const todo: unknown[] = [root];
  while (todo.length > 0) {
    const x = todo.pop();
    if (x === null || typeof x !== "object" || seen.has(x)) continue;
    seen.add(x);
    if (x instanceof Map) for (const [k, v] of x) todo.push(k, v);
    else if (Array.isArray(x)) todo.push(...x);
    else if ((x as { kind?: string }).kind !== "tensor") fail(`leaves a ${(x as { kind?: string }).kind ?? "foreign object"} in the result`);
  }
  return root;
}

/** Contiguous copy of a strided view. */
function gatherStrided(src: Float32Array | Float64Array, off: number, shape: number[], stride: number[]): Float32Array | Float64Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = src instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  let pos = off;
  for (let i = 0; i < n; i++) {
    out[i] = src[pos]!;
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      pos += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      pos -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

// ---- writing (what torch.save writes, for tests and for handing deltas to PyTorch users)

/** A tensor to write: float32 values, stored as `dtype` (float32 default; float16/bfloat16 round to nearest even). */
export interface TorchTensorInput extends HostTensor<ArrayLike<number>> {
  kind: "tensor";
  dtype?: "float32" | "float16" | "bfloat16";
}

/** What {@link writeTorchZip} can write: dicts (Maps; `ordered` ones as collections.OrderedDict), lists, tuples, strings, numbers, booleans, None, tensors. */
export type PyInput = null | boolean | number | string | PyInput[] | PyTuple | Map<string | number, PyInput> | TorchTensorInput;

/**
 * Writes `value` the way torch.save does (zip of stored entries: `<name>/data.pkl` as a protocol-2
 * pickle with one persistent storage per tensor, `<name>/data/<key>`, `<name>/version`,
 * `<name>/byteorder`), so `torch.load(file)` reads it; `ordered` Maps are written as OrderedDict.
 */
export function writeTorchZip(file: string, value: PyInput, opts: { name?: string; ordered?: ReadonlySet<object> } = {}): void {
  const name = opts.name ?? "archive";
  const storages: Buffer[] = [];
  const out: number[] = [];
  const bytes = (...b: number[]) => out.push(...b);
  const u32 = (n: number) => bytes(n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255);
  const text = (s: string) => {
    const b = Buffer.from(s, "utf8");
    bytes(0x58);
    u32(b.length);
    for (const x of b) out.push(x);
  };
  const int = (n: number) => {
    if (n >= 0 && n < 256) bytes(0x4b, n);
    else if (n >= -(2 ** 31) && n < 2 ** 31) { bytes(0x4a); u32(n >>> 0); }
    else {
      let v = BigInt(n);
      const b: number[] = [];
      while (v !== 0n && v !== -1n) { b.push(Number(v & 255n)); v >>= 8n; }
      if (b.length === 0 || ((b[b.length - 1]! & 0x80) !== 0) !== n < 0) b.push(n < 0 ? 255 : 0);
      bytes(0x8a, b.length, ...b);
    }
  };
  const global = (module: string, n: string) => {
    bytes(0x63);
    for (const c of Buffer.from(`${module}\n${n}\n`, "latin1")) out.push(c);
  };
  const emit = (v: PyInput): void => {
    if (v === null) bytes(0x4e);
    else if (v === true) bytes(0x88);
    else if (v === false) bytes(0x89);
    else if (typeof v === "number") {
      if (Number.isInteger(v)) int(v);
      else { const b = Buffer.alloc(8); b.writeDoubleBE(v); bytes(0x47, ...b); }
    } else if (typeof v === "string") text(v);
    else if (v instanceof PyTuple) { bytes(0x28); v.forEach((x) => emit(x as PyInput)); bytes(0x74); }
    else if (Array.isArray(v)) { bytes(0x5d, 0x28); v.forEach(emit); bytes(0x65); }
    else if (v instanceof Map) {
      if (opts.ordered?.has(v)) { global("collections", "OrderedDict"); bytes(0x29, 0x52); } else bytes(0x7d);
      if (v.size > 0) { bytes(0x28); for (const [k, x] of v) { emit(k); emit(x); } bytes(0x75); }
    } else {
      const t = v, dtype = t.dtype ?? "float32", n = t.shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== n) throw new FormatError(`writeTorchZip: tensor [${t.shape}] has ${t.data.length} values`);
      const item = dtype === "float32" ? 4 : 2, b = Buffer.alloc(n * item);
      const f = new Float32Array(1), u = new Uint32Array(f.buffer);
      for (let i = 0; i < n; i++) {
        if (dtype === "float32") b.writeFloatLE(t.data[i]!, 4 * i);
        else if (dtype === "bfloat16") { f[0] = t.data[i]!; const x = u[0]!; b.writeUInt16LE(Number.isNaN(f[0]) ? 0x7fc0 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff, 2 * i); }
        else b.writeUInt16LE(f32ToF16(Math.fround(t.data[i]!)), 2 * i);
      }
      const key = String(storages.length);
      storages.push(b);
      const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, c) => a * c, 1));
      global("torch._utils", "_rebuild_tensor_v2");
      bytes(0x28, 0x28);
      text("storage");
      global("torch", dtype === "float32" ? "FloatStorage" : dtype === "float16" ? "HalfStorage" : "BFloat16Storage");
      text(key);
      text("cpu");
      int(n);
      bytes(0x74, 0x51);
      int(0);
      emit(PyTuple.from(t.shape) as PyTuple);
      emit(PyTuple.from(strides) as PyTuple);
      bytes(0x89);
      global("collections", "OrderedDict");
      bytes(0x29, 0x52, 0x74, 0x52);
    }
  };
  bytes(0x80, 2);
  emit(value);
  bytes(0x2e);
  const entries: [string, Buffer][] = [[`${name}/data.pkl`, Buffer.from(out)], ...storages.map((b, i): [string, Buffer] => [`${name}/data/${i}`, b]), [`${name}/version`, Buffer.from("3\n")], [`${name}/byteorder`, Buffer.from("little")]];
  writeFileAtomic(file, zipStored(entries));
}

/** A zip of stored entries (CRC-32 filled in), data aligned to 64 bytes as PyTorch aligns it. */
export function zipStored(entries: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const parts: Uint8Array[] = [], central: Uint8Array[] = [];
  let off = 0;
  for (const [name, data] of entries) {
    const nb = Buffer.from(name, "utf8");
    const pad = (64 - ((off + 30 + nb.length + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0xcafe, 0);
    extra.writeUInt16LE(pad, 2);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(data.length, 22); lh.writeUInt16LE(nb.length, 26); lh.writeUInt16LE(extra.length, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(data.length, 24); ch.writeUInt16LE(nb.length, 28); ch.writeUInt32LE(off, 42);
    central.push(ch, nb);
    parts.push(lh, nb, extra, data);
    off += 30 + nb.length + extra.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(off, 16);
  return Buffer.concat([...parts, cd, end]);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
