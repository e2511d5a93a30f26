// gpujs normalisation kernels: group norm and layer norm, forward and backward
import type { Backend } from "../backend.ts";
import type { GpuStorage } from "./device.ts";
import type { KernelContext } from "./kernel_context.ts";
import { groupNormBackward, groupNormForward, layerNormBackward, layerNormForward } from "../cpu/norm.ts";
import { coordLines, f } from "./device.ts";

type S = GpuStorage;

/** The normalisation kernels of the gpujs backend (host fallbacks where a kernel does not fit). */
export function normKernels(
  c: KernelContext,
): Pick<Backend<GpuStorage>, "groupNorm" | "groupNormBackward" | "layerNorm" | "layerNormBackward"> {
  const { wrap, H, Hn, host, gpuOk, run, normStats } = c;
  /**
   * y[i] = (x[i] - mean[row]) * rstd[row] (* w[c1] + b[c1]; then silu), where `rowOf` sets `row` and
   * `c1` (the channel) from the element index `i`.
   */
  function normalize(
    name: string,
    x: S,
    mean: S,
    rstd: S,
    w: S | null,
    b: S | null,
    rowOf: string[],
    silu: boolean,
  ): S {
    const body = ["const i = this.thread.x;", ...rowOf, "let z = (x[i] - mu[row]) * rs[row];"];
    if (w) body.push("z = z * ww[c1];");
    if (b) body.push("z = z + bb[c1];");
    body.push(silu ? "return z / (1.0 + exp32(-z));" : "return z;");
    const args: [string, S][] = [
      ["x", x],
      ["mu", mean],
      ["rs", rstd],
    ];
    if (w) args.push(["ww", w]);
    if (b) args.push(["bb", b]);
    return run(name, body, x.size, args);
  }

  return {
    groupNorm: (x, w, b, p) => {
      const { n, c, s, groups } = p;
      const cg = c / groups,
        len = cg * s;
      if (!gpuOk(x, w, b) || n * c * s === 0) {
        host("groupNorm");
        const r = groupNormForward(H(x), Hn(w), Hn(b), p);
        return { y: wrap(r.y), mean: wrap(r.mean), rstd: wrap(r.rstd) };
      }
      const { mean, rstd } = normStats("groupNorm", x, n * groups, len, p.eps);
      const rowOf = [...coordLines("i", [n, c, s], "c"), `const row = c0 * ${f(groups)} + idiv(c1, ${f(cg)});`];
      return { y: normalize("groupNorm", x, mean, rstd, w, b, rowOf, p.silu ?? false), mean, rstd };
    },
    groupNormBackward: (x, w, gy, mean, rstd, p, affine) => {
      const { n, c, s, groups } = p;
      const cg = c / groups,
        len = cg * s;
      if (!gpuOk(x, w, gy, mean, rstd) || n * c * s === 0) {
        host("groupNormBackward");
        const r = groupNormBackward(H(x), Hn(w), H(gy), H(mean), H(rstd), p, affine);
        return { dx: wrap(r.dx), dw: r.dw && wrap(r.dw), db: r.db && wrap(r.db) };
      }
      // per (sample, group): mean of g w and of g w xhat
      const wr = w ? "ww[c1]" : "1.0";
      const sums = (name: string, term: string): S => {
        const body = [
          "const i0 = this.thread.x;",
          `const ng = i0;`,
          `const gi = ng - idiv(ng, ${f(groups)}) * ${f(groups)};`,
          `const base = ng * ${f(len)};`,
          "const m = mu[ng];",
          "const r = rs[ng];",
          "let t = 0.0;",
        ];
        body.push(
          `for (let j = 0; j < ${len}; j++) { const e = base + j; const c1 = gi * ${f(cg)} + idiv(j, ${f(s)}); t += ${term}; }`,
          `return t / ${f(len)};`,
        );
        const args: [string, S][] = [
          ["x", x],
          ["gy", gy],
          ["mu", mean],
          ["rs", rstd],
        ];
        if (w) args.push(["ww", w]);
        return run(name, body, n * groups, args);
      };
      const mg = sums("groupNormBackward", `gy[e] * ${wr}`);
      const mgx = sums("groupNormBackward", `gy[e] * ${wr} * (x[e] - m) * r`);
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [n, c, s], "c"),
        `const ng = c0 * ${f(groups)} + idiv(c1, ${f(cg)});`,
        "const r = rs[ng];",
      ];
      body.push(`return r * (gy[i] * ${wr} - mg[ng] - (x[i] - mu[ng]) * r * mgx[ng]);`);
      const args: [string, S][] = [
        ["x", x],
        ["gy", gy],
        ["mu", mean],
        ["rs", rstd],
        ["mg", mg],
        ["mgx", mgx],
      ];
      if (w) args.push(["ww", w]);
      const dx = run("groupNormBackward", body, x.size, args);
      if (!affine) return { dx, dw: null, db: null };
      // per channel over samples and positions
      const chan = (term: string): S => {
        const b2 = ["const ch = this.thread.x;", `const ng0 = idiv(ch, ${f(cg)});`, "let t = 0.0;"];
        b2.push(
          `for (let b = 0; b < ${n}; b++) { const ng = b * ${f(groups)} + ng0; const base = (b * ${f(c)} + ch) * ${f(s)}; const m = mu[ng]; const r = rs[ng];`,
        );
        b2.push(`for (let j = 0; j < ${s}; j++) { const e = base + j; t += ${term}; } }`, "return t;");
        return run("groupNormBackward", b2, c, [
          ["x", x],
          ["gy", gy],
          ["mu", mean],
          ["rs", rstd],
        ]);
      };
      return { dx, dw: chan("gy[e] * (x[e] - m) * r"), db: chan("gy[e]") };
    },
    layerNorm: (x, w, b, p) => {
      const { rows, d } = p;
      if (!gpuOk(x, w, b) || rows * d === 0) {
        host("layerNorm");
        const r = layerNormForward(H(x), Hn(w), Hn(b), p);
        return { y: wrap(r.y), mean: wrap(r.mean), rstd: wrap(r.rstd) };
      }
      const { mean, rstd } = normStats("layerNorm", x, rows, d, p.eps);
      const rowOf = [...coordLines("i", [rows, d], "c"), "const row = c0;"];
      return { y: normalize("layerNorm", x, mean, rstd, w, b, rowOf, false), mean, rstd };
    },
    layerNormBackward: (x, w, gy, mean, rstd, p, affine) => {
      const { rows, d } = p;
      if (!gpuOk(x, w, gy, mean, rstd) || rows * d === 0) {
        host("layerNormBackward");
        const r = layerNormBackward(H(x), Hn(w), H(gy), H(mean), H(rstd), p, affine);
        return { dx: wrap(r.dx), dw: r.dw && wrap(r.dw), db: r.db && wrap(r.db) };
      }
      const wr = w ? "ww[j]" : "1.0";
      const args: [string, S][] = [
        ["x", x],
        ["gy", gy],
        ["mu", mean],
        ["rs", rstd],
      ];
      if (w) args.push(["ww", w]);
      const sums = (term: string): S => {
        const body = [
          "const row = this.thread.x;",
          `const base = row * ${f(d)};`,
          "const m = mu[row];",
          "const r = rs[row];",
          "let t = 0.0;",
        ];
        body.push(`for (let j = 0; j < ${d}; j++) { const e = base + j; t += ${term}; }`, `return t / ${f(d)};`);
        return run("layerNormBackward", body, rows, args);
      };
      const mg = sums(`gy[e] * ${wr}`);
      const mgx = sums(`gy[e] * ${wr} * (x[e] - m) * r`);
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [rows, d], "c"),
        "const j = c1;",
        "const r = rs[c0];",
      ];
      body.push(`return r * (gy[i] * ${wr} - mg[c0] - (x[i] - mu[c0]) * r * mgx[c0]);`);
      const dx = run("layerNormBackward", body, x.size, [...args, ["mg", mg], ["mgx", mgx]]);
      if (!affine) return { dx, dw: null, db: null };
      const col = (term: string): S => {
        const b2 = [
          "const j = this.thread.x;",
          "let t = 0.0;",
          `for (let row = 0; row < ${rows}; row++) { const e = row * ${f(d)} + j; const m = mu[row]; const r = rs[row]; t += ${term}; }`,
          "return t;",
        ];
        return run("layerNormBackward", b2, d, [
          ["x", x],
          ["gy", gy],
          ["mu", mean],
          ["rs", rstd],
        ]);
      };
      return { dx, dw: col("gy[e] * (x[e] - m) * r"), db: col("gy[e]") };
    },
  };
}
