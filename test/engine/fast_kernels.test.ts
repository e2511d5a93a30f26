// the WebAssembly SIMD path of the cpu backend agrees with the plain TypeScript path (odd sizes, strides, padding)
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { closeness } from "../helpers.ts";

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
  for (const [m, k, n] of [[1, 1, 1], [3, 17, 5], [17, 63, 65], [65, 129, 3], [129, 17, 63], [1, 65, 129], [33, 1, 64]]) {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const a = T.randn(ta ? [2, k, m] : [2, m, k], { generator: g }), b = T.randn(tb ? [n, k] : [k, n], { generator: g });
      const [p, f] = both(() => T.mm(a, b, ta, tb).data);
      const [at, rt] = tol(k);
      assert.ok(closeness(f, p, at, rt) <= 1, `mm ${m}x${k}x${n} ${ta} ${tb}`);
    }
  }
  const a = T.randn([3, 1, 17, 65], { generator: g }), b = T.randn([2, 65, 33], { generator: g });
  const [p, f] = both(() => T.matmul(a, b).data);
  assert.ok(closeness(f, p, ...tol(65)) <= 1, "broadcast batch");
});

test("conv2d forward and both backward passes: stride 1/2, padding 0/1/2, groups, batch 1", () => {
  const g = new T.Generator(1);
  const cases: [number[], number[], T.Conv2dOptions][] = [
    [[1, 3, 17, 17], [8, 3, 3, 3], { padding: 1 }],
    [[2, 16, 9, 13], [32, 16, 3, 3], { stride: 2, padding: 0 }],
    [[1, 8, 15, 15], [16, 8, 3, 3], { stride: 2, padding: 2 }],
    [[2, 32, 8, 8], [64, 32, 1, 1], {}],
    [[1, 12, 10, 10], [12, 4, 3, 3], { groups: 3, padding: 1 }],
  ];
  for (const [xs, ws, o] of cases) {
    const x = T.randn(xs, { generator: g }), w = T.randn(ws, { generator: g }), r = T.randn(T.conv2d(x, w, null, o).shape, { generator: g });
    const run = () => {
      const xl = x.detach().requiresGrad_(), wl = w.detach().requiresGrad_();
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

test.run();
