// Tests of UNet2DConditionModel: SD-1.x keys and shapes (shape-only build), tiny-config forward,
// backward, save/load round trip, key snapshot, timestep features, a float64 gradient check, errors.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  ConfigError,
  Generator,
  noGrad,
  randn,
  ShapeError,
  StateDictError,
  sum,
  tensor,
} from "../../../engine/index.ts";
import type { Tensor } from "../../../engine/index.ts";
import { withInitGenerator, withShapeOnly } from "../../../models/nn/index.ts";
import { getTimestepEmbedding, Timesteps } from "../../../models/embeddings.ts";
import { SD15_UNET_CONFIG, TINY_UNET_CONFIG, UNet2DConditionModel } from "../../../models/unets/unet_2d_condition.ts";
import { assertClose, closeness } from "../../helpers.ts";

const REF = JSON.parse(fs.readFileSync("/work/shared/data/sd15-state-dict-keys.json", "utf8")).unet as {
  config: Record<string, unknown>;
  keys: [string, number[]][];
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "unet-test-"));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const tiny = (seed = 0) =>
  withInitGenerator(new Generator(seed), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG));
const inputs = (b: number, hw: number, seed: number, dtype: "float32" | "float64" = "float32") => {
  const g = new Generator(seed);
  return { x: randn([b, 4, hw, hw], { generator: g, dtype }), ctx: randn([b, 5, 32], { generator: g, dtype }) };
};
const same = (a: Tensor, b: Tensor) =>
  a.shape.join() === b.shape.join() && a.data.every((v, i) => Object.is(v, b.data[i]));

test("SD-1.x config builds shape-only with exactly the 686 reference keys, shapes and 859,520,964 parameters", () => {
  const before = process.memoryUsage().arrayBuffers;
  const m = withShapeOnly(() => UNet2DConditionModel.fromConfig(REF.config));
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < 64 << 20, `shape-only build allocated ${grown} bytes`);
  const got = m.namedParameters().map(([k, t]) => [k, [...t.shape]]);
  assert.is(got.length, 686);
  for (let i = 0; i < REF.keys.length; i++) assert.equal(got[i], REF.keys[i], `key ${i}`);
  assert.is(m.numParameters(), 859_520_964);
  // the exported constant is the same model
  const c = withShapeOnly(() => UNet2DConditionModel.fromConfig(SD15_UNET_CONFIG));
  assert.equal(
    c.namedParameters().map(([k, t]) => `${k}:${t.shape}`),
    got.map(([k, s]) => `${k}:${s}`),
  );
});

test("crossAttentionLayers lists the 16 attn2 modules of SD-1.x, keys in state-dict order", () => {
  const m = withShapeOnly(() => UNet2DConditionModel.fromConfig(SD15_UNET_CONFIG));
  const layers = m.crossAttentionLayers();
  assert.is(layers.length, 16);
  assert.is(layers[0][0], "down_blocks.0.attentions.0.transformer_blocks.0.attn2");
  assert.is(layers[14][0], "up_blocks.3.attentions.2.transformer_blocks.0.attn2");
  assert.is(layers[15][0], "mid_block.attentions.0.transformer_blocks.0.attn2");
  for (const [, a] of layers) {
    assert.ok(a.isCrossAttention);
    assert.equal([...a.to_k.weight.shape], [a.innerDim, 768]);
    assert.is(a.heads, 8);
  }
  assert.is(m.attentionLayers().length, 32);
});

test("tiny config: forward gives (B, 4, H, W) for a number, an array and a tensor timestep alike", () => {
  const m = tiny();
  const big = inputs(1, 16, 0);
  assert.equal([...noGrad(() => m.forward(big.x, 10, big.ctx)).shape], [1, 4, 16, 16]);
  const { x, ctx } = inputs(2, 8, 1);
  const y = noGrad(() => m.forward(x, 10, ctx));
  assert.equal([...y.shape], [2, 4, 8, 8]);
  assert.ok(y.data.every(Number.isFinite));
  assert.ok(
    same(
      y,
      noGrad(() => m.forward(x, [10, 10], ctx)),
    ),
  );
  assert.ok(
    same(
      y,
      noGrad(() => m.forward(x, tensor([10]), ctx)),
    ),
  );
  const y2 = noGrad(() => m.forward(x, [10, 500], ctx));
  assert.ok(same(y2.slice(0, 0, 1), y.slice(0, 0, 1)), "sample 0 keeps timestep 10");
  assert.not.ok(same(y2.slice(0, 1, 2), y.slice(0, 1, 2)), "sample 1 sees timestep 500");
});

test("tiny config: sizes that do not divide by 2 resize the up path to the skip sizes", () => {
  const m = tiny();
  const g = new Generator(2);
  const y = noGrad(() => m.forward(randn([1, 4, 9, 7], { generator: g }), 3, randn([1, 5, 32], { generator: g })));
  assert.equal([...y.shape], [1, 4, 9, 7]);
});

test("center_input_sample feeds 2x - 1", () => {
  const a = tiny(3);
  const b = withInitGenerator(new Generator(3), () =>
    UNet2DConditionModel.fromConfig({ ...TINY_UNET_CONFIG, center_input_sample: true }),
  );
  const { x, ctx } = inputs(1, 8, 4);
  const ya = noGrad(() => a.forward(x.mul(2).sub(1), 7, ctx));
  const yb = noGrad(() => b.forward(x, 7, ctx));
  assert.ok(same(ya, yb));
});

test("tiny config: one backward gives a finite, non-zero gradient on every parameter", () => {
  const m = tiny(5);
  const { x, ctx } = inputs(2, 8, 6);
  const y = m.forward(x, [20, 700], ctx);
  sum(y.mul(y)).backward();
  const none: string[] = [];
  for (const [k, p] of m.namedParameters()) {
    const g = p.grad;
    if (!g || !g.data.every(Number.isFinite) || !g.data.some((v) => v !== 0)) none.push(k);
    else assert.equal([...g.shape], [...p.shape], k);
  }
  assert.equal(none, [], `parameters without a usable gradient: ${none.join(", ")}`);
});

test("save -> fromPretrained round trip gives bit-identical outputs", () => {
  const m = tiny(7);
  const folder = path.join(dir, "tiny");
  m.save(folder);
  const cfg = JSON.parse(fs.readFileSync(path.join(folder, "config.json"), "utf8"));
  assert.is(cfg._class_name, "UNet2DConditionModel");
  assert.equal(cfg.block_out_channels, [32, 64]);
  const r = UNet2DConditionModel.fromPretrained(folder);
  assert.equal(r.config, m.config);
  const { x, ctx } = inputs(1, 8, 8);
  assert.ok(
    same(
      noGrad(() => m.forward(x, 42, ctx)),
      noGrad(() => r.forward(x, 42, ctx)),
    ),
  );
  for (const [k, p] of r.namedParameters()) assert.ok(p.requiresGrad, k);
  // an F16 copy loads as float32 and stays close
  const half = path.join(dir, "tiny-f16");
  m.save(half, { dtype: "F16" });
  const h = UNet2DConditionModel.fromPretrained(half);
  assertClose(
    noGrad(() => h.forward(x, 42, ctx)).data,
    noGrad(() => m.forward(x, 42, ctx)).data,
    2e-2,
    2e-2,
    "f16 round trip",
  );
});

test("fromPretrained names mis-shaped keys and rejects bad config values", () => {
  const m = tiny(9);
  const folder = path.join(dir, "mismatch");
  m.save(folder);
  const cfgPath = path.join(folder, "config.json");
  const cfg = JSON.parse(fs.readFileSync(cfgPath, "utf8"));
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, cross_attention_dim: 16 }));
  assert.throws(
    () => UNet2DConditionModel.fromPretrained(folder),
    (e: Error) =>
      e instanceof StateDictError && /attn2\.to_k\.weight expected \[32,16\], got \[32,32\]/.test(e.message),
  );
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, class_embed_type: "timestep" }));
  assert.throws(
    () => UNet2DConditionModel.fromPretrained(folder),
    (e: Error) => e instanceof ConfigError && /class_embed_type/.test(e.message),
  );
});

test("stateDict key list of the tiny config (snapshot: renames must fail here)", () => {
  const m = withShapeOnly(() => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG));
  const got = m.namedParameters().map(([k, t]) => `${k} ${t.shape.join("x")}`);
  assert.equal(got, TINY_KEYS);
  assert.is(m.numParameters(), 1_106_212);
});

test("timestep features: flip_sin_to_cos, freq shift 0 and 1, against hand-computed float64 values", () => {
  // dim 8, t = 10, shift 0: frequencies 10000^(-i/4) = 1, 0.1, 0.01, 0.001; arguments 10, 1, 0.1, 0.01
  const flip = getTimestepEmbedding([10], 8, { flipSinToCos: true, downscaleFreqShift: 0, dtype: "float64" });
  const cosines = [-0.8390715290764524, 0.5403023058681398, 0.9950041652780258, 0.9999500004166653];
  const sines = [-0.5440211108893698, 0.8414709848078965, 0.09983341664682815, 0.009999833334166664];
  assert.equal([...flip.shape], [1, 8]);
  assertClose(flip.data, [...cosines, ...sines], 1e-14, 1e-12, "flip, shift 0");
  // shift 1 divides by half - 1 = 3: frequencies 10000^(-i/3); not flipped: [sin, cos]
  const args = [10, 0.464158883361278, 0.021544346900318843, 0.001];
  const plain = getTimestepEmbedding([10], 8, { flipSinToCos: false, downscaleFreqShift: 1, dtype: "float64" });
  assertClose(plain.data, [...args.map(Math.sin), ...args.map(Math.cos)], 1e-14, 1e-12, "no flip, shift 1");
  // odd dim appends a zero column; the module broadcasts over timesteps
  const odd = getTimestepEmbedding([10, 0], 9, { flipSinToCos: true, downscaleFreqShift: 0, dtype: "float64" });
  assert.is(odd.data[8], 0);
  assert.equal(Array.from(odd.data).slice(9, 18), [1, 1, 1, 1, 0, 0, 0, 0, 0], "t = 0");
  const mod = new Timesteps(8, true, 0).forward([10], "float64");
  assert.equal(Array.from(mod.data), Array.from(flip.data), "Timesteps module");
  // float32 rounds like torch's float32 pipeline: close to the float64 values
  assertClose(
    getTimestepEmbedding([999], 320, { flipSinToCos: true, downscaleFreqShift: 0 }).data,
    getTimestepEmbedding([999], 320, { flipSinToCos: true, downscaleFreqShift: 0, dtype: "float64" }).data,
    2e-4,
    0,
    "float32",
  );
});

test("float64 gradient of the tiny UNet output w.r.t. an attn2.to_k weight matches central differences", () => {
  const m = tiny(11).toDType("float64");
  const { x, ctx } = inputs(1, 8, 12, "float64");
  const key = "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight";
  const w = m.stateDict().get(key)!;
  const proj = randn([1, 4, 8, 8], { generator: new Generator(13), dtype: "float64" });
  const loss = () => sum(m.forward(x, 321, ctx).mul(proj));
  m.zeroGrad();
  loss().backward();
  const grad = w.grad!.data;
  const eps = 1e-6;
  const data = w.data;
  for (const i of [0, 37, 250, 511, 1023]) {
    const orig = data[i];
    data[i] = orig + eps;
    const up = noGrad(() => loss().item());
    data[i] = orig - eps;
    const dn = noGrad(() => loss().item());
    data[i] = orig;
    const num = (up - dn) / (2 * eps);
    assert.ok(Math.abs(num) > 1e-8, `element ${i}: numeric gradient ${num} is too small to test`);
    assert.ok(closeness([grad[i]], [num], 1e-8, 1e-5) <= 1, `element ${i}: analytic ${grad[i]} vs numeric ${num}`);
  }
});

test("wrong input shapes are ShapeErrors naming the shapes", () => {
  const m = tiny();
  const g = new Generator(0);
  assert.throws(
    () => m.forward(randn([1, 3, 8, 8], { generator: g }), 1, randn([1, 5, 32], { generator: g })),
    (e: Error) => e instanceof ShapeError && e.message.includes("(B, 4, H, W)") && e.message.includes("[1,3,8,8]"),
  );
  assert.throws(
    () => m.forward(randn([1, 4, 8, 8], { generator: g }), 1, randn([1, 5, 16], { generator: g })),
    (e: Error) => e instanceof ShapeError && e.message.includes("[1,5,16]"),
  );
  assert.throws(
    () => m.forward(randn([2, 4, 8, 8], { generator: g }), [1, 2, 3], randn([2, 5, 32], { generator: g })),
    (e: Error) => e instanceof ShapeError && /timestep/.test(e.message),
  );
});

test("unsupported config values are ConfigErrors naming the key", () => {
  const bad = (over: Record<string, unknown>, re: RegExp) =>
    assert.throws(
      () => withShapeOnly(() => UNet2DConditionModel.fromConfig({ ...TINY_UNET_CONFIG, ...over })),
      (e: Error) => e instanceof ConfigError && re.test(e.message),
      JSON.stringify(over),
    );
  bad({ down_block_types: ["CrossAttnDownBlock2D", "AttnDownBlock2D"] }, /down_block_types.*AttnDownBlock2D/);
  bad({ up_block_types: ["UpBlock2D", "SimpleCrossAttnUpBlock2D"] }, /up_block_types.*SimpleCrossAttnUpBlock2D/);
  bad({ class_embed_type: "timestep" }, /"class_embed_type"/);
  bad({ addition_embed_type: "text" }, /"addition_embed_type"/);
  bad({ mid_block_type: "UNetMidBlock2DSimpleCrossAttn" }, /"mid_block_type"/);
  bad({ only_cross_attention: true }, /"only_cross_attention"/);
  bad({ dual_cross_attention: true }, /"dual_cross_attention"/);
  bad({ num_attention_heads: 8 }, /"num_attention_heads"/);
  bad({ attention_head_dim: [8, 8, 8] }, /"attention_head_dim"/);
  bad({ attention_head_dim: 5 }, /"attention_head_dim"/);
  bad({ norm_num_groups: 24 }, /"norm_num_groups"/);
  bad({ down_block_types: ["DownBlock2D"] }, /"down_block_types"/);
  bad({ act_fn: "gelu" }, /"act_fn"/);
  bad({ not_a_key: 1 }, /unknown config key "not_a_key"/);
  // keys diffusers writes that do not change this path are accepted
  withShapeOnly(() =>
    UNet2DConditionModel.fromConfig({
      ...TINY_UNET_CONFIG,
      resnet_skip_time_act: false,
      addition_embed_type_num_heads: 64,
    }),
  );
});

test("use_linear_projection builds Linear proj_in/proj_out and per-block head counts", () => {
  const m = withShapeOnly(() =>
    UNet2DConditionModel.fromConfig({
      ...SD15_UNET_CONFIG,
      use_linear_projection: true,
      attention_head_dim: [5, 10, 20, 20],
      cross_attention_dim: 1024,
    }),
  );
  const sd = m.stateDict();
  assert.equal([...sd.get("down_blocks.0.attentions.0.proj_in.weight")!.shape], [320, 320]);
  assert.equal([...sd.get("up_blocks.3.attentions.0.proj_out.weight")!.shape], [320, 320]);
  const layers = m.crossAttentionLayers();
  assert.equal(
    layers.map(([, a]) => a.heads),
    [5, 5, 10, 10, 20, 20, 20, 20, 20, 10, 10, 10, 5, 5, 5, 20],
  );
  assert.is(layers[0][1].dimHead, 64);
});

const TINY_KEYS = [
  "conv_in.weight 32x4x3x3",
  "conv_in.bias 32",
  "time_embedding.linear_1.weight 128x32",
  "time_embedding.linear_1.bias 128",
  "time_embedding.linear_2.weight 128x128",
  "time_embedding.linear_2.bias 128",
  "down_blocks.0.attentions.0.norm.weight 32",
  "down_blocks.0.attentions.0.norm.bias 32",
  "down_blocks.0.attentions.0.proj_in.weight 32x32x1x1",
  "down_blocks.0.attentions.0.proj_in.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm1.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm2.weight 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm2.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.weight 32x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm3.weight 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.norm3.bias 32",
  "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight 256x32",
  "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.bias 256",
  "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight 32x128",
  "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.bias 32",
  "down_blocks.0.attentions.0.proj_out.weight 32x32x1x1",
  "down_blocks.0.attentions.0.proj_out.bias 32",
  "down_blocks.0.attentions.1.norm.weight 32",
  "down_blocks.0.attentions.1.norm.bias 32",
  "down_blocks.0.attentions.1.proj_in.weight 32x32x1x1",
  "down_blocks.0.attentions.1.proj_in.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm1.weight 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm1.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_k.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_v.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm2.weight 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm2.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_q.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0.weight 32x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm3.weight 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.norm3.bias 32",
  "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight 256x32",
  "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.bias 256",
  "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.2.weight 32x128",
  "down_blocks.0.attentions.1.transformer_blocks.0.ff.net.2.bias 32",
  "down_blocks.0.attentions.1.proj_out.weight 32x32x1x1",
  "down_blocks.0.attentions.1.proj_out.bias 32",
  "down_blocks.0.resnets.0.norm1.weight 32",
  "down_blocks.0.resnets.0.norm1.bias 32",
  "down_blocks.0.resnets.0.conv1.weight 32x32x3x3",
  "down_blocks.0.resnets.0.conv1.bias 32",
  "down_blocks.0.resnets.0.time_emb_proj.weight 32x128",
  "down_blocks.0.resnets.0.time_emb_proj.bias 32",
  "down_blocks.0.resnets.0.norm2.weight 32",
  "down_blocks.0.resnets.0.norm2.bias 32",
  "down_blocks.0.resnets.0.conv2.weight 32x32x3x3",
  "down_blocks.0.resnets.0.conv2.bias 32",
  "down_blocks.0.resnets.1.norm1.weight 32",
  "down_blocks.0.resnets.1.norm1.bias 32",
  "down_blocks.0.resnets.1.conv1.weight 32x32x3x3",
  "down_blocks.0.resnets.1.conv1.bias 32",
  "down_blocks.0.resnets.1.time_emb_proj.weight 32x128",
  "down_blocks.0.resnets.1.time_emb_proj.bias 32",
  "down_blocks.0.resnets.1.norm2.weight 32",
  "down_blocks.0.resnets.1.norm2.bias 32",
  "down_blocks.0.resnets.1.conv2.weight 32x32x3x3",
  "down_blocks.0.resnets.1.conv2.bias 32",
  "down_blocks.0.downsamplers.0.conv.weight 32x32x3x3",
  "down_blocks.0.downsamplers.0.conv.bias 32",
  "down_blocks.1.resnets.0.norm1.weight 32",
  "down_blocks.1.resnets.0.norm1.bias 32",
  "down_blocks.1.resnets.0.conv1.weight 64x32x3x3",
  "down_blocks.1.resnets.0.conv1.bias 64",
  "down_blocks.1.resnets.0.time_emb_proj.weight 64x128",
  "down_blocks.1.resnets.0.time_emb_proj.bias 64",
  "down_blocks.1.resnets.0.norm2.weight 64",
  "down_blocks.1.resnets.0.norm2.bias 64",
  "down_blocks.1.resnets.0.conv2.weight 64x64x3x3",
  "down_blocks.1.resnets.0.conv2.bias 64",
  "down_blocks.1.resnets.0.conv_shortcut.weight 64x32x1x1",
  "down_blocks.1.resnets.0.conv_shortcut.bias 64",
  "down_blocks.1.resnets.1.norm1.weight 64",
  "down_blocks.1.resnets.1.norm1.bias 64",
  "down_blocks.1.resnets.1.conv1.weight 64x64x3x3",
  "down_blocks.1.resnets.1.conv1.bias 64",
  "down_blocks.1.resnets.1.time_emb_proj.weight 64x128",
  "down_blocks.1.resnets.1.time_emb_proj.bias 64",
  "down_blocks.1.resnets.1.norm2.weight 64",
  "down_blocks.1.resnets.1.norm2.bias 64",
  "down_blocks.1.resnets.1.conv2.weight 64x64x3x3",
  "down_blocks.1.resnets.1.conv2.bias 64",
  "up_blocks.0.resnets.0.norm1.weight 128",
  "up_blocks.0.resnets.0.norm1.bias 128",
  "up_blocks.0.resnets.0.conv1.weight 64x128x3x3",
  "up_blocks.0.resnets.0.conv1.bias 64",
  "up_blocks.0.resnets.0.time_emb_proj.weight 64x128",
  "up_blocks.0.resnets.0.time_emb_proj.bias 64",
  "up_blocks.0.resnets.0.norm2.weight 64",
  "up_blocks.0.resnets.0.norm2.bias 64",
  "up_blocks.0.resnets.0.conv2.weight 64x64x3x3",
  "up_blocks.0.resnets.0.conv2.bias 64",
  "up_blocks.0.resnets.0.conv_shortcut.weight 64x128x1x1",
  "up_blocks.0.resnets.0.conv_shortcut.bias 64",
  "up_blocks.0.resnets.1.norm1.weight 128",
  "up_blocks.0.resnets.1.norm1.bias 128",
  "up_blocks.0.resnets.1.conv1.weight 64x128x3x3",
  "up_blocks.0.resnets.1.conv1.bias 64",
  "up_blocks.0.resnets.1.time_emb_proj.weight 64x128",
  "up_blocks.0.resnets.1.time_emb_proj.bias 64",
  "up_blocks.0.resnets.1.norm2.weight 64",
  "up_blocks.0.resnets.1.norm2.bias 64",
  "up_blocks.0.resnets.1.conv2.weight 64x64x3x3",
  "up_blocks.0.resnets.1.conv2.bias 64",
  "up_blocks.0.resnets.1.conv_shortcut.weight 64x128x1x1",
  "up_blocks.0.resnets.1.conv_shortcut.bias 64",
  "up_blocks.0.resnets.2.norm1.weight 96",
  "up_blocks.0.resnets.2.norm1.bias 96",
  "up_blocks.0.resnets.2.conv1.weight 64x96x3x3",
  "up_blocks.0.resnets.2.conv1.bias 64",
  "up_blocks.0.resnets.2.time_emb_proj.weight 64x128",
  "up_blocks.0.resnets.2.time_emb_proj.bias 64",
  "up_blocks.0.resnets.2.norm2.weight 64",
  "up_blocks.0.resnets.2.norm2.bias 64",
  "up_blocks.0.resnets.2.conv2.weight 64x64x3x3",
  "up_blocks.0.resnets.2.conv2.bias 64",
  "up_blocks.0.resnets.2.conv_shortcut.weight 64x96x1x1",
  "up_blocks.0.resnets.2.conv_shortcut.bias 64",
  "up_blocks.0.upsamplers.0.conv.weight 64x64x3x3",
  "up_blocks.0.upsamplers.0.conv.bias 64",
  "up_blocks.1.attentions.0.norm.weight 32",
  "up_blocks.1.attentions.0.norm.bias 32",
  "up_blocks.1.attentions.0.proj_in.weight 32x32x1x1",
  "up_blocks.1.attentions.0.proj_in.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm1.weight 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm1.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_v.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm2.weight 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm2.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_q.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.weight 32x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm3.weight 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.norm3.bias 32",
  "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight 256x32",
  "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.bias 256",
  "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight 32x128",
  "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.bias 32",
  "up_blocks.1.attentions.0.proj_out.weight 32x32x1x1",
  "up_blocks.1.attentions.0.proj_out.bias 32",
  "up_blocks.1.attentions.1.norm.weight 32",
  "up_blocks.1.attentions.1.norm.bias 32",
  "up_blocks.1.attentions.1.proj_in.weight 32x32x1x1",
  "up_blocks.1.attentions.1.proj_in.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm1.weight 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm1.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_q.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_k.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_v.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn1.to_out.0.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm2.weight 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm2.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_q.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_v.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0.weight 32x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.attn2.to_out.0.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm3.weight 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.norm3.bias 32",
  "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj.weight 256x32",
  "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj.bias 256",
  "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.weight 32x128",
  "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2.bias 32",
  "up_blocks.1.attentions.1.proj_out.weight 32x32x1x1",
  "up_blocks.1.attentions.1.proj_out.bias 32",
  "up_blocks.1.attentions.2.norm.weight 32",
  "up_blocks.1.attentions.2.norm.bias 32",
  "up_blocks.1.attentions.2.proj_in.weight 32x32x1x1",
  "up_blocks.1.attentions.2.proj_in.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm1.weight 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm1.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_q.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_k.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_v.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm2.weight 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm2.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_q.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_v.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0.weight 32x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm3.weight 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.norm3.bias 32",
  "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj.weight 256x32",
  "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.0.proj.bias 256",
  "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.2.weight 32x128",
  "up_blocks.1.attentions.2.transformer_blocks.0.ff.net.2.bias 32",
  "up_blocks.1.attentions.2.proj_out.weight 32x32x1x1",
  "up_blocks.1.attentions.2.proj_out.bias 32",
  "up_blocks.1.resnets.0.norm1.weight 96",
  "up_blocks.1.resnets.0.norm1.bias 96",
  "up_blocks.1.resnets.0.conv1.weight 32x96x3x3",
  "up_blocks.1.resnets.0.conv1.bias 32",
  "up_blocks.1.resnets.0.time_emb_proj.weight 32x128",
  "up_blocks.1.resnets.0.time_emb_proj.bias 32",
  "up_blocks.1.resnets.0.norm2.weight 32",
  "up_blocks.1.resnets.0.norm2.bias 32",
  "up_blocks.1.resnets.0.conv2.weight 32x32x3x3",
  "up_blocks.1.resnets.0.conv2.bias 32",
  "up_blocks.1.resnets.0.conv_shortcut.weight 32x96x1x1",
  "up_blocks.1.resnets.0.conv_shortcut.bias 32",
  "up_blocks.1.resnets.1.norm1.weight 64",
  "up_blocks.1.resnets.1.norm1.bias 64",
  "up_blocks.1.resnets.1.conv1.weight 32x64x3x3",
  "up_blocks.1.resnets.1.conv1.bias 32",
  "up_blocks.1.resnets.1.time_emb_proj.weight 32x128",
  "up_blocks.1.resnets.1.time_emb_proj.bias 32",
  "up_blocks.1.resnets.1.norm2.weight 32",
  "up_blocks.1.resnets.1.norm2.bias 32",
  "up_blocks.1.resnets.1.conv2.weight 32x32x3x3",
  "up_blocks.1.resnets.1.conv2.bias 32",
  "up_blocks.1.resnets.1.conv_shortcut.weight 32x64x1x1",
  "up_blocks.1.resnets.1.conv_shortcut.bias 32",
  "up_blocks.1.resnets.2.norm1.weight 64",
  "up_blocks.1.resnets.2.norm1.bias 64",
  "up_blocks.1.resnets.2.conv1.weight 32x64x3x3",
  "up_blocks.1.resnets.2.conv1.bias 32",
  "up_blocks.1.resnets.2.time_emb_proj.weight 32x128",
  "up_blocks.1.resnets.2.time_emb_proj.bias 32",
  "up_blocks.1.resnets.2.norm2.weight 32",
  "up_blocks.1.resnets.2.norm2.bias 32",
  "up_blocks.1.resnets.2.conv2.weight 32x32x3x3",
  "up_blocks.1.resnets.2.conv2.bias 32",
  "up_blocks.1.resnets.2.conv_shortcut.weight 32x64x1x1",
  "up_blocks.1.resnets.2.conv_shortcut.bias 32",
  "mid_block.attentions.0.norm.weight 64",
  "mid_block.attentions.0.norm.bias 64",
  "mid_block.attentions.0.proj_in.weight 64x64x1x1",
  "mid_block.attentions.0.proj_in.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.norm1.weight 64",
  "mid_block.attentions.0.transformer_blocks.0.norm1.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn1.to_v.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.norm2.weight 64",
  "mid_block.attentions.0.transformer_blocks.0.norm2.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.attn2.to_q.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight 64x32",
  "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight 64x32",
  "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.weight 64x64",
  "mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.norm3.weight 64",
  "mid_block.attentions.0.transformer_blocks.0.norm3.bias 64",
  "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight 512x64",
  "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.bias 512",
  "mid_block.attentions.0.transformer_blocks.0.ff.net.2.weight 64x256",
  "mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias 64",
  "mid_block.attentions.0.proj_out.weight 64x64x1x1",
  "mid_block.attentions.0.proj_out.bias 64",
  "mid_block.resnets.0.norm1.weight 64",
  "mid_block.resnets.0.norm1.bias 64",
  "mid_block.resnets.0.conv1.weight 64x64x3x3",
  "mid_block.resnets.0.conv1.bias 64",
  "mid_block.resnets.0.time_emb_proj.weight 64x128",
  "mid_block.resnets.0.time_emb_proj.bias 64",
  "mid_block.resnets.0.norm2.weight 64",
  "mid_block.resnets.0.norm2.bias 64",
  "mid_block.resnets.0.conv2.weight 64x64x3x3",
  "mid_block.resnets.0.conv2.bias 64",
  "mid_block.resnets.1.norm1.weight 64",
  "mid_block.resnets.1.norm1.bias 64",
  "mid_block.resnets.1.conv1.weight 64x64x3x3",
  "mid_block.resnets.1.conv1.bias 64",
  "mid_block.resnets.1.time_emb_proj.weight 64x128",
  "mid_block.resnets.1.time_emb_proj.bias 64",
  "mid_block.resnets.1.norm2.weight 64",
  "mid_block.resnets.1.norm2.bias 64",
  "mid_block.resnets.1.conv2.weight 64x64x3x3",
  "mid_block.resnets.1.conv2.bias 64",
  "conv_norm_out.weight 32",
  "conv_norm_out.bias 32",
  "conv_out.weight 4x32x3x3",
  "conv_out.bias 4",
];

test.run();
