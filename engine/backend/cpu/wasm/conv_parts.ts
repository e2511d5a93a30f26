// The float32 convolution part kernels, run by the calling thread and the pool's workers on the
// shared arena: each part does its own im2col / col2im (generated SIMD, `ctx.row`) and its own GEMMs
// (`ctx.gemm`) into its own scratch block, so threads never wait on each other. Work units are images x blocks of output rows (forward) or runs of input channels (both backward
// passes); each thread takes the next unit from a shared counter (`ctx.next()`) until none is left, so
// a thread the system slows down takes fewer. Every output element gets the same sums in the same
// order whichever thread computes it, so results do not depend on the thread count.

import type { PartContext } from "./context.ts";

/** Worker command ids of the convolution kernels. */
export const CMD_CONV_FWD = 4;
export const CMD_CONV_BWD_INPUT = 5;
export const CMD_CONV_BWD_WEIGHT = 6;

// Geometry arguments shared by the kernels (a[2..16]): n, c, h, w, o, kh, kw, sh, sw, ph, pw, ho, wo,
// groups, rb (output rows per block), then three pointers (bytes) and the part's scratch pointer.

/**
 * Convolution forward: the a[1] = n x groups x blocks items, taken in runs of a[0] consecutive items;
 * a[17..20] = x, w, out, scratch (R x rb*wo floats).
 */
export function convForward(ctx: PartContext, a: ArrayLike<number>): void {
  const run = a[0],
    i1 = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14],
    g = a[15],
    rb = a[16];
  const xP = a[17],
    wP = a[18],
    oP = a[19],
    colP = a[20];
  const cg = c / g,
    og = o / g,
    R = cg * kh * kw,
    L = ho * wo,
    nb = Math.ceil(ho / rb);
  for (let u = ctx.next(); u * run < i1; u = ctx.next())
    for (let it = u * run; it < Math.min(i1, (u + 1) * run); it++) {
      const blk = it % nb,
        gi = Math.floor(it / nb) % g,
        b = Math.floor(it / (nb * g));
      const oy0 = blk * rb,
        oy1 = Math.min(ho, oy0 + rb),
        Lc = (oy1 - oy0) * wo;
      ctx.row.im2col(xP + (b * c + gi * cg) * h * w * 4, cg, h, w, kh, kw, sh, sw, ph, pw, wo, colP, Lc, oy0, oy1);
      ctx.gemm(
        0,
        0,
        og,
        Lc,
        R,
        1,
        wP + gi * og * R * 4,
        R,
        0,
        colP,
        Lc,
        0,
        0,
        oP + ((b * o + gi * og) * L + oy0 * wo) * 4,
        L,
        0,
        1,
      );
    }
}

/**
 * Gradient with respect to the input, for one group (groups = 1): a[1] units, each one image
 * (a[21] = 1) or a[0] input channels of every image; a[17..20] = gy, w, gx (zeroed), scratch.
 * col[rows of these channels] = W^T gy block by GEMM, then col2im adds it into gx.
 */
export function convBackwardInput(ctx: PartContext, a: ArrayLike<number>): void {
  const cs = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14],
    rb = a[16];
  const gyP = a[17],
    wP = a[18],
    gxP = a[19],
    colP = a[20],
    byImage = a[21];
  const kk = kh * kw,
    R = c * kk,
    L = ho * wo;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    // a unit is one image (all channels) or a run of channels (all images)
    const c0 = byImage ? 0 : u * cs,
      c1 = byImage ? c : Math.min(c, c0 + cs),
      Rt = (c1 - c0) * kk;
    if (Rt <= 0) continue;
    for (let b = byImage ? u : 0; b < (byImage ? u + 1 : n); b++) {
      for (let oy0 = 0; oy0 < ho; oy0 += rb) {
        const oy1 = Math.min(ho, oy0 + rb),
          Lc = (oy1 - oy0) * wo;
        ctx.gemm(1, 0, Rt, Lc, o, 1, wP + c0 * kk * 4, R, 0, gyP + (b * o * L + oy0 * wo) * 4, L, 0, 0, colP, Lc, 0, 1);
        ctx.row.col2im(gxP + (b * c + c0) * h * w * 4, c1 - c0, h, w, kh, kw, sh, sw, ph, pw, wo, colP, Lc, oy0, oy1);
      }
    }
  }
}

/**
 * Gradient with respect to the weight, for one group (groups = 1): a[1] units of a[0] input
 * channels each, the columns of gW of those channels summed over every image and block;
 * a[17..20] = x, gy, gW, scratch.
 */
export function convBackwardWeight(ctx: PartContext, a: ArrayLike<number>): void {
  const cs = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14],
    rb = a[16];
  const xP = a[17],
    gyP = a[18],
    gwP = a[19],
    colP = a[20];
  const kk = kh * kw,
    R = c * kk,
    L = ho * wo;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    const c0 = u * cs,
      c1 = Math.min(c, c0 + cs),
      Rt = (c1 - c0) * kk;
    if (Rt <= 0) continue;
    for (let b = 0; b < n; b++) {
      for (let oy0 = 0; oy0 < ho; oy0 += rb) {
        const oy1 = Math.min(ho, oy0 + rb),
          Lc = (oy1 - oy0) * wo;
        ctx.row.im2col(xP + (b * c + c0) * h * w * 4, c1 - c0, h, w, kh, kw, sh, sw, ph, pw, wo, colP, Lc, oy0, oy1);
        ctx.gemm(
          0,
          1,
          o,
          Rt,
          Lc,
          1,
          gyP + (b * o * L + oy0 * wo) * 4,
          L,
          0,
          colP,
          Lc,
          0,
          b === 0 && oy0 === 0 ? 0 : 1,
          gwP + c0 * kk * 4,
          R,
          0,
          1,
        );
      }
    }
  }
}

// Batched forms for small images (groups = 1, whole images per block): nb images side by side in one
// patch matrix of N = cnt * L columns, so one GEMM packs the shared operand once for all of them.
// The groups of images depend only on the geometry, never on the thread count.

/** Worker command ids of the batched convolution kernels. */
export const CMD_CONV_FWD_BATCHED = 7;
export const CMD_CONV_BWD_INPUT_BATCHED = 8;
export const CMD_CONV_BWD_WEIGHT_BATCHED = 9;

/**
 * Forward over groups of a[0] images (a[1] groups): the im2col of each image into its L columns of
 * col, C[o, N] = W @ col, then C's columns scattered back to each image's (o, L) block;
 * a[17..21] = x, w, out, col (R x nb*L floats), C (o x nb*L floats); a[22] = the padded-channel
 * scratch of the stride-1 im2col, or 0 for the general one.
 */
export function convForwardBatched(ctx: PartContext, a: ArrayLike<number>): void {
  const nb = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14];
  const xP = a[17],
    wP = a[18],
    oP = a[19],
    colP = a[20],
    cP = a[21],
    padP = a[22];
  const R = c * kh * kw,
    L = ho * wo;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    const b0 = u * nb,
      cnt = Math.min(nb, n - b0),
      N = cnt * L;
    for (let i = 0; i < cnt; i++) {
      const xi = xP + (b0 + i) * c * h * w * 4,
        ci = colP + i * L * 4;
      if (padP) ctx.row.im2colS1(xi, c, h, w, kh, kw, ph, pw, ho, wo, ci, N, padP);
      else ctx.row.im2col(xi, c, h, w, kh, kw, sh, sw, ph, pw, wo, ci, N, 0, ho);
    }
    // one image: straight into its output block
    if (cnt === 1) ctx.gemm(0, 0, o, N, R, 1, wP, R, 0, colP, N, 0, 0, oP + b0 * o * L * 4, N, 0, 1);
    else {
      ctx.gemm(0, 0, o, N, R, 1, wP, R, 0, colP, N, 0, 0, cP, N, 0, 1);
      for (let i = 0; i < cnt; i++) ctx.row.copyRows(cP + i * L * 4, N * 4, oP + (b0 + i) * o * L * 4, L * 4, o, L);
    }
  }
}

/**
 * Gradient with respect to the input over groups of a[0] images (a[1] groups): the images' gy
 * gathered into gB[o, N], col[R, N] = W^T gB, then col2im of each image's columns into gx;
 * a[17..21] = gy, w, gx (zeroed), col (R x nb*L), gB (o x nb*L); a[22] = the stride-1 scratch or 0.
 */
export function convBackwardInputBatched(ctx: PartContext, a: ArrayLike<number>): void {
  const nb = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14];
  const gyP = a[17],
    wP = a[18],
    gxP = a[19],
    colP = a[20],
    gB = a[21],
    padP = a[22];
  const R = c * kh * kw,
    L = ho * wo;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    const b0 = u * nb,
      cnt = Math.min(nb, n - b0),
      N = cnt * L;
    // one image: its gy block is already (o, N)
    if (cnt > 1)
      for (let i = 0; i < cnt; i++) ctx.row.copyRows(gyP + (b0 + i) * o * L * 4, L * 4, gB + i * L * 4, N * 4, o, L);
    ctx.gemm(1, 0, R, N, o, 1, wP, R, 0, cnt > 1 ? gB : gyP + b0 * o * L * 4, N, 0, 0, colP, N, 0, 1);
    for (let i = 0; i < cnt; i++) {
      const gi = gxP + (b0 + i) * c * h * w * 4,
        ci = colP + i * L * 4;
      if (padP) ctx.row.col2imS1(gi, c, h, w, kh, kw, ph, pw, ho, wo, ci, N, padP);
      else ctx.row.col2im(gi, c, h, w, kh, kw, sh, sw, ph, pw, wo, ci, N, 0, ho);
    }
  }
}

/**
 * Gradient with respect to the weight: a[1] units of a[0] input channels each; per group of a[22]
 * images, gy gathered into gB[o, N] and the channels' patches into col[Rt, N], then
 * gW[:, these channels] (+)= gB col^T (one GEMM with K = N); a[17..21] = x, gy, gW, col, gB;
 * a[23] = the stride-1 scratch or 0.
 */
export function convBackwardWeightBatched(ctx: PartContext, a: ArrayLike<number>): void {
  const cs = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6],
    kh = a[7],
    kw = a[8];
  const sh = a[9],
    sw = a[10],
    ph = a[11],
    pw = a[12],
    ho = a[13],
    wo = a[14];
  const xP = a[17],
    gyP = a[18],
    gwP = a[19],
    colP = a[20],
    gB = a[21],
    nb = a[22],
    padP = a[23];
  const kk = kh * kw,
    R = c * kk,
    L = ho * wo;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    const c0 = u * cs,
      c1 = Math.min(c, c0 + cs),
      Rt = (c1 - c0) * kk;
    if (Rt <= 0) continue;
    for (let b0 = 0; b0 < n; b0 += nb) {
      const cnt = Math.min(nb, n - b0),
        N = cnt * L;
      for (let i = 0; i < cnt; i++) {
        if (cnt > 1) ctx.row.copyRows(gyP + (b0 + i) * o * L * 4, L * 4, gB + i * L * 4, N * 4, o, L);
        const xi = xP + ((b0 + i) * c + c0) * h * w * 4,
          ci = colP + i * L * 4;
        if (padP) ctx.row.im2colS1(xi, c1 - c0, h, w, kh, kw, ph, pw, ho, wo, ci, N, padP);
        else ctx.row.im2col(xi, c1 - c0, h, w, kh, kw, sh, sw, ph, pw, wo, ci, N, 0, ho);
      }
      ctx.gemm(
        0,
        1,
        o,
        Rt,
        N,
        1,
        cnt > 1 ? gB : gyP + b0 * o * L * 4,
        N,
        0,
        colP,
        N,
        0,
        b0 === 0 ? 0 : 1,
        gwP + c0 * kk * 4,
        R,
        0,
        1,
      );
    }
  }
}

/** Worker command id of the Winograd convolution. */
export const CMD_CONV_WINOGRAD = 10;

/**
 * Winograd F(2x2, 3x3) convolution (3x3 kernel, stride 1, padding 1, groups 1, even h and w): a unit
 * is a group of a[0] images (a[15] = h/2: whole images) or, with a[0] = 1, a block of a[15] tile rows
 * of one image; per unit the tiles are transformed into V[xi][c][t], the 16 GEMMs M[xi] = U[xi] V[xi]
 * (K = c) run as one batched call, and the outputs come from M. Arguments: nb, units, n, c, h, w, o,
 * x, U (16 x o x c transformed kernels), out, V (16 planes of c x tiles), M (16 planes of o x tiles),
 * pad ((h + 2) x (w + 2)), the plane strides of V and M (floats, padded past the matrices), tile rows
 * per unit. An output depends only on its own tile and the sums over c, so any grouping of the tiles
 * (any thread count) gives the same results.
 */
export function convWinograd(ctx: PartContext, a: ArrayLike<number>): void {
  const nb = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6];
  const xP = a[7],
    uP = a[8],
    oP = a[9],
    vP = a[10],
    mP = a[11],
    padP = a[12],
    vPlane = a[13],
    mPlane = a[14],
    rb = a[15];
  const th = h / 2,
    tw = w / 2,
    blocks = Math.ceil(th / rb),
    hw = h * w;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    // images [b0, b0 + cnt), tile rows [ty0, ty1) of each
    const b0 = rb < th ? Math.floor(u / blocks) : u * nb,
      cnt = rb < th ? 1 : Math.min(nb, n - b0);
    const ty0 = rb < th ? (u % blocks) * rb : 0,
      ty1 = Math.min(th, ty0 + rb),
      per = (ty1 - ty0) * tw,
      T = cnt * per;
    for (let i = 0; i < cnt; i++)
      ctx.row.winoInput(xP + (b0 + i) * c * hw * 4, c, h, w, vP, T, i * per, padP, vPlane, ty0, ty1);
    ctx.gemm(0, 0, o, T, c, 1, uP, c, o * c, vP, T, vPlane, 0, mP, T, mPlane, 16);
    for (let i = 0; i < cnt; i++)
      ctx.row.winoOutput(mP, o, T, i * per, h, w, oP + (b0 + i) * o * hw * 4, mPlane, ty0, ty1);
  }
}

/** Worker command id of the Winograd weight gradient. */
export const CMD_CONV_WINOGRAD_WGRAD = 11;

/**
 * Weight gradient of the Winograd F(2x2, 3x3) convolution: a[1] units of a[0] input channels each;
 * per group of tiles (a[16] images, or with a[16] = 1 blocks of a[17] tile rows of one image, in
 * order; fixed by the sizes) the input tiles of these channels V[xi][c][t] and the output-gradient
 * tiles A gy A^T as GY[xi][o][t], then dU[xi][:, these channels] (+)= GY[xi] V[xi]^T (16 batched
 * GEMMs with K = the group's tiles). Arguments: cs, units, n, c, h, w, o, x, gy, dU (16 planes of
 * o x c), V, GY, pad, and the plane strides of V, GY and dU (floats), nb, tile rows per group. The
 * kernel gradient is G^T dU G (winoKernelGrad) once every part is done.
 */
export function convWinogradWeightGrad(ctx: PartContext, a: ArrayLike<number>): void {
  const cs = a[0],
    units = a[1],
    n = a[2],
    c = a[3],
    h = a[4],
    w = a[5],
    o = a[6];
  const xP = a[7],
    gyP = a[8],
    duP = a[9],
    vP = a[10],
    gP = a[11],
    padP = a[12],
    vPlane = a[13],
    gPlane = a[14],
    uPlane = a[15],
    nb = a[16],
    rb = a[17];
  const th = h / 2,
    tw = w / 2,
    hw = h * w;
  for (let u = ctx.next(); u < units; u = ctx.next()) {
    const c0 = u * cs,
      cn = Math.min(c, c0 + cs) - c0;
    if (cn <= 0) continue;
    let first = true;
    for (let b0 = 0; b0 < n; b0 += nb) {
      const cnt = Math.min(nb, n - b0);
      for (let ty0 = 0; ty0 < th; ty0 += rb) {
        const ty1 = Math.min(th, ty0 + rb),
          per = (ty1 - ty0) * tw,
          T = cnt * per;
        for (let i = 0; i < cnt; i++) {
          ctx.row.winoInput(xP + ((b0 + i) * c + c0) * hw * 4, cn, h, w, vP, T, i * per, padP, vPlane, ty0, ty1);
          ctx.row.winoGradTiles(gyP + (b0 + i) * o * hw * 4, o, h, w, gP, T, i * per, gPlane, ty0, ty1);
        }
        ctx.gemm(0, 1, o, cn, T, 1, gP, T, gPlane, vP, T, vPlane, first ? 0 : 1, duP + c0 * 4, c, uPlane, 16);
        first = false;
      }
    }
  }
}
