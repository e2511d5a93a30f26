// Generated WebAssembly transforms of the Winograd F(2x2, 3x3) convolution (3x3 kernel, stride 1,
// padding 1): a 4x4 input tile d becomes B^T d B, a 3x3 kernel g becomes G g G^T, and the 4x4 product
// m of the two (summed over input channels by 16 GEMMs, one per tile position) gives the 2x2 outputs
// A^T m A. Four multiplications per output instead of nine; every coefficient (1, -1, 1/2) is exact.
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
//
// Layouts (floats): U[xi][a][b] for the kernels (xi = 4i + j the tile position), V[xi][c][t] for the
// input tiles t of a group of images and M[xi][o][t] for the products, so that M[xi] = U[xi] V[xi].

import { F32, Func, I32, V128 } from "./emitter.ts";

/** Exports of the transforms (pointers in bytes). */
export interface WinogradExports {
  /**
   * U[xi][a][b] = (G g G^T)[xi] for a < A, b < B, where g[ky][kx] = w[a sA + b sB + k] with
   * k = 3 ky + kx, or k = 8 - (3 ky + kx) when rot = 1 (the kernel turned by 180 degrees); sA, sB in floats.
   */
  winoWeights(w: number, A: number, B: number, sA: number, sB: number, rot: number, U: number): void;
  /**
   * The tiles in tile rows [ty0, ty1) of one image x (c channels of h x w, both even) into V + xi *
   * plane + (ci * ldv + t0 + (ty - ty0) * w/2 + tx) floats; pad: (h + 2) x (w + 2) floats of scratch.
   * (A plane stride that is not a multiple of 4 KiB keeps the 16 streams of stores out of one cache
   * set.) With w = 4, ty0 and ty1 are even.
   */
  winoInput(
    x: number,
    c: number,
    h: number,
    w: number,
    V: number,
    ldv: number,
    t0: number,
    pad: number,
    plane: number,
    ty0: number,
    ty1: number,
  ): void;
  /** The outputs out[oo][2ty + r][2tx + s] of tile rows [ty0, ty1) from M + xi * plane + (oo * ldm + t0 + (ty - ty0) * w/2 + tx) floats. */
  winoOutput(
    M: number,
    o: number,
    ldm: number,
    t0: number,
    h: number,
    w: number,
    out: number,
    plane: number,
    ty0: number,
    ty1: number,
  ): void;
  /**
   * For the weight gradient: the 2x2 output-gradient tiles in tile rows [ty0, ty1) of one image gy
   * (o channels of h x w) as A gy A^T into G + xi * plane + (oo * ldg + t0 + (ty - ty0) * w/2 + tx) floats.
   */
  winoGradTiles(
    gy: number,
    o: number,
    h: number,
    w: number,
    G: number,
    ldg: number,
    t0: number,
    plane: number,
    ty0: number,
    ty1: number,
  ): void;
  /** gw[a][b][ky][kx] = (G^T dU G)[ky][kx] of the 4x4 dU[xi] at dU + xi * plane + (a * B + b) floats, a < A, b < B. */
  winoKernelGrad(dU: number, A: number, B: number, gw: number, plane: number): void;
}

/** `for (v = from; v < to; v++) body()` over i32 locals. */
function range(f: Func, v: number, from: number, to: number, body: () => void): void {
  f.get(from).set(v);
  f.block().loop();
  f.get(v).get(to).i32GeS().brIf(1);
  body();
  f.get(v).i32(1).i32Add().set(v);
  f.br(0).end().end();
}

/** `for (v = 0; v < n; v++) body()` over i32 locals. */
function count(f: Func, v: number, n: number, body: () => void): void {
  f.i32(0).set(v);
  f.block().loop();
  f.get(v).get(n).i32GeS().brIf(1);
  body();
  f.get(v).i32(1).i32Add().set(v);
  f.br(0).end().end();
}

/** Arithmetic on the two values on top of the stack, f32 or f32x4 (the transforms are the same per lane). */
interface Ar {
  add(): void;
  sub(): void;
  half(): void;
  local(): number;
}
const scalarAr = (f: Func): Ar => ({
  add: () => void f.f32Add(),
  sub: () => void f.f32Sub(),
  half: () => void f.f32(0.5).f32Mul(),
  local: () => f.local(F32),
});
const vectorAr = (f: Func): Ar => {
  const h = f.local(V128);
  f.f32(0.5).f32x4Splat().set(h);
  return {
    add: () => void f.f32x4Add(),
    sub: () => void f.f32x4Sub(),
    half: () => void f.get(h).f32x4Mul(),
    local: () => f.local(V128),
  };
};

/** G g G^T of the 3x3 g (9 locals, row-major) as 16 locals, row-major: ((a +- b) + c) / 2 in that order. */
function kernelTransform(f: Func, ar: Ar, g: number[]): number[] {
  const mix = (a: number, b: number, c: number, plus: boolean): number => {
    const t = ar.local();
    f.get(a).get(b);
    if (plus) ar.add();
    else ar.sub();
    f.get(c);
    ar.add();
    ar.half();
    f.set(t);
    return t;
  };
  // G g: 4 x 3
  const gg: number[] = new Array<number>(12);
  for (let kx = 0; kx < 3; kx++) {
    const [g0, g1, g2] = [g[kx]!, g[3 + kx]!, g[6 + kx]!];
    gg[kx] = g0;
    gg[3 + kx] = mix(g0, g1, g2, true);
    gg[6 + kx] = mix(g0, g1, g2, false);
    gg[9 + kx] = g2;
  }
  const u: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [r0, r1, r2] = [gg[3 * i]!, gg[3 * i + 1]!, gg[3 * i + 2]!];
    u.push(r0, mix(r0, r1, r2, true), mix(r0, r1, r2, false), r2);
  }
  return u;
}

export function winoWeightsFunc(): Func {
  const f = new Func("winoWeights", [I32, I32, I32, I32, I32, I32, I32]);
  const [W, A, B, SA, SB, ROT, U] = [0, 1, 2, 3, 4, 5, 6];
  const a = f.local(I32),
    b = f.local(I32),
    b4 = f.local(I32),
    base = f.local(I32),
    plane = f.local(I32),
    dst = f.local(I32),
    step = f.local(I32);
  const sc = scalarAr(f),
    ve = vectorAr(f);
  // bytes between consecutive xi planes of U, and between kernels b and b + 1
  f.get(A).get(B).i32Mul().i32(2).i32Shl().set(plane);
  f.get(SB).i32(2).i32Shl().set(step);
  f.get(B).i32(-4).i32And().set(b4);
  /** Loads the kernel at `base` (4 kernels `step` bytes apart when vector) and stores its transform at dst. */
  const one = (vector: boolean): void => {
    const ar = vector ? ve : sc;
    const g = Array.from({ length: 9 }, () => ar.local());
    for (let k = 0; k < 9; k++) {
      // pushes the byte offset of tap k (turned when rot = 1)
      const off = (): void =>
        void f
          .i32((8 - k) * 4)
          .i32(k * 4)
          .get(ROT)
          .select();
      f.get(base);
      off();
      f.i32Add();
      if (!vector) f.f32Load().set(g[k]!);
      else {
        f.v128Load32Splat().set(g[k]!);
        for (let l = 1; l < 4; l++) {
          f.get(base).get(step).i32(l).i32Mul().i32Add();
          off();
          f.i32Add().get(g[k]!).v128Load32Lane(l).set(g[k]!);
        }
      }
    }
    const u = kernelTransform(f, ar, g);
    for (let xi = 0; xi < 16; xi++) {
      f.get(dst).i32(xi).get(plane).i32Mul().i32Add().get(u[xi]!);
      if (vector) f.v128Store();
      else f.f32Store();
    }
  };
  count(f, a, A, () => {
    f.i32(0).set(b);
    // four kernels at a time, then one at a time
    for (const vector of [true, false]) {
      f.block().loop();
      f.get(b)
        .get(vector ? b4 : B)
        .i32GeS()
        .brIf(1);
      f.get(W).get(a).get(SA).i32Mul().get(b).get(SB).i32Mul().i32Add().i32(2).i32Shl().i32Add().set(base);
      f.get(U).get(a).get(B).i32Mul().get(b).i32Add().i32(2).i32Shl().i32Add().set(dst);
      one(vector);
      f.get(b)
        .i32(vector ? 4 : 1)
        .i32Add()
        .set(b);
      f.br(0).end().end();
    }
  });
  return f;
}

/**
 * The input transform of 4 tiles at once, lane l one tile: d[r][s] (16 vectors) from `gather`,
 * then q = B^T d B stored as one vector per xi at dst + xi * plane bytes.
 */
function inputTiles4(f: Func, d: number[], u: number[], dst: number, plane: number): void {
  for (let s = 0; s < 4; s++) {
    const [d0, d1, d2, d3] = [d[s]!, d[4 + s]!, d[8 + s]!, d[12 + s]!];
    f.get(d0).get(d2).f32x4Sub().set(u[s]!);
    f.get(d1)
      .get(d2)
      .f32x4Add()
      .set(u[4 + s]!);
    f.get(d2)
      .get(d1)
      .f32x4Sub()
      .set(u[8 + s]!);
    f.get(d1)
      .get(d3)
      .f32x4Sub()
      .set(u[12 + s]!);
  }
  for (let i = 0; i < 4; i++) {
    const [x0, x1, x2, x3] = [u[4 * i]!, u[4 * i + 1]!, u[4 * i + 2]!, u[4 * i + 3]!];
    const cols: [number, number, boolean][] = [
      [x0, x2, false],
      [x1, x2, true],
      [x2, x1, false],
      [x1, x3, false],
    ];
    cols.forEach(([p, q, add], j) => {
      f.get(dst)
        .i32(4 * i + j)
        .get(plane)
        .i32Mul()
        .i32Add();
      f.get(p).get(q);
      if (add) f.f32x4Add();
      else f.f32x4Sub();
      f.v128Store();
    });
  }
}

export function winoInputFunc(): Func {
  const f = new Func("winoInput", [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [X, C, H, W, V, LDV, T0, PAD, PLANE, TY0, TY1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const ci = f.local(I32),
    iy = f.local(I32),
    ix = f.local(I32),
    ty = f.local(I32),
    tx = f.local(I32),
    th = f.local(I32),
    tw = f.local(I32);
  const wp = f.local(I32),
    padBytes = f.local(I32),
    rowB = f.local(I32),
    chan = f.local(I32),
    p = f.local(I32),
    dst = f.local(I32),
    plane = f.local(I32),
    mode = f.local(I32);
  const r = [0, 1, 2, 3].map(() => f.local(V128)),
    u = [0, 1, 2, 3].map(() => f.local(V128)),
    sign = f.local(V128),
    q = f.local(V128);
  const d = Array.from({ length: 16 }, () => f.local(V128)),
    uu = Array.from({ length: 16 }, () => f.local(V128));
  const L = [0, 1, 2, 3].map(() => f.local(V128)),
    w4 = f.local(I32),
    iy0 = f.local(I32),
    iy1 = f.local(I32);
  f.get(W).i32(-4).i32And().set(w4);
  // the image rows the tile rows read: [2 ty0 - 1, 2 ty1 + 1) within [0, h)
  f.get(TY0).i32(1).i32Shl().i32(1).i32Sub().set(iy0);
  f.i32(0).get(iy0).get(iy0).i32(0).i32LtS().select().set(iy0);
  f.get(TY1).i32(1).i32Shl().i32(1).i32Add().set(iy1);
  f.get(H).get(iy1).get(iy1).get(H).i32GtS().select().set(iy1);
  f.get(W).i32(2).i32Add().set(wp);
  f.get(wp).i32(2).i32Shl().set(rowB);
  f.get(H).i32(2).i32Add().get(rowB).i32Mul().set(padBytes);
  f.get(H).i32(1).i32ShrU().set(th);
  f.get(W).i32(1).i32ShrU().set(tw);
  f.get(PLANE).i32(2).i32Shl().set(plane);
  // 1: rows of 4 tiles (w/2 a multiple of 4); 2: 2 x 2 blocks of tiles (w = 4, h/2 even); 0: one tile at a time
  f.i32(0).set(mode);
  f.get(tw).i32(3).i32And().i32Eqz().if_().i32(1).set(mode).end();
  f.get(tw).i32(2).i32Eq().get(th).i32(1).i32And().i32Eqz().i32And().if_().i32(2).set(mode).end();
  // lanes [x0 - x2, x1 + x2, x2 - x1, x1 - x3] = [x0, x1, x2, x1] + [x2, x2, x1, x3] * [-1, 1, -1, -1]
  f.f32(-1).f32x4Splat().f32(1).f32x4ReplaceLane(1).set(sign);
  // zero the scratch: the border stays zero, each channel overwrites the interior
  f.i32(0).set(p);
  f.block().loop();
  f.get(p).get(padBytes).i32GeS().brIf(1);
  f.get(PAD).get(p).i32Add().f32(0).f32Store();
  f.get(p).i32(4).i32Add().set(p);
  f.br(0).end().end();
  /** dst = V + (ci ldv + t0 + t) * 4 for the tile index on the stack's top (pushes nothing). */
  const dstFor = (t: () => void): void => {
    f.get(V).get(ci).get(LDV).i32Mul().get(T0).i32Add();
    t();
    f.i32Add().i32(2).i32Shl().i32Add().set(dst);
  };
  count(f, ci, C, () => {
    f.get(X).get(ci).get(H).i32Mul().get(W).i32Mul().i32(2).i32Shl().i32Add().set(chan);
    f.get(iy0).set(iy);
    f.block().loop();
    f.get(iy).get(iy1).i32GeS().brIf(1);
    {
      // pad row iy + 1, from column 1
      f.get(PAD).get(iy).i32(1).i32Add().get(rowB).i32Mul().i32Add().i32(4).i32Add().set(dst);
      f.get(chan).get(iy).get(W).i32Mul().i32(2).i32Shl().i32Add().set(p);
      // 4 floats at a time, then the rest
      f.i32(0).set(ix);
      f.block().loop();
      f.get(ix).get(w4).i32GeS().brIf(1);
      f.get(dst).get(ix).i32(2).i32Shl().i32Add();
      f.get(p).get(ix).i32(2).i32Shl().i32Add().v128Load();
      f.v128Store();
      f.get(ix).i32(4).i32Add().set(ix);
      f.br(0).end().end();
      f.block().loop();
      f.get(ix).get(W).i32GeS().brIf(1);
      f.get(dst).get(ix).i32(2).i32Shl().i32Add();
      f.get(p).get(ix).i32(2).i32Shl().i32Add().f32Load();
      f.f32Store();
      f.get(ix).i32(1).i32Add().set(ix);
      f.br(0).end().end();
    }
    f.get(iy).i32(1).i32Add().set(iy);
    f.br(0).end().end();
    f.get(mode).i32(1).i32Eq().if_();
    // four tiles of one row: lane l = tile tx + l; columns 2l + s of the tile row
    range(f, ty, TY0, TY1, () => {
      f.i32(0).set(tx);
      f.block().loop();
      f.get(tx).get(tw).i32GeS().brIf(1);
      for (let rr = 0; rr < 4; rr++) {
        f.get(PAD)
          .get(ty)
          .i32(1)
          .i32Shl()
          .i32(rr)
          .i32Add()
          .get(rowB)
          .i32Mul()
          .i32Add()
          .get(tx)
          .i32(3)
          .i32Shl()
          .i32Add()
          .set(p);
        f.get(p).v128Load(0).set(L[0]!);
        f.get(p).v128Load(16).set(L[1]!);
        f.get(p).v128Load(8).set(L[2]!);
        f.get(p).v128Load(24).set(L[3]!);
        f.get(L[0]!)
          .get(L[1]!)
          .f32x4Shuffle([0, 2, 4, 6])
          .set(d[4 * rr]!);
        f.get(L[0]!)
          .get(L[1]!)
          .f32x4Shuffle([1, 3, 5, 7])
          .set(d[4 * rr + 1]!);
        f.get(L[2]!)
          .get(L[3]!)
          .f32x4Shuffle([0, 2, 4, 6])
          .set(d[4 * rr + 2]!);
        f.get(L[2]!)
          .get(L[3]!)
          .f32x4Shuffle([1, 3, 5, 7])
          .set(d[4 * rr + 3]!);
      }
      dstFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
      inputTiles4(f, d, uu, dst, plane);
      f.get(tx).i32(4).i32Add().set(tx);
      f.br(0).end().end();
    });
    f.else_();
    f.get(mode).i32(2).i32Eq().if_();
    // 2 x 2 tiles (w = 4): lanes (ty, 0), (ty, 1), (ty + 1, 0), (ty + 1, 1); columns s and 2 + s of rows 2ty + r and 2ty + 2 + r
    f.get(TY0).set(ty);
    f.block().loop();
    f.get(ty).get(TY1).i32GeS().brIf(1);
    for (let rr = 0; rr < 4; rr++) {
      f.get(PAD).get(ty).i32(1).i32Shl().i32(rr).i32Add().get(rowB).i32Mul().i32Add().set(p);
      f.get(p).v128Load(0).set(L[0]!);
      f.get(p).v128Load(8).set(L[2]!);
      f.get(p).get(rowB).i32(1).i32Shl().i32Add().set(p);
      f.get(p).v128Load(0).set(L[1]!);
      f.get(p).v128Load(8).set(L[3]!);
      f.get(L[0]!)
        .get(L[1]!)
        .f32x4Shuffle([0, 2, 4, 6])
        .set(d[4 * rr]!);
      f.get(L[0]!)
        .get(L[1]!)
        .f32x4Shuffle([1, 3, 5, 7])
        .set(d[4 * rr + 1]!);
      f.get(L[2]!)
        .get(L[3]!)
        .f32x4Shuffle([0, 2, 4, 6])
        .set(d[4 * rr + 2]!);
      f.get(L[2]!)
        .get(L[3]!)
        .f32x4Shuffle([1, 3, 5, 7])
        .set(d[4 * rr + 3]!);
    }
    dstFor(() => f.get(ty).get(TY0).i32Sub().i32(1).i32Shl());
    inputTiles4(f, d, uu, dst, plane);
    f.get(ty).i32(2).i32Add().set(ty);
    f.br(0).end().end();
    f.else_();
    range(f, ty, TY0, TY1, () => {
      count(f, tx, tw, () => {
        // the 4x4 tile at pad rows 2ty.., columns 2tx..
        f.get(PAD).get(ty).i32(1).i32Shl().get(rowB).i32Mul().i32Add().get(tx).i32(3).i32Shl().i32Add().set(p);
        for (let k = 0; k < 4; k++) {
          f.get(p).v128Load().set(r[k]!);
          if (k < 3) f.get(p).get(rowB).i32Add().set(p);
        }
        // rows: B^T d
        f.get(r[0]!).get(r[2]!).f32x4Sub().set(u[0]!);
        f.get(r[1]!).get(r[2]!).f32x4Add().set(u[1]!);
        f.get(r[2]!).get(r[1]!).f32x4Sub().set(u[2]!);
        f.get(r[1]!).get(r[3]!).f32x4Sub().set(u[3]!);
        dstFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
        for (let i = 0; i < 4; i++) {
          // columns: (B^T d) B
          f.get(u[i]!).get(u[i]!).f32x4Shuffle([0, 1, 2, 1]);
          f.get(u[i]!).get(u[i]!).f32x4Shuffle([2, 2, 1, 3]).get(sign).f32x4Mul().f32x4Add().set(q);
          for (let j = 0; j < 4; j++) {
            f.get(dst).get(q).f32x4ExtractLane(j).f32Store();
            f.get(dst).get(plane).i32Add().set(dst);
          }
        }
      });
    });
    f.end();
    f.end();
  });
  return f;
}

export function winoOutputFunc(): Func {
  const f = new Func("winoOutput", [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [M, O, LDM, T0, H, W, OUT, PLANE, TY0, TY1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const oo = f.local(I32),
    ty = f.local(I32),
    tx = f.local(I32),
    th = f.local(I32),
    tw = f.local(I32),
    src = f.local(I32),
    dst = f.local(I32),
    plane = f.local(I32),
    rowB = f.local(I32),
    mode = f.local(I32);
  const m = Array.from({ length: 16 }, () => f.local(F32)),
    s = Array.from({ length: 8 }, () => f.local(F32));
  const mv = Array.from({ length: 16 }, () => f.local(V128)),
    sv = Array.from({ length: 8 }, () => f.local(V128)),
    y = Array.from({ length: 4 }, () => f.local(V128));
  f.get(H).i32(1).i32ShrU().set(th);
  f.get(W).i32(1).i32ShrU().set(tw);
  f.get(PLANE).i32(2).i32Shl().set(plane);
  f.get(W).i32(2).i32Shl().set(rowB);
  f.i32(0).set(mode);
  f.get(tw).i32(3).i32And().i32Eqz().if_().i32(1).set(mode).end();
  f.get(tw).i32(2).i32Eq().get(th).i32(1).i32And().i32Eqz().i32And().if_().i32(2).set(mode).end();
  /** src = M + (oo ldm + t0 + t) * 4 for the tile index `t` pushes. */
  const srcFor = (t: () => void): void => {
    f.get(M).get(oo).get(LDM).i32Mul().get(T0).i32Add();
    t();
    f.i32Add().i32(2).i32Shl().i32Add().set(src);
  };
  /** y00, y01, y10, y11 of 4 tiles (lanes) from the 16 planes at src. */
  const outputTiles4 = (): void => {
    for (let k = 0; k < 16; k++) f.get(src).i32(k).get(plane).i32Mul().i32Add().v128Load().set(mv[k]!);
    for (let j = 0; j < 4; j++) {
      f.get(mv[j]!)
        .get(mv[4 + j]!)
        .f32x4Add()
        .get(mv[8 + j]!)
        .f32x4Add()
        .set(sv[j]!);
      f.get(mv[4 + j]!)
        .get(mv[8 + j]!)
        .f32x4Sub()
        .get(mv[12 + j]!)
        .f32x4Sub()
        .set(sv[4 + j]!);
    }
    for (let rr = 0; rr < 2; rr++) {
      const [a0, a1, a2, a3] = [sv[4 * rr]!, sv[4 * rr + 1]!, sv[4 * rr + 2]!, sv[4 * rr + 3]!];
      f.get(a0)
        .get(a1)
        .f32x4Add()
        .get(a2)
        .f32x4Add()
        .set(y[2 * rr]!);
      f.get(a1)
        .get(a2)
        .f32x4Sub()
        .get(a3)
        .f32x4Sub()
        .set(y[2 * rr + 1]!);
    }
  };
  /** Stores (ya, yb) interleaved: lanes 0, 1 (lo) or 2, 3 (hi) at `at` bytes past dst. */
  const pair = (ya: number, yb: number, hi: boolean, at: number): void => {
    f.get(dst)
      .get(ya)
      .get(yb)
      .f32x4Shuffle(hi ? [2, 6, 3, 7] : [0, 4, 1, 5])
      .v128Store(at);
  };
  count(f, oo, O, () => {
    f.get(mode).i32(1).i32Eq().if_();
    range(f, ty, TY0, TY1, () => {
      f.i32(0).set(tx);
      f.block().loop();
      f.get(tx).get(tw).i32GeS().brIf(1);
      srcFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
      outputTiles4();
      // out rows 2ty and 2ty + 1 from column 2tx: [y00_0 y01_0 y00_1 y01_1 | y00_2 y01_2 y00_3 y01_3]
      f.get(OUT)
        .get(oo)
        .get(H)
        .i32Mul()
        .get(ty)
        .i32(1)
        .i32Shl()
        .i32Add()
        .get(W)
        .i32Mul()
        .get(tx)
        .i32(1)
        .i32Shl()
        .i32Add()
        .i32(2)
        .i32Shl()
        .i32Add()
        .set(dst);
      pair(y[0]!, y[1]!, false, 0);
      pair(y[0]!, y[1]!, true, 16);
      f.get(dst).get(rowB).i32Add().set(dst);
      pair(y[2]!, y[3]!, false, 0);
      pair(y[2]!, y[3]!, true, 16);
      f.get(tx).i32(4).i32Add().set(tx);
      f.br(0).end().end();
    });
    f.else_();
    f.get(mode).i32(2).i32Eq().if_();
    f.get(TY0).set(ty);
    f.block().loop();
    f.get(ty).get(TY1).i32GeS().brIf(1);
    srcFor(() => f.get(ty).get(TY0).i32Sub().i32(1).i32Shl());
    outputTiles4();
    // w = 4: rows 2ty .. 2ty + 3 are whole rows; tiles (ty, 0..1) in lanes 0, 1, (ty + 1, 0..1) in 2, 3
    f.get(OUT)
      .get(oo)
      .get(H)
      .i32Mul()
      .get(ty)
      .i32(1)
      .i32Shl()
      .i32Add()
      .i32(4)
      .i32Mul()
      .i32(2)
      .i32Shl()
      .i32Add()
      .set(dst);
    pair(y[0]!, y[1]!, false, 0);
    pair(y[2]!, y[3]!, false, 16);
    pair(y[0]!, y[1]!, true, 32);
    pair(y[2]!, y[3]!, true, 48);
    f.get(ty).i32(2).i32Add().set(ty);
    f.br(0).end().end();
    f.else_();
    range(f, ty, TY0, TY1, () => {
      count(f, tx, tw, () => {
        srcFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
        for (let k = 0; k < 16; k++) {
          f.get(src).f32Load().set(m[k]!);
          if (k < 15) f.get(src).get(plane).i32Add().set(src);
        }
        // rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (rows of 4)
        for (let j = 0; j < 4; j++) {
          f.get(m[j]!)
            .get(m[4 + j]!)
            .f32Add()
            .get(m[8 + j]!)
            .f32Add()
            .set(s[j]!);
          f.get(m[4 + j]!)
            .get(m[8 + j]!)
            .f32Sub()
            .get(m[12 + j]!)
            .f32Sub()
            .set(s[4 + j]!);
        }
        // dst = out + ((oo h + 2ty) w + 2tx) * 4
        f.get(OUT)
          .get(oo)
          .get(H)
          .i32Mul()
          .get(ty)
          .i32(1)
          .i32Shl()
          .i32Add()
          .get(W)
          .i32Mul()
          .get(tx)
          .i32(1)
          .i32Shl()
          .i32Add()
          .i32(2)
          .i32Shl()
          .i32Add()
          .set(dst);
        for (let rr = 0; rr < 2; rr++) {
          const [a0, a1, a2, a3] = [s[4 * rr]!, s[4 * rr + 1]!, s[4 * rr + 2]!, s[4 * rr + 3]!];
          f.get(dst).get(a0).get(a1).f32Add().get(a2).f32Add().f32Store();
          f.get(dst).get(a1).get(a2).f32Sub().get(a3).f32Sub().f32Store(4);
          if (rr === 0) f.get(dst).get(rowB).i32Add().set(dst);
        }
      });
    });
    f.end();
    f.end();
  });
  return f;
}

/** The 16 values A g A^T of the 2x2 tiles g[r][s] (4 locals, vector or scalar), row-major. */
function gradTileTransform(f: Func, vector: boolean, g: number[], out: number[]): void {
  const add = (): void => void (vector ? f.f32x4Add() : f.f32Add()),
    sub = (): void => void (vector ? f.f32x4Sub() : f.f32Sub());
  const neg = (): void => void (vector ? f.f32x4Neg() : f.f32Neg());
  // rows of A g: [g0], [g0 + g1], [g0 - g1], [-g1] (rows of 2), then each row [x, y] -> [x, x + y, x - y, -y]
  const rowVal = (i: number, s: number): void => {
    const [a, b] = [g[s]!, g[2 + s]!];
    if (i === 0) f.get(a);
    else if (i === 3) {
      f.get(b);
      neg();
    } else {
      f.get(a).get(b);
      if (i === 1) add();
      else sub();
    }
  };
  const x = f.local(vector ? V128 : F32),
    y = f.local(vector ? V128 : F32);
  for (let i = 0; i < 4; i++) {
    rowVal(i, 0);
    f.set(x);
    rowVal(i, 1);
    f.set(y);
    f.get(x).set(out[4 * i]!);
    f.get(x).get(y);
    add();
    f.set(out[4 * i + 1]!);
    f.get(x).get(y);
    sub();
    f.set(out[4 * i + 2]!);
    f.get(y);
    neg();
    f.set(out[4 * i + 3]!);
  }
}

export function winoGradTilesFunc(): Func {
  const f = new Func("winoGradTiles", [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [GY, O, H, W, G, LDG, T0, PLANE, TY0, TY1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const oo = f.local(I32),
    ty = f.local(I32),
    tx = f.local(I32),
    th = f.local(I32),
    tw = f.local(I32),
    p = f.local(I32),
    dst = f.local(I32),
    plane = f.local(I32),
    rowB = f.local(I32),
    mode = f.local(I32);
  const gv = Array.from({ length: 4 }, () => f.local(V128)),
    ov = Array.from({ length: 16 }, () => f.local(V128)),
    L = [0, 1].map(() => f.local(V128));
  const gs = Array.from({ length: 4 }, () => f.local(F32)),
    os = Array.from({ length: 16 }, () => f.local(F32));
  f.get(H).i32(1).i32ShrU().set(th);
  f.get(W).i32(1).i32ShrU().set(tw);
  f.get(PLANE).i32(2).i32Shl().set(plane);
  f.get(W).i32(2).i32Shl().set(rowB);
  f.i32(0).set(mode);
  f.get(tw).i32(3).i32And().i32Eqz().if_().i32(1).set(mode).end();
  f.get(tw).i32(2).i32Eq().get(th).i32(1).i32And().i32Eqz().i32And().if_().i32(2).set(mode).end();
  const dstFor = (t: () => void): void => {
    f.get(G).get(oo).get(LDG).i32Mul().get(T0).i32Add();
    t();
    f.i32Add().i32(2).i32Shl().i32Add().set(dst);
  };
  const store16 = (vector: boolean, vals: number[]): void => {
    for (let k = 0; k < 16; k++) {
      f.get(dst).i32(k).get(plane).i32Mul().i32Add().get(vals[k]!);
      if (vector) f.v128Store();
      else f.f32Store();
    }
  };
  count(f, oo, O, () => {
    f.get(mode).i32(1).i32Eq().if_();
    // four tiles of one row: lane l = tile tx + l, g[r][s] = gy[2ty + r][2(tx + l) + s]
    range(f, ty, TY0, TY1, () => {
      f.i32(0).set(tx);
      f.block().loop();
      f.get(tx).get(tw).i32GeS().brIf(1);
      for (let r = 0; r < 2; r++) {
        f.get(GY)
          .get(oo)
          .get(H)
          .i32Mul()
          .get(ty)
          .i32(1)
          .i32Shl()
          .i32Add()
          .i32(r)
          .i32Add()
          .get(W)
          .i32Mul()
          .get(tx)
          .i32(1)
          .i32Shl()
          .i32Add()
          .i32(2)
          .i32Shl()
          .i32Add()
          .set(p);
        f.get(p).v128Load(0).set(L[0]!);
        f.get(p).v128Load(16).set(L[1]!);
        f.get(L[0]!)
          .get(L[1]!)
          .f32x4Shuffle([0, 2, 4, 6])
          .set(gv[2 * r]!);
        f.get(L[0]!)
          .get(L[1]!)
          .f32x4Shuffle([1, 3, 5, 7])
          .set(gv[2 * r + 1]!);
      }
      gradTileTransform(f, true, gv, ov);
      dstFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
      store16(true, ov);
      f.get(tx).i32(4).i32Add().set(tx);
      f.br(0).end().end();
    });
    f.else_();
    f.get(mode).i32(2).i32Eq().if_();
    // w = 4: lanes (ty, 0), (ty, 1), (ty + 1, 0), (ty + 1, 1); g[r][s] from rows 2ty + r and 2ty + 2 + r
    f.get(TY0).set(ty);
    f.block().loop();
    f.get(ty).get(TY1).i32GeS().brIf(1);
    for (let r = 0; r < 2; r++) {
      f.get(GY)
        .get(oo)
        .get(H)
        .i32Mul()
        .get(ty)
        .i32(1)
        .i32Shl()
        .i32Add()
        .i32(r)
        .i32Add()
        .i32(4)
        .i32Mul()
        .i32(2)
        .i32Shl()
        .i32Add()
        .set(p);
      f.get(p).v128Load(0).set(L[0]!);
      f.get(p).v128Load(32).set(L[1]!);
      f.get(L[0]!)
        .get(L[1]!)
        .f32x4Shuffle([0, 2, 4, 6])
        .set(gv[2 * r]!);
      f.get(L[0]!)
        .get(L[1]!)
        .f32x4Shuffle([1, 3, 5, 7])
        .set(gv[2 * r + 1]!);
    }
    gradTileTransform(f, true, gv, ov);
    dstFor(() => f.get(ty).get(TY0).i32Sub().i32(1).i32Shl());
    store16(true, ov);
    f.get(ty).i32(2).i32Add().set(ty);
    f.br(0).end().end();
    f.else_();
    range(f, ty, TY0, TY1, () => {
      count(f, tx, tw, () => {
        f.get(GY)
          .get(oo)
          .get(H)
          .i32Mul()
          .get(ty)
          .i32(1)
          .i32Shl()
          .i32Add()
          .get(W)
          .i32Mul()
          .get(tx)
          .i32(1)
          .i32Shl()
          .i32Add()
          .i32(2)
          .i32Shl()
          .i32Add()
          .set(p);
        f.get(p).f32Load(0).set(gs[0]!);
        f.get(p).f32Load(4).set(gs[1]!);
        f.get(p).get(rowB).i32Add().set(p);
        f.get(p).f32Load(0).set(gs[2]!);
        f.get(p).f32Load(4).set(gs[3]!);
        gradTileTransform(f, false, gs, os);
        dstFor(() => f.get(ty).get(TY0).i32Sub().get(tw).i32Mul().get(tx).i32Add());
        store16(false, os);
      });
    });
    f.end();
    f.end();
  });
  return f;
}

export function winoKernelGradFunc(): Func {
  const f = new Func("winoKernelGrad", [I32, I32, I32, I32, I32]);
  const [DU, A, B, GW, PLANE] = [0, 1, 2, 3, 4];
  const a = f.local(I32),
    b = f.local(I32),
    b4 = f.local(I32),
    src = f.local(I32),
    dst = f.local(I32),
    plane = f.local(I32);
  const ve = vectorAr(f),
    sc = scalarAr(f);
  f.get(PLANE).i32(2).i32Shl().set(plane);
  f.get(B).i32(-4).i32And().set(b4);
  /** (G^T m G) of the 4x4 m (16 locals): [m0 + (m1 + m2) / 2, (m1 - m2) / 2, (m1 + m2) / 2 + m3] on rows, then columns. */
  const transform = (ar: Ar, m: number[]): number[] => {
    const p3 = (v: number[]): number[] => {
      const [m0, m1, m2, m3] = v as [number, number, number, number];
      const s = ar.local(),
        d = ar.local(),
        r0 = ar.local(),
        r2 = ar.local();
      f.get(m1).get(m2);
      ar.add();
      ar.half();
      f.set(s);
      f.get(m1).get(m2);
      ar.sub();
      ar.half();
      f.set(d);
      f.get(m0).get(s);
      ar.add();
      f.set(r0);
      f.get(s).get(m3);
      ar.add();
      f.set(r2);
      return [r0, d, r2];
    };
    const rows = [0, 1, 2, 3].map((j) => p3([m[j]!, m[4 + j]!, m[8 + j]!, m[12 + j]!])); // rows[j][ky]: G^T over i, column j
    const out: number[] = [];
    for (let ky = 0; ky < 3; ky++) out.push(...p3([rows[0]![ky]!, rows[1]![ky]!, rows[2]![ky]!, rows[3]![ky]!]));
    return out; // out[3 ky + kx]
  };
  count(f, a, A, () => {
    f.i32(0).set(b);
    for (const vector of [true, false]) {
      f.block().loop();
      f.get(b)
        .get(vector ? b4 : B)
        .i32GeS()
        .brIf(1);
      f.get(DU).get(a).get(B).i32Mul().get(b).i32Add().i32(2).i32Shl().i32Add().set(src);
      f.get(GW).get(a).get(B).i32Mul().get(b).i32Add().i32(9).i32Mul().i32(2).i32Shl().i32Add().set(dst);
      const ar = vector ? ve : sc;
      const m = Array.from({ length: 16 }, () => ar.local());
      for (let k = 0; k < 16; k++) {
        f.get(src).i32(k).get(plane).i32Mul().i32Add();
        if (vector) f.v128Load();
        else f.f32Load();
        f.set(m[k]!);
      }
      const out = transform(ar, m);
      for (let l = 0; l < (vector ? 4 : 1); l++) {
        for (let k = 0; k < 9; k++) {
          f.get(dst).get(out[k]!);
          if (vector) f.f32x4ExtractLane(l);
          f.f32Store((9 * l + k) * 4);
        }
      }
      f.get(b)
        .i32(vector ? 4 : 1)
        .i32Add()
        .set(b);
      f.br(0).end().end();
    }
  });
  return f;
}
