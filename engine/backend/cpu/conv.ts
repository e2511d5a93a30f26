// conv2d cpu kernels by im2col + GEMM (forward and both backward passes), nearest upsampling, sum pooling
import { takeLike } from "./buffers.ts";
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import type { Conv2dParams } from "../backend.ts";

export type Gemm = (
  A: TypedArray,
  aOff: number,
  B: TypedArray,
  bOff: number,
  C: TypedArray,
  cOff: number,
  M: number,
  K: number,
  N: number,
) => void;
export type Transpose = (x: TypedArray, off: number, rows: number, cols: number) => TypedArray;

/** Convolution geometry: sizes, strides, padding, output size, groups and per-group channels. */
export interface Geo {
  n: number;
  c: number;
  h: number;
  w: number;
  o: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  ho: number;
  wo: number;
  g: number;
  cg: number;
  og: number;
}

/** The geometry of a convolution of x (N, C, H, W) with w (O, C/g, kH, kW). */
export function geometry(xShape: Shape, wShape: Shape, p: Conv2dParams): Geo {
  const [n, c, h, w] = xShape as [number, number, number, number];
  const [o, , kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = p.stride,
    [ph, pw] = p.padding;
  const ho = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const wo = Math.floor((w + 2 * pw - kw) / sw) + 1;
  return { n, c, h, w, o, kh, kw, sh, sw, ph, pw, ho, wo, g: p.groups, cg: c / p.groups, og: o / p.groups };
}

/** 1x1 kernel, stride 1, no padding: the input is its own im2col matrix. */
export function isPointwise(q: Geo): boolean {
  return q.kh === 1 && q.kw === 1 && q.sh === 1 && q.sw === 1 && q.ph === 0 && q.pw === 0;
}

/** col[colOff + (ci*kh + ky)*kw + kx, oy*wo + ox] = x[ci, oy*sh - ph + ky, ox*sw - pw + kx] for channels [c0, c0+cg). */
export function im2col(x: TypedArray, xOff: number, q: Geo, c0: number, col: TypedArray, colOff = 0): void {
  const { h, w, kh, kw, sh, sw, ph, pw, ho, wo, cg } = q;
  const L = ho * wo;
  for (let ci = 0; ci < cg; ci++) {
    const xc = xOff + (c0 + ci) * h * w;
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const row = colOff + ((ci * kh + ky) * kw + kx) * L;
        for (let oy = 0; oy < ho; oy++) {
          const iy = oy * sh - ph + ky;
          const dst = row + oy * wo;
          if (iy < 0 || iy >= h) {
            for (let ox = 0; ox < wo; ox++) col[dst + ox] = 0;
            continue;
          }
          const src = xc + iy * w;
          if (sw === 1) {
            // interior run copied straight, the padded ends zeroed
            const lo = Math.min(wo, Math.max(0, pw - kx)),
              hi = Math.max(lo, Math.min(wo, w + pw - kx));
            for (let ox = 0; ox < lo; ox++) col[dst + ox] = 0;
            for (let ox = lo; ox < hi; ox++) col[dst + ox] = x[src + ox - pw + kx];
            for (let ox = hi; ox < wo; ox++) col[dst + ox] = 0;
            continue;
          }
          for (let ox = 0; ox < wo; ox++) {
            const ix = ox * sw - pw + kx;
            col[dst + ox] = ix >= 0 && ix < w ? x[src + ix] : 0;
          }
        }
      }
    }
  }
}

/** The adjoint of {@link im2col}: gx[ci, iy, ix] += col[colOff + ...]. */
export function col2im(col: TypedArray, q: Geo, c0: number, gx: TypedArray, gxOff: number, colOff = 0): void {
  const { h, w, kh, kw, sh, sw, ph, pw, ho, wo, cg } = q;
  const L = ho * wo;
  for (let ci = 0; ci < cg; ci++) {
    const xc = gxOff + (c0 + ci) * h * w;
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const row = colOff + ((ci * kh + ky) * kw + kx) * L;
        for (let oy = 0; oy < ho; oy++) {
          const iy = oy * sh - ph + ky;
          if (iy < 0 || iy >= h) continue;
          const src = row + oy * wo;
          const dst = xc + iy * w;
          if (sw === 1) {
            // only the interior run [lo, hi) lands inside the input row
            const lo = Math.min(wo, Math.max(0, pw - kx)),
              hi = Math.max(lo, Math.min(wo, w + pw - kx));
            const d0 = dst - pw + kx;
            for (let ox = lo; ox < hi; ox++) gx[d0 + ox] += col[src + ox];
            continue;
          }
          for (let ox = 0; ox < wo; ox++) {
            const ix = ox * sw - pw + kx;
            if (ix >= 0 && ix < w) gx[dst + ix] += col[src + ox];
          }
        }
      }
    }
  }
}

function like(x: TypedArray, n: number): TypedArray {
  return takeLike(x, n);
}

export function conv2d(
  x: TypedArray,
  xShape: Shape,
  w: TypedArray,
  wShape: Shape,
  p: Conv2dParams,
  gemm: Gemm,
): TypedArray {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw;
  const out = like(x, q.n * q.o * L);
  const pw = isPointwise(q);
  const col = pw ? x : like(x, R * L);
  for (let b = 0; b < q.n; b++) {
    for (let g = 0; g < q.g; g++) {
      let colOff = 0;
      if (pw) colOff = (b * q.c + g * q.cg) * L;
      else im2col(x, b * q.c * q.h * q.w, q, g * q.cg, col);
      // out[og, L] = W[og, R] @ col[R, L]
      gemm(w, g * q.og * R, col, colOff, out, (b * q.o + g * q.og) * L, q.og, R, L);
    }
  }
  return out;
}

export function conv2dBackwardInput(
  gy: TypedArray,
  gyShape: Shape,
  w: TypedArray,
  wShape: Shape,
  xShape: Shape,
  p: Conv2dParams,
  gemm: Gemm,
  transpose: Transpose,
): TypedArray {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw;
  const gx = like(gy, q.n * q.c * q.h * q.w);
  const pw = isPointwise(q);
  const col = like(gy, R * L);
  // W^T per group: (R, og)
  const wt = Array.from({ length: q.g }, (_, g) => transpose(w, g * q.og * R, q.og, R));
  for (let b = 0; b < q.n; b++) {
    for (let g = 0; g < q.g; g++) {
      if (pw) {
        gemm(wt[g], 0, gy, (b * q.o + g * q.og) * L, gx, (b * q.c + g * q.cg) * L, R, q.og, L);
      } else {
        col.fill(0);
        gemm(wt[g], 0, gy, (b * q.o + g * q.og) * L, col, 0, R, q.og, L);
        col2im(col, q, g * q.cg, gx, b * q.c * q.h * q.w);
      }
    }
  }
  return gx;
}

export function conv2dBackwardWeight(
  x: TypedArray,
  xShape: Shape,
  gy: TypedArray,
  gyShape: Shape,
  wShape: Shape,
  p: Conv2dParams,
  gemm: Gemm,
  transpose: Transpose,
): TypedArray {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw;
  const gw = like(x, q.o * R);
  const col = like(x, R * L);
  for (let b = 0; b < q.n; b++) {
    for (let g = 0; g < q.g; g++) {
      if (isPointwise(q)) {
        const xt = transpose(x, (b * q.c + g * q.cg) * L, R, L);
        gemm(gy, (b * q.o + g * q.og) * L, xt, 0, gw, g * q.og * R, q.og, L, R);
      } else {
        im2col(x, b * q.c * q.h * q.w, q, g * q.cg, col);
        const colT = transpose(col, 0, R, L);
        // gW[og, R] += gy[og, L] @ col^T[L, R]
        gemm(gy, (b * q.o + g * q.og) * L, colT, 0, gw, g * q.og * R, q.og, L, R);
      }
    }
  }
  return gw;
}

export function upsampleNearest(x: TypedArray, shape: Shape, s: number): TypedArray {
  const [n, c, h, w] = shape as [number, number, number, number];
  const H = h * s,
    W = w * s;
  const out = like(x, n * c * H * W);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < H; y++) {
      const src = p * h * w + Math.floor(y / s) * w;
      const dst = p * H * W + y * W;
      for (let xx = 0; xx < W; xx++) out[dst + xx] = x[src + Math.floor(xx / s)];
    }
  }
  return out;
}

export function poolSum(x: TypedArray, shape: Shape, k: number, mul: number): TypedArray {
  const [n, c, h, w] = shape as [number, number, number, number];
  const H = Math.floor(h / k),
    W = Math.floor(w / k);
  const out = like(x, n * c * H * W);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < H; y++) {
      for (let xx = 0; xx < W; xx++) {
        let s = 0;
        for (let dy = 0; dy < k; dy++) {
          const row = p * h * w + (y * k + dy) * w + xx * k;
          for (let dx = 0; dx < k; dx++) s += x[row + dx];
        }
        out[p * H * W + y * W + xx] = s * mul;
      }
    }
  }
  return out;
}
