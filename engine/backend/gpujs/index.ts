// The gpujs backend: every kernel of the contract on gpu.js (WebGL through headless-gl in Node,
// WebGL2/WebGL in browsers), float32 storage resident in GPU textures between kernels. Kernels not
// yet written for the GPU run as clearly marked host fallbacks (download, the plain cpu kernel,
// upload on next GPU use); float64 storage has no GPU path and always takes the host kernels.
// See GPU_NATIVE / HOST_FALLBACK below and docs/architecture.md.
import type { FloatDType } from "../../dtype.ts";
import { isHalf } from "../../dtype.ts";
import { roundToHalf } from "../../half.ts";
import type { Backend, MatmulParams, ScratchScope, TidyScope } from "../backend.ts";
import { binary, geglu, gegluBackward, unary, where } from "../cpu/elementwise.ts";
import { reduce, softmax } from "../cpu/reduce.ts";
import { gemm, matmul, transpose2d } from "../cpu/matmul.ts";
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, geometry, poolSum, upsampleNearest } from "../cpu/conv.ts";
import { coordLines, Device, f, GpuStorage, MAX_GPU_ELEMENTS, offsetExpr, stridesOf } from "./device.ts";
import type { DeviceStats } from "./device.ts";
import { GpujsUnavailableError, openGpujs } from "./env.ts";
import type { GpujsProbe } from "./env.ts";
import { attentionKernels } from "./attention.ts";
import { kernelContext } from "./kernel_context.ts";
import { movementKernels } from "./movement.ts";
import { normKernels } from "./norms.ts";
import { adamKernels } from "./optim.ts";
import { BIN, broadcastReads, flatView, UN } from "./programs.ts";

export { GpuStorage, MAX_GPU_ELEMENTS } from "./device.ts";
export { GpujsUnavailableError, probeGpujs } from "./env.ts";
export type { GpujsProbe } from "./env.ts";

/** Kernels with a GPU implementation (float32 storage within {@link MAX_GPU_ELEMENTS}). */
export const GPU_NATIVE = [
  "zeros",
  "fill",
  "cast",
  "unary",
  "binary",
  "where",
  "geglu",
  "gegluBackward",
  "reduce",
  "softmax",
  "permute",
  "expand",
  "slice",
  "pad",
  "concat",
  "gather",
  "indexAdd",
  "matmul",
  "conv2d",
  "conv2dBackwardInput",
  "conv2dBackwardWeight",
  "upsampleNearest",
  "poolSum",
  "attention",
  "attentionBackward",
  "groupNorm",
  "groupNormBackward",
  "layerNorm",
  "layerNormBackward",
  "adamUpdate",
] as const;
/** Kernels that always run on the host (the plain cpu kernel between a download and a lazy upload). */
export const HOST_FALLBACK: readonly string[] = [];
/**
 * When a GPU kernel hands over to the host kernel anyway: float64 storage (no double in WebGL), more
 * than {@link MAX_GPU_ELEMENTS} elements in one tensor (except the elementwise kernels, which run over
 * chunks of that many elements, and attention, which takes its query rows in blocks whose scores fit),
 * zero-size tensors, concat of more than 8 inputs, indexAdd with more than 4096 indices. Each such call is counted under `host` in {@link gpujsReport}.
 */
export const HOST_WHEN =
  "float64 storage; a tensor over 2^24 elements (except fill, cast, unary, and binary/where whose operands all have the output's size or one element: those run chunk by chunk); attention whose scores for one query row over all items exceed 2^24 (more scores than that run in blocks of query rows); zero-size tensors; concat of more than 8 inputs; indexAdd of more than 4096 indices";

const ctorOf = (dtype: FloatDType): Float32ArrayConstructor | Float64ArrayConstructor =>
  dtype === "float64" ? Float64Array : Float32Array;

/** Everything the gpujs backend can say about itself: what it runs on, which kernels ran where. */
export interface GpujsReport {
  probe: GpujsProbe;
  gpuNative: readonly string[];
  hostFallback: readonly string[];
  hostWhen: string;
  /** kernel outputs four values per texel (CDIFF_GPUJS_PACK=1), once the backend has started */
  packed: boolean | null;
  stats: DeviceStats | null;
}

let device: Device | null = null;

/** The renderer, the kernel split and the call counts (GPU vs host) since start. */
export function gpujsReport(): GpujsReport {
  return {
    probe: openGpujs().probe,
    gpuNative: GPU_NATIVE,
    hostFallback: HOST_FALLBACK,
    hostWhen: HOST_WHEN,
    packed: device ? device.packed : null,
    stats: device ? device.stats : null,
  };
}

type S = GpuStorage;

/** The gpujs backend; throws {@link GpujsUnavailableError} (naming the cause) where gpu.js would fall back to cpu or webasm. */
export function createGpujsBackend(): Backend<GpuStorage> {
  const { probe, gpu } = openGpujs();
  if (!probe.ok || !gpu) throw new GpujsUnavailableError(probe.reason ?? "unknown");
  const dev = (device ??= new Device(gpu));

  const c = kernelContext(dev);
  const { hostStorage, wrap, H, host, gpuOk, run, runChunked, chunkable, sizeOf } = c;
  const { mm, softmaxGpu, rowSum, conv2d4, conv2dBackwardInput4, conv2dBackwardWeight4, mm4 } = c;

  const B: Backend<GpuStorage> = {
    name: "gpujs",
    zeros: (dtype, size) => B.fill(dtype, size, 0),
    fromHost: (data) => dev.scratch.track(hostStorage(data)),
    toHost: (s) => H(s),
    fill: (dtype, size, value) => {
      if (dtype === "float32" && size > 0 && size <= MAX_GPU_ELEMENTS)
        return run("fill", ["return v;"], size, [["v", value]]);
      if (dtype === "float32" && size > MAX_GPU_ELEMENTS)
        return runChunked("fill", ["return v;"], size, [["v", value]]);
      host("fill");
      return wrap(new (ctorOf(dtype))(size).fill(value));
    },
    cast: (x, from, to) => {
      // half dtypes live here as float32 values rounded to them: the same numbers as on cpu, not less memory
      if (isHalf(to) && from !== to) return (host("cast"), wrap(roundToHalf(H(x), to)));
      if (isHalf(to)) to = "float32";
      if (to === "float32" && x.onDevice) return run("cast", ["return x[this.thread.x];"], x.size, [["x", x]]);
      if (to === "float32" && x.chunked) return runChunked("cast", ["return x[this.thread.x];"], x.size, [["x", x]]);
      host("cast");
      const out = new (ctorOf(to))(x.size);
      out.set(H(x));
      return wrap(out);
    },
    // the backward pass deletes the textures of consumed intermediate gradients as it goes (see Scratch)
    beginScratch: (): ScratchScope<S> => dev.scratch.begin(),
    beginTidy: (): TidyScope<S> => {
      const t = dev.scratch.beginTidy();
      return {
        end: (keep) => {
          t.end(keep);
          dev.checkGL("by the end of a tidy scope");
        },
        cancel: () => t.cancel(),
      };
    },

    unary: (op, x) => {
      const body = ["const v = x[this.thread.x];", `return ${UN[op]("v")};`];
      if (x.chunked) return runChunked("unary", body, x.size, [["x", x]]);
      if (!gpuOk(x)) return (host("unary"), wrap(unary(op, H(x))));
      return run("unary", body, x.size, [["x", x]]);
    },
    binary: (op, a, as, b, bs, os) => {
      const n = sizeOf(os);
      const big = chunkable(n, a, b);
      if (!big && (n === 0 || n > MAX_GPU_ELEMENTS || !gpuOk(a, b)))
        return (host("binary"), wrap(binary(op, H(a), as, H(b), bs, os)));
      const { lines, idx } = broadcastReads([as, bs], os);
      return (big ? runChunked : run)(
        "binary",
        [
          "const i = this.thread.x;",
          ...lines,
          `const x = a[${idx[0]}];`,
          `const y = b[${idx[1]}];`,
          `return ${BIN[op]("x", "y")};`,
        ],
        n,
        [
          ["a", a],
          ["b", b],
        ],
      );
    },
    where: (c, cs, a, as, b, bs, os) => {
      const n = sizeOf(os);
      const big = chunkable(n, c, a, b);
      if (!big && (n === 0 || n > MAX_GPU_ELEMENTS || !gpuOk(c, a, b)))
        return (host("where"), wrap(where(H(c), cs, H(a), as, H(b), bs, os)));
      const { lines, idx } = broadcastReads([cs, as, bs], os);
      return (big ? runChunked : run)(
        "where",
        ["const i = this.thread.x;", ...lines, `return c[${idx[0]}] != 0.0 ? a[${idx[1]}] : b[${idx[2]}];`],
        n,
        [
          ["c", c],
          ["a", a],
          ["b", b],
        ],
      );
    },
    geglu: (h, rows, d) => {
      if (!gpuOk(h) || rows * d === 0) return (host("geglu"), wrap(geglu(H(h), rows, d)));
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [rows, d], "c"),
        `const hi = c0 * ${f(2 * d)} + c1;`,
        `const x = h[hi + ${f(d)}];`,
        `return h[hi] * (${UN.gelu("x")});`,
      ];
      return run("geglu", body, rows * d, [["h", h]]);
    },
    gegluBackward: (h, g, rows, d) => {
      if (!gpuOk(h, g) || rows * d === 0) return (host("gegluBackward"), wrap(gegluBackward(H(h), H(g), rows, d)));
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [rows, 2, d], "c"),
        `const hi = c0 * ${f(2 * d)} + c2;`,
        `const x = h[hi + ${f(d)}];`,
        `const gv = g[c0 * ${f(d)} + c2];`,
      ];
      body.push(
        "const Phi = 0.5 * (1.0 + erf32(x * 0.7071067811865476));",
        "if (c1 == 0.0) { return gv * x * Phi; }",
        "return gv * h[hi] * (Phi + x * exp32(-0.5 * x * x) * 0.3989422804014327);",
      );
      return run("gegluBackward", body, rows * 2 * d, [
        ["h", h],
        ["g", g],
      ]);
    },

    reduce: (op, x, shape, axes) => {
      const outShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const n = sizeOf(outShape);
      if (!gpuOk(x) || n === 0 || axes.length === 0) return (host("reduce"), wrap(reduce(op, H(x), shape, axes)));
      // kept axes index the rows, reduced axes are read in row-major order: one run of adjacent axes is one stride
      const st = stridesOf(shape);
      const kept = shape.map((_, d) => d).filter((d) => !axes.includes(d));
      const keptShape = kept.map((d) => shape[d]!);
      const red = axes.map((d) => shape[d]!);
      const len = sizeOf(red);
      const adjacent = axes.every((a, i) => i === 0 || a === axes[i - 1]! + 1);
      const base = (c: string): string =>
        kept.length
          ? offsetExpr(
              c,
              kept.map((d) => st[d]!),
            )
          : "0.0";
      if (adjacent)
        return rowSum("reduce", x, n, len, keptShape.length ? keptShape : [1], base, st[axes[axes.length - 1]!]!, op);
      // several runs: move the reduced axes last, then one contiguous run
      const perm = [...kept, ...axes];
      const moved = B.permute(x, shape, perm);
      return rowSum(
        "reduce",
        moved,
        n,
        len,
        keptShape.length ? keptShape : [1],
        (c) => (kept.length ? `(${offsetExpr(c, stridesOf(keptShape))}) * ${f(len)}` : "0.0"),
        1,
        op,
      );
    },
    softmax: (x, shape, axis, log) => {
      if (!gpuOk(x)) return (host("softmax"), wrap(softmax(H(x), shape, axis, log)));
      return softmaxGpu(x, shape, axis, log);
    },

    ...movementKernels(c),

    matmul: (a, b, p: MatmulParams) => {
      const { batch, m, k, n } = p;
      if (!gpuOk(a, b) || batch * m * n === 0 || batch * m * n > MAX_GPU_ELEMENTS)
        return (host("matmul"), wrap(matmul(H(a), H(b), p)));
      if (k === 0) return B.fill("float32", batch * m * n, 0);
      const av = flatView(p.strideA, p.transA ? 1 : k, p.transA ? m : 1);
      const bv = flatView(p.strideB, p.transB ? 1 : n, p.transB ? k : 1);
      return mm4(a, av, b, bv, batch, m, k, n) ?? mm("matmul", a, av, b, bv, batch, m, k, n);
    },
    conv2d: (x, xs, w, ws, p) => {
      const q = geometry(xs, ws, p);
      const n = q.n * q.o * q.ho * q.wo;
      if (!gpuOk(x, w) || n === 0 || n > MAX_GPU_ELEMENTS)
        return (host("conv2d"), wrap(conv2d(H(x), xs, H(w), ws, p, gemm)));
      const four = conv2d4(x, w, q);
      if (four) return four;
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [q.n, q.o, q.ho, q.wo], "c"),
        `const g = idiv(c1, ${f(q.og)});`,
      ];
      body.push(
        `const xb = (c0 * ${f(q.c)} + g * ${f(q.cg)}) * ${f(q.h * q.w)};`,
        `const wb = c1 * ${f(q.cg * q.kh * q.kw)};`,
      );
      body.push(`const y0 = c2 * ${f(q.sh)} - ${f(q.ph)};`, `const x0 = c3 * ${f(q.sw)} - ${f(q.pw)};`, "let s = 0.0;");
      body.push(
        `for (let ci = 0; ci < ${q.cg}; ci++) { for (let ky = 0; ky < ${q.kh}; ky++) { const iy = y0 + ky; if (iy >= 0.0 && iy < ${f(q.h)}) {`,
      );
      body.push(`for (let kx = 0; kx < ${q.kw}; kx++) { const ix = x0 + kx; if (ix >= 0.0 && ix < ${f(q.w)}) {`);
      body.push(
        `s += xx[xb + ci * ${f(q.h * q.w)} + iy * ${f(q.w)} + ix] * ww[wb + (ci * ${f(q.kh)} + ky) * ${f(q.kw)} + kx]; } } } } }`,
        "return s;",
      );
      return run("conv2d", body, n, [
        ["xx", x],
        ["ww", w],
      ]);
    },
    conv2dBackwardInput: (gy, gys, w, ws, xs, p) => {
      const q = geometry(xs, ws, p);
      const n = sizeOf(xs);
      if (!gpuOk(gy, w) || n === 0 || n > MAX_GPU_ELEMENTS)
        return (host("conv2dBackwardInput"), wrap(conv2dBackwardInput(H(gy), gys, H(w), ws, xs, p, gemm, transpose2d)));
      const four = conv2dBackwardInput4(gy, w, q);
      if (four) return four;
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [q.n, q.c, q.h, q.w], "c"),
        `const g = idiv(c1, ${f(q.cg)});`,
        `const ci = c1 - g * ${f(q.cg)};`,
        "let s = 0.0;",
      ];
      body.push(
        `for (let oc = 0; oc < ${q.og}; oc++) { const co = g * ${f(q.og)} + oc; for (let ky = 0; ky < ${q.kh}; ky++) {`,
      );
      body.push(
        `const ty = c2 + ${f(q.ph)} - ky; const oy = idiv(ty + ${f(q.sh * (q.kh + q.h))}, ${f(q.sh)}) - ${f(q.kh + q.h)};`,
      );
      body.push(`if (ty >= 0.0 && oy * ${f(q.sh)} == ty && oy < ${f(q.ho)}) { for (let kx = 0; kx < ${q.kw}; kx++) {`);
      body.push(
        `const tx = c3 + ${f(q.pw)} - kx; const ox = idiv(tx + ${f(q.sw * (q.kw + q.w))}, ${f(q.sw)}) - ${f(q.kw + q.w)};`,
      );
      body.push(`if (tx >= 0.0 && ox * ${f(q.sw)} == tx && ox < ${f(q.wo)}) {`);
      body.push(
        `s += gg[((c0 * ${f(q.o)} + co) * ${f(q.ho)} + oy) * ${f(q.wo)} + ox] * ww[((co * ${f(q.cg)} + ci) * ${f(q.kh)} + ky) * ${f(q.kw)} + kx]; } } } } }`,
        "return s;",
      );
      return run("conv2dBackwardInput", body, n, [
        ["gg", gy],
        ["ww", w],
      ]);
    },
    conv2dBackwardWeight: (x, xs, gy, gys, ws, p) => {
      const q = geometry(xs, ws, p);
      const n = sizeOf(ws);
      if (!gpuOk(x, gy) || n === 0 || n > MAX_GPU_ELEMENTS)
        return (
          host("conv2dBackwardWeight"),
          wrap(conv2dBackwardWeight(H(x), xs, H(gy), gys, ws, p, gemm, transpose2d))
        );
      const four = conv2dBackwardWeight4(x, gy, q);
      if (four) return four;
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [q.o, q.cg, q.kh, q.kw], "c"),
        `const g = idiv(c0, ${f(q.og)});`,
        "let s = 0.0;",
      ];
      body.push(
        `for (let b = 0; b < ${q.n}; b++) { const xb = (b * ${f(q.c)} + g * ${f(q.cg)} + c1) * ${f(q.h * q.w)}; const gb = (b * ${f(q.o)} + c0) * ${f(q.ho * q.wo)};`,
      );
      body.push(
        `for (let oy = 0; oy < ${q.ho}; oy++) { const iy = oy * ${f(q.sh)} - ${f(q.ph)} + c2; if (iy >= 0.0 && iy < ${f(q.h)}) {`,
      );
      body.push(
        `for (let ox = 0; ox < ${q.wo}; ox++) { const ix = ox * ${f(q.sw)} - ${f(q.pw)} + c3; if (ix >= 0.0 && ix < ${f(q.w)}) {`,
      );
      body.push(`s += xx[xb + iy * ${f(q.w)} + ix] * gg[gb + oy * ${f(q.wo)} + ox]; } } } } }`, "return s;");
      return run("conv2dBackwardWeight", body, n, [
        ["xx", x],
        ["gg", gy],
      ]);
    },
    upsampleNearest: (x, shape, s) => {
      const [n, c, h, w] = shape as [number, number, number, number];
      const N = n * c * h * s * w * s;
      if (!gpuOk(x) || N === 0 || N > MAX_GPU_ELEMENTS)
        return (host("upsampleNearest"), wrap(upsampleNearest(H(x), shape, s)));
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [n * c, h * s, w * s], "c"),
        `return x[c0 * ${f(h * w)} + idiv(c1, ${f(s)}) * ${f(w)} + idiv(c2, ${f(s)})];`,
      ];
      return run("upsampleNearest", body, N, [["x", x]]);
    },
    poolSum: (x, shape, k, mul) => {
      const [n, c, h, w] = shape as [number, number, number, number];
      const Hh = Math.floor(h / k),
        W = Math.floor(w / k);
      const N = n * c * Hh * W;
      if (!gpuOk(x) || N === 0) return (host("poolSum"), wrap(poolSum(H(x), shape, k, mul)));
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [n * c, Hh, W], "c"),
        `const base = c0 * ${f(h * w)} + c1 * ${f(k * w)} + c2 * ${f(k)};`,
        "let s = 0.0;",
      ];
      body.push(
        `for (let dy = 0; dy < ${k}; dy++) { for (let dx = 0; dx < ${k}; dx++) { s += x[base + dy * ${f(w)} + dx]; } }`,
        "return s * mul;",
      );
      return run("poolSum", body, N, [
        ["x", x],
        ["mul", mul],
      ]);
    },

    ...attentionKernels(c),
    ...normKernels(c),
    ...adamKernels(c),
  };

  return B;
}
