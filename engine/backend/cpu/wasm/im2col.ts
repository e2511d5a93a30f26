// Generated WebAssembly im2col / col2im for the float32 convolutions: the patch matrix of a block of
// output rows is written (or scattered back, accumulating) inside the arena, with 4-wide SIMD copies
// along stride-1 rows and the padded borders zeroed, so no pass over it runs in JavaScript.

import { Func, I32, V128, type ValType } from "./emitter.ts";

/** Exports of the conv gather functions (pointers in bytes, ld in floats). */
export interface Im2colExports {
  /**
   * col[r, (oy - oy0) * wo + ox] = x[ci, oy*sh - ph + ky, ox*sw - pw + kx] (0 outside) for
   * r = (ci*kh + ky)*kw + kx, ci < cg, oy in [oy0, oy1); rows of col are ld floats apart.
   */
  im2col(
    x: number,
    cg: number,
    h: number,
    w: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    ph: number,
    pw: number,
    wo: number,
    col: number,
    ld: number,
    oy0: number,
    oy1: number,
  ): void;
  /** The adjoint: gx[ci, iy, ix] += col[r, (oy - oy0) * wo + ox] over the same index map. */
  col2im(
    gx: number,
    cg: number,
    h: number,
    w: number,
    kh: number,
    kw: number,
    sh: number,
    sw: number,
    ph: number,
    pw: number,
    wo: number,
    col: number,
    ld: number,
    oy0: number,
    oy1: number,
  ): void;
  /**
   * {@link im2col} for stride 1 and whole images (every output row): each channel is first copied
   * into the zero-bordered scratch `pad` ((h + 2ph) x (w + 2pw) floats), so every patch row is a
   * plain copy of wo floats.
   */
  im2colS1(
    x: number,
    cg: number,
    h: number,
    w: number,
    kh: number,
    kw: number,
    ph: number,
    pw: number,
    ho: number,
    wo: number,
    col: number,
    ld: number,
    pad: number,
  ): void;
  /**
   * The adjoint of {@link im2colS1}, writing (not adding to) gx: per channel the patch rows are summed
   * into the zeroed scratch `pad` in col2im's order, then its interior is copied to gx.
   */
  col2imS1(
    gx: number,
    cg: number,
    h: number,
    w: number,
    kh: number,
    kw: number,
    ph: number,
    pw: number,
    ho: number,
    wo: number,
    col: number,
    ld: number,
    pad: number,
  ): void;
}

const PARAMS: ValType[] = new Array<ValType>(15).fill(I32);
const [X, CG, H, W, KH, KW, SH, SW, PH, PW, WO, COL, LD, OY0, OY1] = PARAMS.map((_, i) => i) as number[];

/** `for (v = from; v < to; v++) body()` over i32 locals (`to` a local too). */
function forRange(f: Func, v: number, from: () => void, to: number, body: () => void): void {
  from();
  f.set(v);
  f.block().loop();
  f.get(v).get(to).i32GeS().brIf(1);
  body();
  f.get(v).i32(1).i32Add().set(v);
  f.br(0).end().end();
}

/**
 * Emits the shared loop nest; `row(dst, src, lo, hi, inside)` emits the work for one output row:
 * `inside` is an i32 local (1 when the input row exists), dst/src byte offsets of the col row and of
 * input element ix = lo*sw - pw + kx, and [lo, hi) the ox range that reads inside the input.
 */
function nest(
  name: string,
  row: (f: Func, dst: number, src: number, lo: number, hi: number, inside: number) => void,
): Func {
  const f = new Func(name, PARAMS);
  const ci = f.local(I32),
    ky = f.local(I32),
    kx = f.local(I32),
    oy = f.local(I32);
  const rowBase = f.local(I32),
    lo = f.local(I32),
    hi = f.local(I32),
    t = f.local(I32),
    iy = f.local(I32);
  const dst = f.local(I32),
    src = f.local(I32),
    inside = f.local(I32);
  forRange(
    f,
    ci,
    () => f.i32(0),
    CG,
    () => {
      forRange(
        f,
        ky,
        () => f.i32(0),
        KH,
        () => {
          forRange(
            f,
            kx,
            () => f.i32(0),
            KW,
            () => {
              // rowBase = col + ((ci*kh + ky)*kw + kx) * ld * 4
              f.get(COL)
                .get(ci)
                .get(KH)
                .i32Mul()
                .get(ky)
                .i32Add()
                .get(KW)
                .i32Mul()
                .get(kx)
                .i32Add()
                .get(LD)
                .i32Mul()
                .i32(2)
                .i32Shl()
                .i32Add()
                .set(rowBase);
              // lo = max(0, ceil((pw - kx) / sw)), hi = clamp(ceil((w + pw - kx) / sw), lo, wo)
              f.get(PW).get(kx).i32Sub().set(t);
              f.i32(0)
                .get(t)
                .get(SW)
                .i32Add()
                .i32(1)
                .i32Sub()
                .get(SW)
                .i32DivS()
                .get(t)
                .i32(0)
                .i32LeS()
                .select()
                .set(lo);
              f.get(WO).get(lo).get(lo).get(WO).i32GtS().select().set(lo);
              f.get(W).get(PW).i32Add().get(kx).i32Sub().set(t);
              f.i32(0)
                .get(t)
                .get(SW)
                .i32Add()
                .i32(1)
                .i32Sub()
                .get(SW)
                .i32DivS()
                .get(t)
                .i32(0)
                .i32LeS()
                .select()
                .set(hi);
              f.get(WO).get(hi).get(hi).get(WO).i32GtS().select().set(hi);
              f.get(lo).get(hi).get(hi).get(lo).i32LtS().select().set(hi);
              forRange(
                f,
                oy,
                () => f.get(OY0),
                OY1,
                () => {
                  // dst = rowBase + (oy - oy0) * wo * 4
                  f.get(rowBase).get(oy).get(OY0).i32Sub().get(WO).i32Mul().i32(2).i32Shl().i32Add().set(dst);
                  f.get(oy).get(SH).i32Mul().get(PH).i32Sub().get(ky).i32Add().set(iy);
                  // inside = 0 <= iy < h
                  f.get(iy).i32(0).i32GeS().get(iy).get(H).i32LtS().i32And().set(inside);
                  // src = x + ((ci*h + iy)*w + lo*sw - pw + kx) * 4
                  f.get(X)
                    .get(ci)
                    .get(H)
                    .i32Mul()
                    .get(iy)
                    .i32Add()
                    .get(W)
                    .i32Mul()
                    .get(lo)
                    .get(SW)
                    .i32Mul()
                    .i32Add()
                    .get(PW)
                    .i32Sub()
                    .get(kx)
                    .i32Add()
                    .i32(2)
                    .i32Shl()
                    .i32Add()
                    .set(src);
                  row(f, dst, src, lo, hi, inside);
                },
              );
            },
          );
        },
      );
    },
  );
  return f;
}

/** Emits `p[a..b) = 0` floats for byte base p (locals), 4 at a time then singly. */
function zero(f: Func, p: number, a: number, b: number): void {
  const j = f.local(I32),
    z = f.local(V128);
  f.v128Zero().set(z);
  f.get(a).set(j);
  f.block().loop();
  f.get(j).i32(4).i32Add().get(b).i32GtS().brIf(1);
  f.get(p).get(j).i32(2).i32Shl().i32Add().get(z).v128Store();
  f.get(j).i32(4).i32Add().set(j);
  f.br(0).end().end();
  f.block().loop();
  f.get(j).get(b).i32GeS().brIf(1);
  f.get(p).get(j).i32(2).i32Shl().i32Add().f32(0).f32Store();
  f.get(j).i32(1).i32Add().set(j);
  f.br(0).end().end();
}

export function im2colFunc(): Func {
  return nest("im2col", (f, dst, src, lo, hi, inside) => {
    const zeroAll = f.local(I32),
      n = f.local(I32),
      j = f.local(I32),
      d = f.local(I32),
      s = f.local(I32);
    f.i32(0).set(zeroAll);
    f.get(inside).i32Eqz().if_();
    zero(f, dst, zeroAll, WO);
    f.else_();
    zero(f, dst, zeroAll, lo);
    zero(f, dst, hi, WO);
    // d = dst + lo*4, n = hi - lo
    f.get(dst).get(lo).i32(2).i32Shl().i32Add().set(d);
    f.get(hi).get(lo).i32Sub().set(n);
    f.get(src).set(s);
    f.i32(0).set(j);
    f.get(SW).i32(1).i32Eq().if_();
    f.block().loop();
    f.get(j).i32(4).i32Add().get(n).i32GtS().brIf(1);
    f.get(d).get(j).i32(2).i32Shl().i32Add();
    f.get(s).get(j).i32(2).i32Shl().i32Add().v128Load();
    f.v128Store();
    f.get(j).i32(4).i32Add().set(j);
    f.br(0).end().end();
    f.end();
    // the rest (all of it for sw > 1): one element at a time
    f.block().loop();
    f.get(j).get(n).i32GeS().brIf(1);
    f.get(d).get(j).i32(2).i32Shl().i32Add();
    f.get(s).get(j).get(SW).i32Mul().i32(2).i32Shl().i32Add().f32Load();
    f.f32Store();
    f.get(j).i32(1).i32Add().set(j);
    f.br(0).end().end();
    f.end();
  });
}

export function col2imFunc(): Func {
  return nest("col2im", (f, dst, src, lo, hi, inside) => {
    // here src addresses gx and dst the col row: gx[src + j*sw] += col[dst + lo + j]
    const n = f.local(I32),
      j = f.local(I32),
      d = f.local(I32);
    f.get(inside).if_();
    f.get(dst).get(lo).i32(2).i32Shl().i32Add().set(d);
    f.get(hi).get(lo).i32Sub().set(n);
    f.i32(0).set(j);
    f.get(SW).i32(1).i32Eq().if_();
    f.block().loop();
    f.get(j).i32(4).i32Add().get(n).i32GtS().brIf(1);
    f.get(src).get(j).i32(2).i32Shl().i32Add();
    f.get(src).get(j).i32(2).i32Shl().i32Add().v128Load();
    f.get(d).get(j).i32(2).i32Shl().i32Add().v128Load();
    f.f32x4Add().v128Store();
    f.get(j).i32(4).i32Add().set(j);
    f.br(0).end().end();
    f.end();
    f.block().loop();
    f.get(j).get(n).i32GeS().brIf(1);
    f.get(src).get(j).get(SW).i32Mul().i32(2).i32Shl().i32Add();
    f.get(src).get(j).get(SW).i32Mul().i32(2).i32Shl().i32Add().f32Load();
    f.get(d).get(j).i32(2).i32Shl().i32Add().f32Load();
    f.f32Add().f32Store();
    f.get(j).i32(1).i32Add().set(j);
    f.br(0).end().end();
    f.end();
  });
}

/** Emits `for (j = 0; j < n; j++) step(j)` 4 floats at a time, then singly: `step(byteOff, wide)`. */
function floats(f: Func, n: number, step: (off: number, wide: boolean) => void): void {
  const off = f.local(I32),
    end = f.local(I32);
  f.i32(0).set(off);
  f.get(n).i32(-4).i32And().i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  step(off, true);
  f.get(off).i32(16).i32Add().set(off);
  f.br(0).end().end();
  f.get(n).i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  step(off, false);
  f.get(off).i32(4).i32Add().set(off);
  f.br(0).end().end();
}

/** dst[j] = src[j] for j < n (byte pointers in locals). */
function copyN(f: Func, dst: number, src: number, n: number): void {
  floats(f, n, (off, wide) => {
    f.get(dst).get(off).i32Add();
    f.get(src).get(off).i32Add();
    if (wide) f.v128Load().v128Store();
    else f.f32Load().f32Store();
  });
}

const S1_PARAMS: ValType[] = new Array<ValType>(13).fill(I32);

/** The stride-1 whole-image pair: `gather` true for im2colS1, false for col2imS1. */
function stride1(gather: boolean): Func {
  const f = new Func(gather ? "im2colS1" : "col2imS1", S1_PARAMS);
  const [X, CG, H, W, KH, KW, PH, PW, HO, WO, COL, LD, PAD] = S1_PARAMS.map((_, i) => i) as number[];
  const ci = f.local(I32),
    ky = f.local(I32),
    kx = f.local(I32),
    oy = f.local(I32),
    iy = f.local(I32);
  const wp = f.local(I32),
    padN = f.local(I32),
    rowBase = f.local(I32),
    dst = f.local(I32),
    src = f.local(I32),
    chan = f.local(I32);
  f.get(W).get(PW).i32(1).i32Shl().i32Add().set(wp);
  f.get(H).get(PH).i32(1).i32Shl().i32Add().get(wp).i32Mul().set(padN);
  const zeroPad = (): void =>
    floats(f, padN, (off, wide) => {
      f.get(PAD).get(off).i32Add();
      if (wide) f.v128Zero().v128Store();
      else f.f32(0).f32Store();
    });
  // the interior row iy of the scratch: pad + ((iy + ph) * wp + pw) * 4, and of the channel: chan + iy * w * 4
  const interior = (): void => {
    f.get(PAD).get(iy).get(PH).i32Add().get(wp).i32Mul().get(PW).i32Add().i32(2).i32Shl().i32Add().set(src);
    f.get(chan).get(iy).get(W).i32Mul().i32(2).i32Shl().i32Add().set(dst);
  };
  if (gather) zeroPad(); // the borders stay zero; each channel overwrites the interior
  forRange(
    f,
    ci,
    () => f.i32(0),
    CG,
    () => {
      f.get(X).get(ci).get(H).i32Mul().get(W).i32Mul().i32(2).i32Shl().i32Add().set(chan);
      if (gather) {
        forRange(
          f,
          iy,
          () => f.i32(0),
          H,
          () => {
            interior();
            copyN(f, src, dst, W);
          },
        );
      } else zeroPad();
      forRange(
        f,
        ky,
        () => f.i32(0),
        KH,
        () => {
          forRange(
            f,
            kx,
            () => f.i32(0),
            KW,
            () => {
              // rowBase = col + ((ci*kh + ky)*kw + kx) * ld * 4
              f.get(COL)
                .get(ci)
                .get(KH)
                .i32Mul()
                .get(ky)
                .i32Add()
                .get(KW)
                .i32Mul()
                .get(kx)
                .i32Add()
                .get(LD)
                .i32Mul()
                .i32(2)
                .i32Shl()
                .i32Add()
                .set(rowBase);
              forRange(
                f,
                oy,
                () => f.i32(0),
                HO,
                () => {
                  f.get(rowBase).get(oy).get(WO).i32Mul().i32(2).i32Shl().i32Add().set(dst);
                  f.get(PAD)
                    .get(oy)
                    .get(ky)
                    .i32Add()
                    .get(wp)
                    .i32Mul()
                    .get(kx)
                    .i32Add()
                    .i32(2)
                    .i32Shl()
                    .i32Add()
                    .set(src);
                  if (gather) copyN(f, dst, src, WO);
                  else {
                    // pad[src + j] += col[dst + j]
                    floats(f, WO, (off, wide) => {
                      f.get(src).get(off).i32Add();
                      f.get(src).get(off).i32Add();
                      if (wide) f.v128Load().get(dst).get(off).i32Add().v128Load().f32x4Add().v128Store();
                      else f.f32Load().get(dst).get(off).i32Add().f32Load().f32Add().f32Store();
                    });
                  }
                },
              );
            },
          );
        },
      );
      if (!gather) {
        forRange(
          f,
          iy,
          () => f.i32(0),
          H,
          () => {
            interior();
            copyN(f, dst, src, W);
          },
        );
      }
    },
  );
  return f;
}

export function im2colS1Func(): Func {
  return stride1(true);
}

export function col2imS1Func(): Func {
  return stride1(false);
}
