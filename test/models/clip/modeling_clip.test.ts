// tests of models/clip: SD-1.x key list, tiny forward shapes, causal mask, eos pooling, save/load, gradients, hand values
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, noGrad, randn, sum, tensor } from "../../../engine/index.ts";
import type { Tensor } from "../../../engine/index.ts";
import { ConfigError, ShapeError, StateDictError } from "../../../engine/errors.ts";
import { writeSafetensors } from "../../../data/safetensors.ts";
import { CLIPTokenizer } from "../../../data/clip_tokenizer.ts";
import { withInitGenerator, withShapeOnly } from "../../../models/nn/module.ts";
import {
  CLIPAttention,
  CLIPModel,
  CLIPTextModel,
  CLIPTextModelWithProjection,
  CLIPVisionModel,
  CLIPVisionModelWithProjection,
  TINY_CLIP_TEXT,
  TINY_CLIP_VISION,
  eosPositions,
  parseCLIPTextConfig,
} from "../../../models/clip/index.ts";
import type { CLIPTextConfig } from "../../../models/clip/index.ts";
import { assertClose } from "../../helpers.ts";

const REF = JSON.parse(fs.readFileSync("/work/shared/data/sd15-state-dict-keys.json", "utf8")) as Record<
  string,
  { config: Record<string, unknown>; keys: [string, number[]][] }
>;

const tiny = (over: Partial<CLIPTextConfig> = {}, seed = 0) =>
  withInitGenerator(new Generator(seed), () => CLIPTextModel.fromConfig({ ...TINY_CLIP_TEXT, ...over }));
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "clip-test-"));
const rows = (t: Tensor, n: number) =>
  Array.from({ length: t.size / n }, (_, i) => Array.from(t.data.subarray(i * n, (i + 1) * n)));

test("SD-1.x text encoder config builds exactly the reference keys and shapes (196 tensors, 123,060,480 params)", () => {
  const ref = REF.text_encoder;
  const cfg = parseCLIPTextConfig(ref.config);
  assert.is(cfg.eos_token_id, 2);
  assert.is(cfg.hidden_act, "quick_gelu");
  const m = withShapeOnly(() => new CLIPTextModel(cfg));
  const own = m.namedParameters().map(([k, t]) => `${k} [${t.shape}]`);
  assert.equal(
    own,
    ref.keys.map(([k, s]) => `${k} [${s}]`),
  );
  assert.is(own.length, 196);
  assert.is(m.numParameters(), 123_060_480);
});

test("config: unknown keys and unsupported values are ConfigErrors; a CLIPModel config yields its text_config", () => {
  assert.throws(
    () => parseCLIPTextConfig({ hidden_size: 32, bogus: 1 }),
    (e: Error) => e instanceof ConfigError && /bogus/.test(e.message),
  );
  assert.throws(
    () => parseCLIPTextConfig({ hidden_act: "relu" }),
    (e: Error) => e instanceof ConfigError && /hidden_act/.test(e.message),
  );
  assert.throws(
    () => parseCLIPTextConfig({ attention_dropout: 0.1 }),
    (e: Error) => e instanceof ConfigError,
  );
  const c = parseCLIPTextConfig({
    model_type: "clip",
    text_config: { hidden_size: 64, num_attention_heads: 2 },
    vision_config: {},
  });
  assert.is(c.hidden_size, 64);
});

test("tiny text model: forward shapes and input forms agree", () => {
  const m = tiny();
  const ids = [
    [0, 5, 17, 99, 2, 1, 1],
    [0, 44, 2, 1, 1, 1, 1],
  ];
  const o = m.forward(ids);
  assert.equal(o.last_hidden_state.shape, [2, 7, 32]);
  assert.equal(o.pooler_output.shape, [2, 32]);
  const flat = m.forward(ids.flat(), [2, 7]);
  assert.equal(Array.from(flat.last_hidden_state.data), Array.from(o.last_hidden_state.data));
  assert.throws(
    () => m.forward([[0, 1000]]),
    (e: Error) => e instanceof ShapeError,
  );
  assert.throws(
    () => m.forward(new Array(78).fill(1)),
    (e: Error) => e instanceof ShapeError,
  );
});

test("causal mask: changing token j leaves outputs at positions < j unchanged and changes position j", () => {
  const m = tiny();
  const a = [0, 5, 17, 99, 2, 1, 1];
  const b = [...a];
  b[4] = 123;
  const ha = rows(m.forward(a).last_hidden_state, 32),
    hb = rows(m.forward(b).last_hidden_state, 32);
  for (let i = 0; i < 4; i++) assert.equal(hb[i], ha[i], `position ${i}`);
  for (let i = 4; i < 7; i++) assert.not.equal(hb[i], ha[i], `position ${i}`);
});

test("pooling: legacy eos_token_id 2 takes the first largest id; other eos ids take their first occurrence", () => {
  assert.equal(eosPositions([0, 7, 9, 3, 9, 1], 1, 6, 2), [2]);
  assert.equal(eosPositions([0, 7, 9, 3, 9, 1, 4, 4, 4], 3, 3, 4), [0, 0, 0]);
  assert.equal(eosPositions([0, 7, 5, 3, 5, 9], 1, 6, 5), [2]);
  assert.equal(eosPositions([0, 7, 8], 1, 3, 5), [0]);
  const legacy = tiny();
  const ids = [
    [0, 5, 999, 7, 999, 3],
    [0, 12, 2, 1, 1, 1],
  ];
  const o = legacy.forward(ids);
  const h = rows(o.last_hidden_state, 32),
    p = rows(o.pooler_output, 32);
  assert.equal(p[0], h[2]);
  assert.equal(p[1], h[1 * 6 + 1]);
  const modern = tiny({ eos_token_id: 7 });
  const o2 = modern.forward(ids);
  const h2 = rows(o2.last_hidden_state, 32),
    p2 = rows(o2.pooler_output, 32);
  assert.equal(p2[0], h2[3]);
  assert.equal(p2[1], h2[6]);
});

test("pooling with an added token: eos_token_id 2 (the SD-1.x config) pools at <new1>, eos 49407 at end-of-text", () => {
  const tok = CLIPTokenizer.default();
  tok.addTokens(["<new1>"]);
  const ids = tok.encode("a <new1> dog", { maxLength: 8 }); // bos a <new1> dog eos pad pad pad
  assert.equal(ids.slice(0, 5), [49406, 320, 49408, 1929, 49407]);
  for (const [eos, at] of [
    [2, 2],
    [49407, 4],
  ] as const) {
    const m = tiny({ vocab_size: 49408, eos_token_id: eos, bos_token_id: 49406, pad_token_id: 49407 });
    m.text_model.embeddings.addTokenRows(randn([1, 32], { generator: new Generator(3) }));
    const o = m.forward([ids]);
    assert.equal(
      rows(o.pooler_output, 32)[0],
      rows(o.last_hidden_state, 32)[at],
      `eos_token_id ${eos} pools at position ${at}`,
    );
  }
});

test("attention mask: padded keys do not change the attended positions", () => {
  const m = tiny();
  const a = m.forward([[0, 5, 2, 1, 1]]).last_hidden_state;
  const b = m.forward([[0, 5, 2, 8, 9]], undefined, { attentionMask: [[1, 1, 1, 0, 0]] }).last_hidden_state;
  assertClose(b.data.subarray(0, 3 * 32), a.data.subarray(0, 3 * 32), 1e-6, 1e-5, "unpadded positions");
});

test("save -> fromPretrained round trip is bit-identical, and position_ids buffers are accepted", () => {
  const m = tiny({}, 3);
  const dir = tmp();
  m.save(dir);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.is(cfg.model_type, "clip_text_model");
  const l = CLIPTextModel.fromPretrained(dir);
  const a = m.stateDict(),
    b = l.stateDict();
  assert.equal([...a.keys()], [...b.keys()]);
  for (const [k, t] of a) assert.ok(Buffer.from(t.data.buffer).equals(Buffer.from(b.get(k)!.data.buffer)), k);
  const ids = [[0, 3, 4, 2]];
  assert.equal(Array.from(l.forward(ids).pooler_output.data), Array.from(m.forward(ids).pooler_output.data));
  // a transformers checkpoint carrying the position_ids buffer
  const sd = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [k, t] of a) sd.set(k, { shape: t.shape, data: t.data as Float32Array });
  sd.set("text_model.embeddings.position_ids", {
    shape: [1, 77],
    data: Float32Array.from({ length: 77 }, (_, i) => i),
  });
  writeSafetensors(path.join(dir, "model.safetensors"), sd);
  const l2 = CLIPTextModel.fromPretrained(dir);
  assert.equal(Array.from(l2.forward(ids).pooler_output.data), Array.from(m.forward(ids).pooler_output.data));
  // any other stray key is still an error
  sd.set("text_model.extra.weight", { shape: [1], data: new Float32Array(1) });
  writeSafetensors(path.join(dir, "model.safetensors"), sd);
  assert.throws(
    () => CLIPTextModel.fromPretrained(dir),
    (e: Error) => e instanceof StateDictError && /extra/.test(e.message),
  );
  fs.rmSync(dir, { recursive: true });
});

test("float64 gradient of the text output w.r.t. the token_embedding rows used matches central differences", () => {
  const m = tiny({}, 5).toDType("float64");
  const ids = [
    [0, 5, 17, 2],
    [0, 17, 2, 1],
  ];
  const R = randn([2, 4, 32], { dtype: "float64", generator: new Generator(9) });
  const P = randn([2, 32], { dtype: "float64", generator: new Generator(10) });
  const loss = () => {
    const o = m.forward(ids);
    return sum(o.last_hidden_state.mul(R)).add(sum(o.pooler_output.mul(P)));
  };
  const w = m.text_model.embeddings.token_embedding.weight;
  loss().backward();
  const g = w.grad!.data;
  const d = w.data;
  const D = 32,
    eps = 1e-6;
  const probes = [
    [5, 0],
    [5, 13],
    [17, 7],
    [17, 31],
    [2, 4],
    [0, 20],
    [1, 9],
  ];
  for (const [row, col] of probes) {
    const i = row * D + col;
    const orig = d[i];
    d[i] = orig + eps;
    const up = noGrad(() => loss().item());
    d[i] = orig - eps;
    const dn = noGrad(() => loss().item());
    d[i] = orig;
    const num = (up - dn) / (2 * eps);
    assert.ok(Math.abs(num) > 1e-4, `row ${row} col ${col}: numeric gradient should be non-zero`);
    assertClose([g[i]], [num], 1e-7, 1e-5, `d loss / d token_embedding[${row}, ${col}]`);
  }
  for (let c = 0; c < D; c++) assert.is(g[3 * D + c], 0, "an unused row gets no gradient");
});

test("one backward through CLIPModel reaches every parameter with a finite, non-zero gradient", () => {
  const m = withInitGenerator(new Generator(8), () =>
    CLIPModel.fromConfig({ text_config: TINY_CLIP_TEXT, vision_config: TINY_CLIP_VISION, projection_dim: 16 }),
  );
  const o = m.forward(
    [
      [0, 4, 9, 2],
      [0, 11, 2, 1],
    ],
    randn([2, 3, 30, 30], { generator: new Generator(9) }),
  );
  sum(
    o.logits_per_text.mul(
      tensor([
        [1, -2],
        [0.5, 3],
      ]),
    ),
  ).backward();
  for (const [k, p] of m.namedParameters()) {
    assert.ok(p.grad, `${k} has a gradient`);
    const g = p.grad!.data;
    assert.ok(g.every(Number.isFinite), `${k} gradient is finite`);
    assert.ok(
      g.some((v) => v !== 0),
      `${k} gradient is non-zero`,
    );
  }
});

test("CLIPAttention on 2 tokens with hand-set weights (1 head, then 2 heads; causal and not)", () => {
  const set = (a: CLIPAttention, q: number[][], k: number[][], v: number[][], vb: number[]) => {
    a.q_proj.weight = tensor(q);
    a.k_proj.weight = tensor(k);
    a.v_proj.weight = tensor(v);
    a.out_proj.weight = tensor([
      [1, 0],
      [0, 1],
    ]);
    a.q_proj.bias = tensor([0, 0]);
    a.k_proj.bias = tensor([0, 0]);
    a.v_proj.bias = tensor(vb);
    a.out_proj.bias = tensor([0, 0]);
  };
  const I = [
    [1, 0],
    [0, 1],
  ];
  const x = tensor([
    [
      [1, 0],
      [0, 1],
    ],
  ]); // (1, 2, 2)
  const one = new CLIPAttention({
    hidden_size: 2,
    num_attention_heads: 1,
    num_hidden_layers: 1,
    initializer_factor: 1,
  });
  set(
    one,
    I,
    I,
    [
      [1, 0],
      [0, 2],
    ],
    [0, 1],
  );
  // scale 1/sqrt(2): p = sigmoid(1/sqrt(2)) = 0.66976155; v0 = [1, 1], v1 = [0, 3]
  assertClose(one.forward(x).data, [0.6697615493, 1.6604769013, 0.3302384507, 2.3395230987], 1e-6, 1e-6, "1 head");
  assertClose(one.forward(x, { causal: true }).data, [1, 1, 0.3302384507, 2.3395230987], 1e-6, 1e-6, "1 head causal");
  const two = new CLIPAttention({
    hidden_size: 2,
    num_attention_heads: 2,
    num_hidden_layers: 1,
    initializer_factor: 1,
  });
  set(
    two,
    I,
    I,
    [
      [1, 0],
      [0, 2],
    ],
    [0, 1],
  );
  // head dim 1, scale 1: head 0 of token 0 weights keys by softmax([1, 0]) = [e/(e+1), 1/(e+1)]
  assertClose(two.forward(x).data, [0.7310585786, 2, 0.5, 2.4621171573], 1e-6, 1e-6, "2 heads");
});

test("tiny vision model: shapes, pooled = post_layernorm(class token), projection heads", () => {
  const v = withInitGenerator(new Generator(1), () => CLIPVisionModel.fromConfig(TINY_CLIP_VISION));
  const px = randn([2, 3, 30, 30], { generator: new Generator(2) });
  const o = v.forward(px);
  assert.equal(o.last_hidden_state.shape, [2, 226, 32]);
  assert.equal(o.pooler_output.shape, [2, 32]);
  const cls = o.last_hidden_state.slice(1, 0, 1).reshape([2, 32]);
  assert.equal(Array.from(v.vision_model.post_layernorm.forward(cls).data), Array.from(o.pooler_output.data));
  assert.throws(
    () => v.forward(randn([1, 3, 28, 28])),
    (e: Error) => e instanceof ShapeError,
  );
  const keys = v.namedParameters().map(([k]) => k);
  assert.equal(keys.slice(0, 5), [
    "vision_model.embeddings.class_embedding",
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.position_embedding.weight",
    "vision_model.pre_layrnorm.weight",
    "vision_model.pre_layrnorm.bias",
  ]);
  assert.equal(keys.slice(-2), ["vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias"]);
  const vp = CLIPVisionModelWithProjection.fromConfig({ ...TINY_CLIP_VISION, projection_dim: 12 });
  assert.equal(vp.forward(px).image_embeds.shape, [2, 12]);
  assert.equal(vp.visual_projection.bias, null);
  const tp = CLIPTextModelWithProjection.fromConfig({ ...TINY_CLIP_TEXT, projection_dim: 12 });
  assert.equal(tp.forward([[0, 4, 2]]).text_embeds.shape, [1, 12]);
  assert.ok(tp.stateDict().has("text_projection.weight"));
});

test("CLIPModel: transformers keys, features, logits, and towers load from its folder", () => {
  const m = withInitGenerator(new Generator(4), () =>
    CLIPModel.fromConfig({ text_config: TINY_CLIP_TEXT, vision_config: TINY_CLIP_VISION, projection_dim: 16 }),
  );
  const keys = [...m.stateDict().keys()];
  assert.ok(keys[0].startsWith("text_model."));
  assert.equal(keys.slice(-3), ["visual_projection.weight", "text_projection.weight", "logit_scale"]);
  assert.equal(m.logit_scale.shape, []);
  const ids = [
    [0, 4, 9, 2],
    [0, 11, 2, 1],
    [0, 2, 1, 1],
  ];
  const px = randn([2, 3, 30, 30], { generator: new Generator(6) });
  assert.equal(m.getTextFeatures(ids).shape, [3, 16]);
  assert.equal(m.getImageFeatures(px).shape, [2, 16]);
  const o = m.forward(ids, px);
  assert.equal(o.logits_per_text.shape, [3, 2]);
  assert.equal(o.logits_per_image.shape, [2, 3]);
  const lt = o.logits_per_text.data,
    li = o.logits_per_image.data;
  assert.is(li[1 * 3 + 2], lt[2 * 2 + 1]);
  const scale = Math.exp(2.6592);
  for (const v of lt) assert.ok(Math.abs(v) <= scale * (1 + 1e-5), "logits are scaled cosines");
  const dir = tmp();
  m.save(dir);
  const l = CLIPModel.fromPretrained(dir);
  assert.equal(Array.from(l.forward(ids, px).logits_per_text.data), Array.from(lt));
  const t = CLIPTextModel.fromPretrained(dir);
  assert.equal(Array.from(t.forward(ids).pooler_output.data), Array.from(m.text_model.forward(ids).pooler_output.data));
  const tw = CLIPTextModelWithProjection.fromPretrained(dir);
  assert.equal(Array.from(tw.forward(ids).text_embeds.data), Array.from(m.getTextFeatures(ids).data));
  const vw = CLIPVisionModelWithProjection.fromPretrained(dir);
  assert.equal(Array.from(vw.forward(px).image_embeds.data), Array.from(m.getImageFeatures(px).data));
  fs.rmSync(dir, { recursive: true });
});

test.run();
