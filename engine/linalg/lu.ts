// LU with partial pivoting (solve, inverse, determinant, condition estimate), Cholesky and triangular solves.
import { NumericalError, ShapeError } from "../errors.ts";
import {
  DEFAULT_RCOND_TOL,
  eye,
  fmtCond,
  mat,
  requireFinite,
  requireFiniteResult,
  requireSquare,
  shp,
  transpose,
} from "./base.ts";
import type { LUResult, Mat, SolveOptions } from "./base.ts";
import { norm, norm1Of } from "./products.ts";

// ---------------------------------------------------------------------------------------------
// LU

/**
 * LU factorisation with partial (row) pivoting: `P A = L U` for any m x n matrix.
 * Never throws for singular input (a zero pivot column is skipped); the solvers check it.
 */
export function lu(a: Mat): LUResult {
  requireFinite("lu", a);
  const m = a.rows,
    n = a.cols;
  const d = Float64Array.from(a.data);
  const piv = new Int32Array(m);
  for (let i = 0; i < m; i++) piv[i] = i;
  let sign = 1;
  const kmax = Math.min(m, n);
  for (let k = 0; k < kmax; k++) {
    let p = k,
      best = Math.abs(d[k * n + k]!);
    for (let i = k + 1; i < m; i++) {
      const v = Math.abs(d[i * n + k]!);
      if (v > best) {
        best = v;
        p = i;
      }
    }
    if (p !== k) {
      const rk = k * n,
        rp = p * n;
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
  const m = f.lu.rows,
    n = f.lu.cols,
    k = Math.min(m, n),
    d = f.lu.data;
  const l = mat(m, k),
    u = mat(k, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < Math.min(i, k); j++) l.data[i * k + j] = d[i * n + j]!;
    if (i < k) l.data[i * k + i] = 1;
  }
  for (let i = 0; i < k; i++) for (let j = i; j < n; j++) u.data[i * n + j] = d[i * n + j]!;
  return { l, u };
}

/** Index of the first exactly-zero diagonal entry of U, or -1. */
function zeroPivot(f: LUResult): number {
  const n = f.lu.cols,
    k = Math.min(f.lu.rows, n);
  for (let i = 0; i < k; i++) if (f.lu.data[i * n + i] === 0) return i;
  return -1;
}

/** Solves `A x = b` in place for one vector given `P A = L U` (square, nonsingular U). */
function luSolveVec(f: LUResult, b: Float64Array): Float64Array {
  const n = f.lu.rows,
    d = f.lu.data,
    piv = f.piv;
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
  const n = f.lu.rows,
    d = f.lu.data,
    piv = f.piv;
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
    const ri = i * n,
      zi = y[i]!;
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
      let j = 0,
        zmax = 0,
        ztx = 0;
      for (let i = 0; i < n; i++) {
        const v = Math.abs(z[i]!);
        if (v > zmax) {
          zmax = v;
          j = i;
        }
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
    throw new NumericalError(
      `${op}: matrix ${n}x${n} is singular to working precision (zero pivot in column ${zp}, condition estimate inf)`,
    );
  }
  const rc = luRcond(f);
  if (rc < tol) {
    throw new NumericalError(
      `${op}: matrix ${n}x${n} is singular to working precision (condition estimate ${fmtCond(1 / rc)})`,
    );
  }
}

function luSolveOp(op: string, f: LUResult, b: Mat, opts: SolveOptions): Mat {
  const n = f.lu.rows;
  if (f.lu.cols !== n) throw new ShapeError(`${op}: matrix must be square, got ${shp(f.lu)}`);
  if (b.rows !== n)
    throw new ShapeError(`${op}: right-hand side rows must match the matrix, got ${n}x${n} and ${shp(b)}`);
  requireFinite(op, b);
  checkConditioned(op, f, opts.rcondTol ?? DEFAULT_RCOND_TOL);
  const r = b.cols,
    d = f.lu.data,
    piv = f.piv;
  const X = new Float64Array(n * r);
  for (let i = 0; i < n; i++) X.set(b.data.subarray(piv[i]! * r, piv[i]! * r + r), i * r);
  // forward: unit lower L, row-oriented axpy updates
  for (let i = 0; i < n; i++) {
    const ri = i * n,
      xi = i * r;
    for (let k = 0; k < i; k++) {
      const l = d[ri + k]!;
      if (l === 0) continue;
      const xk = k * r;
      for (let j = 0; j < r; j++) X[xi + j]! -= l * X[xk + j]!;
    }
  }
  // backward: upper U
  for (let i = n - 1; i >= 0; i--) {
    const ri = i * n,
      xi = i * r;
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
  if (b.rows !== a.rows)
    throw new ShapeError(`solve: right-hand side rows must match the matrix, got ${shp(a)} and ${shp(b)}`);
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
  const f = lu(a),
    n = a.rows;
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
  const n = a.rows,
    A = a.data,
    L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = A[ri + j]!;
      for (let k = 0; k < j; k++) s -= L[ri + k]! * L[rj + k]!;
      if (j === i) {
        if (!(s > 0)) {
          throw new NumericalError(
            `cholesky: matrix ${n}x${n} is not positive definite (pivot ${i} is ${s.toExponential(2)})`,
          );
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
  if (b.rows !== n)
    throw new ShapeError(`${op}: right-hand side rows must match the matrix, got ${shp(t)} and ${shp(b)}`);
  requireFinite(op, t);
  requireFinite(op, b);
  const unit = opts.unitDiagonal === true,
    trans = opts.transpose === true,
    lower = opts.lower;
  const T = t.data,
    r = b.cols,
    X = Float64Array.from(b.data);
  if (!unit) {
    for (let i = 0; i < n; i++) {
      if (T[i * n + i] === 0)
        throw new NumericalError(
          `${op}: triangular matrix ${n}x${n} is singular (zero diagonal at ${i}, condition estimate inf)`,
        );
    }
  }
  const divRow = (i: number): void => {
    if (unit) return;
    const inv = 1 / T[i * n + i]!,
      xi = i * r;
    for (let j = 0; j < r; j++) X[xi + j]! *= inv;
  };
  const axpyRow = (dst: number, src: number, f: number): void => {
    if (f === 0) return;
    const xd = dst * r,
      xs = src * r;
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
