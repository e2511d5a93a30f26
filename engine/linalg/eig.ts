// Householder QR and the symmetric eigendecomposition (tridiagonal reduction + implicit QL).
import { NumericalError } from "../errors.ts";
import { EPS, eye, mat, pow2Exponent, requireFinite, requireSquare, transpose } from "./base.ts";
import type { Mat } from "./base.ts";
import { stridedNorm } from "./products.ts";

// ---------------------------------------------------------------------------------------------
// Householder QR

/**
 * In-place Householder QR of the m x n row-major `d` (LAPACK dgeqrf layout: R on and above the
 * diagonal, reflector tails below, v_k[k] = 1 implied); returns the reflector scalars.
 */
export function householderQR(d: Float64Array, m: number, n: number): Float64Array {
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
      const ri = i * n,
        vi = d[ri + k]!;
      if (vi === 0) continue;
      for (let j = k + 1; j < n; j++) w[j] += vi * d[ri + j]!;
    }
    for (let j = k + 1; j < n; j++) d[rk + j]! -= t * w[j]!;
    for (let i = k + 1; i < m; i++) {
      const ri = i * n,
        f = t * d[ri + k]!;
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
export function applyQ(
  d: Float64Array,
  m: number,
  n: number,
  tau: Float64Array,
  C: Float64Array,
  cc: number,
  identityStart: boolean,
): void {
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
  const m = a.rows,
    n = a.cols,
    kmax = Math.min(m, n);
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
export function symEig(a: Mat): { values: Float64Array; rows: Float64Array } {
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
  const sc = 2 ** ex,
    isc = 2 ** -ex;
  const W = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c <= r; c++) W[c * n + r] = a.data[r * n + c]! * isc;
  const d = new Float64Array(n),
    e = new Float64Array(n);
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
    let scale = 0,
      h = 0;
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
  let f = 0,
    tst1 = 0;
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
        let c = 1,
          c2 = 1,
          c3 = 1,
          s = 0,
          s2 = 0;
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
          const wi = i * n,
            wi1 = wi + n;
          for (let k = 0; k < n; k++) {
            const hk = W[wi1 + k]!,
              vk = W[wi + k]!;
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
