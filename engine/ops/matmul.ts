// matmul with broadcast batch dimensions and transposed operands, and linear
import { record } from "../autograd.ts";
import { ShapeError } from "../errors.ts";
import { broadcastShapes, sizeOf } from "../shape.ts";
import type { Tensor } from "../tensor.ts";
import { add } from "./elementwise.ts";
import { expand, reshape } from "./movement.ts";
import { sumTo } from "./reduce.ts";
import { out, sameOrHalfWeight, withWeight } from "./util.ts";
import { floatOf, isHalf } from "../dtype.ts";

/**
 * op(a) @ op(b) where op transposes the last two axes when its flag is set; batch axes broadcast.
 * a: (..., M, K) or (..., K, M) when transA; b: (..., K, N) or (..., N, K) when transB.
 */
export function mm(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  // either operand may be a frozen half-precision weight (2-d), widened to float32 for this product only
  if (isHalf(a.dtype)) sameOrHalfWeight("matmul", b, a);
  else sameOrHalfWeight("matmul", a, b);
  for (const t of [a, b])
    if (isHalf(t.dtype) && t.ndim !== 2)
      throw new ShapeError(`matmul: a ${t.dtype} operand must be a 2-d weight, got [${t.shape}]`);
  if (a.ndim < 2 || b.ndim < 2)
    throw new ShapeError(`matmul: operands must have rank >= 2, got [${a.shape}] and [${b.shape}]`);
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const m = transA ? ac : ar,
    k = transA ? ar : ac;
  const kb = transB ? bc : br,
    n = transB ? br : bc;
  if (k !== kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ, a is [${a.shape}]${transA ? "^T" : ""} and b is [${b.shape}]${transB ? "^T" : ""}`,
    );
  }
  const batchA = a.shape.slice(0, -2),
    batchB = b.shape.slice(0, -2);
  const batch = broadcastShapes("matmul", batchA, batchB);
  const nb = sizeOf(batch);
  let x = a,
    y = b;
  let strideA = ar * ac,
    strideB = br * bc;
  let batchN = nb,
    mm_ = m;
  if (sizeOf(batchB) === 1 && !transA && nb > 1) {
    // fold a's batch into its rows: (nb*M, K) @ (K, N)
    mm_ = m * nb;
    batchN = 1;
    strideA = 0;
    strideB = 0;
  } else {
    if (sizeOf(batchA) === 1) strideA = 0;
    else if (sizeOf(batchA) !== nb) x = expand(a, [...batch, ar, ac]);
    if (sizeOf(batchB) === 1) strideB = 0;
    else if (sizeOf(batchB) !== nb) y = expand(b, [...batch, br, bc]);
  }
  const shape = [...batch, m, n];
  const p = { batch: batchN, m: mm_, k, n, transA, transB, strideA, strideB };
  const s = withWeight(x, (xs) => withWeight(y, (ys) => a.backend.matmul(xs, ys, p)));
  const o = out(a, s, shape, floatOf(a.dtype));
  return record(o, "matmul", [a, b], (g) => {
    let ga: Tensor | null = null,
      gb: Tensor | null = null;
    if (a.requiresGrad) {
      const scratch = a.backend.beginScratch();
      const full = transA ? mm(b, g, transB, true) : mm(g, b, false, !transB);
      ga = sumTo(full, a.shape);
      if (ga.storage !== full.storage) scratch.release(full.storage);
      scratch.end();
    }
    if (b.requiresGrad) {
      if (sizeOf(batchB) === 1 && nb > 1 && !transA && sizeOf(batchA) === nb) {
        // a weight shared by the batch: one GEMM over the stacked rows, sum_b op(a_b)^T g_b = A^T G,
        // instead of a gradient per batch item and a sum over them
        const a2 = reshape(a, [nb * m, k]),
          g2 = reshape(g, [nb * m, n]);
        gb = reshape(transB ? mm(g2, a2, true, false) : mm(a2, g2, true, false), b.shape);
      } else {
        // the per-item products go back to the backend's pool once summed over the batch
        const scratch = a.backend.beginScratch();
        const full = transB ? mm(g, a, true, transA) : mm(a, g, !transA, false);
        gb = sumTo(full, b.shape);
        if (gb.storage !== full.storage) scratch.release(full.storage);
        scratch.end();
      }
    }
    return [ga, gb];
  });
}

/** Matrix product with NumPy semantics for 1-D operands and broadcast batch axes. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0)
    throw new ShapeError(`matmul: operands must not be scalars, got [${a.shape}] and [${b.shape}]`);
  const va = a.ndim === 1,
    vb = b.ndim === 1;
  const x = va ? reshape(a, [1, a.shape[0]]) : a;
  const y = vb ? reshape(b, [b.shape[0], 1]) : b;
  let r = mm(x, y);
  if (va) r = reshape(r, [...r.shape.slice(0, -2), r.shape[r.ndim - 1]]);
  if (vb) r = reshape(r, r.shape.slice(0, -1));
  return r;
}

/** x @ W^T + b with W of shape (out, in), as torch.nn.functional.linear. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.ndim !== 2) throw new ShapeError(`linear: weight must be (out, in), got [${weight.shape}]`);
  if (x.shape[x.ndim - 1] !== weight.shape[1]) {
    throw new ShapeError(
      `linear: input features ${x.shape[x.ndim - 1]} (shape [${x.shape}]) differ from weight in-features ${weight.shape[1]} (weight [${weight.shape}])`,
    );
  }
  const x2 = x.ndim === 1 ? reshape(x, [1, x.shape[0]]) : x;
  let y = mm(x2, weight, false, true);
  if (x.ndim === 1) y = reshape(y, [weight.shape[0]]);
  return bias ? add(y, bias) : y;
}
