// shared loaders and comparisons for the parity tests against test/fixtures/*/golden.safetensors
// (outputs recorded once from diffusers 0.21.4 / transformers 4.57.6, see test/fixtures/README.md)
import * as assert from "uvu/assert";
import * as fs from "node:fs";
import { fileURLToPath } from "node:url";
import { tensor, Tensor } from "../../../engine/index.ts";
import type { DType } from "../../../engine/index.ts";
import { readSafetensors } from "../../../data/safetensors.ts";

/** Absolute path of a fixture folder (with a trailing slash). */
export function fixtureDir(name: string): string {
  return fileURLToPath(new URL(`../../fixtures/${name}/`, import.meta.url));
}

/** A golden.json record: shape, how it was made, whether it is stored, and its statistics. */
export interface GoldenStats {
  shape: number[];
  desc: string;
  stored: boolean;
  sum: number;
  abs_sum: number;
  mean: number;
  max_abs: number;
  first8: number[];
}

/** One fixture folder's golden.safetensors (F32 entries) and golden.json. */
export class Golden {
  readonly dir: string;
  readonly json: { entries: Record<string, GoldenStats> } & Record<string, unknown>;
  private readonly entries: Map<string, { shape: number[]; data: Float32Array }>;
  constructor(name: string) {
    this.dir = fixtureDir(name);
    this.entries = readSafetensors(`${this.dir}golden.safetensors`).tensors;
    this.json = JSON.parse(fs.readFileSync(`${this.dir}golden.json`, "utf8"));
  }
  /** The stored values of an entry (throws naming the entry when absent). */
  data(key: string): Float32Array {
    return this.entry(key).data;
  }
  /** The stored shape of an entry. */
  shape(key: string): number[] {
    return this.entry(key).shape;
  }
  /** An entry as a tensor of the given dtype (the F32 values, exactly). */
  tensor(key: string, dtype: DType = "float32"): Tensor {
    const e = this.entry(key);
    return tensor(Float64Array.from(e.data), e.shape, { dtype });
  }
  /** Keys that start with `prefix`, in file order. */
  keys(prefix: string): string[] {
    return [...this.entries.keys()].filter((k) => k.startsWith(prefix));
  }
  private entry(key: string): { shape: number[]; data: Float32Array } {
    const e = this.entries.get(key);
    if (!e) throw new Error(`golden ${this.dir}: no entry ${key}`);
    return e;
  }
}

/** Largest |got - ref| and where it is. */
export function maxAbsError(got: ArrayLike<number>, ref: ArrayLike<number>): { err: number; at: number } {
  let err = 0,
    at = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = i;
    }
  }
  return { err, at };
}

/** Largest |ref|. */
export function maxAbs(ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(ref[i]));
  return m;
}

const values = (x: Tensor | ArrayLike<number>): ArrayLike<number> => (x instanceof Tensor ? x.data : x);

/**
 * Asserts |got - ref| <= atol + rtol |ref| elementwise (and equal shapes when `got` is a tensor);
 * the message names the worst element. Returns the largest absolute error.
 */
export function assertAllClose(
  what: string,
  got: Tensor | ArrayLike<number>,
  ref: ArrayLike<number>,
  atol: number,
  rtol: number,
  refShape?: readonly number[],
): number {
  if (got instanceof Tensor && refShape) assert.equal([...got.shape], [...refShape], `${what}: shape`);
  const g = values(got);
  assert.is(g.length, ref.length, `${what}: length`);
  let worst = 0,
    at = 0;
  for (let i = 0; i < ref.length; i++) {
    const s = Math.abs(g[i] - ref[i]) / (atol + rtol * Math.abs(ref[i]));
    if (!(s <= worst)) {
      worst = Number.isNaN(s) ? Infinity : s;
      at = i;
    }
  }
  const { err } = maxAbsError(g, ref);
  assert.ok(
    worst <= 1,
    `${what}: |got - ref| > ${atol} + ${rtol}|ref| at ${at}: got ${g[at]}, ref ${ref[at]} (max abs error ${err.toExponential(3)}, max |ref| ${maxAbs(ref).toPrecision(4)})`,
  );
  return err;
}

/** Asserts max |got - ref| <= tol * max |ref| (the gradient criterion). Returns the ratio. */
export function assertRelToMax(
  what: string,
  got: Tensor | ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: number,
): number {
  const g = values(got);
  assert.is(g.length, ref.length, `${what}: length`);
  const scale = maxAbs(ref);
  assert.ok(scale > 0, `${what}: reference is all zeros`);
  const { err, at } = maxAbsError(g, ref);
  const ratio = err / scale;
  assert.ok(
    ratio <= tol,
    `${what}: max abs error ${err.toExponential(3)} = ${ratio.toExponential(3)} x max |ref| ${scale.toExponential(3)} (limit ${tol}) at ${at}: got ${g[at]}, ref ${ref[at]}`,
  );
  return ratio;
}

/** Rows [start, end) of a flat row-major (B, ...) array. */
export function rows(data: ArrayLike<number>, shape: readonly number[], start: number, end: number): Float64Array {
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const out = new Float64Array((end - start) * per);
  for (let i = 0; i < out.length; i++) out[i] = data[start * per + i];
  return out;
}

/** Tolerances of test/fixtures/README.md. */
export const TOL = {
  /** float64 engine vs ref64.* (limited by the F32 storage of the reference) */
  f64: { atol: 1e-8, rtol: 1e-6 },
  /** float32 engine vs ref64.* or output.*: UNet, CLIP */
  f32: { atol: 2e-5, rtol: 1e-5 },
  /** float32 engine vs ref64.* or output.*: VAE */
  f32Vae: { atol: 5e-5, rtol: 1e-5 },
  /** gradients: max abs error over max |ref| */
  grad32: 2e-5,
  grad64: 1e-6,
} as const;
