// Scalar float16 / bfloat16 conversions (float16 rounded once, to nearest even), for the file formats.
import { roundHalfEven } from "../engine/numeric.ts";

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
const scratchView = new DataView(new ArrayBuffer(8));
/** POW2[k + 32] = 2^k exactly, for k in [-32, 32]. */
const POW2: number[] = [];
for (let k = -32; k <= 32; k++) {
  let p = 1;
  for (let i = 0; i < Math.abs(k); i++) p *= 2;
  POW2.push(k >= 0 ? p : 1 / p);
}

/**
 * Converts a number to IEEE-754 binary16 bits, rounding once to nearest even (also from a
 * float64 value, without double rounding). Handles subnormals, signed zero, overflow to
 * infinity (from 65520 up) and NaN (0x7E00).
 */
export function f32ToF16(x: number): number {
  if (x !== x) return 0x7e00;
  const sign = x < 0 || (x === 0 && 1 / x < 0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  if (a < 6.103515625e-5) return sign | roundHalfEven(a * 16777216); // subnormal: units of 2^-24; 1024 carries into 0x0400
  scratchView.setFloat64(0, a);
  const e = ((scratchView.getUint32(0) >>> 20) & 0x7ff) - 1023;
  const m = roundHalfEven(a * POW2[10 - e + 32]!); // in [1024, 2048]; 2048 carries into the exponent
  return sign | (((e + 15) << 10) + (m - 1024));
}

/** Converts IEEE-754 binary16 bits (low 16 bits of `h`) to a number, exactly. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 5.960464477539063e-8; // m * 2^-24
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1024 + m) * POW2[e - 25 + 32]!; // (1024 + m) * 2^(e - 15 - 10)
}

/** Converts bfloat16 bits (low 16 bits of `h`) to a number, exactly. */
export function bf16ToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

/** All 65536 binary16 values as float32 (the engine's table, built on first use). */
export { f16Lut } from "../engine/half.ts";
