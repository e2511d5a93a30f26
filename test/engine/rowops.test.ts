// the generated WebAssembly row kernels (softmax and attention passes) against plain loops, odd lengths and masked rows
import { test } from "uvu";
import * as assert from "uvu/assert";
import { sgemmKernel, simdAvailable, WasmRuntime } from "../../engine/backend/cpu/wasm/sgemm.ts";

const kern = simdAvailable() ? sgemmKernel() : null;
const wasm = kern instanceof WasmRuntime ? kern : null;

function put(xs: number[] | Float32Array): number {
  const p = wasm!.arena.alloc(xs.length);
  wasm!.arena.heapF32().set(xs, p / 4);
  return p;
}
const get = (p: number, n: number) => Array.from(wasm!.arena.heapF32().subarray(p / 4, p / 4 + n));
const rand = (n: number, seed: number) => Array.from({ length: n }, (_, i) => Math.sin(seed * 97.3 + i * 12.9898) * 4);
const close = (a: number, b: number, tol = 2e-6) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test("the row kernels exist wherever WebAssembly SIMD does (the tests below would pass vacuously otherwise)", () => {
  assert.ok(simdAvailable(), "this Node has WebAssembly SIMD");
  assert.ok(wasm, "the SIMD kernel with its row module");
});

test("rowsSoftmax: each row normalised, max and sum written, a row of -Infinity gives zeros", () => {
  if (!wasm) return;
  for (const n of [1, 3, 4, 17, 77, 130]) {
    const rows = 5,
      stride = n + 3; // rows padded apart
    const x = rand(rows * stride, n);
    for (let j = 0; j < n; j++) x[2 * stride + j] = -Infinity; // row 2 fully masked
    x[4 * stride] = -Infinity; // row 4 partly masked
    const p = put(x),
      mx = put(new Float32Array(rows)),
      sm = put(new Float32Array(rows));
    wasm.rows.rowsSoftmax(p, rows, stride * 4, n, mx, sm);
    const y = get(p, rows * stride),
      M = get(mx, rows),
      S = get(sm, rows);
    for (let r = 0; r < rows; r++) {
      const row = x.slice(r * stride, r * stride + n),
        m = Math.max(...row);
      assert.is(M[r], Math.fround(m), `max of row ${r} (n ${n})`);
      if (m === -Infinity) {
        assert.ok(
          y.slice(r * stride, r * stride + n).every((v) => v === 0),
          "masked row is zeros",
        );
        assert.is(S[r], 0);
        continue;
      }
      const e = row.map((v) => Math.exp(Math.fround(v) - Math.fround(m))),
        s = e.reduce((a, b) => a + b, 0);
      assert.ok(close(S[r]!, s), `sum of row ${r}: ${S[r]} vs ${s}`);
      for (let j = 0; j < n; j++) assert.ok(close(y[r * stride + j]!, e[j]! / s), `row ${r} col ${j}`);
      for (let j = n; j < stride; j++)
        assert.is(y[r * stride + j], Math.fround(x[r * stride + j]!), "padding untouched");
    }
  }
});

test("rowsExpSub, rowsDs, rowsDot, rowsAdd agree with plain loops", () => {
  if (!wasm) return;
  for (const n of [1, 5, 40, 77]) {
    const rows = 4,
      stride = n + 1;
    const x = rand(rows * stride, n + 1),
      c = [0.5, -Infinity, 2, -1];
    const p = put(x),
      cp = put(c);
    wasm.rows.rowsExpSub(p, rows, stride * 4, n, cp);
    const y = get(p, rows * stride);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n; j++) {
        const want = c[r] === -Infinity ? 0 : Math.exp(Math.fround(x[r * stride + j]!) - c[r]!);
        assert.ok(close(y[r * stride + j]!, want), `expSub ${r},${j}`);
      }
    const s = rand(rows * stride, 3),
      q = rand(rows * stride, 4),
      d = rand(rows, 5);
    const sp = put(s),
      qp = put(q),
      dp = put(d);
    wasm.rows.rowsDs(sp, qp, rows, stride * 4, n, dp, 0.25);
    const ds = get(qp, rows * stride);
    assert.equal(get(sp, rows * stride), s.map(Math.fround), "s is read only");
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n; j++) {
        const i = r * stride + j,
          f = Math.fround;
        assert.ok(close(ds[i]!, f(s[i]!) * (f(q[i]!) - f(d[r]!)) * 0.25, 1e-5), `ds ${r},${j}`);
      }
    const a = rand(rows * n, 6),
      b = rand(rows * n, 7),
      ap = put(a),
      bp = put(b),
      op = put(new Float32Array(rows));
    wasm.rows.rowsDot(ap, bp, rows, n, n * 4, op);
    const dots = get(op, rows);
    for (let r = 0; r < rows; r++) {
      let want = 0;
      for (let j = 0; j < n; j++) want += Math.fround(a[r * n + j]!) * Math.fround(b[r * n + j]!);
      assert.ok(close(dots[r]!, want, 1e-5), `dot ${r}`);
    }
    for (const mStride of [0, n]) {
      const t = rand(rows * stride, 8),
        m = rand(rows * n, 9),
        tp = put(t),
        mp = put(m);
      wasm.rows.rowsAdd(tp, rows, stride * 4, n, mp, mStride * 4);
      const got = get(tp, rows * stride);
      for (let r = 0; r < rows; r++)
        for (let j = 0; j < n; j++) {
          assert.is(
            got[r * stride + j],
            Math.fround(Math.fround(t[r * stride + j]!) + Math.fround(m[r * mStride + j]!)),
            `add ${r},${j}`,
          );
        }
    }
  }
});

test("rowsLayerNorm: rstd = 1 / sqrt(var + eps) with var comparable to eps (values ~1e-3), mean and output per row", () => {
  if (!wasm) return;
  for (const [d, eps, scale] of [
    [5, 1e-5, 8e-3],
    [64, 1e-6, 1.5e-3],
    [77, 1e-5, 5e-3],
    [130, 1e-6, 2e-3],
  ] as const) {
    const rows = 3;
    const x = rand(rows * d, d).map((v, i) => Math.fround((v * scale) / 4 + (i % 7) * 1e-4)); // |v| <= scale
    const w = rand(d, d + 1).map(Math.fround),
      b = rand(d, d + 2).map(Math.fround);
    const xp = put(x),
      yp = put(new Float32Array(rows * d)),
      wp = put(w),
      bp = put(b);
    const mp = wasm.arena.alloc(2 * rows),
      rp = wasm.arena.alloc(2 * rows); // float64 slots
    wasm.rows.rowsLayerNorm(xp, yp, rows, d, wp, bp, Math.fround(eps), mp, rp);
    const buf = wasm.arena.memory.buffer;
    const M = Array.from(new Float64Array(buf, mp, rows)),
      R = Array.from(new Float64Array(buf, rp, rows)),
      y = get(yp, rows * d);
    for (let r = 0; r < rows; r++) {
      const row = x.slice(r * d, (r + 1) * d),
        mu = row.reduce((s, v) => s + v, 0) / d;
      const v = row.reduce((s, t) => s + (t - mu) ** 2, 0) / d,
        rs = 1 / Math.sqrt(v + Math.fround(eps));
      assert.ok(v > eps / 10 && v < eps * 10, `d ${d}: variance ${v} is comparable to eps ${eps}`);
      assert.ok(Math.abs(M[r]! - mu) <= 1e-6 * scale, `d ${d} row ${r}: mean ${M[r]} vs ${mu}`);
      // float32 sums: ~1e-8 relative seen; eps outside the root is off by 20% or more here
      assert.ok(
        Math.abs(R[r]! - rs) <= 1e-5 * rs,
        `d ${d} row ${r}: rstd ${R[r]} vs ${rs} (relative error ${Math.abs(R[r]! - rs) / rs})`,
      );
      for (let j = 0; j < d; j++) {
        const want = (row[j]! - mu) * rs * w[j]! + b[j]!;
        assert.ok(
          Math.abs(y[r * d + j]! - want) <= 1e-5 * (Math.abs(w[j]!) + Math.abs(b[j]!)),
          `d ${d} row ${r} col ${j}: ${y[r * d + j]} vs ${want}`,
        );
      }
    }
  }
});

test("im2colS1 / col2imS1 (stride 1, whole images, padded-channel scratch) equal im2col / col2im bit for bit, into a wider patch matrix", () => {
  if (!wasm) return;
  for (const [cg, h, w, kh, kw, ph, pw] of [
    [3, 4, 4, 3, 3, 1, 1],
    [2, 5, 7, 3, 3, 1, 1],
    [4, 8, 8, 3, 3, 1, 1],
    [2, 6, 5, 2, 3, 0, 1],
    [3, 3, 9, 3, 1, 2, 0],
    [1, 16, 16, 1, 1, 0, 0],
    [2, 7, 6, 5, 5, 2, 2],
  ]) {
    const ho = h + 2 * ph - kh + 1,
      wo = w + 2 * pw - kw + 1,
      L = ho * wo,
      R = cg * kh * kw,
      ld = L + 5; // columns of a wider matrix
    const x = rand(cg * h * w, h * 31 + w);
    const xp = put(x),
      padP = put(new Float32Array((h + 2 * ph) * (w + 2 * pw)).fill(7)); // stale scratch contents
    const ref = put(new Float32Array(R * ld).fill(9)),
      got = put(new Float32Array(R * ld).fill(9));
    wasm.rows.im2col(xp, cg, h, w, kh, kw, 1, 1, ph, pw, wo, ref, ld, 0, ho);
    wasm.rows.im2colS1(xp, cg, h, w, kh, kw, ph, pw, ho, wo, got, ld, padP);
    const what = `[${cg},${h},${w}] k ${kh}x${kw} pad ${ph},${pw}`;
    assert.equal(get(got, R * ld), get(ref, R * ld), `im2colS1 ${what}`);
    const col = put(rand(R * ld, R));
    const gRef = put(new Float32Array(cg * h * w)),
      gGot = put(new Float32Array(cg * h * w).fill(5)); // col2imS1 overwrites
    wasm.rows.col2im(gRef, cg, h, w, kh, kw, 1, 1, ph, pw, wo, col, ld, 0, ho);
    wasm.rows.col2imS1(gGot, cg, h, w, kh, kw, ph, pw, ho, wo, col, ld, padP);
    const a = get(gGot, cg * h * w),
      b = get(gRef, cg * h * w);
    assert.ok(
      a.every((v, i) => Object.is(v, b[i])),
      `col2imS1 ${what}`,
    );
  }
});

test("copyRows and the binary row kernels: strided rows, broadcast operands, odd lengths", () => {
  if (!wasm) return;
  for (const n of [1, 3, 4, 9, 33]) {
    const rows = 3,
      src = put(rand(rows * (n + 2), n)),
      dst = put(new Float32Array(rows * (n + 5)).fill(-1));
    wasm.rows.copyRows(src, (n + 2) * 4, dst, (n + 5) * 4, rows, n);
    const s = get(src, rows * (n + 2)),
      d = get(dst, rows * (n + 5));
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n + 5; j++)
        assert.is(d[r * (n + 5) + j], j < n ? s[r * (n + 2) + j] : -1, `copyRows n ${n} row ${r} col ${j}`);
    const a = rand(rows * n, n + 1),
      b = rand(rows, n + 2),
      ap = put(a),
      bp = put(b),
      op = put(new Float32Array(rows * n));
    wasm.rows.binSub(ap, n * 4, 1, bp, 4, 0, op, rows, n); // a[r][j] - b[r]
    const o = get(op, rows * n);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n; j++)
        assert.is(o[r * n + j], Math.fround(Math.fround(a[r * n + j]!) - Math.fround(b[r]!)), `binSub n ${n}`);
    wasm.rows.binDiv(bp, 4, 0, ap, n * 4, 1, op, rows, n); // b[r] / a[r][j]
    const q = get(op, rows * n);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < n; j++)
        assert.is(q[r * n + j], Math.fround(Math.fround(b[r]!) / Math.fround(a[r * n + j]!)), `binDiv n ${n}`);
  }
});

test.run();
