// gpujs attention kernels: fused scaled-dot-product attention forward and backward
import type { Backend } from "../backend.ts";
import type { GpuStorage } from "./device.ts";
import type { KernelContext } from "./kernel_context.ts";
import { plainAttentionBackward, plainAttentionForward } from "../cpu/attention.ts";
import { coordLines, f, MAX_GPU_ELEMENTS } from "./device.ts";
import { flatView, itemOff } from "./programs.ts";
import type { View } from "./programs.ts";

/** The attention kernels of the gpujs backend (host fallbacks where a kernel does not fit). */
export function attentionKernels(c: KernelContext): Pick<Backend<GpuStorage>, "attention" | "attentionBackward"> {
  const { wrap, H, Hn, host, gpuOk, run, mm, qkView, vView, attnScores, probs } = c;
  return {
    attention: (q, k, v, mask, p) => {
      const { batch, lq, lk, dv } = p;
      if (
        !gpuOk(q, k, v, mask) ||
        batch * lq * lk === 0 ||
        batch * lq * lk > MAX_GPU_ELEMENTS ||
        batch * lq * dv === 0
      ) {
        host("attention");
        const r = plainAttentionForward(H(q), H(k), H(v), Hn(mask), p);
        return { o: wrap(r.o), lse: wrap(r.lse), saved: null };
      }
      const { S: sc, lse } = attnScores(q, k, mask, p);
      const P = probs(sc, lse, p);
      const o = mm("attention", P, flatView(lq * lk, lk, 1), v, vView(p), batch, lq, lk, dv, p.heads ?? 1);
      return { o, lse, saved: null };
    },
    attentionBackward: (q, k, v, mask, o, lse, gO, p) => {
      const { batch, lq, lk, d, dv, scale } = p;
      const Hh = p.heads ?? 1;
      if (
        !gpuOk(q, k, v, mask, o, lse, gO) ||
        batch * lq * lk === 0 ||
        batch * lq * lk > MAX_GPU_ELEMENTS ||
        batch * lq * dv === 0
      ) {
        host("attentionBackward");
        const r = plainAttentionBackward(H(q), H(k), H(v), Hn(mask), H(o), H(lse), H(gO), p);
        return { dq: wrap(r.dq), dk: wrap(r.dk), dv: wrap(r.dv) };
      }
      const { S: sc } = attnScores(q, k, mask, p, false);
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
      const dq = mm(
        "attentionBackward",
        dS,
        flatView(lq * lk, lk, 1),
        k,
        kv,
        batch,
        lq,
        lk,
        d,
        Hh,
        [["sc", scale]],
        scaled,
      );
      const dk = mm(
        "attentionBackward",
        dS,
        flatView(lq * lk, 1, lk),
        q,
        qv,
        batch,
        lk,
        lq,
        d,
        Hh,
        [["sc", scale]],
        scaled,
      );
      const dV = mm("attentionBackward", P, flatView(lq * lk, 1, lk), gO, go, batch, lk, lq, dv, Hh);
      return { dq, dk, dv: dV };
    },
  };
}
