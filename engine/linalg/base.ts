// Dense float64 matrices: the type, construction, elementwise helpers and the checks shared by
// the products, decompositions and solvers.
import { NumericalError, ShapeError } from "../errors.ts";

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

export const EPS = 2.220446049250313e-16;
/** Squared norms below this are treated as zero by the Jacobi SVD (avoids underflow in products). */
export const TINY_SQ = 1e-280;
export const DEFAULT_RCOND_TOL = 1e-14;

export const shp = (a: Mat): string => `${a.rows}x${a.cols}`;

/** Power-of-two exponent that brings `amax` (> 0, finite) near 1; both 2^e and 2^-e are finite. */
export function pow2Exponent(amax: number): number {
  return Math.min(1000, Math.max(-1000, Math.floor(Math.log2(amax))));
}

export function fmtCond(c: number): string {
  return Number.isFinite(c) ? c.toExponential(1) : "inf";
}

export function requireFinite(op: string, a: Mat): void {
  const d = a.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) {
      const r = Math.floor(i / a.cols);
      throw new NumericalError(
        `${op}: input ${shp(a)} contains a non-finite value at (${r}, ${i - r * a.cols}), got ${v}`,
      );
    }
  }
}

export function requireFiniteResult(op: string, a: Mat, what: string): void {
  const d = a.data;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v - v !== 0) throw new NumericalError(`${op}: ${what} ${shp(a)} overflowed to a non-finite value, got ${v}`);
  }
}

export function requireSquare(op: string, a: Mat): void {
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
      throw new ShapeError(
        `mat: data length must equal rows*cols = ${rows * cols} for shape ${rows}x${cols}, got ${data.length}`,
      );
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
  const m = a.rows,
    n = a.cols,
    src = a.data;
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

export function sameShape(op: string, a: Mat, b: Mat): void {
  if (a.rows !== b.rows || a.cols !== b.cols)
    throw new ShapeError(`${op}: shapes must match, got ${shp(a)} and ${shp(b)}`);
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
