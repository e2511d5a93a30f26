// Dense float64 linear algebra on row-major matrices: products, LU, Cholesky, triangular solves,
// Householder QR, symmetric eigendecomposition (tridiagonal QL) and Gram-preconditioned Jacobi SVD.
import { NumericalError, ShapeError } from "./errors.ts";

/** A dense row-major float64 matrix: element (i, j) is `data[i * cols + j]`. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

/** Options of the LU-based solvers. */
export interface SolveOptions {
  /** Throw when the estimated reciprocal 1-norm condition number is below this (default 1e-14). */
  rcondTol?: number;
}

/** Result of {@link lu}: `P A = L U` with the unit lower L and upper U packed into `lu`. */
export interface LUResult {
  /** Packed factors: strictly lower part is L (unit diagonal implied), upper part is U. */
  lu: Mat;
  /** Row permutation: row i of `P A` is row `piv[i]` of A. */
  piv: Int32Array;
  /** Parity of the permutation, +1 or -1 (determinant of P). */
  sign: number;
  /** 1-norm of the factored matrix (used by the condition estimator). */
  norm1: number;
}

const EPS = 2.220446049250313e-16;
/** Squared norms below this are treated as zero by the Jacobi SVD (avoids underflow in products). */
const TINY_SQ = 1e-280;
const DEFAULT_RCOND_TOL = 1e-14;

const shp = (a: Mat): string => `${a.rows}x${a.cols}`;

/** Power-of-two exponent that brings `amax` (> 0, finite) near 1; both 2^e and 2^-e are finite. */
function pow2Exponent(amax: number): number {
  return Math.min(1000, Math.max(-1000, Math.floor(Math.log2(amax))));
}

function fmtCond(c: number): string {
  return Number.isFinite(c) ? c.toExponential(1) : "inf";
}

function requireFinite(op: string, a: Mat): void {
  const d = a.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) {
      const r = Math.floor(i / a.cols);
      throw new NumericalError(`${op}: input ${shp(a)} contains a non-finite value at (${r}, ${i - r * a.cols}), got ${v}`);
    }
  }
}

function requireFiniteResult(op: string, a: Mat, what: string): void {
  const d = a.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) throw new NumericalError(`${op}: ${what} ${shp(a)} overflowed to a non-finite value, got ${v}`);
  }
}

function requireSquare(op: string, a: Mat): void {
  if (a.rows !== a.cols) throw new ShapeError(`${op}: matrix must be square, got ${shp(a)}`);
}

// ---------------------------------------------------------------------------------------------
// construction and elementwise helpers

/** Creates a `rows x cols` matrix, zero-filled or copied from row-major `data` (length must be rows*cols). */
export function mat(rows: number, cols: number, data?: ArrayLike<number>): Mat {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new ShapeError(`mat: dimensions must be non-negative integers, got ${rows}x${cols}`);
  }
  const out = new Float64Array(rows * cols);
  if (data !== undefined) {
    if (data.length !== rows * cols) {
      throw new ShapeError(`mat: data length must equal rows*cols = ${rows * cols} for shape ${rows}x${cols}, got ${data.length}`);
    }
    out.set(data);
  }
  return { rows, cols, data: out };
}

/** The `n x n` identity matrix. */
export function eye(n: number): Mat {
  const m = mat(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

/** A deep copy of `a`. */
export function clone(a: Mat): Mat {
  return { rows: a.rows, cols: a.cols, data: Float64Array.from(a.data) };
}

/** The transpose of `a` (a new matrix; blocked for cache locality). */
export function transpose(a: Mat): Mat {
  const m = a.rows, n = a.cols, src = a.data;
  const out = new Float64Array(m * n);
  const B = 32;
  for (let i0 = 0; i0 < m; i0 += B) {
    const i1 = Math.min(m, i0 + B);
    for (let j0 = 0; j0 < n; j0 += B) {
      const j1 = Math.min(n, j0 + B);
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) out[j * m + i] = src[i * n + j]!;
      }
    }
  }
  return { rows: n, cols: m, data: out };
}

function sameShape(op: string, a: Mat, b: Mat): void {
  if (a.rows !== b.rows || a.cols !== b.cols) throw new ShapeError(`${op}: shapes must match, got ${shp(a)} and ${shp(b)}`);
}

/** Elementwise `a + b`. */
export function add(a: Mat, b: Mat): Mat {
  sameShape("add", a, b);
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! + b.data[i]!;
  return { rows: a.rows, cols: a.cols, data: out };
}

/** Elementwise `a - b`. */
export function sub(a: Mat, b: Mat): Mat {
  sameShape("sub", a, b);
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! - b.data[i]!;
  return { rows: a.rows, cols: a.cols, data: out };
}

/** `s * a`. */
export function scale(a: Mat, s: number): Mat {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i]! * s;
  return { rows: a.rows, cols: a.cols, data: out };
}

// ---------------------------------------------------------------------------------------------
// products

/**
 * `C += A B` with A(i, k) = `A[i * aRs + k * aCs]` and B row-major K x n. Blocked over k and j so
 * the B panel stays in cache; four rows of C share every load of a B row (i-k-j order inside).
 */
function gemm(m: number, n: number, K: number, A: Float64Array, aRs: number, aCs: number, B: Float64Array, C: Float64Array): void {
  const KB = 64, JB = 768;
  for (let k0 = 0; k0 < K; k0 += KB) {
    const k1 = Math.min(K, k0 + KB);
    for (let j0 = 0; j0 < n; j0 += JB) {
      const j1 = Math.min(n, j0 + JB);
      let i = 0;
      for (; i + 3 < m; i += 4) {
        const c0 = i * n, c1 = c0 + n, c2 = c1 + n, c3 = c2 + n;
        const a0 = i * aRs, a1 = a0 + aRs, a2 = a1 + aRs, a3 = a2 + aRs;
        for (let k = k0; k < k1; k++) {
          const ko = k * aCs;
          const x0 = A[a0 + ko]!, x1 = A[a1 + ko]!, x2 = A[a2 + ko]!, x3 = A[a3 + ko]!;
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
        const ci = i * n, ai = i * aRs;
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

/** `a b^T` without forming the transpose (`a` is m x K, `b` is n x K): blocked row-by-row dot products. */
export function matmulNT(a: Mat, b: Mat): Mat {
  if (a.cols !== b.cols) throw new ShapeError(`matmulNT: column counts differ, got ${shp(a)} and ${shp(b)}`);
  return gemmNT(a, b, false);
}

/** `a b^T`; with `lowerOnly` (a square result such as a Gram matrix) only entries j <= i are computed. */
function gemmNT(a: Mat, b: Mat, lowerOnly: boolean): Mat {
  const m = a.rows, K = a.cols, n = b.rows;
  const A = a.data, Bd = b.data, C = new Float64Array(m * n);
  // a panel of JB rows of b stays in cache while every row of a passes over it
  const JB = Math.max(4, Math.floor(32768 / Math.max(K, 1)) & ~3);
  for (let j0 = 0; j0 < n; j0 += JB) {
    const j1 = Math.min(n, j0 + JB);
    for (let i = lowerOnly ? j0 : 0; i < m; i++) {
      const ai = i * K, ci = i * n;
      const je = lowerOnly ? Math.min(j1, i + 1) : j1;
      let j = j0;
      for (; j + 3 < je; j += 4) {
        const b0 = j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const x = A[ai + k]!;
          s0 += x * Bd[b0 + k]!;
          s1 += x * Bd[b1 + k]!;
          s2 += x * Bd[b2 + k]!;
          s3 += x * Bd[b3 + k]!;
        }
        C[ci + j] = s0;
        C[ci + j + 1] = s1;
        C[ci + j + 2] = s2;
        C[ci + j + 3] = s3;
      }
      for (; j < je; j++) {
        const bj = j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += A[ai + k]! * Bd[bj + k]!;
        C[ci + j] = s;
      }
    }
  }
  return { rows: m, cols: n, data: C };
}

// ---------------------------------------------------------------------------------------------
// norms

function maxAbs(d: Float64Array): number {
  let m = 0;
  for (let i = 0; i < d.length; i++) {
    const v = Math.abs(d[i]!);
    if (v > m) m = v;
  }
  return m;
}

/** Euclidean norm of `count` elements of `d` starting at `start` with `stride`, scaled against overflow. */
function stridedNorm(d: Float64Array, start: number, stride: number, count: number): number {
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

function norm1Of(a: Mat): number {
  const n = a.cols, sums = new Float64Array(n), d = a.data;
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
  throw new ShapeError(`norm: unknown order, got ${String(ord)}`);
}

// ---------------------------------------------------------------------------------------------
// LU

/**
 * LU factorisation with partial (row) pivoting: `P A = L U` for any m x n matrix.
 * Never throws for singular input (a zero pivot column is skipped); the solvers check it.
 */
export function lu(a: Mat): LUResult {
  requireFinite("lu", a);
  const m = a.rows, n = a.cols;
  const d = Float64Array.from(a.data);
  const piv = new Int32Array(m);
  for (let i = 0; i < m; i++) piv[i] = i;
  let sign = 1;
  const kmax = Math.min(m, n);
  for (let k = 0; k < kmax; k++) {
    let p = k, best = Math.abs(d[k * n + k]!);
    for (let i = k + 1; i < m; i++) {
      const v = Math.abs(d[i * n + k]!);
      if (v > best) { best = v; p = i; }
    }
    if (p !== k) {
      const rk = k * n, rp = p * n;
      for (let j = 0; j < n; j++) {
        const t = d[rk + j]!;
        d[rk + j] = d[rp + j]!;
        d[rp + j] = t;
      }
      const t = piv[k]!;
      piv[k] = piv[p]!;
      piv[p] = t;
      sign = -sign;
    }
    const pivot = d[k * n + k]!;
    if (pivot === 0) continue;
    const rk = k * n;
    for (let i = k + 1; i < m; i++) {
      const ri = i * n;
      const l = d[ri + k]! / pivot;
      d[ri + k] = l;
      if (l === 0) continue;
      for (let j = k + 1; j < n; j++) d[ri + j]! -= l * d[rk + j]!;
    }
  }
  return { lu: { rows: m, cols: n, data: d }, piv, sign, norm1: norm1Of(a) };
}

/** Unpacks an {@link LUResult} into explicit `l` (m x min, unit lower) and `u` (min x n, upper). */
export function luFactors(f: LUResult): { l: Mat; u: Mat } {
  const m = f.lu.rows, n = f.lu.cols, k = Math.min(m, n), d = f.lu.data;
  const l = mat(m, k), u = mat(k, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < Math.min(i, k); j++) l.data[i * k + j] = d[i * n + j]!;
    if (i < k) l.data[i * k + i] = 1;
  }
  for (let i = 0; i < k; i++) for (let j = i; j < n; j++) u.data[i * n + j] = d[i * n + j]!;
  return { l, u };
}

/** Index of the first exactly-zero diagonal entry of U, or -1. */
function zeroPivot(f: LUResult): number {
  const n = f.lu.cols, k = Math.min(f.lu.rows, n);
  for (let i = 0; i < k; i++) if (f.lu.data[i * n + i] === 0) return i;
  return -1;
}

/** Solves `A x = b` in place for one vector given `P A = L U` (square, nonsingular U). */
function luSolveVec(f: LUResult, b: Float64Array): Float64Array {
  const n = f.lu.rows, d = f.lu.data, piv = f.piv;
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[i] = b[piv[i]!]!;
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let s = x[i]!;
    for (let k = 0; k < i; k++) s -= d[ri + k]! * x[k]!;
    x[i] = s;
  }
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n;
    let s = x[i]!;
    for (let k = i + 1; k < n; k++) s -= d[ri + k]! * x[k]!;
    x[i] = s / d[ri + i]!;
  }
  return x;
}

/** Solves `A^T x = b` for one vector given `P A = L U`: `U^T L^T (P x) = b`. */
function luSolveTransVec(f: LUResult, b: Float64Array): Float64Array {
  const n = f.lu.rows, d = f.lu.data, piv = f.piv;
  const y = Float64Array.from(b);
  // U^T y = b (lower system), column-oriented over rows of U
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    const yi = y[i]! / d[ri + i]!;
    y[i] = yi;
    if (yi !== 0) for (let k = i + 1; k < n; k++) y[k]! -= d[ri + k]! * yi;
  }
  // L^T z = y (unit upper system)
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n, zi = y[i]!;
    if (zi !== 0) for (let k = 0; k < i; k++) y[k]! -= d[ri + k]! * zi;
  }
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) x[piv[i]!] = y[i]!;
  return x;
}

function l1(v: Float64Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += Math.abs(v[i]!);
  return s;
}

/**
 * Estimated reciprocal condition number `1 / (||A||_1 ||A^-1||_1)` from an LU factorisation
 * (Hager/Higham 1-norm estimator, a few O(n^2) solves). 0 when U has a zero pivot or A is zero.
 */
export function luRcond(f: LUResult): number {
  requireSquare("luRcond", f.lu);
  const n = f.lu.rows;
  if (n === 0) return 1;
  if (zeroPivot(f) >= 0 || f.norm1 === 0) return 0;
  const finite = (v: Float64Array): boolean => {
    for (let i = 0; i < v.length; i++) if (v[i]! - v[i]! !== 0) return false;
    return true;
  };
  let x = new Float64Array(n).fill(1 / n);
  let y = luSolveVec(f, x);
  if (!finite(y)) return 0;
  let est = l1(y);
  if (n > 1) {
    for (let iter = 0; iter < 5; iter++) {
      const xi = new Float64Array(n);
      for (let i = 0; i < n; i++) xi[i] = y[i]! >= 0 ? 1 : -1;
      const z = luSolveTransVec(f, xi);
      if (!finite(z)) return 0;
      let j = 0, zmax = 0, ztx = 0;
      for (let i = 0; i < n; i++) {
        const v = Math.abs(z[i]!);
        if (v > zmax) { zmax = v; j = i; }
        ztx += z[i]! * x[i]!;
      }
      if (iter > 0 && zmax <= ztx) break;
      x = new Float64Array(n);
      x[j] = 1;
      y = luSolveVec(f, x);
      if (!finite(y)) return 0;
      const e = l1(y);
      if (e <= est) break;
      est = e;
    }
    // alternating test vector guards against the estimator's known failure cases
    const b = new Float64Array(n);
    for (let i = 0; i < n; i++) b[i] = (i % 2 === 0 ? 1 : -1) * (1 + i / (n - 1));
    const w = luSolveVec(f, b);
    if (!finite(w)) return 0;
    est = Math.max(est, (2 * l1(w)) / (3 * n));
  }
  const r = 1 / (f.norm1 * est);
  return Number.isFinite(r) ? r : 0;
}

function checkConditioned(op: string, f: LUResult, tol: number): void {
  const n = f.lu.rows;
  const zp = zeroPivot(f);
  if (zp >= 0) {
    throw new NumericalError(`${op}: matrix ${n}x${n} is singular to working precision (zero pivot in column ${zp}, condition estimate inf)`);
  }
  const rc = luRcond(f);
  if (rc < tol) {
    throw new NumericalError(`${op}: matrix ${n}x${n} is singular to working precision (condition estimate ${fmtCond(1 / rc)})`);
  }
}

function luSolveOp(op: string, f: LUResult, b: Mat, opts: SolveOptions): Mat {
  const n = f.lu.rows;
  if (f.lu.cols !== n) throw new ShapeError(`${op}: matrix must be square, got ${shp(f.lu)}`);
  if (b.rows !== n) throw new ShapeError(`${op}: right-hand side rows must match the matrix, got ${n}x${n} and ${shp(b)}`);
  requireFinite(op, b);
  checkConditioned(op, f, opts.rcondTol ?? DEFAULT_RCOND_TOL);
  const r = b.cols, d = f.lu.data, piv = f.piv;
  const X = new Float64Array(n * r);
  for (let i = 0; i < n; i++) X.set(b.data.subarray(piv[i]! * r, piv[i]! * r + r), i * r);
  // forward: unit lower L, row-oriented axpy updates
  for (let i = 0; i < n; i++) {
    const ri = i * n, xi = i * r;
    for (let k = 0; k < i; k++) {
      const l = d[ri + k]!;
      if (l === 0) continue;
      const xk = k * r;
      for (let j = 0; j < r; j++) X[xi + j]! -= l * X[xk + j]!;
    }
  }
  // backward: upper U
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n, xi = i * r;
    for (let k = i + 1; k < n; k++) {
      const u = d[ri + k]!;
      if (u === 0) continue;
      const xk = k * r;
      for (let j = 0; j < r; j++) X[xi + j]! -= u * X[xk + j]!;
    }
    const inv = 1 / d[ri + i]!;
    for (let j = 0; j < r; j++) X[xi + j]! *= inv;
  }
  const out = { rows: n, cols: r, data: X };
  requireFiniteResult(op, out, "solution");
  return out;
}

/**
 * Solves `A X = B` from an LU factorisation of square A. Throws NumericalError when A is singular
 * or its estimated reciprocal condition number is below `opts.rcondTol` (default 1e-14).
 */
export function luSolve(f: LUResult, b: Mat, opts: SolveOptions = {}): Mat {
  return luSolveOp("luSolve", f, b, opts);
}

/** Solves `A X = B` for square A by LU with partial pivoting (same checks as {@link luSolve}). */
export function solve(a: Mat, b: Mat, opts: SolveOptions = {}): Mat {
  requireSquare("solve", a);
  if (b.rows !== a.rows) throw new ShapeError(`solve: right-hand side rows must match the matrix, got ${shp(a)} and ${shp(b)}`);
  return luSolveOp("solve", lu(a), b, opts);
}

/** Inverse of square A via LU (same checks as {@link solve}); prefer {@link solve} for systems. */
export function inv(a: Mat, opts: SolveOptions = {}): Mat {
  requireSquare("inv", a);
  return luSolveOp("inv", lu(a), eye(a.rows), opts);
}

/** Determinant of square A via LU (may over/underflow for large n). */
export function det(a: Mat): number {
  requireSquare("det", a);
  const f = lu(a), n = a.rows;
  let p = f.sign;
  for (let i = 0; i < n; i++) p *= f.lu.data[i * n + i]!;
  return p;
}

/** Estimated 1-norm condition number of square A (Infinity when singular); see {@link luRcond}. */
export function condEstimate(a: Mat): number {
  requireSquare("condEstimate", a);
  const rc = luRcond(lu(a));
  return rc === 0 ? Infinity : 1 / rc;
}

// ---------------------------------------------------------------------------------------------
// Cholesky and triangular solves

/**
 * Cholesky factor: lower L with positive diagonal and `A = L L^T`. Reads only the lower
 * triangle of A. Throws NumericalError naming the pivot when A is not positive definite.
 */
export function cholesky(a: Mat): Mat {
  requireSquare("cholesky", a);
  requireFinite("cholesky", a);
  const n = a.rows, A = a.data, L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = A[ri + j]!;
      for (let k = 0; k < j; k++) s -= L[ri + k]! * L[rj + k]!;
      if (j === i) {
        if (!(s > 0)) {
          throw new NumericalError(`cholesky: matrix ${n}x${n} is not positive definite (pivot ${i} is ${s.toExponential(2)})`);
        }
        L[ri + i] = Math.sqrt(s);
      } else {
        L[ri + j] = s / L[rj + j]!;
      }
    }
  }
  return { rows: n, cols: n, data: L };
}

/** Solves `A X = B` given the Cholesky factor `L` of A (from {@link cholesky}). */
export function choleskySolve(L: Mat, b: Mat): Mat {
  const y = solveTriangularOp("choleskySolve", L, b, { lower: true });
  return solveTriangularOp("choleskySolve", L, y, { lower: true, transpose: true });
}

/** Options of {@link solveTriangular}. */
export interface TriangularOptions {
  /** The matrix is lower triangular (else upper); only that triangle is read. */
  lower: boolean;
  /** Solve with the transpose: `T^T X = B`. */
  transpose?: boolean;
  /** Assume ones on the diagonal (the stored diagonal is not read). */
  unitDiagonal?: boolean;
}

function solveTriangularOp(op: string, t: Mat, b: Mat, opts: TriangularOptions): Mat {
  requireSquare(op, t);
  const n = t.rows;
  if (b.rows !== n) throw new ShapeError(`${op}: right-hand side rows must match the matrix, got ${shp(t)} and ${shp(b)}`);
  requireFinite(op, t);
  requireFinite(op, b);
  const unit = opts.unitDiagonal === true, trans = opts.transpose === true, lower = opts.lower;
  const T = t.data, r = b.cols, X = Float64Array.from(b.data);
  if (!unit) {
    for (let i = 0; i < n; i++) {
      if (T[i * n + i] === 0) throw new NumericalError(`${op}: triangular matrix ${n}x${n} is singular (zero diagonal at ${i}, condition estimate inf)`);
    }
  }
  const divRow = (i: number): void => {
    if (unit) return;
    const inv = 1 / T[i * n + i]!, xi = i * r;
    for (let j = 0; j < r; j++) X[xi + j]! *= inv;
  };
  const axpyRow = (dst: number, src: number, f: number): void => {
    if (f === 0) return;
    const xd = dst * r, xs = src * r;
    for (let j = 0; j < r; j++) X[xd + j]! -= f * X[xs + j]!;
  };
  if (!trans && lower) {
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < i; k++) axpyRow(i, k, T[i * n + k]!);
      divRow(i);
    }
  } else if (!trans && !lower) {
    for (let i = n - 1; i >= 0; i--) {
      for (let k = i + 1; k < n; k++) axpyRow(i, k, T[i * n + k]!);
      divRow(i);
    }
  } else if (trans && lower) {
    // L^T is upper: finish row i, then push its contribution to earlier rows (row i of L is contiguous)
    for (let i = n - 1; i >= 0; i--) {
      divRow(i);
      for (let k = 0; k < i; k++) axpyRow(k, i, T[i * n + k]!);
    }
  } else {
    for (let i = 0; i < n; i++) {
      divRow(i);
      for (let k = i + 1; k < n; k++) axpyRow(k, i, T[i * n + k]!);
    }
  }
  const out = { rows: n, cols: r, data: X };
  requireFiniteResult(op, out, "solution");
  return out;
}

/**
 * Solves `T X = B` (or `T^T X = B`) for triangular T by substitution. Throws NumericalError on
 * an exactly zero diagonal or a non-finite result.
 */
export function solveTriangular(t: Mat, b: Mat, opts: TriangularOptions): Mat {
  return solveTriangularOp("solveTriangular", t, b, opts);
}

// ---------------------------------------------------------------------------------------------
// Householder QR

/**
 * In-place Householder QR of the m x n row-major `d` (LAPACK dgeqrf layout: R on and above the
 * diagonal, reflector tails below, v_k[k] = 1 implied); returns the reflector scalars.
 */
function householderQR(d: Float64Array, m: number, n: number): Float64Array {
  const kmax = Math.min(m, n);
  const tau = new Float64Array(kmax);
  const w = new Float64Array(n);
  for (let k = 0; k < kmax; k++) {
    const kk = k * n + k;
    const alpha = d[kk]!;
    const xnorm = stridedNorm(d, kk + n, n, m - k - 1);
    if (xnorm === 0) continue; // H = I
    const beta = (alpha >= 0 ? -1 : 1) * Math.hypot(alpha, xnorm);
    const t = (beta - alpha) / beta;
    tau[k] = t;
    const sc = 1 / (alpha - beta);
    for (let i = k + 1; i < m; i++) d[i * n + k]! *= sc;
    d[kk] = beta;
    // apply H = I - tau v v^T to the trailing columns, row by row: w = v^T A, A -= tau v w^T
    const rk = k * n;
    for (let j = k + 1; j < n; j++) w[j] = d[rk + j]!;
    for (let i = k + 1; i < m; i++) {
      const ri = i * n, vi = d[ri + k]!;
      if (vi === 0) continue;
      for (let j = k + 1; j < n; j++) w[j] += vi * d[ri + j]!;
    }
    for (let j = k + 1; j < n; j++) d[rk + j]! -= t * w[j]!;
    for (let i = k + 1; i < m; i++) {
      const ri = i * n, f = t * d[ri + k]!;
      if (f === 0) continue;
      for (let j = k + 1; j < n; j++) d[ri + j]! -= f * w[j]!;
    }
  }
  return tau;
}

/**
 * Overwrites the m x cc matrix `C` with `Q C`, Q = H_0 ... H_{kmax-1} from {@link householderQR}.
 * With `identityStart`, C holds leading identity columns, so columns < k stay untouched at step k.
 */
function applyQ(d: Float64Array, m: number, n: number, tau: Float64Array, C: Float64Array, cc: number, identityStart: boolean): void {
  const w = new Float64Array(cc);
  for (let k = tau.length - 1; k >= 0; k--) {
    const t = tau[k]!;
    if (t === 0) continue;
    const j0 = identityStart ? Math.min(k, cc) : 0;
    const ck = k * cc;
    for (let j = j0; j < cc; j++) w[j] = C[ck + j]!;
    for (let i = k + 1; i < m; i++) {
      const vi = d[i * n + k]!;
      if (vi === 0) continue;
      const ci = i * cc;
      for (let j = j0; j < cc; j++) w[j]! += vi * C[ci + j]!;
    }
    for (let j = j0; j < cc; j++) C[ck + j]! -= t * w[j]!;
    for (let i = k + 1; i < m; i++) {
      const f = t * d[i * n + k]!;
      if (f === 0) continue;
      const ci = i * cc;
      for (let j = j0; j < cc; j++) C[ci + j]! -= f * w[j]!;
    }
  }
}

/**
 * Householder QR, `A = Q R`. "reduced" (default): Q is m x min(m,n) with orthonormal columns and
 * R is min(m,n) x n; "complete": Q is m x m orthogonal and R is m x n. R is upper triangular
 * (entries below the diagonal are exactly zero); its diagonal may be negative.
 */
export function qr(a: Mat, mode: "reduced" | "complete" = "reduced"): { q: Mat; r: Mat } {
  requireFinite("qr", a);
  const m = a.rows, n = a.cols, kmax = Math.min(m, n);
  const d = Float64Array.from(a.data);
  const tau = householderQR(d, m, n);
  const qc = mode === "complete" ? m : kmax;
  const q = mat(m, qc);
  for (let i = 0; i < qc; i++) q.data[i * qc + i] = 1;
  applyQ(d, m, n, tau, q.data, qc, true);
  const rr = mode === "complete" ? m : kmax;
  const r = mat(rr, n);
  for (let i = 0; i < Math.min(rr, kmax); i++) for (let j = i; j < n; j++) r.data[i * n + j] = d[i * n + j]!;
  return { q, r };
}

// ---------------------------------------------------------------------------------------------
// symmetric eigendecomposition

/**
 * Eigendecomposition of a symmetric matrix (only the lower triangle is read): `A V = V diag(values)`
 * with values ascending and orthonormal eigenvectors in the columns of `vectors`.
 * Householder tridiagonalisation followed by implicit-shift QL iterations.
 */
export function eigh(a: Mat): { values: Float64Array; vectors: Mat } {
  requireSquare("eigh", a);
  requireFinite("eigh", a);
  const n = a.rows;
  const { values, rows } = symEig(a);
  const vectors = transpose({ rows: n, cols: n, data: rows });
  return { values, vectors };
}

/** Symmetric eigensolver core: ascending values, eigenvector j in row j of `rows` (n x n). */
function symEig(a: Mat): { values: Float64Array; rows: Float64Array } {
  const n = a.rows;
  if (n === 0) return { values: new Float64Array(0), rows: new Float64Array(0) };
  let amax = 0;
  for (let r = 0; r < n; r++) {
    for (let c = 0; c <= r; c++) {
      const v = Math.abs(a.data[r * n + c]!);
      if (v > amax) amax = v;
    }
  }
  if (amax === 0) return { values: new Float64Array(n), rows: eye(n).data };
  // W[c*n + r] holds V[r][c]: every inner loop of the reduction and all rotations run along rows
  // of W. Exact power-of-two scaling keeps the iteration away from overflow and underflow.
  const ex = pow2Exponent(amax);
  const sc = 2 ** ex, isc = 2 ** -ex;
  const W = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c <= r; c++) W[c * n + r] = a.data[r * n + c]! * isc;
  const d = new Float64Array(n), e = new Float64Array(n);
  tred2(W, d, e, n);
  tql2(W, d, e, n);
  const idx = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[x]! - d[y]!);
  const values = new Float64Array(n);
  const rows = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    values[j] = d[idx[j]!]! * sc;
    rows.set(W.subarray(idx[j]! * n, idx[j]! * n + n), j * n);
  }
  return { values, rows };
}

/** Householder tridiagonalisation (EISPACK tred2 / JAMA), V accumulated transposed in W. */
function tred2(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = W[j * n + n - 1]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0, h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = W[j * n + i - 1]!;
        W[j * n + i] = 0;
        W[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k]! /= scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        const wj = j * n;
        f = d[j]!;
        W[i * n + j] = f;
        g = e[j]! + W[wj + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const v = W[wj + k]!;
          g += v * d[k]!;
          e[k]! += v * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j]! /= h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j]! -= hh * d[j]!;
      for (let j = 0; j < i; j++) {
        const wj = j * n;
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) W[wj + k]! -= f * e[k]! + g * d[k]!;
        d[j] = W[wj + i - 1]!;
        W[wj + i] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    W[i * n + n - 1] = W[i * n + i]!;
    W[i * n + i] = 1;
    const h = d[i + 1]!;
    const wi1 = (i + 1) * n;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = W[wi1 + k]! / h;
      for (let j = 0; j <= i; j++) {
        const wj = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += W[wi1 + k]! * W[wj + k]!;
        for (let k = 0; k <= i; k++) W[wj + k]! -= g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) W[wi1 + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = W[j * n + n - 1]!;
    W[j * n + n - 1] = 0;
  }
  W[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit-shift QL on the tridiagonal (d, e) (EISPACK tql2 / JAMA), rotating rows of W. */
function tql2(W: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0, tst1 = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= EPS * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) {
          throw new NumericalError(`eigh: QL iteration did not converge for eigenvalue ${l} of a ${n}x${n} matrix`);
        }
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        f += h;
        p = d[m]!;
        let c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
        const el1 = e[l + 1]!;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const wi = i * n, wi1 = wi + n;
          for (let k = 0; k < n; k++) {
            const hk = W[wi1 + k]!, vk = W[wi + k]!;
            W[wi1 + k] = s * vk + c * hk;
            W[wi + k] = c * vk - s * hk;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > EPS * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// SVD

/**
 * One-sided (Hestenes) Jacobi on the `nv` rows of Y (each of length `len`): rotates pairs of rows
 * until every pair is orthogonal to `len * eps` relative accuracy, applying the same rotations to
 * the rows of Wt (length `wlen`). Rows with squared norm below `nullSq` are left alone.
 * Returns the squared row norms.
 */
function jacobiRows(op: string, Y: Float64Array, Wt: Float64Array, nv: number, len: number, wlen: number, nullSq: number): Float64Array {
  const sq = new Float64Array(nv);
  for (let p = 0; p < nv; p++) {
    let s = 0;
    for (let i = 0, o = p * len; i < len; i++) s += Y[o + i]! * Y[o + i]!;
    sq[p] = s;
  }
  const tol = EPS * Math.max(len, 4);
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = 0;
    for (let p = 0; p < nv - 1; p++) {
      const rp = p * len, wp = p * wlen;
      for (let q = p + 1; q < nv; q++) {
        const alpha = sq[p]!, beta = sq[q]!;
        if (alpha < nullSq) break;
        if (beta < nullSq) continue;
        const rq = q * len;
        let gamma = 0;
        for (let i = 0; i < len; i++) gamma += Y[rp + i]! * Y[rq + i]!;
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.abs(zeta) > 1e150 ? 0.5 / zeta : (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        let np = 0, nq = 0;
        for (let i = 0; i < len; i++) {
          const yp = Y[rp + i]!, yq = Y[rq + i]!;
          const u = c * yp - s * yq, v = s * yp + c * yq;
          Y[rp + i] = u;
          Y[rq + i] = v;
          np += u * u;
          nq += v * v;
        }
        sq[p] = np;
        sq[q] = nq;
        const wq = q * wlen;
        for (let i = 0; i < wlen; i++) {
          const xp = Wt[wp + i]!, xq = Wt[wq + i]!;
          Wt[wp + i] = c * xp - s * xq;
          Wt[wq + i] = s * xp + c * xq;
        }
        rotated++;
      }
    }
    if (rotated === 0) return sq;
  }
  throw new NumericalError(`${op}: one-sided Jacobi did not converge for a ${nv}x${len} problem`);
}

/**
 * Fills rows `from..k-1` of the k x len row matrix R (rows before `from` orthonormal, k <= len)
 * with an orthonormal completion, by whichever of two methods costs fewer flops: Householder QR of
 * the given rows (then Q e_j, j >= from), or twice-repeated Gram-Schmidt of the unit vector least
 * covered so far.
 */
function completeRows(R: Float64Array, from: number, k: number, len: number): void {
  const add = k - from;
  if (add <= 0) return;
  // flops per unit of len: QR 2 from^2 + apply 4 from add; Gram-Schmidt 2 passes x 4 per earlier row
  const costQR = 2 * from * from + 4 * from * add;
  const costGS = 4 * add * (from + k);
  if (costQR <= costGS) {
    const f = new Float64Array(len * from);
    for (let p = 0; p < from; p++) for (let c = 0; c < len; c++) f[c * from + p] = R[p * len + c]!;
    const tau = householderQR(f, len, from);
    const C = new Float64Array(len * add);
    for (let c = 0; c < add; c++) C[(from + c) * add + c] = 1;
    applyQ(f, len, from, tau, C, add, false);
    for (let c = 0; c < add; c++) for (let r = 0; r < len; r++) R[(from + c) * len + r] = C[r * add + c]!;
    return;
  }
  const cover = new Float64Array(len);
  for (let p = 0; p < from; p++) for (let c = 0; c < len; c++) cover[c] += R[p * len + c]! * R[p * len + c]!;
  for (let i = from; i < k; i++) {
    const ri = i * len;
    let best = 0;
    for (let c = 1; c < len; c++) if (cover[c]! < cover[best]!) best = c;
    R.fill(0, ri, ri + len);
    R[ri + best] = 1;
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < i; p++) {
        const rp = p * len;
        let dot = 0;
        for (let c = 0; c < len; c++) dot += R[rp + c]! * R[ri + c]!;
        if (dot !== 0) for (let c = 0; c < len; c++) R[ri + c]! -= dot * R[rp + c]!;
      }
    }
    const nr = stridedNorm(R, ri, 1, len);
    for (let c = 0; c < len; c++) {
      R[ri + c]! /= nr;
      cover[c] += R[ri + c]! * R[ri + c]!;
    }
  }
}

/**
 * Rotates the rows `S` of Bt (length m) and of Vt (length n) by the eigenvectors of their Gram
 * matrix, so those rows become orthogonal up to eps times the largest one; the new rows are written
 * back in descending norm order. With `vIdentity`, Vt's rows S are taken to be unit vectors.
 */
function gramPrecondition(Bt: Float64Array, Vt: Float64Array, S: number[], m: number, n: number, vIdentity: boolean): void {
  const k = S.length;
  const bs = mat(k, m);
  for (let i = 0; i < k; i++) bs.data.set(Bt.subarray(S[i]! * m, S[i]! * m + m), i * m);
  const eg = symEig(gemmNT(bs, bs, true));
  const e = mat(k, k);
  for (let i = 0; i < k; i++) e.data.set(eg.rows.subarray((k - 1 - i) * k, (k - i) * k), i * k);
  const nb = matmul(e, bs).data;
  for (let i = 0; i < k; i++) Bt.set(nb.subarray(i * m, i * m + m), S[i]! * m);
  if (vIdentity) {
    // rows S of Vt are the unit vectors e_{S[i]}: E times them scatters E's columns
    for (let i = 0; i < k; i++) {
      const vi = S[i]! * n;
      Vt.fill(0, vi, vi + n);
      for (let c = 0; c < k; c++) Vt[vi + S[c]!] = e.data[i * k + c]!;
    }
  } else {
    const vs = mat(k, n);
    for (let i = 0; i < k; i++) vs.data.set(Vt.subarray(S[i]! * n, S[i]! * n + n), i * n);
    const nv = matmul(e, vs).data;
    for (let i = 0; i < k; i++) Vt.set(nv.subarray(i * n, i * n + n), S[i]! * n);
  }
}

/**
 * Thin SVD of a tall (m >= n >= 1) matrix, truncated to k triplets, as transposed factors:
 * `ut` (k x m) and `vt` (k x n). Works on the rows of Bt = (A V)^T starting from V = I. The
 * eigenvectors of the Gram matrix make the columns of A V orthogonal up to eps * ||A||^2; columns far
 * below the largest are re-preconditioned by their own (better resolved) Gram matrix, and a final
 * one-sided Jacobi iteration restores full accuracy in a few sweeps.
 */
function svdTall(op: string, a: Mat, k: number, wantVectors: boolean): { ut: Mat; s: Float64Array; vt: Mat } {
  const m = a.rows, n = a.cols;
  const amax = maxAbs(a.data);
  const s = new Float64Array(k);
  if (amax === 0) {
    const ut = mat(k, m), vt = mat(k, n);
    for (let i = 0; i < k; i++) {
      ut.data[i * m + i] = 1;
      vt.data[i * n + i] = 1;
    }
    return { ut, s, vt };
  }
  // exact power-of-two scaling keeps squared norms away from overflow and underflow
  const ex = pow2Exponent(amax);
  const sc = 2 ** ex;
  const Bt = transpose(scale(a, 2 ** -ex)).data;
  const Vt = new Float64Array(n * n);
  const rowSq = (j: number): number => {
    let q = 0;
    for (let r = 0, o = j * m; r < m; r++) q += Bt[o + r]! * Bt[o + r]!;
    return q;
  };
  let S = Array.from({ length: n }, (_, i) => i);
  let nullSq = TINY_SQ;
  for (let level = 0; level === 0 || (level < 8 && S.length >= 2); level++) {
    gramPrecondition(Bt, Vt, S, m, n, level === 0);
    const sqS = S.map(rowSq);
    const levelMax = Math.max(...sqS);
    // columns below n * eps * s_max are numerically zero: excluded from the rotations, and their
    // left singular vectors are an orthonormal completion
    if (level === 0) nullSq = Math.max(TINY_SQ, levelMax * (EPS * n) ** 2);
    S = S.filter((_, i) => sqS[i]! < levelMax * 1e-10 && sqS[i]! >= nullSq);
  }
  const sq = jacobiRows(op, Bt, Vt, n, m, n, nullSq);
  const sig = new Float64Array(n);
  for (let j = 0; j < n; j++) sig[j] = stridedNorm(Bt, j * m, 1, m);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => sig[y]! - sig[x]!);
  for (let i = 0; i < k; i++) s[i] = sig[order[i]!]! * sc;
  if (!wantVectors) return { ut: mat(0, 0), s, vt: mat(0, 0) };
  const vt = mat(k, n), ut = mat(k, m);
  let filled = k;
  for (let i = 0; i < k; i++) {
    const j = order[i]!;
    vt.data.set(Vt.subarray(j * n, j * n + n), i * n);
    if (sq[j]! < nullSq) {
      filled = Math.min(filled, i);
      continue;
    }
    const inv = 1 / sig[j]!;
    for (let r = 0; r < m; r++) ut.data[i * m + r] = Bt[j * m + r]! * inv;
  }
  // null columns sort after the others (their norms are below every non-null one)
  completeRows(ut.data, filled, k, m);
  return { ut, s, vt };
}

/**
 * Thin singular value decomposition `A = U diag(s) V^T` for any m x n matrix: U is m x r and
 * `vt` is r x n with orthonormal columns/rows, s descending and non-negative, r = min(m, n) or
 * `opts.k` (leading triplets only). Works on the smaller dimension: Gram-matrix eigenvectors
 * precondition a one-sided Jacobi iteration, so singular values are accurate to about
 * eps * ||A||_2 and U, V stay orthonormal for rank-deficient input; singular values below about
 * min(m,n) * eps * s_max are numerically zero and get an orthonormal completion for U.
 */
export function svd(a: Mat, opts: { k?: number } = {}): { u: Mat; s: Float64Array; vt: Mat } {
  requireFinite("svd", a);
  const m = a.rows, n = a.cols, r = Math.min(m, n);
  const k = opts.k ?? r;
  if (!Number.isInteger(k) || k < 0 || k > r) {
    throw new ShapeError(`svd: k must be an integer in [0, ${r}] for a ${shp(a)} matrix, got ${k}`);
  }
  if (r === 0 || k === 0) return { u: mat(m, k), s: new Float64Array(k), vt: mat(k, n) };
  if (m >= n) {
    const t = svdTall("svd", a, k, true);
    return { u: transpose(t.ut), s: t.s, vt: t.vt };
  }
  const t = svdTall("svd", transpose(a), k, true);
  return { u: transpose(t.vt), s: t.s, vt: t.ut };
}

/** Singular values of A, descending (the {@link svd} algorithm without forming U). */
export function singularValues(a: Mat): Float64Array {
  requireFinite("singularValues", a);
  const r = Math.min(a.rows, a.cols);
  if (r === 0) return new Float64Array(0);
  return svdTall("singularValues", a.rows >= a.cols ? a : transpose(a), r, false).s;
}
