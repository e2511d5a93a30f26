// the WebAssembly SIMD path of the cpu backend agrees with the plain TypeScript path (odd sizes, strides, padding)
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { closeness } from "../helpers.ts";
import { attentionComposite } from "../../engine/ops/attention.ts";
import {
  PARALLEL_MIN_WORK,
  getNumThreads,
  matmulF32Batched,
  setNumThreads,
} from "../../engine/backend/cpu/wasm/index.ts";
import { WasmRuntime, sgemmKernel } from "../../engine/backend/cpu/wasm/sgemm.ts";

const fastOn = T.useWasmKernels(true);

function both<R>(f: () => R): [R, R] {
  T.useWasmKernels(false);
  const plain = f();
  T.useWasmKernels(true);
  return [plain, f()];
}

// float32 sums of K products: relative error ~ 1e-6 sqrt(K)
const tol = (k: number) => [1e-5 * Math.sqrt(k), 1e-5 * Math.sqrt(k)] as const;

test("WebAssembly SIMD kernels are on where the runtime supports SIMD", () => {
  assert.ok(fastOn, "this Node has WebAssembly SIMD; the fast path should be installed");
  assert.ok(T.getFastKernels());
});

test("matmul: every transpose, odd sizes, batch broadcast", () => {
  const g = new T.Generator(0);
  for (const [m, k, n] of [
    [1, 1, 1],
    [3, 17, 5],
    [17, 63, 65],
    [65, 129, 3],
    [129, 17, 63],
    [1, 65, 129],
    [33, 1, 64],
  ]) {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const a = T.randn(ta ? [2, k, m] : [2, m, k], { generator: g }),
        b = T.randn(tb ? [n, k] : [k, n], { generator: g });
      const [p, f] = both(() => T.mm(a, b, ta, tb).data);
      const [at, rt] = tol(k);
      assert.ok(closeness(f, p, at, rt) <= 1, `mm ${m}x${k}x${n} ${ta} ${tb}`);
    }
  }
  const a = T.randn([3, 1, 17, 65], { generator: g }),
    b = T.randn([2, 65, 33], { generator: g });
  const [p, f] = both(() => T.matmul(a, b).data);
  assert.ok(closeness(f, p, ...tol(65)) <= 1, "broadcast batch");
});

test("conv2d forward and both backward passes: stride 1/2, padding 0/1/2, groups, batch 1, blocks of output rows", () => {
  const g = new T.Generator(1);
  const cases: [number[], number[], T.Conv2dOptions][] = [
    [[1, 3, 17, 17], [8, 3, 3, 3], { padding: 1 }],
    [[2, 16, 9, 13], [32, 16, 3, 3], { stride: 2, padding: 0 }],
    [[1, 8, 15, 15], [16, 8, 3, 3], { stride: 2, padding: 2 }],
    [[2, 32, 8, 8], [64, 32, 1, 1], {}],
    [[1, 12, 10, 10], [12, 4, 3, 3], { groups: 3, padding: 1 }],
    // large enough for several blocks of output rows (with a shorter last block), non-square kernel and stride
    [[1, 64, 37, 65], [8, 64, 3, 3], { padding: 1 }],
    [[2, 48, 30, 41], [6, 48, 3, 5], { stride: [2, 1], padding: [0, 2] }],
    // small images, several per GEMM (a shorter last group of images): odd sizes, stride 2, 3 output channels
    [[19, 5, 5, 7], [6, 5, 3, 3], { padding: 1 }],
    [[21, 7, 9, 9], [3, 7, 3, 3], { stride: 2, padding: 1 }],
    [[17, 33, 4, 4], [65, 33, 3, 3], { padding: 1 }],
    [[9, 6, 6, 5], [10, 6, 2, 3], { stride: [1, 2], padding: [0, 1] }],
    // 3x3, stride 1, padding 1, even sizes: Winograd F(2x2, 3x3) (rows of 4 tiles, 2 x 2 blocks of tiles, one tile at a time)
    [[5, 16, 8, 16], [12, 16, 3, 3], { padding: 1 }],
    [[7, 9, 4, 4], [8, 9, 3, 3], { padding: 1 }],
    [[3, 8, 6, 10], [11, 8, 3, 3], { padding: 1 }],
    [[4, 12, 2, 2], [9, 12, 3, 3], { padding: 1 }],
    [[2, 10, 6, 4], [10, 10, 3, 3], { padding: 1 }],
    // one large image: blocks of tile rows (the weight gradient summed block after block)
    [[1, 72, 64, 62], [9, 72, 3, 3], { padding: 1 }],
  ];
  for (const [xs, ws, o] of cases) {
    const x = T.randn(xs, { generator: g }),
      w = T.randn(ws, { generator: g }),
      r = T.randn(T.conv2d(x, w, null, o).shape, { generator: g });
    const run = () => {
      const xl = x.detach().requiresGrad_(),
        wl = w.detach().requiresGrad_();
      const y = T.conv2d(xl, wl, null, o);
      T.sum(T.mul(y, r)).backward();
      return [Float32Array.from(y.data), Float32Array.from(xl.grad!.data), Float32Array.from(wl.grad!.data)];
    };
    const [p, f] = both(run);
    const k = ws[1] * ws[2] * ws[3];
    ["forward", "grad input", "grad weight"].forEach((what, i) => {
      const kk = i === 2 ? xs[0] * xs[2] * xs[3] : k * 4;
      assert.ok(closeness(f[i], p[i], ...tol(kk)) <= 1, `conv2d ${xs} ${ws} ${JSON.stringify(o)}: ${what}`);
    });
  }
});

/** Runs f with 1 thread and with `n` threads (the pool splits whenever the work allows). */
function threaded<R>(n: number, f: () => R): [R, R] {
  const prev = setNumThreads(1);
  try {
    const one = f();
    setNumThreads(n);
    return [one, f()];
  } finally {
    setNumThreads(prev);
  }
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>): boolean =>
  a.length === b.length && Array.prototype.every.call(a, (x: number, i: number) => Object.is(x, b[i]));

test("threaded GEMM equals single-threaded bit for bit: split by N, by M, by batch, odd sizes", () => {
  const g = new T.Generator(2);
  // sizes above the split threshold so the pool is used; 3 threads also splits unevenly
  const cases: [number, number, number, number, boolean, boolean][] = [
    [1, 129, 1025, 65, false, false],
    [1, 2049, 63, 33, true, false],
    [1, 1, 4099, 1031, false, true],
    [3, 257, 129, 65, true, true],
    [7, 17, 513, 129, false, false],
  ];
  for (const [batch, m, n, k, ta, tb] of cases) {
    assert.ok(batch * m * n * k >= 2 * PARALLEL_MIN_WORK || m === 1, `case ${m}x${n}x${k} is big enough to split`);
    const a = T.randn([batch * m * k], { generator: g }).data as Float32Array,
      b = T.randn([batch * k * n], { generator: g }).data as Float32Array;
    for (const th of [2, 3]) {
      const [one, many] = threaded(th, () => matmulF32Batched(a, b, batch, m, n, k, ta, tb));
      assert.ok(same(one, many), `${batch}x${m}x${n}x${k} ${ta} ${tb}, ${th} threads`);
    }
  }
});

test("fused attention matches the composite: odd sizes, causal, additive and boolean masks, broadcast batch", () => {
  const g = new T.Generator(3);
  const shapes: [number[], number[], number[]][] = [
    [
      [1, 1, 3],
      [1, 1, 3],
      [1, 1, 2],
    ],
    [
      [2, 17, 8],
      [2, 65, 8],
      [2, 65, 5],
    ],
    [
      [3, 63, 16],
      [3, 63, 16],
      [3, 63, 16],
    ],
    [
      [2, 2, 129, 40],
      [2, 2, 77, 40],
      [2, 2, 77, 40],
    ],
    [
      [2, 3, 65, 4],
      [1, 3, 17, 4],
      [1, 3, 17, 3],
    ],
  ];
  for (const [qs, ks, vs] of shapes) {
    const lq = qs[qs.length - 2]!,
      lk = ks[ks.length - 2]!;
    const masks: (T.AttentionOptions & { what: string })[] = [
      { what: "plain" },
      { what: "causal", causal: true },
      { what: "additive row mask", mask: T.randn([lq, lk], { generator: g }) },
      {
        what: "boolean key mask",
        mask: T.tensor(
          Array.from({ length: lk }, (_, j) => (j % 3 === 2 ? 0 : 1)),
          [1, lk],
        ),
        maskIsBoolean: true,
      },
      { what: "causal + scale", causal: true, scale: 0.3 },
    ];
    // causal with lq > lk leaves rows with no key: the composite gives NaN there, the fused kernel zeros (tested below)
    for (const o of masks.filter((m) => !(m.causal && lq > lk))) {
      const q = T.randn(qs, { generator: g }),
        k = T.randn(ks, { generator: g }),
        v = T.randn(vs, { generator: g });
      const r = T.randn(attentionComposite(q, k, v, o).shape, { generator: g });
      const run = (f: typeof attentionComposite) => {
        const [ql, kl, vl] = [q, k, v].map((t) => t.detach().requiresGrad_());
        const y = f(ql!, kl!, vl!, o);
        T.sum(T.mul(y, r)).backward();
        return [y.data, ql!.grad!.data, kl!.grad!.data, vl!.grad!.data];
      };
      const ref = run(attentionComposite),
        got = run(T.scaledDotProductAttention);
      ["output", "grad q", "grad k", "grad v"].forEach((what, i) => {
        assert.ok(closeness(got[i]!, ref[i]!, ...tol(4 * lk)) <= 1, `attention ${qs} ${ks} ${o.what}: ${what}`);
      });
    }
  }
});

test("fused attention with packed heads equals splitting the heads: kept and recomputed probabilities, causal, threads", () => {
  const g = new T.Generator(12);
  const split = (x: T.Tensor, H: number) => {
    const [b, l, hd] = x.shape as [number, number, number];
    return T.reshape(T.permute(T.reshape(x, [b, l, H, hd / H]), [0, 2, 1, 3]), [b * H, l, hd / H]);
  };
  const merge = (x: T.Tensor, H: number) => {
    const [bh, l, w] = x.shape as [number, number, number];
    return T.reshape(T.permute(T.reshape(x, [bh / H, H, l, w]), [0, 2, 1, 3]), [bh / H, l, H * w]);
  };
  // (B, Lq, Lk, H, d, dv): keys short enough to keep the probabilities, long ones recomputed, odd sizes
  const cases: [number, number, number, number, number, number, boolean][] = [
    [2, 64, 77, 4, 8, 8, false],
    [2, 65, 129, 4, 4, 4, false],
    [1, 17, 17, 3, 5, 7, true],
    [3, 33, 300, 2, 16, 8, false],
    [2, 40, 63, 8, 4, 4, true],
  ];
  for (const [b, lq, lk, H, d, dv, causal] of cases) {
    const q = T.randn([b, lq, H * d], { generator: g }),
      k = T.randn([b, lk, H * d], { generator: g }),
      v = T.randn([b, lk, H * dv], { generator: g });
    const r = T.randn([b, lq, H * dv], { generator: g });
    const run = (packed: boolean) => {
      const [ql, kl, vl] = [q, k, v].map((t) => t.detach().requiresGrad_());
      const y = packed
        ? T.scaledDotProductAttention(ql!, kl!, vl!, { heads: H, causal })
        : merge(T.scaledDotProductAttention(split(ql!, H), split(kl!, H), split(vl!, H), { causal }), H);
      T.sum(T.mul(y, r)).backward();
      return [y.data, ql!.grad!.data, kl!.grad!.data, vl!.grad!.data].map((a) => Float32Array.from(a as Float32Array));
    };
    const ref = run(false),
      got = run(true);
    ["output", "grad q", "grad k", "grad v"].forEach((what, i) =>
      assert.ok(
        same(got[i]!, ref[i]!),
        `packed heads [${b},${lq},${lk},${H},${d},${dv}${causal ? ",causal" : ""}] ${what}`,
      ),
    );
    const [one, two] = threaded(2, () => run(true));
    one.forEach((a, i) => assert.ok(same(a, two[i]!), `packed heads threaded ${i}`));
  }
});

test("conv2d forward and backward: threaded equals single-threaded bit for bit", () => {
  const g = new T.Generator(5);
  const x = T.randn([2, 64, 33, 31], { generator: g }),
    w = T.randn([48, 64, 3, 3], { generator: g });
  const run = () => {
    const xl = x.detach().requiresGrad_(),
      wl = w.detach().requiresGrad_();
    const y = T.conv2d(xl, wl, null, { padding: 1, stride: [1, 2] });
    T.sum(T.mul(y, y)).backward();
    return [y.data, xl.grad!.data, wl.grad!.data];
  };
  const [one, two] = threaded(2, run);
  one.forEach((a, i) => assert.ok(same(a, two[i]!), `conv2d threaded ${["forward", "grad input", "grad weight"][i]}`));
  // small images, several per GEMM, and Winograd convolutions: the groups of images do not depend on the thread count
  for (const [xs, ws, st] of [
    [[64, 96, 8, 8], [64, 96, 3, 3], 1],
    [[37, 40, 4, 4], [72, 40, 3, 3], 1],
    [[23, 24, 16, 16], [40, 24, 3, 3], 2],
    [[19, 16, 16, 16], [24, 16, 3, 3], 1],
    [[11, 24, 6, 10], [16, 24, 3, 3], 1],
    [[1, 72, 64, 62], [9, 72, 3, 3], 1],
  ] as const) {
    const xb = T.randn([...xs], { generator: g }),
      wb = T.randn([...ws], { generator: g });
    const runB = () => {
      const xl = xb.detach().requiresGrad_(),
        wl = wb.detach().requiresGrad_();
      const y = T.conv2d(xl, wl, null, { padding: 1, stride: st });
      T.sum(T.mul(y, y)).backward();
      return [y.data, xl.grad!.data, wl.grad!.data];
    };
    for (const th of [2, 3]) {
      const [oneB, manyB] = threaded(th, runB);
      oneB.forEach((a, i) =>
        assert.ok(same(a, manyB[i]!), `conv2d [${xs}] threaded (${th}) ${["forward", "grad input", "grad weight"][i]}`),
      );
    }
  }
});

test("fused attention: threaded equals single-threaded, and a fully masked row gives zeros", () => {
  const g = new T.Generator(4);
  const q = T.randn([5, 200, 24], { generator: g }),
    k = T.randn([5, 300, 24], { generator: g }),
    v = T.randn([5, 300, 8], { generator: g });
  const run = () => {
    const [ql, kl, vl] = [q, k, v].map((t) => t.detach().requiresGrad_());
    const y = T.scaledDotProductAttention(ql!, kl!, vl!, { causal: true });
    T.sum(T.mul(y, y)).backward();
    return [y.data, ql!.grad!.data, kl!.grad!.data, vl!.grad!.data];
  };
  const [one, two] = threaded(2, run);
  one.forEach((x, i) => assert.ok(same(x, two[i]!), `threaded attention output ${i}`));
  const mask = T.tensor([
    [0, 0, 0],
    [-Infinity, -Infinity, -Infinity],
  ]);
  const y = T.scaledDotProductAttention(T.ones([1, 2, 4]), T.ones([1, 3, 4]), T.ones([1, 3, 2]), { mask });
  assert.equal(Array.from(y.data), [1, 1, 0, 0]);
});

test("fused attention keeps short-key probabilities for the backward and returns them after it", () => {
  const g = new T.Generator(8);
  const arena = (sgemmKernel() as WasmRuntime).arena;
  const q = T.randn([3, 50, 16], { generator: g }),
    k = T.randn([3, 20, 16], { generator: g }),
    v = T.randn([3, 20, 8], { generator: g });
  const r = T.randn([3, 50, 8], { generator: g });
  const live0 = arena.stats().live;
  // inference keeps nothing
  T.noGrad(() => T.scaledDotProductAttention(q, k, v));
  assert.is(arena.stats().live, live0, "no block held after an inference call");
  const [ql, kl, vl] = [q, k, v].map((t) => t.detach().requiresGrad_());
  const y = T.scaledDotProductAttention(ql!, kl!, vl!);
  assert.ok(arena.stats().live >= live0 + 3 * 50 * 20 * 4, "probabilities held between forward and backward");
  const loss = T.sum(T.mul(y, r));
  loss.backward(undefined, { retainGraph: true });
  const first = [ql!.grad!.data.slice(), kl!.grad!.data.slice(), vl!.grad!.data.slice()];
  for (const t of [ql, kl, vl]) t!.grad = null;
  loss.backward();
  const second = [ql!.grad!.data, kl!.grad!.data, vl!.grad!.data];
  first.forEach((a, i) => assert.ok(same(a, second[i]!), `a retained graph gives the same gradient twice (${i})`));
  assert.is(arena.stats().live, live0, "the block is returned once the graph is released");
  const ref = (() => {
    const [a, b, c] = [q, k, v].map((t) => t.detach().requiresGrad_());
    T.sum(T.mul(attentionComposite(a!, b!, c!), r)).backward();
    return [a!.grad!.data, b!.grad!.data, c!.grad!.data];
  })();
  second.forEach((a, i) =>
    assert.ok(closeness(a, ref[i]!, ...tol(80)) <= 1, `kept-probability gradient ${i} matches the composite`),
  );
});

test("softmax and log-softmax on the last axis: SIMD rows agree with the plain path, masked rows NaN in both", () => {
  const g = new T.Generator(9);
  for (const shape of [
    [1, 1],
    [3, 1],
    [2, 3, 17],
    [5, 77],
    [4, 129],
    [70000, 5],
    [3, 4096],
    [2, 1, 300000],
  ]) {
    const x = T.randn(shape, { generator: g }).mul(4);
    const n = shape[shape.length - 1]!;
    if (x.size > n) for (let j = 0; j < n; j++) x.data[n + j] = -Infinity; // second row fully masked
    x.data[0] = -Infinity;
    for (const log of [false, true]) {
      const [plain, fastOut] = both(() => (log ? T.logSoftmax(x, -1) : T.softmax(x, -1)).data);
      assert.is(plain.length, fastOut.length);
      for (let i = 0; i < plain.length; i++) {
        const a = plain[i]!,
          b = fastOut[i]!;
        if (Number.isNaN(a) || Number.isNaN(b))
          assert.ok(
            Number.isNaN(a) && Number.isNaN(b),
            `[${shape}] ${log ? "log-" : ""}softmax NaN at ${i}: ${a} vs ${b}`,
          );
        else
          assert.ok(
            a === b || Math.abs(a - b) <= 1e-7 * Math.sqrt(n) * Math.max(1, Math.abs(a)) + 1e-6 * Math.abs(a),
            `[${shape}] ${log ? "log-" : ""}softmax at ${i}: ${a} vs ${b}`,
          );
      }
    }
  }
});

test("exp, sigmoid, silu, gelu and their gradients on large tensors: SIMD agrees with the plain path, extremes included", () => {
  const g = new T.Generator(10);
  for (const n of [2048, 2051, 4099, 300001]) {
    const x = T.randn([n], { generator: g }).mul(6);
    const d = x.data;
    [0, -0, 1e-30, -1e-30, 80, -80, 88, -88, 100, -100, 1e4, -1e4].forEach((v, i) => (d[i * 7] = v));
    const gy = T.randn([n], { generator: g });
    for (const [name, f] of [
      ["exp", (t: T.Tensor) => T.exp(t)],
      ["sigmoid", (t: T.Tensor) => T.sigmoid(t)],
      ["silu", (t: T.Tensor) => T.silu(t)],
      ["gelu", (t: T.Tensor) => T.gelu(t)],
    ] as const) {
      const [plain, fastOut] = both(() => f(x).data);
      for (let i = 0; i < n; i++) {
        const a = plain[i]!,
          b = fastOut[i]!;
        // ~2 ulp of the polynomial plus the division; below 1e-37 only the absolute size matters; the
        // erf approximation (evaluated in float32 here, float64 there) adds ~3e-7 |x| to gelu
        const tol = 4e-7 * Math.abs(a) + 1e-37 + (name === "gelu" ? 3e-7 * Math.abs(d[i]!) : 0);
        assert.ok(a === b || Math.abs(a - b) <= tol, `${name}(${d[i]}) [${n}]: ${a} vs ${b}`);
      }
    }
    const [pgl, fgl] = both(() => {
      const xl = x.detach().requiresGrad_();
      T.sum(T.mul(T.gelu(xl), gy)).backward();
      return xl.grad!.data;
    });
    for (let i = 0; i < n; i++) {
      const tol = 1e-6 * Math.abs(pgl[i]!) + 6e-7 * Math.abs(gy.data[i]!) * (1 + Math.abs(d[i]!)) + 1e-30;
      assert.ok(Math.abs(pgl[i]! - fgl[i]!) <= tol, `gelu grad at ${d[i]}: ${pgl[i]} vs ${fgl[i]}`);
    }
    const [pg, fg] = both(() => {
      const xl = x.detach().requiresGrad_();
      T.sum(T.mul(T.silu(xl), gy)).backward();
      return xl.grad!.data;
    });
    // s (1 + x (1 - s)) cancels near x = -1.28: float32 rounding of its terms bounds the absolute error
    const gd = gy.data;
    for (let i = 0; i < n; i++) {
      const tol = 1e-6 * Math.abs(pg[i]!) + 4e-7 * Math.abs(gd[i]!) * (1 + Math.abs(d[i]!)) + 1e-30;
      assert.ok(Math.abs(pg[i]! - fg[i]!) <= tol, `silu grad at ${d[i]}: ${pg[i]} vs ${fg[i]}`);
    }
  }
});

test("add, sub, mul, div with broadcasting: SIMD equals the plain path bit for bit (same shape, row and channel bias, either side broadcast, blocks of rows)", () => {
  const g = new T.Generator(12);
  const cases: [number[], number[]][] = [
    [[2051], [2051]],
    [
      [3, 5, 7, 67],
      [3, 5, 7, 67],
    ],
    [[64, 33, 65], [65]],
    [[65], [7, 33, 65]],
    [
      [5, 37, 9, 9],
      [1, 37, 1, 1],
    ],
    [
      [1, 37, 1, 1],
      [5, 37, 9, 9],
    ],
    [
      [5, 37, 9, 9],
      [5, 37, 1, 1],
    ],
    [
      [5, 37, 9, 9],
      [37, 1, 1],
    ],
    [
      [33, 1, 129],
      [33, 65, 1],
    ],
    [
      [7, 1, 3, 129],
      [7, 11, 3, 129],
    ],
    [
      [3, 300001],
      [1, 300001],
    ],
    [
      [300001, 3],
      [300001, 1],
    ],
    [
      [2, 600, 1000],
      [2, 600, 1000],
    ],
    [[9, 4099], []],
  ];
  for (const [as, bs] of cases) {
    const a = T.randn(as, { generator: g }),
      b = T.randn(bs, { generator: g }).add(bs.length === 0 ? 3 : 0);
    // zeros, signed zeros, infinities and NaN take the same path through both
    [0, -0, Infinity, -Infinity, NaN, 1e-38, 3e38].forEach((v, i) => (a.data[(i * 131) % a.size] = v));
    for (const op of [T.add, T.sub, T.mul, T.div]) {
      const [p, f] = both(() => op(a, b).data);
      assert.ok(p.length === f.length && p.every((v, i) => Object.is(v, f[i])), `${op.name} [${as}] [${bs}]`);
    }
  }
});

test("sum over axes: SIMD (float64 lanes) equals the plain path bit for bit (rows, columns, runs of axes, odd sizes)", () => {
  const g = new T.Generator(13);
  const cases: [number[], number[]][] = [
    [[2053], [0]],
    [[7, 301], [1]],
    [[301, 7], [0]],
    [
      [5, 33, 17, 3],
      [0, 2, 3],
    ],
    [
      [64, 32, 4, 4],
      [0, 2, 3],
    ],
    [
      [3, 5, 7, 11, 13],
      [0, 1, 3],
    ],
    [
      [64, 19, 131],
      [0, 1],
    ],
    [[9, 400, 3], [1]],
    [
      [2, 3, 4, 5, 6, 7],
      [0, 1, 2, 3, 4, 5],
    ],
    [[16, 1031], [0]],
  ];
  for (const [shape, axes] of cases) {
    const x = T.randn(shape, { generator: g }).mul(1e3);
    [0, -0, 1e-30, 3e38, -3e38].forEach((v, i) => (x.data[(i * 97) % x.size] = v));
    const [p, f] = both(() => T.sum(x, axes).data);
    assert.ok(p.length === f.length && p.every((v, i) => Object.is(v, f[i])), `sum [${shape}] over [${axes}]`);
  }
});

test("Adam and AdamW steps: SIMD (float64 lanes) equals the plain path bit for bit (decoupled and L2 decay, odd sizes, several steps)", () => {
  const g = new T.Generator(14);
  for (const n of [2048, 2053, 70001]) {
    for (const [decoupled, wd] of [
      [true, 0.01],
      [false, 0.05],
      [true, 0],
      [false, 0],
    ] as const) {
      const w0 = T.randn([n], { generator: g }),
        grads = [0, 1, 2].map(() => T.randn([n], { generator: g }).mul(0.1));
      grads[1]!.data[5] = 0;
      const run = () => {
        const w = w0.detach(),
          m = T.zerosLike(w),
          v = T.zerosLike(w);
        const wc = T.zeros([n]).add(w); // a fresh copy the kernel may update in place
        for (let t = 1; t <= 3; t++)
          T.adamUpdate_(wc, grads[t - 1]!, m, v, {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weightDecay: wd,
            decoupled,
            t,
          });
        return [Float32Array.from(wc.data), Float32Array.from(m.data), Float32Array.from(v.data)];
      };
      const [p, f] = both(run);
      ["weight", "m", "v"].forEach((what, i) =>
        assert.ok(
          p[i]!.every((x, j) => Object.is(x, f[i]![j])),
          `adam ${what} n ${n} decoupled ${decoupled} wd ${wd}`,
        ),
      );
    }
  }
});

test("group norm and layer norm backward: SIMD agrees with the plain path (odd sizes, blocks of 64 and tails, offset data, weight only, no affine)", () => {
  const g = new T.Generator(15);
  const gn: [number[], number, "both" | "weight" | "none"][] = [
    [[3, 12, 7, 11], 4, "both"],
    [[2, 320, 9, 7], 32, "both"],
    [[5, 6, 67], 3, "weight"],
    [[1, 128, 33, 33], 8, "none"],
    [[64, 32, 4, 4], 16, "both"],
  ];
  for (const [shape, groups, affine] of gn) {
    const c = shape[1]!;
    const x = T.randn(shape, { generator: g }).mul(3).add(2),
      w = T.randn([c], { generator: g }),
      b = T.randn([c], { generator: g }),
      r = T.randn(shape, { generator: g });
    for (const silu of [false, true]) {
      const [p, f] = both(() => {
        const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
        const y = (silu ? T.groupNormSilu : T.groupNorm)(
          xl!,
          groups,
          affine === "none" ? null : wl!,
          affine === "both" ? bl! : null,
        );
        T.sum(T.mul(y, r)).backward();
        return [
          xl!.grad!.data,
          ...(affine === "none" ? [] : [wl!.grad!.data]),
          ...(affine === "both" ? [bl!.grad!.data] : []),
        ].map((a) => Float32Array.from(a));
      });
      const n = x.size / groups;
      f.forEach((a, i) =>
        assert.ok(
          closeness(a, p[i]!, ...tol(n)) <= 1,
          `groupNorm${silu ? "Silu" : ""} backward [${shape}] g${groups} ${affine} gradient ${i}`,
        ),
      );
    }
  }
  const ln: [number[], number, "both" | "weight" | "none"][] = [
    [[40, 77], 77, "both"],
    [[33, 64], 64, "weight"],
    [[7, 333], 333, "none"],
    [[3000, 1], 1, "both"],
    [[64, 16, 131], 131, "both"],
  ];
  for (const [shape, d, affine] of ln) {
    const x = T.randn(shape, { generator: g }).mul(3).add(1),
      w = T.randn([d], { generator: g }),
      b = T.randn([d], { generator: g }),
      r = T.randn(shape, { generator: g });
    const [p, f] = both(() => {
      const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
      const y = T.layerNorm(xl!, [d], affine === "none" ? null : wl!, affine === "both" ? bl! : null);
      T.sum(T.mul(y, r)).backward();
      return [
        xl!.grad!.data,
        ...(affine === "none" ? [] : [wl!.grad!.data]),
        ...(affine === "both" ? [bl!.grad!.data] : []),
      ].map((a) => Float32Array.from(a));
    });
    f.forEach((a, i) =>
      assert.ok(closeness(a, p[i]!, ...tol(d * 4)) <= 1, `layerNorm backward [${shape}] ${affine} gradient ${i}`),
    );
  }
});

test("fused GEGLU: SIMD and plain kernels agree with the composite (halves, gelu, product) and its gradient", () => {
  const g = new T.Generator(11);
  for (const shape of [
    [3, 6],
    [2, 5, 34],
    [4, 77, 130],
    [2, 16, 1024],
  ]) {
    const h = T.randn(shape, { generator: g }).mul(2);
    const r = T.randn([...shape.slice(0, -1), shape[shape.length - 1]! / 2], { generator: g });
    const run = (fused: boolean) => {
      const hl = h.detach().requiresGrad_();
      const [a, gate] = hl.chunk(2, -1);
      const y = fused ? T.geglu(hl) : T.mul(a!, T.gelu(gate!));
      T.sum(T.mul(y, r)).backward();
      return [y.data, hl.grad!.data];
    };
    const ref = run(false);
    const [plain, fast] = both(() => run(true));
    const d = shape[shape.length - 1]!;
    [plain, fast].forEach((got, k) =>
      got.forEach((x, i) => {
        assert.ok(
          closeness(x, ref[i]!, 2e-6, 1e-6 * Math.sqrt(d)) <= 1,
          `geglu [${shape}] ${k ? "SIMD" : "plain"} ${i ? "gradient" : "output"}`,
        );
      }),
    );
  }
});

test("fused group norm matches the composite: odd sizes, no affine, one group, rank 3, SIMD sizes", () => {
  const g = new T.Generator(6);
  // the last three reach the SIMD kernel (2048 floats and up): group lengths 35, 630 and 17,424 (blocks of 64 and a tail)
  const cases: [number[], number, boolean][] = [
    [[1, 3, 1, 1], 1, true],
    [[2, 6, 17, 3], 3, true],
    [[3, 64, 9], 32, false],
    [[2, 32, 5, 7], 32, true],
    [[2, 320, 9, 7], 32, true],
    [[1, 128, 33, 33], 8, false],
  ];
  for (const [shape, groups, affine] of cases) {
    const c = shape[1]!;
    const x = T.randn(shape, { generator: g }).mul(3).add(1),
      w = T.randn([c], { generator: g }),
      b = T.randn([c], { generator: g });
    const r = T.randn(shape, { generator: g });
    const run = (f: typeof T.groupNorm) => {
      const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
      const y = affine ? f(xl!, groups, wl!, bl!) : f(xl!, groups);
      T.sum(T.mul(y, r)).backward();
      return affine ? [y.data, xl!.grad!.data, wl!.grad!.data, bl!.grad!.data] : [y.data, xl!.grad!.data];
    };
    const ref = run(T.groupNormComposite),
      got = run(T.groupNorm);
    const n = x.size / groups;
    got.forEach((a, i) =>
      assert.ok(closeness(a, ref[i]!, ...tol(n)) <= 1, `groupNorm ${shape} g${groups} output ${i}`),
    );
    // the fused norm-then-silu against the two ops
    const refS = run(((t, gr, wt, bs) => T.silu(T.groupNormComposite(t, gr, wt, bs))) as typeof T.groupNorm),
      gotS = run(T.groupNormSilu);
    gotS.forEach((a, i) =>
      assert.ok(closeness(a, refS[i]!, ...tol(n)) <= 1, `groupNormSilu ${shape} g${groups} output ${i}`),
    );
  }
});

test("fused layer norm matches the composite: odd sizes, no affine, weight only, two axes, SIMD sizes", () => {
  const g = new T.Generator(7);
  // the last four reach the SIMD kernel (2048 floats and up): rows of 77, 64 (blocks of 64 exactly), 333 and 1
  const cases: [number[], number[], "both" | "weight" | "none"][] = [
    [[1, 1], [1], "both"],
    [[3, 17], [17], "both"],
    [[2, 5, 63], [63], "weight"],
    [[4, 65], [65], "none"],
    [[2, 3, 5, 7], [5, 7], "both"],
    [[2, 40, 77], [77], "both"],
    [[4, 77, 64], [64], "weight"],
    [[7, 333], [333], "none"],
    [[2100, 1], [1], "both"],
  ];
  for (const [shape, ns, affine] of cases) {
    const x = T.randn(shape, { generator: g }).mul(3).add(1),
      w = T.randn(ns, { generator: g }),
      b = T.randn(ns, { generator: g });
    const r = T.randn(shape, { generator: g });
    const run = (f: typeof T.layerNorm) => {
      const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
      const y = f(xl!, ns, affine === "none" ? null : wl!, affine === "both" ? bl! : null);
      T.sum(T.mul(y, r)).backward();
      return [
        y.data,
        xl!.grad!.data,
        ...(affine === "none" ? [] : [wl!.grad!.data]),
        ...(affine === "both" ? [bl!.grad!.data] : []),
      ];
    };
    const ref = run(T.layerNormComposite),
      got = run(T.layerNorm);
    const n = ns.reduce((p, v) => p * v, 1);
    assert.is(got.length, ref.length);
    got.forEach((a, i) =>
      assert.ok(closeness(a, ref[i]!, ...tol(n * 4)) <= 1, `layerNorm ${shape} ${affine} output ${i}`),
    );
  }
});

test("group norm and layer norm with variance comparable to eps: SIMD, plain and a float64 reference agree (eps inside the square root)", () => {
  // values ~1e-3: 1 / sqrt(var + eps) and 1 / (sqrt(var) + eps) differ by 40% to 230% here, at var ~ 1 by only ~eps / 2
  const g = new T.Generator(12);
  const check = (got: ArrayLike<number>, want: ArrayLike<number>, n: number, what: string) => {
    const s = closeness(got, want, ...tol(n));
    assert.ok(s <= 1, `${what} (score ${s}, 1 is the tolerance)`);
  };
  // group norm: (2, 32, 5, 7) is 2240 floats (SIMD from 2048), 8 groups of 140
  for (const [scale, offset, eps] of [
    [3e-3, 0, 1e-5],
    [1e-3, 1e-3, 1e-6],
    [1e-3, 0, 1e-5],
  ] as const) {
    const shape = [2, 32, 5, 7],
      groups = 8;
    const x = T.randn(shape, { generator: g }).mul(scale).add(offset),
      w = T.randn([32], { generator: g }),
      b = T.randn([32], { generator: g });
    const r = T.randn(shape, { generator: g });
    const ref = T.groupNormComposite(
      T.cast(x, "float64"),
      groups,
      T.cast(w, "float64"),
      T.cast(b, "float64"),
      eps,
    ).data;
    for (const silu of [false, true]) {
      const run = () => {
        const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
        const y = (silu ? T.groupNormSilu : T.groupNorm)(xl!, groups, wl!, bl!, eps);
        T.sum(T.mul(y, r)).backward();
        return [y.data, xl!.grad!.data, wl!.grad!.data, bl!.grad!.data];
      };
      const [plain, fast] = both(run);
      const what = `group norm${silu ? " + silu" : ""} scale ${scale} eps ${eps}`;
      fast.forEach((a, i) => check(a, plain[i]!, 140, `${what}: SIMD vs plain, output ${i}`));
      if (!silu)
        [plain[0]!, fast[0]!].forEach((y, k) => check(y, ref, 140, `${what}: ${k ? "SIMD" : "plain"} vs float64`));
    }
  }
  // layer norm: rows of 77 (40 x 77 = 3080 floats) and of 333 (7 x 333 = 2331)
  for (const [shape, scale, offset, eps] of [
    [[40, 77], 3e-3, 0, 1e-5],
    [[7, 333], 1e-3, 1e-3, 1e-6],
    [[40, 77], 1e-3, 0, 1e-5],
  ] as const) {
    const d = shape[1];
    const x = T.randn([...shape], { generator: g })
        .mul(scale)
        .add(offset),
      w = T.randn([d], { generator: g }),
      b = T.randn([d], { generator: g });
    const r = T.randn([...shape], { generator: g });
    const ref = T.layerNormComposite(T.cast(x, "float64"), [d], T.cast(w, "float64"), T.cast(b, "float64"), eps).data;
    const run = () => {
      const [xl, wl, bl] = [x, w, b].map((t) => t.detach().requiresGrad_());
      const y = T.layerNorm(xl!, [d], wl!, bl!, eps);
      T.sum(T.mul(y, r)).backward();
      return [y.data, xl!.grad!.data, wl!.grad!.data, bl!.grad!.data];
    };
    const [plain, fast] = both(run);
    const what = `layer norm [${shape}] scale ${scale} eps ${eps}`;
    fast.forEach((a, i) => check(a, plain[i]!, d, `${what}: SIMD vs plain, output ${i}`));
    [plain[0]!, fast[0]!].forEach((y, k) => check(y, ref, d, `${what}: ${k ? "SIMD" : "plain"} vs float64`));
  }
});

test("fused activation backwards match their composite rules (float32 and float64)", () => {
  const g = new T.Generator(8);
  for (const dtype of ["float32", "float64"] as const) {
    const x = T.randn([3, 17, 5], { generator: g, dtype }).mul(3),
      gy = T.randn([3, 17, 5], { generator: g, dtype });
    const grad = (f: (t: T.Tensor) => T.Tensor) => {
      const xl = x.detach().requiresGrad_();
      T.sum(T.mul(f(xl), gy)).backward();
      return xl.grad!.data;
    };
    const s = T.noGrad(() => T.sigmoid(x)),
      t = T.noGrad(() => T.tanh(x));
    const cdf = T.noGrad(() => T.mul(T.add(T.erf(T.mul(x, Math.SQRT1_2)), 1), 0.5));
    const pdf = T.noGrad(() => T.mul(T.exp(T.mul(T.square(x), -0.5)), 1 / Math.sqrt(2 * Math.PI)));
    const expect: [string, (t: T.Tensor) => T.Tensor, T.Tensor][] = [
      ["silu", T.silu, T.mul(gy, T.mul(s, T.add(T.mul(x, T.sub(1, s)), 1)))],
      ["sigmoid", T.sigmoid, T.mul(gy, T.mul(s, T.sub(1, s)))],
      ["tanh", T.tanh, T.mul(gy, T.sub(1, T.square(t)))],
      ["gelu", T.gelu, T.mul(gy, T.add(cdf, T.mul(x, pdf)))],
    ];
    const [at, rt] = dtype === "float32" ? [1e-6, 1e-5] : [1e-13, 1e-12];
    for (const [name, f, want] of expect) assert.ok(closeness(grad(f), want.data, at, rt) <= 1, `${name} ${dtype}`);
  }
});

test("thread count: setNumThreads validates and round-trips", () => {
  const prev = getNumThreads();
  assert.throws(() => setNumThreads(0), RangeError);
  setNumThreads(3);
  assert.is(getNumThreads(), 3);
  setNumThreads(prev);
});

test.run();
