// Writing PyTorch checkpoints (what torch.save writes): for tests and for handing deltas to PyTorch users.
import type { HostTensor } from "../../engine/host.ts";
import { writeFileAtomic } from "../atomic.ts";
import { f32ToF16 } from "../half.ts";
import { FormatError } from "../../engine/errors.ts";
import { PyTuple } from "./values.ts";
import { zipStored } from "./zip.ts";

// ---- writing (what torch.save writes, for tests and for handing deltas to PyTorch users)

/** A tensor to write: float32 values, stored as `dtype` (float32 default; float16/bfloat16 round to nearest even). */
export interface TorchTensorInput extends HostTensor<ArrayLike<number>> {
  kind: "tensor";
  dtype?: "float32" | "float16" | "bfloat16";
}

/** What {@link writeTorchZip} can write: dicts (Maps; `ordered` ones as collections.OrderedDict), lists, tuples, strings, numbers, booleans, None, tensors. */
export type PyInput =
  null | boolean | number | string | PyInput[] | PyTuple | Map<string | number, PyInput> | TorchTensorInput;

/**
 * Writes `value` the way torch.save does (zip of stored entries: `<name>/data.pkl` as a protocol-2
 * pickle with one persistent storage per tensor, `<name>/data/<key>`, `<name>/version`,
 * `<name>/byteorder`), so `torch.load(file)` reads it; `ordered` Maps are written as OrderedDict.
 */
export function writeTorchZip(
  file: string,
  value: PyInput,
  opts: { name?: string; ordered?: ReadonlySet<object> } = {},
): void {
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
    else if (n >= -(2 ** 31) && n < 2 ** 31) {
      bytes(0x4a);
      u32(n >>> 0);
    } else {
      let v = BigInt(n);
      const b: number[] = [];
      while (v !== 0n && v !== -1n) {
        b.push(Number(v & 255n));
        v >>= 8n;
      }
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
      else {
        const b = Buffer.alloc(8);
        b.writeDoubleBE(v);
        bytes(0x47, ...b);
      }
    } else if (typeof v === "string") text(v);
    else if (v instanceof PyTuple) {
      bytes(0x28);
      v.forEach((x) => emit(x as PyInput));
      bytes(0x74);
    } else if (Array.isArray(v)) {
      bytes(0x5d, 0x28);
      v.forEach(emit);
      bytes(0x65);
    } else if (v instanceof Map) {
      if (opts.ordered?.has(v)) {
        global("collections", "OrderedDict");
        bytes(0x29, 0x52);
      } else bytes(0x7d);
      if (v.size > 0) {
        bytes(0x28);
        for (const [k, x] of v) {
          emit(k);
          emit(x);
        }
        bytes(0x75);
      }
    } else {
      const t = v,
        dtype = t.dtype ?? "float32",
        n = t.shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== n) throw new FormatError(`writeTorchZip: tensor [${t.shape}] has ${t.data.length} values`);
      const item = dtype === "float32" ? 4 : 2,
        b = Buffer.alloc(n * item);
      const f = new Float32Array(1),
        u = new Uint32Array(f.buffer);
      for (let i = 0; i < n; i++) {
        if (dtype === "float32") b.writeFloatLE(t.data[i]!, 4 * i);
        else if (dtype === "bfloat16") {
          f[0] = t.data[i]!;
          const x = u[0]!;
          b.writeUInt16LE(Number.isNaN(f[0]) ? 0x7fc0 : ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff, 2 * i);
        } else b.writeUInt16LE(f32ToF16(Math.fround(t.data[i]!)), 2 * i);
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
  const entries: [string, Buffer][] = [
    [`${name}/data.pkl`, Buffer.from(out)],
    ...storages.map((b, i): [string, Buffer] => [`${name}/data/${i}`, b]),
    [`${name}/version`, Buffer.from("3\n")],
    [`${name}/byteorder`, Buffer.from("little")],
  ];
  writeFileAtomic(file, zipStored(entries));
}
