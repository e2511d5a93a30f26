// tests of models/autoencoders: SD-1.x key list, tiny shapes, Downsample2D padding, mid-block Attention and
// DiagonalGaussian by hand, save/load round trip, float64 decoder gradient
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, noGrad, randn, sum, tensor } from "../../../engine/index.ts";
import { ConfigError, ShapeError } from "../../../engine/errors.ts";
import { withInitGenerator, withShapeOnly } from "../../../models/nn/module.ts";
import {
  AutoencoderKL,
  DiagonalGaussianDistribution,
  TINY_VAE,
  VAEAttention,
  VAEDownsample2D,
  parseAutoencoderKLConfig,
} from "../../../models/autoencoders/index.ts";
import type { AutoencoderKLConfig } from "../../../models/autoencoders/index.ts";
import { assertClose } from "../../helpers.ts";

const REF = JSON.parse(fs.readFileSync("/work/shared/data/sd15-state-dict-keys.json", "utf8")) as Record<
  string,
  { config: Record<string, unknown>; keys: [string, number[]][] }
>;
const tiny = (over: Partial<AutoencoderKLConfig> = {}, seed = 0) =>
  withInitGenerator(new Generator(seed), () => AutoencoderKL.fromConfig({ ...TINY_VAE, ...over }));

test("SD-1.x VAE config builds exactly the reference keys and shapes (248 tensors, 83,653,863 params)", () => {
  const ref = REF.vae;
  const cfg = parseAutoencoderKLConfig({
    ...ref.config,
    _class_name: "AutoencoderKL",
    _diffusers_version: "0.21.0",
    force_upcast: true,
  });
  assert.is(cfg.scaling_factor, 0.18215);
  const m = withShapeOnly(() => new AutoencoderKL(cfg));
  const own = m.namedParameters().map(([k, t]) => `${k} [${t.shape}]`);
  assert.equal(
    own,
    ref.keys.map(([k, s]) => `${k} [${s}]`),
  );
  assert.is(own.length, 248);
  assert.is(m.numParameters(), 83_653_863);
});

test("config: unknown keys and non-SD-1.x values are ConfigErrors", () => {
  assert.throws(
    () => parseAutoencoderKLConfig({ bogus: 1 }),
    (e: Error) => e instanceof ConfigError && /bogus/.test(e.message),
  );
  assert.throws(
    () => parseAutoencoderKLConfig({ use_quant_conv: false }),
    (e: Error) => e instanceof ConfigError && /use_quant_conv/.test(e.message),
  );
  assert.throws(
    () => parseAutoencoderKLConfig({ down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"] }),
    (e: Error) => e instanceof ConfigError,
  );
  assert.throws(
    () =>
      AutoencoderKL.fromConfig({
        ...TINY_VAE,
        down_block_types: ["AttnDownEncoderBlock2D" as "DownEncoderBlock2D", "DownEncoderBlock2D"],
      }),
    (e: Error) => e instanceof ConfigError,
  );
});

test("tiny VAE: encode / decode / forward shapes for layers_per_block 1 and 2", () => {
  for (const layers of [1, 2]) {
    const m = tiny({ layers_per_block: layers });
    assert.is(m.encoder.down_blocks[0].resnets.length, layers);
    assert.is(m.decoder.up_blocks[0].resnets.length, layers + 1);
    const x = randn([2, 3, 16, 16], { generator: new Generator(1) });
    const post = m.encode(x);
    assert.equal(post.mean.shape, [2, 4, 8, 8]);
    assert.equal(post.std.shape, [2, 4, 8, 8]);
    assert.equal(m.decode(post.mode()).shape, [2, 3, 16, 16]);
    assert.equal(m.forward(x, { samplePosterior: true, generator: new Generator(2) }).shape, [2, 3, 16, 16]);
  }
  const m = tiny();
  assert.ok(m.stateDict().has("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"), "64 -> 32 needs a shortcut");
  assert.not.ok(m.stateDict().has("decoder.up_blocks.0.resnets.0.conv_shortcut.weight"));
  assert.throws(
    () => m.encode(randn([1, 3, 15, 16])),
    (e: Error) => e instanceof ShapeError,
  );
  assert.throws(
    () => m.decode(randn([1, 3, 8, 8])),
    (e: Error) => e instanceof ShapeError,
  );
});

test("Downsample2D pads right and bottom only, then convolves with stride 2 and no padding", () => {
  const d = new VAEDownsample2D(1);
  d.conv.weight = tensor(new Array(9).fill(1), [1, 1, 3, 3]);
  d.conv.bias = tensor([0]);
  // 3x3 windows over a 4x4 image of ones padded to 5x5 at the far edges: 9, 6 / 6, 4
  assert.equal(Array.from(d.forward(tensor(new Array(16).fill(1), [1, 1, 4, 4])).data), [9, 6, 6, 4]);
});

test("mid-block Attention by hand: group norm, single head with scale 1/sqrt(C), residual", () => {
  const a = new VAEAttention(2, 2, { groups: 2, eps: 1e-6 });
  assert.is(a.heads, 1);
  const I = tensor([
      [1, 0],
      [0, 1],
    ]),
    z = tensor([0, 0]);
  for (const l of [a.to_q, a.to_k, a.to_v, a.to_out[0]]) {
    l.weight = I;
    l.bias = z;
  }
  // channel 0 = [1, 3], channel 1 = [0, 2] over 2 pixels: normalised tokens -n(1,1) and n(1,1), n = 1/sqrt(1 + 1e-6)
  const x = tensor([1, 3, 0, 2], [1, 2, 1, 2]);
  const n = 1 / Math.sqrt(1 + 1e-6);
  const p = 1 / (1 + Math.exp((-4 * n * n) / Math.SQRT2));
  const o = (1 - 2 * p) * n; // attention output of pixel 0 in both channels; pixel 1 gets -o
  assertClose(a.forward(x).data, [1 + o, 3 - o, o, 2 - o], 1e-6, 1e-6);
  assertClose([o], [-0.8883848193], 1e-9, 0, "hand value");
});

test("DiagonalGaussianDistribution: halves, clamped logvar, std, sample = mean + std * eps, mode, kl", () => {
  const mean = [0.5, -1, 2, 0];
  const logvar = [0.2, -40, 25, Math.log(4)];
  const d = new DiagonalGaussianDistribution(tensor([...mean, ...logvar], [1, 2, 2, 2], { dtype: "float64" }));
  assert.equal(Array.from(d.mean.data), mean);
  const lv = [0.2, -30, 20, Math.log(4)];
  assertClose(d.logvar.data, lv, 1e-12, 1e-12, "logvar");
  assertClose(
    d.std.data,
    lv.map((v) => Math.exp(v / 2)),
    1e-12,
    1e-12,
    "std",
  );
  assertClose(
    d.var.data,
    lv.map((v) => Math.exp(v)),
    1e-12,
    1e-12,
    "var",
  );
  const g = new Generator(42);
  const eps = [g.normal(), g.normal(), g.normal(), g.normal()];
  assertClose(
    d.sample(new Generator(42)).data,
    mean.map((m, i) => m + Math.exp(lv[i] / 2) * eps[i]),
    1e-12,
    1e-12,
    "sample",
  );
  assert.is(d.mode(), d.mean);
  const kl = 0.5 * mean.reduce((s, m, i) => s + m * m + Math.exp(lv[i]) - 1 - lv[i], 0);
  assertClose(d.kl().data, [kl], 1e-9, 1e-12, "kl");
});

test("save -> fromPretrained round trip is bit-identical", () => {
  const m = tiny({}, 7);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vae-test-"));
  m.save(dir);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  assert.is(cfg._class_name, "AutoencoderKL");
  const l = AutoencoderKL.fromPretrained(dir);
  const a = m.stateDict(),
    b = l.stateDict();
  assert.equal([...a.keys()], [...b.keys()]);
  for (const [k, t] of a) assert.ok(Buffer.from(t.data.buffer).equals(Buffer.from(b.get(k)!.data.buffer)), k);
  const z = randn([1, 4, 4, 4], { generator: new Generator(3) });
  assert.equal(Array.from(l.decode(z).data), Array.from(m.decode(z).data));
  fs.rmSync(dir, { recursive: true });
});

test("one backward through encode, sample, kl and decode reaches every parameter with a finite, non-zero gradient", () => {
  const m = tiny({}, 5);
  const x = randn([1, 3, 16, 16], { generator: new Generator(6) });
  const post = m.encode(x);
  const y = m.decode(post.sample(new Generator(7)));
  sum(y.mul(randn(y.shape, { generator: new Generator(8) })))
    .add(post.kl().sum().mul(1e-3))
    .backward();
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

test("float64 gradient of the decoder output w.r.t. a conv weight matches central differences", () => {
  const m = tiny({}, 11).toDType("float64");
  const z = randn([1, 4, 4, 4], { dtype: "float64", generator: new Generator(12) });
  const R = randn([1, 3, 8, 8], { dtype: "float64", generator: new Generator(13) });
  const loss = () => sum(m.decode(z).mul(R));
  const w = m.decoder.up_blocks[0].resnets[0].conv1.weight; // (64, 64, 3, 3), before the attention-free up path
  const w2 = m.decoder.mid_block.attentions[0].to_q.weight; // through the mid-block attention softmax
  loss().backward();
  const eps = 1e-6;
  for (const [p, idx] of [
    [w, [0, 1000, 20000, 36863]],
    [w2, [0, 65, 4095]],
  ] as const) {
    const g = p.grad!.data,
      d = p.data;
    for (const i of idx) {
      const orig = d[i];
      d[i] = orig + eps;
      const up = noGrad(() => loss().item());
      d[i] = orig - eps;
      const dn = noGrad(() => loss().item());
      d[i] = orig;
      const num = (up - dn) / (2 * eps);
      assert.ok(Math.abs(num) > 1e-6, `element ${i}: numeric gradient should be non-zero`);
      assertClose([g[i]], [num], 1e-7, 1e-5, `element ${i} of [${p.shape}]`);
    }
  }
});

test.run();
