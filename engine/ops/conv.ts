// conv2d (stride, padding, groups, bias), nearest upsampling and average pooling, with gradients
import { record } from "../autograd.ts";
import type { Conv2dParams } from "../backend/backend.ts";
import { ShapeError } from "../errors.ts";
import type { Tensor } from "../tensor.ts";
import { add, mul as mulOp } from "./elementwise.ts";
import { reshape } from "./movement.ts";
import { out, sameOrHalfWeight, withWeight } from "./util.ts";

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly [number, number];
  groups?: number;
}

function pair(v: number | readonly [number, number] | undefined, d: number): [number, number] {
  if (v === undefined) return [d, d];
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

/** 2-D convolution (cross-correlation) of x (N, C, H, W) with w (O, C/groups, kH, kW), as torch conv2d. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  sameOrHalfWeight("conv2d", x, w);
  if (x.ndim !== 4) throw new ShapeError(`conv2d: input must be rank 4 (N, C, H, W), got [${x.shape}]`);
  if (w.ndim !== 4) throw new ShapeError(`conv2d: weight must be rank 4 (O, C/groups, kH, kW), got [${w.shape}]`);
  const groups = opts.groups ?? 1;
  const p: Conv2dParams = { stride: pair(opts.stride, 1), padding: pair(opts.padding, 0), groups };
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [o, cg, kh, kw] = w.shape as [number, number, number, number];
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0 || o % groups !== 0 || cg !== c / groups) {
    throw new ShapeError(`conv2d: input [${x.shape}] and weight [${w.shape}] do not fit groups=${groups}`);
  }
  if (p.stride.some((s) => !Number.isInteger(s) || s < 1) || p.padding.some((v) => !Number.isInteger(v) || v < 0)) {
    throw new ShapeError(
      `conv2d: stride [${p.stride}] and padding [${p.padding}] must be positive / non-negative integers`,
    );
  }
  const ho = Math.floor((h + 2 * p.padding[0] - kh) / p.stride[0]) + 1;
  const wo = Math.floor((wd + 2 * p.padding[1] - kw) / p.stride[1]) + 1;
  if (ho < 1 || wo < 1) throw new ShapeError(`conv2d: kernel ${kh}x${kw} is larger than padded input [${x.shape}]`);
  // a half-precision weight is widened to float32 for each kernel that reads it, then dropped
  const y = out(
    x,
    withWeight(w, (ws) => x.backend.conv2d(x.storage, x.shape, ws, w.shape, p)),
    [n, o, ho, wo],
  );
  const r = record(y, "conv2d", [x, w], (g) => [
    x.requiresGrad
      ? out(
          g,
          withWeight(w, (ws) => g.backend.conv2dBackwardInput(g.storage, g.shape, ws, w.shape, x.shape, p)),
          x.shape,
        )
      : null,
    w.requiresGrad
      ? out(g, g.backend.conv2dBackwardWeight(x.storage, x.shape, g.storage, g.shape, w.shape, p), w.shape)
      : null,
  ]);
  if (!bias) return r;
  if (bias.ndim !== 1 || bias.shape[0] !== o) throw new ShapeError(`conv2d: bias must be [${o}], got [${bias.shape}]`);
  return add(r, reshape(bias, [1, o, 1, 1]));
}

/** Nearest-neighbour upsampling of (N, C, H, W) by an integer factor (default 2). */
export function upsampleNearest2d(x: Tensor, scale = 2): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`upsampleNearest2d: input must be rank 4, got [${x.shape}]`);
  if (!Number.isInteger(scale) || scale < 1)
    throw new ShapeError(`upsampleNearest2d: scale must be a positive integer, got ${scale}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const y = out(x, x.backend.upsampleNearest(x.storage, x.shape, scale), [n, c, h * scale, w * scale]);
  return record(y, "upsampleNearest2d", [x], (g) => [poolSum(g, scale, 1)]);
}

/** Sum over non-overlapping k x k windows times `mul` (sizes must divide). */
export function poolSum(x: Tensor, k: number, mul: number): Tensor {
  if (x.ndim !== 4) throw new ShapeError(`pool: input must be rank 4, got [${x.shape}]`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  if (!Number.isInteger(k) || k < 1 || h % k !== 0 || w % k !== 0)
    throw new ShapeError(`pool: window ${k} must divide the spatial size of [${x.shape}]`);
  const y = out(x, x.backend.poolSum(x.storage, x.shape, k, mul), [n, c, h / k, w / k]);
  return record(y, "poolSum", [x], (g) => {
    const u = upsampleNearest2d(g, k);
    return [mul === 1 ? u : mulOp(u, mul)];
  });
}

/** Average pooling with a k x k window and stride k (default 2). */
export function avgPool2d(x: Tensor, k = 2): Tensor {
  return poolSum(x, k, 1 / (k * k));
}
