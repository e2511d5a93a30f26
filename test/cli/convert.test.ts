// cdiff convert and loadDelta on PyTorch-format deltas: the converted safetensors delta equals what
// the PyTorch file holds, a compressed delta needs --model, and applying a delta without a
// fingerprint warns that only keys and shapes were checked.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { main } from "../../cli/main.ts";
import { writeTorchZip, type PyInput } from "../../data/torch_zip.ts";
import { applyDeltaToUNet, loadDelta, toDeltaKey } from "../../tune/delta.ts";
import { diffusersToCompvisKey } from "../../tune/convert.ts";
import { tinyPipeline, tmpDir } from "../tune/tiny.ts";

function quiet<T>(fn: () => T): { result: T; out: string[]; err: string[] } {
  const out: string[] = [],
    err: string[] = [];
  const [log, error, warn] = [console.log, console.error, console.warn];
  console.log = (s: unknown) => void out.push(String(s));
  console.error = (s: unknown) => void err.push(String(s));
  console.warn = (s: unknown) => void err.push(String(s));
  try {
    return { result: fn(), out, err };
  } finally {
    [console.log, console.error, console.warn] = [log, error, warn];
  }
}

const pipe = tinyPipeline();
const kv = pipe.unet.namedParameters().filter(([k]) => /\.attn2\.to_[kv]\.weight$/.test(k));
const tuned = new Map(
  kv.map(([k, p]) => [k, { shape: [...p.shape], data: Float32Array.from(p.data, (x, i) => x + 0.01 * Math.cos(i)) }]),
);
const width = pipe.textEncoder.text_model.embeddings.token_embedding.weight.shape[1]!;
const row = Float32Array.from({ length: width }, (_, i) => i / width);
const t = (x: { shape: number[]; data: Float32Array }): PyInput => ({ kind: "tensor", shape: x.shape, data: x.data });

test("cdiff convert: the authors' CompVis delta_epoch=*.ckpt becomes a safetensors delta with the same values", () => {
  const dir = tmpDir();
  const model = path.join(dir, "model");
  pipe.save(model);
  const sd = new Map<string, PyInput>([...tuned].map(([k, x]) => [diffusersToCompvisKey(k)!, t(x)]));
  sd.set("embed", { kind: "tensor", shape: [1, width], data: row });
  const ckpt = path.join(dir, "delta_epoch=000005.ckpt");
  writeTorchZip(ckpt, new Map([["state_dict", sd]]));
  const out = path.join(dir, "converted");
  const r = quiet(() => main(["convert", "--delta", ckpt, "--model", model, "--out", out]));
  assert.is(r.result, 0, r.err.join("\n"));
  assert.ok(
    r.out.some((l) =>
      /read custom-diffusion \(CompVis layout\) from .*: \d+ UNet tensors \(crossattn_kv\), tokens <new1>/.test(l),
    ),
    r.out.join("\n"),
  );
  const d = loadDelta(out);
  assert.is(d.unet.size, tuned.size);
  for (const [k, x] of tuned) assert.equal(Array.from(d.unet.get(k)!.data), Array.from(x.data), k);
  assert.equal(Array.from(d.tokens.get("<new1>")!), Array.from(row));
  // loadDelta reads the PyTorch file directly, and says which format it read
  const direct = loadDelta(ckpt);
  assert.is(direct.format, "custom-diffusion (CompVis layout)");
  assert.equal(Array.from(direct.unet.get(kv[0]![0])!.data), Array.from(tuned.get(kv[0]![0])!.data));
});

test("a diffusers delta folder with .bin files (PyTorch zip) loads, and applying it warns about the missing fingerprint", () => {
  const dir = path.join(tmpDir(), "diffusers-delta");
  fs.mkdirSync(dir);
  writeTorchZip(
    path.join(dir, "pytorch_custom_diffusion_weights.bin"),
    new Map<string, PyInput>([...tuned].map(([k, x]) => [toDeltaKey(k), t(x)])),
  );
  writeTorchZip(
    path.join(dir, "<new1>.bin"),
    new Map([["<new1>", { kind: "tensor", shape: [width], data: row } as PyInput]]),
  );
  const d = loadDelta(dir);
  assert.is(d.format, "diffusers attention processors");
  assert.equal(Array.from(d.tokens.get("<new1>")!), Array.from(row));
  const warnings: string[] = [];
  applyDeltaToUNet(tinyPipeline().unet, d, { warn: (m) => warnings.push(m) });
  assert.is(warnings.length, 1);
  assert.match(
    warnings[0]!,
    /delta \(diffusers attention processors\): it carries no base-model fingerprint, so only its keys and shapes were checked/,
  );
  // a delta of this project's own carries one: no warning
  const own = path.join(tmpDir(), "own");
  quiet(() => main(["convert", "--delta", dir, "--out", own]));
  const ownDelta = loadDelta(own);
  ownDelta.baseFingerprint = "x";
  const none: string[] = [];
  applyDeltaToUNet(tinyPipeline().unet, ownDelta, { warn: (m) => none.push(m), force: true });
  assert.is(none.length, 0);
});

test("cdiff convert: a compressed delta without --model is a named failure; a bare pickle is refused", () => {
  const dir = tmpDir();
  const comp = new Map<string, PyInput>(
    [...tuned].map(([k, x]) => [
      diffusersToCompvisKey(k)!,
      new Map<string, PyInput>([
        ["u", { kind: "tensor", shape: [x.shape[0]!, 1], data: new Float32Array(x.shape[0]!) }],
        ["v", { kind: "tensor", shape: [1, x.shape[1]!], data: new Float32Array(x.shape[1]!) }],
      ]),
    ]),
  );
  const file = path.join(dir, "compressed_delta.bin");
  writeTorchZip(file, new Map([["state_dict", comp]]));
  const r = quiet(() => main(["convert", "--delta", file, "--out", path.join(dir, "o")]));
  assert.is(r.result, 1);
  assert.match(r.err.join("\n"), /the delta is compressed \(W = W0 \+ u v\): pass the base model/);
  const pkl = path.join(dir, "old.bin");
  fs.writeFileSync(pkl, Buffer.from([0x80, 2, 0x7d, 0x2e]));
  assert.throws(() => loadDelta(pkl), /is a bare pickle \(PyTorch's format before 1\.6\), which is not read/);
});

test.run();
