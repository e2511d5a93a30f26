// cdiff eval: text-alignment, image-alignment and KID of generated images with a CLIP model
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError } from "../../engine/errors.ts";
import { CLIPModel } from "../../models/clip/modeling_clip.ts";
import { CLIPTokenizer } from "../../data/clip_tokenizer.ts";
import { clipScorer, evaluate, formatEvaluation } from "../../tune/evaluate.ts";
import { listImages, loadImages } from "../../tune/dataset.ts";
import { UsageError, int, list, required } from "../args.ts";
import type { Command } from "../common.ts";
import { MAX_SIDE, megapixels } from "../common.ts";

export const evalCmd: Command = {
  usage: '--clip DIR --images DIR --prompts FILE [--targets DIR] [--real DIR] [--replace "<new1>=dog"]',
  about: "Text-alignment (and CLIPScore), image-alignment and KID of generated images with a CLIP model.",
  options: {
    clip: { type: "string", arg: "DIR", help: "CLIPModel folder (with a tokenizer/)" },
    images: { type: "string", arg: "DIR", help: "generated images" },
    prompts: { type: "string", arg: "FILE", help: "their prompts, one a line (one line: the same for all)" },
    targets: { type: "string", arg: "DIR", help: "the concept's images, for image-alignment" },
    real: { type: "string", arg: "DIR", help: "real images of the class, for KID" },
    replace: {
      type: "string",
      multiple: true,
      arg: "A=B",
      help: 'rewrite a token in the prompts, e.g. "<new1>=dog" (repeatable)',
    },
    resolution: { type: "string", arg: "N", help: `CLIP input size, 8 to ${MAX_SIDE} (224)` },
    "max-image-megapixels": { type: "string", arg: "X", help: "largest image accepted, checked before decoding (25)" },
  },
  run(v, cmd) {
    const clip = required(v.clip, "clip", cmd, "DIR (a CLIPModel folder with a tokenizer/)");
    const imagesDir = required(v.images, "images", cmd, "DIR");
    const promptsFile = required(v.prompts, "prompts", cmd, "FILE");
    const res = int(v.resolution, "resolution", 224, { min: 8, max: MAX_SIDE });
    const limits = megapixels(v);
    const decode = limits.maxImagePixels !== undefined ? { maxPixels: limits.maxImagePixels } : {};
    const replacements = Object.fromEntries(
      list(v.replace).map((r) => {
        const k = r.indexOf("=");
        if (k <= 0) throw new UsageError(`--replace must read TOKEN=WORDS, e.g. "<new1>=dog", got "${r}"`);
        return [r.slice(0, k), r.slice(k + 1)] as [string, string];
      }),
    );
    if (!fs.existsSync(clip)) throw new ConfigError(`--clip ${clip}: no such folder`);
    const model = CLIPModel.fromPretrained(clip);
    const tokDir = fs.existsSync(path.join(clip, "tokenizer")) ? path.join(clip, "tokenizer") : clip;
    const tokenizer = fs.existsSync(path.join(tokDir, "vocab.json"))
      ? CLIPTokenizer.fromPretrained(tokDir)
      : CLIPTokenizer.default();
    const generated = loadImages(listImages(imagesDir), res, decode);
    if (!fs.existsSync(promptsFile)) throw new ConfigError(`--prompts ${promptsFile}: no such file`);
    const prompts = fs
      .readFileSync(promptsFile, "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    if (prompts.length !== 1 && prompts.length !== generated.length)
      throw new ConfigError(
        `--prompts ${promptsFile}: ${prompts.length} prompts for ${generated.length} images (give one, or one per image)`,
      );
    const all = prompts.length === 1 ? generated.map(() => prompts[0]!) : prompts;
    const report = evaluate({
      scorer: clipScorer(model, tokenizer),
      generated,
      prompts: all,
      replacements,
      ...(v.targets ? { targets: loadImages(listImages(v.targets as string), res, decode) } : {}),
      ...(v.real ? { real: loadImages(listImages(v.real as string), res, decode) } : {}),
    });
    for (const line of formatEvaluation(report)) console.log(line);
  },
};
