// The float32 fast path's convolutions: im2col GEMM, batched small images and Winograd F(2x2, 3x3),
// split into parts run on the worker pool.
import type { Shape } from "../../shape.ts";
import type { Conv2dParams } from "../backend.ts";
import { geometry, isPointwise } from "./conv.ts";
import {
  CMD_CONV_BWD_INPUT,
  CMD_CONV_BWD_INPUT_BATCHED,
  CMD_CONV_BWD_WEIGHT,
  CMD_CONV_BWD_WEIGHT_BATCHED,
  CMD_CONV_FWD,
  CMD_CONV_FWD_BATCHED,
} from "./wasm/conv_parts.ts";
import { channelUnits, convRuntime, partCount, scratch } from "./fast_conv_parts.ts";
import { winograd, winogradConv, winogradWeightGrad } from "./fast_conv_winograd.ts";

// floats of the patch matrix per block of output rows: the block is still in cache when the GEMM packs it
const COL_BLOCK_FLOATS = 1 << 18;

/** The geometry arguments a[2..16] of the conv part kernels (see wasm/conv_parts.ts). */
function geoArgs(q: ReturnType<typeof geometry>, rb: number): number[] {
  return [q.n, q.c, q.h, q.w, q.o, q.kh, q.kw, q.sh, q.sw, q.ph, q.pw, q.ho, q.wo, q.g, rb];
}

/** Output rows per patch-matrix block. */
function rowsPerBlock(q: ReturnType<typeof geometry>): number {
  return Math.max(1, Math.min(q.ho, Math.floor(COL_BLOCK_FLOATS / (q.cg * q.kh * q.kw * q.wo))));
}

// columns one GEMM of the batched convolutions aims for (images of L output positions side by side)
const BATCH_COLUMNS = 256;
// bound on the floats of the batched patch matrix
const BATCH_COL_FLOATS = 1 << 19;

/**
 * Images per GEMM for the batched convolution kernels, or 0 for the per-image kernels: whole images
 * per patch block, groups = 1, at least min(n, 8) groups of images so threads have units, and one
 * image per group only where the stride-1 im2col applies. It depends on the geometry only, so the
 * same images are grouped whatever the thread count.
 */
function imagesPerGemm(q: ReturnType<typeof geometry>): number {
  if (q.g !== 1 || rowsPerBlock(q) < q.ho) return 0;
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw;
  const nb = Math.max(
    1,
    Math.min(Math.floor(BATCH_COLUMNS / L), Math.ceil(q.n / 8), Math.floor(BATCH_COL_FLOATS / (R * L))),
  );
  return nb > 1 || (q.sh === 1 && q.sw === 1) ? nb : 0;
}

/** Floats of the padded-channel scratch of the stride-1 im2col / col2im, or 0 where the stride is not 1. */
const padFloats = (q: ReturnType<typeof geometry>): number =>
  q.sh === 1 && q.sw === 1 ? (q.h + 2 * q.ph) * (q.w + 2 * q.pw) : 0;

/**
 * Float32 conv2d forward entirely in the arena: per image, group and block of output rows, the
 * generated im2col writes the patch block and one (threaded) GEMM multiplies it.
 */
export function conv2dF32(
  x: Float32Array,
  xShape: Shape,
  w: Float32Array,
  wShape: Shape,
  p: Conv2dParams,
): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw,
    ny = q.n * q.o * L;
  const rt = convRuntime();
  if (winograd(q)) return winogradConv(rt, x, q.n, q.c, q.h, q.w, q.o, w, R, 9, false);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    const units = Math.ceil(q.n / nb),
      threads = partCount(q.n * q.o * L * R, units);
    const pf = padFloats(q);
    return rt.withBlocks(
      [x, w, ny, ...scratch(threads, R * nb * L), ...scratch(threads, q.o * nb * L), ...scratch(threads, pf)],
      ([xP, wP, oP, ...s]) => {
        rt.runParts(
          CMD_CONV_FWD_BATCHED,
          s
            .slice(0, threads)
            .map((col, i) => [
              nb,
              units,
              ...geoArgs(q, q.ho),
              xP!,
              wP!,
              oP!,
              col,
              s[threads + i]!,
              pf ? s[2 * threads + i]! : 0,
            ]),
        );
        return rt.read(oP!, ny);
      },
    );
  }
  if (!isPointwise(q)) {
    const rb = rowsPerBlock(q),
      items = q.n * q.g * Math.ceil(q.ho / rb);
    const threads = partCount(q.n * q.o * L * R, items);
    return rt.withBlocks([x, w, ny, ...scratch(threads, R * rb * q.wo)], ([xP, wP, oP, ...cols]) => {
      // runs of consecutive items (one image's rows stay with one thread), two runs per thread
      const run = Math.ceil(items / (2 * threads));
      rt.runParts(
        CMD_CONV_FWD,
        cols.map((col) => [run, items, ...geoArgs(q, rb), xP!, wP!, oP!, col]),
      );
      return rt.read(oP!, ny);
    });
  }
  // pointwise: the input is its own patch matrix
  return rt.withBlocks([x, w, ny], ([xP, wP, oP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        // out[og, L] = W[og, R] @ x[R, L]
        rt.sgemm(
          false,
          false,
          q.og,
          L,
          R,
          1,
          wP! + g * q.og * R * 4,
          R,
          xP! + (b * q.c + g * q.cg) * L * 4,
          L,
          0,
          oP! + (b * q.o + g * q.og) * L * 4,
          L,
        );
      }
    }
    return rt.read(oP!, ny);
  });
}

/** Float32 gradient of conv2d with respect to its input: col = W^T gy by GEMM (no transpose copy), then col2im. */
export function conv2dBackwardInputF32(
  gy: Float32Array,
  gyShape: Shape,
  w: Float32Array,
  wShape: Shape,
  xShape: Shape,
  p: Conv2dParams,
): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw,
    hw = q.h * q.w,
    nx = q.n * q.c * hw;
  const rt = convRuntime();
  // stride 1, padding 1: the input gradient is the convolution of gy with the turned kernels, in and out channels swapped
  if (winograd(q)) return winogradConv(rt, gy, q.n, q.o, q.h, q.w, q.c, w, 9, R, true);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    const units = Math.ceil(q.n / nb),
      threads = partCount(q.n * q.o * L * R, units);
    const pf = padFloats(q);
    return rt.withBlocks(
      [gy, w, nx, ...scratch(threads, R * nb * L), ...scratch(threads, q.o * nb * L), ...scratch(threads, pf)],
      ([gyP, wP, gxP, ...s]) => {
        // the stride-1 col2im writes every element of gx; the general one adds into it
        if (!pf) rt.arena.heapF32().fill(0, gxP! / 4, gxP! / 4 + nx);
        rt.runParts(
          CMD_CONV_BWD_INPUT_BATCHED,
          s
            .slice(0, threads)
            .map((col, i) => [
              nb,
              units,
              ...geoArgs(q, q.ho),
              gyP!,
              wP!,
              gxP!,
              col,
              s[threads + i]!,
              pf ? s[2 * threads + i]! : 0,
            ]),
        );
        return rt.read(gxP!, nx);
      },
    );
  }
  if (!isPointwise(q)) {
    // per block of output rows: col = W^T gy_block by GEMM, then the generated col2im adds it into gx;
    // parts take input channels (groups = 1) or run one after another per group
    const rb = rowsPerBlock(q);
    // units: whole images when there are enough (no operand packed twice), else runs of channels
    const threads = q.g === 1 ? partCount(q.n * q.o * L * R, Math.max(q.n, q.c)) : 1;
    const byImage = q.g === 1 && threads > 1 && q.n >= threads;
    const u = byImage
      ? { threads, cs: q.c, units: q.n }
      : q.g === 1
        ? channelUnits(q.c, Math.min(threads, q.c))
        : { threads: 1, cs: q.c, units: 1 };
    const colFloats = (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo;
    return rt.withBlocks([gy, w, nx, ...scratch(u.threads, colFloats)], ([gyP, wP, gxP, ...cols]) => {
      rt.arena.heapF32().fill(0, gxP! / 4, gxP! / 4 + nx);
      if (q.g === 1)
        rt.runParts(
          CMD_CONV_BWD_INPUT,
          cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), gyP!, wP!, gxP!, col, byImage ? 1 : 0]),
        );
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb),
                Lc = (oy1 - oy0) * q.wo;
              rt.sgemm(
                true,
                false,
                R,
                Lc,
                q.og,
                1,
                wP! + g * q.og * R * 4,
                R,
                gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4,
                L,
                0,
                cols[0]!,
                Lc,
              );
              rt.rows.col2im(
                gxP! + (b * q.c + g * q.cg) * hw * 4,
                q.cg,
                q.h,
                q.w,
                q.kh,
                q.kw,
                q.sh,
                q.sw,
                q.ph,
                q.pw,
                q.wo,
                cols[0]!,
                Lc,
                oy0,
                oy1,
              );
            }
          }
        }
      }
      return rt.read(gxP!, nx);
    });
  }
  // pointwise: gx[R, L] = W_g^T[R, og] @ gy[og, L] directly
  return rt.withBlocks([gy, w, nx], ([gyP, wP, gxP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        rt.sgemm(
          true,
          false,
          R,
          L,
          q.og,
          1,
          wP! + g * q.og * R * 4,
          R,
          gyP! + (b * q.o + g * q.og) * L * 4,
          L,
          0,
          gxP! + (b * q.c + g * q.cg) * L * 4,
          L,
        );
      }
    }
    return rt.read(gxP!, nx);
  });
}

/** Float32 gradient of conv2d with respect to its weight: gW += gy col^T by GEMM with a transposed operand. */
export function conv2dBackwardWeightF32(
  x: Float32Array,
  xShape: Shape,
  gy: Float32Array,
  gyShape: Shape,
  wShape: Shape,
  p: Conv2dParams,
): Float32Array {
  const q = geometry(xShape, wShape, p);
  const L = q.ho * q.wo,
    R = q.cg * q.kh * q.kw,
    nw = q.o * R;
  const rt = convRuntime();
  if (winograd(q)) return winogradWeightGrad(rt, x, gy, q);
  const nb = isPointwise(q) ? 0 : imagesPerGemm(q);
  if (nb > 0) {
    // parts take runs of input channels (their columns of gW), every group of images in order
    const u = channelUnits(q.c, partCount(q.n * q.o * L * R, q.c)),
      kk = q.kh * q.kw;
    const pf = padFloats(q);
    return rt.withBlocks(
      [
        x,
        gy,
        nw,
        ...scratch(u.threads, u.cs * kk * nb * L),
        ...scratch(u.threads, q.o * nb * L),
        ...scratch(u.threads, pf),
      ],
      ([xP, gyP, gwP, ...s]) => {
        rt.runParts(
          CMD_CONV_BWD_WEIGHT_BATCHED,
          s
            .slice(0, u.threads)
            .map((col, i) => [
              u.cs,
              u.units,
              ...geoArgs(q, q.ho),
              xP!,
              gyP!,
              gwP!,
              col,
              s[u.threads + i]!,
              nb,
              pf ? s[2 * u.threads + i]! : 0,
            ]),
        );
        return rt.read(gwP!, nw);
      },
    );
  }
  if (!isPointwise(q)) {
    // gW[og, R] += gy[og, block] @ col[R, block]^T over the blocks of output rows of every image;
    // parts take the columns of gW of their input channels (groups = 1) or groups run one after another
    const rb = rowsPerBlock(q),
      hw = q.h * q.w;
    const u = q.g === 1 ? channelUnits(q.c, partCount(q.n * q.o * L * R, q.c)) : { threads: 1, cs: q.c, units: 1 };
    const colFloats = (q.g === 1 ? u.cs : q.cg) * q.kh * q.kw * rb * q.wo;
    return rt.withBlocks([x, gy, nw, ...scratch(u.threads, colFloats)], ([xP, gyP, gwP, ...cols]) => {
      if (q.g === 1)
        rt.runParts(
          CMD_CONV_BWD_WEIGHT,
          cols.map((col) => [u.cs, u.units, ...geoArgs(q, rb), xP!, gyP!, gwP!, col]),
        );
      else {
        for (let b = 0; b < q.n; b++) {
          for (let g = 0; g < q.g; g++) {
            for (let oy0 = 0; oy0 < q.ho; oy0 += rb) {
              const oy1 = Math.min(q.ho, oy0 + rb),
                Lc = (oy1 - oy0) * q.wo;
              rt.rows.im2col(
                xP! + (b * q.c + g * q.cg) * hw * 4,
                q.cg,
                q.h,
                q.w,
                q.kh,
                q.kw,
                q.sh,
                q.sw,
                q.ph,
                q.pw,
                q.wo,
                cols[0]!,
                Lc,
                oy0,
                oy1,
              );
              rt.sgemm(
                false,
                true,
                q.og,
                R,
                Lc,
                1,
                gyP! + ((b * q.o + g * q.og) * L + oy0 * q.wo) * 4,
                L,
                cols[0]!,
                Lc,
                b === 0 && oy0 === 0 ? 0 : 1,
                gwP! + g * q.og * R * 4,
                R,
              );
            }
          }
        }
      }
      return rt.read(gwP!, nw);
    });
  }
  // pointwise: gW[og, R] (+)= gy[og, L] @ x^T[L, R]
  return rt.withBlocks([x, gy, nw], ([xP, gyP, gwP]) => {
    for (let b = 0; b < q.n; b++) {
      for (let g = 0; g < q.g; g++) {
        rt.sgemm(
          false,
          true,
          q.og,
          R,
          L,
          1,
          gyP! + (b * q.o + g * q.og) * L * 4,
          L,
          xP! + (b * q.c + g * q.cg) * L * 4,
          L,
          b === 0 ? 0 : 1,
          gwP! + g * q.og * R * 4,
          R,
        );
      }
    }
    return rt.read(gwP!, nw);
  });
}
