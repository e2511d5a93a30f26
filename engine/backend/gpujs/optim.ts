// gpujs optimizer kernel: the Adam / AdamW update as three elementwise kernels
import type { TypedArray } from "../../dtype.ts";
import type { AdamHyper, Backend } from "../backend.ts";
import { adamUpdate } from "../cpu/optim.ts";
import type { GpuStorage } from "./device.ts";
import type { KernelContext } from "./kernel_context.ts";

type S = GpuStorage;

/** The optimizer kernel of the gpujs backend (a host fallback where a kernel does not fit). */
export function adamKernels(c: KernelContext): Pick<Backend<GpuStorage>, "adamUpdate"> {
  const { wrap, H, host, gpuOk, run } = c;
  return {
    adamUpdate: (pp, g, m, v, size, h: AdamHyper) => {
      if (!gpuOk(pp, g, m, v) || size === 0) {
        host("adamUpdate");
        // the host kernel writes in place: give it copies (a texture may hold the same values)
        const cp = (s: S): TypedArray => H(s).slice() as TypedArray;
        const r = adamUpdate(cp(pp), cp(g), cp(m), cp(v), size, h);
        return { p: wrap(r.p), m: wrap(r.m), v: wrap(r.v) };
      }
      const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = h;
      const stepSize = lr / (1 - Math.pow(b1, h.t)),
        sq = Math.sqrt(1 - Math.pow(b2, h.t));
      const l2 = !decoupled && wd !== 0 ? wd : 0;
      const decay = decoupled && wd !== 0 ? 1 - lr * wd : 1;
      const gi = "(g[i] + l2 * p[i])";
      const args: [string, S | number][] = [
        ["p", pp],
        ["g", g],
        ["m", m],
        ["v", v],
        ["l2", l2],
        ["b1", b1],
        ["c1", 1 - b1],
        ["b2", b2],
        ["c2", 1 - b2],
      ];
      const m2 = run("adamUpdate", ["const i = this.thread.x;", `return b1 * m[i] + c1 * ${gi};`], size, args);
      const v2 = run(
        "adamUpdate",
        ["const i = this.thread.x;", `const gg = ${gi};`, "return b2 * v[i] + c2 * gg * gg;"],
        size,
        args,
      );
      const p2 = run(
        "adamUpdate",
        ["const i = this.thread.x;", "return p[i] * dec - (st * mm[i]) / (Math.sqrt(vv[i]) / sq + eps);"],
        size,
        [
          ["p", pp],
          ["mm", m2],
          ["vv", v2],
          ["dec", decay],
          ["st", stepSize],
          ["sq", sq],
          ["eps", eps],
        ],
      );
      // in place, as on cpu: the parameter and moments keep their storage objects and the old
      // textures go at once (a training loop would otherwise hold three per parameter per step
      // until the collector ran)
      pp.takeFrom(p2);
      m.takeFrom(m2);
      v.takeFrom(v2);
      return { p: pp, m, v };
    },
  };
}
