// softmax and log-softmax (numerically stable kernels) with their gradients
import { record } from "../autograd.ts";
import { normAxis } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { exp, mul, sub } from "./elementwise.ts";
import { sum } from "./reduce.ts";
import { out } from "./util.ts";

/** softmax along `axis`: exp(x - max) / sum. */
export function softmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis("softmax", axis, x.ndim);
  const y = out(x, x.backend.softmax(x.storage, x.shape, a, false), x.shape);
  // dx = y * (g - sum(g * y))
  return record(y, "softmax", [x], (g) => [mul(y, sub(g, sum(mul(g, y), a, true)))]);
}

/** log-softmax along `axis`: x - max - log(sum(exp(x - max))). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis("logSoftmax", axis, x.ndim);
  const y = out(x, x.backend.softmax(x.storage, x.shape, a, true), x.shape);
  // dx = g - softmax * sum(g)
  return record(y, "logSoftmax", [x], (g) => [sub(g, mul(exp(y), sum(g, a, true)))]);
}
