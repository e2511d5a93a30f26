// cdiff analyze: the per-layer weight change between a base and a fine-tuned model or delta
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, NumericalError } from "../../engine/errors.ts";
import { prepareOutputDir } from "../../data/atomic.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import type { Delta } from "../../tune/delta.ts";
import { firstNonFinite } from "../../tune/delta.ts";
import { loadAnyDelta } from "../../tune/compress.ts";
import { analyzeWeights, formatAnalysis, writeAnalysis } from "../../tune/analyze.ts";
import { UsageError, choice, required } from "../args.ts";
import type { Command } from "../common.ts";

export const analyzeCmd: Command = {
  usage: "--model DIR (--tuned DIR | --delta DIR) --out DIR [--chart layers|groups] [--by layer|tensor]",
  about:
    "Per-layer weight change ||W' - W|| / ||W|| between a base and a fine-tuned model or delta (paper Fig. 3): JSON, CSV and a PNG chart.",
  options: {
    model: { type: "string", arg: "DIR", help: "the base UNet folder, or a pipeline folder with unet/" },
    tuned: { type: "string", arg: "DIR", help: "the fine-tuned UNet (or pipeline) folder" },
    delta: { type: "string", arg: "DIR", help: "a delta folder instead of --tuned" },
    out: { type: "string", arg: "DIR", help: "output folder" },
    chart: { type: "string", arg: "C", help: "layers | groups (layers)" },
    name: { type: "string", arg: "NAME", help: "file name stem (weight_change)" },
    by: { type: "string", arg: "B", help: "layer | tensor (layer)" },
  },
  run(v, cmd) {
    const model = required(v.model, "model", cmd, "DIR (the base UNet or pipeline)");
    const out = required(v.out, "out", cmd, "DIR");
    if ((v.tuned === undefined) === (v.delta === undefined))
      throw new UsageError("analyze needs one of --tuned DIR or --delta DIR");
    const chart = choice(v.chart, "chart", "layers", ["layers", "groups"] as const);
    const by = choice(v.by, "by", "layer", ["layer", "tensor"] as const);
    prepareOutputDir(out, "--out");
    const unetDir = (d: string) => {
      if (!fs.existsSync(d)) throw new ConfigError(`${d}: no such folder`);
      return fs.existsSync(path.join(d, "unet")) ? path.join(d, "unet") : d;
    };
    const base = UNet2DConditionModel.fromPretrained(unetDir(model));
    let tuned: UNet2DConditionModel | Delta["unet"];
    if (v.tuned) {
      const m = UNet2DConditionModel.fromPretrained(unetDir(v.tuned as string));
      for (const [k, p] of m.namedParameters()) {
        const bad = firstNonFinite(p.data);
        if (bad)
          throw new NumericalError(
            `--tuned ${v.tuned}: ${k} holds ${bad.count} non-finite value${bad.count > 1 ? "s" : ""} (first ${bad.value} at index ${bad.index}); the model is unusable`,
          );
      }
      tuned = m;
    } else tuned = loadAnyDelta(v.delta as string, base, { force: true }).unet;
    const a = analyzeWeights(base, tuned, { by });
    for (const line of formatAnalysis(a)) console.log(line);
    const files = writeAnalysis(a, out, { chart, ...(v.name ? { name: v.name as string } : {}) });
    console.log(`wrote ${Object.values(files).join(", ")}`);
  },
};
