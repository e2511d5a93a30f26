// Generates the SGEMM WebAssembly module: panel packing, an MR x NR register-tiled f32x4 micro-kernel
// (fused relaxed_madd or mul+add), an edge merge and the macro-kernel looping over one packed block.

import { wasmApi } from "./api.ts";
import { F32, Func, I32, V128, buildModule, type MemoryImport } from "./emitter.ts";

/** Shape of the generated micro-kernel. */
export interface MicroKernelConfig {
  /** Rows of C per micro-tile (broadcast lanes of packed A). */
  mr: number;
  /** f32x4 vectors per row of the micro-tile (NR = 4 * nv columns). */
  nv: number;
  /** Unroll factor of the k loop (power of two). */
  unroll: number;
  /** Use f32x4.relaxed_madd (needs relaxed SIMD) instead of f32x4.mul + f32x4.add. */
  fma: boolean;
}

/** Exports of the generated module; pointers and strides are in bytes. */
export interface SgemmExports {
  /** C[mc x nc] (+)= alpha * Apacked * Bpacked over one packed block; acc=0 overwrites C. */
  macro(
    mc: number,
    nc: number,
    kc: number,
    ap: number,
    bp: number,
    c: number,
    ldc: number,
    alpha: number,
    acc: number,
    scratch: number,
  ): void;
  /** Packs n rows of op(A) (k-stride ks, row stride is) into MR-row panels, zero-padded. */
  packA(src: number, ks: number, is: number, kc: number, n: number, dst: number): void;
  /** Packs n columns of op(B) (k-stride ks, column stride is) into NR-column panels, zero-padded. */
  packB(src: number, ks: number, is: number, kc: number, n: number, dst: number): void;
  /** C[m x n] = zero ? 0 : beta * C. */
  scale(c: number, ldc: number, m: number, n: number, beta: number, zero: number): void;
}

/** Emits `dst[0..w) = src[0..w)` for a compile-time width using v128 then f32 moves. */
function copyRow(f: Func, dst: number, src: number, w: number): void {
  let o = 0;
  for (; o + 4 <= w; o += 4)
    f.get(dst)
      .get(src)
      .v128Load(o * 4)
      .v128Store(o * 4);
  for (; o < w; o++)
    f.get(dst)
      .get(src)
      .f32Load(o * 4)
      .f32Store(o * 4);
}

/** Emits `dst[0..w) = 0` for a compile-time width. */
function zeroRow(f: Func, dst: number, w: number): void {
  let o = 0;
  for (; o + 4 <= w; o += 4)
    f.get(dst)
      .v128Zero()
      .v128Store(o * 4);
  for (; o < w; o++)
    f.get(dst)
      .f32(0)
      .f32Store(o * 4);
}

/** Emits `x += c` for an i32 local (c a constant) or `x += local` (when `isLocal`). */
function addTo(f: Func, x: number, c: number, isLocal = false): void {
  f.get(x);
  if (isLocal) f.get(c);
  else f.i32(c);
  f.i32Add().set(x);
}

function microKernel(cfg: MicroKernelConfig): Func {
  const { mr, nv, unroll, fma } = cfg;
  const nr = nv * 4;
  // (a, b, kc, c, ldc, alpha, acc)
  const f = new Func("micro", [I32, I32, I32, I32, I32, F32, I32], [], false);
  const [A, B, KC, C, LDC, ALPHA, ACC] = [0, 1, 2, 3, 4, 5, 6];
  const acc: number[][] = [];
  for (let i = 0; i < mr; i++) acc.push(Array.from({ length: nv }, () => f.local(V128)));
  const bv = Array.from({ length: nv }, () => f.local(V128));
  const av = f.local(V128);
  const n = f.local(I32);

  const step = (u: number): void => {
    for (let v = 0; v < nv; v++)
      f.get(B)
        .v128Load((u * nr + v * 4) * 4)
        .set(bv[v]!);
    for (let i = 0; i < mr; i++) {
      f.get(A)
        .v128Load32Splat((u * mr + i) * 4)
        .set(av);
      for (let v = 0; v < nv; v++) {
        if (fma) f.get(av).get(bv[v]!).get(acc[i]![v]!).f32x4RelaxedMadd().set(acc[i]![v]!);
        else f.get(acc[i]![v]!).get(av).get(bv[v]!).f32x4Mul().f32x4Add().set(acc[i]![v]!);
      }
    }
  };
  // do { u steps; a += ..; b += .. } while (a != end), skipped when there are no u-step groups
  const end = f.local(I32);
  const kLoop = (u: number): void => {
    f.get(n).if_();
    f.get(A)
      .get(n)
      .i32(u * mr * 4)
      .i32Mul()
      .i32Add()
      .set(end);
    f.loop();
    for (let s = 0; s < u; s++) step(s);
    addTo(f, A, u * mr * 4);
    addTo(f, B, u * nr * 4);
    f.get(A).get(end).i32Ne().brIf(0);
    f.end().end();
  };
  const log2u = Math.log2(unroll);
  if (unroll > 1) {
    f.get(KC).i32(log2u).i32ShrU().set(n);
    kLoop(unroll);
    f.get(KC)
      .i32(unroll - 1)
      .i32And()
      .set(n);
  } else {
    f.get(KC).set(n);
  }
  kLoop(1);

  // epilogue: C (+)= alpha * acc, row by row
  const alpha = av;
  f.get(ALPHA).f32x4Splat().set(alpha);
  f.get(ACC).if_();
  for (let i = 0; i < mr; i++) {
    for (let v = 0; v < nv; v++) {
      f.get(C)
        .get(C)
        .v128Load(v * 16)
        .get(acc[i]![v]!)
        .get(alpha)
        .f32x4Mul()
        .f32x4Add()
        .v128Store(v * 16);
    }
    if (i + 1 < mr) addTo(f, C, LDC, true);
  }
  f.else_();
  for (let i = 0; i < mr; i++) {
    for (let v = 0; v < nv; v++)
      f.get(C)
        .get(acc[i]![v]!)
        .get(alpha)
        .f32x4Mul()
        .v128Store(v * 16);
    if (i + 1 < mr) addTo(f, C, LDC, true);
  }
  f.end();
  return f;
}

function edgeMerge(nr: number): Func {
  // (t, c, ldc, mr, nr, alpha, acc): C[i, j] = alpha * T[i, j] + (acc ? C[i, j] : 0), T has row stride NR
  const f = new Func("edge", [I32, I32, I32, I32, I32, F32, I32], [], false);
  const [T, C, LDC, MR, NR, ALPHA, ACC] = [0, 1, 2, 3, 4, 5, 6];
  const i = f.local(I32);
  const j = f.local(I32);
  const p = f.local(I32);
  f.block().loop();
  f.get(i).get(MR).i32GeS().brIf(1);
  f.i32(0).set(j);
  f.block().loop();
  f.get(j).get(NR).i32GeS().brIf(1);
  f.get(C).get(j).i32(2).i32Shl().i32Add().set(p);
  f.get(p);
  f.get(T).get(j).i32(2).i32Shl().i32Add().f32Load().get(ALPHA).f32Mul();
  f.get(p).f32Load().f32(0).get(ACC).select();
  f.f32Add().f32Store();
  addTo(f, j, 1);
  f.br(0).end().end();
  addTo(f, C, LDC, true);
  addTo(f, T, nr * 4);
  addTo(f, i, 1);
  f.br(0).end().end();
  return f;
}

function macroKernel(mr: number, nr: number, microIdx: number, edgeIdx: number): Func {
  const f = new Func("macro", [I32, I32, I32, I32, I32, I32, I32, F32, I32, I32]);
  const [MC, NC, KC, AP0, BP, C, LDC, ALPHA, ACC, SCRATCH] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const jr = f.local(I32);
  const ir = f.local(I32);
  const ap = f.local(I32);
  const cp = f.local(I32);
  const m = f.local(I32);
  const n = f.local(I32);
  const aStride = f.local(I32);
  const bStride = f.local(I32);
  const cStride = f.local(I32);
  f.get(KC)
    .i32(mr * 4)
    .i32Mul()
    .set(aStride);
  f.get(KC)
    .i32(nr * 4)
    .i32Mul()
    .set(bStride);
  f.get(LDC).i32(mr).i32Mul().set(cStride);
  f.block().loop();
  f.get(jr).get(NC).i32GeS().brIf(1);
  // n = min(NR, nc - jr)
  f.get(NC).get(jr).i32Sub().i32(nr).get(NC).get(jr).i32Sub().i32(nr).i32LtS().select().set(n);
  f.i32(0).set(ir);
  f.get(AP0).set(ap);
  f.get(C).get(jr).i32(2).i32Shl().i32Add().set(cp);
  f.block().loop();
  f.get(ir).get(MC).i32GeS().brIf(1);
  f.get(MC).get(ir).i32Sub().i32(mr).get(MC).get(ir).i32Sub().i32(mr).i32LtS().select().set(m);
  f.get(m).i32(mr).i32Eq().get(n).i32(nr).i32Eq().i32And().if_();
  f.get(ap).get(BP).get(KC).get(cp).get(LDC).get(ALPHA).get(ACC).call(microIdx);
  f.else_();
  f.get(ap)
    .get(BP)
    .get(KC)
    .get(SCRATCH)
    .i32(nr * 4)
    .f32(1)
    .i32(0)
    .call(microIdx);
  f.get(SCRATCH).get(cp).get(LDC).get(m).get(n).get(ALPHA).get(ACC).call(edgeIdx);
  f.end();
  addTo(f, ap, aStride, true);
  addTo(f, cp, cStride, true);
  addTo(f, ir, mr);
  f.br(0).end().end();
  addTo(f, BP, bStride, true);
  addTo(f, jr, nr);
  f.br(0).end().end();
  return f;
}

function packer(name: string, w: number): Func {
  // (src, ks, is, kc, n, dst): dst panel p, step k, lane i = src[k*ks + (p*w + i)*is]; lanes >= n are 0
  const f = new Func(name, [I32, I32, I32, I32, I32, I32]);
  const [SRC, KS, IS, KC, N, DST] = [0, 1, 2, 3, 4, 5];
  const p0 = f.local(I32);
  const lanes = f.local(I32);
  const k = f.local(I32);
  const s = f.local(I32);
  const q = f.local(I32);
  const i = f.local(I32);
  const r = [0, 1, 2, 3].map(() => f.local(V128));
  const t = [0, 1, 2, 3].map(() => f.local(V128));
  const kLoop = (body: () => void): void => {
    f.get(KC).set(k);
    f.get(SRC).get(p0).get(IS).i32Mul().i32Add().set(s);
    kLoopFrom(body);
  };
  // k steps are contiguous (ks = 4) and lanes strided: 4x4 transposes, 4 k steps per iteration
  const transposeLoop = (): void => {
    f.get(KC).i32(2).i32ShrU().set(k);
    f.get(SRC).get(p0).get(IS).i32Mul().i32Add().set(s);
    f.block().loop();
    f.get(k).i32Eqz().brIf(1);
    for (let g = 0; g < w / 4; g++) {
      f.get(s)
        .get(IS)
        .i32(4 * g)
        .i32Mul()
        .i32Add()
        .set(q);
      for (let l = 0; l < 4; l++) {
        f.get(q).v128Load().set(r[l]!);
        if (l < 3) addTo(f, q, IS, true);
      }
      f.get(r[0]!).get(r[1]!).f32x4Shuffle([0, 4, 1, 5]).set(t[0]!);
      f.get(r[2]!).get(r[3]!).f32x4Shuffle([0, 4, 1, 5]).set(t[1]!);
      f.get(r[0]!).get(r[1]!).f32x4Shuffle([2, 6, 3, 7]).set(t[2]!);
      f.get(r[2]!).get(r[3]!).f32x4Shuffle([2, 6, 3, 7]).set(t[3]!);
      f.get(DST)
        .get(t[0]!)
        .get(t[1]!)
        .f32x4Shuffle([0, 1, 4, 5])
        .v128Store((0 * w + 4 * g) * 4);
      f.get(DST)
        .get(t[0]!)
        .get(t[1]!)
        .f32x4Shuffle([2, 3, 6, 7])
        .v128Store((1 * w + 4 * g) * 4);
      f.get(DST)
        .get(t[2]!)
        .get(t[3]!)
        .f32x4Shuffle([0, 1, 4, 5])
        .v128Store((2 * w + 4 * g) * 4);
      f.get(DST)
        .get(t[2]!)
        .get(t[3]!)
        .f32x4Shuffle([2, 3, 6, 7])
        .v128Store((3 * w + 4 * g) * 4);
    }
    addTo(f, DST, 4 * w * 4);
    addTo(f, s, 16);
    f.get(k).i32(1).i32Sub().set(k);
    f.br(0).end().end();
  };
  // runs `body` for k remaining steps starting at the current dst and s
  const kLoopFrom = (body: () => void): void => {
    f.block().loop();
    f.get(k).i32Eqz().brIf(1);
    body();
    addTo(f, DST, w * 4);
    addTo(f, s, KS, true);
    f.get(k).i32(1).i32Sub().set(k);
    f.br(0).end().end();
  };
  f.block().loop();
  f.get(p0).get(N).i32GeS().brIf(1);
  f.get(N).get(p0).i32Sub().i32(w).get(N).get(p0).i32Sub().i32(w).i32LtS().select().set(lanes);
  f.get(lanes).i32(w).i32Eq().if_();
  {
    f.get(IS).i32(4).i32Eq().if_();
    kLoop(() => copyRow(f, DST, s, w)); // contiguous lanes
    f.else_();
    const gather = (): void => {
      // strided lanes, unrolled
      f.get(s).set(q);
      for (let l = 0; l < w; l++) {
        f.get(DST)
          .get(q)
          .f32Load()
          .f32Store(l * 4);
        if (l + 1 < w) addTo(f, q, IS, true);
      }
    };
    if (w % 4 === 0) {
      f.get(KS).i32(4).i32Eq().if_();
      transposeLoop();
      f.get(KC).i32(3).i32And().set(k);
      kLoopFrom(gather);
      f.else_();
      kLoop(gather);
      f.end();
    } else {
      kLoop(gather);
    }
    f.end();
  }
  f.else_();
  kLoop(() => {
    // ragged panel: zero the lanes, then copy the first `lanes`
    zeroRow(f, DST, w);
    f.get(s).set(q);
    f.i32(0).set(i);
    f.block().loop();
    f.get(i).get(lanes).i32GeS().brIf(1);
    f.get(DST).get(i).i32(2).i32Shl().i32Add().get(q).f32Load().f32Store();
    addTo(f, q, IS, true);
    addTo(f, i, 1);
    f.br(0).end().end();
  });
  f.end();
  addTo(f, p0, w);
  f.br(0).end().end();
  return f;
}

function scaler(): Func {
  // (c, ldc, m, n, beta, zero)
  const f = new Func("scale", [I32, I32, I32, I32, F32, I32]);
  const [C, LDC, M, N, BETA, ZERO] = [0, 1, 2, 3, 4, 5];
  const i = f.local(I32);
  const j = f.local(I32);
  const p = f.local(I32);
  f.block().loop();
  f.get(i).get(M).i32GeS().brIf(1);
  f.i32(0).set(j);
  f.get(C).set(p);
  f.block().loop();
  f.get(j).get(N).i32GeS().brIf(1);
  f.get(p).f32(0).get(p).f32Load().get(BETA).f32Mul().get(ZERO).select().f32Store();
  addTo(f, p, 4);
  addTo(f, j, 1);
  f.br(0).end().end();
  addTo(f, C, LDC, true);
  addTo(f, i, 1);
  f.br(0).end().end();
  return f;
}

/** Module bytes for the given micro-kernel shape, importing `env.memory` as described. */
export function sgemmModuleBytes(cfg: MicroKernelConfig, memory: Omit<MemoryImport, "module" | "name">): Uint8Array {
  if (!Number.isInteger(Math.log2(cfg.unroll)) || cfg.mr < 1 || cfg.nv < 1) {
    throw new RangeError(`sgemmModuleBytes: bad micro-kernel config ${JSON.stringify(cfg)}`);
  }
  const nr = cfg.nv * 4;
  // function indices follow array order
  const funcs = [microKernel(cfg), edgeMerge(nr)];
  funcs.push(macroKernel(cfg.mr, nr, 0, 1), packer("packA", cfg.mr), packer("packB", nr), scaler());
  return buildModule({ module: "env", name: "memory", ...memory }, funcs);
}

/** Whether the runtime validates a module using f32x4.relaxed_madd. */
export function probeRelaxedSimd(): boolean {
  const f = new Func("f", [], [V128]);
  f.v128Zero().v128Zero().v128Zero().f32x4RelaxedMadd();
  return validate(f);
}

/** Whether the runtime validates a module using 128-bit SIMD (v128 locals, f32x4 arithmetic). */
export function probeSimd(): boolean {
  const f = new Func("f", [I32], [V128]);
  f.get(0).v128Load32Splat().get(0).v128Load().f32x4Mul();
  return validate(f);
}

function validate(f: Func): boolean {
  if (!wasmApi) return false;
  try {
    return wasmApi.validate(buildModule({ module: "env", name: "memory", initial: 1, maximum: 1, shared: false }, [f]));
  } catch {
    return false;
  }
}
