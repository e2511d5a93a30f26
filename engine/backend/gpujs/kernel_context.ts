// The helpers every gpujs kernel group shares: host fallbacks (download, wrap a host result), the
// GPU kernel runners over generated source, and the reusable GPU programs of programs.ts
import type { TypedArray } from "../../dtype.ts";
import type { Shape } from "../../shape.ts";
import { GpuStorage, MAX_GPU_ELEMENTS } from "./device.ts";
import type { Device } from "./device.ts";
import { programs } from "./programs.ts";
import { vec4Programs } from "./vec4.ts";

type S = GpuStorage;

/** What {@link kernelContext} returns: the host side, the runners and the programs of one device. */
export type KernelContext = ReturnType<typeof kernelContext>;

/** The shared helpers of the gpujs kernels on `dev`. */
export function kernelContext(dev: Device) {
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

  const run4 = (name: string, body: string[], texels: number, args: [string, S | number][]): S =>
    dev.run4(
      name,
      `function(${args.map((a) => a[0]).join(", ")}) {\n${body.join("\n")}\n}`,
      texels,
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

  const sizeOf = (s: Shape): number => s.reduce((a, b) => a * b, 1);

  return {
    dev,
    hostStorage,
    wrap,
    H,
    Hn,
    host,
    gpuOk,
    run,
    runChunked,
    chunkable,
    sizeOf,
    ...programs(run),
    ...vec4Programs(run, run4),
  };
}
