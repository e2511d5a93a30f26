// Builds the small world's image-caption corpus from the emoji artwork npm packages ship
// (emoji-datasource-twitter / -google 64 px PNGs): 16x16 RGB on white, PNG sheets + JSON index.
// Usage: npx tsx world/build_dataset.ts --from <node_modules with the emoji packages> --out world/data [--preview sheet.png]
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CLIPTokenizer } from "../data/clip_tokenizer.ts";
import { writeFileAtomic } from "../data/atomic.ts";
import { makeGrid, readImage, resize, toRGB, writePng, type Image } from "../data/images.ts";
import { ConfigError, FormatError } from "../engine/errors.ts";

/** Side of every built image, in pixels. */
export const WORLD_IMAGE_SIZE = 16;
/** Tiles per row of the built PNG sheets. */
export const SHEET_COLS = 16;
/** Artwork packages used, in the order their images are stored per class. */
export const VENDORS = ["twitter", "google"] as const;
/** One of {@link VENDORS}. */
export type Vendor = (typeof VENDORS)[number];
/** Licence of each vendor's artwork (the packages' code is MIT; the images carry these). */
export const VENDOR_LICENSES: Record<Vendor, string> = {
  twitter: "CC-BY-4.0 (Twemoji graphics, Copyright Twitter, Inc. and other contributors)",
  google: "Apache-2.0 (Noto Emoji, Copyright Google Inc.)",
};
/** Modifier token used in the held-out prompts; callers may substitute their own. */
export const HELDOUT_TOKEN = "<new1>";

const WORLD_DIR = dirname(fileURLToPath(import.meta.url));
/** Path of the committed curated class list. */
export const CLASSES_PATH = join(WORLD_DIR, "classes.json");

/** A training class of the curated list. */
export interface ClassSpec {
  /** Short name in emoji-datasource's emoji.json. */
  emoji: string;
  /** The one training caption, lowercase. */
  caption: string;
}

/** A held-out concept of the curated list. */
export interface HeldoutSpec {
  emoji: string;
  /** What the concept is, for reports ("unicorn face"); never a training caption. */
  name: string;
  /** The training caption of its class ("horse face"). */
  class: string;
  /** Prompts using {@link HELDOUT_TOKEN} and training vocabulary. */
  prompts: string[];
}

/** The parsed `world/classes.json`. */
export interface ClassList {
  train: ClassSpec[];
  heldout: HeldoutSpec[];
}

/** Caption templates written to captions.txt for every training caption ("{}" is the caption). */
export const CAPTION_TEMPLATES = ["{}", "a {}", "photo of a {}", "an emoji of a {}"];

/** Applies a caption template; "a" becomes "an" before a vowel. */
export function applyTemplate(template: string, caption: string): string {
  const text = template.replace("{}", caption);
  return text.replace(/\ba ([aeiou])/g, "an $1");
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown, where: string): string {
  if (typeof v !== "string" || v.length === 0)
    throw new FormatError(`${where} must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Reads and validates the curated class list: unique emoji and captions, lowercase captions,
 * held-out emoji disjoint from training emoji, each held-out class a training caption.
 * @throws FormatError naming the offending entry
 */
export function readClassList(path: string = CLASSES_PATH): ClassList {
  const raw: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!isRecord(raw) || !Array.isArray(raw["train"]) || !Array.isArray(raw["heldout"])) {
    throw new FormatError(`${path}: expected an object with "train" and "heldout" arrays`);
  }
  const train: ClassSpec[] = raw["train"].map((e: unknown, i: number) => {
    if (!isRecord(e)) throw new FormatError(`${path}: train[${i}] must be an object`);
    return {
      emoji: str(e["emoji"], `${path}: train[${i}].emoji`),
      caption: str(e["caption"], `${path}: train[${i}].caption`),
    };
  });
  const heldout: HeldoutSpec[] = raw["heldout"].map((e: unknown, i: number) => {
    const w = `${path}: heldout[${i}]`;
    if (!isRecord(e) || !Array.isArray(e["prompts"]))
      throw new FormatError(`${w} must be an object with a "prompts" array`);
    return {
      emoji: str(e["emoji"], `${w}.emoji`),
      name: str(e["name"], `${w}.name`),
      class: str(e["class"], `${w}.class`),
      prompts: e["prompts"].map((p: unknown, j: number) => str(p, `${w}.prompts[${j}]`)),
    };
  });
  const emojis = new Set<string>();
  const captions = new Set<string>();
  for (const c of train) {
    if (emojis.has(c.emoji)) throw new FormatError(`${path}: emoji ${c.emoji} is listed twice`);
    if (captions.has(c.caption)) throw new FormatError(`${path}: caption "${c.caption}" is used twice`);
    if (c.caption !== c.caption.toLowerCase() || c.caption.trim() !== c.caption) {
      throw new FormatError(`${path}: caption "${c.caption}" must be lowercase without outer spaces`);
    }
    emojis.add(c.emoji);
    captions.add(c.caption);
  }
  for (const h of heldout) {
    if (emojis.has(h.emoji)) throw new FormatError(`${path}: held-out emoji ${h.emoji} is also a training class`);
    if (captions.has(h.name)) throw new FormatError(`${path}: held-out name "${h.name}" is a training caption`);
    if (!captions.has(h.class))
      throw new FormatError(`${path}: held-out class "${h.class}" of ${h.emoji} is not a training caption`);
    if (h.prompts.length < 5 || h.prompts.length > 10)
      throw new FormatError(`${path}: ${h.emoji} needs 5-10 prompts, got ${h.prompts.length}`);
    for (const p of h.prompts) {
      if (!p.includes(HELDOUT_TOKEN))
        throw new FormatError(`${path}: prompt "${p}" of ${h.emoji} lacks ${HELDOUT_TOKEN}`);
    }
    emojis.add(h.emoji);
  }
  return { train, heldout };
}

interface EmojiEntry {
  name: string;
  unified: string;
  image: string;
  short_names: string[];
  [flag: string]: unknown;
}

function readEmojiTable(pkgDir: string): { version: string; byShortName: Map<string, EmojiEntry> } {
  const pkg: unknown = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  const table: unknown = JSON.parse(readFileSync(join(pkgDir, "emoji.json"), "utf8"));
  if (!isRecord(pkg) || typeof pkg["version"] !== "string" || !Array.isArray(table)) {
    throw new FormatError(`${pkgDir}: expected package.json with a version and emoji.json with an array`);
  }
  const byShortName = new Map<string, EmojiEntry>();
  for (const e of table as EmojiEntry[]) for (const s of e.short_names) byShortName.set(s, e);
  return { version: pkg["version"], byShortName };
}

/** Loads one vendor PNG, composites it on white and area-downsamples it to size x size. */
export function loadEmojiImage(path: string, size: number = WORLD_IMAGE_SIZE): Image {
  const rgb = toRGB(readImage(path), [1, 1, 1]);
  const small = resize(rgb, size, size, "area");
  // store what the 8-bit PNG will hold, so the preview and the committed sheet agree
  for (let i = 0; i < small.data.length; i++)
    small.data[i] = Math.round(Math.min(1, Math.max(0, small.data[i]!)) * 255) / 255;
  return small;
}

/** Sorted token ids (bos/eos included) of every line, as the CLIP tokenizer encodes them without padding. */
export function corpusTokenIds(lines: string[], tokenizer: CLIPTokenizer = CLIPTokenizer.default()): number[] {
  const ids = new Set<number>();
  for (const line of lines) for (const id of tokenizer.encode(line, { padding: "none" })) ids.add(id);
  return [...ids].sort((a, b) => a - b);
}

function writeTextAtomic(path: string, text: string): void {
  writeFileAtomic(path, text);
}

/** JSON with one line per top-level key, per array element of object arrays, per object entry; primitive arrays inline. */
function formatJson(value: Record<string, unknown>): string {
  const lines = Object.entries(value).map(([k, v]) => {
    let body: string;
    if (Array.isArray(v) && v.some((e) => typeof e === "object" && e !== null)) {
      body = `[\n${v.map((e) => `  ${JSON.stringify(e)}`).join(",\n")}\n ]`;
    } else if (isRecord(v)) {
      body = `{\n${Object.entries(v)
        .map(([k2, v2]) => `  ${JSON.stringify(k2)}: ${JSON.stringify(v2)}`)
        .join(",\n")}\n }`;
    } else {
      body = JSON.stringify(v);
    }
    return ` ${JSON.stringify(k)}: ${body}`;
  });
  return `{\n${lines.join(",\n")}\n}\n`;
}

function sheet(images: Image[]): Image {
  return makeGrid(images, { cols: SHEET_COLS, pad: 0, background: [1] });
}

/** Nearest-neighbour upscale by an integer factor, for contact sheets. */
function upscale(img: Image, f: number): Image {
  return resize(img, img.width * f, img.height * f, "nearest");
}

/** Options of {@link buildDataset}. */
export interface BuildOptions {
  /** node_modules folder holding emoji-datasource-twitter and emoji-datasource-google. */
  from: string;
  /** Output folder (created). */
  out: string;
  /** Optional contact sheet PNG: every image at 4x with nearest upscaling. */
  preview?: string;
  /** Class list path (default world/classes.json). */
  classes?: string;
}

/** Builds train.png/json, heldout.png/json and captions.txt; deterministic for the same packages. */
export function buildDataset(opts: BuildOptions): {
  classes: number;
  images: number;
  heldout: number;
  tokenIds: number;
} {
  const list = readClassList(opts.classes ?? CLASSES_PATH);
  const tables = new Map<Vendor, ReturnType<typeof readEmojiTable>>();
  for (const v of VENDORS) {
    const dir = join(opts.from, `emoji-datasource-${v}`);
    if (!existsSync(join(dir, "emoji.json")))
      throw new ConfigError(`build_dataset: ${dir}/emoji.json not found (install emoji-datasource-${v}@16)`);
    tables.set(v, readEmojiTable(dir));
  }
  const imagesOf = (emoji: string): { unified: string; name: string; images: { vendor: Vendor; img: Image }[] } => {
    let unified = "";
    let name = "";
    const images: { vendor: Vendor; img: Image }[] = [];
    for (const v of VENDORS) {
      const entry = tables.get(v)!.byShortName.get(emoji);
      if (entry === undefined)
        throw new FormatError(`build_dataset: emoji "${emoji}" is not in emoji-datasource-${v}/emoji.json`);
      unified = entry.unified;
      name = entry.name.toLowerCase();
      if (entry[`has_img_${v}`] !== true) continue;
      const path = join(opts.from, `emoji-datasource-${v}`, "img", v, "64", entry.image);
      images.push({ vendor: v, img: loadEmojiImage(path) });
    }
    if (images.length === 0) throw new FormatError(`build_dataset: emoji "${emoji}" has no image in any vendor`);
    return { unified, name, images };
  };

  const trainImages: Image[] = [];
  const trainIndex: { class: number; vendor: Vendor; tile: number }[] = [];
  const classes = list.train.map((c, k) => {
    const got = imagesOf(c.emoji);
    for (const { vendor, img } of got.images) {
      trainIndex.push({ class: k, vendor, tile: trainImages.length });
      trainImages.push(img);
    }
    return { caption: c.caption, emoji: c.emoji, unified: got.unified, name: got.name };
  });

  const heldImages: Image[] = [];
  const concepts = list.heldout.map((h) => {
    const got = imagesOf(h.emoji);
    const images = got.images.map(({ vendor, img }) => {
      heldImages.push(img);
      return { vendor, tile: heldImages.length - 1 };
    });
    return {
      name: h.name,
      emoji: h.emoji,
      unified: got.unified,
      class: h.class,
      token: HELDOUT_TOKEN,
      prompts: h.prompts,
      images,
    };
  });

  const captionLines: string[] = [];
  for (const t of CAPTION_TEMPLATES) for (const c of list.train) captionLines.push(applyTemplate(t, c.caption));
  const tokenizer = CLIPTokenizer.default();
  const tokenIds = corpusTokenIds(captionLines, tokenizer);
  const known = new Set(tokenIds);
  const promptTok = CLIPTokenizer.default();
  promptTok.addTokens([HELDOUT_TOKEN]);
  const newId = promptTok.convertTokensToIds(HELDOUT_TOKEN) as number;
  for (const c of concepts) {
    for (const p of c.prompts) {
      for (const id of promptTok.encode(p, { padding: "none" })) {
        if (id !== newId && !known.has(id)) {
          throw new FormatError(
            `build_dataset: prompt "${p}" of ${c.emoji} uses token ${JSON.stringify(promptTok.convertIdsToTokens([id])[0])} that no training caption has`,
          );
        }
      }
    }
  }

  const sources = Object.fromEntries(
    VENDORS.map((v) => [
      v,
      {
        package: `emoji-datasource-${v}`,
        version: tables.get(v)!.version,
        license: VENDOR_LICENSES[v],
      },
    ]),
  );
  mkdirSync(opts.out, { recursive: true });
  writePng(join(opts.out, "train.png"), sheet(trainImages));
  writePng(join(opts.out, "heldout.png"), sheet(heldImages));
  const common = { format: "small-world-dataset/1", size: WORLD_IMAGE_SIZE, cols: SHEET_COLS, sources };
  writeTextAtomic(
    join(opts.out, "train.json"),
    formatJson({
      ...common,
      sheet: "train.png",
      captionTemplates: CAPTION_TEMPLATES,
      tokenIds,
      classes,
      images: trainIndex,
    }),
  );
  writeTextAtomic(join(opts.out, "heldout.json"), formatJson({ ...common, sheet: "heldout.png", concepts }));
  writeTextAtomic(join(opts.out, "captions.txt"), captionLines.join("\n") + "\n");

  if (opts.preview !== undefined) {
    // one row per class pair: [twitter, google] x 8 classes per row, then the held-out images
    writePng(
      opts.preview,
      upscale(makeGrid([...trainImages, ...heldImages], { cols: 16, pad: 1, background: [0.6] }), 4),
    );
  }
  return { classes: classes.length, images: trainImages.length, heldout: concepts.length, tokenIds: tokenIds.length };
}

function parseArgs(argv: string[]): BuildOptions {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith("--")) throw new ConfigError(`build_dataset: ${flag} needs a value`);
    return v;
  };
  const from = get("--from");
  if (from === undefined)
    throw new ConfigError(
      "build_dataset: usage: --from <node_modules> [--out world/data] [--preview file.png] [--classes classes.json]",
    );
  const opts: BuildOptions = { from: resolve(from), out: resolve(get("--out") ?? join(WORLD_DIR, "data")) };
  const preview = get("--preview");
  if (preview !== undefined) opts.preview = resolve(preview);
  const classes = get("--classes");
  if (classes !== undefined) opts.classes = resolve(classes);
  return opts;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  const r = buildDataset(opts);
  console.log(
    `build_dataset: ${r.classes} classes, ${r.images} images, ${r.heldout} held-out concepts, ${r.tokenIds} token ids -> ${opts.out}`,
  );
}
