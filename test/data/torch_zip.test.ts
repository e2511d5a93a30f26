// The restricted PyTorch zip reader: files written by torch.save read exactly, what it writes reads
// back (and loads in PyTorch, checked when the fixtures were made), hostile files refused by name.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import {
  PyTuple,
  readTorchZip,
  writeTorchZip,
  zipStored,
  isTorchZip,
  type PyValue,
  type TorchTensor,
} from "../../data/torch_zip.ts";

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/torch");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "torchzip-"));
const at = (name: string) => path.join(tmp, name);
const tensor = (v: PyValue): TorchTensor => {
  assert.ok(v && typeof v === "object" && "kind" in v && v.kind === "tensor", "not a tensor");
  return v as TorchTensor;
};
const dict = (v: PyValue): Map<PyValue, PyValue> => {
  assert.ok(v instanceof Map, "not a dict");
  return v as Map<PyValue, PyValue>;
};

test("reads torch.save output: float32/float16/bfloat16, transposed strides, shared storage with offset, parameters", () => {
  const f = path.join(fixtures, "views.bin");
  assert.ok(isTorchZip(f));
  const d = dict(readTorchZip(f));
  assert.equal([...d.keys()], ["a.weight", "b", "c", "d", "e", "p"]);
  const a = tensor(d.get("a.weight")!);
  assert.equal([a.dtype, a.shape, Array.from(a.data)], ["float32", [2, 3], [0, 1, 2, 3, 4, 5]]);
  const b = tensor(d.get("b")!);
  assert.equal([b.dtype, Array.from(b.data)], ["float16", [1.5, -2]]);
  const c = tensor(d.get("c")!);
  assert.equal([c.dtype, c.shape, Array.from(c.data)], ["bfloat16", [2, 2], [1, 3, 2, 4]]);
  assert.equal(Array.from(tensor(d.get("d")!).data), [2, 3, 4]);
  assert.equal(Array.from(tensor(d.get("e")!).data), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(
    [tensor(d.get("p")!).shape, Array.from(tensor(d.get("p")!).data)],
    [
      [2, 2],
      [1, 1, 1, 1],
    ],
  );
});

test("reads a module state_dict (OrderedDict with _metadata) to the values PyTorch printed", () => {
  const d = dict(readTorchZip(path.join(fixtures, "linear_state_dict.bin")));
  assert.equal([...d.keys()], ["weight", "bias"]);
  assert.equal(
    Array.from(tensor(d.get("weight")!).data),
    Array.from(
      new Float32Array([-0.3201633095741272, -0.19451351463794708, -0.17424088716506958, -0.6775220632553101]),
    ),
  );
  assert.equal(
    Array.from(tensor(d.get("bias")!).data),
    Array.from(new Float32Array([0.11100316792726517, 0.6632476449012756])),
  );
});

test("writeTorchZip round-trips dicts, lists, tuples, numbers, strings, None and tensors in three dtypes", () => {
  const sd = new Map<string, never>([
    ["w", { kind: "tensor", shape: [2, 3], data: [1, 2, 3, 4, 5, 6.5] } as never],
    ["h", { kind: "tensor", dtype: "float16", shape: [3], data: [0.1, -2, 65504] } as never],
    ["b", { kind: "tensor", dtype: "bfloat16", shape: [2], data: [1.00390625, -3.3] } as never],
    ["attn1", new Map() as never],
    ["meta", [1, 2.5, "x", null, true, PyTuple.from([3, 4]), -5, 2 ** 40, -(2 ** 40)] as never],
  ]);
  writeTorchZip(at("ours.bin"), sd, { ordered: new Set([sd]) });
  const d = dict(readTorchZip(at("ours.bin")));
  assert.equal(Array.from(tensor(d.get("w")!).data), [1, 2, 3, 4, 5, 6.5]);
  assert.equal(Array.from(tensor(d.get("h")!).data), [0.0999755859375, -2, 65504]);
  // bfloat16 rounds to nearest even: 1 + 2^-8 is a tie and goes to 1
  assert.equal(Array.from(tensor(d.get("b")!).data), [1, -3.296875]);
  assert.equal(dict(d.get("attn1")!).size, 0);
  const meta = d.get("meta") as PyValue[];
  assert.ok(meta[5] instanceof PyTuple);
  assert.equal(
    meta.map((x) => (x instanceof PyTuple ? [...x] : x)),
    [1, 2.5, "x", null, true, [3, 4], -5, 2 ** 40, -(2 ** 40)],
  );
});

/** A one-entry torch zip around a hand-written pickle. */
function withPickle(name: string, pkl: number[], more: [string, Buffer][] = []): string {
  fs.writeFileSync(at(name), zipStored([["a/data.pkl", Buffer.from(pkl)], ...more, ["a/version", Buffer.from("3\n")]]));
  return at(name);
}
const op = (s: string) => [...Buffer.from(s, "latin1")];

test("a pickle that names os.system or builtins.eval is refused by name, before anything runs", () => {
  // GLOBAL 'os system', then calling it with ('echo hi',)
  const sys = withPickle("os.bin", [
    0x80,
    2,
    ...op("cos\nsystem\n"),
    0x58,
    7,
    0,
    0,
    0,
    ...op("echo hi"),
    0x85,
    0x52,
    0x2e,
  ]);
  assert.throws(() => readTorchZip(sys), /os\.bin: data\.pkl refers to os\.system, which is not allowed/);
  // STACK_GLOBAL builtins eval
  const ev = withPickle("eval.bin", [
    0x80,
    4,
    0x8c,
    8,
    ...op("builtins"),
    0x8c,
    4,
    ...op("eval"),
    0x93,
    0x8c,
    1,
    ...op("1"),
    0x85,
    0x52,
    0x2e,
  ]);
  assert.throws(() => readTorchZip(ev), /refers to builtins\.eval, which is not allowed/);
  // an allowed global used in a way the reader does not model
  const obj = withPickle("newobj.bin", [0x80, 2, ...op("ccollections\nOrderedDict\n"), 0x29, 0x81, 0x2e]);
  assert.throws(() => readTorchZip(obj), /creates an object with NEWOBJ/);
});

test("deep nesting, truncation, unknown opcodes and bad memo reads are named errors", () => {
  const deep = withPickle("deep.bin", [0x80, 2, ...new Array(100000).fill(0x28), 0x2e]);
  assert.throws(() => readTorchZip(deep), /nests deeper than 256/);
  assert.throws(
    () => readTorchZip(withPickle("trunc.bin", [0x80, 2, 0x58, 100, 0, 0, 0, 0x61])),
    /data\.pkl is truncated/,
  );
  assert.throws(() => readTorchZip(withPickle("op.bin", [0x80, 2, 0x69])), /uses opcode 0x69/);
  assert.throws(
    () => readTorchZip(withPickle("memo.bin", [0x80, 2, 0x68, 9, 0x2e])),
    /reads memo 9, which was never set/,
  );
});

test("a storage larger than its entry, a tensor past its storage, and broadcast views are refused before allocating", () => {
  writeTorchZip(at("ok.bin"), { kind: "tensor", shape: [4], data: [1, 2, 3, 4] });
  const good = fs.readFileSync(at("ok.bin"));
  // a hand-written tensor pickle with a chosen storage numel, size and stride
  const big = (numel: number[], size: number[], stride: number[]) => [
    0x80,
    2,
    ...op("ctorch._utils\n_rebuild_tensor_v2\n"),
    0x28,
    0x28,
    0x58,
    7,
    0,
    0,
    0,
    ...op("storage"),
    ...op("ctorch\nFloatStorage\n"),
    0x58,
    1,
    0,
    0,
    0,
    ...op("0"),
    0x58,
    3,
    0,
    0,
    0,
    ...op("cpu"),
    ...numel,
    0x74,
    0x51,
    0x4b,
    0,
    ...size,
    ...stride,
    0x89,
    0x4e,
    0x74,
    0x52,
    0x2e,
  ];
  const data: [string, Buffer][] = [["a/data/0", Buffer.alloc(16)]];
  assert.throws(
    () =>
      readTorchZip(
        withPickle("huge.bin", big([0x8a, 5, 0, 0x28, 0x6b, 0xee, 0], [0x4b, 4, 0x85], [0x4b, 1, 0x85]), data),
      ),
    /storage 0 declares 4000000000 float32 elements \(16000000000 bytes\) but its entry holds 16 bytes/,
  );
  assert.throws(
    () => readTorchZip(withPickle("past.bin", big([0x4b, 4], [0x4b, 5, 0x85], [0x4b, 1, 0x85]), data)),
    /reaching past its storage of 4 elements/,
  );
  assert.throws(
    () =>
      readTorchZip(withPickle("bcast.bin", big([0x4b, 4], [0x4a, 0, 0xca, 0x9a, 0x3b, 0x85], [0x4b, 0, 0x85]), data)),
    /1000000000 elements over a storage of 4/,
  );
  assert.ok(good.length > 0);
});

test("zip damage is named: compressed entries (zip bombs), traversal names, truncation, overlaps, not a zip", () => {
  writeTorchZip(at("base.bin"), new Map([["x", { kind: "tensor", shape: [2], data: [1, 2] }]]));
  const base = fs.readFileSync(at("base.bin"));
  const cdAt = base.readUInt32LE(base.length - 22 + 16);
  // method 8 (deflate) in the first central entry
  const deflated = Buffer.from(base);
  deflated.writeUInt16LE(8, cdAt + 10);
  fs.writeFileSync(at("deflate.bin"), deflated);
  assert.throws(() => readTorchZip(at("deflate.bin")), /entry archive\/data\.pkl is compressed \(method 8\)/);
  // a name with ..
  fs.writeFileSync(at("dots.bin"), zipStored([["a/../data.pkl", Buffer.from([0x80, 2, 0x4e, 0x2e])]]));
  assert.throws(() => readTorchZip(at("dots.bin")), /unsafe entry name "a\/\.\.\/data\.pkl"/);
  // truncated: the end record is gone
  fs.writeFileSync(at("cut.bin"), base.subarray(0, base.length - 30));
  assert.throws(
    () => readTorchZip(at("cut.bin")),
    /cut\.bin: (no zip end-of-central-directory record|central directory)/,
  );
  // an entry claiming more bytes than the archive holds
  const long = Buffer.from(base);
  long.writeUInt32LE(1 << 30, cdAt + 20);
  long.writeUInt32LE(1 << 30, cdAt + 24);
  fs.writeFileSync(at("long.bin"), long);
  assert.throws(() => readTorchZip(at("long.bin")), /runs past the archive/);
  fs.writeFileSync(at("text.bin"), "not a zip at all, just text that is long enough");
  assert.not.ok(isTorchZip(at("text.bin")));
  assert.throws(() => readTorchZip(at("text.bin")), /no zip end-of-central-directory record/);
  assert.throws(() => readTorchZip(at("missing.bin")), /missing\.bin: cannot open/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
