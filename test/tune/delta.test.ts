// delta files: keys in diffusers' processor naming both ways, files as the diffusers example writes them,
// pickles refused, mismatched shapes and unknown keys named
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { Generator, noGrad, randn } from "../../engine/index.ts";
import { writeSafetensors } from "../../data/safetensors.ts";
import { applyDeltaToUNet, fromDeltaKey, loadDelta, toDeltaKey } from "../../tune/delta.ts";
import { installTokens } from "../../tune/tokens.ts";
import { tinyPipeline, tmpDir } from "./tiny.ts";

test("UNet keys map to the processor keys diffusers writes and back", () => {
  const k = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
  assert.is(
    toDeltaKey(k),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_custom_diffusion.weight",
  );
  assert.is(fromDeltaKey(toDeltaKey(k)), k);
  const o = "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.bias";
  assert.is(
    toDeltaKey(o),
    "mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_out_custom_diffusion.0.bias",
  );
  assert.is(fromDeltaKey(toDeltaKey(o)), o);
  assert.is(toDeltaKey("conv_in.weight"), "conv_in.weight");
});

test("a delta folder as the diffusers example writes it (no metadata, <new1>.bin in safetensors) loads and applies", () => {
  const pipe = tinyPipeline();
  const dir = tmpDir();
  const g = new Generator(4);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [key, attn] of pipe.unet.crossAttentionLayers()) {
    for (const which of ["to_k", "to_v"] as const) {
      const w = attn[which].weight;
      weights.set(`${key}.processor.${which}_custom_diffusion.weight`, {
        shape: [...w.shape],
        data: randn(w.shape, { generator: g }).data as Float32Array,
      });
    }
  }
  writeSafetensors(path.join(dir, "pytorch_custom_diffusion_weights.safetensors"), weights);
  writeSafetensors(
    path.join(dir, "<new1>.bin"),
    new Map([["<new1>", { shape: [16], data: randn([16], { generator: g }).data as Float32Array }]]),
    { metadata: { format: "pt" } },
  );
  const delta = loadDelta(dir);
  assert.is(delta.freezeModel, "crossattn_kv");
  assert.is(delta.baseFingerprint, "");
  assert.equal([...delta.tokens.keys()], ["<new1>"]);
  const x = randn([1, 3, 8, 8], { generator: g });
  const before = noGrad(() => pipe.unet.forward(x, 10, pipe.encodePrompt(["a square"])).toArray());
  assert.is(applyDeltaToUNet(pipe.unet, delta), 2 * pipe.unet.crossAttentionLayers().length);
  installTokens(pipe.tokenizer, pipe.textEncoder, delta.tokens);
  const [key] = pipe.unet.crossAttentionLayers()[0];
  assert.equal(
    Array.from(pipe.unet.crossAttentionLayers()[0][1].to_k.weight.data),
    Array.from(weights.get(`${key}.processor.to_k_custom_diffusion.weight`)!.data),
  );
  const after = noGrad(() => pipe.unet.forward(x, 10, pipe.encodePrompt(["a square"])).toArray());
  assert.not.equal(after, before, "the loaded weights take effect");
  const sq = pipe.tokenizer.idsForTokenString("square");
  assert.equal(pipe.tokenizer.encode("a <new1> square").slice(0, 4 + sq.length), [49406, 320, 49408, ...sq, 49407]);
});

test("bare pickles are refused (PyTorch zip files are read by the restricted reader); wrong shapes and unknown keys are named", () => {
  const dir = tmpDir();
  fs.writeFileSync(
    path.join(dir, "pytorch_custom_diffusion_weights.bin"),
    Buffer.from([0x80, 0x02, 0x7d, 0x71, 0, 0, 0, 0, 0]),
  );
  assert.throws(() => loadDelta(dir), /is a bare pickle \(PyTorch's format before 1\.6\), which is not read/);
  const pipe = tinyPipeline();
  const dir2 = tmpDir();
  const [key] = pipe.unet.crossAttentionLayers()[0];
  writeSafetensors(
    path.join(dir2, "pytorch_custom_diffusion_weights.safetensors"),
    new Map([[`${key}.processor.to_k_custom_diffusion.weight`, { shape: [3, 3], data: new Float32Array(9) }]]),
  );
  assert.throws(
    () => applyDeltaToUNet(pipe.unet, loadDelta(dir2)),
    new RegExp(`${key.replace(/\./g, "\\.")}\\.to_k\\.weight expected \\[`),
  );
  const dir3 = tmpDir();
  writeSafetensors(
    path.join(dir3, "pytorch_custom_diffusion_weights.safetensors"),
    new Map([["nope.attn2.processor.to_k_custom_diffusion.weight", { shape: [1], data: new Float32Array(1) }]]),
  );
  assert.throws(
    () => applyDeltaToUNet(pipe.unet, loadDelta(dir3)),
    /names nope\.attn2\.to_k\.weight, which the model does not have/,
  );
});

test.run();
