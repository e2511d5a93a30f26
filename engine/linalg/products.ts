// float64 products (blocked GEMM, 4x4 register-tiled `a b^T` and Gram matrices) and norms.
import { ConfigError, ShapeError } from "../errors.ts";
import { mat, shp } from "./base.ts";
import type { Mat } from "./base.ts";
import { singularValues } from "./svd.ts";

// ---------------------------------------------------------------------------------------------
// products

/**
 * `C += A B` with A(i, k) = `A[i * aRs + k * aCs]` and B row-major K x n. Blocked over k and j so
 * the B panel stays in cache; four rows of C share every load of a B row (i-k-j order inside).
 */
function gemm(
  m: number,
  n: number,
  K: number,
  A: Float64Array,
  aRs: number,
  aCs: number,
  B: Float64Array,
  C: Float64Array,
): void {
  const KB = 64,
    JB = 768;
  for (let k0 = 0; k0 < K; k0 += KB) {
    const k1 = Math.min(K, k0 + KB);
    for (let j0 = 0; j0 < n; j0 += JB) {
      const j1 = Math.min(n, j0 + JB);
      let i = 0;
      for (; i + 3 < m; i += 4) {
        const c0 = i * n,
          c1 = c0 + n,
          c2 = c1 + n,
          c3 = c2 + n;
        const a0 = i * aRs,
          a1 = a0 + aRs,
          a2 = a1 + aRs,
          a3 = a2 + aRs;
        for (let k = k0; k < k1; k++) {
          const ko = k * aCs;
          const x0 = A[a0 + ko]!,
            x1 = A[a1 + ko]!,
            x2 = A[a2 + ko]!,
            x3 = A[a3 + ko]!;
          if (x0 === 0 && x1 === 0 && x2 === 0 && x3 === 0) continue;
          const bk = k * n;
          for (let j = j0; j < j1; j++) {
            const b = B[bk + j]!;
            C[c0 + j] += x0 * b;
            C[c1 + j] += x1 * b;
            C[c2 + j] += x2 * b;
            C[c3 + j] += x3 * b;
          }
        }
      }
      for (; i < m; i++) {
        const ci = i * n,
          ai = i * aRs;
        for (let k = k0; k < k1; k++) {
          const x = A[ai + k * aCs]!;
          if (x === 0) continue;
          const bk = k * n;
          for (let j = j0; j < j1; j++) C[ci + j] += x * B[bk + j]!;
        }
      }
    }
  }
}

/** Matrix product `a b` (blocked i-k-j order: row-contiguous inner loop). */
export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new ShapeError(`matmul: inner dimensions differ, got ${shp(a)} and ${shp(b)}`);
  const C = new Float64Array(a.rows * b.cols);
  gemm(a.rows, b.cols, a.cols, a.data, a.cols, 1, b.data, C);
  return { rows: a.rows, cols: b.cols, data: C };
}

/** `a^T b` without forming the transpose (`a` is K x m, `b` is K x n). */
export function matmulTN(a: Mat, b: Mat): Mat {
  if (a.rows !== b.rows) throw new ShapeError(`matmulTN: row counts differ, got ${shp(a)} and ${shp(b)}`);
  const C = new Float64Array(a.cols * b.cols);
  gemm(a.cols, b.cols, a.rows, a.data, 1, a.cols, b.data, C);
  return { rows: a.cols, cols: b.cols, data: C };
}

/**
 * C[co..] (4x4, leading dim ldc) += A[i0..i0+3, k0:k1] . B[j0..j0+3, k0:k1] (rows of length lda / ldb):
 * sixteen dot products held in registers, every load of A and B used four times.
 */
function tile4(
  A: Float64Array,
  lda: number,
  i0: number,
  B: Float64Array,
  ldb: number,
  j0: number,
  k0: number,
  k1: number,
  C: Float64Array,
  co: number,
  ldc: number,
): void {
  const a0 = i0 * lda,
    a1 = a0 + lda,
    a2 = a1 + lda,
    a3 = a2 + lda;
  const b0 = j0 * ldb,
    b1 = b0 + ldb,
    b2 = b1 + ldb,
    b3 = b2 + ldb;
  let c00 = 0,
    c01 = 0,
    c02 = 0,
    c03 = 0,
    c10 = 0,
    c11 = 0,
    c12 = 0,
    c13 = 0;
  let c20 = 0,
    c21 = 0,
    c22 = 0,
    c23 = 0,
    c30 = 0,
    c31 = 0,
    c32 = 0,
    c33 = 0;
  for (let k = k0; k < k1; k++) {
    const x0 = A[a0 + k]!,
      x1 = A[a1 + k]!,
      x2 = A[a2 + k]!,
      x3 = A[a3 + k]!;
    const y0 = B[b0 + k]!,
      y1 = B[b1 + k]!,
      y2 = B[b2 + k]!,
      y3 = B[b3 + k]!;
    c00 += x0 * y0;
    c01 += x0 * y1;
    c02 += x0 * y2;
    c03 += x0 * y3;
    c10 += x1 * y0;
    c11 += x1 * y1;
    c12 += x1 * y2;
    c13 += x1 * y3;
    c20 += x2 * y0;
    c21 += x2 * y1;
    c22 += x2 * y2;
    c23 += x2 * y3;
    c30 += x3 * y0;
    c31 += x3 * y1;
    c32 += x3 * y2;
    c33 += x3 * y3;
  }
  let o = co;
  C[o] += c00;
  C[o + 1] += c01;
  C[o + 2] += c02;
  C[o + 3] += c03;
  o += ldc;
  C[o] += c10;
  C[o + 1] += c11;
  C[o + 2] += c12;
  C[o + 3] += c13;
  o += ldc;
  C[o] += c20;
  C[o + 1] += c21;
  C[o + 2] += c22;
  C[o + 3] += c23;
  o += ldc;
  C[o] += c30;
  C[o + 1] += c31;
  C[o + 2] += c32;
  C[o + 3] += c33;
}

/** Depth of one pass of the tiled kernels over k (partial sums added into C between passes). */
const KB = 512;

/** The data of `a` with zero rows appended up to a multiple of 4 (for the tiled kernels). */
function padRows(a: Mat): Float64Array {
  const rp = (a.rows + 3) & ~3;
  if (rp === a.rows) return a.data;
  const d = new Float64Array(rp * a.cols);
  d.set(a.data);
  return d;
}

/** `a b^T` without forming the transpose (`a` is m x K, `b` is n x K), in 4x4 register tiles. */
export function matmulNT(a: Mat, b: Mat): Mat {
  if (a.cols !== b.cols) throw new ShapeError(`matmulNT: column counts differ, got ${shp(a)} and ${shp(b)}`);
  const m = a.rows,
    n = b.rows,
    K = a.cols,
    mp = (m + 3) & ~3,
    np = (n + 3) & ~3;
  const A = padRows(a),
    B = padRows(b),
    C = new Float64Array(mp * np);
  for (let k0 = 0; k0 < K; k0 += KB) {
    const k1 = Math.min(K, k0 + KB);
    for (let i0 = 0; i0 < mp; i0 += 4)
      for (let j0 = 0; j0 < np; j0 += 4) tile4(A, K, i0, B, K, j0, k0, k1, C, i0 * np + j0, np);
  }
  if (np === n && mp === m) return { rows: m, cols: n, data: C };
  const out = mat(m, n);
  for (let i = 0; i < m; i++) out.data.set(C.subarray(i * np, i * np + n), i * n);
  return out;
}

/** Lower-triangle 4x4 tiles of `T T^T` for T (rp x len, rp a multiple of 4): an rp x rp array, the tiles above the diagonal zero. */
function lowerTiles(T: Float64Array, rp: number, len: number): Float64Array {
  const g = new Float64Array(rp * rp);
  for (let k0 = 0; k0 < len; k0 += KB) {
    const k1 = Math.min(len, k0 + KB);
    for (let i0 = 0; i0 < rp; i0 += 4)
      for (let j0 = 0; j0 <= i0; j0 += 4) tile4(T, len, i0, T, len, j0, k0, k1, g, i0 * rp + j0, rp);
  }
  return g;
}

/** `a^T a` (d x d, symmetric) for `a` (r x d): lower-triangle tiles over the transposed rows, mirrored. */
export function gram(a: Mat): Mat {
  const r = a.rows,
    d = a.cols,
    dp = (d + 3) & ~3;
  const t = new Float64Array(dp * r); // (dp, r): row j is column j of a, zero rows pad to a multiple of 4
  for (let i = 0; i < r; i++) for (let j = 0; j < d; j++) t[j * r + i] = a.data[i * d + j]!;
  const g = lowerTiles(t, dp, r);
  const out = mat(d, d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      const v = g[i * dp + j]!;
      out.data[i * d + j] = v;
      out.data[j * d + i] = v;
    }
  }
  return out;
}

/** The lower triangle (j <= i) of `a a^T` (k x k for `a` k x m); the entries above the diagonal are not meaningful. */
export function gramRowsLower(a: Mat): Mat {
  const k = a.rows,
    kp = (k + 3) & ~3;
  const g = lowerTiles(padRows(a), kp, a.cols);
  if (kp === k) return { rows: k, cols: k, data: g };
  const out = mat(k, k);
  for (let i = 0; i < k; i++) out.data.set(g.subarray(i * kp, i * kp + k), i * k);
  return out;
}

/** `||a L||_F^2` for lower-triangular L (d x d) given as `lt = L^T` (upper): only k >= j contributes to column j. */
export function sqNormTimesLower(a: Mat, lt: Mat): number {
  if (a.cols !== lt.rows || lt.rows !== lt.cols)
    throw new ShapeError(`sqNormTimesLower: need a (m x d) and a square d x d factor, got ${shp(a)} and ${shp(lt)}`);
  const m = a.rows,
    d = a.cols,
    mp = (m + 3) & ~3,
    dp = (d + 3) & ~3;
  const A = padRows(a);
  const B = new Float64Array(dp * d);
  B.set(lt.data);
  const C = new Float64Array(16);
  let total = 0;
  for (let i0 = 0; i0 < mp; i0 += 4) {
    for (let j0 = 0; j0 < dp; j0 += 4) {
      C.fill(0);
      tile4(A, d, i0, B, d, j0, j0, d, C, 0, 4);
      for (let q = 0; q < 16; q++) total += C[q]! * C[q]!;
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// norms

export function maxAbs(d: Float64Array): number {
  let m = 0;
  for (let i = 0; i < d.length; i++) {
    const v = Math.abs(d[i]!);
    if (v > m) m = v;
  }
  return m;
}

/** Euclidean norm of `count` elements of `d` starting at `start` with `stride`, scaled against overflow. */
export function stridedNorm(d: Float64Array, start: number, stride: number, count: number): number {
  let mx = 0;
  for (let i = 0, p = start; i < count; i++, p += stride) {
    const v = Math.abs(d[p]!);
    if (v > mx) mx = v;
  }
  if (mx === 0) return 0;
  const inv = 1 / mx;
  let s = 0;
  for (let i = 0, p = start; i < count; i++, p += stride) {
    const v = d[p]! * inv;
    s += v * v;
  }
  return mx * Math.sqrt(s);
}

export function norm1Of(a: Mat): number {
  const n = a.cols,
    sums = new Float64Array(n),
    d = a.data;
  for (let i = 0; i < a.rows; i++) {
    const r = i * n;
    for (let j = 0; j < n; j++) sums[j]! += Math.abs(d[r + j]!);
  }
  return n === 0 ? 0 : maxAbs(sums);
}

/**
 * Matrix norm: "fro" (Frobenius, default), 1 (max column abs sum), "inf" (max row abs sum)
 * or 2 (largest singular value, computed by {@link singularValues}: O(mn min(m,n))).
 */
export function norm(a: Mat, ord: "fro" | 1 | "inf" | 2 = "fro"): number {
  if (a.data.length === 0) return 0;
  if (ord === "fro") return stridedNorm(a.data, 0, 1, a.data.length);
  if (ord === 1) return norm1Of(a);
  if (ord === "inf") {
    let best = 0;
    for (let i = 0; i < a.rows; i++) {
      let s = 0;
      for (let j = 0; j < a.cols; j++) s += Math.abs(a.data[i * a.cols + j]!);
      if (s > best) best = s;
    }
    return best;
  }
  if (ord === 2) return singularValues(a)[0]!;
  throw new ConfigError(`norm: unknown order, got ${String(ord)}`);
}
