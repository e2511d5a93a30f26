// Generated WebAssembly SIMD row kernels for softmax-like passes over float32 rows in the arena: max,
// exp(x - c) with its sum (Cody-Waite range reduction + degree-6 polynomial, ~2 ulp), scaling, and
// the attention backward's P * (dP - D) * scale.

import { F32, Func, I32, V128, buildModule, type MemoryImport } from "./emitter.ts";

/** Exports of the row module; pointers are byte offsets, n counts floats. */
export interface RowExports {
  /** max of p[0..n) (-Infinity for n = 0). */
  rowMax(p: number, n: number): number;
  /** p[j] = exp(p[j] - c) in place; returns the sum (inputs below c - 87 give ~0). */
  rowExp(p: number, n: number, c: number): number;
  /** p[j] *= c. */
  rowScale(p: number, n: number, c: number): void;
  /** s[j] = s[j] * (p[j] - d) * c. */
  rowDs(s: number, p: number, n: number, d: number, c: number): void;
}

/**
 * Emits `for (i = 0; i + 4 <= n; i += 4) vec(off); for (; i < n; i++) lane(off)` where `off` is a
 * local holding the byte offset i * 4; `body(wide)` emits the step for 4 lanes or for 1.
 */
function rows(f: Func, n: number, body: (off: number, wide: boolean) => void): void {
  const off = f.local(I32), end = f.local(I32);
  f.get(n).i32(-4).i32And().i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  body(off, true);
  f.get(off).i32(16).i32Add().set(off);
  f.br(0).end().end();
  f.get(n).i32(2).i32Shl().set(end);
  f.block().loop();
  f.get(off).get(end).i32GeS().brIf(1);
  body(off, false);
  f.get(off).i32(4).i32Add().set(off);
  f.br(0).end().end();
}

/** Loads 4 floats at base + off (wide) or splats one. */
function load(f: Func, base: number, off: number, wide: boolean): Func {
  f.get(base).get(off).i32Add();
  return wide ? f.v128Load() : f.v128Load32Splat();
}

/** Stores the v128 in local `v` to base + off: 4 lanes (wide) or lane 0. */
function store(f: Func, base: number, off: number, v: number, wide: boolean): void {
  f.get(base).get(off).i32Add();
  if (wide) f.get(v).v128Store();
  else f.get(v).f32x4ExtractLane(0).f32Store();
}

function splat(f: Func, c: number): number {
  const l = f.local(V128);
  f.f32(c).f32x4Splat().set(l);
  return l;
}

function rowMax(): Func {
  const f = new Func("rowMax", [I32, I32], [F32]);
  const [P, N] = [0, 1];
  const m = splat(f, -Infinity);
  rows(f, N, (off, wide) => {
    f.get(m);
    load(f, P, off, wide).f32x4Max().set(m);
  });
  f.get(m).f32x4ExtractLane(0).get(m).f32x4ExtractLane(1).f32Max().get(m).f32x4ExtractLane(2).get(m).f32x4ExtractLane(3).f32Max().f32Max();
  return f;
}

function rowExp(): Func {
  const f = new Func("rowExp", [I32, I32, F32], [F32]);
  const [P, N, C] = [0, 1, 2];
  const c = f.local(V128);
  f.get(C).f32x4Splat().set(c);
  const lo = splat(f, -87.3), log2e = splat(f, Math.LOG2E), ln2hi = splat(f, 0.693359375), ln2lo = splat(f, -2.12194440e-4);
  const k = [1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720].map((x) => splat(f, x));
  const bias = f.local(V128);
  f.i32(127).i32x4Splat().set(bias);
  const x = f.local(V128), kk = f.local(V128), r = f.local(V128), acc = splat(f, 0), accTail = splat(f, 0);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(c).f32x4Sub().get(lo).f32x4Max().set(x);
    f.get(x).get(log2e).f32x4Mul().f32x4Nearest().set(kk);
    f.get(x).get(kk).get(ln2hi).f32x4Mul().f32x4Sub().get(kk).get(ln2lo).f32x4Mul().f32x4Sub().set(r);
    // 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r (1/120 + r/720)))))
    f.get(r).get(k[5]!).f32x4Mul();
    for (let i = 4; i >= 0; i--) f.get(k[i]!).f32x4Add().get(r).f32x4Mul();
    f.get(k[0]!).f32x4Add();
    // times 2^k built from its exponent bits
    f.get(kk).i32x4TruncSatF32x4S().get(bias).i32x4Add().i32(23).i32x4Shl().f32x4Mul().set(x);
    store(f, P, off, x, wide);
    if (wide) f.get(acc).get(x).f32x4Add().set(acc);
    else f.get(accTail).get(x).f32x4Add().set(accTail);
  });
  f.get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add().get(acc).f32x4ExtractLane(2).get(acc).f32x4ExtractLane(3).f32Add().f32Add();
  f.get(accTail).f32x4ExtractLane(0).f32Add();
  return f;
}

function rowScale(): Func {
  const f = new Func("rowScale", [I32, I32, F32]);
  const [P, N, C] = [0, 1, 2];
  const c = f.local(V128), x = f.local(V128);
  f.get(C).f32x4Splat().set(c);
  rows(f, N, (off, wide) => {
    load(f, P, off, wide).get(c).f32x4Mul().set(x);
    store(f, P, off, x, wide);
  });
  return f;
}

function rowDs(): Func {
  const f = new Func("rowDs", [I32, I32, I32, F32, F32]);
  const [S, P, N, D, C] = [0, 1, 2, 3, 4];
  const d = f.local(V128), c = f.local(V128), x = f.local(V128);
  f.get(D).f32x4Splat().set(d);
  f.get(C).f32x4Splat().set(c);
  rows(f, N, (off, wide) => {
    load(f, S, off, wide);
    load(f, P, off, wide).get(d).f32x4Sub().f32x4Mul().get(c).f32x4Mul().set(x);
    store(f, S, off, x, wide);
  });
  return f;
}

/** Module bytes of the row kernels, importing `env.memory` as described. */
export function rowModuleBytes(memory: Omit<MemoryImport, "module" | "name">): Uint8Array {
  return buildModule({ module: "env", name: "memory", ...memory }, [rowMax(), rowExp(), rowScale(), rowDs()]);
}
