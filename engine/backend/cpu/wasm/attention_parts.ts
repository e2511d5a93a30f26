// Chunked attention (forward, and backward by recomputation) as part kernels run by the calling
// thread and the pool's workers on the shared arena; the products go through the SIMD GEMM.
// Never holds more than CQ x Lk scores per thread (flash-attention style, one query chunk at a time).

import type { PartContext } from "./context.ts";

/** Worker command ids of the attention kernels. */
export const CMD_ATTN_FWD = 2;
export const CMD_ATTN_BWD = 3;

/**
 * Attention forward for the batch items below a[1], each taken from the shared counter (`ctx.next()`):
 * O = softmax(scale Q K^T + mask) V and the row log-sum-exp. Arguments: b0, b1, Lq, Lk, d, dv, scale,
 * causal, q, k, v, mask (0 = none), maskStrideB, maskStrideQ (elements), o, lse, scratch (CQ x Lk floats), CQ, scratch (2 CQ floats), probs
 * (0, or room for batch x Lq x Lk floats: the probabilities are kept there for the backward), heads H
 * (batch = B H items, each one head of a sequence stored as (B, L, H, d); 1 = plain (batch, L, d)).
 * Pointers are bytes.
 * Causal hides key j > i + (Lk - Lq). A row with every key masked gives zeros (lse = -Infinity).
 */
export function attnForward(ctx: PartContext, a: ArrayLike<number>): void {
  const b0 = a[0],
    b1 = a[1],
    Lq = a[2],
    Lk = a[3],
    d = a[4],
    dv = a[5],
    scale = a[6],
    causal = a[7];
  const qP = a[8],
    kP = a[9],
    vP = a[10],
    mP = a[11],
    mSB = a[12],
    mSQ = a[13],
    oP = a[14],
    lseP = a[15],
    sP0 = a[16],
    CQ = a[17],
    xP = a[18],
    keep = a[19],
    H = a[20];
  const off = Lk - Lq,
    ldq = H * d,
    ldv = H * dv;
  const h = ctx.heap(),
    row = ctx.row;
  for (let b = ctx.next(); b < b1; b = ctx.next()) {
    // item b is head b % H of sequence b / H; rows of q, k (ld H d) and v, o (ld H dv) hold every head
    const bb = Math.floor(b / H),
      hh = b % H;
    const q = qP + (bb * Lq * ldq + hh * d) * 4,
      k = kP + (bb * Lk * ldq + hh * d) * 4;
    const v = vP + (bb * Lk * ldv + hh * dv) * 4,
      o = oP + (bb * Lq * ldv + hh * dv) * 4;
    for (let i0 = 0; i0 < Lq; i0 += CQ) {
      const cq = Math.min(CQ, Lq - i0);
      const n = causal ? Math.max(0, Math.min(Lk, i0 + cq + off)) : Lk;
      if (n === 0) {
        for (let r = 0; r < cq; r++) h.fill(0, (o + (i0 + r) * ldv * 4) / 4, (o + (i0 + r) * ldv * 4) / 4 + dv);
        for (let r = 0; r < cq; r++) h[lseP / 4 + b * Lq + i0 + r] = -Infinity;
        continue;
      }
      const sP = keep ? keep + (b * Lq + i0) * Lk * 4 : sP0;
      ctx.gemm(0, 1, cq, n, d, scale, q + i0 * ldq * 4, ldq, 0, k, ldq, 0, 0, sP, Lk, 0, 1);
      if (!causal) {
        // every row sees all n keys: one call per chunk
        if (mP) row.rowsAdd(sP, cq, Lk * 4, n, mP + (b * mSB + i0 * mSQ) * 4, mSQ * 4);
        row.rowsSoftmax(sP, cq, Lk * 4, n, xP, xP + CQ * 4);
        const mx = xP / 4,
          sm = xP / 4 + CQ,
          l = lseP / 4 + b * Lq + i0;
        for (let r = 0; r < cq; r++) h[l + r] = h[sm + r] === 0 ? -Infinity : h[mx + r] + Math.log(h[sm + r]);
      } else
        for (let r = 0; r < cq; r++) {
          const i = i0 + r,
            s = sP / 4 + r * Lk;
          const lim = Math.max(0, Math.min(n, i + off + 1));
          if (mP) {
            const m = mP / 4 + b * mSB + i * mSQ;
            for (let j = 0; j < lim; j++) h[s + j] += h[m + j];
          }
          const mx = row.rowMax(s * 4, lim);
          if (mx === -Infinity) {
            h.fill(0, s, s + n);
            h[lseP / 4 + b * Lq + i] = -Infinity;
            continue;
          }
          const sum = row.rowExp(s * 4, lim, mx);
          row.rowScale(s * 4, lim, 1 / sum);
          h.fill(0, s + lim, s + n);
          h[lseP / 4 + b * Lq + i] = mx + Math.log(sum);
        }
      ctx.gemm(0, 0, cq, dv, n, 1, sP, Lk, 0, v, ldv, 0, 0, o + i0 * ldv * 4, ldv, 0, 1);
    }
  }
}

/**
 * Attention backward for the batch items below a[1], each taken from the shared counter (`ctx.next()`):
 * dQ, dK, dV from dO, recomputing the scores chunk by chunk from the saved log-sum-exp. Arguments:
 * b0, b1, Lq, Lk, d, dv, scale, causal, q, k, v, mask, maskStrideB, maskStrideQ, o, lse, dO, dQ, dK, dV, scratch P (CQ x Lk), scratch dP
 * (CQ x Lk), scratch D (CQ), CQ, probs (0, or the forward's kept probabilities: no recomputation),
 * heads H (items are heads of sequences in the (B, L, H, d) layout; 1 = plain (batch, L, d)). dK and dV
 * must arrive zeroed.
 */
export function attnBackward(ctx: PartContext, a: ArrayLike<number>): void {
  const b0 = a[0],
    b1 = a[1],
    Lq = a[2],
    Lk = a[3],
    d = a[4],
    dv = a[5],
    scale = a[6],
    causal = a[7];
  const qP = a[8],
    kP = a[9],
    vP = a[10],
    mP = a[11],
    mSB = a[12],
    mSQ = a[13],
    oP = a[14],
    lseP = a[15];
  const doP = a[16],
    dqP = a[17],
    dkP = a[18],
    dvP = a[19],
    sP0 = a[20],
    pP = a[21],
    DP = a[22],
    CQ = a[23],
    kept = a[24],
    H = a[25];
  const off = Lk - Lq,
    ldq = H * d,
    ldv = H * dv;
  const h = ctx.heap(),
    row = ctx.row;
  // dK and dV arrive zeroed and are accumulated into
  for (let b = ctx.next(); b < b1; b = ctx.next()) {
    const bb = Math.floor(b / H),
      hh = b % H;
    const qo = (bb * Lq * ldq + hh * d) * 4,
      ko = (bb * Lk * ldq + hh * d) * 4,
      vo = (bb * Lk * ldv + hh * dv) * 4,
      oo0 = (bb * Lq * ldv + hh * dv) * 4;
    const q = qP + qo,
      k = kP + ko,
      v = vP + vo,
      o = oP + oo0;
    const gO = doP + oo0,
      gQ = dqP + qo,
      gK = dkP + ko,
      gV = dvP + vo;
    for (let i0 = 0; i0 < Lq; i0 += CQ) {
      const cq = Math.min(CQ, Lq - i0);
      const n = causal ? Math.max(0, Math.min(Lk, i0 + cq + off)) : Lk;
      if (n === 0) {
        for (let r = 0; r < cq; r++) h.fill(0, (gQ + (i0 + r) * ldq * 4) / 4, (gQ + (i0 + r) * ldq * 4) / 4 + d);
        continue;
      }
      const sP = kept ? kept + (b * Lq + i0) * Lk * 4 : sP0;
      if (kept) row.rowsDot(gO + i0 * ldv * 4, o + i0 * ldv * 4, cq, dv, ldv * 4, DP);
      else ctx.gemm(0, 1, cq, n, d, scale, q + i0 * ldq * 4, ldq, 0, k, ldq, 0, 0, sP, Lk, 0, 1);
      if (kept) {
        // P as the forward left it
      } else if (!causal) {
        if (mP) row.rowsAdd(sP, cq, Lk * 4, n, mP + (b * mSB + i0 * mSQ) * 4, mSQ * 4);
        row.rowsExpSub(sP, cq, Lk * 4, n, lseP + (b * Lq + i0) * 4);
        row.rowsDot(gO + i0 * ldv * 4, o + i0 * ldv * 4, cq, dv, ldv * 4, DP);
      } else
        for (let r = 0; r < cq; r++) {
          const i = i0 + r,
            s = sP / 4 + r * Lk;
          const lse = h[lseP / 4 + b * Lq + i];
          const lim = lse === -Infinity ? 0 : causal ? Math.max(0, Math.min(n, i + off + 1)) : n;
          if (mP) {
            const m = mP / 4 + b * mSB + i * mSQ;
            for (let j = 0; j < lim; j++) h[s + j] += h[m + j];
          }
          row.rowExp(s * 4, lim, lse);
          h.fill(0, s + lim, s + n);
          let dsum = 0;
          const go = gO / 4 + i * ldv,
            oo = o / 4 + i * ldv;
          for (let c = 0; c < dv; c++) dsum += h[go + c] * h[oo + c];
          h[DP / 4 + r] = dsum;
        }
      // dV += P^T dO
      ctx.gemm(1, 0, n, dv, cq, 1, sP, Lk, 0, gO + i0 * ldv * 4, ldv, 0, 1, gV, ldv, 0, 1);
      // dP = dO V^T
      ctx.gemm(0, 1, cq, n, dv, 1, gO + i0 * ldv * 4, ldv, 0, v, ldv, 0, 0, pP, Lk, 0, 1);
      // dS = P * (dP - D) * scale, written over dP (P stays as it is)
      row.rowsDs(sP, pP, cq, Lk * 4, n, DP, scale);
      // dQ = dS K, dK += dS^T Q
      ctx.gemm(0, 0, cq, d, n, 1, pP, Lk, 0, k, ldq, 0, 0, gQ + i0 * ldq * 4, ldq, 0, 1);
      ctx.gemm(1, 0, n, d, cq, 1, pP, Lk, 0, q + i0 * ldq * 4, ldq, 0, 1, gK, ldq, 0, 1);
    }
  }
}
