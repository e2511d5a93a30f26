// cdiff convert: a delta from PyTorch files, read without executing the pickle
import * as fs from "node:fs";
import { ConfigError } from "../../engine/errors.ts";
import { prepareOutputDir } from "../../data/atomic.ts";
import type { Delta } from "../../tune/delta.ts";
import { applyDeltaToUNet, loadDelta, saveDelta } from "../../tune/delta.ts";
import { deltaFromTorch } from "../../tune/convert.ts";
import { UsageError, list, required } from "../args.ts";
import type { Command } from "../common.ts";
import { loadPipeline } from "../common.ts";

export const convertCmd: Command = {
  usage: "--delta FILE|DIR --out DIR [--model DIR] [--token-file FILE ...] [--token-name TOKEN ...]",
  about:
    "Converts a delta from PyTorch files into this project's safetensors delta, without executing the pickle: a diffusers folder or\n" +
    "pytorch_custom_diffusion_weights.bin (+ <new1>.bin), or the authors' delta.bin / delta_epoch=*.ckpt (CompVis or diffusers layout, compressed or not).",
  options: {
    delta: { type: "string", arg: "FILE|DIR", help: "the PyTorch delta file, or a diffusers delta folder" },
    out: { type: "string", arg: "DIR", help: "output folder (safetensors delta)" },
    model: {
      type: "string",
      arg: "DIR",
      help: "the base model folder: needed to expand a compressed delta (W0 + u v) and to check keys and shapes",
    },
    "token-file": {
      type: "string",
      multiple: true,
      arg: "FILE",
      help: "a separate token file such as <new1>.bin (repeatable)",
    },
    "token-name": {
      type: "string",
      multiple: true,
      arg: "TOKEN",
      help: "names of the rows of a CompVis embed tensor, in order (default <new1>, <new2>, ...)",
    },
  },
  run(v, cmd) {
    const src = required(v.delta, "delta", cmd, "FILE or DIR");
    const out = required(v.out, "out", cmd, "DIR");
    if (!fs.existsSync(src)) throw new ConfigError(`--delta ${src}: no such file or folder`);
    const tokenFiles = list(v["token-file"]);
    for (const f of tokenFiles) if (!fs.existsSync(f)) throw new ConfigError(`--token-file ${f}: no such file`);
    prepareOutputDir(out, "--out");
    const pipe = typeof v.model === "string" ? loadPipeline(v.model) : null;
    let delta: Delta;
    if (fs.statSync(src).isDirectory()) {
      if (tokenFiles.length > 0)
        throw new UsageError(
          "--token-file goes with a delta file; a delta folder's token files are read from the folder",
        );
      delta = loadDelta(src);
    } else {
      const names = list(v["token-name"]);
      delta = deltaFromTorch(src, tokenFiles, {
        ...(pipe ? { base: pipe.unet } : {}),
        ...(names.length ? { tokenNames: names } : {}),
      }).delta;
    }
    // every key and shape against the base (applying checks them all before it writes; this loaded copy is discarded)
    if (pipe) applyDeltaToUNet(pipe.unet, delta, { warn: () => {} });
    console.log(
      `read ${delta.format ?? "this project's delta"} from ${src}: ${delta.unet.size} UNet tensors (${delta.freezeModel}), tokens ${[...delta.tokens.keys()].join(", ") || "none"}`,
    );
    saveDelta(out, delta);
    console.log(`wrote ${out}`);
  },
};
