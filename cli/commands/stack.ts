// cdiff stack: several deltas' changes added onto the base
import { prepareOutputDir } from "../../data/atomic.ts";
import { saveDelta } from "../../tune/delta.ts";
import { loadAnyDelta } from "../../tune/compress.ts";
import { stackDeltas } from "../../tune/stack.ts";
import { UsageError, distinctPaths, list, required } from "../args.ts";
import type { Command } from "../common.ts";
import { SAME_DELTA, loadPipeline, tokenMapText } from "../common.ts";

export const stackCmd: Command = {
  usage: "--model DIR --delta DIR --delta DIR [...] --out DIR",
  about:
    "Adds several deltas' changes onto the base (W0 + sum_i (W_i - W0)), keeping every token (renumbered <new1>.. in order).",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the deltas' base)" },
    delta: { type: "string", multiple: true, arg: "DIR", help: "delta folder, full or compressed (two or more)" },
    out: { type: "string", arg: "DIR", help: "output delta folder" },
  },
  run(v, cmd) {
    const dirs = list(v.delta);
    if (dirs.length < 2) throw new UsageError(`stack needs two or more --delta DIR, got ${dirs.length}`);
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const out = required(v.out, "out", cmd, "DIR");
    distinctPaths(dirs, "delta", SAME_DELTA);
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const r = stackDeltas(
      pipe.unet,
      dirs.map((d) => loadAnyDelta(d, pipe.unet)),
    );
    r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${tokenMapText(m) || "no tokens"}`));
    saveDelta(out, r.delta, { stacked_from: JSON.stringify(dirs) });
    console.log(`wrote ${out}`);
  },
};
