// half-precision storage: exact conversions, half weights in linear/matmul/conv2d (equal to float32
// weights holding the rounded values, within a stated bound of the float32 weights), refusal elsewhere
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { f32ToF16, bf16ToF32, f16ToF32 } from "../../data/safetensors.ts";
import { bf16FromBits, f16FromBits, roundToHalf, toHalfBits, fromHalfBits } from "../../engine/half.ts";
import { DTypeError, ShapeError } from "../../engine/errors.ts";

/** d/dx of sum(y^2), through a fresh backward pass. */
function gradOf(y: T.Tensor, x: T.Tensor): number[] {
  x.grad = null;
  T.sum(T.mul(y, y)).backward();
  return Array.from(x.grad!.data);
}

const bitsOf = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;

/** float32 values of every kind: random over many magnitudes, subnormals, ties, specials. */
function samples(): Float32Array {
  const g = new T.Generator(3);
  const r = T.randn([4000], { generator: g }).data;
  const out: number[] = [];
  for (let i = 0; i < r.length; i++) out.push(r[i]! * 2 ** ((i % 60) - 30));
  out.push(
    0,
    -0,
    1,
    -1,
    65504,
    65519.99,
    65520,
    1e6,
    -1e6,
    2 ** -24,
    2 ** -25,
    1.5 * 2 ** -25,
    2 ** -26,
    6.1e-5,
    3.3e-5,
  );
  out.push(
    1 + 2 ** -8,
    1 + 3 * 2 ** -8,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    3.4e38,
    -3.4e38,
    Infinity,
    -Infinity,
    1e-40,
    -1e-45,
  );
  return Float32Array.from(out);
}

test("float16 rounding equals the scalar reference bit for bit (subnormals, ties, overflow, NaN)", () => {
  const xs = samples();
  for (const x of xs) assert.is(f16FromBits(bitsOf(x)), f32ToF16(x), `f16 of ${x}`);
  assert.is(f16FromBits(bitsOf(NaN)), 0x7e00);
  const back = fromHalfBits(toHalfBits(xs, "float16"), "float16");
  for (let i = 0; i < xs.length; i++)
    assert.ok(Object.is(back[i], Math.fround(f16ToF32(f32ToF16(xs[i]!)))), `${xs[i]}`);
});

test("bfloat16 rounds to nearest even: ties, carries, overflow, NaN; widening is exact", () => {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: even mantissa (1) wins; 1 + 3*2^-8 goes up to 1 + 2^-6
  assert.is(bf16FromBits(bitsOf(1 + 2 ** -8)), 0x3f80);
  assert.is(bf16FromBits(bitsOf(1 + 3 * 2 ** -8)), 0x3f82);
  assert.is(bf16FromBits(bitsOf(1 + 2 ** -8 + 2 ** -20)), 0x3f81);
  assert.is(bf16FromBits(bitsOf(3.4e38)), 0x7f80, "rounds over the largest bfloat16 to infinity");
  assert.is(bf16FromBits(bitsOf(-Infinity)), 0xff80);
  assert.is(bf16FromBits(bitsOf(NaN)), 0x7fc0);
  assert.is(bf16FromBits(bitsOf(-0)), 0x8000);
  const xs = samples();
  const bits = toHalfBits(xs, "bfloat16");
  const back = fromHalfBits(bits, "bfloat16");
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    assert.is(back[i], bf16ToF32(bits[i]!));
    if (!Number.isFinite(x) || Math.abs(x) > 3.38e38 || (bits[i]! & 0x7fff) === 0) continue;
    // nearest: no bfloat16 value is closer (neighbours one unit away on either side)
    const lo = bf16ToF32(bits[i]! - 1),
      hi = bf16ToF32(bits[i]! + 1),
      e = Math.abs(back[i]! - x);
    assert.ok(e <= Math.abs(lo - x) && e <= Math.abs(hi - x), `bf16 of ${x}: ${back[i]} is not the nearest`);
  }
});

test("a half tensor holds 16 bits per element, reads back widened, and converts back exactly", () => {
  const w = T.randn([33, 65], { generator: new T.Generator(1) });
  for (const d of ["bfloat16", "float16"] as const) {
    const h = w.to(d);
    assert.is(h.dtype, d);
    assert.ok(h.rawStorage instanceof Uint16Array && h.rawStorage.byteLength === 2 * w.size, "16 bits per element");
    assert.equal(Array.from(h.data), Array.from(roundToHalf(w.data, d)));
    assert.equal(Array.from(h.to("float32").data), Array.from(h.data));
    const z = T.zeros([5], { dtype: d });
    assert.is(z.dtype, d);
    const c = T.zeros([33, 65], { dtype: d }).copy_(w);
    assert.equal(Array.from(c.data), Array.from(h.data), "copy_ into a half tensor rounds");
  }
});

test("linear, matmul and conv2d with a half weight equal float32 weights holding the rounded values, bit for bit, gradients too", () => {
  const g = new T.Generator(7);
  const x = T.randn([3, 5, 24], { generator: g }).requiresGrad_();
  const w = T.randn([16, 24], { generator: g });
  const b = T.randn([16], { generator: g });
  const xc = T.randn([2, 6, 9, 9], { generator: g }).requiresGrad_();
  const wc = T.randn([8, 6, 3, 3], { generator: g });
  for (const d of ["bfloat16", "float16"] as const) {
    const wr = T.tensor(roundToHalf(w.data, d), w.shape),
      wcr = T.tensor(roundToHalf(wc.data, d), wc.shape);
    const y1 = T.linear(x, w.to(d), b),
      y2 = T.linear(x, wr, b);
    assert.equal(Array.from(y1.data), Array.from(y2.data), `linear ${d}`);
    assert.equal(gradOf(y1, x), gradOf(y2, x), `linear input gradient ${d}`);
    const wt = w.transpose(0, 1),
      wtr = T.tensor(roundToHalf(wt.data, d), wt.shape);
    const m1 = T.matmul(x, wt.to(d)),
      m2 = T.matmul(x, wtr);
    assert.equal(Array.from(m1.data), Array.from(m2.data), `matmul ${d}`);
    const c1 = T.conv2d(xc, wc.to(d), null, { padding: 1 }),
      c2 = T.conv2d(xc, wcr, null, { padding: 1 });
    assert.equal(Array.from(c1.data), Array.from(c2.data), `conv2d ${d}`);
    assert.equal(gradOf(c1, xc), gradOf(c2, xc), `conv2d input gradient ${d}`);
  }
});

test("the stated bound: |y_half - y_f32| <= (u + 2k 2^-24) * sum|x||w| with u = 2^-8 (bfloat16), 2^-11 (float16)", () => {
  const g = new T.Generator(11);
  const k = 320;
  const x = T.randn([64, k], { generator: g }),
    w = T.randn([96, k], { generator: g }).mul(0.05);
  const ref = T.linear(x, w).data;
  const scale = T.matmul(T.abs(x), T.abs(w).transpose(0, 1)).data;
  for (const [d, u] of [
    ["bfloat16", 2 ** -8],
    ["float16", 2 ** -11],
  ] as const) {
    const y = T.linear(x, w.to(d)).data;
    let worst = 0,
      rel = 0;
    for (let i = 0; i < y.length; i++) {
      worst = Math.max(worst, Math.abs(y[i]! - ref[i]!) / ((u + 2 * k * 2 ** -24) * scale[i]!));
      rel = Math.max(rel, Math.abs(y[i]! - ref[i]!) / scale[i]!);
    }
    assert.ok(worst <= 1, `${d}: error ${worst} of the bound`);
    // and the bound is not loose by orders of magnitude: the rounding shows
    assert.ok(rel > u / 64, `${d}: relative error ${rel} is suspiciously small`);
  }
});

test("the widened copy of a half weight goes back to the pool after the op (no op keeps it alive)", () => {
  const x = T.randn([8, 256]),
    w = T.randn([128, 256]).to("bfloat16");
  const before = T.bufferPoolStats();
  T.linear(x, w);
  const after = T.bufferPoolStats();
  assert.is(after.released + after.dropped - before.released - before.dropped, 1);
});

test("half tensors refuse every other use with an error naming the dtype and the way out", () => {
  const h = T.randn([4, 4]).to("bfloat16");
  for (const [what, fn] of [
    ["exp", () => T.exp(h)],
    ["add", () => T.add(h, 1)],
    ["sum", () => T.sum(h)],
    ["matmul of two half tensors", () => T.matmul(h, h)],
    ["3-d half operand", () => T.matmul(T.randn([2, 4, 4]), T.reshape(h, [1, 4, 4]))],
    ["permute", () => h.transpose(0, 1).add(0)],
  ] as const) {
    try {
      fn();
      assert.unreachable(`${what} accepted a bfloat16 tensor`);
    } catch (e) {
      assert.ok(
        e instanceof DTypeError || (what === "3-d half operand" && e instanceof ShapeError),
        `${what}: ${(e as Error).name}`,
      );
      assert.match((e as Error).message, /bfloat16/, what);
    }
  }
  assert.throws(
    () => h.requiresGrad_(),
    (e: Error) => e instanceof DTypeError && /frozen/.test(e.message),
  );
  assert.throws(
    () => T.randn([2]).requiresGrad_().to("float16"),
    (e: Error) => e instanceof DTypeError,
  );
  assert.throws(
    () => T.linear(T.randn([2, 4], { dtype: "float64" }), h),
    (e: Error) => e instanceof DTypeError && /float32/.test(e.message),
  );
});

test.run();
