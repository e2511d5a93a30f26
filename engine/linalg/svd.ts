// SVD: Gram-preconditioned one-sided Jacobi on tall matrices (wide ones through the transpose).
import { NumericalError, ShapeError } from "../errors.ts";
import { EPS, TINY_SQ, mat, pow2Exponent, requireFinite, scale, shp, transpose } from "./base.ts";
import type { Mat } from "./base.ts";
import { applyQ, householderQR, symEig } from "./eig.ts";
import { gramRowsLower, matmul, maxAbs, stridedNorm } from "./products.ts";

// ---------------------------------------------------------------------------------------------
// SVD

/**
 * One-sided (Hestenes) Jacobi on the `nv` rows of Y (each of length `len`): rotates pairs of rows
 * until every pair is orthogonal to `len * eps` relative accuracy, applying the same rotations to
 * the rows of Wt (length `wlen`). Rows with squared norm below `nullSq` are left alone.
 * Returns the squared row norms.
 */
function jacobiRows(
  op: string,
  Y: Float64Array,
  Wt: Float64Array,
  nv: number,
  len: number,
  wlen: number,
  nullSq: number,
): Float64Array {
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
      const rp = p * len,
        wp = p * wlen;
      for (let q = p + 1; q < nv; q++) {
        const alpha = sq[p]!,
          beta = sq[q]!;
        if (alpha < nullSq) break;
        if (beta < nullSq) continue;
        const rq = q * len;
        let gamma = 0;
        for (let i = 0; i < len; i++) gamma += Y[rp + i]! * Y[rq + i]!;
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        const zeta = (beta - alpha) / (2 * gamma);
        const t =
          Math.abs(zeta) > 1e150 ? 0.5 / zeta : (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t),
          s = c * t;
        let np = 0,
          nq = 0;
        for (let i = 0; i < len; i++) {
          const yp = Y[rp + i]!,
            yq = Y[rq + i]!;
          const u = c * yp - s * yq,
            v = s * yp + c * yq;
          Y[rp + i] = u;
          Y[rq + i] = v;
          np += u * u;
          nq += v * v;
        }
        sq[p] = np;
        sq[q] = nq;
        const wq = q * wlen;
        for (let i = 0; i < wlen; i++) {
          const xp = Wt[wp + i]!,
            xq = Wt[wq + i]!;
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
function gramPrecondition(
  Bt: Float64Array,
  Vt: Float64Array,
  S: number[],
  m: number,
  n: number,
  vIdentity: boolean,
): void {
  const k = S.length;
  const bs = mat(k, m);
  for (let i = 0; i < k; i++) bs.data.set(Bt.subarray(S[i]! * m, S[i]! * m + m), i * m);
  const eg = symEig(gramRowsLower(bs));
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
  const m = a.rows,
    n = a.cols;
  const amax = maxAbs(a.data);
  const s = new Float64Array(k);
  if (amax === 0) {
    const ut = mat(k, m),
      vt = mat(k, n);
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
  const vt = mat(k, n),
    ut = mat(k, m);
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
  const m = a.rows,
    n = a.cols,
    r = Math.min(m, n);
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
