// every differentiable op the engine exports has a float64 finite-difference gradient check here
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { gradcheck, rnd } from "../helpers.ts";

type Check = () => void;
const CHECKS: Record<string, Check> = {};
const def = (name: string, c: Check) => (CHECKS[name] = c);

// unary, default tolerance atol 1e-7 + rtol 1e-5 (eps 1e-6)
def("neg", () => gradcheck("neg", T.neg, [rnd([2, 3], 1)]));
def("exp", () => gradcheck("exp", T.exp, [rnd([2, 3], 2)]));
def("log", () => gradcheck("log", T.log, [rnd([2, 3], 3, { positive: true })]));
def("sqrt", () => gradcheck("sqrt", T.sqrt, [rnd([2, 3], 4, { positive: true })]));
def("rsqrt", () => gradcheck("rsqrt", T.rsqrt, [rnd([2, 3], 5, { positive: true })]));
def("abs", () => gradcheck("abs", T.abs, [rnd([2, 3], 6, { margin: 0.1 })]));
def("square", () => gradcheck("square", T.square, [rnd([2, 3], 7)]));
def("reciprocal", () => gradcheck("reciprocal", T.reciprocal, [rnd([2, 3], 8, { margin: 0.3 })]));
def("tanh", () => gradcheck("tanh", T.tanh, [rnd([2, 3], 9)]));
def("sigmoid", () => gradcheck("sigmoid", T.sigmoid, [rnd([2, 3], 10)]));
def("relu", () => gradcheck("relu", T.relu, [rnd([2, 3], 11, { margin: 0.1 })]));
def("silu", () => gradcheck("silu", T.silu, [rnd([2, 3], 12)]));
def("gelu", () => gradcheck("gelu", T.gelu, [rnd([3, 4], 13).mul(2)]));
def("geluTanh", () => gradcheck("geluTanh", T.geluTanh, [rnd([3, 4], 14).mul(2)]));
def("erf", () => gradcheck("erf", T.erf, [rnd([3, 4], 15).mul(2)]));
def("sin", () => gradcheck("sin", T.sin, [rnd([2, 3], 16)]));
def("cos", () => gradcheck("cos", T.cos, [rnd([2, 3], 17)]));
// binary, with broadcasting on both sides
def("add", () => gradcheck("add", T.add, [rnd([2, 3, 4], 20), rnd([3, 1], 21)]));
def("sub", () => gradcheck("sub", T.sub, [rnd([2, 1, 4], 22), rnd([3, 1], 23)]));
def("mul", () => gradcheck("mul", T.mul, [rnd([2, 3, 4], 24), rnd([1, 3, 1], 25)]));
def("div", () => gradcheck("div", T.div, [rnd([2, 3], 26), rnd([2, 1], 27, { margin: 0.5 })]));
def("pow", () => gradcheck("pow", T.pow, [rnd([2, 3], 28, { positive: true }), rnd([3], 29)]));
def("maximum", () => gradcheck("maximum", T.maximum, [rnd([2, 3], 30), rnd([3], 31)]));
def("minimum", () => gradcheck("minimum", T.minimum, [rnd([2, 3], 32), rnd([2, 1], 33)]));
def("where", () => {
  const c = T.tensor([[1], [0]], undefined, { dtype: "float64" });
  gradcheck("where", (a, b) => T.where(c, a, b), [rnd([2, 3], 34), rnd([3], 35)]);
});
def("clamp", () => gradcheck("clamp", (x) => T.clamp(x, -0.5, 0.7), [rnd([4, 5], 36).mul(0.97).add(0.013)]));
def("cast", () =>
  gradcheck("cast", (x) => T.cast(T.cast(x, "float32").mul(3), "float64"), [rnd([2, 3], 37)], {
    eps: 1e-2,
    atol: 1e-4,
    rtol: 1e-4,
  }),
);
// reductions
def("sum", () => {
  gradcheck("sum axes", (x) => T.sum(x, [0, 2]), [rnd([2, 3, 4], 40)]);
  gradcheck("sum keepdim", (x) => T.sum(x, -1, true), [rnd([2, 3, 4], 41)]);
  gradcheck("sum all", (x) => T.sum(x), [rnd([2, 3], 42)]);
});
def("mean", () => gradcheck("mean", (x) => T.mean(x, [1], true), [rnd([2, 3, 4], 43)]));
def("max", () => gradcheck("max", (x) => T.max(x, 1), [rnd([3, 5, 2], 44)]));
def("min", () => gradcheck("min", (x) => T.min(x, [0, 2], true), [rnd([3, 5, 2], 45)]));
def("variance", () => {
  gradcheck("var", (x) => T.variance(x, 1), [rnd([3, 5], 46)]);
  gradcheck("var pop", (x) => T.variance(x, [0, 1], true, 0), [rnd([3, 5], 47)]);
});
// movement
def("reshape", () => gradcheck("reshape", (x) => T.reshape(x, [3, -1]).mul(x.reshape([3, 4])), [rnd([2, 6], 50)]));
def("permute", () => gradcheck("permute", (x) => T.permute(x, [2, 0, 1]), [rnd([2, 3, 4], 51)]));
def("transpose", () => gradcheck("transpose", (x) => T.transpose(x, 0, 2), [rnd([2, 3, 4], 52)]));
def("expand", () => gradcheck("expand", (x) => T.expand(x, [2, 3, 4]), [rnd([3, 1], 53)]));
def("squeeze", () => gradcheck("squeeze", (x) => T.squeeze(x, 1).mul(2), [rnd([3, 1, 2], 54)]));
def("unsqueeze", () => gradcheck("unsqueeze", (x) => T.unsqueeze(x, 0).expand([2, 3, 2]), [rnd([3, 2], 55)]));
def("flatten", () =>
  gradcheck("flatten", (x) => T.flatten(x, 1).mul(T.arange(12, undefined, 1, { dtype: "float64" })), [
    rnd([2, 3, 4], 56),
  ]),
);
def("slice", () => {
  gradcheck("slice", (x) => T.slice(x, [0, 1, -3], [2, 3, 5]), [rnd([3, 4, 5], 57)]);
  gradcheck("slice step", (x) => T.slice(x, [1, 0, 0], [3, 4, 5], [1, 2, 3]), [rnd([3, 4, 5], 58)]);
});
def("narrowSlice", () => gradcheck("narrowSlice", (x) => T.narrowSlice(x, 1, 1, 3), [rnd([2, 4], 59)]));
def("pad", () =>
  gradcheck(
    "pad",
    (x) =>
      T.pad(
        x,
        [
          [0, 1],
          [2, 1],
        ],
        0.5,
      ),
    [rnd([2, 3], 60)],
  ),
);
def("concat", () => gradcheck("concat", (a, b) => T.concat([a, b, a], 1), [rnd([2, 3], 61), rnd([2, 2], 62)]));
def("stack", () => gradcheck("stack", (a, b) => T.stack([a, b], 1), [rnd([2, 3], 63), rnd([2, 3], 64)]));
def("split", () => gradcheck("split", (x) => T.split(x, [1, 3], 1), [rnd([2, 4], 65)]));
def("chunk", () => gradcheck("chunk", (x) => T.chunk(x, 3, 0), [rnd([5, 2], 66)]));
def("indexSelect", () => gradcheck("indexSelect", (x) => T.indexSelect(x, 0, [2, 0, 2, 1]), [rnd([3, 4], 67)]));
def("indexAdd", () => gradcheck("indexAdd", (x) => T.indexAdd([3, 2], 0, [2, 0, 2], x), [rnd([3, 2], 68)]));
def("contiguousCopy", () => gradcheck("contiguousCopy", (x) => T.contiguousCopy(x).mul(x), [rnd([2, 3], 69)]));
// linear algebra and nn
def("mm", () => {
  for (const [ta, tb] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as const) {
    const a = ta ? rnd([2, 4, 3], 70) : rnd([2, 3, 4], 70);
    const b = tb ? rnd([5, 4], 71) : rnd([4, 5], 71);
    gradcheck(`mm ${ta} ${tb}`, (x, y) => T.mm(x, y, ta, tb), [a, b]);
    gradcheck(`mm batched ${ta} ${tb}`, (x, y) => T.mm(x, y, ta, tb), [
      a,
      tb ? rnd([2, 5, 4], 72) : rnd([2, 4, 5], 72),
    ]);
  }
  gradcheck("mm broadcast batch", (x, y) => T.mm(x, y), [rnd([3, 1, 2, 4], 73), rnd([2, 4, 3], 74)]);
  // a weight with leading 1s shared by two batch axes: its gradient is one GEMM over the stacked rows
  gradcheck("mm shared weight, two batch axes", (x, y) => T.mm(x, y), [rnd([2, 3, 2, 4], 82), rnd([1, 4, 5], 83)]);
  gradcheck("mm shared transposed weight, two batch axes", (x, y) => T.mm(x, y, false, true), [
    rnd([2, 3, 2, 4], 84),
    rnd([1, 1, 5, 4], 85),
  ]);
});
def("matmul", () => {
  gradcheck("matmul vec-mat", T.matmul, [rnd([4], 75), rnd([2, 4, 3], 76)]);
  gradcheck("matmul mat-vec", T.matmul, [rnd([3, 4], 77), rnd([4], 78)]);
});
def("linear", () => gradcheck("linear", T.linear, [rnd([2, 3, 4], 79), rnd([5, 4], 80), rnd([5], 81)]));
def("conv2d", () => {
  gradcheck("conv2d stride 2 pad 1", (x, w, b) => T.conv2d(x, w, b, { stride: 2, padding: 1 }), [
    rnd([2, 3, 5, 6], 82),
    rnd([4, 3, 3, 3], 83),
    rnd([4], 84),
  ]);
  gradcheck("conv2d groups 2 pad (0,2)", (x, w) => T.conv2d(x, w, null, { groups: 2, padding: [0, 2] }), [
    rnd([1, 4, 4, 3], 85),
    rnd([6, 2, 2, 3], 86),
  ]);
  gradcheck("conv2d 1x1", (x, w) => T.conv2d(x, w), [rnd([2, 3, 3, 3], 87), rnd([2, 3, 1, 1], 88)]);
});
def("upsampleNearest2d", () => gradcheck("upsample", (x) => T.upsampleNearest2d(x, 2), [rnd([1, 2, 2, 3], 89)]));
def("poolSum", () => gradcheck("poolSum", (x) => T.poolSum(x, 2, 0.3), [rnd([1, 2, 4, 6], 90)]));
def("avgPool2d", () => gradcheck("avgPool2d", (x) => T.avgPool2d(x, 2), [rnd([2, 1, 4, 4], 91)]));
def("softmax", () => gradcheck("softmax", (x) => T.softmax(x, 1), [rnd([2, 4, 3], 92)]));
def("logSoftmax", () => gradcheck("logSoftmax", (x) => T.logSoftmax(x, -1), [rnd([2, 5], 93)]));
// composites
def("quickGelu", () => gradcheck("quickGelu", T.quickGelu, [rnd([3, 4], 100)]));
def("layerNorm", () => {
  // the fused primitive (single-pass kernel, analytic backward): affine, weight only, none, two normalised axes
  gradcheck("layerNorm", (x, w, b) => T.layerNorm(x, [4], w, b), [rnd([2, 3, 4], 101), rnd([4], 102), rnd([4], 103)]);
  gradcheck("layerNorm weight only", (x, w) => T.layerNorm(x, [5], w, null, 1e-3), [rnd([3, 5], 129), rnd([5], 130)]);
  gradcheck("layerNorm no affine two axes", (x) => T.layerNorm(x, [2, 3], null, null, 1e-3), [rnd([2, 2, 3], 131)]);
  gradcheck("layerNorm composite", (x, w, b) => T.layerNormComposite(x, [4], w, b), [
    rnd([2, 3, 4], 101),
    rnd([4], 102),
    rnd([4], 103),
  ]);
});
def("groupNorm", () => {
  gradcheck("groupNorm", (x, w, b) => T.groupNorm(x, 2, w, b, 1e-5), [
    rnd([2, 4, 3, 3], 104),
    rnd([4], 105),
    rnd([4], 106),
  ]);
  gradcheck("groupNorm no affine rank 3", (x) => T.groupNorm(x, 3, null, null, 1e-3), [rnd([2, 6, 5], 128)]);
});

def("geglu", () => {
  gradcheck("geglu", (h) => T.geglu(h), [rnd([2, 3, 8], 135)]);
  gradcheck("geglu rank 1", (h) => T.geglu(h), [rnd([6], 136)]);
});

def("groupNormSilu", () => {
  gradcheck("groupNormSilu", (x, w, b) => T.groupNormSilu(x, 2, w, b, 1e-5), [
    rnd([2, 4, 3, 3], 131),
    rnd([4], 132),
    rnd([4], 133),
  ]);
  gradcheck("groupNormSilu no affine rank 3", (x) => T.groupNormSilu(x, 3, null, null, 1e-3), [rnd([2, 6, 5], 134)]);
});
def("scaledDotProductAttention", () => {
  gradcheck("attention", (q, k, v) => T.scaledDotProductAttention(q, k, v), [
    rnd([2, 3, 4], 107),
    rnd([2, 5, 4], 108),
    rnd([2, 5, 2], 109),
  ]);
  gradcheck("attention causal", (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true }), [
    rnd([2, 4, 3], 110),
    rnd([2, 4, 3], 111),
    rnd([2, 4, 3], 112),
  ]);
  // the fused primitive's analytic backward: Lq < Lk causal offset, additive row mask, broadcast batch
  gradcheck("attention causal Lq<Lk", (q, k, v) => T.scaledDotProductAttention(q, k, v, { causal: true, scale: 0.7 }), [
    rnd([1, 3, 2], 121),
    rnd([1, 5, 2], 122),
    rnd([1, 5, 3], 123),
  ]);
  const mask = rnd([3, 4], 124);
  gradcheck("attention mask broadcast", (q, k, v) => T.scaledDotProductAttention(q, k, v, { mask }), [
    rnd([2, 2, 3, 2], 125),
    rnd([1, 2, 4, 2], 126),
    rnd([2, 1, 4, 2], 127),
  ]);
  // heads packed in the last axis (B, L, H d)
  gradcheck("attention packed heads", (q, k, v) => T.scaledDotProductAttention(q, k, v, { heads: 2 }), [
    rnd([2, 3, 4], 137),
    rnd([2, 5, 4], 138),
    rnd([2, 5, 6], 139),
  ]);
  gradcheck(
    "attention packed heads causal",
    (q, k, v) => T.scaledDotProductAttention(q, k, v, { heads: 3, causal: true }),
    [rnd([1, 3, 6], 140), rnd([1, 4, 6], 141), rnd([1, 4, 3], 142)],
  );
});
def("dropout", () => gradcheck("dropout", (x) => T.dropout(x, 0.4, true, new T.Generator(7)), [rnd([4, 5], 113)]));
def("mseLoss", () => {
  const mask = T.tensor([1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], [2, 1, 2, 4], { dtype: "float64" });
  gradcheck("mseLoss masked", (p, t) => T.mseLoss(p, t, mask), [rnd([2, 3, 2, 4], 114), rnd([2, 3, 2, 4], 115)]);
  gradcheck("mseLoss", (p, t) => T.mseLoss(p, t), [rnd([2, 3], 116), rnd([2, 3], 117)]);
});
def("embedding", () => gradcheck("embedding", (w) => T.embedding(w, [1, 3, 1, 0], [2, 2]), [rnd([4, 3], 118)]));
def("crossEntropy", () => gradcheck("crossEntropy", (x) => T.crossEntropy(x, [2, 0, 1]), [rnd([3, 4], 119)]));

test("every exported differentiable op has a gradient check", () => {
  const missing = T.DIFFERENTIABLE_OPS.filter((n) => !(n in CHECKS));
  assert.equal(missing, [], `ops without a gradient check: ${missing.join(", ")}`);
  const unknown = Object.keys(CHECKS).filter((n) => !(T.DIFFERENTIABLE_OPS as readonly string[]).includes(n));
  assert.equal(unknown, [], `checks for ops that are not in the registry: ${unknown.join(", ")}`);
  for (const n of T.DIFFERENTIABLE_OPS)
    assert.type((T as unknown as Record<string, unknown>)[n], "function", `${n} is exported`);
});

for (const [name, check] of Object.entries(CHECKS)) test(`gradcheck ${name}`, check);

test("gradcheck catches a wrong gradient", () => {
  // a deliberately wrong backward must be reported
  const bad = (x: Tensor) => T.add(T.mul(x, 2), T.mul(T.tensor(x.data.slice(), x.shape, { dtype: "float64" }), 1));
  assert.throws(() => gradcheck("bad", (x) => bad(x).mul(x), [rnd([3], 120)]));
});

test.run();
