// models with half-precision frozen weights: outputs within the stated bound of float32, loading into
// half precision from any file dtype, trained weights kept float32, checkpoints keeping their dtype
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Generator, noGrad, randn } from "../../engine/index.ts";
import { readSafetensorsHeader } from "../../data/safetensors.ts";
import { parseWeightsDType, setWeightsDType, withInitGenerator } from "../../models/nn/index.ts";
import { TINY_UNET_CONFIG, UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import { isTrained, selectParameters } from "../../tune/params.ts";
import { ConfigError } from "../../engine/errors.ts";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "half-weights-"));
const f32Dir = path.join(dir, "f32");
const base = withInitGenerator(new Generator(5), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG)).eval();
base.save(f32Dir);
const g = new Generator(9);
const x = randn([2, 4, 32, 32], { generator: g }),
  ctx = randn([2, 7, 32], { generator: g });
const run = (m: UNet2DConditionModel) => noGrad(() => m.forward(x, [10, 700], ctx)).data;
const ref = run(base);

/** max |a - b| / max |b| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0,
    s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return d / s;
}

// The stated bound for a whole UNet: max |y_half - y_f32| <= BOUND * max |y_f32| (measured on this
// tiny model: bfloat16 5.4e-3, float16 6.9e-4; each weight is off by at most 2^-8 / 2^-11 relative).
const BOUND = { bfloat16: 2e-2, float16: 3e-3 } as const;

test("UNet with bfloat16 / float16 Linear and Conv2d weights: within the stated bound of float32, and not equal to it", () => {
  for (const d of ["bfloat16", "float16"] as const) {
    const m = UNet2DConditionModel.fromPretrained(f32Dir, { weightsDType: d }).eval();
    const half = m.namedParameters().filter(([, p]) => p.dtype === d);
    const weights = base
      .namedModules()
      .filter(([, mm]) => mm.constructor.name === "Linear" || mm.constructor.name === "Conv2d").length;
    assert.is(half.length, weights, "every Linear/Conv2d weight is half");
    assert.ok(
      half.every(([k]) => k.endsWith(".weight")),
      "biases and norms stay float32",
    );
    const e = relErr(run(m), ref);
    assert.ok(e <= BOUND[d], `${d}: relative error ${e} over the bound ${BOUND[d]}`);
    assert.ok(e > 1e-6, `${d}: ${e} - the weights were not rounded`);
  }
});

test("keepFloat32 keeps trained weights exact; training a half weight is refused with the reason", () => {
  const keep = (k: string) => isTrained(k, "crossattn_kv");
  const m = UNet2DConditionModel.fromPretrained(f32Dir, { weightsDType: "bfloat16", keepFloat32: keep });
  const own = base.stateDict();
  let kv = 0;
  for (const [k, p] of m.namedParameters()) {
    if (!keep(k)) continue;
    kv++;
    assert.is(p.dtype, "float32", k);
    assert.equal(Array.from(p.data), Array.from(own.get(k)!.data), k);
  }
  assert.ok(kv > 0);
  const sel = selectParameters(m, "crossattn_kv");
  assert.is(sel.params.length, kv);
  assert.throws(
    () => selectParameters(m, "full"),
    (e: Error) => e instanceof ConfigError && /bfloat16/.test(e.message) && /float32/.test(e.message),
  );
});

test("a checkpoint saved from a half-precision model keeps its dtype; reloading gives the same values", () => {
  const m = UNet2DConditionModel.fromPretrained(f32Dir, { weightsDType: "bfloat16" });
  const out = path.join(dir, "bf16");
  m.save(out);
  const header = readSafetensorsHeader(path.join(out, "diffusion_pytorch_model.safetensors"));
  for (const [k, p] of m.namedParameters())
    assert.is(header.tensors.get(k)!.dtype, p.dtype === "bfloat16" ? "BF16" : "F32", k);
  const size = fs.statSync(path.join(out, "diffusion_pytorch_model.safetensors")).size;
  const f32Size = fs.statSync(path.join(f32Dir, "diffusion_pytorch_model.safetensors")).size;
  assert.ok(size < 0.6 * f32Size, `bf16 file ${size} bytes vs ${f32Size}`);
  const again = UNet2DConditionModel.fromPretrained(out, { weightsDType: "bfloat16" });
  const wide = UNet2DConditionModel.fromPretrained(out);
  const ms = m.stateDict(),
    ws = wide.stateDict();
  for (const [k, p] of again.namedParameters()) {
    assert.is(p.dtype, ms.get(k)!.dtype, k);
    assert.equal(Array.from(p.data), Array.from(ms.get(k)!.data), k);
    assert.is(ws.get(k)!.dtype, "float32");
    assert.equal(Array.from(ws.get(k)!.data), Array.from(ms.get(k)!.data), `${k} widened`);
  }
  // float16 likewise
  const h = UNet2DConditionModel.fromPretrained(f32Dir, { weightsDType: "float16" });
  const out16 = path.join(dir, "f16");
  h.save(out16);
  const h2 = readSafetensorsHeader(path.join(out16, "diffusion_pytorch_model.safetensors"));
  assert.ok([...h2.tensors.values()].some((e) => e.dtype === "F16"));
});

test("setWeightsDType converts a built model in place and back; names parse", () => {
  const m = withInitGenerator(new Generator(5), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG)).eval();
  const n = setWeightsDType(m, "float16");
  assert.ok(n > 10);
  assert.ok(relErr(run(m), ref) <= BOUND.float16);
  assert.is(setWeightsDType(m, "float32"), n);
  assert.is(parseWeightsDType("bf16"), "bfloat16");
  assert.is(parseWeightsDType("float16"), "float16");
  assert.throws(() => parseWeightsDType("fp8"), /f32, bf16 or f16/);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
