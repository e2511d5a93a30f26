// Deltas in PyTorch files (diffusers processors + token file, the authors' diffusers and CompVis
// layouts, the compressed form): read without executing them, and the UNet with the converted delta
// gives the same output as the same weights applied directly.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator, noGrad, randn, type Tensor } from "../../engine/index.ts";
import { TINY_UNET_CONFIG, UNet2DConditionModel, withInitGenerator } from "../../models/index.ts";
import { writeTorchZip, type PyInput } from "../../data/torch_zip.ts";
import { applyDeltaToUNet, toDeltaKey } from "../../tune/delta.ts";
import { compvisToDiffusersKey, deltaFromTorch, diffusersToCompvisKey, readTorchDelta } from "../../tune/convert.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "convert-"));
const at = (n: string) => path.join(tmp, n);
const base = () => withInitGenerator(new Generator(0), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG));
const kvKeys = (m: UNet2DConditionModel) =>
  m
    .namedParameters()
    .map(([k]) => k)
    .filter((k) => /\.attn2\.to_[kv]\.weight$/.test(k));
const t = (shape: readonly number[], data: ArrayLike<number>): PyInput => ({ kind: "tensor", shape, data });

// the tuned weights: W0 + u v with rank-2 u, v per K/V matrix (so the compressed form is exact up to float32)
const g = new Generator(7);
const b0 = base();
const tuned = new Map<string, { w: Float32Array; u: Float32Array; v: Float32Array; shape: number[] }>();
for (const k of kvKeys(b0)) {
  const p = b0.stateDict().get(k)!;
  const [o, i] = p.shape as [number, number];
  const u = randn([o, 2], { generator: g }).mul(0.1).data as Float32Array,
    v = randn([2, i], { generator: g }).mul(0.1).data as Float32Array;
  const w = Float32Array.from(p.data);
  for (let r = 0; r < o; r++)
    for (let c = 0; c < i; c++) w[r * i + c] = w[r * i + c]! + (u[r * 2]! * v[c]! + u[r * 2 + 1]! * v[i + c]!);
  tuned.set(k, { w, u, v, shape: [o, i] });
}
const row = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i));

function reference(): Tensor {
  const m = base();
  const sd = m.stateDict();
  for (const [k, x] of tuned) sd.get(k)!.copy_(x.w);
  return forward(m);
}
function forward(m: UNet2DConditionModel): Tensor {
  const gg = new Generator(3);
  return noGrad(() => m.forward(randn([1, 4, 16, 16], { generator: gg }), 10, randn([1, 5, 32], { generator: gg })));
}
function viaFile(
  file: string,
  tokenFiles: string[] = [],
  withBase = false,
): { out: Tensor; tokens: Map<string, Float32Array>; format: string } {
  const m = base();
  const { delta, format } = deltaFromTorch(file, tokenFiles, withBase ? { base: base() } : {});
  assert.is(delta.freezeModel, "crossattn_kv");
  assert.is(applyDeltaToUNet(m, delta), tuned.size);
  return { out: forward(m), tokens: delta.tokens, format };
}
const maxDiff = (a: Tensor, b: Tensor) => {
  let mx = 0;
  const x = a.data,
    y = b.data;
  for (let i = 0; i < x.length; i++) mx = Math.max(mx, Math.abs(x[i]! - y[i]!));
  return mx;
};

test("CompVis keys map to diffusers keys and back for SD-1.x numbering", () => {
  assert.is(
    compvisToDiffusersKey("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
  );
  assert.is(
    compvisToDiffusersKey("model.diffusion_model.input_blocks.8.1.transformer_blocks.0.attn2.to_v.weight"),
    "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v.weight",
  );
  assert.is(
    compvisToDiffusersKey("model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
  );
  assert.is(
    compvisToDiffusersKey("model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_v.weight"),
    "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_v.weight",
  );
  assert.is(
    compvisToDiffusersKey("model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"),
    null,
    "input block 3 is a downsampler",
  );
  for (const k of kvKeys(b0)) assert.is(compvisToDiffusersKey(diffusersToCompvisKey(k)!), k);
});

test("diffusers .bin with {} processor entries plus <new1>.bin: same UNet output as the weights applied directly", () => {
  const sd = new Map<string, PyInput>();
  for (const k of kvKeys(b0)) sd.set(k.replace(/attn2\.to_[kv]\.weight$/, "attn1.processor"), new Map());
  for (const [k, x] of tuned) sd.set(toDeltaKey(k), t(x.shape, x.w));
  writeTorchZip(at("pytorch_custom_diffusion_weights.bin"), sd);
  writeTorchZip(at("<new1>.bin"), new Map([["<new1>", t([32], row)]]));
  const r = viaFile(at("pytorch_custom_diffusion_weights.bin"), [at("<new1>.bin")]);
  assert.is(r.format, "diffusers attention processors");
  assert.is(maxDiff(r.out, reference()), 0);
  assert.equal(Array.from(r.tokens.get("<new1>")!), Array.from(row));
});

test("the authors' diffusers-layout delta.bin (unet + modifier_token)", () => {
  const unet = new Map<string, PyInput>([...tuned].map(([k, x]) => [k, t(x.shape, x.w)]));
  writeTorchZip(
    at("delta.bin"),
    new Map<string, PyInput>([
      ["unet", unet],
      ["modifier_token", new Map([["<new1>", t([32], row)]])],
    ]),
  );
  const r = viaFile(at("delta.bin"));
  assert.is(r.format, "custom-diffusion (diffusers layout)");
  assert.is(maxDiff(r.out, reference()), 0);
  assert.ok(r.tokens.has("<new1>"));
});

test("the authors' CompVis delta (state_dict + embed) and its compressed u/v form", () => {
  const full = new Map<string, PyInput>([...tuned].map(([k, x]) => [diffusersToCompvisKey(k)!, t(x.shape, x.w)]));
  full.set("embed", t([1, 32], row));
  writeTorchZip(at("delta_epoch=000001.ckpt"), new Map([["state_dict", full]]));
  const r = viaFile(at("delta_epoch=000001.ckpt"));
  assert.is(r.format, "custom-diffusion (CompVis layout)");
  assert.is(maxDiff(r.out, reference()), 0);
  assert.equal(Array.from(r.tokens.get("<new1>")!), Array.from(row));

  const comp = new Map<string, PyInput>(
    [...tuned].map(([k, x]) => [
      diffusersToCompvisKey(k)!,
      new Map([
        ["u", t([x.shape[0]!, 2], x.u)],
        ["v", t([2, x.shape[1]!], x.v)],
      ]),
    ]),
  );
  comp.set("embed", t([1, 32], row));
  writeTorchZip(at("compressed_delta.bin"), new Map([["state_dict", comp]]));
  assert.throws(
    () => readTorchDelta(at("compressed_delta.bin")),
    /the delta is compressed \(W = W0 \+ u v\): pass the base model/,
  );
  const c = viaFile(at("compressed_delta.bin"), [], true);
  assert.is(c.format, "custom-diffusion (CompVis layout, compressed)");
  // W0 + u v summed in another order than the reference: float32 rounding only
  assert.ok(maxDiff(c.out, reference()) < 1e-5, `compressed: ${maxDiff(c.out, reference())}`);
});

test("files that are not deltas get named errors", () => {
  writeTorchZip(
    at("other.bin"),
    new Map<string, PyInput>([
      ["optimizer", new Map()],
      ["epoch", 3],
    ]),
  );
  assert.throws(
    () => readTorchDelta(at("other.bin")),
    /not a Custom Diffusion delta this reader knows \(top-level keys: optimizer, epoch\)/,
  );
  writeTorchZip(
    at("badkey.bin"),
    new Map([["state_dict", new Map<string, PyInput>([["model.diffusion_model.out.2.weight", t([1], [1])]])]]),
  );
  assert.throws(
    () => readTorchDelta(at("badkey.bin")),
    /state_dict key model\.diffusion_model\.out\.2\.weight is not a CompVis cross-attention weight/,
  );
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
