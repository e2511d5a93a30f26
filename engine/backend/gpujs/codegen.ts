// gpu.js code generation helpers: integer index math in float32 (exact below 2^24), float literals, strides
/** Lines that split flat index `v` of `shape` into coordinates `${p}0..${p}{n-1}` (row-major). */
export function coordLines(v: string, shape: readonly number[], p: string): string[] {
  const lines: string[] = [];
  const n = shape.length;
  if (n === 0) return lines;
  if (n === 1) return [`const ${p}0 = ${v};`];
  lines.push(`let ${p}r = ${v};`);
  for (let d = n - 1; d >= 1; d--) {
    const dim = shape[d]!;
    if (dim === 1) {
      lines.push(`const ${p}${d} = 0.0;`);
      continue;
    }
    lines.push(
      `const ${p}q${d} = idiv(${p}r, ${f(dim)});`,
      `const ${p}${d} = ${p}r - ${p}q${d} * ${f(dim)};`,
      `${p}r = ${p}q${d};`,
    );
  }
  lines.push(`const ${p}0 = ${p}r;`);
  return lines;
}

/** sum of coordinate * stride (skipping zero strides), plus `base`. */
export function offsetExpr(p: string, strides: readonly number[], base = 0): string {
  const terms: string[] = [];
  if (base) terms.push(f(base));
  strides.forEach((s, d) => {
    if (s === 0) return;
    terms.push(s === 1 ? `${p}${d}` : `${p}${d} * ${f(s)}`);
  });
  return terms.length ? terms.join(" + ") : "0.0";
}

/** A float literal for generated source. */
export function f(x: number): string {
  if (Number.isInteger(x)) return `${x}.0`;
  if (!Number.isFinite(x)) return x > 0 ? "(1.0 / 0.0)" : x < 0 ? "(-1.0 / 0.0)" : "(0.0 / 0.0)";
  return String(x).includes("e") ? x.toExponential() : String(x);
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
}
