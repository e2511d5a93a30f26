// gpujs attention kernels: fused scaled-dot-product attention forward and backward. The scores of one
// call (items x query rows x keys) live in one texture; where they would not fit (SD-1.5 at 512 px
// has 16 x 4096 x 4096), the query rows are taken in blocks whose scores fit, each block on the GPU,
// and the blocks' rows joined (dq, the output, the log-sum-exp) or summed (dk, dv) there too.
import type { AttentionParams, Backend } from "../backend.ts";
import type { GpuStorage } from "./device.ts";
import type { KernelContext } from "./kernel_context.ts";
import { plainAttentionBackward, plainAttentionForward } from "../cpu/attention.ts";
import { coordLines, f, MAX_GPU_ELEMENTS } from "./device.ts";
import { flatView, itemOff } from "./programs.ts";
import type { View } from "./programs.ts";

type S = GpuStorage;

let scoreLimit = MAX_GPU_ELEMENTS;
/**
 * The most scores (items x query rows x keys) one block of the gpujs attention makes: 2^24 (one
 * texture), or less where a test lowers it to run the blocked path on small shapes; null restores it.
 */
export function setAttentionScoreLimit(n: number | null): void {
  if (n !== null && !(Number.isInteger(n) && n >= 1 && n <= MAX_GPU_ELEMENTS))
    throw new RangeError(`setAttentionScoreLimit: ${n} is not an integer in [1, 2^24]`);
  scoreLimit = n ?? MAX_GPU_ELEMENTS;
}

/** Query-row blocks [r0, r0 + rows) of at most `per` rows covering `lq`. */
function rowBlocks(lq: number, per: number): { r0: number; rows: number }[] {
  const out: { r0: number; rows: number }[] = [];
  for (let r0 = 0; r0 < lq; r0 += per) out.push({ r0, rows: Math.min(per, lq - r0) });
  return out;
}

/** The attention kernels of the gpujs backend (host fallbacks where a kernel does not fit). */
export function attentionKernels(c: KernelContext): Pick<Backend<GpuStorage>, "attention" | "attentionBackward"> {
  const { wrap, H, Hn, host, gpuOk, run, mm, qkView, vView, attnScores, probs, gatherView } = c;

  /** Rows [r0, r0 + rows) of x laid out (outer, lq, inner), as a compact (outer, rows, inner) block. */
  const rowsOf = (x: S, outer: number, lq: number, inner: number, r0: number, rows: number): S =>
    gatherView("attention", x, [outer, rows, inner], [lq * inner, inner, 1], r0 * inner);

  /** Blocks (outer, rows_i, inner) joined along the rows, at most 8 blocks per kernel. */
  function joinRows(parts: { s: S; rows: number }[], outer: number, inner: number): S {
    while (parts.length > 1) {
      const next: { s: S; rows: number }[] = [];
      for (let g = 0; g < parts.length; g += 8) {
        const grp = parts.slice(g, g + 8);
        if (grp.length === 1) {
          next.push(grp[0]!);
          continue;
        }
        const rows = grp.reduce((a, b) => a + b.rows, 0);
        const body = ["const i = this.thread.x;", ...coordLines("i", [outer, rows, inner], "c")];
        let start = 0;
        grp.forEach((b, j) => {
          const read = `return p${j}[(c0 * ${f(b.rows)} + c1 - ${f(start)}) * ${f(inner)} + c2];`;
          start += b.rows;
          body.push(j === grp.length - 1 ? read : `if (c1 < ${f(start)}) { ${read} }`);
        });
        const args = grp.map((b, j): [string, S] => [`p${j}`, b.s]);
        next.push({ s: run("attention", body, outer * rows * inner, args), rows });
      }
      parts = next;
    }
    return parts[0]!.s;
  }

  /** A block's parameters and mask: `rows` query rows from r0 (the mask's rows copied out when they differ per row). */
  function block(p: AttentionParams, mask: S | null, r0: number, rows: number): { pb: AttentionParams; mb: S | null } {
    const pb = { ...p, lq: rows };
    if (!mask || p.maskStrideQ === 0) return { pb, mb: mask };
    const mb = gatherView(
      "attention",
      mask,
      [p.batch, rows, p.lk],
      [p.maskStrideB, p.maskStrideQ, 1],
      r0 * p.maskStrideQ,
    );
    return { pb: { ...pb, maskStrideB: rows * p.lk, maskStrideQ: p.lk }, mb };
  }

  /** Whole-rows forward: scores, row log-sum-exp, probabilities, output. */
  function forward(q: S, k: S, v: S, mask: S | null, p: AttentionParams, shift: number): { o: S; lse: S } {
    const { batch, lq, lk, dv } = p;
    const { S: sc, lse } = attnScores(q, k, mask, p, true, shift);
    const P = probs(sc, lse, p);
    const o = mm("attention", P, flatView(lq * lk, lk, 1), v, vView(p), batch, lq, lk, dv, p.heads ?? 1);
    return { o, lse };
  }

  function backward(
    q: S,
    k: S,
    v: S,
    mask: S | null,
    o: S,
    lse: S,
    gO: S,
    p: AttentionParams,
    shift: number,
  ): { dq: S; dk: S; dv: S } {
    const { batch, lq, lk, d, dv, scale } = p;
    const Hh = p.heads ?? 1;
    const { S: sc } = attnScores(q, k, mask, p, false, shift);
    const P = probs(sc, lse, p);
    const gv = vView(p); // gO and o share v's packed layout with lq rows
    const go: View = { ...gv, seq: lq * Hh * dv };
    // dP[item, i, j] = sum_c gO[i, c] v[j, c]
    const dP = mm("attentionBackward", gO, go, v, { ...gv, row: 1, col: Hh * dv }, batch, lq, dv, lk);
    // D[item, i] = sum_c gO o
    const Dl = [
      "const i0 = this.thread.x;",
      ...coordLines("i0", [batch, lq], "r"),
      ...itemOff(go, "r0", "bo"),
      `const base = bo + r1 * ${f(go.row)};`,
      "let s = 0.0;",
    ];
    Dl.push(`for (let c = 0; c < ${dv}; c++) { s += g[base + c] * o[base + c]; }`, "return s;");
    const D = run("attentionBackward", Dl, batch * lq, [
      ["g", gO],
      ["o", o],
    ]);
    const dS = run(
      "attentionBackward",
      ["const i = this.thread.x;", `const row = idiv(i, ${f(lk)});`, "return pp[i] * (dp[i] - dd[row]);"],
      batch * lq * lk,
      [
        ["pp", P],
        ["dp", dP],
        ["dd", D],
      ],
    );
    const qv = qkView(p, lq, d),
      kv = qkView(p, lk, d);
    const scaled = (acc: string): string[] => [`return ${acc} * sc;`];
    const sc1: [string, number][] = [["sc", scale]];
    const dq = mm("attentionBackward", dS, flatView(lq * lk, lk, 1), k, kv, batch, lq, lk, d, Hh, sc1, scaled);
    const dk = mm("attentionBackward", dS, flatView(lq * lk, 1, lk), q, qv, batch, lk, lq, d, Hh, sc1, scaled);
    const dV = mm("attentionBackward", P, flatView(lq * lk, 1, lk), gO, go, batch, lk, lq, dv, Hh);
    return { dq, dk, dv: dV };
  }

  /** Query rows per block, or 0 where the call goes to the host (not on the device, empty, or no block fits). */
  function rowsPerBlock(p: AttentionParams, ...xs: (S | null)[]): number {
    const { batch, lq, lk, d, dv } = p;
    if (!gpuOk(...xs) || batch * lq * lk === 0 || batch * lq * dv === 0) return 0;
    if (batch * lq * Math.max(d, dv) > MAX_GPU_ELEMENTS || batch * lk * Math.max(d, dv) > MAX_GPU_ELEMENTS) return 0;
    return Math.min(lq, Math.floor(scoreLimit / (batch * lk)));
  }
  const add = (a: S, b: S): S =>
    run("attentionBackward", ["return a[this.thread.x] + b[this.thread.x];"], a.size, [
      ["a", a],
      ["b", b],
    ]);

  return {
    attention: (q, k, v, mask, p) => {
      const { batch, lq, lk, d, dv } = p;
      const per = rowsPerBlock(p, q, k, v, mask);
      if (per === 0) {
        host("attention");
        const r = plainAttentionForward(H(q), H(k), H(v), Hn(mask), p);
        return { o: wrap(r.o), lse: wrap(r.lse), saved: null };
      }
      if (per === lq) return { ...forward(q, k, v, mask, p, lk - lq), saved: null };
      const Hh = p.heads ?? 1;
      const os: { s: S; rows: number }[] = [],
        ls: { s: S; rows: number }[] = [];
      for (const { r0, rows } of rowBlocks(lq, per)) {
        const { pb, mb } = block(p, mask, r0, rows);
        const r = forward(rowsOf(q, batch / Hh, lq, Hh * d, r0, rows), k, v, mb, pb, r0 + lk - lq);
        os.push({ s: r.o, rows });
        ls.push({ s: r.lse, rows });
      }
      return { o: joinRows(os, batch / Hh, Hh * dv), lse: joinRows(ls, batch, 1), saved: null };
    },
    attentionBackward: (q, k, v, mask, o, lse, gO, p) => {
      const { batch, lq, lk, d, dv } = p;
      const per = rowsPerBlock(p, q, k, v, mask, o, lse, gO);
      if (per === 0) {
        host("attentionBackward");
        const r = plainAttentionBackward(H(q), H(k), H(v), Hn(mask), H(o), H(lse), H(gO), p);
        return { dq: wrap(r.dq), dk: wrap(r.dk), dv: wrap(r.dv) };
      }
      if (per === lq) return backward(q, k, v, mask, o, lse, gO, p, lk - lq);
      const Hh = p.heads ?? 1,
        B = batch / Hh;
      const dqs: { s: S; rows: number }[] = [];
      let dk: S | null = null,
        dV: S | null = null;
      for (const { r0, rows } of rowBlocks(lq, per)) {
        const { pb, mb } = block(p, mask, r0, rows);
        const r = backward(
          rowsOf(q, B, lq, Hh * d, r0, rows),
          k,
          v,
          mb,
          rowsOf(o, B, lq, Hh * dv, r0, rows),
          rowsOf(lse, batch, lq, 1, r0, rows),
          rowsOf(gO, B, lq, Hh * dv, r0, rows),
          pb,
          r0 + lk - lq,
        );
        dqs.push({ s: r.dq, rows });
        dk = dk ? add(dk, r.dk) : r.dk;
        dV = dV ? add(dV, r.dv) : r.dv;
      }
      return { dq: joinRows(dqs, B, Hh * d), dk: dk!, dv: dV! };
    },
  };
}
