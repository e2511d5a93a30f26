// ResnetBlock2D with time-embedding injection, Downsample2D, Upsample2D
// mirrors diffusers models/resnet.py, models/downsampling.py and models/upsampling.py (SD-1.x path)
import {
  add,
  ConfigError,
  div,
  indexSelect,
  pad,
  reshape,
  ShapeError,
  silu,
  upsampleNearest2d,
} from "../engine/index.ts";
import type { Tensor } from "../engine/index.ts";
import { Conv2d, Dropout, GroupNorm, Linear, Module } from "./nn/index.ts";

/** Activation by diffusers name ("silu" / "swish"). */
export function getActivation(name: string): (x: Tensor) => Tensor {
  if (name === "silu" || name === "swish") return silu;
  throw new ConfigError(`getActivation: unsupported activation "${name}" (supported: silu)`);
}

export interface ResnetBlock2DArgs {
  inChannels: number;
  outChannels?: number;
  tembChannels: number;
  groups?: number;
  eps?: number;
  dropout?: number;
  actFn?: string;
  outputScaleFactor?: number;
}

/**
 * h = conv1(act(norm1 x)) + time_emb_proj(act temb); h = conv2(dropout(act(norm2 h)));
 * out = (shortcut(x) + h) / output_scale_factor, with a 1x1 conv_shortcut when channels change.
 */
export class ResnetBlock2D extends Module {
  norm1: GroupNorm;
  conv1: Conv2d;
  time_emb_proj: Linear;
  norm2: GroupNorm;
  dropout: Dropout;
  conv2: Conv2d;
  conv_shortcut: Conv2d | null;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly outputScaleFactor: number;
  private readonly act: (x: Tensor) => Tensor;

  constructor(a: ResnetBlock2DArgs) {
    super();
    const groups = a.groups ?? 32,
      eps = a.eps ?? 1e-6;
    this.inChannels = a.inChannels;
    this.outChannels = a.outChannels ?? a.inChannels;
    this.outputScaleFactor = a.outputScaleFactor ?? 1;
    this.act = getActivation(a.actFn ?? "silu");
    this.norm1 = new GroupNorm(groups, this.inChannels, eps);
    this.conv1 = new Conv2d(this.inChannels, this.outChannels, 3, { padding: 1 });
    this.time_emb_proj = new Linear(a.tembChannels, this.outChannels);
    this.norm2 = new GroupNorm(groups, this.outChannels, eps);
    this.dropout = new Dropout(a.dropout ?? 0);
    this.conv2 = new Conv2d(this.outChannels, this.outChannels, 3, { padding: 1 });
    this.conv_shortcut = this.inChannels !== this.outChannels ? new Conv2d(this.inChannels, this.outChannels, 1) : null;
  }

  /** x (B, Cin, H, W), temb (B, T) -> (B, Cout, H, W) */
  forward(x: Tensor, temb: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.inChannels)
      throw new ShapeError(`ResnetBlock2D: input must be (B, ${this.inChannels}, H, W), got [${x.shape}]`);
    const normAct = (n: GroupNorm, v: Tensor) => (this.act === silu ? n.forwardSilu(v) : this.act(n.forward(v)));
    let h = this.conv1.forward(normAct(this.norm1, x)); // (B, Cout, H, W)
    const t = this.time_emb_proj.forward(this.act(temb)); // (B, Cout)
    h = add(h, reshape(t, [t.shape[0], this.outChannels, 1, 1]));
    h = this.conv2.forward(this.dropout.forward(normAct(this.norm2, h))); // (B, Cout, H, W)
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    const y = add(skip, h);
    return this.outputScaleFactor === 1 ? y : div(y, this.outputScaleFactor);
  }
}

/** Halves H and W with a 3x3 stride-2 conv (key `conv`); padding 0 pads right/bottom by one first. */
export class Downsample2D extends Module {
  conv: Conv2d;
  constructor(
    readonly channels: number,
    readonly outChannels: number = channels,
    readonly padding = 1,
  ) {
    super();
    this.conv = new Conv2d(channels, outChannels, 3, { stride: 2, padding });
  }
  forward(x: Tensor): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels)
      throw new ShapeError(`Downsample2D: input must be (B, ${this.channels}, H, W), got [${x.shape}]`);
    const xp =
      this.padding === 0
        ? pad(x, [
            [0, 0],
            [0, 0],
            [0, 1],
            [0, 1],
          ])
        : x;
    return this.conv.forward(xp); // (B, Cout, ceil(H/2), ceil(W/2))
  }
}

/**
 * Nearest-neighbour resize of (B, C, H, W) to `size`, as torch interpolate(mode="nearest"):
 * source index floor(i * in/out). A plain 2x upsample takes the engine's kernel.
 */
export function interpolateNearest(x: Tensor, size: readonly [number, number]): Tensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  const [oh, ow] = size;
  if (!(Number.isInteger(oh) && Number.isInteger(ow) && oh > 0 && ow > 0))
    throw new ShapeError(`interpolateNearest: size must be two positive integers, got [${size}]`);
  if (oh === 2 * h && ow === 2 * w) return upsampleNearest2d(x, 2);
  const index = (n: number, m: number) => {
    const scale = Math.fround(n / m);
    return Array.from({ length: m }, (_, i) => Math.min(Math.floor(Math.fround(i * scale)), n - 1));
  };
  let y = oh === h ? x : indexSelect(x, 2, index(h, oh)); // (B, C, oh, W)
  if (ow !== w) y = indexSelect(y, 3, index(w, ow)); // (B, C, oh, ow)
  return y;
}

/** Doubles H and W (or resizes to `outputSize`) by nearest neighbour, then a 3x3 conv (key `conv`). */
export class Upsample2D extends Module {
  conv: Conv2d;
  constructor(
    readonly channels: number,
    readonly outChannels: number = channels,
  ) {
    super();
    this.conv = new Conv2d(channels, outChannels, 3, { padding: 1 });
  }
  forward(x: Tensor, outputSize: readonly [number, number] | null = null): Tensor {
    if (x.ndim !== 4 || x.shape[1] !== this.channels)
      throw new ShapeError(`Upsample2D: input must be (B, ${this.channels}, H, W), got [${x.shape}]`);
    const up = outputSize ? interpolateNearest(x, outputSize) : upsampleNearest2d(x, 2); // (B, C, H', W')
    return this.conv.forward(up);
  }
}
