// elementwise primitives (unary, binary with broadcasting, where, cast) with their gradients
import { isGradEnabled, record } from "../autograd.ts";
import type { BinaryOp, UnaryOp } from "../backend/backend.ts";
import type { DType } from "../dtype.ts";
import { isHalf } from "../dtype.ts";
import { DTypeError } from "../errors.ts";
import { broadcastShapes } from "../shape.ts";
import type { Tensor, TensorLike } from "../tensor.ts";
import { sumTo } from "./reduce.ts";
import { lift, out, same } from "./util.ts";

function un(op: UnaryOp, x: Tensor): Tensor {
  return out(x, x.backend.unary(op, x.storage), x.shape);
}

function bin(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  same(op, [a, b]);
  const shape = broadcastShapes(op, a.shape, b.shape);
  return out(a, a.backend.binary(op, a.storage, a.shape, b.storage, b.shape, shape), shape);
}

// unary ops; backward rules next to each forward
export function neg(x: Tensor): Tensor {
  return record(un("neg", x), "neg", [x], (g) => [neg(g)]);
}
export function exp(x: Tensor): Tensor {
  const y = un("exp", x);
  return record(y, "exp", [x], (g) => [mul(g, y)]); // d e^x = e^x
}
export function log(x: Tensor): Tensor {
  return record(un("log", x), "log", [x], (g) => [div(g, x)]);
}
export function sqrt(x: Tensor): Tensor {
  const y = un("sqrt", x);
  return record(y, "sqrt", [x], (g) => [div(mul(g, 0.5), y)]); // d sqrt x = 1/(2 sqrt x)
}
export function rsqrt(x: Tensor): Tensor {
  const y = un("rsqrt", x);
  return record(y, "rsqrt", [x], (g) => [mul(g, mul(un("square", y), mul(y, -0.5)))]); // d x^-1/2 = -x^-3/2 / 2
}
export function abs(x: Tensor): Tensor {
  return record(un("abs", x), "abs", [x], (g) => [mul(g, un("sign", x))]);
}
export function square(x: Tensor): Tensor {
  return record(un("square", x), "square", [x], (g) => [mul(g, mul(x, 2))]);
}
export function reciprocal(x: Tensor): Tensor {
  const y = un("reciprocal", x);
  return record(y, "reciprocal", [x], (g) => [mul(neg(g), un("square", y))]); // d 1/x = -1/x^2
}
export function tanh(x: Tensor): Tensor {
  const y = un("tanh", x);
  return record(y, "tanh", [x], (g) => [bin("tanh_grad", g, y)]); // g (1 - tanh^2)
}
export function sigmoid(x: Tensor): Tensor {
  const y = un("sigmoid", x);
  return record(y, "sigmoid", [x], (g) => [bin("sigmoid_grad", g, y)]); // g s (1 - s)
}
export function relu(x: Tensor): Tensor {
  return record(un("relu", x), "relu", [x], (g) => [mul(g, un("step", x))]);
}
export function silu(x: Tensor): Tensor {
  // d x s(x) = s (1 + x (1 - s))
  return record(un("silu", x), "silu", [x], (g) => [bin("silu_grad", g, x)]);
}
export function gelu(x: Tensor): Tensor {
  // gelu(x) = x Phi(x); d = Phi(x) + x phi(x)
  return record(un("gelu", x), "gelu", [x], (g) => [bin("gelu_grad", g, x)]);
}
export function geluTanh(x: Tensor): Tensor {
  // u = c (x + a x^3), y = x (1 + tanh u) / 2; dy = (1 + t)/2 + x (1 - t^2) c (1 + 3 a x^2) / 2
  const c = Math.sqrt(2 / Math.PI),
    a = 0.044715;
  return record(un("gelu_tanh", x), "geluTanh", [x], (g) => {
    const x2 = un("square", x);
    const t = un("tanh", mul(add(x, mul(mul(x2, x), a)), c));
    const left = mul(add(t, 1), 0.5);
    const right = mul(mul(x, rsubScalar(1, un("square", t))), mul(add(mul(x2, 3 * a), 1), 0.5 * c));
    return [mul(g, add(left, right))];
  });
}
export function erf(x: Tensor): Tensor {
  // d erf x = 2/sqrt(pi) e^{-x^2}
  return record(un("erf", x), "erf", [x], (g) => [
    mul(g, mul(un("exp", neg(un("square", x))), 2 / Math.sqrt(Math.PI))),
  ]);
}
export function sin(x: Tensor): Tensor {
  return record(un("sin", x), "sin", [x], (g) => [mul(g, un("cos", x))]);
}
export function cos(x: Tensor): Tensor {
  return record(un("cos", x), "cos", [x], (g) => [neg(mul(g, un("sin", x)))]);
}
/** sign(x): -1, 0 or 1 (not differentiable; no graph). */
export function sign(x: Tensor): Tensor {
  return un("sign", x);
}

function rsubScalar(c: number, x: Tensor): Tensor {
  return bin("sub", lift(c, x), x);
}

// binary ops with broadcasting; gradients are reduced back to each input's shape
export function add(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return record(bin("add", x, y), "add", [x, y], (g) => [sumTo(g, x.shape), sumTo(g, y.shape)]);
}
export function sub(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return record(bin("sub", x, y), "sub", [x, y], (g) => [
    sumTo(g, x.shape),
    y.requiresGrad ? sumTo(neg(g), y.shape) : null,
  ]);
}
export function mul(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return record(bin("mul", x, y), "mul", [x, y], (g) => [
    x.requiresGrad ? sumTo(bin("mul", g, y), x.shape) : null,
    y.requiresGrad ? sumTo(bin("mul", g, x), y.shape) : null,
  ]);
}
export function div(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  const q = bin("div", x, y);
  return record(q, "div", [x, y], (g) => [
    x.requiresGrad ? sumTo(bin("div", g, y), x.shape) : null,
    y.requiresGrad ? sumTo(neg(bin("div", bin("mul", g, q), y)), y.shape) : null, // d(x/y)/dy = -x/y^2
  ]);
}
export function pow(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  const p = bin("pow", x, y);
  return record(p, "pow", [x, y], (g) => [
    x.requiresGrad ? sumTo(mul(g, mul(y, bin("pow", x, sub(y, 1)))), x.shape) : null, // y x^(y-1)
    y.requiresGrad ? sumTo(mul(g, mul(p, un("log", x))), y.shape) : null, // x^y ln x
  ]);
}
/** Elementwise maximum; at ties the gradient is split evenly. */
export function maximum(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return record(bin("maximum", x, y), "maximum", [x, y], (g) => {
    const half = mul(bin("eq", x, y), 0.5);
    return [sumTo(mul(g, add(bin("gt", x, y), half)), x.shape), sumTo(mul(g, add(bin("lt", x, y), half)), y.shape)];
  });
}
/** Elementwise minimum; at ties the gradient is split evenly. */
export function minimum(a: TensorLike, b: TensorLike): Tensor {
  const [x, y] = pair(a, b);
  return record(bin("minimum", x, y), "minimum", [x, y], (g) => {
    const half = mul(bin("eq", x, y), 0.5);
    return [sumTo(mul(g, add(bin("lt", x, y), half)), x.shape), sumTo(mul(g, add(bin("gt", x, y), half)), y.shape)];
  });
}

// comparisons give 0/1 tensors and no graph
export const lt = (a: TensorLike, b: TensorLike): Tensor => bin("lt", ...pair(a, b));
export const le = (a: TensorLike, b: TensorLike): Tensor => bin("le", ...pair(a, b));
export const gt = (a: TensorLike, b: TensorLike): Tensor => bin("gt", ...pair(a, b));
export const ge = (a: TensorLike, b: TensorLike): Tensor => bin("ge", ...pair(a, b));
export const eq = (a: TensorLike, b: TensorLike): Tensor => bin("eq", ...pair(a, b));
export const ne = (a: TensorLike, b: TensorLike): Tensor => bin("ne", ...pair(a, b));

/** `cond != 0 ? a : b` elementwise with broadcasting; differentiable in a and b. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const x = lift(a, cond),
    y = lift(b, cond);
  same("where", [cond, x, y]);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, x.shape), y.shape);
  const o = out(x, x.backend.where(cond.storage, cond.shape, x.storage, x.shape, y.storage, y.shape, shape), shape);
  return record(o, "where", [x, y], (g) => {
    const z = lift(0, g);
    return [
      x.requiresGrad ? sumTo(where(cond, g, z), x.shape) : null,
      y.requiresGrad ? sumTo(where(cond, z, g), y.shape) : null,
    ];
  });
}

/** Clamps to [lo, hi]; the gradient passes where lo <= x <= hi. */
export function clamp(x: Tensor, lo?: number, hi?: number): Tensor {
  let y = x;
  if (lo !== undefined) y = where(lt(x, lo), lo, y);
  if (hi !== undefined) y = where(gt(x, hi), hi, y);
  return y;
}

/** Converts dtype; the gradient is converted back (a half result takes no gradient: it holds frozen values). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const y = out(x, x.backend.cast(x.rawStorage, x.dtype, dtype), x.shape, dtype);
  if (isHalf(dtype)) {
    if (x.requiresGrad && isGradEnabled())
      throw new DTypeError(
        `cast: a tensor of shape [${x.shape}] that requires grad cannot become ${dtype} (half dtypes hold frozen weights); detach() it first`,
      );
    return y;
  }
  return record(y, "cast", [x], (g) => [cast(g, x.dtype)]);
}

function pair(a: TensorLike, b: TensorLike): [Tensor, Tensor] {
  if (typeof a === "number") {
    if (typeof b === "number") throw new TypeError("binary op: at least one operand must be a Tensor");
    return [lift(a, b), b];
  }
  return [a, lift(b, a)];
}
