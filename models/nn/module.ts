// Module: parameters are Tensor fields, submodules are Module fields or arrays; keys mirror field paths
import { Tensor, getDefaultBackend, noGrad, randn, uniform, zeros, ones, full } from "../../engine/index.ts";
import type { DType, Generator, HostTensor } from "../../engine/index.ts";
import { StateDictError } from "../../engine/errors.ts";

let shapeOnly = false;
let initGenerator: Generator | undefined;

/**
 * Builds modules without allocating parameter memory: every parameter gets its shape and empty
 * storage. For checking key names and shapes of big configs (Stable Diffusion) cheaply.
 */
export function withShapeOnly<T>(fn: () => T): T {
  const prev = shapeOnly;
  shapeOnly = true;
  try {
    return fn();
  } finally {
    shapeOnly = prev;
  }
}

/** Runs `fn` with parameter initialisation drawn from `g` (reproducible model init). */
export function withInitGenerator<T>(g: Generator, fn: () => T): T {
  const prev = initGenerator;
  initGenerator = g;
  try {
    return fn();
  } finally {
    initGenerator = prev;
  }
}

export type Init =
  | { kind: "uniform"; bound: number }
  | { kind: "normal"; std: number }
  | { kind: "zeros" }
  | { kind: "ones" }
  | { kind: "const"; value: number };

/** A trainable parameter (requiresGrad leaf) of the given shape and initialisation. */
export function parameter(shape: readonly number[], init: Init): Tensor {
  let t: Tensor;
  if (shapeOnly) {
    t = new Tensor(getDefaultBackend().zeros("float32", 0), shape, "float32");
  } else {
    const g = initGenerator ? { generator: initGenerator } : {};
    switch (init.kind) {
      case "uniform":
        t = uniform(shape, -init.bound, init.bound, g);
        break;
      case "normal":
        t = randn(shape, g).mul(init.std);
        break;
      case "zeros":
        t = zeros(shape);
        break;
      case "ones":
        t = ones(shape);
        break;
      case "const":
        t = full(shape, init.value);
        break;
    }
  }
  return t.requiresGrad_(true);
}

/** Base class of every model and layer. Field names are checkpoint key segments. */
export abstract class Module {
  /** training mode (dropout active) */
  training = true;

  /** (name, child) pairs: Module fields, and Module/Tensor array elements by index. */
  private *entries(): Generator_<[string, Tensor | Module]> {
    for (const [k, v] of Object.entries(this)) {
      if (k === "training" || k.startsWith("_")) continue;
      if (v instanceof Tensor || v instanceof Module) yield [k, v];
      else if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const e = v[i];
          if (e instanceof Tensor || e instanceof Module) yield [`${k}.${i}`, e];
        }
      }
    }
  }

  /** Every parameter with its dotted key, in definition order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [k, v] of this.entries()) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v instanceof Tensor) out.push([key, v]);
      else out.push(...v.namedParameters(key));
    }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  /** Every submodule with its dotted key (this module as ""). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [k, v] of this.entries()) {
      if (v instanceof Module) out.push(...v.namedModules(prefix ? `${prefix}.${k}` : k));
    }
    return out;
  }
  /** Number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.shape.reduce((p, d) => p * d, 1), 0);
  }
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }
  /**
   * Copies values into the parameters (the tensors keep their identity). Missing, unexpected and
   * mis-shaped keys are a StateDictError naming them; `ignore` lists keys to skip silently
   * (e.g. buffers such as position_ids).
   */
  loadStateDict(
    sd: Map<string, HostTensor<ArrayLike<number>>>,
    opts: { strict?: boolean; ignore?: readonly string[] } = {},
  ): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const r = this.checkStateShapes(sd, opts);
    noGrad(() => {
      for (const [k, p] of own) {
        const v = sd.get(k);
        if (!v) continue;
        if (v instanceof Tensor) p.copy_(v);
        else p.copy_(v.data);
      }
    });
    return r;
  }
  /**
   * The checks of {@link loadStateDict} without the copy: keys (missing, unexpected unless ignored,
   * errors when strict) and shapes, from the shapes alone (a file's header, before reading its data).
   */
  checkStateShapes(
    sd: Map<string, { shape: readonly number[] }>,
    opts: { strict?: boolean; ignore?: readonly string[] } = {},
  ): { missing: string[]; unexpected: string[] } {
    const own = this.stateDict();
    const ignore = new Set(opts.ignore ?? []);
    const missing = [...own.keys()].filter((k) => !sd.has(k));
    const unexpected = [...sd.keys()].filter((k) => !own.has(k) && !ignore.has(k));
    const strict = opts.strict ?? true;
    const list = (ks: string[]) => `${ks.slice(0, 5).join(", ")}${ks.length > 5 ? ", ..." : ""}`;
    if (strict && (missing.length || unexpected.length)) {
      const parts: string[] = [];
      if (missing.length)
        parts.push(`missing ${missing.length} key${missing.length > 1 ? "s" : ""} (${list(missing)})`);
      if (unexpected.length)
        parts.push(`unexpected ${unexpected.length} key${unexpected.length > 1 ? "s" : ""} (${list(unexpected)})`);
      throw new StateDictError(`load: ${parts.join(", ")}`);
    }
    for (const [k, p] of own) {
      const v = sd.get(k);
      if (!v) continue;
      if (v.shape.join() !== p.shape.join())
        throw new StateDictError(`load: ${k} expected [${p.shape}], got [${v.shape}]`);
    }
    return { missing, unexpected };
  }
  /** Sets training mode on this module and every submodule. */
  train(flag = true): this {
    for (const [, m] of this.namedModules()) m.training = flag;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Converts every parameter to `dtype` in place (float64 for gradient checks). */
  toDType(dtype: DType): this {
    for (const p of this.parameters()) p.to_(dtype);
    return this;
  }
  /** Freezes (or unfreezes) every parameter. */
  requiresGrad_(flag: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }
}

type Generator_<T> = globalThis.Generator<T, void, unknown>;
