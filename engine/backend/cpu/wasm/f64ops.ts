// Generated WebAssembly kernels that reproduce the plain float32 kernels bit for bit: float32 data
// widened to float64 two lanes at a time (f64x2), every operation in the plain kernel's order, rounded
// back to float32 where the plain kernel stores. Part of the row module (see rowops.ts).

import { F64, Func, I32, V128 } from "./emitter.ts";

/** Exports of these kernels (pointers in bytes). */
export interface F64Exports {
  /**
   * out[r] = float32 of the float64 sum of row r of n floats, as the plain reduce: four partial sums
   * s0..s3 over j, j+1, j+2, j+3, the tail added to s0, then (s0 + s1) + (s2 + s3).
   */
  sumRows4(x: number, rows: number, n: number, out: number): void;
  /** out[i] = float32 of the float64 sum over j < len of x[j * inner + i] (in j order, from +0), i < inner; acc: inner float64 scratch. */
  sumCols(x: number, len: number, inner: number, acc: number, out: number): void;
  /**
   * n Adam steps in place, as the plain kernel: w = f32(w c); g' = g + wd w when l2 = 1; m = f32(b1 m + ob1 g');
   * v = f32(b2 v + ob2 g' g'); w = f32(w - step m / (sqrt(v) / sq + eps)).
   */
  adamF32(
    w: number,
    g: number,
    m: number,
    v: number,
    n: number,
    c: number,
    l2: number,
    wd: number,
    b1: number,
    ob1: number,
    b2: number,
    ob2: number,
    step: number,
    sq: number,
    eps: number,
  ): void;
}

/** Pushes the f64x2 of lanes 0-1 (hi = false) or 2-3 (hi = true) of the f32x4 in local v. */
function widen(f: Func, v: number, hi: boolean): Func {
  if (hi) f.get(v).get(v).f32x4Shuffle([2, 3, 2, 3]);
  else f.get(v);
  return f.f64x2PromoteLowF32x4();
}

/** f32x4 in `dst` from the f64x2 locals lo and hi, each rounded to float32. */
function narrow(f: Func, lo: number, hi: number, dst: number): void {
  f.get(lo).f32x4DemoteF64x2Zero().get(hi).f32x4DemoteF64x2Zero().f32x4Shuffle([0, 1, 4, 5]).set(dst);
}

/** Pushes base + i * size (i32 locals; size a power of two). */
const addr = (f: Func, base: number, i: number, size: number): Func =>
  f.get(base).get(i).i32(Math.log2(size)).i32Shl().i32Add();

/** `while (i < end) { body(); i += step }` over i32 locals (end a local). */
function loopTo(f: Func, i: number, end: number, step: number, body: () => void): void {
  f.block().loop();
  f.get(i).get(end).i32GeS().brIf(1);
  body();
  f.get(i).i32(step).i32Add().set(i);
  f.br(0).end().end();
}

export function sumRows4(): Func {
  const f = new Func("sumRows4", [I32, I32, I32, I32]);
  const [X, ROWS, N, OUT] = [0, 1, 2, 3];
  const r = f.local(I32),
    p = f.local(I32),
    j = f.local(I32),
    end = f.local(I32);
  const s01 = f.local(V128),
    s23 = f.local(V128),
    v = f.local(V128),
    s0 = f.local(F64);
  f.get(N).i32(-4).i32And().set(end);
  f.i32(0).set(r);
  loopTo(f, r, ROWS, 1, () => {
    f.get(X).get(r).get(N).i32Mul().i32(2).i32Shl().i32Add().set(p);
    f.v128Zero().set(s01);
    f.v128Zero().set(s23);
    f.i32(0).set(j);
    loopTo(f, j, end, 4, () => {
      addr(f, p, j, 4).v128Load().set(v);
      f.get(s01);
      widen(f, v, false).f64x2Add().set(s01);
      f.get(s23);
      widen(f, v, true).f64x2Add().set(s23);
    });
    // the tail goes into s0
    f.get(s01).f64x2ExtractLane(0).set(s0);
    loopTo(f, j, N, 1, () => {
      f.get(s0);
      addr(f, p, j, 4).f32Load().f64PromoteF32().f64Add().set(s0);
    });
    // (s0 + s1) + (s2 + s3)
    addr(f, OUT, r, 4);
    f.get(s0).get(s01).f64x2ExtractLane(1).f64Add();
    f.get(s23).f64x2ExtractLane(0).get(s23).f64x2ExtractLane(1).f64Add();
    f.f64Add().f32DemoteF64().f32Store();
  });
  return f;
}

export function sumCols(): Func {
  const f = new Func("sumCols", [I32, I32, I32, I32, I32]);
  const [X, LEN, INNER, ACC, OUT] = [0, 1, 2, 3, 4];
  const i = f.local(I32),
    j = f.local(I32),
    end = f.local(I32),
    row = f.local(I32),
    v = f.local(V128),
    a = f.local(I32);
  f.get(INNER).i32(-4).i32And().set(end);
  // acc = +0
  f.i32(0).set(i);
  loopTo(f, i, INNER, 1, () => void addr(f, ACC, i, 8).f64(0).f64Store());
  f.i32(0).set(j);
  loopTo(f, j, LEN, 1, () => {
    f.get(X).get(j).get(INNER).i32Mul().i32(2).i32Shl().i32Add().set(row);
    f.i32(0).set(i);
    loopTo(f, i, end, 4, () => {
      addr(f, row, i, 4).v128Load().set(v);
      addr(f, ACC, i, 8).set(a);
      f.get(a).get(a).v128Load();
      widen(f, v, false).f64x2Add().v128Store();
      f.get(a).get(a).v128Load(16);
      widen(f, v, true).f64x2Add().v128Store(16);
    });
    loopTo(f, i, INNER, 1, () => {
      addr(f, ACC, i, 8).set(a);
      f.get(a).get(a).f64Load();
      addr(f, row, i, 4).f32Load().f64PromoteF32().f64Add().f64Store();
    });
  });
  f.i32(0).set(i);
  loopTo(f, i, INNER, 1, () => {
    addr(f, OUT, i, 4);
    addr(f, ACC, i, 8).f64Load().f32DemoteF64().f32Store();
  });
  return f;
}

export function adamF32(): Func {
  const f = new Func("adamF32", [I32, I32, I32, I32, I32, F64, I32, F64, F64, F64, F64, F64, F64, F64, F64]);
  const [W, G, M, V, N, C, L2, WD, B1, OB1, B2, OB2, STEP, SQ, EPS] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
  ];
  const k = [C, WD, B1, OB1, B2, OB2, STEP, SQ, EPS].map((p) => {
    const l = f.local(V128);
    f.get(p).f64x2Splat().set(l);
    return l;
  });
  const [c, wd, b1, ob1, b2, ob2, step, sq, eps] = k as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const end = f.local(I32),
    off = f.local(I32);
  const wv = f.local(V128),
    gv = f.local(V128),
    mv = f.local(V128),
    vv = f.local(V128);
  const wh = [f.local(V128), f.local(V128)],
    mh = [f.local(V128), f.local(V128)],
    vh = [f.local(V128), f.local(V128)],
    gh = f.local(V128);
  /** One element (wide = false: lane 0 of splatted loads) or four. */
  const body = (wide: boolean): void => {
    const ld = (base: number, dst: number): void => {
      f.get(base).get(off).i32Add();
      if (wide) f.v128Load();
      else f.v128Load32Splat();
      f.set(dst);
    };
    ld(W, wv);
    ld(G, gv);
    ld(M, mv);
    ld(V, vv);
    for (const hi of [false, true]) {
      const h = hi ? 1 : 0;
      // w = f32(w c), kept as the float64 of that float32
      widen(f, wv, hi).get(c).f64x2Mul().f32x4DemoteF64x2Zero().f64x2PromoteLowF32x4().set(wh[h]!);
      widen(f, gv, hi).set(gh);
      f.get(L2).if_();
      f.get(gh).get(wd).get(wh[h]!).f64x2Mul().f64x2Add().set(gh);
      f.end();
      // m = f32(b1 m + (1 - b1) g)
      f.get(b1);
      widen(f, mv, hi)
        .f64x2Mul()
        .get(ob1)
        .get(gh)
        .f64x2Mul()
        .f64x2Add()
        .f32x4DemoteF64x2Zero()
        .f64x2PromoteLowF32x4()
        .set(mh[h]!);
      // v = f32(b2 v + ((1 - b2) g) g)
      f.get(b2);
      widen(f, vv, hi)
        .f64x2Mul()
        .get(ob2)
        .get(gh)
        .f64x2Mul()
        .get(gh)
        .f64x2Mul()
        .f64x2Add()
        .f32x4DemoteF64x2Zero()
        .f64x2PromoteLowF32x4()
        .set(vh[h]!);
      // w -= (step m) / (sqrt(v) / sq + eps)
      f.get(wh[h]!)
        .get(step)
        .get(mh[h]!)
        .f64x2Mul()
        .get(vh[h]!)
        .f64x2Sqrt()
        .get(sq)
        .f64x2Div()
        .get(eps)
        .f64x2Add()
        .f64x2Div()
        .f64x2Sub()
        .set(wh[h]!);
      if (!wide) break;
    }
    const st = (base: number, pair: number[]): void => {
      f.get(base).get(off).i32Add();
      if (wide) {
        narrow(f, pair[0]!, pair[1]!, gh);
        f.get(gh).v128Store();
      } else f.get(pair[0]!).f64x2ExtractLane(0).f32DemoteF64().f32Store();
    };
    st(W, wh);
    st(M, mh);
    st(V, vh);
  };
  f.get(N).i32(-4).i32And().i32(2).i32Shl().set(end);
  f.i32(0).set(off);
  loopTo(f, off, end, 16, () => body(true));
  f.get(N).i32(2).i32Shl().set(end);
  loopTo(f, off, end, 4, () => body(false));
  return f;
}
