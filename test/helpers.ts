// shared test helpers: float64 finite-difference gradient checks and array comparisons
import * as assert from "uvu/assert";
import { Generator, Tensor, noGrad, randn, sum, mul, tensor } from "../engine/index.ts";

/** Max |a - b| / (atol + rtol |b|) over elements: <= 1 means close. */
export function closeness(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}

export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-6, rtol = 1e-5, what = ""): void {
  const c = closeness(a, b, atol, rtol);
  if (!(c <= 1)) {
    assert.unreachable(
      `${what} not close (atol ${atol}, rtol ${rtol}, score ${c}):\n got      ${Array.from(a)
        .slice(0, 12)
        .map((v) => v.toPrecision(7))}\n expected ${Array.from(b)
        .slice(0, 12)
        .map((v) => v.toPrecision(7))}`,
    );
  }
}

/** A float64 tensor of standard normal values, optionally pushed away from 0 by `margin`. */
export function rnd(shape: number[], seed: number, opts: { margin?: number; positive?: boolean } = {}): Tensor {
  const t = randn(shape, { dtype: "float64", generator: new Generator(seed) });
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    let v = d[i];
    if (opts.margin) v = v + Math.sign(v || 1) * opts.margin;
    if (opts.positive) v = Math.abs(v) + 0.5;
    d[i] = v;
  }
  return t;
}

/**
 * Central finite-difference check of d sum(R * f(inputs)) / d inputs in float64, with R a fixed
 * random projection; throws with the worst element when analytic and numeric gradients differ by
 * more than atol + rtol |numeric|.
 */
export function gradcheck(
  name: string,
  f: (...xs: Tensor[]) => Tensor | Tensor[],
  inputs: Tensor[],
  opts: { eps?: number; atol?: number; rtol?: number } = {},
): void {
  const eps = opts.eps ?? 1e-6,
    atol = opts.atol ?? 1e-7,
    rtol = opts.rtol ?? 1e-5;
  for (const x of inputs) if (x.dtype !== "float64") throw new Error(`gradcheck ${name}: inputs must be float64`);
  const leaves = inputs.map((x) => tensor(x.data.slice(), x.shape, { dtype: "float64", requiresGrad: true }));
  const outs = ([] as Tensor[]).concat(f(...leaves));
  const proj = outs.map((o, i) => randn(o.shape, { dtype: "float64", generator: new Generator(1000 + i) }));
  const loss = (os: Tensor[]) =>
    os.reduce((acc: Tensor | null, o, i) => {
      const s = sum(mul(o, proj[i]));
      return acc ? acc.add(s) : s;
    }, null)!;
  loss(outs).backward();
  leaves.forEach((leaf, k) => {
    const data = leaf.data;
    const num = new Float64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const orig = data[i];
      data[i] = orig + eps;
      const up = noGrad(() => loss(([] as Tensor[]).concat(f(...leaves))).item());
      data[i] = orig - eps;
      const dn = noGrad(() => loss(([] as Tensor[]).concat(f(...leaves))).item());
      data[i] = orig;
      num[i] = (up - dn) / (2 * eps);
    }
    const ana = leaf.grad ? leaf.grad.data : new Float64Array(data.length);
    const c = closeness(ana, num, atol, rtol);
    if (!(c <= 1)) {
      let worst = 0;
      for (let i = 0; i < num.length; i++) if (Math.abs(ana[i] - num[i]) > Math.abs(ana[worst] - num[worst])) worst = i;
      throw new Error(
        `gradcheck ${name}: input ${k} [${leaf.shape}] element ${worst}: analytic ${ana[worst]} vs numeric ${num[worst]} (atol ${atol}, rtol ${rtol})`,
      );
    }
  });
}
