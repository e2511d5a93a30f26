// Tests of engine/linalg.ts: reconstructions of every factorisation, solves against known
// solutions, and the error paths (singular, indefinite, non-finite, mismatched shapes).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NumericalError, ShapeError } from "../../engine/errors.ts";
import {
  add,
  cholesky,
  choleskySolve,
  condEstimate,
  det,
  eigh,
  eye,
  gram,
  inv,
  lu,
  luFactors,
  luRcond,
  luSolve,
  mat,
  matmul,
  matmulNT,
  matmulTN,
  norm,
  qr,
  scale,
  singularValues,
  solve,
  solveTriangular,
  sqNormTimesLower,
  sub,
  svd,
  transpose,
} from "../../engine/linalg.ts";
import type { Mat } from "../../engine/linalg.ts";

// ---- helpers ----------------------------------------------------------------------------------

/** mulberry32: small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rand(m: number, n: number, seed: number): Mat {
  const r = prng(seed);
  return mat(
    m,
    n,
    Array.from({ length: m * n }, () => 2 * r() - 1),
  );
}

function at(a: Mat, i: number, j: number): number {
  return a.data[i * a.cols + j]!;
}

function maxAbsOf(a: Mat): number {
  let m = 0;
  for (const v of a.data) m = Math.max(m, Math.abs(v));
  return m;
}

/** max |a - b|, requiring equal shapes. */
function maxDiff(a: Mat, b: Mat): number {
  assert.is(a.rows, b.rows, "rows");
  assert.is(a.cols, b.cols, "cols");
  return maxAbsOf(sub(a, b));
}

function naiveMatmul(a: Mat, b: Mat): Mat {
  const c = mat(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += at(a, i, k) * at(b, k, j);
      c.data[i * b.cols + j] = s;
    }
  }
  return c;
}

/** max |Q^T Q - I| over the columns of q. */
function orthCols(q: Mat): number {
  return maxDiff(matmulTN(q, q), eye(q.cols));
}

/** max |V V^T - I| over the rows of vt. */
function orthRows(vt: Mat): number {
  return maxDiff(matmulNT(vt, vt), eye(vt.rows));
}

function diagMat(d: ArrayLike<number>, rows = d.length, cols = d.length): Mat {
  const m = mat(rows, cols);
  for (let i = 0; i < d.length; i++) m.data[i * cols + i] = d[i]!;
  return m;
}

function hilbert(n: number): Mat {
  const h = mat(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h.data[i * n + j] = 1 / (i + j + 1);
  return h;
}

/** A = U0 diag(s) V0^T with random orthonormal U0 (m x r) and V0 (n x r), r = s.length. */
function withSingularValues(m: number, n: number, s: number[], seed: number): Mat {
  const r = s.length;
  const u0 = qr(rand(m, r, seed)).q;
  const v0 = qr(rand(n, r, seed + 1)).q;
  return matmulNT(matmul(u0, diagMat(s)), v0);
}

function throwsWith(fn: () => unknown, Cls: new (m: string) => Error, re: RegExp): string {
  try {
    fn();
  } catch (e) {
    assert.instance(e, Cls, `expected ${Cls.name}, got ${String(e)}`);
    const msg = (e as Error).message;
    assert.match(msg, re);
    return msg;
  }
  assert.unreachable(`expected ${Cls.name} matching ${re}`);
  return "";
}

function logspace(hi: number, lo: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => 10 ** (hi + ((lo - hi) * i) / Math.max(n - 1, 1)));
}

// ---- construction and products ----------------------------------------------------------------

test("mat, eye, transpose, add, sub, scale", () => {
  const a = mat(2, 3, [1, 2, 3, 4, 5, 6]);
  assert.equal(Array.from(transpose(a).data), [1, 4, 2, 5, 3, 6]);
  assert.equal(transpose(a).rows, 3);
  assert.equal(Array.from(eye(2).data), [1, 0, 0, 1]);
  assert.equal(Array.from(add(a, a).data), [2, 4, 6, 8, 10, 12]);
  assert.equal(Array.from(sub(a, scale(a, 2)).data), [-1, -2, -3, -4, -5, -6]);
  const big = rand(37, 70, 1); // exercises the blocked transpose's partial tiles
  const bt = transpose(big);
  for (let i = 0; i < 37; i++) for (let j = 0; j < 70; j++) assert.is(at(bt, j, i), at(big, i, j));
  throwsWith(() => mat(2, 2, [1, 2, 3]), ShapeError, /mat: .*2x2.*got 3/);
  throwsWith(() => add(mat(2, 3), mat(3, 2)), ShapeError, /2x3 and 3x2/);
});

test("matmul, matmulTN and matmulNT match a naive triple loop (tol 1e-13 relative)", () => {
  const sizes: [number, number, number][] = [
    [1, 1, 1],
    [5, 7, 3],
    [33, 17, 9],
    [70, 130, 50],
    [6, 801, 50],
    [3, 2, 801],
  ];
  let seed = 10;
  for (const [m, k, n] of sizes) {
    const a = rand(m, k, seed++),
      b = rand(k, n, seed++);
    a.data[0] = 0; // exercises the zero-skip path
    const ref = naiveMatmul(a, b);
    const tol = 1e-13 * Math.max(1, maxAbsOf(ref));
    assert.ok(maxDiff(matmul(a, b), ref) < tol, `matmul ${m}x${k}x${n}`);
    assert.ok(maxDiff(matmulTN(transpose(a), b), ref) < tol, `matmulTN ${m}x${k}x${n}`);
    assert.ok(maxDiff(matmulNT(a, transpose(b)), ref) < tol, `matmulNT ${m}x${k}x${n}`);
  }
});

test("gram (a^T a) and sqNormTimesLower (||a L||_F^2) match the plain products, across the k blocking", () => {
  let seed = 40;
  for (const [r, d] of [
    [1, 1],
    [7, 5],
    [600, 9],
    [13, 34],
  ]) {
    const a = rand(r!, d!, seed++);
    const ref = matmulTN(a, a);
    assert.ok(maxDiff(gram(a), ref) < 1e-13 * Math.max(1, maxAbsOf(ref)), `gram ${r}x${d}`);
    const l = rand(d!, d!, seed++);
    for (let i = 0; i < d!; i++) for (let j = i + 1; j < d!; j++) l.data[i * d! + j] = 0;
    const al = matmul(a, l);
    const want = norm(al) ** 2;
    assert.ok(Math.abs(sqNormTimesLower(a, transpose(l)) - want) < 1e-12 * want, `sqNormTimesLower ${r}x${d}`);
  }
});

test("products reject mismatched shapes naming both shapes", () => {
  throwsWith(() => matmul(mat(3, 4), mat(5, 2)), ShapeError, /matmul: .*3x4 and 5x2/);
  throwsWith(() => matmulTN(mat(3, 4), mat(5, 2)), ShapeError, /matmulTN: .*3x4 and 5x2/);
  throwsWith(() => matmulNT(mat(3, 4), mat(5, 2)), ShapeError, /matmulNT: .*3x4 and 5x2/);
});

// ---- LU and solves ----------------------------------------------------------------------------

function checkLU(a: Mat, label: string): void {
  const f = lu(a);
  const { l, u } = luFactors(f);
  const pa = mat(a.rows, a.cols);
  for (let i = 0; i < a.rows; i++)
    pa.data.set(a.data.subarray(f.piv[i]! * a.cols, (f.piv[i]! + 1) * a.cols), i * a.cols);
  const tol = 1e-13 * Math.max(1, maxAbsOf(a));
  assert.ok(maxDiff(matmul(l, u), pa) < tol, `${label}: P A = L U`);
  for (let i = 0; i < l.rows; i++) {
    for (let j = 0; j < l.cols; j++) {
      if (j > i) assert.is(at(l, i, j), 0, `${label}: L upper part`);
      else if (j === i) assert.is(at(l, i, j), 1, `${label}: L unit diagonal`);
      else assert.ok(Math.abs(at(l, i, j)) <= 1, `${label}: partial pivoting bounds |L| by 1`);
    }
  }
  for (let i = 0; i < u.rows; i++)
    for (let j = 0; j < Math.min(i, u.cols); j++) assert.is(at(u, i, j), 0, `${label}: U lower part`);
  // sign is the parity of piv
  const seen = new Uint8Array(a.rows);
  let parity = 1;
  for (let i = 0; i < a.rows; i++) {
    if (seen[i]) continue;
    let len = 0;
    for (let j = i; !seen[j]; j = f.piv[j]!) {
      seen[j] = 1;
      len++;
    }
    if (len % 2 === 0) parity = -parity;
  }
  assert.is(f.sign, parity, `${label}: sign`);
}

test("lu: P A = L U for random, rank-deficient, 1x1, tall and wide matrices (tol 1e-13 * max|A|)", () => {
  checkLU(rand(9, 9, 3), "random 9x9");
  checkLU(matmul(rand(8, 3, 4), rand(3, 8, 5)), "rank 3 of 8x8");
  checkLU(mat(1, 1, [-2.5]), "1x1");
  checkLU(rand(7, 4, 6), "tall 7x4");
  checkLU(rand(4, 7, 7), "wide 4x7");
  checkLU(mat(3, 3, [0, 0, 1, 0, 0, 2, 3, 4, 5]), "zero pivot column");
  assert.ok(Math.abs(det(mat(2, 2, [1, 2, 3, 4])) + 2) < 1e-15, "det [[1,2],[3,4]] = -2");
  assert.ok(Math.abs(det(diagMat([2, 3, 4])) - 24) < 1e-13, "det diag");
});

test("solve recovers known solutions, several right-hand sides (tol 1e-11 relative)", () => {
  for (const n of [1, 2, 40]) {
    const a = add(rand(n, n, 20 + n), scale(eye(n), 2)); // keeps the condition number moderate
    const x0 = rand(n, 3, 30 + n);
    const x = solve(a, matmul(a, x0));
    assert.ok(maxDiff(x, x0) < 1e-11 * maxAbsOf(x0), `n=${n}`);
    const f = lu(a);
    assert.ok(maxDiff(luSolve(f, matmul(a, x0)), x0) < 1e-11 * maxAbsOf(x0), `luSolve n=${n}`);
  }
  const a = mat(3, 3, [2, 1, 1, 1, 3, 2, 1, 0, 0]);
  const x = solve(a, mat(3, 1, [4, 5, 6]));
  // exact solution of this system: x = (6, 15, -23)
  assert.ok(maxDiff(x, mat(3, 1, [6, 15, -23])) < 1e-12);
  const ai = inv(a);
  assert.ok(maxDiff(matmul(a, ai), eye(3)) < 1e-13, "inv");
});

test("solve on Hilbert 8x8: backward error 1e-14, forward error within cond * eps (1e-5)", () => {
  const h = hilbert(8);
  const x0 = mat(8, 1, new Array(8).fill(1));
  const b = matmul(h, x0);
  const x = solve(h, b);
  const resid = norm(sub(matmul(h, x), b)) / (norm(h) * norm(x));
  assert.ok(resid < 1e-14, `residual ${resid}`);
  assert.ok(maxDiff(x, x0) < 1e-5, `forward error ${maxDiff(x, x0)}`);
  const c = condEstimate(h);
  // exact 1-norm condition number of H8 is 3.387e10
  assert.ok(c > 3.3e9 && c < 3.4e10, `condEstimate(H8) = ${c}`);
});

test("singular systems throw NumericalError naming op, size and condition estimate", () => {
  throwsWith(
    () => solve(mat(2, 2, [1, 2, 2, 4]), mat(2, 1, [1, 1])),
    NumericalError,
    /^solve: matrix 2x2 is singular to working precision \(.*condition estimate inf\)$/,
  );
  // rounding leaves a tiny nonzero pivot here: caught by the condition estimate instead
  const s3 = mat(3, 3, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const msg = throwsWith(
    () => solve(s3, mat(3, 1, [1, 2, 3])),
    NumericalError,
    /^solve: matrix 3x3 is singular to working precision \(condition estimate \d\.\de\+\d+\)$/,
  );
  assert.ok(Number(/estimate (\S+)\)/.exec(msg)![1]) > 1e15, msg);
  throwsWith(() => luSolve(lu(s3), eye(3)), NumericalError, /^luSolve: matrix 3x3 is singular.*condition estimate/);
  throwsWith(() => inv(mat(2, 2)), NumericalError, /^inv: matrix 2x2 is singular/);
  assert.is(luRcond(lu(mat(2, 2, [1, 2, 2, 4]))), 0);
  assert.is(condEstimate(mat(2, 2)), Infinity);
  // Hilbert 12 (cond ~1.6e16) is singular to working precision
  throwsWith(() => solve(hilbert(12), mat(12, 1)), NumericalError, /solve: matrix 12x12 .*condition estimate/);
});

test("rcondTol option tightens the singularity test", () => {
  const h = hilbert(8);
  solve(h, eye(8)); // rcond ~3e-11 passes the default 1e-14
  throwsWith(
    () => solve(h, eye(8), { rcondTol: 1e-8 }),
    NumericalError,
    /solve: matrix 8x8 .*condition estimate \d\.\de\+10\)/,
  );
});

test("condEstimate is within a factor 3 below the exact 1-norm condition number", () => {
  for (const seed of [40, 41, 42]) {
    const a = rand(6, 6, seed);
    const exact = norm(a, 1) * norm(inv(a), 1);
    const est = condEstimate(a);
    assert.ok(est <= exact * (1 + 1e-10) && est >= exact / 3, `seed ${seed}: est ${est} exact ${exact}`);
  }
  assert.ok(Math.abs(condEstimate(diagMat([1, 1e-3, 1e3])) - 1e6) < 1e-4);
  assert.is(condEstimate(mat(1, 1, [5])), 1);
});

test("solvers reject mismatched shapes naming both shapes", () => {
  throwsWith(() => solve(mat(3, 3), mat(4, 1)), ShapeError, /solve: .*3x3 and 4x1/);
  throwsWith(() => solve(mat(3, 4), mat(3, 1)), ShapeError, /solve: .*square.*3x4/);
  throwsWith(() => luSolve(lu(eye(3)), mat(2, 2)), ShapeError, /luSolve: .*3x3 and 2x2/);
  throwsWith(() => solveTriangular(eye(3), mat(2, 1), { lower: true }), ShapeError, /3x3 and 2x1/);
  throwsWith(() => choleskySolve(eye(2), mat(3, 1)), ShapeError, /2x2 and 3x1/);
});

// ---- Cholesky and triangular ------------------------------------------------------------------

test("cholesky: L L^T = A with L lower and positive diagonal (tol 1e-13 * max|A|)", () => {
  const b = rand(20, 20, 50);
  const spd = add(matmulNT(b, b), eye(20));
  const cases: [string, Mat][] = [
    ["random SPD 20x20", spd],
    ["1x1", mat(1, 1, [4])],
    ["Hilbert 8", hilbert(8)],
  ];
  for (const [label, a] of cases) {
    const l = cholesky(a);
    assert.ok(maxDiff(matmulNT(l, l), a) < 1e-13 * maxAbsOf(a), label);
    for (let i = 0; i < l.rows; i++) {
      assert.ok(at(l, i, i) > 0, `${label}: diagonal`);
      for (let j = i + 1; j < l.cols; j++) assert.is(at(l, i, j), 0, `${label}: upper part`);
    }
  }
  assert.equal(Array.from(cholesky(mat(1, 1, [4])).data), [2]);
  const x0 = rand(20, 2, 51);
  assert.ok(maxDiff(choleskySolve(cholesky(spd), matmul(spd, x0)), x0) < 1e-12, "choleskySolve");
});

test("cholesky of indefinite or semidefinite matrices throws NumericalError naming the pivot", () => {
  throwsWith(
    () => cholesky(mat(2, 2, [1, 2, 2, 1])),
    NumericalError,
    /^cholesky: matrix 2x2 is not positive definite \(pivot 1 /,
  );
  throwsWith(() => cholesky(mat(1, 1, [-1])), NumericalError, /pivot 0 /);
  throwsWith(() => cholesky(diagMat([1, 1, 0])), NumericalError, /pivot 2 /);
  throwsWith(() => cholesky(mat(2, 3)), ShapeError, /cholesky: .*square.*2x3/);
});

test("solveTriangular: all lower/upper x transpose x unit-diagonal combinations (tol 1e-12)", () => {
  const n = 12;
  const r = rand(n, n, 60);
  const x0 = rand(n, 3, 61);
  for (const lower of [true, false]) {
    for (const transpose_ of [false, true]) {
      for (const unitDiagonal of [false, true]) {
        const t = mat(n, n);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            if (i === j) t.data[i * n + j] = unitDiagonal ? 1 : 2 + at(r, i, j);
            else if (lower === j < i) t.data[i * n + j] = 0.5 * at(r, i, j);
          }
        }
        const op = transpose_ ? transpose(t) : t;
        // the solver must read only its triangle: garbage elsewhere (and on a unit diagonal)
        const stored = clone2(t);
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            if (lower ? j > i : j < i) stored.data[i * n + j] = 1e3;
            if (unitDiagonal && i === j) stored.data[i * n + j] = 7;
          }
        }
        const x = solveTriangular(stored, matmul(op, x0), { lower, transpose: transpose_, unitDiagonal });
        assert.ok(maxDiff(x, x0) < 1e-12, `lower=${lower} transpose=${transpose_} unit=${unitDiagonal}`);
      }
    }
  }
  throwsWith(
    () => solveTriangular(diagMat([1, 0, 2]), mat(3, 1, [1, 1, 1]), { lower: true }),
    NumericalError,
    /solveTriangular: .*3x3 is singular \(zero diagonal at 1/,
  );
});

function clone2(a: Mat): Mat {
  return mat(a.rows, a.cols, a.data);
}

// ---- QR ---------------------------------------------------------------------------------------

test("qr: A = Q R with orthonormal Q (1e-12) and upper-triangular R, reduced and complete", () => {
  const cases: [string, Mat][] = [
    ["square 8x8", rand(8, 8, 70)],
    ["tall 9x4", rand(9, 4, 71)],
    ["wide 4x9", rand(4, 9, 72)],
    ["1x1", mat(1, 1, [-3])],
    ["column 5x1", rand(5, 1, 73)],
    ["rank 2 of 7x5", matmul(rand(7, 2, 74), rand(2, 5, 75))],
    ["zero column", mat(3, 2, [0, 1, 0, 2, 0, 3])],
    ["Hilbert 8", hilbert(8)],
  ];
  for (const [label, a] of cases) {
    for (const mode of ["reduced", "complete"] as const) {
      const { q, r } = qr(a, mode);
      const k = Math.min(a.rows, a.cols);
      assert.is(q.rows, a.rows);
      assert.is(q.cols, mode === "complete" ? a.rows : k, `${label} ${mode}: Q cols`);
      assert.is(r.rows, q.cols);
      assert.is(r.cols, a.cols);
      assert.ok(maxDiff(matmul(q, r), a) < 1e-13 * Math.max(1, maxAbsOf(a)), `${label} ${mode}: A = QR`);
      assert.ok(orthCols(q) < 1e-12, `${label} ${mode}: Q^T Q = I`);
      for (let i = 0; i < r.rows; i++)
        for (let j = 0; j < Math.min(i, r.cols); j++) assert.is(at(r, i, j), 0, `${label} ${mode}: R upper`);
    }
  }
  assert.equal(Math.abs(at(qr(mat(1, 1, [-3])).r, 0, 0)), 3);
});

// ---- eigh -------------------------------------------------------------------------------------

function checkEigh(a: Mat, label: string, known?: number[]): void {
  const { values, vectors } = eigh(a);
  const n = a.rows;
  const scaleA = Math.max(1, maxAbsOf(a));
  assert.ok(
    maxDiff(matmul(a, vectors), matmul(vectors, diagMat(values))) < 1e-12 * scaleA,
    `${label}: A V = V diag(w)`,
  );
  assert.ok(orthCols(vectors) < 1e-12, `${label}: V^T V = I`);
  for (let i = 1; i < n; i++) assert.ok(values[i - 1]! <= values[i]!, `${label}: ascending`);
  if (known) {
    const sorted = [...known].sort((x, y) => x - y);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(values[i]! - sorted[i]!) < 1e-13 * scaleA, `${label}: value ${i}`);
  }
}

test("eigh: A V = V diag(w), V orthonormal, ascending, known spectra (tol 1e-12 * max|A|)", () => {
  const b = rand(10, 10, 80);
  checkEigh(add(b, transpose(b)), "random symmetric 10x10");
  checkEigh(mat(1, 1, [-7]), "1x1", [-7]);
  checkEigh(mat(2, 2, [2, 1, 1, 2]), "2x2", [1, 3]);
  const w = [3, 1, 2, 1, 2, -4];
  const q = qr(rand(6, 6, 81)).q;
  checkEigh(matmul(matmul(q, diagMat(w)), transpose(q)), "repeated eigenvalues", w);
  const c = rand(8, 3, 82);
  const g = matmulNT(c, c);
  checkEigh(g, "rank 3 of 8x8");
  const { values } = eigh(g);
  for (let i = 0; i < 5; i++)
    assert.ok(Math.abs(values[i]!) < 1e-14 * maxAbsOf(g), "rank-deficient: five zero eigenvalues");
  checkEigh(diagMat([5, -1, 0, 2]), "diagonal", [5, -1, 0, 2]);
  checkEigh(mat(3, 3), "zero", [0, 0, 0]);
  checkEigh(hilbert(8), "Hilbert 8");
  const big = rand(60, 60, 83);
  checkEigh(scale(add(big, transpose(big)), 1e200), "large-magnitude 60x60");
});

test("eigh reads only the lower triangle", () => {
  const lower = mat(3, 3, [2, 99, 99, 1, 3, 99, 0, 1, 4]);
  const sym = mat(3, 3, [2, 1, 0, 1, 3, 1, 0, 1, 4]);
  const a = eigh(lower).values,
    b = eigh(sym).values;
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-14);
});

// ---- SVD --------------------------------------------------------------------------------------

function checkSvd(a: Mat, label: string, known?: number[], k?: number): ReturnType<typeof svd> {
  const res = k === undefined ? svd(a) : svd(a, { k });
  const { u, s, vt } = res;
  const r = k ?? Math.min(a.rows, a.cols);
  assert.is(u.rows, a.rows, `${label}: U rows`);
  assert.is(u.cols, r, `${label}: U cols`);
  assert.is(vt.rows, r, `${label}: Vt rows`);
  assert.is(vt.cols, a.cols, `${label}: Vt cols`);
  assert.is(s.length, r);
  const scaleA = Math.max(maxAbsOf(a), 1e-300);
  assert.ok(orthCols(u) < 1e-12, `${label}: U^T U = I (${orthCols(u)})`);
  assert.ok(orthRows(vt) < 1e-12, `${label}: V^T V = I (${orthRows(vt)})`);
  for (let i = 0; i < r; i++) assert.ok(s[i]! >= 0 && (i === 0 || s[i - 1]! >= s[i]!), `${label}: descending`);
  if (k === undefined) {
    const rec = matmul(matmul(u, diagMat(s)), vt);
    assert.ok(maxDiff(rec, a) < 1e-13 * scaleA, `${label}: A = U S V^T (${maxDiff(rec, a) / scaleA})`);
  }
  if (known)
    for (let i = 0; i < r; i++)
      assert.ok(Math.abs(s[i]! - known[i]!) <= 1e-14 * known[0]!, `${label}: s[${i}] ${s[i]} vs ${known[i]}`);
  return res;
}

test("svd: constructed singular values spanning 1..1e-10 are recovered to 1e-14 * s_max (tall and wide)", () => {
  const s0 = logspace(0, -10, 8);
  checkSvd(withSingularValues(12, 8, s0, 90), "tall 12x8", s0);
  checkSvd(transpose(withSingularValues(12, 8, s0, 92)), "wide 8x12", s0);
  checkSvd(withSingularValues(8, 8, s0, 94), "square 8x8", s0);
  // 40 values down to 1e-10 re-precondition the columns below 1e-5 * s_max
  const s1 = logspace(0, -10, 40);
  checkSvd(withSingularValues(70, 40, s1, 96), "graded 70x40", s1);
  checkSvd(transpose(withSingularValues(70, 40, s1, 98)), "graded 40x70", s1);
});

test("svd: random tall, wide, square and 1x1 matrices", () => {
  checkSvd(rand(30, 7, 100), "tall 30x7");
  checkSvd(rand(7, 30, 101), "wide 7x30");
  checkSvd(rand(25, 25, 102), "square 25x25");
  checkSvd(rand(1, 6, 103), "row 1x6");
  checkSvd(rand(6, 1, 104), "column 6x1");
  const one = checkSvd(mat(1, 1, [-2.5]), "1x1", [2.5]);
  assert.is(at(one.u, 0, 0) * at(one.vt, 0, 0), -1);
  checkSvd(diagMat([1, 3, 2]), "diagonal", [3, 2, 1]);
  checkSvd(scale(rand(9, 5, 105), 1e-200), "tiny magnitude");
  checkSvd(scale(rand(9, 5, 106), 1e200), "huge magnitude");
  checkSvd(rand(120, 400, 107), "wide 120x400 (Gram built in several column panels)");
  const small = rand(6, 4, 108);
  const sTiny = svd(scale(small, 1e-309)).s,
    sRef = svd(small).s;
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(sTiny[i]! / 1e-309 - sRef[i]!) < 1e-12 * sRef[0]!, "subnormal input");
});

test("svd: rank-deficient and zero matrices keep orthonormal U and V", () => {
  const a = matmul(rand(10, 2, 110), rand(2, 6, 111));
  const { s } = checkSvd(a, "rank 2 of 10x6");
  for (let i = 2; i < 6; i++) assert.ok(s[i]! < 1e-14 * s[0]!, `s[${i}] = ${s[i]}`);
  const w = checkSvd(transpose(a), "rank 2 of 6x10");
  for (let i = 2; i < 6; i++) assert.ok(w.s[i]! < 1e-14 * w.s[0]!);
  const z = checkSvd(mat(4, 3), "zero 4x3", [0, 0, 0]);
  assert.equal(Array.from(z.s), [0, 0, 0]);
  checkSvd(mat(3, 3, [1, 0, 0, 0, 0, 0, 0, 0, 0]), "rank 1 exact zeros", [1, 0, 0]);
  // the two completion methods for null directions: Householder (many nulls), Gram-Schmidt (few)
  const rep = [2, 2, 2, 1e-3, 0, 0];
  checkSvd(withSingularValues(9, 6, rep, 112), "repeated and two zeros", rep);
  const one = [2, 2, 2, 0.5, 0.5, 0.25, 1e-3, 0];
  checkSvd(withSingularValues(11, 8, one, 113), "repeated and one zero", one);
});

test("svd: truncated k returns the leading triplets; k out of range throws ShapeError", () => {
  const s0 = [5, 4, 3, 2, 1];
  const a = withSingularValues(9, 5, s0, 120);
  const full = svd(a);
  const t = checkSvd(a, "k=2", s0, 2);
  for (let i = 0; i < 2; i++) {
    // singular vectors are unique up to sign for distinct values
    const sgn = Math.sign(at(t.vt, i, 0) * at(full.vt, i, 0));
    for (let j = 0; j < 5; j++) assert.ok(Math.abs(at(t.vt, i, j) - sgn * at(full.vt, i, j)) < 1e-12);
  }
  checkSvd(transpose(a), "wide k=3", s0, 3);
  throwsWith(() => svd(a, { k: 6 }), ShapeError, /svd: k .*\[0, 5\].*9x5.*got 6/);
  throwsWith(() => svd(a, { k: 1.5 }), ShapeError, /got 1.5/);
});

test("svd singular values agree with eigh on SPD Hilbert 8 (tol 1e-14 absolute)", () => {
  const h = hilbert(8);
  const w = Array.from(eigh(h).values).reverse();
  checkSvd(h, "Hilbert 8", w);
  const sv = singularValues(h);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(sv[i]! - w[i]!) < 1e-14, `singularValues ${i}`);
});

// ---- norms and non-finite input ----------------------------------------------------------------

test("norm: fro, 1, inf and 2 on a known matrix", () => {
  const a = mat(2, 2, [1, -2, 3, 4]);
  assert.ok(Math.abs(norm(a) - Math.sqrt(30)) < 1e-15);
  assert.ok(Math.abs(norm(a, "fro") - Math.sqrt(30)) < 1e-15);
  assert.is(norm(a, 1), 6);
  assert.is(norm(a, "inf"), 7);
  // sigma_max^2 = (30 + sqrt(30^2 - 4 det^2)) / 2 with det = 10
  assert.ok(Math.abs(norm(a, 2) - Math.sqrt((30 + Math.sqrt(500)) / 2)) < 1e-14);
  assert.is(norm(mat(0, 3)), 0);
  assert.ok(Math.abs(norm(scale(a, 1e200)) - Math.sqrt(30) * 1e200) < 1e186, "fro does not overflow");
});

test("non-finite input throws NumericalError instead of returning NaN", () => {
  const bad = mat(2, 2, [1, NaN, 3, 4]);
  const inf = mat(2, 2, [1, 2, Infinity, 4]);
  throwsWith(() => solve(bad, eye(2)), NumericalError, /non-finite value at \(0, 1\)/);
  throwsWith(() => solve(eye(2), inf), NumericalError, /solve: .*non-finite value at \(1, 0\)/);
  throwsWith(() => svd(inf), NumericalError, /^svd: /);
  throwsWith(() => eigh(bad), NumericalError, /^eigh: /);
  throwsWith(() => cholesky(inf), NumericalError, /^cholesky: /);
  throwsWith(() => qr(bad), NumericalError, /^qr: /);
  throwsWith(() => lu(bad), NumericalError, /^lu: /);
  // overflow during substitution is reported, not returned
  throwsWith(
    () => solveTriangular(diagMat([1e-300, 1]), mat(2, 1, [1e300, 1]), { lower: true }),
    NumericalError,
    /overflowed/,
  );
});

test.run();
