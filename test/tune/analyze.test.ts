// the Fig. 3 weight-change analysis: hand-computed Delta_l and group summaries, JSON/CSV/PNG written and readable
import * as fs from "node:fs";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { tensor } from "../../engine/index.ts";
import { readImage } from "../../data/images.ts";
import { Module } from "../../models/nn/module.ts";
import { Linear } from "../../models/nn/layers.ts";
import { analyzeWeights, formatAnalysis, layerGroup, writeAnalysis } from "../../tune/analyze.ts";
import { barChart, glyph, niceTicks } from "../../tune/chart.ts";
import { tmpDir } from "./tiny.ts";

class Block extends Module {
  attn1 = new Linear(2, 2, false);
  attn2 = new Linear(2, 2, false);
  proj = new Linear(2, 1, true);
}

function set(m: Block, vals: { a1: number[]; a2: number[]; pw: number[]; pb: number[] }): Block {
  m.attn1.weight = tensor(vals.a1, [2, 2]);
  m.attn2.weight = tensor(vals.a2, [2, 2]);
  m.proj.weight = tensor(vals.pw, [1, 2]);
  m.proj.bias = tensor(vals.pb, [1]);
  return m;
}

test("Delta_l = ||theta' - theta|| / ||theta|| per tensor, grouped", () => {
  const base = set(new Block(), { a1: [3, 0, 0, 4], a2: [1, 0, 0, 0], pw: [0, 2], pb: [0] });
  const tuned = set(new Block(), { a1: [3, 0, 0, 4.5], a2: [1, 1, 0, 0], pw: [0, 2], pb: [0.25] });
  const a = analyzeWeights(base, tuned);
  const by = new Map(a.layers.map((l) => [l.key, l]));
  assert.is(by.get("attn1.weight")!.delta, 0.5 / 5);
  assert.is(by.get("attn2.weight")!.delta, 1);
  assert.is(by.get("proj.weight")!.delta, 0);
  assert.is(by.get("proj.bias")!.delta, null); // zero base norm
  assert.is(by.get("proj.bias")!.changeNorm, 0.25);
  const g = new Map(a.groups.map((x) => [x.group, x]));
  assert.is(a.totalParams, 11);
  assert.is(g.get("cross-attention")!.share, 4 / 11);
  assert.is(g.get("self-attention")!.meanDelta, 0.1);
  assert.is(g.get("other")!.meanDelta, 0); // the zero-norm bias is left out of the mean
  assert.ok(Math.abs(g.get("other")!.pooledDelta - 0.25 / 2) < 1e-12);
  assert.is(layerGroup("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"), "cross-attention");
  assert.is(layerGroup("mid_block.resnets.0.conv1.weight"), "other");
  assert.match(formatAnalysis(a)[0]!, /cross-attention/);
  // a map of replacement values (a delta) counts missing keys as unchanged
  const partial = analyzeWeights(base, new Map([["attn2.weight", { shape: [2, 2], data: [1, 1, 0, 0] }]]));
  assert.is(partial.layers.find((l) => l.key === "attn2.weight")!.delta, 1);
  assert.is(partial.layers.find((l) => l.key === "attn1.weight")!.delta, 0);
  assert.throws(() => analyzeWeights(base, new Map([["nope", { shape: [1], data: [0] }]])), /nope/);
});

test("per layer: a module's weight and bias pool in quadrature", () => {
  class M extends Module {
    lin = new Linear(1, 1);
  }
  const base = new M(),
    tuned = new M();
  base.lin.weight = tensor([[3]]).requiresGrad_();
  base.lin.bias = tensor([4]).requiresGrad_();
  tuned.lin.weight = tensor([[3]]).requiresGrad_();
  tuned.lin.bias = tensor([4.5]).requiresGrad_();
  const a = analyzeWeights(base, tuned, { by: "layer" });
  assert.is(a.layers.length, 1);
  assert.is(a.layers[0].key, "lin");
  assert.ok(Math.abs(a.layers[0].delta! - 0.5 / 5) < 1e-12); // ||(0, 0.5)|| / ||(3, 4)||
  assert.is(analyzeWeights(base, tuned).layers.length, 2);
});

test("writes JSON, CSV and a PNG chart of the expected size", () => {
  const base = set(new Block(), { a1: [3, 0, 0, 4], a2: [1, 0, 0, 0], pw: [0, 2], pb: [0] });
  const tuned = set(new Block(), { a1: [3, 0, 0, 4.5], a2: [1, 1, 0, 0], pw: [0, 2], pb: [0.25] });
  const a = analyzeWeights(base, tuned);
  const dir = tmpDir();
  const files = writeAnalysis(a, dir, { width: 320, height: 200 });
  const json = JSON.parse(fs.readFileSync(files.json, "utf8"));
  assert.is(json.layers.length, 4);
  const csv = fs.readFileSync(files.csv, "utf8").trim().split("\n");
  assert.is(csv[0], "key,group,numel,norm,change_norm,delta");
  assert.is(csv[2], "attn2.weight,cross-attention,4,1,1,1");
  const img = readImage(files.png);
  assert.is(img.width, 320);
  assert.is(img.height, 200);
  // the cross-attention bar (red) is drawn; no temporary files are left
  let red = 0;
  for (let i = 0; i < img.width * img.height; i++)
    if (img.data[i * img.channels]! > 0.8 && img.data[i * img.channels + 1]! < 0.3) red++;
  assert.ok(red > 100, `red pixels ${red}`);
  assert.equal(fs.readdirSync(dir).sort(), ["weight_change.csv", "weight_change.json", "weight_change.png"]);
  const groups = writeAnalysis(a, dir, { name: "groups", chart: "groups", width: 400, height: 240 });
  assert.is(readImage(groups.png).width, 400);
});

test("chart pieces: ticks, glyphs, bar heights", () => {
  assert.equal(niceTicks(0.87), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(10), [0, 2, 4, 6, 8, 10]);
  assert.equal(Array.from(glyph("1")), [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e]);
  assert.equal(Array.from(glyph("a")), Array.from(glyph("A")));
  const img = barChart({
    bars: [
      { value: 1, color: [0, 0, 1] },
      { value: 0.5, color: [0, 1, 0] },
    ],
    width: 200,
    height: 100,
  });
  // the blue bar is about twice as tall as the green one
  const col = (x: number, c: number) => {
    let n = 0;
    for (let y = 0; y < img.height; y++)
      if (img.data[(y * img.width + x) * 3 + c]! === 1 && img.data[(y * img.width + x) * 3 + ((c + 1) % 3)]! === 0) n++;
    return n;
  };
  let blue = 0,
    green = 0;
  for (let x = 0; x < img.width; x++) {
    blue = Math.max(blue, col(x, 2));
    green = Math.max(green, col(x, 1));
  }
  assert.ok(Math.abs(blue / green - 2) < 0.1, `${blue} / ${green}`);
});

test.run();
