// Tests of the safetensors reader/writer: half-precision conversions, round trips, hand-built
// files, and a FormatError/DTypeError for each kind of corrupt or hostile file.

import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DTypeError, FormatError, ShapeError } from "../../engine/errors.ts";
import {
  bf16ToF32,
  f16ToF32,
  f32ToF16,
  parseSafetensorsHeader,
  readSafetensors,
  readSafetensorsFloat64,
  readSafetensorsHeader,
  serializeSafetensors,
  writeSafetensors,
} from "../../data/safetensors.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "safetensors-test-"));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Builds a file by hand: 8-byte length (or `len` instead), header text, data bytes. */
function build(header: unknown, data: Uint8Array = new Uint8Array(0), len?: bigint): Uint8Array {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const h = enc.encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

function put(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

/** Asserts that `fn` throws an instance of `Err` whose message contains every fragment. */
function throwsWith(fn: () => unknown, Err: new (m: string) => Error, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected ${Err.name}, nothing was thrown`);
  assert.instance(caught, Err, `expected ${Err.name}, got ${String(caught)}`);
  const msg = (caught as Error).message;
  for (const f of fragments) assert.ok(msg.includes(f), `message ${JSON.stringify(msg)} lacks ${JSON.stringify(f)}`);
}

/** A valid two-tensor F32 file: "a" [2,2] then "b" [3]. */
function validFile(): Uint8Array {
  return build(
    {
      a: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [3], data_offsets: [16, 28] },
    },
    f32Bytes([1, 2, 3, 4, 5, 6, 7]),
  );
}

// ---------------------------------------------------------------------------------------------
// conversions

test("f32ToF16 gives the exact binary16 bits of known values", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [65519.99, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // halfway, ties to even -> overflows to infinity
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [0, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [1e10, 0x7c00],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [1 + 2 ** -11, 0x3c00], // tie between 0x3C00 and 0x3C01 -> even 0x3C00
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3C01 and 0x3C02 -> even 0x3C02
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
    [2049, 0x6800], // tie between 2048 and 2050 -> 2048
    [2051, 0x6802], // tie between 2050 and 2052 -> 2052
    [2 ** -25, 0x0000], // subnormal tie between 0 and 1 -> 0
    [3 * 2 ** -25, 0x0002], // subnormal tie between 1 and 2 -> 2
    [5 * 2 ** -25, 0x0002], // subnormal tie between 2 and 3 -> 2
    [2 ** -26, 0x0000], // underflows to zero
    [-(2 ** -26), 0x8000], // keeps the sign
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up from subnormal into the smallest normal
    [2047.5, 0x6800], // 2047.5 is a tie between 2047 and 2048 -> even mantissa 2048
  ];
  for (const [x, bits] of cases) {
    assert.is(f32ToF16(x), bits, `f32ToF16(${x}) = 0x${f32ToF16(x).toString(16)}, want 0x${bits.toString(16)}`);
  }
  const nan = f32ToF16(NaN);
  assert.is(nan & 0x7c00, 0x7c00, "NaN keeps an all-ones exponent");
  assert.ok((nan & 0x3ff) !== 0, "NaN has a non-zero mantissa");
});

test("f32ToF16 rounds a float64 once (no double rounding through float32)", () => {
  // 1 + 2^-11 + 2^-40 rounds to float32 as 1 + 2^-11 (a tie, which would go to 0x3C00),
  // but the exact value is above the tie and must give 0x3C01.
  const x = 1 + 2 ** -11 + 2 ** -40;
  assert.is(f32ToF16(Math.fround(x)), 0x3c00);
  assert.is(f32ToF16(x), 0x3c01);
});

test("f16ToF32 decodes known bits and round-trips all 65536 patterns", () => {
  assert.is(f16ToF32(0x3c00), 1);
  assert.is(f16ToF32(0x7bff), 65504);
  assert.is(f16ToF32(0x0001), 2 ** -24);
  assert.is(f16ToF32(0x03ff), 2 ** -14 - 2 ** -24);
  assert.is(f16ToF32(0x0400), 2 ** -14);
  assert.is(f16ToF32(0xc000), -2);
  assert.is(f16ToF32(0x2e66), 0.0999755859375);
  assert.ok(Object.is(f16ToF32(0x8000), -0), "0x8000 is -0");
  assert.ok(Object.is(f16ToF32(0x0000), 0), "0x0000 is +0");
  assert.is(f16ToF32(0x7c00), Infinity);
  assert.is(f16ToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.ok(Number.isNaN(f16ToF32(0xfc01)));
  let checked = 0;
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    if (Number.isNaN(v)) continue;
    assert.is(Math.fround(v), v, `0x${h.toString(16)} is exactly a float32`);
    if (f32ToF16(v) !== h) assert.unreachable(`0x${h.toString(16)} -> ${v} -> 0x${f32ToF16(v).toString(16)}`);
    checked++;
  }
  assert.is(checked, 65536 - 2 * 1023);
});

test("bf16ToF32 decodes known bits", () => {
  assert.is(bf16ToF32(0x3f80), 1);
  assert.is(bf16ToF32(0xc000), -2);
  assert.is(bf16ToF32(0x3e20), 0.15625);
  assert.is(bf16ToF32(0x7f80), Infinity);
  assert.ok(Object.is(bf16ToF32(0x8000), -0));
  assert.ok(Number.isNaN(bf16ToF32(0x7fc0)));
});

// ---------------------------------------------------------------------------------------------
// round trips and layout

test("F32 round trip keeps shapes, values and metadata", () => {
  const p = path.join(dir, "rt32.safetensors");
  const w = new Float32Array([1.5, -2.25, Math.fround(0.1), 3e-40, -0, Infinity]);
  const b = new Float32Array([42]);
  const e = new Float32Array(0);
  writeSafetensors(
    p,
    new Map([
      ["layer.weight", { shape: [2, 3], data: w }],
      ["layer.bias", { shape: [1], data: b }],
      ["empty", { shape: [0, 4], data: e }],
    ]),
    { metadata: { format: "pt", note: "custom diffusion" } },
  );
  const r = readSafetensors(p);
  assert.equal([...r.tensors.keys()].sort(), ["empty", "layer.bias", "layer.weight"]);
  assert.equal(r.tensors.get("layer.weight")!.shape, [2, 3]);
  assert.equal(r.tensors.get("empty")!.shape, [0, 4]);
  assert.is(r.tensors.get("empty")!.data.length, 0);
  const got = r.tensors.get("layer.weight")!.data;
  assert.instance(got, Float32Array);
  for (let i = 0; i < w.length; i++) assert.ok(Object.is(got[i], w[i]), `element ${i}: ${got[i]} vs ${w[i]}`);
  assert.equal([...r.tensors.get("layer.bias")!.data], [42]);
  assert.equal(r.metadata, { format: "pt", note: "custom diffusion" });
  // same bytes from a byte array
  const r2 = readSafetensors(new Uint8Array(fs.readFileSync(p)));
  assert.equal([...r2.tensors.get("layer.weight")!.data], [...got]);
});

test("written header is 8-byte aligned, space-padded, sorted, with contiguous offsets", () => {
  for (const name of ["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"]) {
    const bytes = serializeSafetensors({
      zz: { shape: [1], data: new Float32Array([1]) },
      [name]: { shape: [2], data: new Float32Array([2, 3]) },
    });
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    assert.is(n % 8, 0, `header length ${n} for key ${name}`);
    const text = dec.decode(bytes.subarray(8, 8 + n));
    assert.ok(/^\{.*\} *$/.test(text), text);
    const json = JSON.parse(text) as Record<string, { data_offsets: number[] }>;
    assert.equal(Object.keys(json), [name, "zz"]);
    assert.equal(json[name]!.data_offsets, [0, 8]);
    assert.equal(json["zz"]!.data_offsets, [8, 12]);
    assert.is(bytes.length, 8 + n + 12);
    const h = parseSafetensorsHeader(bytes);
    assert.is(h.dataStart, 8 + n);
  }
});

test("keys are sorted and __metadata__ is written only when given", () => {
  const bytes = serializeSafetensors({
    b: { shape: [1], data: new Float32Array([1]) },
    a: { shape: [1], data: new Float32Array([2]) },
  });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const json = JSON.parse(dec.decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  assert.equal(Object.keys(json), ["a", "b"]);
  assert.equal(readSafetensors(bytes).metadata, {});
  const withMeta = serializeSafetensors({ a: { shape: [], data: new Float32Array([7]) } }, { metadata: { k: "v" } });
  const n2 = Number(new DataView(withMeta.buffer).getBigUint64(0, true));
  const json2 = JSON.parse(dec.decode(withMeta.subarray(8, 8 + n2))) as Record<string, unknown>;
  assert.equal(json2["__metadata__"], { k: "v" });
  const r = readSafetensors(withMeta);
  assert.equal(r.tensors.get("a")!.shape, []);
  assert.equal([...r.tensors.get("a")!.data], [7]);
});

test("F16 round trip stores the exact binary16 bits", () => {
  const p = path.join(dir, "rt16.safetensors");
  const values = [1, 65504, 2 ** -24, -0, Infinity, -Infinity, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 0.1, 65520, NaN];
  const want = [0x3c00, 0x7bff, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x3c00, 0x3c02, 0x2e66, 0x7c00];
  writeSafetensors(p, { h: { shape: [values.length], data: new Float64Array(values) } }, { dtype: "F16" });
  const bytes = new Uint8Array(fs.readFileSync(p));
  const header = parseSafetensorsHeader(bytes);
  const e = header.tensors.get("h")!;
  assert.is(e.dtype, "F16");
  assert.equal([e.begin, e.end], [0, 2 * values.length]);
  const dv = new DataView(bytes.buffer, bytes.byteOffset + header.dataStart);
  for (let i = 0; i < want.length; i++) {
    const bits = dv.getUint16(2 * i, true);
    assert.is(bits, want[i], `element ${i}: 0x${bits.toString(16)} want 0x${want[i]!.toString(16)}`);
  }
  const nanBits = dv.getUint16(2 * (values.length - 1), true);
  assert.ok((nanBits & 0x7c00) === 0x7c00 && (nanBits & 0x3ff) !== 0, "NaN stays NaN");
  const got = readSafetensors(p).tensors.get("h")!.data;
  for (let i = 0; i < want.length; i++) assert.ok(Object.is(got[i], f16ToF32(want[i]!)), `read ${i}: ${got[i]}`);
  assert.ok(Number.isNaN(got[values.length - 1]));
  // serialize gives the same bytes as the file
  assert.equal(
    [...serializeSafetensors({ h: { shape: [values.length], data: new Float64Array(values) } }, { dtype: "F16" })],
    [...bytes],
  );
});

test("Float64 input is written as F32 and read back exactly by readSafetensorsFloat64", () => {
  const data = new Float64Array([0.1, 1 / 3, -7]);
  const bytes = serializeSafetensors({ x: { shape: [3], data } });
  const r32 = readSafetensors(bytes).tensors.get("x")!.data;
  assert.equal([...r32], [Math.fround(0.1), Math.fround(1 / 3), -7]);
  const r64 = readSafetensorsFloat64(bytes).tensors.get("x")!.data;
  assert.instance(r64, Float64Array);
  assert.equal([...r64], [Math.fround(0.1), Math.fround(1 / 3), -7]);
});

test("BF16 and F64 tensors are read from a hand-built file", () => {
  const bf = new Uint8Array(8);
  const dv = new DataView(bf.buffer);
  [0x3f80, 0xc000, 0x3e20, 0x7f80].forEach((b, i) => dv.setUint16(2 * i, b, true));
  const f64 = new Uint8Array(new Float64Array([0.1, -3]).buffer);
  const data = new Uint8Array(24);
  data.set(bf, 0);
  data.set(f64, 8);
  const file = build(
    {
      __metadata__: { source: "hand" },
      bf: { dtype: "BF16", shape: [2, 2], data_offsets: [0, 8] },
      d: { dtype: "F64", shape: [2], data_offsets: [8, 24] },
    },
    data,
  );
  const p = put("bf16.safetensors", file);
  for (const src of [file, p]) {
    const r = readSafetensors(src);
    assert.equal(r.tensors.get("bf")!.shape, [2, 2]);
    assert.equal([...r.tensors.get("bf")!.data], [1, -2, 0.15625, Infinity]);
    assert.equal([...r.tensors.get("d")!.data], [Math.fround(0.1), -3]);
    assert.equal(r.metadata, { source: "hand" });
  }
  assert.equal([...readSafetensorsFloat64(file).tensors.get("d")!.data], [0.1, -3]);
  assert.equal(
    [...readSafetensorsFloat64(p, { keys: ["bf", "d"] }).tensors.get("bf")!.data],
    [1, -2, 0.15625, Infinity],
  );
});

test("odd-aligned F16 data (header not padded) is read correctly", () => {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint16(0, 0x3c00, true);
  new DataView(data.buffer).setUint16(2, 0x4000, true);
  const file = build('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}} ', data); // 55-byte header
  assert.is(parseSafetensorsHeader(file).dataStart % 2, 1);
  assert.equal([...readSafetensors(file).tensors.get("h")!.data], [1, 2]);
});

test("a header padded with trailing spaces is accepted", () => {
  const file = build('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}       ', f32Bytes([9]));
  assert.equal([...readSafetensors(file).tensors.get("a")!.data], [9]);
});

test("a keys filter reads only those keys, in the order given", () => {
  const data = new Uint8Array(28 + 4);
  data.set(f32Bytes([1, 2, 3, 4, 5, 6, 7]));
  const file = build(
    {
      a: { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [3], data_offsets: [16, 28] },
      ints: { dtype: "I32", shape: [1], data_offsets: [28, 32] },
    },
    data,
  );
  const p = put("keys.safetensors", file);
  for (const src of [file, p]) {
    const r = readSafetensors(src, { keys: ["b", "a"] });
    assert.equal([...r.tensors.keys()], ["b", "a"]);
    assert.equal([...r.tensors.get("b")!.data], [5, 6, 7]);
    assert.equal([...r.tensors.get("a")!.data], [1, 2, 3, 4]);
    const only = readSafetensors(src, { keys: ["b"] });
    assert.equal([...only.tensors.keys()], ["b"]);
    // the unreadable I32 tensor is not touched unless asked for
    throwsWith(() => readSafetensors(src), DTypeError, "I32", '"ints"');
    throwsWith(() => readSafetensors(src, { keys: ["a", "missing"] }), FormatError, '"missing"');
  }
  throwsWith(() => readSafetensors(p, { keys: ["nope"] }), FormatError, p, '"nope"');
});

test("a file over 4 GiB is read tensor by tensor at 64-bit positions", () => {
  // sparse file: "a" at the start of the data, "b" about 5 GB in; a single-buffer read of the
  // whole file would exceed the typed-array limit and fail
  const far = 5_000_000_000;
  const header = enc.encode(
    JSON.stringify({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F16", shape: [2], data_offsets: [far, far + 4] },
    }),
  );
  const p = path.join(dir, "sparse.safetensors");
  const fd = fs.openSync(p, "w");
  try {
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    fs.writeSync(fd, len, 0, 8, 0);
    fs.writeSync(fd, header, 0, header.length, 8);
    fs.writeSync(fd, f32Bytes([3, -4]), 0, 8, 8 + header.length);
    fs.writeSync(fd, new Uint8Array([0x00, 0x3c, 0x00, 0xc0]), 0, 4, 8 + header.length + far);
  } finally {
    fs.closeSync(fd);
  }
  try {
    const st = fs.statSync(p);
    assert.is(st.size, 8 + header.length + far + 4);
    const r = readSafetensors(p);
    assert.equal([...r.tensors.get("a")!.data], [3, -4]);
    assert.equal([...r.tensors.get("b")!.data], [1, -2]);
  } finally {
    fs.rmSync(p);
  }
});

test("readSafetensorsHeader reads only the header of a file", () => {
  const p = put("header-only.safetensors", validFile());
  const h = readSafetensorsHeader(p);
  assert.equal([...h.tensors.keys()], ["a", "b"]);
  assert.equal(h.tensors.get("b"), { dtype: "F32", shape: [3], begin: 16, end: 28 });
});

// ---------------------------------------------------------------------------------------------
// writing errors and atomicity

test("writing rejects data that does not match the shape, leaving the old file intact", () => {
  const p = path.join(dir, "keep.safetensors");
  writeSafetensors(p, { a: { shape: [2], data: new Float32Array([1, 2]) } });
  const before = fs.readFileSync(p);
  throwsWith(
    () => writeSafetensors(p, { a: { shape: [3], data: new Float32Array([1, 2]) } }),
    ShapeError,
    '"a"',
    "[3]",
    "got 2",
  );
  throwsWith(() => writeSafetensors(p, { a: { shape: [-1], data: new Float32Array(0) } }), ShapeError, "[-1]");
  throwsWith(
    () => writeSafetensors(p, { __metadata__: { shape: [1], data: new Float32Array(1) } }),
    FormatError,
    "__metadata__",
  );
  assert.equal(fs.readFileSync(p), before);
  assert.equal(
    fs.readdirSync(dir).filter((f) => f.endsWith(".tmp")),
    [],
  );
});

test("a failed rename leaves no temporary file behind", () => {
  const sub = path.join(dir, "atomic");
  fs.mkdirSync(sub);
  const target = path.join(sub, "is-a-dir.safetensors");
  fs.mkdirSync(target);
  fs.writeFileSync(path.join(target, "inside"), "x"); // a non-empty directory cannot be replaced by rename
  let threw = false;
  try {
    writeSafetensors(target, { a: { shape: [1], data: new Float32Array([1]) } });
  } catch {
    threw = true;
  }
  assert.ok(threw, "writing over a directory fails");
  assert.equal(fs.readdirSync(sub), ["is-a-dir.safetensors"]);
});

test("writeSafetensors replaces an existing file", () => {
  const p = path.join(dir, "replace.safetensors");
  writeSafetensors(p, { a: { shape: [1], data: new Float32Array([1]) } });
  writeSafetensors(p, { b: { shape: [2], data: new Float32Array([3, 4]) } });
  const r = readSafetensors(p);
  assert.equal([...r.tensors.keys()], ["b"]);
  assert.equal([...r.tensors.get("b")!.data], [3, 4]);
});

// ---------------------------------------------------------------------------------------------
// corrupt and hostile files

test("file shorter than 8 bytes", () => {
  throwsWith(() => readSafetensors(new Uint8Array(5)), FormatError, "5 bytes", "shorter than the 8-byte");
  const p = put("short.safetensors", new Uint8Array(3));
  throwsWith(() => readSafetensors(p), FormatError, p, "3 bytes");
  const empty = put("empty.safetensors", new Uint8Array(0));
  throwsWith(() => readSafetensors(empty), FormatError, empty, "0 bytes");
});

test("header length larger than the file (lying or truncated)", () => {
  const file = build({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, f32Bytes([1]), 5000n);
  throwsWith(() => readSafetensors(file), FormatError, "header length 5000", `${file.length}-byte file`);
  const p = put("lying.safetensors", file);
  throwsWith(() => readSafetensors(p), FormatError, p, "header length 5000");
  // a file cut in the middle of its header
  const cut = put("cut-header.safetensors", validFile().subarray(0, 30));
  throwsWith(() => readSafetensors(cut), FormatError, cut, "30-byte file");
});

test("absurd header length (2^60) is rejected before any allocation", () => {
  const file = build("{}", new Uint8Array(0), 2n ** 60n);
  throwsWith(() => readSafetensors(file), FormatError, "header length 1152921504606846976", "limit");
  const p = put("absurd.safetensors", file);
  throwsWith(() => readSafetensors(p), FormatError, p, "1152921504606846976");
  // just over the 100 MB limit, claimed by a tiny file
  throwsWith(() => readSafetensors(build("{}", new Uint8Array(0), 100_000_001n)), FormatError, "100000001", "limit");
});

test("header that is not JSON, not UTF-8, or not an object", () => {
  const p = put("notjson.safetensors", build('{"a": {"dtype": "F32",'));
  throwsWith(() => readSafetensors(p), FormatError, p, "not valid JSON");
  throwsWith(() => readSafetensors(build("hello world")), FormatError, "not valid JSON", "hello");
  const bad = build("{}");
  const invalid = new Uint8Array([...bad.subarray(0, 8), 0xff, 0xfe]);
  new DataView(invalid.buffer).setBigUint64(0, 2n, true);
  throwsWith(() => readSafetensors(invalid), FormatError, "not valid UTF-8");
  throwsWith(() => readSafetensors(build("[1,2]")), FormatError, "not a JSON object", "[1,2]");
  throwsWith(() => readSafetensors(build("null")), FormatError, "not a JSON object", "null");
  throwsWith(() => readSafetensors(build('"x"')), FormatError, "not a JSON object");
});

test("entries with missing fields or wrong types", () => {
  const ok = { dtype: "F32", shape: [1], data_offsets: [0, 4] };
  const data = f32Bytes([1]);
  const cases: [unknown, string[]][] = [
    [{ a: 5 }, ['"a"', "not an object", "5"]],
    [{ a: { shape: [1], data_offsets: [0, 4] } }, ['"a"', "dtype", "undefined"]],
    [{ a: { ...ok, dtype: 4 } }, ['"a"', "dtype", "4"]],
    [{ a: { ...ok, dtype: "Q4" } }, ['"a"', "unknown dtype", '"Q4"']],
    [{ a: { dtype: "F32", data_offsets: [0, 4] } }, ['"a"', "shape undefined"]],
    [{ a: { ...ok, shape: "1" } }, ['"a"', 'shape "1"']],
    [{ a: { ...ok, shape: [-1] } }, ['"a"', "shape [-1]", "non-negative integers"]],
    [{ a: { ...ok, shape: [1.5] } }, ['"a"', "shape [1.5]"]],
    [{ a: { ...ok, shape: [null] } }, ['"a"', "shape [null]"]],
    [{ a: { dtype: "F32", shape: [1] } }, ['"a"', "data_offsets undefined"]],
    [{ a: { ...ok, data_offsets: [0] } }, ['"a"', "data_offsets [0]"]],
    [{ a: { ...ok, data_offsets: [0, 4, 8] } }, ['"a"', "data_offsets [0,4,8]"]],
    [{ a: { ...ok, data_offsets: [-4, 0] } }, ['"a"', "data_offsets [-4,0]"]],
    [{ a: { ...ok, data_offsets: ["0", "4"] } }, ['"a"', 'data_offsets ["0","4"]']],
    [{ a: ok, __metadata__: { n: 3 } }, ['__metadata__ value "n"', "not a string", "3"]],
    [{ a: ok, __metadata__: ["x"] }, ["__metadata__", "not an object", '["x"]']],
  ];
  for (const [header, fragments] of cases) {
    throwsWith(() => readSafetensors(build(header, data)), FormatError, ...fragments);
  }
  const p = put("fields.safetensors", build({ "a.weight": { ...ok, shape: [-2] } }, data));
  throwsWith(() => readSafetensors(p), FormatError, p, '"a.weight"', "[-2]");
});

test("data_offsets past the end of the data section", () => {
  const file = build({ a: { dtype: "F32", shape: [3, 4], data_offsets: [0, 48] } }, f32Bytes([1, 2, 3]));
  throwsWith(() => readSafetensors(file), FormatError, '"a"', "offsets [0, 48]", "12-byte data section");
  const p = put("past-end.safetensors", file);
  throwsWith(() => readSafetensors(p), FormatError, p, "offsets [0, 48]");
  // a valid file truncated inside its data
  const whole = validFile();
  const cut = put("cut-data.safetensors", whole.subarray(0, whole.length - 4));
  throwsWith(() => readSafetensors(cut), FormatError, cut, '"b"', "[16, 28]", "24-byte data section");
});

test("end before begin", () => {
  const file = build({ a: { dtype: "F32", shape: [1], data_offsets: [8, 4] } }, f32Bytes([1, 2, 3]));
  throwsWith(() => readSafetensors(file), FormatError, '"a"', "offsets [8, 4]", "end before");
});

test("overlapping tensors", () => {
  const file = build(
    {
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
    },
    f32Bytes([1, 2, 3]),
  );
  throwsWith(() => readSafetensors(file), FormatError, "overlap", '"a" [0, 8]', '"b" [4, 12]');
  const p = put("overlap.safetensors", file);
  throwsWith(() => readSafetensors(p), FormatError, p, "overlap");
  // identical ranges overlap too; empty tensors never do
  throwsWith(
    () =>
      readSafetensors(
        build(
          {
            a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
            b: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
          },
          f32Bytes([1]),
        ),
      ),
    FormatError,
    "overlap",
  );
  const empty = build(
    { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, e: { dtype: "F32", shape: [0], data_offsets: [4, 4] } },
    f32Bytes([1, 2]),
  );
  assert.equal([...readSafetensors(empty).tensors.get("a")!.data], [1, 2]);
});

test("byte count does not match shape and dtype", () => {
  const file = build({ "a.weight": { dtype: "F32", shape: [3, 4], data_offsets: [0, 40] } }, new Uint8Array(48));
  const p = put("model.safetensors", file);
  throwsWith(
    () => readSafetensors(p),
    FormatError,
    `safetensors: ${p}: tensor "a.weight" offsets [0, 40] hold 40 bytes but shape [3,4] of F32 needs 48`,
  );
  throwsWith(
    () => readSafetensors(build({ h: { dtype: "F16", shape: [3], data_offsets: [0, 12] } }, new Uint8Array(12))),
    FormatError,
    "hold 12 bytes",
    "of F16 needs 6",
  );
  // a shape whose product overflows must not pass
  throwsWith(
    () =>
      readSafetensors(
        build({ h: { dtype: "F32", shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, new Uint8Array(4)),
      ),
    FormatError,
    "hold 4 bytes",
  );
});

test("unsupported dtypes are DTypeErrors naming the dtype and the key", () => {
  for (const [dtype, size] of [
    ["I8", 1],
    ["U8", 1],
    ["I32", 4],
    ["I64", 8],
    ["BOOL", 1],
    ["F8_E4M3", 1],
    ["F8_E5M2", 1],
  ] as const) {
    const file = build({ "t.x": { dtype, shape: [2], data_offsets: [0, 2 * size] } }, new Uint8Array(2 * size));
    throwsWith(() => readSafetensors(file), DTypeError, dtype, '"t.x"');
    const p = put(`dtype-${dtype}.safetensors`, file);
    throwsWith(() => readSafetensors(p), DTypeError, p, dtype, '"t.x"');
    // the header itself is valid
    assert.is(parseSafetensorsHeader(file).tensors.get("t.x")!.dtype, dtype);
  }
});

test("every truncation of a valid file is a FormatError or a shorter valid read", () => {
  const whole = validFile();
  for (let n = 0; n < whole.length; n++) {
    throwsWith(() => readSafetensors(whole.subarray(0, n)), FormatError, "safetensors:");
  }
  assert.is(readSafetensors(whole).tensors.size, 2);
});

test("random corruption never throws anything but FormatError or DTypeError", () => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const whole = validFile();
  let failures = 0;
  for (let trial = 0; trial < 3000; trial++) {
    const b = whole.slice();
    const flips = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    try {
      readSafetensors(b);
    } catch (e) {
      failures++;
      if (!(e instanceof FormatError) && !(e instanceof DTypeError)) {
        assert.unreachable(`trial ${trial}: ${String(e)}`);
      }
    }
  }
  assert.ok(failures > 100, `corruption was detected (${failures} failures)`);
});

test.run();
