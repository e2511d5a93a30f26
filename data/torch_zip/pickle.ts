// The restricted pickle machine: protocol-2 opcodes building plain values and tensors from an allow-list of
// globals; storages decoded from their little-endian bytes.
import { f16ToF32 } from "../half.ts";
import { FormatError } from "../../engine/errors.ts";
import { PyTuple } from "./values.ts";
import type { PyValue, TorchTensor } from "./values.ts";

export const STORAGE_TYPES: Record<string, { dtype: TorchTensor["dtype"]; bytes: number }> = {
  FloatStorage: { dtype: "float32", bytes: 4 },
  HalfStorage: { dtype: "float16", bytes: 2 },
  BFloat16Storage: { dtype: "bfloat16", bytes: 2 },
  DoubleStorage: { dtype: "float64", bytes: 8 },
};

export function decode(b: Uint8Array, dtype: TorchTensor["dtype"], n: number): Float32Array | Float64Array {
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
  "collections OrderedDict",
  "torch._utils _rebuild_tensor_v2",
  "torch._utils _rebuild_parameter",
  ...Object.keys(STORAGE_TYPES).map((s) => `torch ${s}`),
]);

export function unpickle(
  bytes: Uint8Array,
  file: string,
  storage: (
    key: string,
    type: string,
    numel: number,
  ) => { dtype: TorchTensor["dtype"]; values: Float32Array | Float64Array },
  budget: { elements: number },
  maxDepth: number,
): PyValue {
  // a Buffer view of the same bytes (no copy) for its little- and big-endian readers
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
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
    if (!ALLOWED.has(`${module} ${name}`))
      fail(
        `refers to ${module}.${name}, which is not allowed (only tensors, storages and dicts are read; nothing in a checkpoint is executed)`,
      );
    return { kind: "global", module, name };
  };
  const setItems = (d: Item, items: Item[]) => {
    if (!(d instanceof Map)) fail("sets items on a non-dict");
    if (items.length % 2) fail("has an odd SETITEMS list");
    for (let i = 0; i < items.length; i += 2)
      (d as Map<PyValue, PyValue>).set(value(items[i]!, "a key"), value(items[i + 1]!, "a value"));
  };
  const int = (b: bigint): number | bigint =>
    b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  const asInts = (x: Item, what: string): number[] => {
    if (!Array.isArray(x) || !x.every((v) => typeof v === "number" && Number.isInteger(v) && v >= 0))
      fail(`has a ${what} that is not a tuple of non-negative integers`);
    return x as number[];
  };
  const call = (f: Item, args: Item): Item => {
    if (typeof f !== "object" || f === null || !("kind" in f) || f.kind !== "global")
      fail("calls something that is not an allowed global");
    if (!Array.isArray(args)) fail("calls with arguments that are not a tuple");
    const g = f as Global,
      a = args as Item[];
    const key = `${g.module} ${g.name}`;
    if (key === "collections OrderedDict") {
      if (a.length !== 0) fail("builds an OrderedDict with arguments");
      return new Map();
    }
    if (key === "torch._utils _rebuild_parameter") {
      if (!(a[0] && typeof a[0] === "object" && "kind" in a[0] && a[0].kind === "tensor"))
        fail("rebuilds a parameter from something that is not a tensor");
      return a[0]!;
    }
    if (key === "torch._utils _rebuild_tensor_v2") {
      const st = a[0];
      if (!(st && typeof st === "object" && "kind" in st && st.kind === "storage"))
        fail("rebuilds a tensor without a storage");
      const s = st as Storage,
        off = a[1],
        shape = asInts(a[2]!, "size"),
        stride = asInts(a[3]!, "stride");
      if (typeof off !== "number" || !Number.isInteger(off) || off < 0)
        fail("rebuilds a tensor at a bad storage offset");
      if (shape.length !== stride.length)
        fail(`rebuilds a tensor with size [${shape}] and stride [${stride}] of different ranks`);
      const numel = shape.reduce((x, y) => x * y, 1);
      let last = off as number;
      for (let i = 0; i < shape.length; i++) if (shape[i]! > 0) last += (shape[i]! - 1) * stride[i]!;
      if (numel > 0 && last >= s.values.length)
        fail(
          `has a tensor [${shape}] (offset ${String(off)}, stride [${stride}]) reaching past its storage of ${s.values.length} elements`,
        );
      if (numel > Math.max(1, s.values.length))
        fail(`has a tensor of ${numel} elements over a storage of ${s.values.length} (broadcast views are not read)`);
      budget.elements -= numel;
      if (budget.elements < 0) fail("holds more tensor elements than allowed");
      return {
        kind: "tensor",
        dtype: s.dtype,
        shape: [...shape],
        data: gatherStrided(s.values, off as number, shape, stride),
      };
    }
    return fail(`calls ${g.module}.${g.name}`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80:
        u8();
        break; // PROTO
      case 0x95:
        need(8);
        p += 8;
        break; // FRAME
      case 0x2e: {
        // STOP
        if (stack.length !== 1) fail(`stops with ${stack.length} items on the stack`);
        return plain(value(stack[0]!, "the result"), fail);
      }
      case 0x28: // MARK
        if (marks.length >= maxDepth) fail(`nests deeper than ${maxDepth}`);
        marks.push(stack.length);
        stack.push(MARK);
        break;
      case 0x7d:
        stack.push(new Map());
        break; // EMPTY_DICT
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x29:
        stack.push(new PyTuple());
        break; // EMPTY_TUPLE
      case 0x74:
        stack.push(PyTuple.from(popMark().map((x) => value(x, "a tuple item"))) as PyTuple);
        break; // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {
        // TUPLE1..3
        const n = op - 0x84;
        if (stack.length < n) fail("builds a tuple from too few items");
        stack.push(PyTuple.from(stack.splice(stack.length - n).map((x) => value(x, "a tuple item"))) as PyTuple);
        break;
      }
      case 0x6c:
        stack.push(popMark().map((x) => value(x, "a list item")));
        break; // LIST
      case 0x64: {
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      } // DICT
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x4b:
        stack.push(u8());
        break; // BININT1
      case 0x4d:
        stack.push(u16());
        break; // BININT2
      case 0x4a:
        stack.push(i32());
        break; // BININT
      case 0x8a: {
        // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]!);
        if (n > 0 && buf[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(int(v));
        break;
      }
      case 0x49: {
        // INT (text)
        const s = line();
        stack.push(
          s === "01" ? true : s === "00" ? false : /^-?\d+$/.test(s) ? int(BigInt(s)) : fail(`has a bad INT "${s}"`),
        );
        break;
      }
      case 0x47:
        need(8);
        stack.push(buf.readDoubleBE(p));
        p += 8;
        break; // BINFLOAT
      case 0x58:
        stack.push(str(u32(), "utf8"));
        break; // BINUNICODE
      case 0x8c:
        stack.push(str(u8(), "utf8"));
        break; // SHORT_BINUNICODE
      case 0x8d: {
        need(8);
        const n = Number(buf.readBigUInt64LE(p));
        p += 8;
        stack.push(str(n, "utf8"));
        break;
      } // BINUNICODE8
      case 0x55:
        stack.push(str(u8(), "latin1"));
        break; // SHORT_BINSTRING
      case 0x54:
        stack.push(str(i32(), "latin1"));
        break; // BINSTRING
      case 0x63: {
        const module = line(),
          name = line();
        stack.push(global(module, name));
        break;
      } // GLOBAL
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(),
          module = pop();
        if (typeof name !== "string" || typeof module !== "string") fail("has a STACK_GLOBAL without names");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        const args = pop();
        const f = pop();
        stack.push(call(f, args));
        break;
      } // REDUCE
      case 0x81:
        fail("creates an object with NEWOBJ");
        break;
      case 0x62: {
        // BUILD: only a dict's attribute state (an OrderedDict's _metadata), which is dropped
        const state = pop();
        const obj = stack[stack.length - 1];
        if (!(obj instanceof Map) || !(state instanceof Map || state === null))
          fail("sets state on something other than a dict");
        break;
      }
      case 0x51: {
        // BINPERSID: ("storage", <torch.XStorage>, key, location, numel)
        const pid = pop();
        if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5)
          fail("has a persistent id that is not a storage");
        const t = (pid as Item[])[1] as Global;
        if (!t || typeof t !== "object" || !("kind" in t) || t.kind !== "global" || t.module !== "torch")
          fail("has a storage without a torch storage type");
        const key = (pid as Item[])[2],
          numel = (pid as Item[])[4];
        if (typeof key !== "string" || !/^[A-Za-z0-9_]+$/.test(key)) fail("has a storage with a bad key");
        if (typeof numel !== "number") fail(`has storage ${key as string} with a bad element count`);
        const s = storage(key as string, t.name, numel as number);
        stack.push({ kind: "storage", dtype: s.dtype, values: s.values });
        break;
      }
      case 0x71:
        memo.set(u8(), stack[stack.length - 1] ?? fail("memoizes an empty stack"));
        break; // BINPUT
      case 0x72:
        memo.set(u32(), stack[stack.length - 1] ?? fail("memoizes an empty stack"));
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, stack[stack.length - 1] ?? fail("memoizes an empty stack"));
        break; // MEMOIZE
      case 0x68:
      case 0x6a: {
        // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`reads memo ${k}, which was never set`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x73: {
        const v = pop(),
          k = pop();
        setItems(stack[stack.length - 1]!, [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(stack[stack.length - 1]!, items);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        const l = stack[stack.length - 1];
        if (!Array.isArray(l) || l instanceof PyTuple) fail("appends to a non-list");
        (l as PyValue[]).push(value(v, "a list item"));
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        const l = stack[stack.length - 1];
        if (!Array.isArray(l) || l instanceof PyTuple) fail("appends to a non-list");
        (l as PyValue[]).push(...items.map((x) => value(x, "a list item")));
        break;
      } // APPENDS
      case 0x30:
        pop();
        break; // POP
      case 0x32:
        stack.push(stack[stack.length - 1] ?? fail("duplicates an empty stack"));
        break; // DUP
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
    else if ((x as { kind?: string }).kind !== "tensor")
      fail(`leaves a ${(x as { kind?: string }).kind ?? "foreign object"} in the result`);
  }
  return root;
}

/** Contiguous copy of a strided view. */
function gatherStrided(
  src: Float32Array | Float64Array,
  off: number,
  shape: number[],
  stride: number[],
): Float32Array | Float64Array {
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
