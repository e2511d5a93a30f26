// The float32 fast path's convolutions: im2col GEMM, batched small images and Winograd F(2x2, 3x3),
// split into parts run on the worker pool.
import { PARALLEL_MIN_WORK, WasmRuntime } from "./wasm/sgemm.ts";
import type { Shape } from "../../shape.ts";
import type { Conv2dParams } from "../backend.ts";
import { geometry, isPointwise } from "./conv.ts";
import { UnsupportedKernelError } from "../../errors.ts";
import {
  CMD_CONV_BWD_INPUT,
  CMD_CONV_BWD_INPUT_BATCHED,
  CMD_CONV_BWD_WEIGHT,
  CMD_CONV_BWD_WEIGHT_BATCHED,
  CMD_CONV_FWD,
  CMD_CONV_FWD_BATCHED,
  CMD_CONV_WINOGRAD,
  CMD_CONV_WINOGRAD_WGRAD,
} from "./wasm/conv_parts.ts";
import { getNumThreads } from "./wasm/pool.ts";
import { fastRuntime } from "./fast_rows.ts";

/**
 * Channel runs for `threads` threads, one per thread: a finer split repacks the shared GEMM operand
 * once more per run, which cost more than the balancing gained on an idle machine.
 */
function channelUnits(c: number, threads: number): { threads: number; cs: number; units: number } {
  const cs = Math.ceil(c / Math.min(c, threads));
  return { threads, cs, units: Math.ceil(c / cs) };
}
/** Parts worth running for `work` multiply-adds over at most `units` independent units. */
function partCount(work: number, units: number): number {
  return Math.max(1, Math.min(getNumThreads(), units, Math.floor(work / PARALLEL_MIN_WORK)));
}

/** The runtime the convolutions need (installed only where WebAssembly SIMD is, see wasmFastKernels). */
function convRuntime(): WasmRuntime {
  const rt = fastRuntime();
  if (!rt) throw new UnsupportedKernelError("conv2d (fast path)", "wasm-simd");
  return rt;
}

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

// Winograd F(2x2, 3x3): below these channel counts the transforms cost more than they save
const WINOGRAD_MIN_CHANNELS = 8;
// bound on the floats of one part's transformed tiles (16 x channels x tiles)
const WINOGRAD_TILE_FLOATS = 1 << 19;

/**
 * Groups of Winograd tiles: nb images at a time (small images), or with nb = 1 blocks of rb tile rows
 * of one image (even with w = 4), so that one part's transformed tiles stay within the scratch bound
 * and, with `spread`, there are at least min(n, 8) x ... units for the threads. Fixed by the sizes.
 */
function tileGroups(n: number, th: number, tw: number, perTile: number, spread: boolean): { nb: number; rb: number } {
  const nb = Math.max(1, Math.min(Math.ceil(n / 8), Math.floor(WINOGRAD_TILE_FLOATS / (perTile * th * tw))));
  if (nb > 1) return { nb, rb: th };
  let rb = Math.max(
    1,
    Math.min(
      th,
      Math.floor(WINOGRAD_TILE_FLOATS / (perTile * tw)),
      spread && n < 8 ? Math.ceil(th / Math.ceil(8 / n)) : th,
    ),
  );
  // 2 x 2 blocks of tiles (w = 4) need whole pairs of tile rows
  if (tw === 2 && rb < th) rb = Math.max(2, rb - (rb % 2));
  return { nb: 1, rb };
}

/** Whether a convolution (and its two gradients) runs as Winograd F(2x2, 3x3). */
function winograd(q: ReturnType<typeof geometry>): boolean {
  return (
    q.kh === 3 &&
    q.kw === 3 &&
    q.sh === 1 &&
    q.sw === 1 &&
    q.ph === 1 &&
    q.pw === 1 &&
    q.g === 1 &&
    q.h % 2 === 0 &&
    q.w % 2 === 0 &&
    q.h > 0 &&
    q.w > 0 &&
    q.c >= WINOGRAD_MIN_CHANNELS &&
    q.o >= WINOGRAD_MIN_CHANNELS
  );
}

/**
 * A 3x3 stride-1 padding-1 convolution of x (n, cIn, h, w) by Winograd F(2x2, 3x3) into (n, cOut, h, w):
 * the kernels read w[a sA + b sB + k] (rot: turned by 180 degrees) for output channel a and input
 * channel b, transformed once on this thread; the groups of tiles (see tileGroups) are the parts' units.
 */
function winogradConv(
  rt: WasmRuntime,
  x: Float32Array,
  n: number,
  cIn: number,
  h: number,
  w: number,
  cOut: number,
  wts: Float32Array,
  sA: number,
  sB: number,
  rot: boolean,
): Float32Array {
  const th = h / 2,
    tw = w / 2,
    tiles = th * tw,
    ny = n * cOut * h * w,
    perTile = 16 * Math.max(cIn, cOut);
  const { nb, rb } = tileGroups(n, th, tw, perTile, true);
  const units = rb < th ? n * Math.ceil(th / rb) : Math.ceil(n / nb),
    T = rb < th ? rb * tw : nb * tiles;
  const threads = partCount(n * cOut * cIn * tiles * 16, units);
  // plane strides a cache line past the matrices, so the 16 planes do not share cache sets
  const vPlane = cIn * T + 16,
    mPlane = cOut * T + 16;
  return rt.withBlocks(
    [
      x,
      wts,
      16 * cOut * cIn,
      ny,
      ...scratch(threads, 16 * vPlane),
      ...scratch(threads, 16 * mPlane),
      ...scratch(threads, (h + 2) * (w + 2)),
    ],
    ([xP, wP, uP, oP, ...s]) => {
      rt.rows.winoWeights(wP!, cOut, cIn, sA, sB, rot ? 1 : 0, uP!);
      rt.runParts(
        CMD_CONV_WINOGRAD,
        s
          .slice(0, threads)
          .map((vP, i) => [
            nb,
            units,
            n,
            cIn,
            h,
            w,
            cOut,
            xP!,
            uP!,
            oP!,
            vP,
            s[threads + i]!,
            s[2 * threads + i]!,
            vPlane,
            mPlane,
            rb,
          ]),
      );
      return rt.read(oP!, ny);
    },
  );
}

/**
 * The weight gradient of a Winograd convolution: dU[xi] = sum over tiles of (A gy A^T)[xi] V[xi]^T by
 * parts over runs of input channels (the groups of tiles, fixed by the sizes, in order), then
 * G^T dU G per kernel.
 */
function winogradWeightGrad(
  rt: WasmRuntime,
  x: Float32Array,
  gy: Float32Array,
  q: ReturnType<typeof geometry>,
): Float32Array {
  const { n, c, h, w, o } = q,
    th = h / 2,
    tw = w / 2,
    tiles = th * tw,
    nw = o * c * 9,
    perTile = 16 * Math.max(c, o);
  const { nb, rb } = tileGroups(n, th, tw, perTile, false);
  const T = rb < th ? rb * tw : nb * tiles;
  const u = channelUnits(c, partCount(n * o * c * tiles * 16, c));
  const vPlane = u.cs * T + 16,
    gPlane = o * T + 16,
    uPlane = o * c + 16;
  return rt.withBlocks(
    [
      x,
      gy,
      16 * uPlane,
      nw,
      ...scratch(u.threads, 16 * vPlane),
      ...scratch(u.threads, 16 * gPlane),
      ...scratch(u.threads, (h + 2) * (w + 2)),
    ],
    ([xP, gyP, duP, gwP, ...s]) => {
      rt.runParts(
        CMD_CONV_WINOGRAD_WGRAD,
        s
          .slice(0, u.threads)
          .map((vP, i) => [
            u.cs,
            u.units,
            n,
            c,
            h,
            w,
            o,
            xP!,
            gyP!,
            duP!,
            vP,
            s[u.threads + i]!,
            s[2 * u.threads + i]!,
            vPlane,
            gPlane,
            uPlane,
            nb,
            rb,
          ]),
      );
      rt.rows.winoKernelGrad(duP!, o, c, gwP!, uPlane);
      return rt.read(gwP!, nw);
    },
  );
}

/** Floats of the padded-channel scratch of the stride-1 im2col / col2im, or 0 where the stride is not 1. */
const padFloats = (q: ReturnType<typeof geometry>): number =>
  q.sh === 1 && q.sw === 1 ? (q.h + 2 * q.ph) * (q.w + 2 * q.pw) : 0;

/** `count` scratch blocks of `floats` floats each, one per part. */
const scratch = (count: number, floats: number): number[] => Array.from({ length: count }, () => floats);

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
