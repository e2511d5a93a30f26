// Winograd F(2x2, 3x3) convolutions of the float32 fast path: when they apply, the forward pass and
// the weight gradient, split into parts over groups of tiles and runs of channels
import type { WasmRuntime } from "./wasm/sgemm.ts";
import type { geometry } from "./conv.ts";
import { CMD_CONV_WINOGRAD, CMD_CONV_WINOGRAD_WGRAD } from "./wasm/conv_parts.ts";
import { channelUnits, partCount, scratch } from "./fast_conv_parts.ts";

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
export function winograd(q: ReturnType<typeof geometry>): boolean {
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
export function winogradConv(
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
export function winogradWeightGrad(
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
