// Dense float64 linear algebra on row-major matrices: products, LU, Cholesky, triangular solves,
// Householder QR, symmetric eigendecomposition (tridiagonal QL) and Gram-preconditioned Jacobi SVD.
// The parts live in engine/linalg/: base (the type and elementwise helpers), products (GEMM, Gram,
// norms), lu (LU, Cholesky, triangular), eig (QR, eigh), svd.
export type { Mat, SolveOptions, LUResult } from "./linalg/base.ts";
export { mat, eye, clone, transpose, add, sub, scale } from "./linalg/base.ts";
export { matmul, matmulTN, matmulNT, gram, sqNormTimesLower, norm } from "./linalg/products.ts";
export type { TriangularOptions } from "./linalg/lu.ts";
export {
  lu,
  luFactors,
  luRcond,
  luSolve,
  solve,
  inv,
  det,
  condEstimate,
  cholesky,
  choleskySolve,
  solveTriangular,
} from "./linalg/lu.ts";
export { qr, eigh } from "./linalg/eig.ts";
export { svd, singularValues } from "./linalg/svd.ts";
