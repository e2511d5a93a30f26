// half-precision storage: float32 <-> bfloat16 / IEEE binary16 conversion of whole arrays (round to
// nearest even, NaN kept NaN, overflow to infinity), the kernels behind casts to and from the half dtypes
import type { HalfDType } from "./dtype.ts";

/** bfloat16 bits of the float32 with bits `x` (round to nearest even; NaN becomes the quiet NaN 0x7fc0). */
export function bf16FromBits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) / 65536) & 0xffff;
}

/** binary16 bits of the float32 with bits `x` (round to nearest even, subnormals included; NaN becomes 0x7e00). */
export function f16FromBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const e = (x >>> 23) & 0xff;
  let m = x & 0x7fffff;
  if (e === 0xff) return m ? 0x7e00 : sign | 0x7c00;
  const E = e - 112; // the binary16 biased exponent
  if (E >= 31) return sign | 0x7c00;
  if (E <= 0) {
    // subnormal in binary16: units of 2^-24
    if (E < -10) return sign;
    m |= 0x800000;
    const shift = 14 - E;
    const half = 2 ** (shift - 1);
    let r = Math.floor(m / 2 ** shift);
    const rem = m - r * 2 ** shift;
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = (E << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r++; // a carry moves into the exponent (up to infinity)
  return sign | r;
}

let f16Table: Float32Array | null = null;
/** The float32 value of every binary16 bit pattern (built on first use). */
export function f16Lut(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m === 0 ? s * Infinity : NaN) : s * (1024 + m) * 2 ** (e - 25);
  }
  return (f16Table = t);
}

/** `src` rounded to `dtype`'s bits (a float64 source rounds through float32). */
export function toHalfBits(src: Float32Array | Float64Array, dtype: HalfDType): Uint16Array {
  const f = src instanceof Float32Array ? src : Float32Array.from(src);
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  if (dtype === "bfloat16") for (let i = 0; i < bits.length; i++) out[i] = bf16FromBits(bits[i]!);
  else for (let i = 0; i < bits.length; i++) out[i] = f16FromBits(bits[i]!);
  return out;
}

/** The float32 values of half bits `src` of `dtype`, into `out` (a new array by default); exact. */
export function fromHalfBits(
  src: Uint16Array,
  dtype: HalfDType,
  out: Float32Array = new Float32Array(src.length),
): Float32Array {
  if (dtype === "bfloat16") {
    const u32 = new Uint32Array(out.buffer, out.byteOffset, src.length);
    for (let i = 0; i < src.length; i++) u32[i] = src[i]! << 16;
  } else {
    const t = f16Lut();
    for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  }
  return out;
}

/** `src` rounded to `dtype` and back: the float32 values a half tensor of `dtype` holds. */
export function roundToHalf(src: Float32Array | Float64Array, dtype: HalfDType): Float32Array {
  return fromHalfBits(toHalfBits(src, dtype), dtype);
}
