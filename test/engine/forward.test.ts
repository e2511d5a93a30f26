// hand-computed forward values for ops where a mistake would hide, broadcasting, and error messages
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { assertClose } from "../helpers.ts";

const f64 = { dtype: "float64" as const };

test("softmax: hand values, stability with large inputs, axis", () => {
  // softmax([1, 2, 3]) = e^i / (e + e^2 + e^3)
  const e = [Math.E, Math.E ** 2, Math.E ** 3];
  const s = e[0] + e[1] + e[2];
  assertClose(
    T.softmax(T.tensor([1, 2, 3], undefined, f64)).data,
    e.map((v) => v / s),
    1e-15,
    1e-14,
  );
  // shifting by 1000 must not overflow
  assertClose(
    T.softmax(T.tensor([1001, 1002, 1003], undefined, f64)).data,
    e.map((v) => v / s),
    1e-15,
    1e-14,
  );
  // axis 0 of [[0, ln 3], [0, 0]]: columns [1/2, 1/2] and [3/4, 1/4]
  assertClose(
    T.softmax(
      T.tensor(
        [
          [0, Math.log(3)],
          [0, 0],
        ],
        undefined,
        f64,
      ),
      0,
    ).data,
    [0.5, 0.75, 0.5, 0.25],
    1e-15,
    1e-14,
  );
  // log_softmax([0, 0]) = -ln 2
  assertClose(T.logSoftmax(T.tensor([0, 0], undefined, f64)).data, [-Math.LN2, -Math.LN2], 1e-15, 1e-14);
});

test("group_norm: hand values with affine", () => {
  // N=1, C=2, H=1, W=2, one group: values [1, 2, 3, 4] have mean 2.5, var 1.25
  const x = T.tensor([1, 2, 3, 4], [1, 2, 1, 2], f64);
  const w = T.tensor([2, -1], undefined, f64),
    b = T.tensor([0.5, 0], undefined, f64);
  const inv = 1 / Math.sqrt(1.25 + 1e-5);
  const z = [-1.5, -0.5, 0.5, 1.5].map((v) => v * inv);
  const y = T.groupNorm(x, 1, w, b, 1e-5);
  assertClose(y.data, [2 * z[0] + 0.5, 2 * z[1] + 0.5, -z[2], -z[3]], 1e-14, 1e-13);
  // two groups: each channel normalised alone: [1,2] -> [-1, 1] * 1/sqrt(0.25 + eps)
  const y2 = T.groupNorm(x, 2, null, null, 0);
  assertClose(y2.data, [-1, 1, -1, 1], 1e-14, 1e-13);
});

test("layer_norm: hand values", () => {
  const y = T.layerNorm(
    T.tensor(
      [
        [0, 2],
        [1, 1],
      ],
      undefined,
      f64,
    ),
    [2],
    null,
    null,
    0,
  );
  assertClose(y.data.slice(0, 2), [-1, 1], 1e-14, 1e-13);
  // a constant row normalises to 0 (with eps > 0)
  assertClose(T.layerNorm(T.tensor([[3, 3]], undefined, f64), [2]).data, [0, 0], 1e-12, 0);
});

test("conv2d: padding 1 and stride 2, hand values", () => {
  // 1x1x3x3 input 1..9, kernel of ones 3x3, padding 1, stride 2 -> 2x2 of window sums
  const x = T.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3], f64);
  const w = T.ones([1, 1, 3, 3], f64);
  const y = T.conv2d(x, w, T.tensor([0.5], undefined, f64), { padding: 1, stride: 2 });
  assert.equal(y.shape, [1, 1, 2, 2]);
  // (0,0): 1+2+4+5 = 12; (0,2): 2+3+5+6 = 16; (2,0): 4+5+7+8 = 24; (2,2): 5+6+8+9 = 28
  assertClose(y.data, [12.5, 16.5, 24.5, 28.5], 1e-14, 0);
  // cross-correlation, not convolution: kernel [[1, 0], [0, -1]] on 2x2 [[1, 2], [3, 4]] -> 1 - 4
  const y2 = T.conv2d(T.tensor([1, 2, 3, 4], [1, 1, 2, 2], f64), T.tensor([1, 0, 0, -1], [1, 1, 2, 2], f64));
  assertClose(y2.data, [-3], 1e-14, 0);
  // groups: 2 channels each with its own 1x1 kernel
  const y3 = T.conv2d(T.tensor([1, 2, 3, 4], [1, 2, 1, 2], f64), T.tensor([10, -1], [2, 1, 1, 1], f64), null, {
    groups: 2,
  });
  assertClose(y3.data, [10, 20, -3, -4], 1e-14, 0);
});

test("attention with causal mask: hand values", () => {
  // q = k = [[1], [1]], v = [[1], [3]]: row 0 sees only v0 -> 1; row 1 averages -> 2
  const q = T.tensor([[1], [1]], undefined, f64);
  const v = T.tensor([[1], [3]], undefined, f64);
  assertClose(T.scaledDotProductAttention(q, q, v, { causal: true }).data, [1, 2], 1e-14, 0);
  // without mask, with scale: q=[1], k=[[0],[ln 3]], scale 1 -> weights 1/4, 3/4
  const a = T.scaledDotProductAttention(
    T.tensor([[1]], undefined, f64),
    T.tensor([[0], [Math.log(3)]], undefined, f64),
    v,
    { scale: 1 },
  );
  assertClose(a.data, [0.25 * 1 + 0.75 * 3], 1e-14, 0);
});

test("broadcasting follows NumPy rules", () => {
  const a = T.tensor([[1], [2]], undefined, f64); // (2, 1)
  const b = T.tensor([10, 20, 30], undefined, f64); // (3,)
  const c = T.add(a, b);
  assert.equal(c.shape, [2, 3]);
  assert.equal(c.toArray(), [11, 21, 31, 12, 22, 32]);
  assert.equal(T.sub(5, b).toArray(), [-5, -15, -25]);
  assert.throws(
    () => T.add(T.zeros([2, 3]), T.zeros([4])),
    (e: Error) => e.name === "ShapeError" && /add: shapes \[2,3\] and \[4\]/.test(e.message),
  );
});

test("reductions, movement and indexing", () => {
  const x = T.arange(24, undefined, 1, f64).reshape([2, 3, 4]);
  assert.equal(
    T.sum(x, [0, 2]).toArray(),
    [0 + 1 + 2 + 3 + 12 + 13 + 14 + 15, 4 * 4 + 6 + 4 * 20 + 6, 8 * 4 + 6 + 4 * 24 + 6].map((v, i) => [60, 92, 124][i]),
  );
  assert.equal(T.max(x, 1).toArray(), [8, 9, 10, 11, 20, 21, 22, 23]);
  // NaN propagates through max/min and maximum/minimum wherever it sits (as in torch), on both layouts
  const nan = T.tensor(
    [
      [NaN, 1, 2],
      [3, NaN, -1],
      [0, 5, NaN],
    ],
    undefined,
    f64,
  );
  for (const op of [T.max, T.min]) {
    assert.ok(
      op(nan, 1)
        .toArray()
        .every((v) => Number.isNaN(v)),
      `${op.name} over rows`,
    );
    assert.ok(
      op(nan, 0)
        .toArray()
        .every((v) => Number.isNaN(v)),
      `${op.name} over columns`,
    );
  }
  assert.equal(T.max(T.tensor([1, 4, 2], undefined, f64)).item(), 4);
  const mx = T.maximum(T.tensor([NaN, 1, 2], undefined, f64), T.tensor([0, NaN, 1], undefined, f64)).toArray();
  const mn = T.minimum(T.tensor([NaN, 1, 2], undefined, f64), T.tensor([0, NaN, 1], undefined, f64)).toArray();
  assert.ok(
    Number.isNaN(mx[0]!) &&
      Number.isNaN(mx[1]!) &&
      mx[2] === 2 &&
      Number.isNaN(mn[0]!) &&
      Number.isNaN(mn[1]!) &&
      mn[2] === 1,
    `maximum ${mx} minimum ${mn}`,
  );
  assert.equal(T.mean(x).item(), 11.5);
  assertClose(T.variance(T.tensor([1, 2, 3, 4], undefined, f64)).data, [5 / 3], 1e-15, 1e-14);
  assert.equal(T.permute(x, [2, 0, 1]).shape, [4, 2, 3]);
  assert.equal(T.permute(x, [2, 0, 1]).toArray().slice(0, 6), [0, 4, 8, 12, 16, 20]);
  assert.equal(T.slice(x, [1, 0, 1], [2, 3, 4], [1, 2, 2]).toArray(), [13, 15, 21, 23]);
  assert.equal(T.pad(T.tensor([1, 2]), [[1, 2]], 9).toArray(), [9, 1, 2, 9, 9]);
  assert.equal(T.concat([T.tensor([[1, 2]]), T.tensor([[3, 4]])], 0).toArray(), [1, 2, 3, 4]);
  assert.equal(T.stack([T.tensor([1, 2]), T.tensor([3, 4])], 1).toArray(), [1, 3, 2, 4]);
  assert.equal(
    T.chunk(T.arange(5), 2).map((t) => t.toArray()),
    [
      [0, 1, 2],
      [3, 4],
    ],
  );
  assert.equal(
    T.embedding(
      T.tensor([
        [0, 1],
        [2, 3],
        [4, 5],
      ]),
      [2, 0],
    ).toArray(),
    [4, 5, 0, 1],
  );
  assert.equal(T.upsampleNearest2d(T.tensor([1, 2], [1, 1, 1, 2])).toArray(), [1, 1, 2, 2, 1, 1, 2, 2]);
  assert.equal(T.avgPool2d(T.tensor([1, 2, 3, 4], [1, 1, 2, 2])).toArray(), [2.5]);
  assert.throws(
    () => T.indexSelect(T.zeros([3, 2]), 0, [3]),
    /indexSelect: index 3 at position 0 is out of range \[0, 3\)/,
  );
});

test("matmul: batch broadcast, vectors, shape errors", () => {
  const a = T.tensor(
    [
      [1, 2],
      [3, 4],
    ],
    undefined,
    f64,
  );
  assert.equal(T.matmul(a, a).toArray(), [7, 10, 15, 22]);
  assert.equal(T.matmul(T.tensor([1, 1], undefined, f64), a).toArray(), [4, 6]);
  assert.equal(T.mm(a, a, true, false).toArray(), [10, 14, 14, 20]);
  const b = T.stack([a, T.mul(a, 2)]); // (2, 2, 2)
  assert.equal(T.matmul(b, a).toArray(), [7, 10, 15, 22, 14, 20, 30, 44]);
  assert.throws(
    () => T.matmul(T.zeros([2, 3]), T.zeros([2, 3])),
    (e: Error) =>
      e.name === "ShapeError" && /matmul: inner dimensions differ, a is \[2,3\] and b is \[2,3\]/.test(e.message),
  );
  assert.equal(
    T.linear(
      T.tensor([[1, 2]]),
      T.tensor([
        [1, 0],
        [0, 1],
        [1, 1],
      ]),
      T.tensor([0, 0, 1]),
    ).toArray(),
    [1, 2, 4],
  );
});

test("elementwise values: gelu, quick_gelu, silu, erf, clamp, where, comparisons", () => {
  const x = T.tensor([-1, 0, 0.5, 2], undefined, f64);
  const erf05 = 0.5204998778130465,
    erf1 = 0.8427007929497149,
    erf2s = 0.9544997361036416; // erf(0.5/sqrt2)... see below
  // gelu(x) = x/2 (1 + erf(x / sqrt 2)); erf(1/sqrt2) = 0.6826894921370859, erf(0.5/sqrt2) = 0.3829249225480262, erf(2/sqrt2) = erf2s
  assertClose(
    T.gelu(x).data,
    [-0.5 * (1 - 0.6826894921370859), 0, 0.25 * (1 + 0.3829249225480262), 1 + erf2s],
    1e-15,
    1e-13,
  );
  assertClose(
    T.erf(T.tensor([0.5, 1, -1, 4], undefined, f64)).data,
    [erf05, erf1, -erf1, 0.9999999845827421],
    1e-16,
    1e-14,
  );
  assertClose(
    T.quickGelu(x).data,
    [-1 / (1 + Math.exp(1.702)), 0, 0.5 / (1 + Math.exp(-0.851)), 2 / (1 + Math.exp(-3.404))],
    1e-15,
    1e-13,
  );
  assertClose(T.silu(x).data, [-1 / (1 + Math.E), 0, 0.5 / (1 + Math.exp(-0.5)), 2 / (1 + Math.exp(-2))], 1e-15, 1e-13);
  assert.equal(T.clamp(x, -0.5, 1).toArray(), [-0.5, 0, 0.5, 1]);
  assert.equal(T.where(T.gt(x, 0), x, T.neg(x)).toArray(), [1, 0, 0.5, 2]);
  assert.equal(T.eq(x, 0).toArray(), [0, 1, 0, 0]);
  // float32 erf approximation stays within 2e-7 of float64
  const xs = T.linspace(-4, 4, 101);
  const e32 = T.erf(xs).data,
    e64 = T.erf(T.cast(xs, "float64")).data;
  for (let i = 0; i < 101; i++) assert.ok(Math.abs(e32[i] - e64[i]) < 2e-7, `erf float32 at ${i}`);
});

test("mse loss with a mask averages over the valid region per sample", () => {
  // sample 0: errors [1, 4] with mask [1, 0] -> 1; sample 1: errors [0, 9] mask [1, 1] -> 4.5; mean 2.75
  const p = T.tensor([1, 2, 0, 3], [2, 1, 1, 2], f64),
    t = T.zeros([2, 1, 1, 2], f64);
  const m = T.tensor([1, 0, 1, 1], [2, 1, 1, 2], f64);
  assertClose([T.mseLoss(p, t, m).item()], [2.75], 1e-15, 0);
  // a sample with an empty mask contributes 0, not NaN: (1 + 0) / 2
  const m0 = T.tensor([1, 0, 0, 0], [2, 1, 1, 2], f64);
  assertClose([T.mseLoss(p, t, m0).item()], [0.5], 1e-15, 0);
  // masked-out pixels get exactly zero gradient
  const q = T.tensor([1, 2, 0, 3], [2, 1, 1, 2], { dtype: "float64", requiresGrad: true });
  T.mseLoss(q, t, m).backward();
  assert.equal(q.grad!.data[1], 0);
  assert.ok(q.grad!.data[0] !== 0);
});

test("mse loss with a (B, 1, h, w) mask over C = 3 channels divides by the mask's own sum, not mask x channels", () => {
  // Custom Diffusion's reference: ((mse(pred, target, 'none') * mask).sum([1, 2, 3]) / mask.sum([1, 2, 3])).mean()
  // with mask (B, 1, h, w): the numerator sums all C channels, the denominator counts mask pixels once
  const [B, C, H, W] = [2, 3, 2, 3];
  const g = new T.Generator(21);
  const p = T.randn([B, C, H, W], { generator: g, dtype: "float64" }),
    t = T.randn([B, C, H, W], { generator: g, dtype: "float64" });
  // sample 0: 2 pixels on; sample 1: 5 pixels on, one of them at 0.5 (soft edge)
  const mv = [1, 0, 0, 0, 1, 0, /* sample 1 */ 1, 1, 0, 1, 0.5, 1];
  const m = T.tensor(mv, [B, 1, H, W], f64);
  let total = 0;
  for (let b = 0; b < B; b++) {
    let num = 0,
      den = 0;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const mk = mv[(b * H + y) * W + x]!;
        den += mk;
        for (let c = 0; c < C; c++) {
          const i = ((b * C + c) * H + y) * W + x;
          num += (p.data[i]! - t.data[i]!) ** 2 * mk;
        }
      }
    total += num / den;
  }
  const want = total / B;
  assertClose([T.mseLoss(p, t, m).item()], [want], 0, 1e-14, "masked mse, C = 3");
  // a full mask gives C times the plain mean (the per-pixel error summed over channels)
  const ones = T.ones([B, 1, H, W], f64);
  assertClose([T.mseLoss(p, t, ones).item()], [C * T.mseLoss(p, t).item()], 0, 1e-14, "full mask");
});

test("a dropout probability outside [0, 1) is a ConfigError", () => {
  assert.throws(
    () => T.dropout(T.zeros([2]), 1.5, true),
    (e: Error) => e.name === "ConfigError" && /dropout: p must be in \[0, 1\)/.test(e.message),
  );
});

test("dtype mixing is a DTypeError", () => {
  assert.throws(
    () => T.add(T.zeros([2]), T.zeros([2], f64)),
    (e: Error) => e.name === "DTypeError" && /float32 and float64/.test(e.message),
  );
});

test.run();
