// The gpujs backend: every kernel of the contract on gpu.js (WebGL through headless-gl in Node,
// WebGL2/WebGL in browsers), float32 storage resident in GPU textures between kernels. Kernels not
// yet written for the GPU run as clearly marked host fallbacks (download, the plain cpu kernel,
// upload on next GPU use); float64 storage has no GPU path and always takes the host kernels.
// See GPU_NATIVE / HOST_FALLBACK below and docs/architecture.md.
import type { FloatDType, TypedArray } from "../../dtype.ts";
import { isHalf } from "../../dtype.ts";
import { roundToHalf } from "../../half.ts";
import type { Shape } from "../../shape.ts";
import type { AdamHyper, Backend, MatmulParams, ScratchScope } from "../backend.ts";
import { binary, broadcastStrides, geglu, gegluBackward, unary, where } from "../cpu/elementwise.ts";
import { concat, expand, gather, indexAdd, pad, permute, slice } from "../cpu/movement.ts";
import { reduce, softmax } from "../cpu/reduce.ts";
import { gemm, matmul, transpose2d } from "../cpu/matmul.ts";
import { conv2d, conv2dBackwardInput, conv2dBackwardWeight, geometry, poolSum, upsampleNearest } from "../cpu/conv.ts";
import { plainAttentionBackward, plainAttentionForward } from "../cpu/attention.ts";
import { groupNormBackward, groupNormForward, layerNormBackward, layerNormForward } from "../cpu/norm.ts";
import { adamUpdate } from "../cpu/optim.ts";
import { coordLines, Device, f, GpuStorage, MAX_GPU_ELEMENTS, offsetExpr, stridesOf } from "./device.ts";
import type { DeviceStats } from "./device.ts";
import { GpujsUnavailableError, openGpujs } from "./env.ts";
import type { GpujsProbe } from "./env.ts";
import { BIN, broadcastReads, flatView, itemOff, programs, UN } from "./programs.ts";
import type { View } from "./programs.ts";

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
 * chunks of that many elements), zero-size tensors, concat of more than 8 inputs,
 * indexAdd with more than 4096 indices. Each such call is counted under `host` in {@link gpujsReport}.
 */
export const HOST_WHEN =
  "float64 storage; a tensor over 2^24 elements (except fill, cast, unary, and binary/where whose operands all have the output's size or one element: those run chunk by chunk); zero-size tensors; concat of more than 8 inputs; indexAdd of more than 4096 indices";

const ctorOf = (dtype: FloatDType): Float32ArrayConstructor | Float64ArrayConstructor =>
  dtype === "float64" ? Float64Array : Float32Array;

/** Everything the gpujs backend can say about itself: what it runs on, which kernels ran where. */
export interface GpujsReport {
  probe: GpujsProbe;
  gpuNative: readonly string[];
  hostFallback: readonly string[];
  hostWhen: string;
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
    stats: device ? device.stats : null,
  };
}

type S = GpuStorage;

/** The gpujs backend; throws {@link GpujsUnavailableError} (naming the cause) where gpu.js would fall back to cpu or webasm. */
export function createGpujsBackend(): Backend<GpuStorage> {
  const { probe, gpu } = openGpujs();
  if (!probe.ok || !gpu) throw new GpujsUnavailableError(probe.reason ?? "unknown");
  const dev = (device ??= new Device(gpu));

  // ---- host side
  const hostStorage = (a: TypedArray): S =>
    new GpuStorage(a instanceof Float64Array ? "float64" : "float32", a.length, null, a);
  /** a kernel's result made on the host (owned by the open scratch scope, like the GPU kernels' results) */
  const wrap = (a: TypedArray): S => dev.scratch.adopt(hostStorage(a));
  const H = (s: S): TypedArray => dev.hostOf(s);
  const Hn = (s: S | null): TypedArray | null => (s ? dev.hostOf(s) : null);
  const host = (name: string): void => dev.count("host", name);
  /** all of `xs` can go to a GPU kernel */
  const gpuOk = (...xs: (S | null)[]): boolean => xs.every((x) => !x || x.onDevice);

  const run = (name: string, body: string[], n: number, args: [string, S | number][]): S =>
    dev.run(
      name,
      `function(${args.map((a) => a[0]).join(", ")}) {\n${body.join("\n")}\n}`,
      n,
      args.map((a) => a[1]),
    );

  /** `run` over more than MAX_GPU_ELEMENTS outputs, chunk by chunk (operands of n or 1 elements) */
  const runChunked = (name: string, body: string[], n: number, args: [string, S | number][]): S =>
    dev.runChunked(
      name,
      `function(${args.map((a) => a[0]).join(", ")}) {\n${body.join("\n")}\n}`,
      n,
      args.map((a) => a[1]),
    );
  /** the output is over one texture's reach and every operand is float32 of n or 1 elements: the chunked kernels take it */
  const chunkable = (n: number, ...xs: S[]): boolean =>
    n > MAX_GPU_ELEMENTS && xs.every((x) => x.dtype === "float32" && (x.size === n || x.size === 1));

  const { mm, rowLse, softmaxGpu, rowSum, gatherView, qkView, vView, attnScores, probs, normStats } = programs(run);

  const sizeOf = (s: Shape): number => s.reduce((a, b) => a * b, 1);

  const B: Backend<GpuStorage> = {
    name: "gpujs",
    zeros: (dtype, size) => B.fill(dtype, size, 0),
    fromHost: (data) => hostStorage(data),
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

    permute: (x, shape, perm) => {
      if (!gpuOk(x)) return (host("permute"), wrap(permute(H(x), shape, perm)));
      const st = stridesOf(shape);
      return gatherView(
        "permute",
        x,
        perm.map((p) => shape[p]!),
        perm.map((p) => st[p]!),
        0,
      );
    },
    expand: (x, shape, outShape) => {
      const n = sizeOf(outShape);
      if (!gpuOk(x) || n === 0 || n > MAX_GPU_ELEMENTS) return (host("expand"), wrap(expand(H(x), shape, outShape)));
      return gatherView("expand", x, [...outShape], broadcastStrides(shape, outShape), 0);
    },
    slice: (x, shape, begin, end, step) => {
      const outShape = begin.map((b, d) => Math.max(0, Math.ceil((end[d]! - b) / step[d]!)));
      if (!gpuOk(x) || sizeOf(outShape) === 0) return (host("slice"), wrap(slice(H(x), shape, begin, end, step)));
      const st = stridesOf(shape);
      const base = begin.reduce((s, b, d) => s + b * st[d]!, 0);
      return gatherView(
        "slice",
        x,
        outShape,
        st.map((s, d) => s * step[d]!),
        base,
      );
    },
    pad: (x, shape, pads, value) => {
      const outShape = shape.map((d, i) => d + pads[i]![0] + pads[i]![1]);
      const n = sizeOf(outShape);
      if (!gpuOk(x) || n > MAX_GPU_ELEMENTS) return (host("pad"), wrap(pad(H(x), shape, pads, value)));
      const st = stridesOf(shape);
      const base = -pads.reduce((s, p, d) => s + p[0] * st[d]!, 0);
      return gatherView(
        "pad",
        x,
        outShape,
        st,
        base,
        { lo: pads.map((p) => p[0]), hi: shape.map((d, i) => d + pads[i]![0]) },
        value,
      );
    },
    concat: (xs, shapes, axis) => {
      const outShape = [...shapes[0]!];
      outShape[axis] = shapes.reduce((s, sh) => s + sh[axis]!, 0);
      const n = sizeOf(outShape);
      const parts = xs.map((x, i) => ({ x, shape: shapes[i]! })).filter((p) => sizeOf(p.shape) > 0);
      if (parts.length === 0 || n > MAX_GPU_ELEMENTS || parts.length > 8 || !gpuOk(...parts.map((p) => p.x)))
        return (host("concat"), wrap(concat(xs.map(H), shapes, axis)));
      let outer = 1,
        inner = 1;
      for (let d = 0; d < axis; d++) outer *= outShape[d]!;
      for (let d = axis + 1; d < outShape.length; d++) inner *= outShape[d]!;
      const body = ["const i = this.thread.x;", ...coordLines("i", [outer, outShape[axis]!, inner], "c")];
      let pos = 0;
      parts.forEach((p, k) => {
        const len = p.shape[axis]!;
        body.push(`if (c1 < ${f(pos + len)}) { return x${k}[(c0 * ${f(len)} + c1 - ${f(pos)}) * ${f(inner)} + c2]; }`);
        pos += len;
      });
      body.push("return 0.0;");
      return run(
        "concat",
        body,
        n,
        parts.map((p, k) => [`x${k}`, p.x] as [string, S]),
      );
    },
    gather: (x, shape, axis, index) => {
      let outer = 1,
        inner = 1;
      for (let d = 0; d < axis; d++) outer *= shape[d]!;
      for (let d = axis + 1; d < shape.length; d++) inner *= shape[d]!;
      const n = outer * index.length * inner;
      if (!gpuOk(x) || n === 0 || n > MAX_GPU_ELEMENTS) return (host("gather"), wrap(gather(H(x), shape, axis, index)));
      const idx = wrap(Float32Array.from(index));
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [outer, index.length, inner], "c"),
        `return x[(c0 * ${f(shape[axis]!)} + ix[c1]) * ${f(inner)} + c2];`,
      ];
      return run("gather", body, n, [
        ["x", x],
        ["ix", idx],
      ]);
    },
    indexAdd: (shape, axis, index, src) => {
      let outer = 1,
        inner = 1;
      for (let d = 0; d < axis; d++) outer *= shape[d]!;
      for (let d = axis + 1; d < shape.length; d++) inner *= shape[d]!;
      const n = sizeOf(shape),
        m = index.length;
      if (!gpuOk(src) || n === 0 || n > MAX_GPU_ELEMENTS || m === 0 || m > 4096)
        return (host("indexAdd"), wrap(indexAdd(shape, axis, index, H(src))));
      const idx = wrap(Float32Array.from(index));
      const body = ["const i = this.thread.x;", ...coordLines("i", [outer, shape[axis]!, inner], "c"), "let s = 0.0;"];
      body.push(
        `for (let j = 0; j < ${m}; j++) { if (ix[j] == c1) { s += x[(c0 * ${f(m)} + j) * ${f(inner)} + c2]; } }`,
        "return s;",
      );
      return run("indexAdd", body, n, [
        ["x", src],
        ["ix", idx],
      ]);
    },

    matmul: (a, b, p: MatmulParams) => {
      const { batch, m, k, n } = p;
      if (!gpuOk(a, b) || batch * m * n === 0 || batch * m * n > MAX_GPU_ELEMENTS)
        return (host("matmul"), wrap(matmul(H(a), H(b), p)));
      if (k === 0) return B.fill("float32", batch * m * n, 0);
      const av = flatView(p.strideA, p.transA ? 1 : k, p.transA ? m : 1);
      const bv = flatView(p.strideB, p.transB ? 1 : n, p.transB ? k : 1);
      return mm("matmul", a, av, b, bv, batch, m, k, n);
    },
    conv2d: (x, xs, w, ws, p) => {
      const q = geometry(xs, ws, p);
      const n = q.n * q.o * q.ho * q.wo;
      if (!gpuOk(x, w) || n === 0 || n > MAX_GPU_ELEMENTS)
        return (host("conv2d"), wrap(conv2d(H(x), xs, H(w), ws, p, gemm)));
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
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [n, c, s], "c"),
        `const ng = c0 * ${f(groups)} + idiv(c1, ${f(cg)});`,
        "let z = (x[i] - mu[ng]) * rs[ng];",
      ];
      if (w) body.push("z = z * ww[c1];");
      if (b) body.push("z = z + bb[c1];");
      body.push(p.silu ? "return z / (1.0 + exp32(-z));" : "return z;");
      const args: [string, S][] = [
        ["x", x],
        ["mu", mean],
        ["rs", rstd],
      ];
      if (w) args.push(["ww", w]);
      if (b) args.push(["bb", b]);
      return { y: run("groupNorm", body, x.size, args), mean, rstd };
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
      const body = [
        "const i = this.thread.x;",
        ...coordLines("i", [rows, d], "c"),
        "let z = (x[i] - mu[c0]) * rs[c0];",
      ];
      if (w) body.push("z = z * ww[c1];");
      if (b) body.push("z = z + bb[c1];");
      body.push("return z;");
      const args: [string, S][] = [
        ["x", x],
        ["mu", mean],
        ["rs", rstd],
      ];
      if (w) args.push(["ww", w]);
      if (b) args.push(["bb", b]);
      return { y: run("layerNorm", body, x.size, args), mean, rstd };
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

    adamUpdate: (pp, g, m, v, size, h: AdamHyper) => {
      if (!gpuOk(pp, g, m, v) || size === 0) {
        host("adamUpdate");
        // the host kernel writes in place: give it copies, since storage never changes once made
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
      return { p: p2, m: m2, v: v2 };
    },
  };

  return B;
}
