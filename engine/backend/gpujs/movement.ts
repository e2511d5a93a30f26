// gpujs movement kernels: permute, expand, slice, pad, concat, gather and indexAdd as index-mapping gathers
import type { Backend } from "../backend.ts";
import type { GpuStorage } from "./device.ts";
import type { KernelContext } from "./kernel_context.ts";
import { broadcastStrides } from "../cpu/elementwise.ts";
import { concat, expand, gather, indexAdd, pad, permute, slice } from "../cpu/movement.ts";
import { coordLines, f, MAX_GPU_ELEMENTS, stridesOf } from "./device.ts";

type S = GpuStorage;

/** The movement kernels of the gpujs backend (host fallbacks where a kernel does not fit). */
export function movementKernels(
  c: KernelContext,
): Pick<Backend<GpuStorage>, "permute" | "expand" | "slice" | "pad" | "concat" | "gather" | "indexAdd"> {
  const { wrap, H, host, gpuOk, run, sizeOf, gatherView } = c;
  return {
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
  };
}
