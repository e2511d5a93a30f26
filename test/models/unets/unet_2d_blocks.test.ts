// Tests of the UNet's building blocks: ResnetBlock2D (against functional ops), Downsample2D,
// Upsample2D / nearest resize goldens, up-block skip widths, and block-type dispatch errors.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  ConfigError,
  conv2d,
  Generator,
  groupNorm,
  linear,
  noGrad,
  reshape,
  ShapeError,
  silu,
  tensor,
} from "../../../engine/index.ts";
import { withInitGenerator } from "../../../models/nn/index.ts";
import { Downsample2D, interpolateNearest, ResnetBlock2D, Upsample2D } from "../../../models/resnet.ts";
import { getDownBlock, getUpBlock, UpBlock2D } from "../../../models/unets/unet_2d_blocks.ts";
import type { BlockArgs, DownBlockType, UpBlockType } from "../../../models/unets/unet_2d_blocks.ts";
import { assertClose, gradcheck, rnd } from "../../helpers.ts";

test("ResnetBlock2D matches norm1-silu-conv1 + proj(silu temb), norm2-silu-conv2, 1x1 shortcut, / scale", () => {
  const r = withInitGenerator(
    new Generator(1),
    () =>
      new ResnetBlock2D({ inChannels: 4, outChannels: 6, tembChannels: 5, groups: 2, eps: 1e-5, outputScaleFactor: 2 }),
  ).toDType("float64");
  assert.ok(r.conv_shortcut);
  assert.equal(
    [...r.stateDict().keys()],
    [
      "norm1.weight",
      "norm1.bias",
      "conv1.weight",
      "conv1.bias",
      "time_emb_proj.weight",
      "time_emb_proj.bias",
      "norm2.weight",
      "norm2.bias",
      "conv2.weight",
      "conv2.bias",
      "conv_shortcut.weight",
      "conv_shortcut.bias",
    ],
  );
  const x = rnd([2, 4, 3, 3], 2),
    temb = rnd([2, 5], 3);
  const ref = noGrad(() => {
    let h = conv2d(silu(groupNorm(x, 2, r.norm1.weight, r.norm1.bias, 1e-5)), r.conv1.weight, r.conv1.bias, {
      padding: 1,
    });
    h = h.add(reshape(linear(silu(temb), r.time_emb_proj.weight, r.time_emb_proj.bias), [2, 6, 1, 1]));
    h = conv2d(silu(groupNorm(h, 2, r.norm2.weight, r.norm2.bias, 1e-5)), r.conv2.weight, r.conv2.bias, { padding: 1 });
    return conv2d(x, r.conv_shortcut!.weight, r.conv_shortcut!.bias).add(h).div(2);
  });
  assertClose(noGrad(() => r.forward(x, temb)).data, ref.data, 1e-12, 1e-10, "resnet");
  gradcheck("resnet", (a, t) => r.forward(a, t), [rnd([1, 4, 2, 2], 4), rnd([1, 5], 5)]);
  const same = new ResnetBlock2D({ inChannels: 4, tembChannels: 5, groups: 2 });
  assert.is(same.conv_shortcut, null);
  assert.throws(
    () => same.forward(rnd([1, 3, 2, 2], 6).float(), rnd([1, 5], 7).float()),
    (e: Error) => e instanceof ShapeError && e.message.includes("[1,3,2,2]"),
  );
});

test("Downsample2D halves with a stride-2 conv (padding 1, or 0 after a right/bottom pad)", () => {
  const d1 = new Downsample2D(3, 5, 1),
    d0 = new Downsample2D(3, 5, 0);
  assert.equal([...d1.stateDict().keys()], ["conv.weight", "conv.bias"]);
  const x = rnd([1, 3, 7, 6], 8).float();
  assert.equal([...noGrad(() => d1.forward(x)).shape], [1, 5, 4, 3]);
  assert.equal([...noGrad(() => d0.forward(x)).shape], [1, 5, 3, 3]);
});

test("nearest resize picks source index floor(i * in / out), as torch interpolate", () => {
  const x = tensor(
    Array.from({ length: 9 }, (_, i) => i),
    [1, 1, 3, 3],
  );
  const y = interpolateNearest(x, [5, 4]);
  // rows 0 0 1 1 2, columns 0 0 1 2
  assert.equal(Array.from(y.data), [0, 0, 1, 2, 0, 0, 1, 2, 3, 3, 4, 5, 3, 3, 4, 5, 6, 6, 7, 8]);
  assert.equal(Array.from(interpolateNearest(tensor([1, 2], [1, 1, 1, 2]), [2, 4]).data), [1, 1, 2, 2, 1, 1, 2, 2]);
  const u = new Upsample2D(2);
  assert.equal([...noGrad(() => u.forward(rnd([1, 2, 3, 3], 9).float())).shape], [1, 2, 6, 6]);
  assert.equal([...noGrad(() => u.forward(rnd([1, 2, 3, 3], 9).float(), [5, 5])).shape], [1, 2, 5, 5]);
});

const args = (o: Partial<BlockArgs> = {}): BlockArgs => ({
  numLayers: 3,
  inChannels: 32,
  outChannels: 64,
  tembChannels: 16,
  resnetEps: 1e-5,
  resnetActFn: "silu",
  resnetGroups: 8,
  numAttentionHeads: 2,
  crossAttentionDim: 8,
  transformerLayersPerBlock: 1,
  useLinearProjection: false,
  upcastAttention: false,
  ...o,
});

test("up blocks: resnet i takes (prev or out) + (out, or in for the last) channels and consumes skips last-first", () => {
  const up = getUpBlock("UpBlock2D", args(), 128, true) as UpBlock2D;
  assert.equal(
    up.resnets.map((r) => r.inChannels),
    [128 + 64, 64 + 64, 64 + 32],
  );
  const skips = [rnd([1, 32, 4, 4], 11).float(), rnd([1, 64, 4, 4], 12).float(), rnd([1, 64, 4, 4], 13).float()];
  const temb = rnd([1, 16], 14).float();
  const y = noGrad(() => up.forward(rnd([1, 128, 4, 4], 15).float(), skips, temb));
  assert.equal([...y.shape], [1, 64, 8, 8]);
  assert.is(skips.length, 3, "the caller's list is not consumed");
  assert.throws(
    () => up.forward(rnd([1, 128, 4, 4], 15).float(), [...skips].reverse(), temb),
    (e: Error) => e instanceof ShapeError,
  );
});

test("block dispatch rejects unknown types with a ConfigError", () => {
  assert.throws(
    () => getDownBlock("AttnDownBlock2D" as DownBlockType, args(), true, 1),
    (e: Error) => e instanceof ConfigError && e.message.includes("AttnDownBlock2D"),
  );
  assert.throws(
    () => getUpBlock("AttnUpBlock2D" as UpBlockType, args(), 64, true),
    (e: Error) => e instanceof ConfigError && e.message.includes("AttnUpBlock2D"),
  );
  assert.throws(
    () => getDownBlock("CrossAttnDownBlock2D", args({ numAttentionHeads: 5 }), true, 1),
    (e: Error) => e instanceof ConfigError && /64 channels do not split into 5 heads/.test(e.message),
  );
});

test.run();
