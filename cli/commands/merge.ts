// cdiff merge: several deltas merged into one in closed form
import { prepareOutputDir } from "../../data/atomic.ts";
import { formatMergeReport, mergeDeltas, readCaptions, saveMerged } from "../../tune/merge.ts";
import { loadAnyDelta } from "../../tune/compress.ts";
import { UsageError, choice, distinctPaths, int, list, num, required } from "../args.ts";
import type { Command } from "../common.ts";
import { loadPipeline, tokenMapText } from "../common.ts";

export const mergeCmd: Command = {
  usage: "--model DIR --delta DIR --class WORD --delta DIR --class WORD [...] --captions FILE --out DIR [options]",
  about:
    "Merges several deltas into one in closed form (constrained least squares, paper eq. 4-5) and prints the residuals.",
  options: {
    model: { type: "string", arg: "DIR", help: "diffusers-layout model folder (the deltas' base)" },
    delta: { type: "string", multiple: true, arg: "DIR", help: "delta folder (two or more)" },
    class: { type: "string", multiple: true, arg: "WORD", help: "class word of each delta, in the same order" },
    captions: { type: "string", arg: "FILE", help: "regularisation captions, one a line" },
    "num-captions": { type: "string", arg: "N", help: "captions used, at least 1 (200)" },
    duplicates: {
      type: "string",
      arg: "M",
      help: "mean | first: how a target feature shared by concepts is kept (mean)",
    },
    ridge: { type: "string", arg: "X", help: "ridge term, 0 or more (0)" },
    out: { type: "string", arg: "DIR", help: "output delta folder" },
  },
  run(v, cmd) {
    const dirs = list(v.delta),
      classes = list(v.class);
    if (dirs.length < 2) throw new UsageError(`merge needs at least two --delta DIR, got ${dirs.length}`);
    if (classes.length !== dirs.length)
      throw new UsageError(`merge needs one --class per --delta (got ${classes.length} for ${dirs.length})`);
    const model = required(v.model, "model", cmd, "DIR (a diffusers-layout folder)");
    const captions = required(v.captions, "captions", cmd, "FILE (regularisation captions, one a line)");
    const out = required(v.out, "out", cmd, "DIR");
    const numCaptions = int(v["num-captions"], "num-captions", 200, { min: 1 });
    const dup = choice(v.duplicates, "duplicates", "mean", ["mean", "first"] as const);
    const ridge = num(v.ridge, "ridge", 0, { min: 0 });
    distinctPaths(dirs, "delta", "merging a delta with itself adds nothing; give each delta once");
    prepareOutputDir(out, "--out");
    const pipe = loadPipeline(model);
    const deltas = dirs.map((d) => loadAnyDelta(d, pipe.unet));
    const r = mergeDeltas(pipe, deltas, {
      regCaptions: readCaptions(captions, numCaptions),
      classWords: classes,
      duplicates: dup,
      ridge,
      log: (s) => console.log(s),
    });
    for (const line of formatMergeReport(r.report)) console.log(line);
    r.tokenMap.forEach((m, i) => console.log(`${dirs[i]}: ${tokenMapText(m)}`));
    saveMerged(out, r, dirs);
    console.log(`wrote ${out}`);
  },
};
