// Plain TypeScript SGEMM with the same semantics as the WebAssembly kernel: register-tiled 4x4
// i-k-j loops over op(A) rows and packed op(B) column panels; used where WebAssembly SIMD is missing.

/**
 * C = alpha * op(A) * op(B) + beta * C on Float32Arrays, row-major, with element offsets and
 * leading dimensions (op(X) = X^T when transX). beta = 0 overwrites C (NaNs in C are not propagated).
 */
export function sgemmTS(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  aOff: number,
  lda: number,
  B: Float32Array,
  bOff: number,
  ldb: number,
  beta: number,
  C: Float32Array,
  cOff: number,
  ldc: number,
): void {
  if (M === 0 || N === 0) return;
  // C = beta * C first
  for (let i = 0; i < M; i++) {
    const r = cOff + i * ldc;
    if (beta === 0) C.fill(0, r, r + N);
    else if (beta !== 1) for (let j = 0; j < N; j++) C[r + j] = C[r + j]! * beta;
  }
  if (K === 0 || alpha === 0) return;

  // op(A) rows contiguous: copy when transposed
  let a = A;
  let ao = aOff;
  let la = lda;
  if (transA) {
    a = new Float32Array(M * K);
    for (let k = 0; k < K; k++) {
      const r = aOff + k * lda;
      for (let i = 0; i < M; i++) a[i * K + k] = A[r + i]!;
    }
    ao = 0;
    la = K;
  }
  // op(B) packed into 4-column panels: panel[k*4 + c] = op(B)[k, j0 + c], zero-padded
  const panel = new Float32Array(K * 4);
  for (let j0 = 0; j0 < N; j0 += 4) {
    const nw = Math.min(4, N - j0);
    panel.fill(0);
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < nw; c++) {
        panel[k * 4 + c] = transB ? B[bOff + (j0 + c) * ldb + k]! : B[bOff + k * ldb + j0 + c]!;
      }
    }
    let i0 = 0;
    for (; i0 + 4 <= M; i0 += 4) {
      const r0 = ao + i0 * la,
        r1 = r0 + la,
        r2 = r1 + la,
        r3 = r2 + la;
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
      for (let k = 0; k < K; k++) {
        const p = k * 4;
        const b0 = panel[p]!,
          b1 = panel[p + 1]!,
          b2 = panel[p + 2]!,
          b3 = panel[p + 3]!;
        const a0 = a[r0 + k]!,
          a1 = a[r1 + k]!,
          a2 = a[r2 + k]!,
          a3 = a[r3 + k]!;
        c00 += a0 * b0;
        c01 += a0 * b1;
        c02 += a0 * b2;
        c03 += a0 * b3;
        c10 += a1 * b0;
        c11 += a1 * b1;
        c12 += a1 * b2;
        c13 += a1 * b3;
        c20 += a2 * b0;
        c21 += a2 * b1;
        c22 += a2 * b2;
        c23 += a2 * b3;
        c30 += a3 * b0;
        c31 += a3 * b1;
        c32 += a3 * b2;
        c33 += a3 * b3;
      }
      const acc = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
      for (let r = 0; r < 4; r++) {
        const cr = cOff + (i0 + r) * ldc + j0;
        for (let c = 0; c < nw; c++) C[cr + c] = C[cr + c]! + alpha * acc[r * 4 + c]!;
      }
    }
    for (; i0 < M; i0++) {
      const r0 = ao + i0 * la;
      let c0 = 0,
        c1 = 0,
        c2 = 0,
        c3 = 0;
      for (let k = 0; k < K; k++) {
        const a0 = a[r0 + k]!;
        const p = k * 4;
        c0 += a0 * panel[p]!;
        c1 += a0 * panel[p + 1]!;
        c2 += a0 * panel[p + 2]!;
        c3 += a0 * panel[p + 3]!;
      }
      const acc = [c0, c1, c2, c3];
      const cr = cOff + i0 * ldc + j0;
      for (let c = 0; c < nw; c++) C[cr + c] = C[cr + c]! + alpha * acc[c]!;
    }
  }
}
