// single-pass group normalisation kernels of the cpu backend (forward saving mean and 1/std, analytic
// backward), as torch.nn.functional.group_norm; statistics accumulate in float64 for either dtype
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { GroupNormParams, LayerNormParams } from "../backend.ts";

export type { GroupNormParams, LayerNormParams } from "../backend.ts";

// every output of these kernels is written in full
function like(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n, true);
}

/** y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c] per (sample, group); returns y, mean and 1/std per (n, group). */
export function groupNormForward(
  x: TypedArray,
  weight: TypedArray | null,
  bias: TypedArray | null,
  p: GroupNormParams,
): { y: TypedArray; mean: Float64Array; rstd: Float64Array } {
  const { n, c, s, groups, eps } = p;
  const cg = c / groups,
    len = cg * s;
  const y = like(x, x.length),
    mean = new Float64Array(n * groups),
    rstd = new Float64Array(n * groups);
  for (let ng = 0; ng < n * groups; ng++) {
    const o = ng * len;
    let sum = 0;
    for (let i = 0; i < len; i++) sum += x[o + i];
    const mu = sum / len;
    let sq = 0;
    for (let i = 0; i < len; i++) {
      const d = x[o + i] - mu;
      sq += d * d;
    }
    const r = 1 / Math.sqrt(sq / len + eps);
    mean[ng] = mu;
    rstd[ng] = r;
    const c0 = (ng % groups) * cg;
    for (let ch = 0; ch < cg; ch++) {
      const a = r * (weight ? weight[c0 + ch] : 1),
        b = (bias ? bias[c0 + ch] : 0) - mu * a;
      const q = o + ch * s;
      if (p.silu) {
        for (let i = 0; i < s; i++) {
          const z = x[q + i] * a + b;
          y[q + i] = z / (1 + Math.exp(-z));
        }
      } else for (let i = 0; i < s; i++) y[q + i] = x[q + i] * a + b;
    }
  }
  return { y, mean, rstd };
}

/** Gradients of {@link groupNormForward}: dx, and dweight / dbias (per channel) when the affine terms exist. */
export function groupNormBackward(
  x: TypedArray,
  weight: TypedArray | null,
  gy: TypedArray,
  mean: TypedArray,
  rstd: TypedArray,
  p: GroupNormParams,
  affine: boolean,
): { dx: TypedArray; dw: TypedArray | null; db: TypedArray | null } {
  const { n, c, s, groups } = p;
  const cg = c / groups,
    len = cg * s;
  const dx = like(x, x.length);
  const dwAcc = new Float64Array(c),
    dbAcc = new Float64Array(c);
  for (let ng = 0; ng < n * groups; ng++) {
    const o = ng * len,
      mu = mean[ng]!,
      r = rstd[ng]!,
      c0 = (ng % groups) * cg;
    // sums over the group of g = gy * w and g * xhat
    let sg = 0,
      sgx = 0;
    for (let ch = 0; ch < cg; ch++) {
      const w = weight ? weight[c0 + ch] : 1,
        q = o + ch * s;
      let a = 0,
        b = 0;
      for (let i = 0; i < s; i++) {
        const gv = gy[q + i];
        a += gv;
        b += gv * (x[q + i] - mu);
      }
      dbAcc[c0 + ch] += a;
      dwAcc[c0 + ch] += b * r;
      sg += a * w;
      sgx += b * r * w;
    }
    const mg = sg / len,
      mgx = sgx / len;
    for (let ch = 0; ch < cg; ch++) {
      const w = weight ? weight[c0 + ch] : 1,
        q = o + ch * s;
      for (let i = 0; i < s; i++) dx[q + i] = r * (gy[q + i] * w - mg - (x[q + i] - mu) * r * mgx);
    }
  }
  if (!affine) return { dx, dw: null, db: null };
  const dw = like(x, c),
    db = like(x, c);
  dw.set(dwAcc);
  db.set(dbAcc);
  return { dx, dw, db };
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias per row of d elements; returns y, mean and 1/std per row. */
export function layerNormForward(
  x: TypedArray,
  weight: TypedArray | null,
  bias: TypedArray | null,
  p: LayerNormParams,
): { y: TypedArray; mean: Float64Array; rstd: Float64Array } {
  const { rows, d, eps } = p;
  const y = like(x, x.length),
    mean = new Float64Array(rows),
    rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let sum = 0;
    for (let i = 0; i < d; i++) sum += x[o + i];
    const mu = sum / d;
    let sq = 0;
    for (let i = 0; i < d; i++) {
      const v = x[o + i] - mu;
      sq += v * v;
    }
    const rs = 1 / Math.sqrt(sq / d + eps);
    mean[r] = mu;
    rstd[r] = rs;
    if (weight && bias) for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mu) * rs * weight[i] + bias[i];
    else if (weight) for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mu) * rs * weight[i];
    else if (bias) for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mu) * rs + bias[i];
    else for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mu) * rs;
  }
  return { y, mean, rstd };
}

/**
 * Gradients of {@link layerNormForward}: dx = rstd (g w - mean(g w) - xhat mean(g w xhat)) per row,
 * and dweight = sum g xhat, dbias = sum g over rows (when `affine`).
 */
export function layerNormBackward(
  x: TypedArray,
  weight: TypedArray | null,
  gy: TypedArray,
  mean: TypedArray,
  rstd: TypedArray,
  p: LayerNormParams,
  affine: boolean,
): { dx: TypedArray; dw: TypedArray | null; db: TypedArray | null } {
  const { rows, d } = p;
  const dx = like(x, x.length);
  const dwAcc = new Float64Array(affine ? d : 0),
    dbAcc = new Float64Array(affine ? d : 0);
  for (let r = 0; r < rows; r++) {
    const o = r * d,
      mu = mean[r]!,
      rs = rstd[r]!;
    let sg = 0,
      sgx = 0;
    for (let i = 0; i < d; i++) {
      const gv = gy[o + i],
        xh = (x[o + i] - mu) * rs,
        gw = weight ? gv * weight[i] : gv;
      sg += gw;
      sgx += gw * xh;
      if (affine) {
        dbAcc[i] += gv;
        dwAcc[i] += gv * xh;
      }
    }
    const mg = sg / d,
      mgx = sgx / d;
    for (let i = 0; i < d; i++) {
      const xh = (x[o + i] - mu) * rs,
        gw = weight ? gy[o + i] * weight[i] : gy[o + i];
      dx[o + i] = rs * (gw - mg - xh * mgx);
    }
  }
  if (!affine) return { dx, dw: null, db: null };
  const dw = like(x, d),
    db = like(x, d);
  dw.set(dwAcc);
  db.set(dbAcc);
  return { dx, dw, db };
}
