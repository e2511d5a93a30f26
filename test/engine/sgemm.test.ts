// SGEMM kernels (relaxed-SIMD wasm, plain wasm SIMD, TypeScript) against a float64 reference, and the
// wasm arena allocator. Relative tolerance: max|C - R| <= 1e-5 * sqrt(K) * max(max|R|, 1).

import v8 from "node:v8";
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  WasmArena,
  matmulF32,
  matmulF32Batched,
  relaxedSimdAvailable,
  sgemmKernel,
  sgemmTS,
  simdAvailable,
  sizeClass,
  type SgemmVariant,
} from "../../engine/backend/cpu/wasm/index.ts";
import { ShapeError } from "../../engine/errors.ts";

// lets Node 20 validate relaxed SIMD so the fused kernel is covered too (features are probed lazily,
// so this runs before the first probe unless another test file probed first)
try {
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
} catch {
  /* flag unknown: relaxed SIMD is then probed as is */
}

const variants: SgemmVariant[] = ["ts"];
if (simdAvailable()) variants.push("simd");
if (relaxedSimdAvailable()) variants.push("relaxed");

let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32 - 0.5;
}
function randArray(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rand();
  return a;
}

/** float64 C = alpha * op(A) op(B) + beta * C0 with leading dimensions. */
function reference(
  tA: boolean,
  tB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C0: Float32Array,
  ldc: number,
): Float64Array {
  const R = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[tA ? k * lda + i : i * lda + k]! * B[tB ? j * ldb + k : k * ldb + j]!;
      R[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * C0[i * ldc + j]!);
    }
  }
  return R;
}

function checkClose(
  C: Float32Array,
  ldc: number,
  R: Float64Array,
  M: number,
  N: number,
  K: number,
  what: string,
): void {
  let maxR = 0;
  for (let i = 0; i < R.length; i++) maxR = Math.max(maxR, Math.abs(R[i]!));
  const tol = 1e-5 * Math.sqrt(Math.max(K, 1)) * Math.max(maxR, 1);
  let worst = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      const e = Math.abs(C[i * ldc + j]! - R[i * N + j]!);
      if (!(e <= worst)) worst = e; // NaN-safe: NaN always becomes worst
    }
  }
  assert.ok(worst <= tol, `${what}: max error ${worst} > ${tol}`);
}

/** Runs one case through the pointer API of `variant` and checks it, including untouched padding. */
function runCase(
  variant: SgemmVariant,
  arena: WasmArena,
  tA: boolean,
  tB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  beta: number,
  pad: number,
  blocks?: { mc: number; kc: number; nc: number },
): void {
  const lda = (tA ? M : K) + pad,
    ldb = (tB ? K : N) + pad,
    ldc = N + pad;
  const A = randArray((tA ? K : M) * lda);
  const B = randArray((tB ? N : K) * ldb);
  const C0 = randArray(M * ldc);
  if (beta === 0) C0.fill(NaN); // beta = 0 must overwrite, not propagate NaN
  const R = reference(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
  const kern = sgemmKernel(variant, blocks ? { arena, blocks } : { arena });
  const pa = arena.alloc(A.length),
    pb = arena.alloc(B.length),
    pc = arena.alloc(C0.length);
  const h = arena.heapF32();
  h.set(A, pa / 4);
  h.set(B, pb / 4);
  h.set(C0, pc / 4);
  kern.sgemm(tA, tB, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc);
  const C = arena.f32view(pc, C0.length).slice();
  const what = `${variant} tA=${tA} tB=${tB} ${M}x${N}x${K} alpha=${alpha} beta=${beta} pad=${pad}`;
  checkClose(C, ldc, R, M, N, K, what);
  for (let i = 0; i < M; i++) {
    for (let j = N; j < ldc; j++)
      assert.ok(Object.is(C[i * ldc + j], C0[i * ldc + j]), `${what}: padding of C written`);
  }
  arena.free(pa);
  arena.free(pb);
  arena.free(pc);
}

const SIZES = [1, 3, 17, 63, 65, 129];
const TRANS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

test("feature probes return booleans; SIMD is present on this runtime", () => {
  assert.type(simdAvailable(), "boolean");
  assert.type(relaxedSimdAvailable(), "boolean");
  assert.ok(simdAvailable(), "WebAssembly SIMD expected on Node >= 20");
});

for (const variant of variants) {
  for (const [tA, tB] of TRANS) {
    test(`${variant} tA=${tA} tB=${tB}: all sizes in {1,3,17,63,65,129}^3, alpha=1 beta=0`, () => {
      const arena = new WasmArena({ initialPages: 16 });
      for (const M of SIZES)
        for (const N of SIZES) for (const K of SIZES) runCase(variant, arena, tA, tB, M, N, K, 1, 0, 0);
    });
    test(`${variant} tA=${tA} tB=${tB}: alpha/beta and padded leading dimensions`, () => {
      const arena = new WasmArena({ initialPages: 16 });
      const ab: [number, number][] = [
        [0.5, -1.5],
        [2, 1],
        [-1, 0],
        [0, 0.25],
        [0, 0],
        [1, 1],
      ];
      const shapes = [
        [1, 129, 65],
        [129, 1, 17],
        [65, 63, 1],
        [17, 3, 129],
        [63, 65, 0],
        [3, 17, 63],
      ];
      for (const [alpha, beta] of ab) {
        for (const [M, N, K] of shapes) runCase(variant, arena, tA, tB, M!, N!, K!, alpha, beta, 5);
      }
    });
  }
  if (variant !== "ts") {
    test(`${variant}: small cache blocks split M, N and K (beta only on the first K block)`, () => {
      const arena = new WasmArena({ initialPages: 16 });
      const blocks = { mc: 8, kc: 16, nc: 24 };
      for (const [tA, tB] of TRANS) {
        for (const [M, N, K] of [
          [65, 63, 129],
          [17, 129, 65],
          [3, 65, 63],
          [129, 17, 17],
        ]) {
          runCase(variant, arena, tA, tB, M!, N!, K!, 1, 0, 0, blocks);
          runCase(variant, arena, tA, tB, M!, N!, K!, 0.75, -0.5, 3, blocks);
          runCase(variant, arena, tA, tB, M!, N!, K!, 1.25, 1, 0, blocks);
        }
      }
    });
    test(`${variant}: default blocks on a shape spanning several K and M blocks`, () => {
      const arena = new WasmArena();
      runCase(variant, arena, false, false, 300, 270, 600, 1, 0, 0);
      runCase(variant, arena, true, true, 260, 130, 520, 0.5, 2, 1);
    });
  }
  test(`${variant}: matmulF32 copies in and out, with and without out`, () => {
    for (const [tA, tB] of TRANS) {
      for (const [M, N, K] of [
        [17, 65, 63],
        [1, 3, 129],
        [129, 1, 1],
        [64, 64, 64],
      ]) {
        const a = randArray(M! * K!),
          b = randArray(K! * N!);
        const R = reference(tA, tB, M!, N!, K!, 1, a, tA ? M! : K!, b, tB ? K! : N!, 0, new Float32Array(0), N!);
        const c1 = matmulF32(a, b, M!, N!, K!, tA, tB, undefined, variant);
        assert.is(c1.length, M! * N!);
        checkClose(c1, N!, R, M!, N!, K!, `matmulF32 ${variant} ${M}x${N}x${K}`);
        const out = new Float32Array(M! * N!).fill(NaN);
        assert.is(matmulF32(a, b, M!, N!, K!, tA, tB, out, variant), out);
        checkClose(out, N!, R, M!, N!, K!, `matmulF32 out ${variant} ${M}x${N}x${K}`);
      }
    }
  });
  test(`${variant}: batched variants with strides and a broadcast operand`, () => {
    const batch = 3,
      M = 17,
      N = 65,
      K = 63;
    const a = randArray(batch * M * K),
      b = randArray(K * N); // b shared by all items
    const c = matmulF32Batched(a, b, batch, M, N, K, false, false, undefined, { strideB: 0, variant });
    for (let t = 0; t < batch; t++) {
      const R = reference(false, false, M, N, K, 1, a.subarray(t * M * K), K, b, N, 0, new Float32Array(0), N);
      checkClose(c.subarray(t * M * N), N, R, M, N, K, `batched item ${t}`);
    }
    // pointer API: transposed A, gaps between C items stay untouched
    const arena = new WasmArena({ initialPages: 4 });
    const kern = sgemmKernel(variant, { arena });
    const sA = K * M + 7,
      sB = K * N,
      sC = M * N + 11;
    const A = randArray(batch * sA),
      B = randArray(batch * sB),
      C0 = randArray(batch * sC);
    const pa = arena.alloc(A.length),
      pb = arena.alloc(B.length),
      pc = arena.alloc(C0.length);
    const h = arena.heapF32();
    h.set(A, pa / 4);
    h.set(B, pb / 4);
    h.set(C0, pc / 4);
    kern.sgemmBatched(true, false, M, N, K, 2, pa, M, sA, pb, N, sB, 0.5, pc, N, sC, batch);
    const C = arena.f32view(pc, C0.length);
    for (let t = 0; t < batch; t++) {
      const R = reference(
        true,
        false,
        M,
        N,
        K,
        2,
        A.subarray(t * sA),
        M,
        B.subarray(t * sB),
        N,
        0.5,
        C0.subarray(t * sC),
        N,
      );
      checkClose(C.subarray(t * sC), N, R, M, N, K, `sgemmBatched item ${t}`);
      for (let g = M * N; g < sC && t < batch - 1; g++) assert.is(C[t * sC + g], C0[t * sC + g]);
    }
  });
}

test("other generated micro-kernel shapes (odd MR, wider NR, k unrolling) agree too", () => {
  const arena = new WasmArena({ initialPages: 16 });
  const micros = [
    { mr: 3, nv: 1, unroll: 2 },
    { mr: 6, nv: 2, unroll: 4 },
    { mr: 5, nv: 3, unroll: 1 },
    { mr: 1, nv: 4, unroll: 8 },
  ];
  for (const variant of variants.filter((v) => v !== "ts")) {
    for (const micro of micros) {
      const kern = sgemmKernel(variant, { arena, micro, blocks: { mc: 10, kc: 19, nc: 30 } });
      for (const [tA, tB] of TRANS) {
        for (const [M, N, K] of [
          [17, 63, 65],
          [1, 3, 17],
          [65, 1, 3],
        ]) {
          const lda = tA ? M! : K!,
            ldb = tB ? K! : N!;
          const A = randArray(M! * K!),
            B = randArray(K! * N!),
            C0 = randArray(M! * N!);
          const pa = arena.alloc(A.length),
            pb = arena.alloc(B.length),
            pc = arena.alloc(C0.length);
          const h = arena.heapF32();
          h.set(A, pa / 4);
          h.set(B, pb / 4);
          h.set(C0, pc / 4);
          kern.sgemm(tA, tB, M!, N!, K!, 1.5, pa, lda, pb, ldb, -1, pc, N!);
          const R = reference(tA, tB, M!, N!, K!, 1.5, A, lda, B, ldb, -1, C0, N!);
          checkClose(
            arena.f32view(pc, C0.length),
            N!,
            R,
            M!,
            N!,
            K!,
            `${variant} ${JSON.stringify(micro)} ${M}x${N}x${K}`,
          );
          arena.free(pa);
          arena.free(pb);
          arena.free(pc);
        }
      }
    }
  }
});

test("sgemmTS on plain arrays with offsets", () => {
  const M = 5,
    N = 7,
    K = 9,
    off = 3;
  const A = randArray(off + M * K),
    B = randArray(off + K * N),
    C = new Float32Array(off + M * N).fill(7);
  sgemmTS(false, false, M, N, K, 1, A, off, K, B, off, N, 0, C, off, N);
  const R = reference(false, false, M, N, K, 1, A.subarray(off), K, B.subarray(off), N, 0, C, N);
  checkClose(C.subarray(off), N, R, M, N, K, "sgemmTS offsets");
  assert.equal([...C.subarray(0, off)], [7, 7, 7]);
});

test("sgemm validates shapes, leading dimensions and pointer ranges", () => {
  const arena = new WasmArena({ initialPages: 1, maximumPages: 4 });
  for (const variant of variants) {
    const kern = sgemmKernel(variant, { arena });
    const p = arena.alloc(64);
    assert.throws(
      () => kern.sgemm(false, false, 4, 4, 4, 1, p, 3, p, 4, 0, p, 4),
      (e: unknown) => e instanceof ShapeError,
    );
    assert.throws(
      () => kern.sgemm(false, true, 4, 4, 4, 1, p, 4, p, 3, 0, p, 4),
      (e: unknown) => e instanceof ShapeError,
    );
    assert.throws(
      () => kern.sgemm(false, false, -1, 4, 4, 1, p, 4, p, 4, 0, p, 4),
      (e: unknown) => e instanceof ShapeError,
    );
    assert.throws(
      () => kern.sgemm(false, false, 4, 4, 4, 1, p, 4, p, 4, 0, arena.byteLength - 16, 4),
      (e: unknown) => e instanceof RangeError,
    );
    assert.throws(
      () => kern.sgemm(false, false, 1, 1, 1, 1, 2, 1, p, 1, 0, p, 1),
      (e: unknown) => e instanceof RangeError,
    );
    assert.throws(
      () => matmulF32(new Float32Array(3), new Float32Array(4), 2, 2, 2, false, false, undefined, variant),
      (e: unknown) => e instanceof ShapeError,
    );
    arena.free(p);
  }
});

test("arena: size classes are aligned, cover the request and waste at most 25%", () => {
  for (let bytes = 0; bytes < 1 << 20; bytes = Math.floor(bytes * 1.37) + 1) {
    const s = sizeClass(bytes);
    assert.ok(s >= bytes && s % 64 === 0, `class ${s} for ${bytes}`);
    if (bytes > 256) assert.ok(s <= bytes * 1.25 + 64, `class ${s} too large for ${bytes}`);
  }
});

test("arena: allocations do not overlap, are aligned, and are reused after free", () => {
  const arena = new WasmArena({ initialPages: 1, maximumPages: 4096 });
  assert.is(arena.memory.buffer instanceof SharedArrayBuffer, arena.shared);
  const live = new Map<number, number>();
  for (let step = 0; step < 2000; step++) {
    if (live.size > 0 && rand() < -0.1) {
      const ptrs = [...live.keys()];
      const p = ptrs[Math.floor((rand() + 0.5) * ptrs.length)]!;
      arena.free(p);
      live.delete(p);
    } else {
      const n = Math.floor((rand() + 0.5) ** 4 * 20000);
      const p = arena.alloc(n);
      assert.ok(p > 0 && p % 64 === 0, `pointer ${p}`);
      assert.ok(arena.blockBytes(p)! >= n * 4);
      live.set(p, n * 4);
    }
  }
  const spans = [...live].map(([p, n]) => [p, p + n] as const).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i]![0] >= spans[i - 1]![1], "overlapping blocks");
  for (const [, end] of spans) assert.ok(end <= arena.byteLength);
  const p = arena.alloc(1000);
  arena.free(p);
  assert.is(arena.alloc(1000), p, "same size class is reused");
  assert.throws(
    () => arena.free(12345),
    (e: unknown) => e instanceof RangeError,
  );
  arena.free(p);
  assert.throws(
    () => arena.free(p),
    (e: unknown) => e instanceof RangeError,
    "double free",
  );
  assert.throws(
    () => arena.alloc(-1),
    (e: unknown) => e instanceof RangeError,
  );
});

test("arena: large blocks of any size reuse freed memory (split, merged, top handed back); no overlap", () => {
  const MB = (n: number) => (n * 2 ** 20) / 4; // floats in n MiB
  const arena = new WasmArena({ initialPages: 1, maximumPages: 8192 });
  const base = arena.stats().reserved;
  const a = arena.alloc(MB(10));
  arena.free(a);
  assert.is(arena.stats().reserved, base, "the top block went back to the bump pointer");
  const keep = arena.alloc(MB(1)); // pins the top so ranges stay ranges
  const b = arena.alloc(MB(10)),
    c = arena.alloc(MB(1));
  arena.free(b);
  const d = arena.alloc(MB(4)),
    e = arena.alloc(MB(5));
  assert.is(d, b, "a smaller size is cut from the freed range");
  assert.is(e, d + MB(4) * 4, "and the next from what is left of it");
  arena.free(d);
  arena.free(e);
  assert.is(arena.alloc(MB(9.5)), b, "neighbours merged: the whole range serves a large request again");
  // random large and small traffic: peak memory stays near the peak of live bytes
  const live = new Map<number, number>();
  let peakLive = 0;
  for (let step = 0; step < 600; step++) {
    if (live.size > 6 || (live.size > 0 && rand() < 0)) {
      const ptrs = [...live.keys()];
      const p = ptrs[Math.floor((rand() + 0.5) * ptrs.length)]!;
      arena.free(p);
      live.delete(p);
    } else {
      const n = Math.floor(MB(0.75 + (rand() + 0.5) * 12));
      const p = arena.alloc(n);
      assert.ok(p > 0 && p % 64 === 0 && arena.blockBytes(p)! >= n * 4);
      live.set(p, n * 4);
    }
    peakLive = Math.max(peakLive, arena.stats().live);
  }
  const spans = [...live].map(([p, n]) => [p, p + n] as const).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i]![0] >= spans[i - 1]![1], "overlapping blocks");
  assert.ok(
    arena.stats().reserved < 2 * peakLive + 2 ** 24,
    `reserved ${arena.stats().reserved} for a peak of ${peakLive} live bytes`,
  );
  arena.free(keep);
  arena.free(c);
});

test("kernels run on a non-shared arena as well", () => {
  const arena = new WasmArena({ initialPages: 2, maximumPages: 256, shared: false }); // room for the packing buffers of the default blocks
  assert.is(arena.shared, false);
  assert.ok(!(arena.memory.buffer instanceof SharedArrayBuffer));
  for (const variant of variants) runCase(variant, arena, true, false, 17, 65, 63, 1, 0.5, 2);
});

test("arena: contents and kernels survive memory growth; views are re-created", () => {
  const arena = new WasmArena({ initialPages: 1, maximumPages: 1024 });
  const M = 33,
    N = 20,
    K = 40;
  const A = randArray(M * K),
    B = randArray(K * N);
  const pa = arena.alloc(A.length),
    pb = arena.alloc(B.length),
    pc = arena.alloc(M * N);
  arena.f32view(pa, A.length).set(A);
  arena.f32view(pb, B.length).set(B);
  const kern = sgemmKernel(variants[variants.length - 1]!, { arena });
  kern.sgemm(false, false, M, N, K, 1, pa, K, pb, N, 0, pc, N);
  const before = arena.byteLength;
  const heapBefore = arena.heapF32();
  const big = arena.alloc(4 << 20); // 16 MiB: forces growth
  assert.ok(arena.byteLength > before);
  const heapAfter = arena.heapF32();
  assert.is.not(heapAfter, heapBefore);
  assert.is(heapAfter.length * 4, arena.byteLength);
  assert.equal(arena.f32view(pa, A.length), A, "data kept across growth");
  const view = arena.f32view(big, 4 << 20);
  view[view.length - 1] = 42;
  assert.is(arena.heapF32()[big / 4 + (4 << 20) - 1], 42);
  const pc2 = arena.alloc(M * N);
  kern.sgemm(false, false, M, N, K, 1, pa, K, pb, N, 0, pc2, N);
  const R = reference(false, false, M, N, K, 1, A, K, B, N, 0, new Float32Array(0), N);
  checkClose(arena.f32view(pc2, M * N), N, R, M, N, K, "after growth");
  assert.equal(arena.f32view(pc2, M * N), arena.f32view(pc, M * N));
  assert.throws(
    () => arena.alloc(1024 * 65536),
    (e: unknown) => e instanceof RangeError,
    "past maximumPages",
  );
});

test.run();
