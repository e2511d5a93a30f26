// cdiff compress: a delta in low-rank form
import { prepareOutputDir } from "../../data/atomic.ts";
import { loadDelta } from "../../tune/delta.ts";
import { compressDelta, formatCompression, saveCompressed } from "../../tune/compress.ts";
import { UsageError, int, num, required } from "../args.ts";
import type { Command } from "../common.ts";
import { loadPipeline } from "../common.ts";

export const compressCmd: Command = {
  usage: "--model DIR --delta DIR [--ratio 0.6 | --rank K] --out DIR",
  about: "Stores a delta in low-rank form W0 + u v (truncated SVD of W - W0).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the delta's base)" },
    delta: { type: "string", arg: "DIR", help: "delta folder" },
    ratio: { type: "string", arg: "X", help: "share of the singular values kept, above 0 to 1 (0.6)" },
    rank: { type: "string", arg: "K", help: "fixed rank, at least 1 (instead of --ratio)" },
    out: { type: "string", arg: "DIR", help: "output folder" },
  },
  run(v, cmd) {
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const delta = required(v.delta, "delta", cmd, "DIR");
    const out = required(v.out, "out", cmd, "DIR");
    if (v.ratio !== undefined && v.rank !== undefined)
      throw new UsageError("--ratio and --rank exclude each other; give one");
    const how =
      v.rank !== undefined
        ? { rank: int(v.rank, "rank", 1, { min: 1 }) }
        : { ratio: num(v.ratio, "ratio", 0.6, { min: 0, max: 1, exclusiveMin: true }) };
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const c = compressDelta(loadDelta(delta), pipe.unet, how);
    for (const line of formatCompression(c)) console.log(line);
    saveCompressed(out, c);
    console.log(`wrote ${out}`);
  },
};
