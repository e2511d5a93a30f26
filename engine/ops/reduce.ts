// reductions: sum, max, min (primitives) and mean, var (composites); sumTo undoes broadcasting
import { record } from "../autograd.ts";
import type { ReduceOp } from "../backend/backend.ts";
import { ShapeError } from "../errors.ts";
import type { Shape } from "../shape.ts";
import { normAxes, shapesEqual, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { div, eq, mul, sub, square } from "./elementwise.ts";
import { expand, reshape } from "./movement.ts";
import { out } from "./util.ts";

function keptShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}
function droppedShape(shape: Shape, axes: readonly number[]): number[] {
  return shape.filter((_, i) => !axes.includes(i));
}

function reduceRaw(op: ReduceOp, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  const kept = keptShape(x.shape, axes);
  return out(x, x.backend.reduce(op, x.storage, x.shape, axes), keepdim ? kept : droppedShape(x.shape, axes));
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes("sum", axes, x.ndim);
  const y = reduceRaw("sum", x, ax, keepdim);
  return record(y, "sum", [x], (g) => [expand(reshape(g, keptShape(x.shape, ax)), x.shape)]);
}

function extremum(
  op: "max" | "min",
  x: Tensor,
  axes: number | readonly number[] | undefined,
  keepdim: boolean,
): Tensor {
  const ax = normAxes(op, axes, x.ndim);
  if (ax.some((a) => x.shape[a] === 0))
    throw new ShapeError(`${op}: cannot reduce an empty axis of shape [${x.shape}]`);
  const y = reduceRaw(op, x, ax, keepdim);
  // the gradient goes to the arg-extrema, split evenly between ties
  return record(y, op, [x], (g) => {
    const kept = keptShape(x.shape, ax);
    const mask = eq(x, reshape(y, kept));
    const count = reduceRaw("sum", mask, ax, true);
    return [mul(mask, div(reshape(g, kept), count))];
  });
}

/** Maximum over `axes` (all when omitted). */
export function max(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  return extremum("max", x, axes, keepdim);
}
/** Minimum over `axes` (all when omitted). */
export function min(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  return extremum("min", x, axes, keepdim);
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepdim = false): Tensor {
  const ax = normAxes("mean", axes, x.ndim);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  return div(sum(x, ax, keepdim), n);
}

/** Variance over `axes` with Bessel `correction` (1 = unbiased, as torch.var; 0 = population). */
export function variance(x: Tensor, axes?: number | readonly number[], keepdim = false, correction = 1): Tensor {
  const ax = normAxes("var", axes, x.ndim);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  const d = sub(x, mean(x, ax, true));
  return div(sum(square(d), ax, keepdim), Math.max(0, n - correction));
}

/** Sums a broadcast gradient back down to `shape`. */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, true) : g;
  return sizeOf(s.shape) === sizeOf(shape) ? reshape(s, shape) : s;
}
