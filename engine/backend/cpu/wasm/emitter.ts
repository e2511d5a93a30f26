// Tiny WebAssembly binary emitter: LEB128, a function-body builder for the opcodes the kernels use,
// and a module builder with one imported memory and exported functions.

/** Value types. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export const F64 = 0x7c;
export type ValType = typeof I32 | typeof F32 | typeof V128 | typeof F64;

/** Unsigned LEB128 encoding of a non-negative integer. */
export function uleb(n: number): number[] {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`uleb: need a non-negative integer, got ${n}`);
  const out: number[] = [];
  let v = n;
  do {
    let byte = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** Signed LEB128 encoding of a 32-bit integer. */
export function sleb(n: number): number[] {
  const out: number[] = [];
  let v = n | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function utf8(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** Block type "empty" for block/loop/if. */
const EMPTY = 0x40;

/**
 * Builder for one function body. Parameters occupy local indices 0..n-1; `local()` adds more.
 * Methods append opcodes and return `this` so code reads as a flat instruction list.
 */
export class Func {
  readonly code: number[] = [];
  private readonly locals: ValType[] = [];
  constructor(
    readonly name: string,
    readonly params: readonly ValType[],
    readonly results: readonly ValType[] = [],
    readonly exported = true,
  ) {}

  /** Declares a new local of type `t` and returns its index. */
  local(t: ValType): number {
    this.locals.push(t);
    return this.params.length + this.locals.length - 1;
  }

  /** Encoded body (locals + code + end). */
  body(): number[] {
    const groups: number[][] = [];
    let i = 0;
    while (i < this.locals.length) {
      let j = i;
      while (j < this.locals.length && this.locals[j] === this.locals[i]) j++;
      groups.push([...uleb(j - i), this.locals[i]!]);
      i = j;
    }
    const b = [...vec(groups), ...this.code, 0x0b];
    return [...uleb(b.length), ...b];
  }

  private op(...bytes: number[]): this {
    for (const x of bytes) this.code.push(x);
    return this;
  }
  private simd(op: number, ...imm: number[]): this {
    return this.op(0xfd, ...uleb(op), ...imm);
  }
  private mem(op: number, align: number, offset: number): this {
    return this.op(op, ...uleb(align), ...uleb(offset));
  }

  // control
  block(): this {
    return this.op(0x02, EMPTY);
  }
  loop(): this {
    return this.op(0x03, EMPTY);
  }
  if_(): this {
    return this.op(0x04, EMPTY);
  }
  else_(): this {
    return this.op(0x05);
  }
  end(): this {
    return this.op(0x0b);
  }
  br(depth: number): this {
    return this.op(0x0c, ...uleb(depth));
  }
  brIf(depth: number): this {
    return this.op(0x0d, ...uleb(depth));
  }
  ret(): this {
    return this.op(0x0f);
  }
  call(funcIndex: number): this {
    return this.op(0x10, ...uleb(funcIndex));
  }
  drop(): this {
    return this.op(0x1a);
  }

  // locals
  get(i: number): this {
    return this.op(0x20, ...uleb(i));
  }
  set(i: number): this {
    return this.op(0x21, ...uleb(i));
  }
  tee(i: number): this {
    return this.op(0x22, ...uleb(i));
  }

  // memory (align is log2 bytes)
  f32Load(offset = 0): this {
    return this.mem(0x2a, 2, offset);
  }
  f32Store(offset = 0): this {
    return this.mem(0x38, 2, offset);
  }

  // constants
  i32(v: number): this {
    return this.op(0x41, ...sleb(v));
  }
  f32(v: number): this {
    const b = new Uint8Array(new Float32Array([v]).buffer);
    return this.op(0x43, ...b);
  }

  // i32 arithmetic and comparisons
  i32Eqz(): this {
    return this.op(0x45);
  }
  i32Eq(): this {
    return this.op(0x46);
  }
  i32Ne(): this {
    return this.op(0x47);
  }
  i32LtS(): this {
    return this.op(0x48);
  }
  i32LtU(): this {
    return this.op(0x49);
  }
  i32GtS(): this {
    return this.op(0x4a);
  }
  i32GeS(): this {
    return this.op(0x4e);
  }
  i32Add(): this {
    return this.op(0x6a);
  }
  i32Sub(): this {
    return this.op(0x6b);
  }
  i32Mul(): this {
    return this.op(0x6c);
  }
  i32DivS(): this {
    return this.op(0x6d);
  }
  i32LeS(): this {
    return this.op(0x4c);
  }
  i32And(): this {
    return this.op(0x71);
  }
  i32Shl(): this {
    return this.op(0x74);
  }
  i32ShrU(): this {
    return this.op(0x76);
  }
  select(): this {
    return this.op(0x1b);
  }

  // f32 arithmetic
  f32Add(): this {
    return this.op(0x92);
  }
  f32Sub(): this {
    return this.op(0x93);
  }
  f32Mul(): this {
    return this.op(0x94);
  }
  f32Max(): this {
    return this.op(0x97);
  }
  f32Neg(): this {
    return this.op(0x8c);
  }
  f32Div(): this {
    return this.op(0x95);
  }
  f64Add(): this {
    return this.op(0xa0);
  }
  f64Sub(): this {
    return this.op(0xa1);
  }
  f64Mul(): this {
    return this.op(0xa2);
  }
  f64Div(): this {
    return this.op(0xa3);
  }
  f64Sqrt(): this {
    return this.op(0x9f);
  }
  f64ConvertI32S(): this {
    return this.op(0xb7);
  }
  f32DemoteF64(): this {
    return this.op(0xb6);
  }
  f64Store(offset = 0): this {
    return this.mem(0x39, 3, offset);
  }
  f64Load(offset = 0): this {
    return this.mem(0x2b, 3, offset);
  }
  f64PromoteF32(): this {
    return this.op(0xbb);
  }
  f64(v: number): this {
    const b = new Uint8Array(new Float64Array([v]).buffer);
    return this.op(0x44, ...b);
  }
  f32Eq(): this {
    return this.op(0x5b);
  }

  // SIMD
  v128Load(offset = 0): this {
    return this.simd(0x00, 4, ...uleb(offset));
  }
  v128Load32Splat(offset = 0): this {
    return this.simd(0x09, 2, ...uleb(offset));
  }
  v128Store(offset = 0): this {
    return this.simd(0x0b, 4, ...uleb(offset));
  }
  v128Zero(): this {
    return this.simd(0x0c, ...new Array<number>(16).fill(0));
  }
  /** i8x16.shuffle expressed in f32 lanes: lanes 0-3 pick from the first operand, 4-7 from the second. */
  f32x4Shuffle(lanes: readonly [number, number, number, number]): this {
    return this.simd(0x0d, ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
  }
  f32x4Splat(): this {
    return this.simd(0x13);
  }
  i32x4Splat(): this {
    return this.simd(0x11);
  }
  f32x4ExtractLane(lane: number): this {
    return this.simd(0x1f, lane);
  }
  f32x4ReplaceLane(lane: number): this {
    return this.simd(0x20, lane);
  }
  /** v128.load32_lane: (address, vector) -> vector with lane `lane` loaded. */
  v128Load32Lane(lane: number, offset = 0): this {
    return this.simd(0x56, 2, ...uleb(offset), lane);
  }
  f32x4Nearest(): this {
    return this.simd(0x6a);
  }
  i32x4Shl(): this {
    return this.simd(0xab);
  }
  i32x4Add(): this {
    return this.simd(0xae);
  }
  f32x4Add(): this {
    return this.simd(0xe4);
  }
  f32x4Sub(): this {
    return this.simd(0xe5);
  }
  f32x4Mul(): this {
    return this.simd(0xe6);
  }
  f32x4Max(): this {
    return this.simd(0xe9);
  }
  f32x4Min(): this {
    return this.simd(0xe8);
  }
  f32x4Div(): this {
    return this.simd(0xe7);
  }
  f32x4Neg(): this {
    return this.simd(0xe1);
  }
  /** b < a ? b : a (one minps; no NaN or signed-zero rules). */
  f32x4Pmin(): this {
    return this.simd(0xea);
  }
  /** a < b ? b : a (one maxps). */
  f32x4Pmax(): this {
    return this.simd(0xeb);
  }
  f32x4Abs(): this {
    return this.simd(0xe0);
  }
  v128And(): this {
    return this.simd(0x4e);
  }
  v128Or(): this {
    return this.simd(0x50);
  }
  i32x4TruncSatF32x4S(): this {
    return this.simd(0xf8);
  }
  f64x2Splat(): this {
    return this.simd(0x14);
  }
  f64x2ExtractLane(lane: number): this {
    return this.simd(0x21, lane);
  }
  /** The two low f32 lanes as f64x2. */
  f64x2PromoteLowF32x4(): this {
    return this.simd(0x5f);
  }
  /** f64x2 rounded to f32 in the two low lanes, zeros above. */
  f32x4DemoteF64x2Zero(): this {
    return this.simd(0x5e);
  }
  f64x2Add(): this {
    return this.simd(0xf0);
  }
  f64x2Sub(): this {
    return this.simd(0xf1);
  }
  f64x2Mul(): this {
    return this.simd(0xf2);
  }
  f64x2Div(): this {
    return this.simd(0xf3);
  }
  f64x2Sqrt(): this {
    return this.simd(0xef);
  }
  /** Relaxed-SIMD fused multiply-add: a*b + c (stack: a, b, c). */
  f32x4RelaxedMadd(): this {
    return this.simd(0x105);
  }
}

/** Memory import description: initial/maximum in 64 KiB pages. */
export interface MemoryImport {
  module: string;
  name: string;
  initial: number;
  maximum: number;
  shared: boolean;
}

/** Assembles a module: one imported memory, then the given functions (index = array position). */
export function buildModule(memory: MemoryImport, funcs: readonly Func[]): Uint8Array {
  const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
  const sigKey = (f: Func): string => `${f.params.join(",")}>${f.results.join(",")}`;
  const sigs: string[] = [];
  const typeEntries: number[][] = [];
  const funcTypes: number[] = [];
  for (const f of funcs) {
    const key = sigKey(f);
    let idx = sigs.indexOf(key);
    if (idx < 0) {
      idx = sigs.length;
      sigs.push(key);
      typeEntries.push([0x60, ...vec(f.params.map((p) => [p])), ...vec(f.results.map((r) => [r]))]);
    }
    funcTypes.push(idx);
  }
  const limits = memory.shared
    ? [0x03, ...uleb(memory.initial), ...uleb(memory.maximum)]
    : [0x01, ...uleb(memory.initial), ...uleb(memory.maximum)];
  const name = (s: string): number[] => {
    const b = utf8(s);
    return [...uleb(b.length), ...b];
  };
  const importEntry = [...name(memory.module), ...name(memory.name), 0x02, ...limits];
  const exports: number[][] = [];
  funcs.forEach((f, i) => {
    if (f.exported) exports.push([...name(f.name), 0x00, ...uleb(i)]);
  });
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vec(typeEntries)),
    ...section(2, vec([importEntry])),
    ...section(3, vec(funcTypes.map((t) => uleb(t)))),
    ...section(7, vec(exports)),
    ...section(10, vec(funcs.map((f) => f.body()))),
  ];
  return new Uint8Array(bytes);
}
